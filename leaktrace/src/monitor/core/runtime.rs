//! The core's part for managed runtimes (JVM, CPython): collector events in (from the batches),
//! the GC tracker (`state::gc`) judging them, and what that changes in the events — a heap floor
//! that leaks flags the process even while its RSS is flat, a heap about to run out is an
//! `oom_predicted` against the Java heap, and an OutOfMemoryError is reported like a kill.
use std::collections::{HashMap, HashSet};

use super::{Core, World};
use crate::{
    analysis::{alarm::Evidence, classify::Pattern, predict::LimitKind},
    input::{Batch, Runtime},
    output::{Event, Placement},
    report::runtime::{JavaOom, OomSeen, RuntimeReport},
    state::{
        Proc,
        gc::{GcFigures, GcNotice, GcTracker},
    },
};

/// A JVM that ends with its old generation this full after GC, its heap OOM predicted, died of
/// OutOfMemoryError.
const END_FILL: f64 = 0.9;

/// What `watch` learns of the tree's runtimes while it runs (members may be gone by the verdict).
#[derive(Debug, Default)]
pub struct RuntimeSeen {
    /// Each member's last collector figures.
    pub gc: HashMap<u32, GcFigures>,
    /// A member's heap floor leaked at some point.
    pub heap_leak: bool,
    /// Under `gc_pressure` when last seen.
    pub pressure: bool,
    pub java_oom: Option<(u32, JavaOom)>,
}

/// The runtime state the core keeps.
pub struct Runtimes {
    pub gc: GcTracker,
    /// Java OOMs already reported, and lives the kernel's OOM killer took (their death is not a
    /// Java OutOfMemoryError): one report per life at most.
    done: HashSet<u32>,
    pub seen: RuntimeSeen,
}

impl Runtimes {
    pub fn new(gc: GcTracker) -> Runtimes {
        Runtimes {
            gc,
            done: HashSet::new(),
            seen: RuntimeSeen::default(),
        }
    }
}

/// Which signs say "leak" for `p`: `rss_floor`, `heap_floor`, `gc_pressure`.
pub fn signs(p: &Proc) -> Vec<&'static str> {
    let mut e = Vec::new();
    if p.verdict.is_some_and(|v| v.leak) {
        e.push("rss_floor");
    }
    if let Some(g) = &p.gc {
        if g.heap_floor.is_some_and(|h| h.leak) {
            e.push("heap_floor");
        }
        if g.gc_pressure.pressure {
            e.push("gc_pressure");
        }
    }
    e
}

/// The heap floor of `p` leaks.
pub fn heap_leak(p: &Proc) -> bool {
    p.gc.as_ref().is_some_and(|g| g.heap_floor.is_some_and(|h| h.leak))
}

impl Core {
    /// Attachments and collector events of a batch; stderr lines naming an OutOfMemoryError.
    pub(super) fn runtime_inputs(&mut self, b: &Batch, world: &mut dyn World, out: &mut Vec<Event>) {
        for (pid, start, rt) in &b.runtimes {
            if self.table.get(*pid).is_some_and(|p| p.key.start_ticks == *start) {
                self.rt.gc.add(*pid, *rt);
            }
        }
        for e in &b.gc {
            self.rt.gc.on_event(e);
        }
        for line in &b.java_errors {
            // The JVM of the watched tree (or any tracked one) whose heap was in trouble first.
            let mut jvms: Vec<u32> = self
                .table
                .iter()
                .filter(|p| self.group.as_ref().is_none_or(|g| g.members.contains(&p.key.pid)))
                .filter(|p| p.gc.as_ref().is_some_and(|g| g.runtime == Runtime::Jvm))
                .map(|p| p.key.pid)
                .collect();
            jvms.sort_by_key(|pid| {
                let predicted = self
                    .table
                    .get(*pid)
                    .and_then(|p| p.gc.as_ref())
                    .is_some_and(|g| g.heap_oom_predicted_at.is_some());
                (!predicted, *pid)
            });
            if let Some(pid) = jvms.first().copied() {
                self.java_oom(pid, OomSeen::Stderr, Some(line.trim().to_string()), world, out);
            }
        }
    }

