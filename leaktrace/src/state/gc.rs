//! The collectors of managed runtimes (JVM, CPython): collector events in (`input::GcEvent`),
//! per-process figures out. Fed by the monitor's core; pure (reads nothing of the system).
//!
//! Per process it keeps, one point per interval: collections, time in stop-the-world pauses, bytes
//! reclaimed (JVM: heap pools' used before − after each collection), the heap used after GC (JVM:
//! per pool, old generation above all), objects collected per generation (CPython). From these:
//!
//! - **the heap's own floor** (JVM): the heap's use after collection (every heap pool: what
//!   survived, in the survivor spaces and the old generation), one sample per interval (the
//!   lowest seen in it), classified with the same classifier as RSS. Once the heap has grown to
//!   `-Xmx`, RSS is a plateau while the heap keeps filling: this floor is what still moves. (The
//!   old generation alone would not do: a young generation sized large keeps leaked objects in
//!   its survivor spaces for a while, and the old generation then jumps.) A rise is only a leak
//!   once it has **survived the collector looking at the old generation** — a full collection,
//!   or a concurrent marking cycle (G1's remark/cleanup pauses, seen as pauses that touch no
//!   pool) — at least twice: the heap after a young collection climbs with every promotion,
//!   garbage or not (a bounded cache's evicted entries), and only a marking tells garbage from
//!   live data. So the heap's use after the first collection following each marking must itself
//!   rise across the rise. G1 starts marking at 45 % occupancy (`InitiatingHeapOccupancyPercent`);
//!   Parallel and Serial only look at the old generation in full collections, so their heap
//!   leaks are flagged later.
//! - **`gc_pressure`**: collections more frequent and reclaiming less than two minutes before
//!   (the source article's "the collector runs more frequently but reclaims less").
//! - **heap OOM** (JVM): the old generation at its pool maximum after collection and collections,
//!   full ones among them, reclaiming (almost) nothing: `OutOfMemoryError` is near
//!   ([`GcNotice::HeapOomPredicted`]); consecutive full collections that reclaim nothing at the
//!   maximum: the heap is exhausted and the JVM is throwing it ([`GcNotice::HeapExhausted`]).
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::timeline::{Timeline, TimelineConfig};
use crate::{
    analysis::classify::{ClassifierConfig, Pattern, Verdict, classify},
    input::{GcEvent, Runtime},
};

/// What kind of memory a HotSpot memory pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// Eden, survivor spaces.
    Young,
    /// The old (tenured) generation.
    Old,
    /// A single-generation heap (ZGC, Shenandoah): treated as the old generation.
    Whole,
    /// Code cache, metaspace: not the Java heap.
    NonHeap,
}

pub fn pool_kind(name: &str) -> PoolKind {
    if name.contains("Eden") || name.contains("Survivor") || name.contains("Young") {
        PoolKind::Young
    } else if name.contains("Old Gen") || name.contains("Tenured") || name.contains("Old Generation") {
        PoolKind::Old
    } else if name.contains("ZHeap") || name.starts_with("Shenandoah") || name.contains("Epsilon") {
        PoolKind::Whole
    } else {
        PoolKind::NonHeap
    }
}

/// A memory manager (collector) that examines the old generation whenever it runs.
fn manager_marks_old(name: &str) -> bool {
    name.contains("Old Generation")
        || name.contains("MarkSweep")
        || name.starts_with("ZGC")
        || name.starts_with("Shenandoah")
}

#[derive(Debug, Clone)]
pub struct GcConfig {
    pub interval_secs: f64,
    /// The heap-floor classifier (RSS's own settings by default).
    pub classifier: ClassifierConfig,
    pub timeline: TimelineConfig,
    /// Per-interval points kept for figures and reports.
    pub history: usize,
    /// Rates are measured over this window (s) …
    pub recent_secs: f64,
    /// … and compared, for `gc_pressure`, with this much history before it (s).
    pub baseline_secs: f64,
    /// `gc_pressure`: collections at least this many times as frequent as in the baseline …
    pub pressure_frequency_ratio: f64,
    /// … reclaiming at most this fraction of the baseline's reclaim per collection.
    pub pressure_reclaim_ratio: f64,
    /// Heap OOM: old generation after GC at this fraction of its pool maximum or more …
    pub oom_fill: f64,
    /// … and the last collections reclaiming less than this fraction of the maximum each.
    pub oom_reclaim: f64,
    /// `oom_predicted` for a heap-floor leak whose projected time to the pool maximum is under this.
    pub predict_within_secs: f64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_secs: 1.0,
            classifier: ClassifierConfig::default(),
            timeline: TimelineConfig::default(),
            history: 1800,
            recent_secs: 30.0,
            baseline_secs: 120.0,
            pressure_frequency_ratio: 1.5,
            pressure_reclaim_ratio: 0.67,
            oom_fill: 0.95,
            oom_reclaim: 0.02,
            predict_within_secs: 300.0,
        }
    }
}

