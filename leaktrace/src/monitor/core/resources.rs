//! The core's hooks for what lives hold outside their RSS (issue 14): descriptors and kernel
//! memory judged per life (`analysis::resources`), the descriptor limit as a second limit, and
//! memory per unit of work (CPU time, `--work-metric`). State in `state::resources`; this file
//! only turns judgements into events.
use std::collections::{BTreeMap, VecDeque};

use super::Core;
use crate::{
    analysis::{
        classify::Pattern,
        host::Part,
        resources::{Change, LeakKind, attribute, decide, fd_classifier, fd_eta, fds_per_sec, kernel_classifier},
        work::{WorkFields, fields, rate},
    },
    input::Batch,
    output::{
        Event, Placement,
        resources::{FdExhaustion, ResourceCleared, ResourceLeak},
    },
    state::{
        Proc,
        resources::{ProcRes, Resources},
    },
    sys::fds::FdKind,
};

/// Work-counter readings kept.
const MAX_WORK: usize = 2048;

/// What the core keeps beside the process table for issue 14.
#[derive(Debug, Default)]
pub struct BeyondRss {
    pub res: Resources,
    /// `(t, counter)` of `--work-metric`.
    pub work: VecDeque<(f64, f64)>,
    /// The watched tree's CPU time: the last reading of every life that was in it.
    group_cpu: BTreeMap<(u32, u64), f64>,
    /// `(t, CPU seconds of the tree)`.
    pub group_cpu_series: VecDeque<(f64, f64)>,
}

impl BeyondRss {
    pub fn new(tl: crate::state::timeline::TimelineConfig) -> BeyondRss {
        BeyondRss {
            res: Resources::new(tl),
            ..BeyondRss::default()
        }
    }

    /// Another tree is watched (`watch --runs`): its CPU time starts afresh.
    pub fn new_group(&mut self) {
        self.group_cpu.clear();
        self.group_cpu_series.clear();
    }
}

impl Core {
    /// The lives' resources, as the sinks read them.
    pub fn resources(&self) -> &Resources {
        &self.beyond.res
    }

    /// Readings of a batch (lives the table tracks only).
    pub(super) fn observe_resources(&mut self, b: &Batch, t: f64) {
        for o in &b.res {
            if self.table.life(o.key()).is_some() {
                self.beyond.res.observe(o, t);
            }
        }
        for &(pid, start, ms) in &b.cpu {
            if self.table.life((pid, start)).is_some() {
                let secs = ms as f64 / 1000.0;
                self.beyond.res.cpu((pid, start), t, secs);
                if self.group.as_ref().is_some_and(|g| g.members.contains(&pid)) {
                    self.beyond.group_cpu.insert((pid, start), secs);
                }
            }
        }
        if let Some(h) = &b.hostmem {
            self.hostmem.observe(h, t);
        }
        if let Some(w) = b.work {
            if self.beyond.work.len() >= MAX_WORK {
                self.beyond.work.pop_front();
            }
            self.beyond.work.push_back((t, w));
        }
        if b.tick {
            self.beyond.res.carry(t);
            if self.group.is_some() && !self.beyond.group_cpu.is_empty() {
                let sum: f64 = self.beyond.group_cpu.values().sum();
                let s = &mut self.beyond.group_cpu_series;
                if s.len() >= MAX_WORK {
                    s.pop_front();
                }
                s.push_back((t, sum));
            }
        }
    }

    /// A life ended: its resource flags are cleared.
    pub(super) fn resources_ended(&mut self, p: &Proc, out: &mut Vec<Event>) {
        let Some(r) = self.beyond.res.remove_life((p.key.pid, p.key.start_ticks)) else {
            return;
        };
        for (e, s) in [(LeakKind::FdLeak, &r.fds), (LeakKind::KernelLeak, &r.kernel)] {
            if let Some(f) = s.flag {
                out.push(self.resource_cleared(p, &r, e, "exited", Some(f.t)));
            }
        }
    }

