//! The output contract: every line leaktrace prints, as one typed enum.
//!
//! `trace` turns decoded kernel events into these; the monitor emits the analysed ones
//! (`leak_suspected`, `oom_kill` with its report, ...); sinks only serialise or render them. The
//! JSON form is the serde form of [`Event`] (tagged by `"event"`, README.md "JSON lines", checked
//! by a test); the text form is [`Event::text`] (in `text.rs`, beside it).
pub mod resources;
pub mod text;

use std::{collections::BTreeMap, path::PathBuf};

use serde::Serialize;

use crate::{
    analysis::{
        alarm::Evidence,
        classify::{Pattern, Verdict},
        predict::LimitKind,
        score::{LifeScore, Summary},
        work::WorkFields,
    },
    events::{KernelEvent, OomKill as KernelOomKill, Payload, is_err_ret},
    report::{
        OomReport, Snapshot,
        runtime::{JavaOom, OomSeen},
    },
    runtimes::{
        histogram::{ClassEntry, HistogramDiff},
        snapshots::SnapshotReason,
    },
    sites::{Row, Site},
    state::gc::{GcFigures, HeapFloor, PoolFigures},
    sys::container::ContainerInfo,
};

/// Who a kernel event is about: `pid` is the process (tgid), `tid` the thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    /// CLOCK_MONOTONIC nanoseconds (the kernel's `bpf_ktime_get_ns` clock).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

/// Who an analysed event is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subject {
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    /// Monitor clock (seconds since start), for the text form only.
    #[serde(skip)]
    pub t: f64,
}

/// Where a process runs: its memory cgroup (relative to the controller's root) and container.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Placement {
    pub memcg: Option<String>,
    pub container: Option<ContainerInfo>,
}

impl Placement {
    pub fn of(memcg: Option<&str>) -> Placement {
        Placement {
            memcg: memcg.map(str::to_string),
            container: memcg.and_then(crate::sys::container::attribute),
        }
    }
}

/// The classifier's verdict as every event shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VerdictFields {
    pub pattern: Pattern,
    pub leak: bool,
    /// Rounded to 0.001.
    pub confidence: f64,
    /// Rounded to a byte.
    pub growth_bytes_per_sec: f64,
}

impl From<&Verdict> for VerdictFields {
    fn from(v: &Verdict) -> Self {
        VerdictFields {
            pattern: v.pattern,
            leak: v.leak,
            confidence: (v.confidence * 1000.0).round() / 1000.0,
            growth_bytes_per_sec: v.growth_bytes_per_sec.round(),
        }
    }
}

/// What the live agent adds to a kernel `oom_kill` (absent in `trace`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KillContext {
    pub memcg: Option<String>,
    pub container: Option<ContainerInfo>,
    /// `memcg` or `host`: the limit that ran out.
    pub binding_limit: String,
    /// The cgroup whose limit ran out (the victim's or an ancestor), null for the host.
    pub binding_memcg: Option<String>,
    /// A `memory.oom.group` kill: the group and its victims so far (null otherwise).
    pub oom_group: Option<crate::report::OomGroup>,
    pub predicted: bool,
    pub lead_time_secs: Option<f64>,
    pub flagged: bool,
    /// The report file, once a sink wrote it (null when it could not be written).
    pub report: Option<PathBuf>,
    /// The whole report, for the sinks that store or render it.
    #[serde(skip)]
    pub full: Box<OomReport>,
}