    /// Once per interval, after the RSS classification: the collectors' verdicts.
    pub(super) fn runtime_tick(&mut self, t: f64, world: &mut dyn World, out: &mut Vec<Event>) {
        let notices = self.rt.gc.tick(t);
        for p in self.table.iter_mut() {
            p.gc = self.rt.gc.figures(p.key.pid).map(Box::new);
        }
        let mut notices = notices;
        // Emitted in pid order, so a replay gives the same sequence.
        notices.sort_by_key(notice_pid);
        for n in notices {
            match n {
                GcNotice::HeapLeakSuspected { pid } => {
                    let Some(p) = self.table.get_mut(pid) else { continue };
                    if p.flagged {
                        continue;
                    }
                    p.flagged = true;
                    p.flagged_at = Some(t);
                    let Some(v) = p.verdict else { continue };
                    // What the flag rests on: the heap's rise across the markings.
                    let h = p.gc.as_ref().and_then(|g| g.heap_floor);
                    let e = Evidence {
                        growth_secs: h.map_or(0.0, |h| h.growth_secs),
                        floor_growth_bytes: h.map_or(0.0, |h| h.floor_growth_bytes),
                        confirmed_secs: 0.0,
                        cpu_share: None,
                        significance: self.cfg.classifier.significance,
                    };
                    let p = &self.table.get(pid).expect("just seen").clone();
                    out.push(self.suspected(p, &v, e));
                }
                GcNotice::HeapLeakCleared { pid } => {
                    let Some(p) = self.table.get_mut(pid) else { continue };
                    if p.flagged && !p.verdict.is_some_and(|v| v.leak || v.pattern == Pattern::Mountain) {
                        p.flagged = false;
                        let p = &self.table.get(pid).expect("just seen").clone();
                        out.push(self.cleared(p, "no longer growing"));
                    }
                }
                GcNotice::PressureOn { .. } => {}
                GcNotice::HeapOomPredicted {
                    pid,
                    eta_secs,
                    limit_bytes,
                } => {
                    let Some(p) = self.table.get(pid) else { continue };
                    out.push(Event::OomPredicted {
                        subject: self.subject(p),
                        eta_secs: eta_secs.map_or(0.0, |e| (e * 10.0).round() / 10.0),
                        limit: LimitKind::JavaHeap,
                        limit_bytes,
                        growth_bytes_per_sec: p
                            .gc
                            .as_ref()
                            .and_then(|g| g.heap_floor)
                            .map_or(0.0, |h| h.growth_bytes_per_sec.round()),
                        footprint_bytes: p.rss.footprint(),
                        rss_bytes: p.rss.resident(),
                        placement: Placement::of(p.memcg.as_deref()),
                        limit_memcg: None,
                    });
                }
                GcNotice::HeapExhausted { pid } => self.java_oom(pid, OomSeen::Gc, None, world, out),
            }
        }
        // What the watched tree's verdict will say about its runtimes.
        if let Some(g) = &self.group {
            for pid in &g.members {
                if let Some(f) = self.table.get(*pid).and_then(|p| p.gc.as_deref()) {
                    self.rt.seen.heap_leak |= f.heap_floor.is_some_and(|h| h.leak);
                    // Pressure is a state, not a history: the verdict says whether it lasts.
                    self.rt.seen.pressure = f.gc_pressure.pressure;
                    self.rt.seen.gc.insert(*pid, f.clone());
                }
            }
        }
    }