/// One interval of one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcPoint {
    pub t_secs: f64,
    /// Collections that ended in the interval (JVM: young, mixed and full; CPython: all
    /// generations).
    pub collections: u32,
    pub full_collections: u32,
    /// Time in stop-the-world pauses (JVM; CPython: in collections), seconds.
    pub gc_secs: f64,
    /// JVM: heap bytes reclaimed by the interval's collections.
    pub reclaimed_bytes: u64,
    /// JVM: lowest old-generation use after a collection in the interval (or the last known).
    pub old_after_gc_bytes: Option<u64>,
    /// JVM: lowest heap use (all heap pools) after a collection in the interval (or the last
    /// known): the heap's floor.
    pub heap_after_gc_bytes: Option<u64>,
    /// CPython: collections and objects collected, per generation.
    pub py_collections: [u32; 3],
    pub py_collected: [u64; 3],
}

/// One HotSpot pool as last seen after a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolFigures {
    pub name: String,
    pub kind: PoolKind,
    pub used_after_gc_bytes: u64,
    pub committed_bytes: u64,
    pub max_bytes: Option<u64>,
}

/// The heap floor's verdict (JVM).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeapFloor {
    pub pattern: Pattern,
    /// A mountain that survived at least two markings of the old generation.
    pub leak: bool,
    pub confidence: f64,
    pub growth_bytes_per_sec: f64,
    /// Old-generation markings (full collections, concurrent cycles) over the rise.
    pub markings: u32,
    /// From the first to the last of those markings (s), and how much the heap after the
    /// collection that followed each rose over that time (bytes).
    pub growth_secs: f64,
    pub floor_growth_bytes: f64,
}

/// `gc_pressure` evidence: recent window against the baseline before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GcPressure {
    pub pressure: bool,
    pub collections_per_sec: f64,
    pub baseline_collections_per_sec: f64,
    /// Bytes (JVM) or objects (CPython) reclaimed per collection.
    pub reclaim_per_collection: f64,
    pub baseline_reclaim_per_collection: f64,
}

/// CPython's collector, over the recent window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PyFigures {
    pub collections_per_sec: [f64; 3],
    pub collected_per_collection: [f64; 3],
    pub collections_total: [u64; 3],
    pub collected_total: [u64; 3],
}

/// Everything the sinks show about one process's collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcFigures {
    pub runtime: Runtime,
    /// Over the recent window.
    pub collections_per_sec: f64,
    /// Fraction of wall time in stop-the-world collection, over the recent window.
    pub gc_time_share: f64,
    /// JVM: heap bytes reclaimed per collection, over the recent window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimed_bytes_per_collection: Option<f64>,
    pub collections_total: u64,
    pub full_collections_total: u64,
    /// JVM: heap used after the last collection (all heap pools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_after_gc_bytes: Option<u64>,
    /// JVM: the old generation (or the single heap pool) after the last collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_gen: Option<PoolFigures>,
    /// JVM: every heap pool, old generation first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_floor: Option<HeapFloor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<PyFigures>,
    pub gc_pressure: GcPressure,
    /// `oom_predicted` (heap) was raised at this time (s, monitor clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_oom_predicted_at: Option<f64>,
    /// The heap was seen exhausted (full collections at the maximum reclaiming nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_exhausted_at: Option<f64>,
}

/// What changed at a tick, for events.
#[derive(Debug, Clone, PartialEq)]
pub enum GcNotice {
    /// The heap floor turned into a leak.
    HeapLeakSuspected { pid: u32 },
    /// It stopped being one.
    HeapLeakCleared { pid: u32 },
    /// `gc_pressure` turned on.
    PressureOn { pid: u32 },
    /// `OutOfMemoryError` is near: `eta_secs` when projected from the heap floor's growth, `None`
    /// when the heap is already at its maximum and collections reclaim nothing.
    HeapOomPredicted {
        pid: u32,
        eta_secs: Option<f64>,
        limit_bytes: u64,
    },
    /// Full collections at the maximum reclaim nothing: the JVM is throwing OutOfMemoryError.
    HeapExhausted { pid: u32 },
}

/// One collection (JVM), for the heap-OOM rules.
#[derive(Debug, Clone, Copy)]
struct Collection {
    t: f64,
    full: bool,
    reclaimed: u64,
    old_after: Option<u64>,
    old_max: Option<u64>,
}

#[derive(Debug, Default)]
struct InFlight {
    begin_ns: Option<u64>,
    full: bool,
    manager: String,
    before: HashMap<String, u64>,
    pooled: bool,
}

struct GcProc {
    runtime: Runtime,
    flight: InFlight,
    /// CPython: start of the running collection.
    py_start: Option<(u64, i32)>,
    acc: GcPoint,
    pools: BTreeMap<String, PoolFigures>,
    history: VecDeque<GcPoint>,
    floor: Timeline,
    /// Old-generation use after the first collection that followed each marking.
    post_marking: VecDeque<(f64, u64)>,
    marking_pending: bool,
    recent: VecDeque<Collection>,
    floor_verdict: Option<HeapFloor>,
    pressure: GcPressure,
    totals: (u64, u64),
    py_totals: ([u64; 3], [u64; 3]),
    oom_predicted_at: Option<f64>,
    exhausted_at: Option<f64>,
    last_old_after: Option<u64>,
    last_heap_after: Option<u64>,
}

const NO_PRESSURE: GcPressure = GcPressure {
    pressure: false,
    collections_per_sec: 0.0,
    baseline_collections_per_sec: 0.0,
    reclaim_per_collection: 0.0,
    baseline_reclaim_per_collection: 0.0,
};