/// Every line leaktrace prints as JSON (`--json`): README.md "JSON lines".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Mmap {
        #[serde(flatten)]
        task: Task,
        /// Where it was mapped on success, else the requested hint.
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i32,
        offset: u64,
        hint_addr: u64,
        ok: bool,
        errno: Option<i64>,
    },
    Munmap {
        #[serde(flatten)]
        task: Task,
        addr: u64,
        len: u64,
        ok: bool,
        errno: Option<i64>,
    },
    Brk {
        #[serde(flatten)]
        task: Task,
        /// 0 = a query.
        requested: u64,
        /// Null when the process's break was not seen before.
        old_brk: Option<u64>,
        new_brk: u64,
        ok: bool,
    },
    Mremap {
        #[serde(flatten)]
        task: Task,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        addr: u64,
        ok: bool,
        errno: Option<i64>,
    },
    Fork {
        #[serde(flatten)]
        task: Task,
        child_pid: u32,
    },
    Exec {
        #[serde(flatten)]
        task: Task,
        filename: String,
        old_pid: u32,
    },
    Exit {
        #[serde(flatten)]
        task: Task,
        /// The value given to `exit_group()`; null when the process died another way.
        exit_code: Option<i32>,
    },
    /// `task` is the victim's; the trigger (the task that ran the OOM killer) is named apart.
    OomKill {
        #[serde(flatten)]
        task: Task,
        anon_rss_bytes: Option<u64>,
        file_rss_bytes: Option<u64>,
        shmem_rss_bytes: Option<u64>,
        total_vm_bytes: Option<u64>,
        pgtables_bytes: Option<u64>,
        uid: Option<u32>,
        oom_score_adj: Option<i32>,
        trigger_pid: u32,
        trigger_tid: u32,
        trigger_comm: String,
        /// Where the fields the kernel's tracepoint lacks came from (`/proc`, `kernel log`).
        filled_from: Vec<&'static str>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        context: Option<Box<KillContext>>,
    },
    /// Ring-buffer reservations that failed since the last report: a drop is never silent.
    Dropped {
        #[serde(flatten)]
        task: Task,
        kind: String,
        count: u64,
    },
    LeakSuspected {
        #[serde(flatten)]
        subject: Subject,
        rss_bytes: u64,
        footprint_bytes: u64,
        anon_bytes: u64,
        swap_bytes: u64,
        samples: usize,
        observed_secs: f64,
        #[serde(flatten)]
        verdict: VerdictFields,
        #[serde(flatten)]
        placement: Placement,
        /// What the alarm rests on (`analysis::alarm`).
        evidence: Evidence,
        /// Which signs say "leak": `rss_floor` (the footprint's floor), `heap_floor` (a JVM's
        /// heap after GC), `gc_pressure`.
        signs: Vec<&'static str>,
        /// The collector of a JVM / CPython, else null.
        gc: Option<Box<GcFigures>>,
        /// Floor growth per CPU-second (and per unit of `--work-metric`), when measured.
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        work: Option<WorkFields>,
    },
    LeakCleared {
        #[serde(flatten)]
        subject: Subject,
        /// `no longer growing` or `exited`.
        reason: String,
        rss_bytes: u64,
        footprint_bytes: u64,
        flagged_secs: Option<f64>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        verdict: Option<VerdictFields>,
    },
    OomPredicted {
        #[serde(flatten)]
        subject: Subject,
        eta_secs: f64,
        limit: LimitKind,
        limit_bytes: u64,
        growth_bytes_per_sec: f64,
        footprint_bytes: u64,
        rss_bytes: u64,
        #[serde(flatten)]
        placement: Placement,
        /// The cgroup whose limit binds (the tightest level above the process), null for the host.
        limit_memcg: Option<String>,
    },
    OomSnapshot {
        #[serde(flatten)]
        subject: Subject,
        eta_secs: f64,
        limit: String,
        /// The snapshot file, once a sink wrote it.
        path: Option<PathBuf>,
        #[serde(skip)]
        snapshot: Box<Snapshot>,
    },
    /// A cgroup above tracked processes is throttled (`memory.high`) or failing charges
    /// (`memory.max`): pre-OOM evidence. Counts are the rise since the level's previous report.
    MemcgPressure {
        ts_ns: u64,
        memcg: String,
        usage_bytes: Option<u64>,
        high_bytes: Option<u64>,
        limit_bytes: Option<u64>,
        high_events: u64,
        max_events: u64,
        psi_some_avg10: Option<f64>,
        psi_full_avg10: Option<f64>,
        /// Monitor clock (seconds since start), for the text form only.
        #[serde(skip)]
        t: f64,
    },
    /// `watch`: the watched tree at each interval.
    Sample {
        #[serde(flatten)]
        subject: Subject,
        t_secs: f64,
        processes: usize,
        rss_bytes: u64,
        footprint_bytes: u64,
        #[serde(flatten)]
        verdict: VerdictFields,
    },
    /// `watch`: the last line.
    Verdict {
        pid: u32,
        comm: String,
        start_rss_bytes: u64,
        end_rss_bytes: u64,
        peak_rss_bytes: u64,
        samples: usize,
        duration_secs: f64,
        command_exit_code: Option<i32>,
        #[serde(flatten)]
        verdict: VerdictFields,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        sites: Option<VerdictSites>,
        /// Which signs say "leak" (`leak` is true when `rss_floor` or `heap_floor` does):
        /// `rss_floor`, `heap_floor`, `gc_pressure`.
        signs: Vec<&'static str>,
        /// The tree's JVM / CPython collector, as last seen (null when none).
        gc_pid: Option<u32>,
        gc: Option<Box<GcFigures>>,
        java_oom: Option<JavaOom>,
        /// Floor growth per CPU-second of the tree (and per unit of `--work-metric`).
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        work: Option<WorkFields>,
    },
    /// A JVM threw OutOfMemoryError, or died of it.
    JavaOom {
        #[serde(flatten)]
        subject: Subject,
        /// `gc`, `exit` or `stderr`: how it was seen.
        seen: OomSeen,
        /// The stderr line, when seen there.
        error: Option<String>,
        predicted: bool,
        lead_time_secs: Option<f64>,
        flagged: bool,
        old_gen: Option<PoolFigures>,
        heap_floor: Option<HeapFloor>,
        footprint_bytes: u64,
        rss_bytes: u64,
        #[serde(flatten)]
        placement: Placement,
        /// The report file, once a sink wrote it (`run`).
        report: Option<PathBuf>,
        /// The whole report (filled in by the live agent; absent in a replay).
        #[serde(skip)]
        full: Option<Box<OomReport>>,
    },
    /// A JVM's live objects by class (`heap`; `run --heap-snapshots`, with the diff against the
    /// first histogram of that JVM).
    HeapHistogram {
        #[serde(flatten)]
        subject: Subject,
        /// Why `run` took it (`flagged`, `oom_predicted`); null for `heap`.
        reason: Option<SnapshotReason>,
        total_bytes: u64,
        total_instances: u64,
        /// Largest first (`run`: the ten largest).
        classes: Vec<ClassEntry>,
        diff: Option<HistogramDiff>,
        error: Option<String>,
    },
    /// `heap --diff`: what grew between two histograms.
    HeapDiff {
        #[serde(flatten)]
        subject: Subject,
        before_bytes: u64,
        after_bytes: u64,
        diff: HistogramDiff,
    },
    /// `sites --json`: the table.
    Sites(Box<SitesTable>),
    /// `analyze`: how one life of a record was judged against its label.
    Scored(Box<LifeScore>),
    /// `analyze`: the whole record's score (the last line).
    Score(Summary),
    /// A life leaks outside its RSS: descriptors (`fd_leak`) or kernel memory (`kernel_leak`).
    ResourceLeakSuspected(Box<resources::ResourceLeak>),
    ResourceLeakCleared(Box<resources::ResourceCleared>),
    /// A life's descriptors reach RLIMIT_NOFILE soon (EMFILE).
    FdExhaustionPredicted(Box<resources::FdExhaustion>),
    /// A part of the host's memory is a mountain (tmpfs mount, slab, ...).
    HostLeakSuspected(Box<resources::HostLeak>),
    HostLeakCleared(Box<resources::HostCleared>),
    /// `watch --runs N`: the last line.
    Runs(Box<resources::Runs>),
    /// `leaktrace host`: where the host's memory is.
    Host(Box<resources::HostReport>),
    /// `analyze --prometheus`: one series judged over the range.
    SeriesVerdict(Box<SeriesVerdict>),
    /// `analyze --prometheus`: the last line.
    SeriesSummary(SeriesSummary),
}

