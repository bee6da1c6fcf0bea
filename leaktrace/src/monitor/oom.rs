//! Building an OOM report at the moment of the kill (what only the live system can tell, read
//! first), and pre-OOM snapshots.
use super::memcg_watch::{MemcgSample, MemcgWatch};
use crate::{
    analysis::memcg_binding::{self, Binding, KernelHint},
    events::{KernelEvent, OomKill},
    report::{Analysis, GroupVictim, Grower, Host, Memcg, OomGroup, OomReport, Point, REPORT_VERSION, Trigger, Victim},
    state::{Proc, ProcessTable, Snapshot, memcg::MemcgResolver},
    sys::{
        cgroup::{MemcgPath, MemcgStats, read_memcg_stats},
        container::attribute,
        host::HostMemory,
        kmsg,
        memcg_levels::{MemcgLevel, read_levels},
        proc::{read_cmdline, read_smaps_rollup, read_status_fields, read_top_mappings},
    },
    util::unix_ms,
};

/// What must be read from /proc while the victim still exists — first thing after the event.
#[derive(Debug, Clone, Default)]
pub struct VictimLive {
    pub cmdline: Option<Vec<String>>,
    pub memcg: Option<MemcgPath>,
    pub memcg_stats: Option<MemcgStats>,
    pub host: Option<Host>,
    /// The victim's top allocation sites, read from the kernel at the kill (stacks on).
    pub top_sites: Vec<crate::sites::Site>,
    /// The victim's collector, when it is a tracked JVM / CPython.
    pub runtime: Option<crate::report::runtime::RuntimeReport>,
    /// The victim's cgroup and its ancestors, read at the kill.
    pub levels: Vec<MemcgLevel>,
    /// Which level's limit fired (or the host).
    pub binding: Option<Binding>,
    /// The binding level's (else the victim's cgroup's) recent history.
    pub memcg_timeline: Vec<MemcgSample>,
}

/// What the monitor knows at a kill beyond the victim itself.
pub struct LiveCtx<'a> {
    pub memcgs: &'a MemcgResolver,
    pub watch: &'a MemcgWatch,
    /// The kill's kernel time (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// Monitor clock at the kill.
    pub now_t: f64,
}

/// How far from the kill the kernel's `oom-kill:` line may be when it does not name the victim.
const SUMMARY_WINDOW_USEC: u64 = 2_000_000;

/// The kernel's own word on which cgroup ran out, from its log (when it can be read).
fn kernel_hint(pid: u32, ts_ns: u64) -> Option<KernelHint> {
    let records = kmsg::read_kmsg_snapshot().ok()?;
    let s = kmsg::oom_summary_for(&records, pid, ts_ns / 1000, SUMMARY_WINDOW_USEC)?;
    Some(KernelHint {
        constraint: s.constraint,
        oom_memcg: s.oom_memcg,
    })
}

pub fn host_now() -> Host {
    Host::from(HostMemory::read())
}

impl From<HostMemory> for Host {
    fn from(h: HostMemory) -> Host {
        Host {
            mem_total_bytes: h.mem.map(|m| m.mem_total),
            mem_available_bytes: h.mem.map(|m| m.mem_available),
            swap_total_bytes: h.mem.map(|m| m.swap_total),
            swap_used_bytes: h.mem.map(|m| m.swap_used()),
            psi_some_avg10: h.psi_some_avg10,
            psi_full_avg10: h.psi_full_avg10,
            parts: Vec::new(),
        }
    }
}

/// Read the victim's cmdline and memory cgroup now (falling back to what was cached while it ran).
pub fn victim_live(pid: u32, cached: Option<&Proc>, dir: Option<&MemcgPath>, ctx: &LiveCtx<'_>) -> VictimLive {
    let memcgs = ctx.memcgs;
    // What was cached while the process ran comes first: a dying process shows an empty cmdline
    // and, on cgroup v1, may already have been moved to the root cgroup.
    let cmdline = cached
        .map(|p| p.cmdline.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| read_cmdline(pid).ok().filter(|c| !c.is_empty()));
    let memcg = dir.cloned().or_else(|| memcgs.of(pid));
    let memcg_stats = memcg.as_ref().and_then(|m| read_memcg_stats(m).ok());
    let levels = memcg.as_ref().map(read_levels).unwrap_or_default();
    let host = host_now();
    let hint = kernel_hint(pid, ctx.ts_ns);
    let binding = memcg_binding::fired(
        &levels,
        hint.as_ref(),
        |path| ctx.watch.oom_before(path),
        host.mem_total_bytes,
    );
    let timeline_of = binding
        .memcg
        .clone()
        .or_else(|| memcg.as_ref().map(|m| m.rel.clone()))
        .unwrap_or_default();
    VictimLive {
        cmdline,
        memcg,
        memcg_stats,
        host: Some(host),
        top_sites: Vec::new(),
        runtime: None,
        memcg_timeline: ctx.watch.history(&timeline_of, ctx.now_t),
        levels,
        binding: Some(binding),
    }
}

