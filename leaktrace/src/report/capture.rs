//! Building an OOM report at the moment of the kill, and pre-OOM snapshots.
use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{Analysis, Grower, Host, Memcg, OomReport, Point, REPORT_VERSION, Snapshot, Trigger, Victim};
use crate::{
    events::{Event, OomKill},
    state::{Proc, ProcessTable, memcg::MemcgResolver},
    sys::{
        cgroup::{MemcgPath, MemcgStats, read_memcg_stats},
        container::attribute,
        proc::{read_cmdline, read_meminfo, read_psi_memory, read_smaps_rollup, read_top_mappings},
    },
};

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What must be read from /proc while the victim still exists — first thing after the event.
#[derive(Debug, Clone, Default)]
pub struct VictimLive {
    pub cmdline: Option<Vec<String>>,
    pub memcg: Option<MemcgPath>,
    pub memcg_stats: Option<MemcgStats>,
    pub host: Option<Host>,
    /// The victim's top allocation sites, read from the kernel at the kill (stacks on).
    pub top_sites: Vec<crate::sites::Site>,
}

pub fn host_now() -> Host {
    let mi = read_meminfo().ok();
    let psi = read_psi_memory();
    Host {
        mem_total_bytes: mi.as_ref().map(|m| m.mem_total),
        mem_available_bytes: mi.as_ref().map(|m| m.mem_available),
        swap_total_bytes: mi.as_ref().map(|m| m.swap_total),
        swap_used_bytes: mi.as_ref().map(|m| m.swap_total.saturating_sub(m.swap_free)),
        psi_some_avg10: psi.as_ref().map(|p| p.some.avg10),
        psi_full_avg10: psi.as_ref().and_then(|p| p.full.as_ref().map(|f| f.avg10)),
    }
}

/// Read the victim's cmdline and memory cgroup now (falling back to what was cached while it ran).
pub fn victim_live(pid: u32, cached: Option<&Proc>, memcgs: &MemcgResolver) -> VictimLive {
    // What was cached while the process ran comes first: a dying process shows an empty cmdline
    // and, on cgroup v1, may already have been moved to the root cgroup.
    let cmdline = cached
        .and_then(|p| p.cmdline.clone())
        .or_else(|| read_cmdline(pid).ok().filter(|c| !c.is_empty()));
    let memcg = cached.and_then(|p| p.memcg.clone()).or_else(|| memcgs.of(pid));
    let memcg_stats = memcg.as_ref().and_then(|m| read_memcg_stats(m).ok());
    VictimLive {
        cmdline,
        memcg,
        memcg_stats,
        host: Some(host_now()),
        top_sites: Vec::new(),
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
                p.memcg
                    .as_ref()
                    .map(|m| m.rel.clone())
                    .or_else(|| memcgs.of(p.key.pid).map(|m| m.rel)),
            )
        })
        .collect();
    let mut in_cg = Vec::new();
    if let Some(cg) = victim_memcg {
        for p in &all {
            if in_cg.len() == TOP_GROWERS {
                break;
            }
            let m = p
                .memcg
                .as_ref()
                .map(|m| m.rel.clone())
                .or_else(|| memcgs.of(p.key.pid).map(|m| m.rel));
            if m.as_deref() == Some(cg) {
                in_cg.push(grower(p, victim, m));
            }
        }
    }
    (in_cg, host)
}

pub struct KillInput<'a> {
    pub event: &'a Event,
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
    // The memcg bound when it has a limit smaller than the host's memory.
    let binding = match (&memcg, host.mem_total_bytes) {
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
    OomReport {
        version: REPORT_VERSION,
        id: format!("oom-{kill_unix_ms}-{}", kill.victim_pid),
        kill_unix_ms,
        kill_ts_ns: k.event.hdr.ts_ns,
        victim,
        trigger: Trigger {
            pid: k.event.hdr.pid,
            tid: k.event.hdr.tid,
            comm: k.event.hdr.comm.clone(),
        },
        memcg,
        binding_limit: binding.into(),
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
    }
}

/// smaps_rollup, status and the top mappings by RSS, now.
pub fn snapshot(p: &Proc, eta_secs: f64, limit: &str) -> Snapshot {
    let pid = p.key.pid;
    let status: BTreeMap<String, String> = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Snapshot {
        pid,
        comm: p.comm.clone(),
        taken_unix_ms: unix_ms(),
        eta_secs: (eta_secs * 10.0).round() / 10.0,
        limit: limit.into(),
        smaps_rollup: read_smaps_rollup(pid).unwrap_or_default(),
        status,
        top_mappings: read_top_mappings(pid, 10).unwrap_or_default(),
    }
}