    /// A life ended: a JVM whose heap OOM was predicted and that sat at its heap's maximum died
    /// of it (unless the kernel killed it); its collector state goes.
    pub(super) fn runtime_ended(&mut self, p: &Proc, world: &mut dyn World, out: &mut Vec<Event>) {
        let pid = p.key.pid;
        if let Some(g) = self.rt.gc.figures(pid) {
            // Near its maximum: OutOfMemoryError comes before the heap is exactly full (regions,
            // humongous objects, the allocation that failed).
            let full = g.heap_exhausted_at.is_some()
                || g.old_gen.as_ref().is_some_and(|o| {
                    o.max_bytes
                        .is_some_and(|m| o.used_after_gc_bytes as f64 >= END_FILL * m as f64)
                });
            if g.heap_oom_predicted_at.is_some() && full && !self.rt.done.contains(&pid) {
                self.java_oom_of(p, OomSeen::Exit, None, world, out);
            }
            if self.group.is_some() {
                self.rt.seen.gc.insert(pid, g);
            }
        }
        self.rt.gc.remove(pid);
        self.rt.done.remove(&pid);
    }

    /// The kernel's OOM killer took `pid`: its exit is not a Java OutOfMemoryError.
    pub fn note_oom_kill(&mut self, pid: u32) {
        self.rt.done.insert(pid);
    }

    /// The collector section of a report on `pid`, if it is a tracked runtime.
    pub fn runtime_report(&self, pid: u32) -> Option<RuntimeReport> {
        let gc = self.rt.gc.figures(pid)?;
        Some(RuntimeReport::new(gc, self.rt.gc.history(pid), self.now, None))
    }

    fn java_oom(
        &mut self,
        pid: u32,
        seen: OomSeen,
        error: Option<String>,
        world: &mut dyn World,
        out: &mut Vec<Event>,
    ) {
        if self.rt.done.contains(&pid) {
            return;
        }
        self.table.catch_up(pid);
        let Some(p) = self.table.get(pid).cloned() else { return };
        self.java_oom_of(&p, seen, error, world, out);
    }

    /// Report a Java OutOfMemoryError of `p` (once per life), with its report when the live system
    /// can build one.
    fn java_oom_of(
        &mut self,
        p: &Proc,
        seen: OomSeen,
        error: Option<String>,
        world: &mut dyn World,
        out: &mut Vec<Event>,
    ) {
        let pid = p.key.pid;
        let Some(mut rt) = self.runtime_report(pid) else { return };
        let j = JavaOom {
            seen,
            error: error.clone(),
            exit_code: None,
        };
        rt.java_oom = Some(j.clone());
        self.rt.done.insert(pid);
        if self.group.as_ref().is_some_and(|g| g.members.contains(&pid)) {
            self.rt.seen.java_oom.get_or_insert((pid, j));
        }
        let predicted_at = rt.gc.heap_oom_predicted_at;
        let event = Event::JavaOom {
            subject: self.subject(p),
            seen,
            error,
            predicted: predicted_at.is_some(),
            lead_time_secs: predicted_at.map(|f| ((self.now - f) * 10.0).round() / 10.0),
            flagged: p.flagged_at.is_some(),
            old_gen: rt.gc.old_gen.clone(),
            heap_floor: rt.gc.heap_floor,
            footprint_bytes: p.rss.footprint(),
            rss_bytes: p.rss.resident(),
            placement: Placement::of(p.memcg.as_deref()),
            report: None,
            full: world.java_report(p, rt).map(Box::new),
        };
        out.push(event);
    }
}