fn growth(p: &Proc) -> f64 {
    p.verdict.map_or(0.0, |v| v.growth_bytes_per_sec)
}

fn grower(p: &Proc, victim: u32, memcg: Option<String>) -> Grower {
    Grower {
        pid: p.key.pid,
        comm: p.comm.clone(),
        growth_bytes_per_sec: growth(p).round(),
        footprint_bytes: p.rss.footprint(),
        rss_bytes: p.rss.resident(),
        pattern: p.verdict.map(|v| v.pattern),
        container: memcg.as_deref().and_then(attribute),
        memcg,
        is_victim: p.key.pid == victim,
    }
}

pub const TOP_GROWERS: usize = 5;

/// Processes ranked by floor growth (then footprint), host-wide and in the victim's cgroup.
fn top_growers(
    table: &ProcessTable,
    victim: u32,
    victim_memcg: Option<&str>,
    memcgs: &MemcgResolver,
) -> (Vec<Grower>, Vec<Grower>) {
    let mut all: Vec<&Proc> = table.iter().collect();
    all.sort_by(|a, b| {
        growth(b)
            .total_cmp(&growth(a))
            .then(b.rss.footprint().cmp(&a.rss.footprint()))
    });
    let host: Vec<Grower> = all
        .iter()
        .take(TOP_GROWERS)
        .map(|p| {
            grower(
                p,
                victim,
                p.memcg.clone().or_else(|| memcgs.of(p.key.pid).map(|m| m.rel)),
            )
        })
        .collect();
    let mut in_cg = Vec::new();
    if let Some(cg) = victim_memcg {
        for p in &all {
            if in_cg.len() == TOP_GROWERS {
                break;
            }
            let m = p.memcg.clone().or_else(|| memcgs.of(p.key.pid).map(|m| m.rel));
            if m.as_deref() == Some(cg) {
                in_cg.push(grower(p, victim, m));
            }
        }
    }
    (in_cg, host)
}

pub struct KillInput<'a> {
    pub event: &'a KernelEvent,
    pub kill: &'a OomKill,
    /// The victim's state as last tracked.
    pub victim: Option<&'a Proc>,
    pub live: &'a VictimLive,
    pub table: &'a ProcessTable,
    pub memcgs: &'a MemcgResolver,
    /// Monitor clock at the kill.
    pub now_t: f64,
    pub interval_secs: f64,
}

