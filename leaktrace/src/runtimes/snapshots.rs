//! `run --heap-snapshots`: class histograms of a JVM when it is flagged as leaking and again when
//! its OOM is predicted, taken on a background thread (each forces a full collection in the JVM,
//! and a full collection of a big heap takes seconds), one at a time, rate-limited per JVM.
use std::{collections::HashMap, sync::mpsc, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    histogram::{self, ClassEntry, Histogram, HistogramDiff},
    jvm_attach,
};

/// Why a histogram is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotReason {
    /// The JVM was flagged as leaking: the baseline.
    Flagged,
    /// Its OOM (kernel or Java heap) was predicted: compared with the baseline.
    OomPredicted,
}

/// A histogram that came back, with the diff against the process's first one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapSnapshot {
    pub pid: u32,
    pub reason: SnapshotReason,
    pub total_bytes: u64,
    pub total_instances: u64,
    /// The ten largest classes.
    pub top: Vec<ClassEntry>,
    /// Against the first histogram of this process (absent for the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<HistogramDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// At most one histogram per JVM per this long (a request that comes sooner waits for it) …
pub const SNAPSHOT_MIN_GAP: Duration = Duration::from_secs(15);
/// … and at most this many per JVM.
pub const SNAPSHOTS_PER_PROCESS: u32 = 4;

/// A histogram the background thread took (or why not).
type Taken = (u32, SnapshotReason, Result<Histogram, String>);

pub struct HeapSnapshots {
    /// Per process: the first histogram, histograms asked for and when the last was.
    first: HashMap<u32, Histogram>,
    taken: HashMap<u32, (u32, f64)>,
    busy: bool,
    queue: Vec<(u32, SnapshotReason)>,
    /// Requests waiting for the gap: (reason, not before).
    deferred: HashMap<u32, (SnapshotReason, f64)>,
    tx: mpsc::Sender<Taken>,
    rx: mpsc::Receiver<Taken>,
    /// The latest result per process (for OOM reports).
    last: HashMap<u32, HeapSnapshot>,
}

impl Default for HeapSnapshots {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        HeapSnapshots {
            first: HashMap::new(),
            taken: HashMap::new(),
            busy: false,
            queue: Vec::new(),
            deferred: HashMap::new(),
            tx,
            rx,
            last: HashMap::new(),
        }
    }
}

impl HeapSnapshots {
    /// Ask for a histogram of JVM `pid` at time `t` (rate-limited).
    pub fn request(&mut self, pid: u32, reason: SnapshotReason, t: f64) {
        let (n, last) = self.taken.get(&pid).copied().unwrap_or((0, f64::NEG_INFINITY));
        if n >= SNAPSHOTS_PER_PROCESS {
            return;
        }
        let gap = SNAPSHOT_MIN_GAP.as_secs_f64();
        let queued = self.queue.iter().any(|(p, _)| *p == pid);
        if n == 0 && reason == SnapshotReason::OomPredicted {
            // No baseline yet: take one now, and the comparison once the gap allows.
            self.queue.push((pid, SnapshotReason::Flagged));
            self.deferred.insert(pid, (reason, t + gap));
            self.taken.insert(pid, (1, t));
        } else if queued || t - last < gap {
            // Too soon: wait for the gap. A comparison asked for stays asked for.
            let r = match self.deferred.get(&pid) {
                Some((SnapshotReason::OomPredicted, _)) => SnapshotReason::OomPredicted,
                _ => reason,
            };
            let after = if queued { t } else { last };
            self.deferred.insert(pid, (r, after + gap));
        } else {
            self.queue.push((pid, reason));
            self.taken.insert(pid, (n + 1, t));
        }
    }

    /// The JVMs it knows of.
    pub fn pids(&self) -> Vec<u32> {
        let mut p: Vec<u32> = self.taken.keys().chain(self.last.keys()).copied().collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// The JVM is gone.
    pub fn forget(&mut self, pid: u32) {
        self.first.remove(&pid);
        self.taken.remove(&pid);
        self.last.remove(&pid);
        self.deferred.remove(&pid);
        self.queue.retain(|(p, _)| *p != pid);
    }

    /// Start the next due histogram (one at a time) and collect the finished ones.
    pub fn poll(&mut self, t: f64) -> Vec<HeapSnapshot> {
        let due: Vec<(u32, SnapshotReason)> = self
            .deferred
            .iter()
            .filter(|(_, (_, at))| *at <= t)
            .map(|(p, (r, _))| (*p, *r))
            .collect();
        for (pid, reason) in due {
            self.deferred.remove(&pid);
            self.request(pid, reason, t);
        }
        let mut out = Vec::new();
        while let Ok((pid, reason, r)) = self.rx.try_recv() {
            self.busy = false;
            let snap = match r {
                Ok(h) => {
                    let diff = self.first.get(&pid).map(|f| histogram::diff(f, &h));
                    let snap = HeapSnapshot {
                        pid,
                        reason,
                        total_bytes: h.total_bytes,
                        total_instances: h.total_instances,
                        top: h.classes.iter().take(10).cloned().collect(),
                        diff,
                        error: None,
                    };
                    self.first.entry(pid).or_insert(h);
                    snap
                }
                Err(e) => HeapSnapshot {
                    pid,
                    reason,
                    total_bytes: 0,
                    total_instances: 0,
                    top: Vec::new(),
                    diff: None,
                    error: Some(e),
                },
            };
            self.last.insert(pid, snap.clone());
            out.push(snap);
        }
        if !self.busy && !self.queue.is_empty() {
            let (pid, reason) = self.queue.remove(0);
            let tx = self.tx.clone();
            self.busy = std::thread::Builder::new()
                .name("leaktrace-heap".into())
                .spawn(move || {
                    let r = jvm_attach::class_histogram(pid, Duration::from_secs(60)).map_err(|e| e.to_string());
                    let _ = tx.send((pid, reason, r));
                })
                .is_ok();
        }
        out
    }

    /// The latest histogram result of `pid` (for reports).
    pub fn last(&self, pid: u32) -> Option<HeapSnapshot> {
        self.last.get(&pid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_and_a_comparison_is_never_dropped() {
        let mut s = HeapSnapshots::default();
        // Flagged and predicted in the same tick: the baseline now, the comparison 15 s later.
        s.request(7, SnapshotReason::Flagged, 10.0);
        s.request(7, SnapshotReason::OomPredicted, 10.0);
        assert_eq!(s.queue, vec![(7, SnapshotReason::Flagged)]);
        assert_eq!(s.deferred.get(&7), Some(&(SnapshotReason::OomPredicted, 25.0)));
        // A later "flagged" does not replace the comparison.
        s.request(7, SnapshotReason::Flagged, 12.0);
        assert_eq!(s.deferred.get(&7).map(|d| d.0), Some(SnapshotReason::OomPredicted));
        // Predicted first (no baseline): the baseline at once, the comparison after the gap.
        s.request(8, SnapshotReason::OomPredicted, 100.0);
        assert!(s.queue.contains(&(8, SnapshotReason::Flagged)));
        assert_eq!(s.deferred.get(&8), Some(&(SnapshotReason::OomPredicted, 115.0)));
        // At most 4 per process.
        s.taken.insert(9, (SNAPSHOTS_PER_PROCESS, 0.0));
        s.request(9, SnapshotReason::Flagged, 1000.0);
        assert!(!s.queue.iter().any(|(p, _)| *p == 9) && !s.deferred.contains_key(&9));
        s.forget(7);
        assert!(!s.deferred.contains_key(&7) && !s.queue.iter().any(|(p, _)| *p == 7));
    }
}