    fn resource_cleared(&self, p: &Proc, r: &ProcRes, e: LeakKind, reason: &str, since: Option<f64>) -> Event {
        Event::ResourceLeakCleared(Box::new(ResourceCleared {
            subject: self.subject(p),
            kind: e,
            reason: reason.to_string(),
            open_fds: r.fds.last,
            kernel_bytes: r.kernel.last,
            flagged_secs: since.map(|f| (self.now - f).round()),
        }))
    }

    /// How fast the host's SUnreclaim grew over the last `span` seconds (Theil–Sen slope, bytes
    /// per second), when it grew and was read over at least half of that time.
    fn host_slab_growth(&self, span: f64) -> Option<f64> {
        let s = self.hostmem.parts.get(&Part::SlabUnreclaimable)?;
        let pts: Vec<(f64, f64)> = s
            .timeline
            .samples()
            .iter()
            .filter(|x| x.t_secs >= self.now - span)
            .map(|x| (x.t_secs, x.rss_bytes as f64))
            .collect();
        let covered = pts.last()?.0 - pts.first()?.0;
        rate(&pts).filter(|g| *g > 0.0 && covered >= span / 2.0)
    }

    fn resource_leak(&self, p: &Proc, r: &ProcRes, e: LeakKind) -> Event {
        let v = match e {
            LeakKind::FdLeak => r.fds.verdict,
            LeakKind::KernelLeak => r.kernel.verdict,
        };
        let fd_growth = r
            .fds
            .verdict
            .filter(|v| v.pattern == Pattern::Mountain)
            .map(|v| fds_per_sec(&v));
        let mut kind_growth = BTreeMap::new();
        if let Some(f) = r.fds.flag
            && let Some((dt, a, b)) = r.kind_growth(f.t - r.fds.verdict.map_or(60.0, |v| v.span_secs))
            && dt > 0.0
        {
            for k in FdKind::ALL {
                let g = (f64::from(b.get(k)) - f64::from(a.get(k))) / dt;
                if g > 0.0 {
                    kind_growth.insert(k.name(), (g * 10.0).round() / 10.0);
                }
            }
        }
        let all: f64 = self
            .beyond
            .res
            .iter()
            .filter_map(|(_, x)| x.fds.flag.and(x.fds.verdict).map(|v| fds_per_sec(&v).max(0.0)))
            .sum();
        let span = r.fds.verdict.map_or(0.0, |v| v.span_secs);
        let attributed = self
            .host_slab_growth(span)
            .and_then(|h| attribute(h, fd_growth.filter(|_| r.fds.flag.is_some()).unwrap_or(0.0), all))
            .map(f64::round);
        Event::ResourceLeakSuspected(Box::new(ResourceLeak {
            subject: self.subject(p),
            kind: e,
            pattern: v.map_or(Pattern::Flat, |v| v.pattern),
            confidence: v.map_or(0.0, |v| (v.confidence * 1000.0).round() / 1000.0),
            open_fds: r.fds.last,
            fd_growth_per_sec: fd_growth.map(|g| (g * 10.0).round() / 10.0),
            fds_by_kind: r.kinds(),
            fd_kind_growth_per_sec: kind_growth,
            fd_limit: r.fd_limit,
            kernel_bytes: r.kernel.last,
            kernel_growth_bytes_per_sec: r
                .kernel
                .verdict
                .filter(|v| v.pattern == Pattern::Mountain)
                .map(|v| v.growth_bytes_per_sec.round()),
            kernel_includes_reclaimable: r.kernel_reclaimable,
            sock_bytes: r.sock,
            slab_unreclaimable_attributed_bytes_per_sec: attributed,
            rss_bytes: p.rss.resident(),
            footprint_bytes: p.rss.footprint(),
            placement: Placement::of(p.memcg.as_deref()),
        }))
    }