/// `analyze --prometheus`: one series of the query, replayed through the agent's logic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesVerdict {
    /// The series' labels, without those that name one life (`pid`, container ids).
    pub labels: BTreeMap<String, String>,
    /// Runs of the series (a process from start to exit): cut where the series went stale, fell
    /// to 0, or changed its life labels.
    pub lives: usize,
    /// Values read.
    pub points: usize,
    /// First and last value (RFC 3339, UTC); null when every value was 0.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The verdict on its flagged life (the last one flagged), else on its latest life.
    pub pattern: Pattern,
    /// The agent would have raised `leak_suspected` on it during the range.
    pub leak: bool,
    pub confidence: f64,
    pub growth_bytes_per_sec: f64,
    /// When it would first have been flagged (RFC 3339, UTC).
    pub flagged_at: Option<String>,
    /// Still flagged at the end of the range.
    pub still_flagged: bool,
    /// `leak_suspected` raised over the range (all lives).
    pub alarms: usize,
    pub last_bytes: u64,
    pub peak_bytes: u64,
    /// The limit (`--limit-query`) at its last value.
    pub limit_bytes: Option<u64>,
    /// Time to that limit at the end of the range, at the leak's rate (growing series only).
    pub eta_secs: Option<f64>,
}

/// `analyze --prometheus`: what was read and what was found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesSummary {
    pub series: usize,
    pub lives: usize,
    pub points: usize,
    /// Series with `leak`.
    pub leaks: usize,
    pub step_secs: f64,
    /// The range asked for (RFC 3339, UTC).
    pub from: String,
    pub to: String,
    /// `query_range` calls made (a long range at a fine step takes several).
    pub queries: usize,
}