impl GcProc {
    fn new(runtime: Runtime, tl: &TimelineConfig) -> Self {
        GcProc {
            runtime,
            flight: InFlight::default(),
            py_start: None,
            acc: GcPoint::default(),
            pools: BTreeMap::new(),
            history: VecDeque::new(),
            floor: Timeline::new(tl.clone()),
            post_marking: VecDeque::new(),
            marking_pending: false,
            recent: VecDeque::new(),
            floor_verdict: None,
            pressure: NO_PRESSURE,
            totals: (0, 0),
            py_totals: ([0; 3], [0; 3]),
            oom_predicted_at: None,
            exhausted_at: None,
            last_old_after: None,
            last_heap_after: None,
        }
    }

    fn old_pool(&self) -> Option<&PoolFigures> {
        self.pools
            .values()
            .find(|p| p.kind == PoolKind::Old)
            .or_else(|| self.pools.values().find(|p| p.kind == PoolKind::Whole))
    }

    fn marking(&mut self) {
        self.marking_pending = true;
    }

    /// A JVM collection ended (`gc__end` after pool events), at `t`.
    fn collection_end(&mut self, t: f64, end_ns: u64) {
        let f = std::mem::take(&mut self.flight);
        if let Some(b) = f.begin_ns {
            self.acc.gc_secs += end_ns.saturating_sub(b) as f64 / 1e9;
        }
        if !f.pooled {
            // A pause that touched no pool: G1's remark or cleanup, the end of a concurrent
            // marking cycle.
            if f.begin_ns.is_some() {
                self.marking();
            }
            return;
        }
        let mut reclaimed: i64 = 0;
        let mut heap_after = 0;
        for p in self.pools.values() {
            if p.kind == PoolKind::NonHeap {
                continue;
            }
            heap_after += p.used_after_gc_bytes;
            if let Some(b) = f.before.get(&p.name) {
                reclaimed += *b as i64 - p.used_after_gc_bytes as i64;
            }
        }
        let reclaimed = reclaimed.max(0) as u64;
        let full = f.full || manager_marks_old(&f.manager);
        let (old_after, old_max) = self
            .old_pool()
            .map_or((None, None), |p| (Some(p.used_after_gc_bytes), p.max_bytes));
        self.acc.collections += 1;
        self.acc.full_collections += u32::from(full);
        self.acc.reclaimed_bytes += reclaimed;
        self.acc.heap_after_gc_bytes = Some(self.acc.heap_after_gc_bytes.map_or(heap_after, |m| m.min(heap_after)));
        self.last_heap_after = Some(heap_after);
        if let Some(o) = old_after {
            self.acc.old_after_gc_bytes = Some(self.acc.old_after_gc_bytes.map_or(o, |m| m.min(o)));
            self.last_old_after = Some(o);
        }
        self.totals.0 += 1;
        self.totals.1 += u64::from(full);
        if full {
            self.marking();
        }
        if self.marking_pending {
            self.marking_pending = false;
            self.post_marking.push_back((t, heap_after));
            while self.post_marking.len() > 256 {
                self.post_marking.pop_front();
            }
        }
        self.recent.push_back(Collection {
            t,
            full,
            reclaimed,
            old_after,
            old_max,
        });
        while self.recent.len() > 16 {
            self.recent.pop_front();
        }
    }
}

/// Per-process collector state of every tracked runtime process.
pub struct GcTracker {
    cfg: GcConfig,
    /// CLOCK_MONOTONIC ns at the monitor's time 0.
    origin_ns: u64,
    procs: HashMap<u32, GcProc>,
}

impl GcTracker {
    pub fn new(cfg: GcConfig, origin_ns: u64) -> Self {
        GcTracker {
            cfg,
            origin_ns,
            procs: HashMap::new(),
        }
    }

    fn t(&self, ts_ns: u64) -> f64 {
        (ts_ns as f64 - self.origin_ns as f64) / 1e9
    }

    /// A process whose probes were attached.
    pub fn add(&mut self, pid: u32, runtime: Runtime) {
        let tl = self.cfg.timeline.clone();
        self.procs.entry(pid).or_insert_with(|| GcProc::new(runtime, &tl));
    }