    /// Judge every life's descriptors and kernel memory; predict descriptor exhaustion.
    pub(super) fn judge_resources(&mut self, t: f64, out: &mut Vec<Event>) {
        let stale = 10.0 * self.cfg.interval_secs;
        let (fcfg, kcfg) = (fd_classifier(), kernel_classifier());
        let mut changes: Vec<(u32, LeakKind, Change, Option<f64>)> = Vec::new();
        let mut predict: Vec<u32> = Vec::new();
        for (pid, r) in self.beyond.res.iter_mut() {
            let fd_flag_t = r.fds.flag.map(|f| f.t);
            if let Some(v) = r.fds.classify_if_due(&fcfg, t, stale)
                && let Some(c) = decide(&v, r.fds.last.unwrap_or(0), &mut r.fds.flag, t, true)
            {
                changes.push((pid, LeakKind::FdLeak, c, fd_flag_t));
            }
            // cgroup v1 counts reclaimable slab (a file crawler's dentries) in kernel memory:
            // there it is evidence only beside a descriptor leak.
            let allowed = !r.kernel_reclaimable || r.fds.flag.is_some();
            let k_flag_t = r.kernel.flag.map(|f| f.t);
            if let Some(v) = r.kernel.classify_if_due(&kcfg, t, stale)
                && let Some(c) = decide(&v, r.kernel.last.unwrap_or(0), &mut r.kernel.flag, t, allowed)
            {
                changes.push((pid, LeakKind::KernelLeak, c, k_flag_t));
            }
            let growing = r
                .fds
                .verdict
                .filter(|v| v.pattern == Pattern::Mountain && v.growth_bytes_per_sec > 0.0);
            match growing.and_then(|v| fd_eta(r.fds.last.unwrap_or(0), r.fd_limit, fds_per_sec(&v))) {
                Some(eta) => {
                    r.fd_eta = Some(eta);
                    if eta <= self.cfg.predict_within && r.fd_predicted_at.is_none() {
                        r.fd_predicted_at = Some(t);
                        predict.push(pid);
                    }
                }
                None => {
                    r.fd_eta = None;
                    r.fd_predicted_at = None;
                }
            }
        }
        // In pid order, so a replay gives the same sequence.
        changes.sort_by_key(|c| (c.0, c.1 == LeakKind::KernelLeak));
        predict.sort_unstable();
        for (pid, e, c, since) in changes {
            let (Some(p), Some(r)) = (self.table.get(pid), self.beyond.res.get(pid)) else {
                continue;
            };
            out.push(match c {
                Change::Flagged(_) => self.resource_leak(p, r, e),
                Change::Cleared(reason) => self.resource_cleared(p, r, e, reason, since),
            });
        }
        for pid in predict {
            let (Some(p), Some(r)) = (self.table.get(pid), self.beyond.res.get(pid)) else {
                continue;
            };
            let (Some(eta), Some(limit), Some(v)) = (r.fd_eta, r.fd_limit, r.fds.verdict) else {
                continue;
            };
            out.push(Event::FdExhaustionPredicted(Box::new(FdExhaustion {
                subject: self.subject(p),
                eta_secs: (eta * 10.0).round() / 10.0,
                open_fds: r.fds.last.unwrap_or(0),
                fd_limit: limit,
                fd_growth_per_sec: (fds_per_sec(&v) * 10.0).round() / 10.0,
                placement: Placement::of(p.memcg.as_deref()),
            })));
        }
    }

    /// Bytes retained per unit of work of a life growing at `growth` bytes/s over `span` s.
    pub(super) fn work_of(&self, pid: u32, growth: f64, span: f64) -> Option<WorkFields> {
        let since = self.now - span;
        let cpu = self
            .beyond
            .res
            .get(pid)
            .and_then(|r| r.cpu_rate(since, (span / 2.0).max(self.cfg.interval_secs)));
        let work = (self.cfg.work_pid == Some(pid))
            .then(|| self.work_rate(since))
            .flatten();
        let f = fields(growth, cpu, work);
        (!f.is_empty()).then_some(f)
    }

    fn work_rate(&self, since: f64) -> Option<f64> {
        let pts: Vec<(f64, f64)> = self.beyond.work.iter().copied().filter(|w| w.0 >= since).collect();
        rate(&pts)
    }

