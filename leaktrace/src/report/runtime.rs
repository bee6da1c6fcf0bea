//! The managed-runtime part of an OOM report (JVM, CPython): the collector's figures, its history
//! before the end (heap after GC per interval), the class histograms taken (`run
//! --heap-snapshots`), and — for a Java `OutOfMemoryError` — how it was seen.
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{
    input::Runtime,
    runtimes::snapshots::HeapSnapshot,
    state::gc::{GcFigures, GcPoint},
    util::{bytes, signed_bytes},
};

/// Points of collector history kept in a report.
pub const HISTORY_POINTS: usize = 600;

/// How a Java `OutOfMemoryError` was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OomSeen {
    /// Full collections at the heap's maximum reclaimed nothing: the JVM is throwing it.
    Gc,
    /// The JVM exited after its heap OOM was predicted.
    Exit,
    /// Its stderr said so (`watch -- CMD`).
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JavaOom {
    pub seen: OomSeen,
    /// The error line from stderr, e.g. `... java.lang.OutOfMemoryError: Java heap space`.
    pub error: Option<String>,
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeReport {
    pub runtime: Runtime,
    pub gc: GcFigures,
    /// Collector history before the end, one point per interval; `t_secs` relative to the end
    /// (≤ 0).
    pub history: Vec<GcPoint>,
    /// The last class histogram taken, with its diff against the first (`run --heap-snapshots`).
    #[serde(default)]
    pub heap_snapshot: Option<HeapSnapshot>,
    #[serde(default)]
    pub java_oom: Option<JavaOom>,
}

impl RuntimeReport {
    pub fn new(gc: GcFigures, mut history: Vec<GcPoint>, now_t: f64, heap_snapshot: Option<HeapSnapshot>) -> Self {
        if history.len() > HISTORY_POINTS {
            history.drain(..history.len() - HISTORY_POINTS);
        }
        for p in &mut history {
            p.t_secs = ((p.t_secs - now_t) * 1000.0).round() / 1000.0;
            p.gc_secs = (p.gc_secs * 1e6).round() / 1e6;
        }
        RuntimeReport {
            runtime: gc.runtime,
            gc,
            history,
            heap_snapshot,
            java_oom: None,
        }
    }
}

/// The runtime section of a text report.
pub fn render(o: &mut String, rt: &RuntimeReport) {
    let g = &rt.gc;
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Collector ({}): {} collections ({} full), {:.1}/s recently, {:.1} % of the time in pauses",
        rt.runtime.as_str(),
        g.collections_total,
        g.full_collections_total,
        g.collections_per_sec,
        g.gc_time_share * 100.0
    );
    if let Some(j) = &rt.java_oom {
        let _ = writeln!(
            o,
            "  OutOfMemoryError: seen {}{}{}",
            match j.seen {
                OomSeen::Gc => "in the collector (full collections at the maximum reclaimed nothing)",
                OomSeen::Exit => "at its exit, after the heap OOM was predicted",
                OomSeen::Stderr => "on its stderr",
            },
            j.error.as_ref().map_or(String::new(), |e| format!(": {e}")),
            j.exit_code.map_or(String::new(), |c| format!(" (exit status {c})"))
        );
    }
    if let Some(old) = &g.old_gen {
        let _ = writeln!(
            o,
            "  {} after GC: {} of {} max{}",
            old.name,
            bytes(old.used_after_gc_bytes),
            old.max_bytes.map_or("no".to_string(), bytes),
            g.reclaimed_bytes_per_collection.map_or(String::new(), |r| format!(
                ", {} reclaimed per collection",
                bytes(r as u64)
            ))
        );
    }
    if let Some(f) = &g.heap_floor {
        let _ = writeln!(
            o,
            "  heap floor: {}{} {}/s, confidence {:.2}, over {} old-generation markings",
            f.pattern,
            if f.leak { " (leak)" } else { "" },
            signed_bytes(f.growth_bytes_per_sec),
            f.confidence,
            f.markings
        );
    }
    if g.gc_pressure.pressure {
        let _ = writeln!(
            o,
            "  gc_pressure: {:.1} collections/s (was {:.1}), reclaiming {:.0} per collection (was {:.0})",
            g.gc_pressure.collections_per_sec,
            g.gc_pressure.baseline_collections_per_sec,
            g.gc_pressure.reclaim_per_collection,
            g.gc_pressure.baseline_reclaim_per_collection
        );
    }
    if let Some(py) = &g.python {
        for gen_ in 0..3 {
            let _ = writeln!(
                o,
                "  generation {gen_}: {:.1} collections/s, {:.0} objects collected per collection ({} collections)",
                py.collections_per_sec[gen_], py.collected_per_collection[gen_], py.collections_total[gen_]
            );
        }
    }
    let olds: Vec<(f64, u64)> = rt
        .history
        .iter()
        .filter_map(|p| p.old_after_gc_bytes.map(|o| (p.t_secs, o)))
        .collect();
    if let (Some(first), Some(last)) = (olds.first(), olds.last()) {
        let _ = writeln!(
            o,
            "  old generation after GC: {} at {:.0}s → {} at {:.0}s ({} points)",
            bytes(first.1),
            first.0,
            bytes(last.1),
            last.0,
            olds.len()
        );
    }
    if let Some(s) = &rt.heap_snapshot {
        match (&s.diff, &s.error) {
            (_, Some(e)) => {
                let _ = writeln!(o, "  class histogram failed: {e}");
            }
            (Some(d), None) => {
                let _ = writeln!(o, "  heap growth by class over {:.0}s (live objects):", d.secs);
                for c in d.classes.iter().take(5) {
                    let _ = writeln!(
                        o,
                        "    {:>12} {:>+10}  {}",
                        format!("+{}", bytes(c.growth_bytes.unsigned_abs())),
                        c.growth_instances,
                        c.name
                    );
                }
            }
            (None, None) => {
                let _ = writeln!(o, "  class histogram ({} live):", bytes(s.total_bytes));
                for c in s.top.iter().take(5) {
                    let _ = writeln!(o, "    {:>12} {:>10}  {}", bytes(c.bytes), c.instances, c.name);
                }
            }
        }
    }
}