    pub fn remove(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    pub fn on_event(&mut self, e: &GcEvent) {
        let t = self.t(e.ts_ns());
        let Some(p) = self.procs.get_mut(&e.pid()) else {
            return;
        };
        match e {
            GcEvent::JvmGcBegin { ts_ns, full, .. } => {
                p.flight = InFlight {
                    begin_ns: Some(*ts_ns),
                    full: *full,
                    ..InFlight::default()
                };
            }
            GcEvent::JvmPool {
                end,
                manager,
                pool,
                used,
                committed,
                max,
                ..
            } => {
                p.flight.pooled = true;
                if !*end {
                    p.flight.manager.clone_from(manager);
                    p.flight.before.insert(pool.clone(), *used);
                } else {
                    p.pools.insert(
                        pool.clone(),
                        PoolFigures {
                            name: pool.clone(),
                            kind: pool_kind(pool),
                            used_after_gc_bytes: *used,
                            committed_bytes: *committed,
                            max_bytes: *max,
                        },
                    );
                }
            }
            GcEvent::JvmGcEnd { ts_ns, .. } => p.collection_end(t, *ts_ns),
            GcEvent::JvmShutdown { .. } => {}
            GcEvent::PyGcStart { ts_ns, generation, .. } => p.py_start = Some((*ts_ns, *generation)),
            GcEvent::PyGcDone { ts_ns, collected, .. } => {
                let Some((start, generation)) = p.py_start.take() else {
                    return;
                };
                let g = generation.clamp(0, 2) as usize;
                let n = (*collected).max(0) as u64;
                p.acc.gc_secs += ts_ns.saturating_sub(start) as f64 / 1e9;
                p.acc.collections += 1;
                p.acc.py_collections[g] += 1;
                p.acc.py_collected[g] += n;
                p.acc.full_collections += u32::from(g == 2);
                p.totals.0 += 1;
                p.totals.1 += u64::from(g == 2);
                p.py_totals.0[g] += 1;
                p.py_totals.1[g] += n;
            }
        }
    }

    /// Close the interval ending at `t`: history, heap floor, pressure, heap OOM. Returns what
    /// changed.
    pub fn tick(&mut self, t: f64) -> Vec<GcNotice> {
        let mut out = Vec::new();
        let cfg = self.cfg.clone();
        for (pid, p) in &mut self.procs {
            let mut point = std::mem::take(&mut p.acc);
            point.t_secs = t;
            if point.old_after_gc_bytes.is_none() {
                point.old_after_gc_bytes = p.last_old_after;
            }
            if point.heap_after_gc_bytes.is_none() {
                point.heap_after_gc_bytes = p.last_heap_after;
            }
            if let Some(h) = point.heap_after_gc_bytes {
                p.floor.push(t, h);
            }
            p.history.push_back(point);
            while p.history.len() > cfg.history {
                p.history.pop_front();
            }
            tick_one(*pid, p, t, &cfg, &mut out);
        }
        out
    }

    /// The figures of one process.
    pub fn figures(&self, pid: u32) -> Option<GcFigures> {
        let p = self.procs.get(&pid)?;
        let win = window(&p.history, self.cfg.recent_secs, 0.0);
        let secs = window_secs(&win, self.cfg.interval_secs);
        let collections: u32 = win.iter().map(|x| x.collections).sum();
        let gc_secs: f64 = win.iter().map(|x| x.gc_secs).sum();
        let reclaimed: u64 = win.iter().map(|x| x.reclaimed_bytes).sum();
        let jvm = p.runtime == Runtime::Jvm;
        let mut pools: Vec<PoolFigures> = p
            .pools
            .values()
            .filter(|x| x.kind != PoolKind::NonHeap)
            .cloned()
            .collect();
        pools.sort_by_key(|x| match x.kind {
            PoolKind::Old | PoolKind::Whole => 0,
            _ => 1,
        });
        let python = (!jvm).then(|| {
            let mut f = PyFigures {
                collections_per_sec: [0.0; 3],
                collected_per_collection: [0.0; 3],
                collections_total: p.py_totals.0,
                collected_total: p.py_totals.1,
            };
            for g in 0..3 {
                let c: u32 = win.iter().map(|x| x.py_collections[g]).sum();
                let n: u64 = win.iter().map(|x| x.py_collected[g]).sum();
                f.collections_per_sec[g] = if secs > 0.0 { f64::from(c) / secs } else { 0.0 };
                f.collected_per_collection[g] = if c > 0 { n as f64 / f64::from(c) } else { 0.0 };
            }
            f
        });
        Some(GcFigures {
            runtime: p.runtime,
            collections_per_sec: if secs > 0.0 { f64::from(collections) / secs } else { 0.0 },
            gc_time_share: if secs > 0.0 { (gc_secs / secs).min(1.0) } else { 0.0 },
            reclaimed_bytes_per_collection: (jvm && collections > 0).then(|| reclaimed as f64 / f64::from(collections)),
            collections_total: p.totals.0,
            full_collections_total: p.totals.1,
            heap_after_gc_bytes: p.last_heap_after,
            old_gen: p.old_pool().cloned(),
            pools,
            heap_floor: p.floor_verdict,
            python,
            gc_pressure: p.pressure,
            heap_oom_predicted_at: p.oom_predicted_at,
            heap_exhausted_at: p.exhausted_at,
        })
    }

    /// The per-interval history of one process (oldest first), for reports.
    pub fn history(&self, pid: u32) -> Vec<GcPoint> {
        self.procs
            .get(&pid)
            .map(|p| p.history.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The points of the last `secs` before `skip_secs` ago (both from the newest point).
fn window(h: &VecDeque<GcPoint>, secs: f64, skip_secs: f64) -> Vec<&GcPoint> {
    let Some(last) = h.back() else { return Vec::new() };
    let hi = last.t_secs - skip_secs;
    let lo = hi - secs;
    h.iter().filter(|p| p.t_secs > lo && p.t_secs <= hi).collect()
}

fn window_secs(w: &[&GcPoint], interval: f64) -> f64 {
    match (w.first(), w.last()) {
        (Some(a), Some(b)) => b.t_secs - a.t_secs + interval,
        _ => 0.0,
    }
}

/// Collections per second and reclaim per collection (bytes, or objects for CPython).
fn rates(w: &[&GcPoint], interval: f64, python: bool) -> (f64, f64, u32) {
    let secs = window_secs(w, interval);
    let c: u32 = w.iter().map(|x| x.collections).sum();
    let r: f64 = w
        .iter()
        .map(|x| {
            if python {
                x.py_collected.iter().sum::<u64>() as f64
            } else {
                x.reclaimed_bytes as f64
            }
        })
        .sum();
    (
        if secs > 0.0 { f64::from(c) / secs } else { 0.0 },
        if c > 0 { r / f64::from(c) } else { 0.0 },
        c,
    )
}

/// `gc_pressure`: the recent window against the baseline just before it. On a JVM only while the
/// heap's floor rises or has risen to a plateau: collections that come faster and reclaim less
/// over a floor that is tidal or flat are the collector resizing its young generation (G1 shrinks
/// it to meet its pause goal), not headroom lost to a growing live set — a bounded cache under
/// heavy garbage does exactly that.
fn pressure(pid: u32, p: &mut GcProc, cfg: &GcConfig, out: &mut Vec<GcNotice>) {
    let python = p.runtime == Runtime::Python;
    let recent = window(&p.history, cfg.recent_secs, 0.0);
    let base = window(&p.history, cfg.baseline_secs, cfg.recent_secs);
    let (f1, r1, c1) = rates(&recent, cfg.interval_secs, python);
    let (f0, r0, c0) = rates(&base, cfg.interval_secs, python);
    // A full baseline with enough collections in both windows: a JVM sizing its generations in
    // its first minutes changes both rates without any pressure.
    let enough = c1 >= 5 && c0 >= 10 && window_secs(&base, cfg.interval_secs) >= 0.9 * cfg.baseline_secs;
    let live_set_grew = python
        || p.floor_verdict
            .is_some_and(|f| matches!(f.pattern, Pattern::Mountain | Pattern::Plateau));
    let pressure =
        enough && live_set_grew && f1 >= cfg.pressure_frequency_ratio * f0 && r1 <= cfg.pressure_reclaim_ratio * r0;
    if pressure && !p.pressure.pressure {
        out.push(GcNotice::PressureOn { pid });
    }
    p.pressure = GcPressure {
        pressure,
        collections_per_sec: f1,
        baseline_collections_per_sec: f0,
        reclaim_per_collection: r1,
        baseline_reclaim_per_collection: r0,
    };
}

fn tick_one(pid: u32, p: &mut GcProc, t: f64, cfg: &GcConfig, out: &mut Vec<GcNotice>) {
    if p.runtime == Runtime::Python {
        pressure(pid, p, cfg, out);
        return;
    }

    // The heap floor.
    if p.floor.len() >= 2 {
        let v: Verdict = classify(&p.floor.samples(), &cfg.classifier);
        let m = survived_markings(&p.post_marking, t, &v, cfg);
        let (markings, survived) = (m.count, m.survived);
        let leak = v.leak && survived;
        let was = p.floor_verdict.is_some_and(|f| f.leak);
        p.floor_verdict = Some(HeapFloor {
            pattern: v.pattern,
            leak,
            confidence: v.confidence,
            growth_bytes_per_sec: v.growth_bytes_per_sec,
            markings,
            growth_secs: m.span_secs,
            floor_growth_bytes: m.rise_bytes,
        });
        if leak && !was {
            out.push(GcNotice::HeapLeakSuspected { pid });
        } else if was && !leak && v.pattern != Pattern::Mountain {
            out.push(GcNotice::HeapLeakCleared { pid });
        } else if was && !leak {
            // Still a mountain, short of evidence for a moment: stay flagged.
            if let Some(f) = p.floor_verdict.as_mut() {
                f.leak = true;
            }
        }
    }

    pressure(pid, p, cfg, out);

    // Heap OOM.
    let old = p.old_pool().cloned();
    let Some(old) = old else { return };
    let Some(max) = old.max_bytes else { return };
    // The whole heap's maximum: the pools' maxima when every heap pool has one (Parallel,
    // Serial), else the old generation's (G1's old generation may take the whole heap).
    let heap: Vec<&PoolFigures> = p.pools.values().filter(|x| x.kind != PoolKind::NonHeap).collect();
    let heap_max = if heap.iter().all(|x| x.max_bytes.is_some()) {
        heap.iter().filter_map(|x| x.max_bytes).sum()
    } else {
        max
    };
    let last: Vec<&Collection> = p.recent.iter().filter(|c| t - c.t <= 60.0).collect();
    let at_max = |c: &Collection| {
        c.old_after
            .is_some_and(|o| o as f64 >= cfg.oom_fill * c.old_max.unwrap_or(max) as f64)
    };
    let futile = |c: &Collection| (c.reclaimed as f64) < cfg.oom_reclaim * max as f64;
    let tail: Vec<&&Collection> = last.iter().rev().take(4).collect();
    let stuck = tail.len() >= 3 && tail.iter().any(|c| c.full) && tail.iter().all(|c| at_max(c) && futile(c));
    if p.oom_predicted_at.is_none() {
        let eta = p
            .floor_verdict
            .filter(|f| f.leak && f.growth_bytes_per_sec > 0.0)
            .map(|f| {
                let floor = p.floor.last().map_or(old.used_after_gc_bytes, |s| s.rss_bytes);
                heap_max.saturating_sub(floor) as f64 / f.growth_bytes_per_sec
            });
        if stuck || eta.is_some_and(|e| e <= cfg.predict_within_secs) {
            p.oom_predicted_at = Some(t);
            out.push(GcNotice::HeapOomPredicted {
                pid,
                eta_secs: if stuck { None } else { eta },
                limit_bytes: max,
            });
        }
    }
    // Exhausted: two full collections in a row at the maximum, reclaiming under 1 % each.
    let fulls: Vec<&&Collection> = tail.iter().take(2).copied().collect();
    if p.exhausted_at.is_none()
        && fulls.len() == 2
        && fulls
            .iter()
            .all(|c| c.full && at_max(c) && (c.reclaimed as f64) < 0.01 * max as f64)
    {
        p.exhausted_at = Some(t);
        if p.oom_predicted_at.is_none() {
            p.oom_predicted_at = Some(t);
            out.push(GcNotice::HeapOomPredicted {
                pid,
                eta_secs: None,
                limit_bytes: max,
            });
        }
        out.push(GcNotice::HeapExhausted { pid });
    }
}

/// Whether the floor's rise survived markings: over the classifier's horizon, the old
/// generation's use after the first collection following each marking rose too (at least two such
/// samples, the last above the first by a swing and by a quarter of what the floor's rate says).
struct Markings {
    count: u32,
    survived: bool,
    span_secs: f64,
    rise_bytes: f64,
}

fn survived_markings(post: &VecDeque<(f64, u64)>, t: f64, v: &Verdict, cfg: &GcConfig) -> Markings {
    let from = t - v.span_secs.max(cfg.classifier.min_span_secs);
    let pts: Vec<&(f64, u64)> = post.iter().filter(|(pt, _)| *pt >= from).collect();
    let count = pts.len() as u32;
    let (Some(a), Some(b)) = (pts.first(), pts.last()) else {
        return Markings {
            count,
            survived: false,
            span_secs: 0.0,
            rise_bytes: 0.0,
        };
    };
    let rise = b.1 as f64 - a.1 as f64;
    let expected = v.growth_bytes_per_sec.max(0.0) * (b.0 - a.0);
    Markings {
        count,
        survived: count >= 2 && rise >= cfg.classifier.min_swing_bytes as f64 && rise >= 0.25 * expected,
        span_secs: b.0 - a.0,
        rise_bytes: rise,
    }
}

/// Test fixture: one G1 young collection of `pid` (old generation 50 → 10 MiB of a 96 MiB
/// maximum, 10 ms).
#[cfg(test)]
pub(crate) fn young_collection(tr: &mut GcTracker, pid: u32) {
    tr.on_event(&GcEvent::JvmGcBegin {
        pid,
        ts_ns: 0,
        full: false,
    });
    for (end, used) in [(false, 50 << 20), (true, 10 << 20)] {
        tr.on_event(&GcEvent::JvmPool {
            pid,
            ts_ns: 1,
            end,
            manager: "G1 Young Generation".into(),
            pool: "G1 Old Gen".into(),
            used,
            committed: 64 << 20,
            max: Some(96 << 20),
        });
    }
    tr.on_event(&GcEvent::JvmGcEnd { pid, ts_ns: 10_000_000 });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const S: u64 = 1_000_000_000;

    /// Feeds a modelled G1 JVM: young collections every `young_every` s; each moves `promote`
    /// bytes into the old generation, of which `live` bytes stay live; a marking cycle (two pauses
    /// without pool events) when old reaches `ihop`, then mixed collections that bring old back
    /// to the live set.
    struct Jvm {
        tr: GcTracker,
        pid: u32,
        old: u64,
        live: u64,
        max: u64,
        ns: u64,
        notices: Vec<GcNotice>,
    }

    impl Jvm {
        fn new(live: u64, max: u64) -> Jvm {
            let mut tr = GcTracker::new(GcConfig::default(), 0);
            tr.add(7, Runtime::Jvm);
            Jvm {
                tr,
                pid: 7,
                old: live,
                live,
                max,
                ns: 0,
                notices: Vec::new(),
            }
        }

        fn pool(&mut self, end: bool, manager: &str, name: &str, used: u64, max: Option<u64>) {
            self.tr.on_event(&GcEvent::JvmPool {
                pid: self.pid,
                ts_ns: self.ns,
                end,
                manager: manager.into(),
                pool: name.into(),
                used,
                committed: used,
                max,
            });
        }

        fn collect(&mut self, full: bool, eden_before: u64, old_before: u64, old_after: u64) {
            let mgr = if full {
                "G1 Old Generation"
            } else {
                "G1 Young Generation"
            };
            self.tr.on_event(&GcEvent::JvmGcBegin {
                pid: self.pid,
                ts_ns: self.ns,
                full,
            });
            self.pool(false, mgr, "Metaspace", 10 * MIB, None);
            self.pool(false, mgr, "G1 Eden Space", eden_before, None);
            self.pool(false, mgr, "G1 Old Gen", old_before, Some(self.max));
            self.ns += 20_000_000;
            self.pool(true, mgr, "Metaspace", 10 * MIB, None);
            self.pool(true, mgr, "G1 Eden Space", 0, None);
            self.pool(true, mgr, "G1 Old Gen", old_after, Some(self.max));
            self.tr.on_event(&GcEvent::JvmGcEnd {
                pid: self.pid,
                ts_ns: self.ns,
            });
        }

        fn marking(&mut self) {
            for _ in 0..2 {
                self.tr.on_event(&GcEvent::JvmGcBegin {
                    pid: self.pid,
                    ts_ns: self.ns,
                    full: false,
                });
                self.ns += 5_000_000;
                self.tr.on_event(&GcEvent::JvmGcEnd {
                    pid: self.pid,
                    ts_ns: self.ns,
                });
            }
        }

        /// One second: one young collection promoting `promote` (of which `leak` stays live).
        fn second(&mut self, promote: u64, leak: u64, ihop: u64) {
            let before = self.old;
            self.old += promote;
            self.live += leak;
            self.collect(false, 30 * MIB, before, self.old);
            if self.old >= ihop {
                self.marking();
                // Mixed collections: old back to the live set.
                let b = self.old;
                self.old = self.live.max(self.old.saturating_sub(self.old - self.live));
                self.collect(false, 30 * MIB, b, self.old);
            }
            self.ns = self.ns.div_ceil(S) * S;
            let t = self.ns as f64 / 1e9;
            self.notices.extend(self.tr.tick(t));
        }
    }

    #[test]
    fn pools_by_name() {
        assert_eq!(pool_kind("G1 Old Gen"), PoolKind::Old);
        assert_eq!(pool_kind("PS Old Gen"), PoolKind::Old);
        assert_eq!(pool_kind("Tenured Gen"), PoolKind::Old);
        assert_eq!(pool_kind("G1 Eden Space"), PoolKind::Young);
        assert_eq!(pool_kind("PS Survivor Space"), PoolKind::Young);
        assert_eq!(pool_kind("ZHeap"), PoolKind::Whole);
        assert_eq!(pool_kind("CodeHeap 'non-nmethods'"), PoolKind::NonHeap);
        assert_eq!(pool_kind("Metaspace"), PoolKind::NonHeap);
        assert!(manager_marks_old("G1 Old Generation") && manager_marks_old("PS MarkSweep"));
        assert!(!manager_marks_old("G1 Young Generation") && !manager_marks_old("PS Scavenge"));
    }

    #[test]
    fn bounded_cache_old_gen_sawtooth_is_not_a_leak() {
        // 40 MiB live, 1 MiB/s of promoted garbage, marking at 115 MiB: a 75 s rise, then back.
        let mut j = Jvm::new(40 * MIB, 256 * MIB);
        for _ in 0..400 {
            j.second(MIB, 0, 115 * MIB);
            let f = j.tr.figures(7).unwrap();
            assert!(
                !f.heap_floor.is_some_and(|h| h.leak),
                "flagged at {:?}: {f:?}",
                j.ns / S
            );
        }
        assert!(
            !j.notices
                .iter()
                .any(|n| matches!(n, GcNotice::HeapLeakSuspected { .. }))
        );
        let f = j.tr.figures(7).unwrap();
        assert!((f.collections_per_sec - 1.0).abs() < 0.2, "{f:?}");
        assert!(!f.gc_pressure.pressure);
        assert_eq!(f.old_gen.as_ref().unwrap().name, "G1 Old Gen");
        assert_eq!(f.pools[0].kind, PoolKind::Old);
        assert!(f.heap_oom_predicted_at.is_none());
    }

    #[test]
    fn first_rise_without_a_marking_is_not_a_leak() {
        // Promotion only: old grows 1 MiB/s for 100 s and the collector never looked at it.
        let mut j = Jvm::new(40 * MIB, 1024 * MIB);
        for _ in 0..100 {
            j.second(MIB, 0, u64::MAX);
        }
        let h = j.tr.figures(7).unwrap().heap_floor.unwrap();
        assert_eq!(h.pattern, Pattern::Mountain);
        assert!(!h.leak, "{h:?}");
        assert_eq!(h.markings, 0);
    }

    #[test]
    fn leak_that_survives_markings_is_flagged_then_oom_predicted_and_exhausted() {
        // 512 KiB/s stays live; markings every time old passes 60 MiB (live grows past it).
        let max = 96 * MIB;
        let mut j = Jvm::new(20 * MIB, max);
        let mut flagged_at = None;
        for s in 0..200 {
            let ihop = (j.live + 10 * MIB).max(60 * MIB);
            j.second(MIB, 512 << 10, ihop);
            if flagged_at.is_none() && j.tr.figures(7).unwrap().heap_floor.is_some_and(|h| h.leak) {
                flagged_at = Some(s);
            }
            if j.live >= max - 4 * MIB {
                break;
            }
        }
        let at = flagged_at.expect("the heap floor was never flagged");
        assert!(at < 140, "flagged only at {at} s");
        let h = j.tr.figures(7).unwrap().heap_floor.unwrap();
        assert!(
            h.markings >= 2 && (h.growth_bytes_per_sec - 524288.0).abs() < 200_000.0,
            "{h:?}"
        );
        assert!(
            j.notices
                .iter()
                .any(|n| matches!(n, GcNotice::HeapOomPredicted { eta_secs: Some(e), .. } if *e < 300.0)),
            "{:?}",
            j.notices
        );
        // Now the heap is at its maximum: full collections reclaim nothing.
        j.old = max - MIB;
        for _ in 0..2 {
            j.collect(true, 0, j.old, j.old);
        }
        j.notices.extend(j.tr.tick(j.ns as f64 / 1e9 + 1.0));
        assert!(
            j.notices.contains(&GcNotice::HeapExhausted { pid: 7 }),
            "{:?}",
            j.notices
        );
        let f = j.tr.figures(7).unwrap();
        assert!(f.heap_exhausted_at.is_some() && f.full_collections_total == 2);
    }

    /// Four minutes of a JVM: for 3 minutes one collection a second reclaiming 30 MiB, then 4 a
    /// second reclaiming 5 MiB each; the old generation after each collection is `old(s)`.
    fn faster_collections_reclaiming_less(old: impl Fn(u64) -> u64) -> (GcFigures, Vec<GcNotice>) {
        let mut tr = GcTracker::new(GcConfig::default(), 0);
        tr.add(3, Runtime::Jvm);
        let mut ns = 0;
        let mut notices = Vec::new();
        for s in 0..240u64 {
            let (n, eden) = if s < 180 { (1, 30 * MIB) } else { (4, 5 * MIB) };
            for _ in 0..n {
                tr.on_event(&GcEvent::JvmGcBegin {
                    pid: 3,
                    ts_ns: ns,
                    full: false,
                });
                for end in [false, true] {
                    for (pool, used, max) in [
                        ("G1 Eden Space", if end { 0 } else { eden }, None),
                        ("G1 Old Gen", old(s), Some(1024 * MIB)),
                    ] {
                        tr.on_event(&GcEvent::JvmPool {
                            pid: 3,
                            ts_ns: ns,
                            end,
                            manager: "G1 Young Generation".into(),
                            pool: pool.into(),
                            used,
                            committed: used.max(eden),
                            max,
                        });
                    }
                }
                ns += 50_000_000;
                tr.on_event(&GcEvent::JvmGcEnd { pid: 3, ts_ns: ns });
            }
            ns = (s + 1) * S;
            notices.extend(tr.tick((s + 1) as f64));
            if s == 179 {
                assert!(!tr.figures(3).unwrap().gc_pressure.pressure);
            }
        }
        (tr.figures(3).unwrap(), notices)
    }

    #[test]
    fn pressure_when_collections_come_faster_and_reclaim_less_over_a_rising_floor() {
        // The live set grows 512 KiB/s: the headroom shrinks.
        let (f, notices) = faster_collections_reclaiming_less(|s| 100 * MIB + s * 512 * 1024);
        assert!(f.gc_pressure.pressure, "{:?}", f.gc_pressure);
        assert!(notices.contains(&GcNotice::PressureOn { pid: 3 }));
        assert!((f.gc_time_share - 0.2).abs() < 0.05, "{}", f.gc_time_share);
        assert!((f.reclaimed_bytes_per_collection.unwrap() - (5 * MIB) as f64).abs() < 1.0);
    }

    #[test]
    fn no_pressure_when_the_young_generation_shrinks_over_a_steady_floor() {
        // The same rates over a live set that holds (a bounded cache, G1 meeting its pause goal
        // with a smaller eden).
        let (f, notices) = faster_collections_reclaiming_less(|s| 100 * MIB + (s % 20) * MIB);
        assert!(!f.gc_pressure.pressure, "{:?} {:?}", f.gc_pressure, f.heap_floor);
        // The rates alone would have raised it.
        let (g, cfg) = (&f.gc_pressure, GcConfig::default());
        assert!(g.collections_per_sec >= cfg.pressure_frequency_ratio * g.baseline_collections_per_sec);
        assert!(g.reclaim_per_collection <= cfg.pressure_reclaim_ratio * g.baseline_reclaim_per_collection);
        assert!(!notices.contains(&GcNotice::PressureOn { pid: 3 }));
    }

    #[test]
    fn python_collections_per_generation() {
        let mut tr = GcTracker::new(GcConfig::default(), 0);
        tr.add(9, Runtime::Python);
        let mut ns = 0;
        for s in 0..40u64 {
            for g in [0, 0, 0, 1] {
                tr.on_event(&GcEvent::PyGcStart {
                    pid: 9,
                    ts_ns: ns,
                    generation: g,
                });
                ns += 1_000_000;
                tr.on_event(&GcEvent::PyGcDone {
                    pid: 9,
                    ts_ns: ns,
                    collected: if g == 0 { 700 } else { 20 },
                });
            }
            ns = (s + 1) * S;
            tr.tick((s + 1) as f64);
        }
        let f = tr.figures(9).unwrap();
        let py = f.python.unwrap();
        assert!((py.collections_per_sec[0] - 3.0).abs() < 0.2, "{py:?}");
        assert!((py.collected_per_collection[0] - 700.0).abs() < 1e-9);
        assert!((py.collected_per_collection[1] - 20.0).abs() < 1e-9);
        assert_eq!(py.collections_total, [120, 40, 0]);
        assert!(f.heap_floor.is_none() && f.old_gen.is_none());
        assert!((f.gc_time_share - 0.004).abs() < 0.001);
        // Events of processes not added are ignored.
        tr.on_event(&GcEvent::PyGcStart {
            pid: 1,
            ts_ns: 0,
            generation: 0,
        });
        assert!(tr.figures(1).is_none());
    }
}