pub fn build(k: KillInput<'_>) -> OomReport {
    let kill = k.kill;
    let kb = |v: Option<u64>| v.map(|x| x.saturating_mul(1024));
    let mut missing = Vec::new();
    let mut note = |name: &str, present: bool| {
        if !present {
            missing.push(name.to_string());
        }
    };
    note("comm", kill.victim_comm.is_some() || k.victim.is_some());
    note("cmdline", k.live.cmdline.is_some());
    note("uid", kill.uid.is_some());
    note("oom_score_adj", kill.oom_score_adj.is_some());
    note("total_vm_bytes", kill.total_vm_kb.is_some());
    note("anon_rss_bytes", kill.anon_rss_kb.is_some() || k.victim.is_some());
    note("file_rss_bytes", kill.file_rss_kb.is_some() || k.victim.is_some());
    note("shmem_rss_bytes", kill.shmem_rss_kb.is_some() || k.victim.is_some());
    note("pgtables_bytes", kill.pgtables_kb.is_some());
    note("memcg", k.live.memcg.is_some());
    let v = k.victim;
    let victim = Victim {
        pid: kill.victim_pid,
        comm: kill.victim_comm.clone().or_else(|| v.map(|p| p.comm.clone())),
        cmdline: k.live.cmdline.clone(),
        uid: kill.uid,
        oom_score_adj: kill.oom_score_adj,
        total_vm_bytes: kb(kill.total_vm_kb),
        // Old kernels: the last values leaktrace read from /proc.
        anon_rss_bytes: kb(kill.anon_rss_kb).or(v.map(|p| p.rss.anon)),
        file_rss_bytes: kb(kill.file_rss_kb).or(v.map(|p| p.rss.file)),
        shmem_rss_bytes: kb(kill.shmem_rss_kb).or(v.map(|p| p.rss.shmem)),
        pgtables_bytes: kb(kill.pgtables_kb),
        container: k.live.memcg.as_ref().and_then(|m| attribute(&m.rel)),
        missing,
    };
    let memcg = k.live.memcg.as_ref().map(|m| {
        let s = k.live.memcg_stats.as_ref();
        Memcg {
            path: m.rel.clone(),
            version: m.version,
            limit_bytes: s.and_then(|s| s.limit_bytes),
            usage_bytes: s.map(|s| s.usage_bytes),
            max_usage_bytes: s.and_then(|s| s.max_usage_bytes),
            failcnt: s.and_then(|s| s.failcnt),
            oom_kills: s.and_then(|s| s.oom_kills),
        }
    });
    let host = k.live.host.clone().unwrap_or_else(host_now);
    // Without levels (no cgroup read): the memcg bound when it has a limit below the host's memory.
    let fallback = match (&memcg, host.mem_total_bytes) {
        (
            Some(Memcg {
                limit_bytes: Some(l), ..
            }),
            Some(total),
        ) if *l < total => "memcg",
        (
            Some(Memcg {
                limit_bytes: Some(_), ..
            }),
            None,
        ) => "memcg",
        _ => "host",
    };
    let binding = k.live.binding.as_ref();
    let binding_kind = binding.map_or(fallback, Binding::kind);
    let timeline: Vec<Point> = v
        .map(|p| {
            p.timeline
                .samples()
                .into_iter()
                .map(|s| Point {
                    t_secs: ((s.t_secs - k.now_t) * 1000.0).round() / 1000.0,
                    footprint_bytes: s.rss_bytes,
                })
                .collect()
        })
        .unwrap_or_default();
    let (cg, hostwide) = top_growers(
        k.table,
        kill.victim_pid,
        memcg.as_ref().map(|m| m.path.as_str()),
        k.memcgs,
    );
    let kill_unix_ms = unix_ms();
    let id = format!("oom-{kill_unix_ms}-{}", kill.victim_pid);
    OomReport {
        version: REPORT_VERSION,
        id: id.clone(),
        kill_unix_ms,
        kill_ts_ns: k.event.hdr.ts_ns,
        kind: crate::report::KIND_KERNEL.into(),
        victim,
        trigger: Trigger {
            pid: k.event.hdr.pid,
            tid: k.event.hdr.tid,
            comm: k.event.hdr.comm.clone(),
        },
        memcg,
        binding_limit: binding_kind.into(),
        binding_memcg: binding.and_then(|b| b.memcg.clone()),
        binding_source: binding.map(|b| b.source),
        memcg_levels: k.live.levels.clone(),
        memcg_timeline: k.live.memcg_timeline.clone(),
        oom_group: oom_group(&k.live.levels, binding).map(|memcg| OomGroup {
            memcg,
            group_id: id.clone(),
            victims: vec![GroupVictim {
                pid: kill.victim_pid,
                comm: kill.victim_comm.clone().or_else(|| v.map(|p| p.comm.clone())),
                report: id.clone(),
            }],
        }),
        host,
        interval_secs: k.interval_secs,
        timeline,
        analysis: v.and_then(|p| p.verdict).map(|x| Analysis {
            pattern: x.pattern,
            leak: x.leak,
            confidence: x.confidence,
            growth_bytes_per_sec: x.growth_bytes_per_sec,
        }),
        flagged: v.is_some_and(|p| p.flagged_at.is_some()),
        flagged_secs_before: v
            .and_then(|p| p.flagged_at)
            .map(|f| ((k.now_t - f) * 10.0).round() / 10.0),
        predicted: v.is_some_and(|p| p.predicted_at.is_some()),
        lead_time_secs: v
            .and_then(|p| p.predicted_at)
            .map(|f| ((k.now_t - f) * 10.0).round() / 10.0),
        predicted_eta_secs: v.and_then(|p| p.predicted_eta),
        top_growers_cgroup: cg,
        top_growers_host: hostwide,
        last_syscalls: v.map(|p| p.syscalls.iter().cloned().collect()).unwrap_or_default(),
        snapshot: v.and_then(|p| p.snapshot.clone()),
        top_sites: k.live.top_sites.clone(),
        runtime: k.live.runtime.clone(),
    }
}