    /// The watched tree's bytes per unit of work (`watch`).
    pub(super) fn group_work(&self, growth: f64, span: f64) -> Option<WorkFields> {
        let since = self.now - span;
        let cpu: Vec<(f64, f64)> = self
            .beyond
            .group_cpu_series
            .iter()
            .copied()
            .filter(|c| c.0 >= since)
            .collect();
        let f = fields(growth, rate(&cpu).map(|r| r.max(0.0)), self.work_rate(since));
        (!f.is_empty()).then_some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Core, CoreConfig, World};
    use crate::{
        input::{
            Batch, CgObs, Header, HostMemObs, HostObs, Identity, Line, MemInfoObs, Obs, RECORD_VERSION, Record, ResObs,
            read_record,
        },
        output::Event,
        state::{Proc, Snapshot},
        sys::fds::{FdCounts, FdKind},
    };

    struct NoWorld;

    impl World for NoWorld {
        fn memcg(&mut self, _: u32, _: &str) -> Option<CgObs> {
            None
        }
        fn snapshot(&mut self, _: &Proc, _: f64, _: &str) -> Option<Snapshot> {
            None
        }
    }

    /// 120 s of a host where pid 10 leaks 20 pipes a second (flat RSS) in a cgroup of its own,
    /// pid 20 opens and closes as many, and files pile up in a tmpfs mount from t = 20 to 80 s,
    /// then are deleted; SUnreclaim grows with pid 10's descriptors.
    fn batches() -> Vec<Batch> {
        let mut out = Vec::new();
        for i in 0..120u32 {
            let t = f64::from(i);
            let mut b = Batch::at(t, true);
            b.host = Some(HostObs {
                avail: 16 << 30,
                swap_free: 0,
            });
            if i == 0 {
                for (pid, comm) in [(10, "leaker"), (20, "churner")] {
                    b.new.push(Identity {
                        pid,
                        start: 1,
                        ppid: 1,
                        comm: comm.into(),
                        memcg: Some(format!("/{comm}")),
                        age: Some(3600.0),
                        ..Identity::default()
                    });
                }
            }
            for pid in [10, 20] {
                b.obs.push(Obs(pid, 1, 8 << 20, 0, 0, 0, None));
            }
            let leaked = 40 * u64::from(i);
            let mut kinds = FdCounts::default();
            for _ in 0..leaked {
                kinds.add(FdKind::Pipe);
            }
            b.res.push(ResObs {
                fds: Some(10 + leaked),
                kinds: Some(kinds),
                fd_limit: Some(65536),
                kernel: Some((2 << 20) + leaked * 6000),
                kernel_reclaimable: true,
                ..ResObs::new(10, 1)
            });
            b.res.push(ResObs {
                fds: Some(10 + 40 * u64::from(i % 2)),
                ..ResObs::new(20, 1)
            });
            b.cpu.push((10, 1, u64::from(i) * 100));
            let tmpfs = match i {
                0..20 => 0,
                20..80 => u64::from(i - 20) * (2 << 20),
                _ => 0,
            };
            b.hostmem = Some(Box::new(HostMemObs {
                mem: MemInfoObs {
                    total: 16 << 30,
                    free: 8 << 30,
                    available: 12 << 30,
                    cached: (2 << 30) + tmpfs + u64::from(i) * (4 << 20),
                    shmem: tmpfs,
                    anon: 2 << 30,
                    slab_unreclaimable: (100 << 20) + leaked * 1024,
                    ..MemInfoObs::default()
                },
                tmpfs: vec![("/run/piles".into(), tmpfs)],
                oom_kills: Some(0),
                ..HostMemObs::default()
            }));
            out.push(b);
        }
        out
    }

    fn run(batches: &[Batch]) -> Vec<Event> {
        let mut core = Core::new(CoreConfig::new(1.0), 16 << 30, 0);
        batches.iter().flat_map(|b| core.apply(b, &mut NoWorld)).collect()
    }

    fn named<'a>(ev: &'a [Event], f: impl Fn(&Event) -> bool + 'a) -> Vec<&'a Event> {
        ev.iter().filter(|e| f(e)).collect()
    }

