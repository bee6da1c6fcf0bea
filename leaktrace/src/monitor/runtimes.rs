//! The driver's part for managed runtimes: attaching the collector probes of the processes it
//! tracks (and detaching them), reading their events into the batches, class histograms (`run
//! --heap-snapshots`) taken in the background when the core flags a JVM or predicts its OOM, and a
//! watched command's stderr lines.
use super::Monitor;
use crate::{
    input::{Batch, GcEvent},
    output::Event,
    runtimes::{
        probes::{self, AttachNote, RuntimeProbes},
        snapshots::{HeapSnapshots, SnapshotReason},
    },
    state::gc::{PoolKind, pool_kind},
};

/// What the driver holds for runtimes (`MonitorConfig::runtimes` on and the USDT program loaded).
pub struct Live {
    pub probes: RuntimeProbes,
    /// Collector events read since the last batch (heap pools only for JVMs).
    pub pending: Vec<GcEvent>,
    /// `run --heap-snapshots`.
    pub snapshots: Option<HeapSnapshots>,
    /// Collector events lost to a full ring, already said.
    reported_drops: u64,
    /// CLOCK_MONOTONIC ns at the monitor's t = 0.
    t0_ns: u64,
}

impl Live {
    pub fn new(probes: RuntimeProbes, heap_snapshots: bool, t0_ns: u64) -> Live {
        Live {
            probes,
            pending: Vec::new(),
            snapshots: heap_snapshots.then(HeapSnapshots::default),
            reported_drops: 0,
            t0_ns,
        }
    }

    /// Everything in the ring, rebased to the monitor's clock; non-heap JVM pools (code cache,
    /// metaspace) left out.
    pub fn read(&mut self) {
        let mut new = Vec::new();
        self.probes.drain(&mut new);
        let t0 = self.t0_ns;
        for mut e in new {
            let heap = !matches!(&e, GcEvent::JvmPool { pool, .. } if pool_kind(pool) == PoolKind::NonHeap);
            if heap {
                rebase(&mut e, t0);
                self.pending.push(e);
            }
        }
    }
}

fn rebase(e: &mut GcEvent, t0: u64) {
    let ts = match e {
        GcEvent::JvmGcBegin { ts_ns, .. }
        | GcEvent::JvmGcEnd { ts_ns, .. }
        | GcEvent::JvmPool { ts_ns, .. }
        | GcEvent::JvmShutdown { ts_ns, .. }
        | GcEvent::PyGcStart { ts_ns, .. }
        | GcEvent::PyGcDone { ts_ns, .. } => ts_ns,
    };
    *ts = ts.saturating_sub(t0);
}

impl Monitor {
    /// Take the collector probes if they can be had (the USDT program loaded).
    pub(super) fn start_runtimes(&mut self, heap_snapshots: bool, t0_ns: u64) {
        if !probes::available(&self.probes) {
            return;
        }
        match RuntimeProbes::new(&mut self.probes.ebpf) {
            Ok(p) => self.runtimes = Some(Live::new(p, heap_snapshots, t0_ns)),
            Err(e) => eprintln!("leaktrace: warning: no GC figures for JVM / CPython processes: {e:#}"),
        }
    }

    /// A new life: look for a runtime once; an exec: now and for its first seconds.
    pub(super) fn runtime_consider(&mut self, pid: u32, exec: bool) {
        let t = self.now_secs();
        if let Some(r) = self.runtimes.as_mut() {
            if exec {
                r.probes.forget(&mut self.probes.ebpf, pid);
            }
            r.probes.consider(pid, t, exec);
        }
    }

    /// The life ended: detach (its semaphores lowered). Its histograms stay until the batch that
    /// ends it was applied (its Java OOM report carries the last one).
    pub(super) fn runtime_forget(&mut self, pid: u32) {
        if let Some(r) = self.runtimes.as_mut() {
            r.probes.forget(&mut self.probes.ebpf, pid);
        }
    }