/// A Java heap OOM as a report, built like a kernel kill's: the victim is the JVM (and the
/// "trigger"), the binding limit its heap (`java_heap`), the timeline its footprint, plus the
/// collector's section (`rt`). `dir`: its memory cgroup, read now.
pub fn build_java(
    p: &Proc,
    rt: crate::report::runtime::RuntimeReport,
    dir: Option<&MemcgPath>,
    now_t: f64,
    interval_secs: f64,
) -> OomReport {
    let pid = p.key.pid;
    let stats = dir.and_then(|m| read_memcg_stats(m).ok());
    let memcg = dir.map(|m| {
        let s = stats.as_ref();
        Memcg {
            path: m.rel.clone(),
            version: m.version,
            limit_bytes: s.and_then(|s| s.limit_bytes),
            usage_bytes: s.map(|s| s.usage_bytes),
            max_usage_bytes: s.and_then(|s| s.max_usage_bytes),
            failcnt: s.and_then(|s| s.failcnt),
            oom_kills: s.and_then(|s| s.oom_kills),
        }
    });
    let unix_ms = unix_ms();
    let mut missing: Vec<String> = ["uid", "oom_score_adj", "total_vm_bytes", "pgtables_bytes"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if p.cmdline.is_empty() {
        missing.push("cmdline".into());
    }
    let predicted_at = rt.gc.heap_oom_predicted_at;
    OomReport {
        version: REPORT_VERSION,
        id: format!("oom-{unix_ms}-{pid}"),
        kill_unix_ms: unix_ms,
        kill_ts_ns: crate::util::monotonic_ns(),
        kind: crate::report::KIND_JAVA_HEAP.into(),
        victim: Victim {
            pid,
            comm: Some(p.comm.clone()),
            cmdline: (!p.cmdline.is_empty()).then(|| p.cmdline.clone()),
            uid: None,
            oom_score_adj: None,
            total_vm_bytes: None,
            anon_rss_bytes: Some(p.rss.anon),
            file_rss_bytes: Some(p.rss.file),
            shmem_rss_bytes: Some(p.rss.shmem),
            pgtables_bytes: None,
            container: p.memcg.as_deref().and_then(attribute),
            missing,
        },
        trigger: Trigger {
            pid,
            tid: pid,
            comm: p.comm.clone(),
        },
        memcg,
        binding_limit: crate::report::KIND_JAVA_HEAP.into(),
        binding_memcg: None,
        binding_source: None,
        memcg_levels: Vec::new(),
        memcg_timeline: Vec::new(),
        oom_group: None,
        host: host_now(),
        interval_secs,
        timeline: p
            .timeline
            .samples()
            .into_iter()
            .map(|s| Point {
                t_secs: ((s.t_secs - now_t) * 1000.0).round() / 1000.0,
                footprint_bytes: s.rss_bytes,
            })
            .collect(),
        analysis: p.verdict.map(|x| Analysis {
            pattern: x.pattern,
            leak: x.leak,
            confidence: x.confidence,
            growth_bytes_per_sec: x.growth_bytes_per_sec,
        }),
        flagged: p.flagged_at.is_some(),
        flagged_secs_before: p.flagged_at.map(|f| ((now_t - f) * 10.0).round() / 10.0),
        predicted: predicted_at.is_some(),
        lead_time_secs: predicted_at.map(|f| ((now_t - f) * 10.0).round() / 10.0),
        predicted_eta_secs: None,
        top_growers_cgroup: Vec::new(),
        top_growers_host: Vec::new(),
        last_syscalls: p.syscalls.iter().cloned().collect(),
        snapshot: p.snapshot.clone(),
        top_sites: Vec::new(),
        runtime: Some(rt),
    }
}

/// The cgroup a `memory.oom.group` kill took whole: as the kernel chooses it, the highest level
/// with `memory.oom.group` = 1 from the victim's cgroup up to the one whose limit fired (all
/// levels when the host ran out).
fn oom_group(levels: &[MemcgLevel], binding: Option<&Binding>) -> Option<String> {
    let top = binding
        .and_then(|b| b.memcg.as_deref())
        .and_then(|m| levels.iter().position(|l| l.path == m))
        .unwrap_or(levels.len().saturating_sub(1));
    levels[..levels.len().min(top + 1)]
        .iter()
        .rev()
        .find(|l| l.oom_group == Some(true))
        .map(|l| l.path.clone())
}

/// smaps_rollup, status and the top mappings by RSS, now.
pub fn snapshot(p: &Proc, eta_secs: f64, limit: &str) -> Snapshot {
    let pid = p.key.pid;
    Snapshot {
        pid,
        comm: p.comm.clone(),
        taken_unix_ms: unix_ms(),
        eta_secs: (eta_secs * 10.0).round() / 10.0,
        limit: limit.into(),
        smaps_rollup: read_smaps_rollup(pid).unwrap_or_default(),
        status: read_status_fields(pid).unwrap_or_default(),
        top_mappings: read_top_mappings(pid, 10).unwrap_or_default(),
    }
}
