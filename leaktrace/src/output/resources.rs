//! The events of issue 14 (leaks outside RSS, the host's memory, memory per unit of work), their
//! payloads and text forms. Each is one variant of [`super::Event`] holding one of these.
use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::{Placement, Subject};
use crate::{
    analysis::{
        classify::Pattern,
        resources::LeakKind,
        runs::{RunStat, RunsVerdict},
    },
    sys::fds::{FdCounts, FdKind},
    util::{bytes, signed_bytes},
};

/// `resource_leak_suspected`: a life leaks outside its RSS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceLeak {
    #[serde(flatten)]
    pub subject: Subject,
    /// `fd_leak` (the open-descriptor count is a mountain) or `kernel_leak` (the kernel memory
    /// of the life's own memory cgroup is).
    pub kind: LeakKind,
    /// The classifier's pattern and confidence for that series.
    pub pattern: Pattern,
    pub confidence: f64,
    pub open_fds: Option<u64>,
    /// Floor growth of the open-descriptor count, descriptors per second.
    pub fd_growth_per_sec: Option<f64>,
    /// The descriptors by kind at the last scan.
    pub fds_by_kind: Option<FdCounts>,
    /// The kinds that grew over the flagged stretch, descriptors per second.
    pub fd_kind_growth_per_sec: BTreeMap<&'static str, f64>,
    /// The soft RLIMIT_NOFILE.
    pub fd_limit: Option<u64>,
    /// Kernel memory charged to the life's own memory cgroup (slab objects, pipe and socket
    /// buffers, ...), and its floor growth.
    pub kernel_bytes: Option<u64>,
    pub kernel_growth_bytes_per_sec: Option<f64>,
    /// `kernel_bytes` includes reclaimable slab (cgroup v1 counts no finer).
    pub kernel_includes_reclaimable: bool,
    /// Socket buffer memory of that cgroup, when the kernel counts it.
    pub sock_bytes: Option<u64>,
    /// The host's unreclaimable slab growth (SUnreclaim) attributed to this life: how fast
    /// SUnreclaim grew while its descriptors did (Theil–Sen slope over the same stretch), times
    /// its share of the descriptor growth of every life leaking descriptors. An estimate: other
    /// kernel activity meanwhile counts too. Null when SUnreclaim did not grow.
    pub slab_unreclaimable_attributed_bytes_per_sec: Option<f64>,
    pub rss_bytes: u64,
    pub footprint_bytes: u64,
    #[serde(flatten)]
    pub placement: Placement,
}

/// `resource_leak_cleared`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceCleared {
    #[serde(flatten)]
    pub subject: Subject,
    pub kind: LeakKind,
    /// `no longer growing`, `released` (fell under half of its level when flagged) or `exited`.
    pub reason: String,
    pub open_fds: Option<u64>,
    pub kernel_bytes: Option<u64>,
    pub flagged_secs: Option<f64>,
}

/// `fd_exhaustion_predicted`: descriptors will run out (EMFILE) before long.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FdExhaustion {
    #[serde(flatten)]
    pub subject: Subject,
    pub eta_secs: f64,
    pub open_fds: u64,
    pub fd_limit: u64,
    pub fd_growth_per_sec: f64,
    #[serde(flatten)]
    pub placement: Placement,
}

/// A life whose descriptors pin a growing host part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pinner {
    pub pid: u32,
    pub comm: String,
    pub open_fds: Option<u64>,
    pub fd_growth_per_sec: f64,
    pub kernel_bytes: Option<u64>,
}

/// `host_leak_suspected`: a part of the host's memory is a mountain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostLeak {
    pub ts_ns: u64,
    /// The part (`slab_unreclaimable`, `tmpfs`, `shmem`, `kernel_stack`, `page_tables`,
    /// `vmalloc`, `percpu`, `hugetlb`, `socket_buffers`, `unexplained`).
    pub part: &'static str,
    /// What in the part grows: the tmpfs mount point, the unreclaimable slab cache that grew
    /// most (`/proc/slabinfo`, root only); null when there is nothing finer to name.
    pub name: Option<String>,
    pub bytes: u64,
    pub growth_bytes_per_sec: f64,
    pub pattern: Pattern,
    pub confidence: f64,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    /// For slab, socket buffers and unexplained memory: the lives leaking descriptors meanwhile.
    pub pinned_by: Vec<Pinner>,
    /// Monitor clock, for the text form.
    #[serde(skip)]
    pub t: f64,
}

