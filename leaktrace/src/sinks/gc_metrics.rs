//! The collector's metrics (JVM / CPython processes with probes), part of `run --metrics`:
//! registered beside the others, rebuilt with the per-process families (top N processes only).
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::state::Proc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GcLabels {
    pid: String,
    comm: String,
    cgroup: String,
    runtime: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pid: String,
    comm: String,
    cgroup: String,
    /// A heap pool (`G1 Old Gen`, ...), or `total` for the whole heap.
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenLabels {
    pid: String,
    comm: String,
    cgroup: String,
    generation: String,
}

type GaugeF = Gauge<f64, AtomicU64>;

#[derive(Debug, Default)]
pub struct GcMetrics {
    collections: Family<GcLabels, GaugeF>,
    time_ratio: Family<GcLabels, GaugeF>,
    reclaimed: Family<GcLabels, GaugeF>,
    pressure: Family<GcLabels, Gauge>,
    heap_after: Family<PoolLabels, Gauge>,
    heap_max: Family<PoolLabels, Gauge>,
    floor_growth: Family<GcLabels, GaugeF>,
    heap_leak: Family<GcLabels, Gauge>,
    py_collected: Family<GenLabels, GaugeF>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl GcMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "leaktrace_process_gc_collections",
            "Garbage collections of a JVM / CPython process (all generations), over the last 30 s",
            Unit::Other("per_second".into()),
            self.collections.clone(),
        );
        r.register(
            "leaktrace_process_gc_time_ratio",
            "Share of wall time a JVM spent in stop-the-world collection (CPython: in collections), over the last 30 s",
            self.time_ratio.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_gc_reclaimed_per_collection",
            "Heap bytes a JVM's collections reclaimed each, over the last 30 s",
            Unit::Bytes,
            self.reclaimed.clone(),
        );
        r.register(
            "leaktrace_process_gc_pressure",
            "1 while the collector runs more often and reclaims less than in the 2 minutes before (gc_pressure)",
            self.pressure.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_heap_used_after_gc",
            "A JVM's heap used after its last collection, by pool (pool=\"total\": every heap pool)",
            Unit::Bytes,
            self.heap_after.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_heap_max",
            "A JVM heap pool's maximum (pool=\"total\": the heap's, -Xmx)",
            Unit::Bytes,
            self.heap_max.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_heap_floor_growth",
            "Growth of a JVM's heap used after GC, found by the leak classifier",
            Unit::Other("bytes_per_second".into()),
            self.floor_growth.clone(),
        );
        r.register(
            "leaktrace_process_heap_leak_suspected",
            "1 while a JVM's heap floor leaks (it rose across at least two old-generation markings)",
            self.heap_leak.clone(),
        );
        r.register(
            "leaktrace_process_python_gc_collected_per_collection",
            "Objects a CPython process's collections found unreachable each, by generation, over the last 30 s",
            self.py_collected.clone(),
        );
    }

    /// Rebuild from the processes that get per-process series.
    pub fn set(&self, procs: &[&Proc]) {
        self.collections.clear();
        self.time_ratio.clear();
        self.reclaimed.clear();
        self.pressure.clear();
        self.heap_after.clear();
        self.heap_max.clear();
        self.floor_growth.clear();
        self.heap_leak.clear();
        self.py_collected.clear();
        for p in procs {
            let Some(g) = &p.gc else { continue };
            let cgroup = p.memcg.clone().unwrap_or_default();
            let l = GcLabels {
                pid: p.key.pid.to_string(),
                comm: p.comm.clone(),
                cgroup: cgroup.clone(),
                runtime: g.runtime.as_str().into(),
            };
            self.collections.get_or_create(&l).set(g.collections_per_sec);
            self.time_ratio.get_or_create(&l).set(g.gc_time_share);
            self.pressure.get_or_create(&l).set(i64::from(g.gc_pressure.pressure));
            if let Some(r) = g.reclaimed_bytes_per_collection {
                self.reclaimed.get_or_create(&l).set(r);
            }
            if let Some(h) = &g.heap_floor {
                self.floor_growth.get_or_create(&l).set(h.growth_bytes_per_sec);
            }
            if g.runtime == crate::input::Runtime::Jvm {
                self.heap_leak
                    .get_or_create(&l)
                    .set(i64::from(g.heap_floor.is_some_and(|h| h.leak)));
            }
            let pool = |name: &str| PoolLabels {
                pid: l.pid.clone(),
                comm: l.comm.clone(),
                cgroup: cgroup.clone(),
                pool: name.into(),
            };
            for pf in &g.pools {
                self.heap_after
                    .get_or_create(&pool(&pf.name))
                    .set(to_i64(pf.used_after_gc_bytes));
                if let Some(m) = pf.max_bytes {
                    self.heap_max.get_or_create(&pool(&pf.name)).set(to_i64(m));
                }
            }
            if let Some(h) = g.heap_after_gc_bytes {
                self.heap_after.get_or_create(&pool("total")).set(to_i64(h));
            }
            if let Some(m) = g.old_gen.as_ref().and_then(|o| o.max_bytes) {
                self.heap_max.get_or_create(&pool("total")).set(to_i64(m));
            }
            if let Some(py) = &g.python {
                for (i, n) in py.collected_per_collection.iter().enumerate() {
                    self.py_collected
                        .get_or_create(&GenLabels {
                            pid: l.pid.clone(),
                            comm: l.comm.clone(),
                            cgroup: cgroup.clone(),
                            generation: i.to_string(),
                        })
                        .set(*n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::{
        input::{GcEvent, Identity, Obs, Runtime},
        state::{
            ProcessTable,
            gc::{self, GcConfig, GcTracker},
            timeline::TimelineConfig,
        },
    };

    #[test]
    fn jvm_and_python_series() {
        let mut t = ProcessTable::new(10, TimelineConfig::default());
        for pid in [1, 2, 3] {
            let id = Identity {
                pid,
                start: 1,
                ppid: 1,
                comm: format!("p{pid}"),
                ..Identity::default()
            };
            t.start(&id, 0.0);
            t.observe(&Obs(pid, 1, 100 << 10, 4096, 0, 0, None), 0.0);
        }
        let mut tr = GcTracker::new(GcConfig::default(), 0);
        tr.add(1, Runtime::Jvm);
        tr.add(2, Runtime::Python);
        gc::young_collection(&mut tr, 1);
        tr.on_event(&GcEvent::PyGcStart {
            pid: 2,
            ts_ns: 0,
            generation: 0,
        });
        tr.on_event(&GcEvent::PyGcDone {
            pid: 2,
            ts_ns: 1000,
            collected: 700,
        });
        tr.tick(1.0);
        for pid in [1, 2] {
            t.get_mut(pid).unwrap().gc = tr.figures(pid).map(Box::new);
        }
        let m = GcMetrics::default();
        let mut r = Registry::default();
        m.register(&mut r);
        let procs: Vec<&Proc> = t.iter().collect();
        m.set(&procs);
        let mut s = String::new();
        encode(&mut s, &r).unwrap();
        for want in [
            r#"leaktrace_process_heap_used_after_gc_bytes{pid="1",comm="p1",cgroup="",pool="G1 Old Gen"} 10485760"#,
            r#"leaktrace_process_heap_used_after_gc_bytes{pid="1",comm="p1",cgroup="",pool="total"} 10485760"#,
            r#"leaktrace_process_heap_max_bytes{pid="1",comm="p1",cgroup="",pool="total"} 100663296"#,
            r#"leaktrace_process_gc_reclaimed_per_collection_bytes{pid="1",comm="p1",cgroup="",runtime="jvm"} 41943040.0"#,
            r#"leaktrace_process_gc_pressure{pid="1",comm="p1",cgroup="",runtime="jvm"} 0"#,
            r#"leaktrace_process_heap_leak_suspected{pid="1",comm="p1",cgroup="",runtime="jvm"} 0"#,
            r#"leaktrace_process_python_gc_collected_per_collection{pid="2",comm="p2",cgroup="",generation="0"} 700.0"#,
            r#"leaktrace_process_gc_collections_per_second{pid="2",comm="p2",cgroup="",runtime="python"} 1.0"#,
        ] {
            assert!(s.contains(want), "{want} missing:\n{s}");
        }
        assert!(!s.contains(r#"pid="3""#), "{s}");
        assert!(s.contains("leaktrace_process_gc_time_ratio{"), "{s}");
    }
}