/// Where the watched tree grew (`watch` with stacks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictSites {
    pub top_sites: Vec<Site>,
    pub unattributed_bytes: u64,
    pub stack_collisions: u64,
}

/// `leaktrace sites`: bytes by allocation site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SitesTable {
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    /// `growth` or `malloc`.
    pub mode: String,
    pub fault_sample: u64,
    pub duration_secs: f64,
    pub sites: Vec<Row>,
    pub unattributed_bytes: u64,
    /// The kernel side's counters, as fields of this object.
    #[serde(flatten)]
    pub counters: crate::sites::Counters,
    /// How the copies unwound.
    pub unwind: crate::sites::unwind::UnwindStats,
    /// Also written as folded stacks here (text form only).
    #[serde(skip)]
    pub folded: Option<PathBuf>,
}

fn errno(ret: i64) -> Option<i64> {
    is_err_ret(ret).then_some(-ret)
}

fn kb(v: Option<u64>) -> Option<u64> {
    v.map(|k| k.saturating_mul(1024))
}

impl Event {
    /// A decoded kernel event, as `trace` prints it (sizes in bytes).
    pub fn from_kernel(e: &KernelEvent) -> Event {
        let h = &e.hdr;
        let task = Task {
            ts_ns: h.ts_ns,
            pid: h.pid,
            tid: h.tid,
            comm: h.comm.clone(),
        };
        match &e.payload {
            Payload::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                off,
                ret,
            } => {
                let ok = !is_err_ret(*ret);
                Event::Mmap {
                    task,
                    addr: if ok { *ret as u64 } else { *addr },
                    len: *len,
                    prot: *prot,
                    flags: *flags,
                    fd: *fd as i32,
                    offset: *off,
                    hint_addr: *addr,
                    ok,
                    errno: errno(*ret),
                }
            }
            Payload::Munmap { addr, len, ret } => Event::Munmap {
                task,
                addr: *addr,
                len: *len,
                ok: !is_err_ret(*ret),
                errno: errno(*ret),
            },
            Payload::Brk {
                requested,
                old_brk,
                new_brk,
            } => Event::Brk {
                task,
                requested: *requested,
                old_brk: *old_brk,
                new_brk: *new_brk,
                // brk() returns the unchanged break when it cannot move it.
                ok: *requested == 0 || new_brk == requested,
            },
            Payload::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
                ret,
            } => {
                let ok = !is_err_ret(*ret);
                Event::Mremap {
                    task,
                    old_addr: *old_addr,
                    old_len: *old_len,
                    new_len: *new_len,
                    flags: *flags,
                    addr: if ok { *ret as u64 } else { *new_addr },
                    ok,
                    errno: errno(*ret),
                }
            }
            Payload::Fork { child_pid } => Event::Fork {
                task,
                child_pid: *child_pid,
            },
            Payload::Exec { old_pid, filename, .. } => Event::Exec {
                task,
                filename: filename.clone(),
                old_pid: *old_pid,
            },
            Payload::Exit { exit_code } => Event::Exit {
                task,
                exit_code: *exit_code,
            },
            Payload::OomKill(k) => Event::oom_kill(e, k, None),
        }
    }

    /// An OOM kill: the victim as the subject, the trigger named apart; `context` from the agent.
    pub fn oom_kill(e: &KernelEvent, k: &KernelOomKill, context: Option<Box<KillContext>>) -> Event {
        Event::OomKill {
            task: Task {
                ts_ns: e.hdr.ts_ns,
                pid: k.victim_pid,
                tid: k.victim_pid,
                comm: e.subject_comm().to_string(),
            },
            anon_rss_bytes: kb(k.anon_rss_kb),
            file_rss_bytes: kb(k.file_rss_kb),
            shmem_rss_bytes: kb(k.shmem_rss_kb),
            total_vm_bytes: kb(k.total_vm_kb),
            pgtables_bytes: kb(k.pgtables_kb),
            uid: k.uid,
            oom_score_adj: k.oom_score_adj,
            trigger_pid: e.hdr.pid,
            trigger_tid: e.hdr.tid,
            trigger_comm: e.hdr.comm.clone(),
            filled_from: k.filled_from.clone(),
            context,
        }
    }

    pub fn dropped(ts_ns: u64, kind: &str, count: u64) -> Event {
        Event::Dropped {
            task: Task {
                ts_ns,
                pid: 0,
                tid: 0,
                comm: String::new(),
            },
            kind: kind.to_string(),
            count,
        }
    }

    /// The process the event is about (0 for host-wide ones).
    pub fn pid(&self) -> u32 {
        match self {
            Event::LeakSuspected { subject, .. }
            | Event::LeakCleared { subject, .. }
            | Event::OomPredicted { subject, .. }
            | Event::OomSnapshot { subject, .. }
            | Event::Sample { subject, .. }
            | Event::JavaOom { subject, .. }
            | Event::HeapHistogram { subject, .. }
            | Event::HeapDiff { subject, .. } => subject.pid,
            Event::Mmap { task, .. }
            | Event::Munmap { task, .. }
            | Event::Brk { task, .. }
            | Event::Mremap { task, .. }
            | Event::Fork { task, .. }
            | Event::Exec { task, .. }
            | Event::Exit { task, .. }
            | Event::OomKill { task, .. }
            | Event::Dropped { task, .. } => task.pid,
            Event::Verdict { pid, .. } => *pid,
            Event::Sites(s) => s.pid,
            Event::Scored(l) => l.pid,
            Event::Score(_) | Event::MemcgPressure { .. } | Event::SeriesVerdict(_) | Event::SeriesSummary(_) => 0,

            Event::ResourceLeakSuspected(e) => e.subject.pid,
            Event::ResourceLeakCleared(e) => e.subject.pid,
            Event::FdExhaustionPredicted(e) => e.subject.pid,
            Event::HostLeakSuspected(_) | Event::HostLeakCleared(_) | Event::Host(_) => 0,
            Event::Runs(r) => r.runs.first().map_or(0, |r| r.pid),
        }
    }

    /// The JSON line.
    pub fn json(&self) -> String {
        // Serialising plain data with string keys cannot fail; a failure would be a bug in the
        // contract's types, so it is shown rather than hidden.
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"event":"error","error":"{e}"}}"#))
    }
}

#[cfg(test)]
mod tests;