fn notice_pid(n: &GcNotice) -> u32 {
    match *n {
        GcNotice::HeapLeakSuspected { pid }
        | GcNotice::HeapLeakCleared { pid }
        | GcNotice::PressureOn { pid }
        | GcNotice::HeapOomPredicted { pid, .. }
        | GcNotice::HeapExhausted { pid } => pid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        input::{CgObs, GcEvent, HostObs, Identity, Obs},
        monitor::core::CoreConfig,
        state::Snapshot,
    };

    const MIB: u64 = 1 << 20;
    const S: u64 = 1_000_000_000;

    /// No memory cgroups, no snapshots; Java reports built as an empty marker.
    struct Nothing {
        reports: usize,
    }

    impl World for Nothing {
        fn memcg(&mut self, _pid: u32, _memcg: &str) -> Option<CgObs> {
            None
        }
        fn snapshot(&mut self, _p: &Proc, _eta: f64, _limit: &str) -> Option<Snapshot> {
            None
        }
        fn java_report(&mut self, p: &Proc, rt: RuntimeReport) -> Option<crate::report::OomReport> {
            self.reports += 1;
            let mut r = crate::report::render::tests::sample();
            r.victim.pid = p.key.pid;
            r.runtime = Some(rt);
            Some(r)
        }
    }

    fn ident(pid: u32, ppid: u32) -> Identity {
        Identity {
            pid,
            start: 5,
            ppid,
            comm: "java".into(),
            cmdline: vec!["java".into()],
            memcg: None,
            limit: None,
            ..Identity::default()
        }
    }

    /// One young collection of a G1 JVM at `ns`: heap after = `after` (old gen), max 96 MiB.
    fn young(pid: u32, ns: u64, before: u64, after: u64, full: bool) -> Vec<GcEvent> {
        let mgr = if full {
            "G1 Old Generation"
        } else {
            "G1 Young Generation"
        };
        let pool = |ts_ns, end, used| GcEvent::JvmPool {
            pid,
            ts_ns,
            end,
            manager: mgr.into(),
            pool: "G1 Old Gen".into(),
            used,
            committed: 96 * MIB,
            max: Some(96 * MIB),
        };
        vec![
            GcEvent::JvmGcBegin { pid, ts_ns: ns, full },
            pool(ns, false, before),
            pool(ns + 10_000_000, true, after),
            GcEvent::JvmGcEnd {
                pid,
                ts_ns: ns + 10_000_000,
            },
        ]
    }

    /// G1's remark and cleanup pauses: a marking of the old generation.
    fn marking(pid: u32, ns: u64) -> Vec<GcEvent> {
        vec![
            GcEvent::JvmGcBegin {
                pid,
                ts_ns: ns,
                full: false,
            },
            GcEvent::JvmGcEnd {
                pid,
                ts_ns: ns + 1_000_000,
            },
            GcEvent::JvmGcBegin {
                pid,
                ts_ns: ns + 2_000_000,
                full: false,
            },
            GcEvent::JvmGcEnd {
                pid,
                ts_ns: ns + 3_000_000,
            },
        ]
    }

    fn tick(t: f64) -> Batch {
        Batch {
            host: Some(HostObs {
                avail: 16 << 30,
                swap_free: 0,
            }),
            ..Batch::at(t, true)
        }
    }

    /// A JVM whose RSS is flat (its heap committed at start) while its heap fills at 600 KiB/s,
    /// marked every 5 s once past 40 MiB; `watch` follows it as the tree's root when `tree`.
    fn heap_leak(tree: bool) -> (Core, Vec<Event>, Nothing, u64) {
        let mut cfg = CoreConfig::new(1.0);
        cfg.tree_root = tree.then_some(7);
        let mut core = Core::new(cfg, 32 << 30, 0);
        let mut w = Nothing { reports: 0 };
        let mut out = Vec::new();
        let mut b = Batch::at(0.0, false);
        b.new.push(ident(7, 1));
        b.obs.push(Obs(7, 5, 200 * MIB, 20 * MIB, 0, 0, None));
        out.extend(core.apply(&b, &mut w));
        let mut b = tick(1.0);
        b.runtimes.push((7, 5, Runtime::Jvm));
        out.extend(core.apply(&b, &mut w));
        let mut heap = 10 * MIB;
        let mut s = 2;
        while heap < 93 * MIB {
            let mut b = tick(s as f64);
            b.obs.push(Obs(7, 5, 200 * MIB, 20 * MIB, 0, 0, None));
            let ns = s * S - S / 2;
            b.gc.extend(young(7, ns, heap + 30 * MIB, heap + 600 * 1024, false));
            heap += 600 * 1024;
            if heap > 40 * MIB && s % 5 == 0 {
                b.gc.extend(marking(7, ns + 20_000_000));
            }
            out.extend(core.apply(&b, &mut w));
            s += 1;
        }
        (core, out, w, s)
    }

    #[test]
    fn a_heap_leak_behind_flat_rss_is_flagged_predicted_and_reported_at_exit() {
        let (mut core, mut out, mut w, s) = heap_leak(false);
        let kinds: Vec<String> = out.iter().map(|e| e.json()).collect();
        let sus = out
            .iter()
            .find_map(|e| match e {
                Event::LeakSuspected { signs, verdict, gc, .. } => Some((signs.clone(), *verdict, gc.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no leak_suspected: {kinds:?}"));
        assert!(
            sus.0.contains(&"heap_floor") && !sus.0.contains(&"rss_floor"),
            "{sus:?}"
        );
        assert_ne!(sus.1.pattern, Pattern::Mountain, "RSS is flat");
        let g = sus.2.expect("gc figures");
        assert!(g.heap_floor.unwrap().markings >= 2, "{g:?}");
        assert!(
            out.iter().any(|e| matches!(
                e,
                Event::OomPredicted {
                    limit: LimitKind::JavaHeap,
                    ..
                }
            )),
            "{kinds:?}"
        );
        // The table's process carries the figures for the sinks.
        assert!(core.table().get(7).unwrap().gc.is_some());
        // It dies at its heap's maximum: a Java OOM, seen at its exit, with its report.
        let mut b = Batch::at(s as f64 + 0.5, false);
        b.exit.push((7, 5));
        out.clear();
        out.extend(core.apply(&b, &mut w));
        let Some(Event::JavaOom {
            seen, predicted, full, ..
        }) = out.iter().find(|e| matches!(e, Event::JavaOom { .. }))
        else {
            panic!("no java_oom: {out:?}")
        };
        assert_eq!((*seen, *predicted), (OomSeen::Exit, true));
        let r = full.as_ref().expect("the live system built the report");
        assert!(r.runtime.as_ref().unwrap().history.len() > 50);
        assert_eq!(w.reports, 1);
        assert!(core.rt.gc.figures(7).is_none(), "forgotten at its end");
    }

    #[test]
    fn a_kernel_kill_is_not_a_java_oom_and_stderr_is_seen_in_the_verdict() {
        let (mut core, _, mut w, s) = heap_leak(false);
        core.note_oom_kill(7);
        let mut b = Batch::at(s as f64, false);
        b.exit.push((7, 5));
        let out = core.apply(&b, &mut w);
        assert!(!out.iter().any(|e| matches!(e, Event::JavaOom { .. })), "{out:?}");

        // `watch -- java ...`: the stderr line names it, once; the verdict says so.
        let (mut core, _, mut w, s) = heap_leak(true);
        let mut b = Batch::at(s as f64, false);
        b.java_errors
            .push("Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space".into());
        b.java_errors.push("java.lang.OutOfMemoryError again".into());
        let out = core.apply(&b, &mut w);
        let ooms: Vec<&Event> = out.iter().filter(|e| matches!(e, Event::JavaOom { .. })).collect();
        assert_eq!(ooms.len(), 1, "{out:?}");
        let (v, leak) = core.verdict_event(Some(1), None).unwrap();
        assert!(leak);
        let v: serde_json::Value = serde_json::from_str(&v.json()).unwrap();
        assert_eq!(v["leak"], true);
        assert_eq!(v["signs"], serde_json::json!(["heap_floor"]));
        assert_eq!(v["gc_pid"], 7);
        assert_eq!(v["java_oom"]["seen"], "stderr");
        assert!(v["java_oom"]["error"].as_str().unwrap().contains("Java heap space"));
    }

    #[test]
    fn collector_events_replay_from_the_record_format() {
        let e = young(3, 42, 10, 5, true);
        let b = Batch {
            gc: e.clone(),
            runtimes: vec![(3, 9, Runtime::Python)],
            java_errors: vec!["x".into()],
            ..Batch::at(1.0, true)
        };
        let line = serde_json::to_string(&b).unwrap();
        assert!(
            line.contains(r#""k":"jvm_gc_begin""#) && line.contains(r#""runtimes":[[3,9,"python"]]"#),
            "{line}"
        );
        let back: Batch = serde_json::from_str(&line).unwrap();
        assert_eq!(back, b);
        assert!(!b.is_empty() && Batch::at(1.0, true).is_empty());
    }
}