/// `host_leak_cleared`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostCleared {
    pub ts_ns: u64,
    pub part: &'static str,
    pub name: Option<String>,
    /// `no longer growing`, `released` (fell under half of its level when flagged), `unmounted`.
    pub reason: String,
    pub bytes: u64,
    pub flagged_secs: Option<f64>,
    #[serde(skip)]
    pub t: f64,
}

/// `runs` (`watch --runs N`, last line): each run's peak and retained footprint, and whether
/// it grows across identical runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runs {
    pub command: Vec<String>,
    pub runs: Vec<RunStat>,
    #[serde(flatten)]
    pub verdict: RunsVerdict,
}

fn opt_rate(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |g| format!("{g:+.1}/s"))
}

fn kinds_text(k: &FdCounts) -> String {
    FdKind::ALL
        .iter()
        .filter(|x| k.get(**x) > 0)
        .map(|x| format!("{} {}", x.name(), k.get(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ResourceLeak {
    pub fn text(&self) -> String {
        let s = &self.subject;
        let mut out = format!(
            "[{:>7.1}s] {} SUSPECTED pid {} ({}): ",
            s.t,
            match self.kind {
                LeakKind::FdLeak => "FD LEAK",
                LeakKind::KernelLeak => "KERNEL MEMORY LEAK",
            },
            s.pid,
            s.comm
        );
        if let Some(n) = self.open_fds {
            let _ = write!(out, "{n} open fds {}", opt_rate(self.fd_growth_per_sec));
            if let Some(k) = &self.fds_by_kind {
                let _ = write!(out, " ({})", kinds_text(k));
            }
            if !self.fd_kind_growth_per_sec.is_empty() {
                let g: Vec<String> = self
                    .fd_kind_growth_per_sec
                    .iter()
                    .map(|(k, v)| format!("{k} {v:+.1}/s"))
                    .collect();
                let _ = write!(out, ", growing: {}", g.join(", "));
            }
            if let Some(l) = self.fd_limit {
                let _ = write!(out, ", limit {l}");
            }
        }
        if let Some(k) = self.kernel_bytes {
            let _ = write!(
                out,
                "; kernel memory {}{} {}/s",
                bytes(k),
                if self.kernel_includes_reclaimable {
                    " (with reclaimable slab)"
                } else {
                    ""
                },
                signed_bytes(self.kernel_growth_bytes_per_sec.unwrap_or(0.0))
            );
        }
        if let Some(a) = self.slab_unreclaimable_attributed_bytes_per_sec {
            let _ = write!(out, "; host SUnreclaim {}/s attributed", signed_bytes(a));
        }
        let _ = write!(
            out,
            "; rss {} ({}, confidence {:.2})",
            bytes(self.rss_bytes),
            self.pattern,
            self.confidence
        );
        out
    }
}

impl ResourceCleared {
    pub fn text(&self) -> String {
        let s = &self.subject;
        format!(
            "[{:>7.1}s] {} cleared pid {} ({}): {}{}",
            s.t,
            self.kind.name(),
            s.pid,
            s.comm,
            self.reason,
            self.open_fds.map(|n| format!(", {n} open fds")).unwrap_or_default()
        )
    }
}

impl FdExhaustion {
    pub fn text(&self) -> String {
        let s = &self.subject;
        format!(
            "[{:>7.1}s] FD EXHAUSTION PREDICTED pid {} ({}): {} of {} descriptors, limit reached in ~{:.0}s at {:+.1}/s (then EMFILE)",
            s.t, s.pid, s.comm, self.open_fds, self.fd_limit, self.eta_secs, self.fd_growth_per_sec
        )
    }
}

impl HostLeak {
    pub fn text(&self) -> String {
        let mut out = format!(
            "[{:>7.1}s] HOST LEAK SUSPECTED {}{}: {} growing {}/s ({}, confidence {:.2}); MemAvailable {} of {}",
            self.t,
            self.part,
            self.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
            bytes(self.bytes),
            signed_bytes(self.growth_bytes_per_sec),
            self.pattern,
            self.confidence,
            bytes(self.mem_available_bytes),
            bytes(self.mem_total_bytes),
        );
        if !self.pinned_by.is_empty() {
            let p: Vec<String> = self
                .pinned_by
                .iter()
                .map(|p| format!("pid {} ({}) fds {:+.1}/s", p.pid, p.comm, p.fd_growth_per_sec))
                .collect();
            let _ = write!(out, "; pinned by {}", p.join(", "));
        }
        out
    }
}

impl HostCleared {
    pub fn text(&self) -> String {
        format!(
            "[{:>7.1}s] host leak cleared {}{}: {}, now {}",
            self.t,
            self.part,
            self.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
            self.reason,
            bytes(self.bytes)
        )
    }
}

impl Runs {
    pub fn text(&self) -> String {
        let mut out = format!(
            "runs: {} — {} runs of `{}`: peak {}/run, retained {}/run",
            if self.verdict.growing {
                "GROWING across runs"
            } else {
                "no growth across runs"
            },
            self.runs.len(),
            self.command.join(" "),
            signed_bytes(self.verdict.peak_growth_per_run_bytes),
            signed_bytes(self.verdict.retained_growth_per_run_bytes),
        );
        for r in &self.runs {
            let _ = write!(
                out,
                "\n  run {:>2}  pid {:>7}  peak {:>10}  retained {:>10}  {:.1}s  exit {}",
                r.run,
                r.pid,
                bytes(r.peak_bytes),
                bytes(r.retained_bytes),
                r.duration_secs,
                r.exit_code.map_or("?".to_string(), |c| c.to_string())
            );
        }
        out
    }
}

/// One part of the host's memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartBytes {
    pub part: &'static str,
    pub bytes: u64,
}

/// A named thing holding memory (a tmpfs mount, a slab cache, a file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Named {
    pub name: String,
    pub bytes: u64,
    /// Slab caches: whether the kernel reclaims it under pressure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimable: Option<bool>,
}

/// `host` (`leaktrace host`): where the host's memory is now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    pub ts_ns: u64,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    /// MemTotal split into parts that add up to it (README.md "The host's memory").
    pub parts: Vec<PartBytes>,
    /// tmpfs mounts (one per filesystem), largest first.
    pub tmpfs: Vec<Named>,
    /// The largest slab caches (empty unless root).
    pub slabs: Vec<Named>,
    /// With `--files N`: the largest files in tmpfs mounts.
    pub files: Vec<Named>,
    pub swap_used_ratio: Option<f64>,
    /// OOM kills since boot (each is in the kernel log).
    pub oom_kills: Option<u64>,
}

impl HostReport {
    pub fn text(&self) -> String {
        let mut out = format!(
            "host memory: {} total, {} available",
            bytes(self.mem_total_bytes),
            bytes(self.mem_available_bytes)
        );
        if let Some(r) = self.swap_used_ratio {
            let _ = write!(out, ", swap {:.0}% used", r * 100.0);
        }
        if let Some(k) = self.oom_kills {
            let _ = write!(out, ", {k} OOM kills since boot");
        }
        let total = self.mem_total_bytes.max(1) as f64;
        for p in &self.parts {
            let _ = write!(
                out,
                "\n  {:<20} {:>11} {:>5.1}%",
                p.part,
                bytes(p.bytes),
                p.bytes as f64 * 100.0 / total
            );
        }
        for (title, rows) in [
            ("tmpfs mounts", &self.tmpfs),
            ("largest slab caches", &self.slabs),
            ("largest files in tmpfs", &self.files),
        ] {
            if rows.is_empty() {
                continue;
            }
            let _ = write!(out, "\n{title}:");
            for r in rows {
                let _ = write!(
                    out,
                    "\n  {:>11}  {}{}",
                    bytes(r.bytes),
                    r.name,
                    match r.reclaimable {
                        Some(true) => " (reclaimable)",
                        _ => "",
                    }
                );
            }
        }
        out
    }
}