    #[test]
    fn leaks_outside_rss_become_events() {
        let ev = run(&batches());
        let fd: Vec<_> = named(
            &ev,
            |e| matches!(e, Event::ResourceLeakSuspected(r) if r.kind.name() == "fd_leak"),
        );
        assert_eq!(fd.len(), 1, "{ev:#?}");
        let Event::ResourceLeakSuspected(r) = fd[0] else {
            unreachable!()
        };
        assert_eq!(r.subject.pid, 10);
        assert!((35.0..45.0).contains(&r.fd_growth_per_sec.unwrap()), "{r:?}");
        assert!(r.fd_kind_growth_per_sec["pipe"] > 30.0, "{r:?}");
        assert!(r.kernel_bytes.unwrap() > 2 << 20);
        // SUnreclaim grows 40 KiB/s, all of it attributed to the only descriptor leaker.
        let a = r
            .slab_unreclaimable_attributed_bytes_per_sec
            .expect("SUnreclaim attributed");
        assert!((30e3..50e3).contains(&a), "{a}");
        assert!(
            named(
                &ev,
                |e| matches!(e, Event::ResourceLeakSuspected(r) if r.kind.name() == "kernel_leak")
            )
            .len()
                == 1,
            "v1 kernel memory corroborated by the descriptor leak"
        );
        assert!(named(&ev, |e| e.pid() == 20 && matches!(e, Event::ResourceLeakSuspected(_))).is_empty());
        assert!(
            named(&ev, |e| matches!(e, Event::LeakSuspected { .. })).is_empty(),
            "flat RSS"
        );

        let host: Vec<_> = named(&ev, |e| matches!(e, Event::HostLeakSuspected(_)));
        let names: Vec<(&str, Option<&str>)> = host
            .iter()
            .map(|e| match e {
                Event::HostLeakSuspected(h) => (h.part, h.name.as_deref()),
                _ => unreachable!(),
            })
            .collect();
        assert!(names.contains(&("tmpfs", Some("/run/piles"))), "{names:?}");
        assert!(
            !names.iter().any(|n| n.0 == "page_cache" || n.0 == "slab_reclaimable"),
            "caches are not leaks: {names:?}"
        );
        let cleared: Vec<_> = named(
            &ev,
            |e| matches!(e, Event::HostLeakCleared(c) if c.name.as_deref() == Some("/run/piles")),
        );
        assert_eq!(cleared.len(), 1, "{ev:#?}");
        let Event::HostLeakCleared(c) = cleared[0] else {
            unreachable!()
        };
        assert_eq!(c.reason, "released");
    }

    #[test]
    fn a_record_replays_to_the_same_events() {
        let bs = batches();
        let path = std::env::temp_dir().join(format!("leaktrace-fds-record-{}.jsonl", std::process::id()));
        let header = Header {
            leaktrace_record: RECORD_VERSION,
            interval_secs: 1.0,
            source: String::new(),
            kernel: String::new(),
            host: crate::input::HostInfo {
                mem_total: 16 << 30,
                swap_total: 0,
            },
            started_unix_ms: 0,
            default_leak: false,
            note: String::new(),
        };
        let mut text = serde_json::to_string(&header).unwrap() + "\n";
        for b in &bs {
            text += &serde_json::to_string(&Line::Batch(b.clone())).unwrap();
            text += "\n";
        }
        std::fs::write(&path, text).unwrap();
        let rec: Record = read_record(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(rec.batches, bs, "the new fields survive the record");
        let (replayed, _) = crate::monitor::replay::replay(&rec, CoreConfig::new(1.0), None);
        let live: Vec<String> = run(&bs).iter().map(Event::json).collect();
        let again: Vec<String> = replayed.iter().map(|r| r.event.json()).collect();
        assert_eq!(live, again);
        assert!(live.iter().any(|l| l.contains("resource_leak_suspected")));
        // An old record (no `res`, `hostmem`, `work`) still reads.
        let old: Batch = serde_json::from_str(r#"{"t":1.0,"obs":[[1,2,3,4,5,6,null]]}"#).unwrap();
        assert!(old.res.is_empty() && old.hostmem.is_none() && old.work.is_none());
    }
}