    /// Before a batch is applied: attachments made and events read since the last one.
    pub(super) fn runtime_fill(&mut self, b: &mut Batch) {
        let t = self.now_secs();
        let Some(r) = self.runtimes.as_mut() else { return };
        for n in r.probes.poll(&mut self.probes.ebpf, t) {
            eprintln!("{}", attached(&n));
            if n.error.is_none()
                && let (Some(rt), Some(p)) = (n.runtime, self.core.table().get(n.pid))
            {
                b.runtimes.push((n.pid, p.key.start_ticks, rt));
            }
        }
        // Processes that left without an exit event (pid reuse, vanished).
        let gone: Vec<u32> = r
            .probes
            .attached()
            .map(|(pid, _)| pid)
            .filter(|pid| !self.core.table().contains(*pid))
            .collect();
        for pid in gone {
            r.probes.forget(&mut self.probes.ebpf, pid);
        }
        self.runtime_events(b);
        let Some(r) = self.runtimes.as_mut() else { return };
        let lost = r.probes.drops().saturating_sub(r.reported_drops);
        if lost > 0 {
            r.reported_drops += lost;
            eprintln!("leaktrace: {lost} collector events lost (USDT ring buffer full)");
        }
    }

    /// The collector events read so far, into `b` (also for a life's end: its last collections).
    pub(super) fn runtime_events(&mut self, b: &mut Batch) {
        if let Some(r) = self.runtimes.as_mut() {
            r.read();
            b.gc.append(&mut r.pending);
        }
    }

    /// After a batch was applied: class histograms for the JVMs the core flagged or whose OOM it
    /// predicted (`run --heap-snapshots`), and those that came back.
    pub(super) fn runtime_after(&mut self, out: &mut Vec<Event>) {
        let t = self.now_secs();
        let Some(r) = self.runtimes.as_mut() else { return };
        let Some(s) = r.snapshots.as_mut() else { return };
        for pid in s.pids() {
            if !self.core.table().contains(pid) {
                s.forget(pid);
            }
        }
        for e in out.iter() {
            let (pid, reason) = match e {
                Event::LeakSuspected { subject, .. } => (subject.pid, SnapshotReason::Flagged),
                Event::OomPredicted { subject, .. } => (subject.pid, SnapshotReason::OomPredicted),
                _ => continue,
            };
            if r.probes.runtime_of(pid) == Some(crate::input::Runtime::Jvm) {
                s.request(pid, reason, t);
            }
        }
        for snap in s.poll(t) {
            let Some(p) = self.core.table().get(snap.pid) else {
                continue;
            };
            out.push(Event::HeapHistogram {
                subject: crate::output::Subject {
                    ts_ns: crate::util::monotonic_ns(),
                    pid: snap.pid,
                    comm: p.comm.clone(),
                    t,
                },
                reason: Some(snap.reason),
                total_bytes: snap.total_bytes,
                total_instances: snap.total_instances,
                classes: snap.top.clone(),
                diff: snap.diff.clone(),
                error: snap.error.clone(),
            });
        }
    }

    /// The last class histogram of `pid`, for its reports.
    pub(super) fn last_heap_snapshot(&self, pid: u32) -> Option<crate::runtimes::snapshots::HeapSnapshot> {
        self.runtimes.as_ref()?.snapshots.as_ref()?.last(pid)
    }

    /// A line of a watched command's stderr naming an OutOfMemoryError (`watch -- CMD`).
    pub fn java_error(&mut self, line: &str) -> Vec<Event> {
        let mut b = Batch::at(self.now_secs(), false);
        b.java_errors.push(line.to_string());
        self.apply(b)
    }
}

/// One line for the log: what was attached to a process (or why not).
pub fn attached(n: &AttachNote) -> String {
    match (&n.error, n.runtime) {
        (None, Some(rt)) => format!(
            "leaktrace: GC probes attached to pid {} ({}, {}: {})",
            n.pid,
            rt.as_str(),
            n.binary,
            n.probes.join(",")
        ),
        (Some(e), _) => format!("leaktrace: pid {}: no GC probes: {e}", n.pid),
        (None, None) => format!("leaktrace: pid {}: no runtime", n.pid),
    }
}
