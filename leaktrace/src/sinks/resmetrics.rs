//! Issue 14's Prometheus metrics, registered beside the others (`sinks::metrics`): what lives
//! hold outside their RSS (descriptors, kernel memory, time to EMFILE), the host's memory in
//! parts with the leak verdict of each, and the article's clues (swap > 50 %, MemAvailable
//! falling without recovering; OOM kills are `leaktrace_host_oom_kills_total`).
//!
//! Cardinality: per-process series for the top N lives by descriptors (a descriptor or kernel
//! leak first, then descriptor growth, then open descriptors); host parts are a fixed set;
//! tmpfs mounts and slab caches the largest [`TOP_NAMED`] (and every flagged mount).
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::{
    analysis::{
        classify::Pattern,
        host::{Clues, Part},
        resources::fds_per_sec,
    },
    state::{ProcessTable, host::HostState, resources::Resources},
    sys::fds::FdKind,
};

/// tmpfs mounts and slab caches given series, at most.
pub const TOP_NAMED: usize = 20;

type GaugeF = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcLabels {
    pid: String,
    comm: String,
    cgroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    pid: String,
    comm: String,
    cgroup: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    part: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamedLabels {
    part: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MountLabels {
    mount: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlabLabels {
    cache: String,
    reclaimable: String,
}

/// What the metrics are built from, at one update.
pub struct View<'a> {
    pub table: &'a ProcessTable,
    pub res: &'a Resources,
    pub host: &'a HostState,
    pub clues: Option<Clues>,
}

#[derive(Debug, Default)]
pub struct ResourceMetrics {
    top: usize,
    open_fds: Family<ProcLabels, Gauge>,
    fds_by_kind: Family<KindLabels, Gauge>,
    fd_limit: Family<ProcLabels, Gauge>,
    fd_growth: Family<ProcLabels, GaugeF>,
    fd_leak: Family<ProcLabels, Gauge>,
    fd_eta: Family<ProcLabels, GaugeF>,
    kernel: Family<ProcLabels, Gauge>,
    kernel_leak: Family<ProcLabels, Gauge>,
    part_bytes: Family<PartLabels, Gauge>,
    part_growth: Family<PartLabels, GaugeF>,
    host_leak: Family<NamedLabels, Gauge>,
    tmpfs: Family<MountLabels, Gauge>,
    slab: Family<SlabLabels, Gauge>,
    swap_ratio: GaugeF,
    avail_falling: Gauge,
    avail_trend: GaugeF,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ResourceMetrics {
    /// Register every family in `r`; `top`: lives given per-process series.
    pub fn register(r: &mut Registry, top: usize) -> ResourceMetrics {
        let m = ResourceMetrics {
            top,
            ..ResourceMetrics::default()
        };
        let per_sec = || Unit::Other("per_second".into());
        r.register(
            "leaktrace_process_open_fds",
            "Open file descriptors of a process; top processes by descriptors only",
            m.open_fds.clone(),
        );
        r.register(
            "leaktrace_process_open_fds_by_kind",
            "Open file descriptors by kind (socket, pipe, eventfd, epoll, timerfd, inotify, anon_inode, memfd, file, other) at the last scan",
            m.fds_by_kind.clone(),
        );
        r.register(
            "leaktrace_process_fd_limit",
            "The soft RLIMIT_NOFILE of the process (open() fails with EMFILE beyond it)",
            m.fd_limit.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_fd_growth",
            "Growth of the floor of the open-descriptor count found by the leak classifier, descriptors per second",
            per_sec(),
            m.fd_growth.clone(),
        );
        r.register(
            "leaktrace_process_fd_leak_suspected",
            "1 while leaktrace suspects the process of leaking file descriptors (resource_leak_suspected fd_leak)",
            m.fd_leak.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_fd_exhaustion_eta",
            "Projected time until the open descriptors reach RLIMIT_NOFILE; only for growing counts",
            Unit::Seconds,
            m.fd_eta.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_kernel_memory",
            "Kernel memory charged to the process's own memory cgroup (slab, socket and pipe buffers, ...); only when no other process is in it",
            Unit::Bytes,
            m.kernel.clone(),
        );
        r.register(
            "leaktrace_process_kernel_leak_suspected",
            "1 while leaktrace suspects the process of leaking kernel memory (resource_leak_suspected kernel_leak)",
            m.kernel_leak.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_memory_part",
            "MemTotal split into parts that add up to it (free, process_anon, page_cache, swap_cache, tmpfs, shmem, slab_reclaimable, slab_unreclaimable, kernel_stack, page_tables, vmalloc, percpu, hugetlb, socket_buffers, unexplained)",
            Unit::Bytes,
            m.part_bytes.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_memory_part_growth",
            "Growth of the floor of each part found by the leak classifier",
            Unit::Other("bytes_per_second".into()),
            m.part_growth.clone(),
        );
        r.register(
            "leaktrace_host_leak_suspected",
            "1 while a part of the host's memory is suspected of leaking (host_leak_suspected); name: the tmpfs mount",
            m.host_leak.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_tmpfs_used",
            "Memory used in each tmpfs mount (one per filesystem); the largest only",
            Unit::Bytes,
            m.tmpfs.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_slab",
            "Memory held by each slab cache (/proc/slabinfo, root only); the largest only",
            Unit::Bytes,
            m.slab.clone(),
        );
        r.register(
            "leaktrace_host_swap_used_ratio",
            "SwapUsed / SwapTotal (absent without swap); above 0.5 is a clue of a leak",
            m.swap_ratio.clone(),
        );
        r.register(
            "leaktrace_host_memory_available_falling",
            "1 while MemAvailable keeps falling over the window without recovering (the classifier's mountain on MemTotal - MemAvailable)",
            m.avail_falling.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_memory_available_trend",
            "Trend of MemAvailable while it falls (negative), else 0",
            Unit::Other("bytes_per_second".into()),
            m.avail_trend.clone(),
        );
        m
    }

    /// Rebuild every family from the monitor's state.
    pub fn set(&self, v: &View) {
        for f in [
            &self.open_fds,
            &self.fd_limit,
            &self.fd_leak,
            &self.kernel,
            &self.kernel_leak,
        ] {
            f.clear();
        }
        self.fds_by_kind.clear();
        self.fd_growth.clear();
        self.fd_eta.clear();
        let growth = |r: &crate::state::resources::ProcRes| {
            r.fds
                .verdict
                .filter(|v| v.pattern == Pattern::Mountain)
                .map_or(0.0, |v| fds_per_sec(&v).max(0.0))
        };
        let mut lives: Vec<(u32, &crate::state::resources::ProcRes)> =
            v.res.iter().filter(|(pid, _)| v.table.contains(*pid)).collect();
        lives.sort_by(|(pa, a), (pb, b)| {
            let flagged = |r: &crate::state::resources::ProcRes| r.fds.flag.is_some() || r.kernel.flag.is_some();
            flagged(b)
                .cmp(&flagged(a))
                .then_with(|| growth(b).total_cmp(&growth(a)))
                .then_with(|| b.fds.last.cmp(&a.fds.last))
                .then(pa.cmp(pb))
        });
        for (pid, r) in lives.into_iter().take(self.top) {
            let Some(p) = v.table.get(pid) else { continue };
            let l = ProcLabels {
                pid: pid.to_string(),
                comm: p.comm.clone(),
                cgroup: p.memcg.clone().unwrap_or_default(),
            };
            if let Some(n) = r.fds.last {
                self.open_fds.get_or_create(&l).set(to_i64(n));
                self.fd_growth.get_or_create(&l).set(growth(r));
                self.fd_leak.get_or_create(&l).set(i64::from(r.fds.flag.is_some()));
            }
            if let Some(k) = r.kinds() {
                for kind in FdKind::ALL.into_iter().filter(|x| k.get(*x) > 0) {
                    let kl = KindLabels {
                        pid: l.pid.clone(),
                        comm: l.comm.clone(),
                        cgroup: l.cgroup.clone(),
                        kind: kind.name().into(),
                    };
                    self.fds_by_kind.get_or_create(&kl).set(i64::from(k.get(kind)));
                }
            }
            if let Some(lim) = r.fd_limit {
                self.fd_limit.get_or_create(&l).set(to_i64(lim));
            }
            if let Some(eta) = r.fd_eta {
                self.fd_eta.get_or_create(&l).set(eta);
            }
            if let Some(k) = r.kernel.last {
                self.kernel.get_or_create(&l).set(to_i64(k));
                self.kernel_leak
                    .get_or_create(&l)
                    .set(i64::from(r.kernel.flag.is_some()));
            }
        }
        self.set_host(v);
    }

    fn set_host(&self, v: &View) {
        self.host_leak.clear();
        self.tmpfs.clear();
        self.slab.clear();
        let h = v.host;
        for (part, s) in &h.parts {
            let pl = PartLabels {
                part: part.name().into(),
            };
            self.part_bytes.get_or_create(&pl).set(to_i64(s.last));
            self.part_growth
                .get_or_create(&pl)
                .set(s.verdict.map_or(0.0, |v| v.growth_bytes_per_sec));
            if part.candidate() {
                self.host_leak
                    .get_or_create(&NamedLabels {
                        part: part.name().into(),
                        name: String::new(),
                    })
                    .set(i64::from(s.flag.is_some()));
            }
        }
        let mut mounts: Vec<(&String, &crate::state::host::PartSeries)> = h.mounts.iter().collect();
        mounts.sort_by(|a, b| {
            b.1.flag
                .is_some()
                .cmp(&a.1.flag.is_some())
                .then(b.1.last.cmp(&a.1.last))
                .then_with(|| a.0.cmp(b.0))
        });
        for (i, (m, s)) in mounts.into_iter().enumerate() {
            if i >= TOP_NAMED && s.flag.is_none() {
                break;
            }
            self.tmpfs
                .get_or_create(&MountLabels { mount: m.clone() })
                .set(to_i64(s.last));
            self.host_leak
                .get_or_create(&NamedLabels {
                    part: Part::Tmpfs.name().into(),
                    name: m.clone(),
                })
                .set(i64::from(s.flag.is_some()));
        }
        for (cache, bytes, reclaimable) in h.largest_slabs(TOP_NAMED) {
            self.slab
                .get_or_create(&SlabLabels {
                    cache,
                    reclaimable: reclaimable.to_string(),
                })
                .set(to_i64(bytes));
        }
        if let Some(c) = v.clues {
            if let Some(r) = c.swap_used_ratio {
                self.swap_ratio.set(r);
            }
            self.avail_falling.set(i64::from(c.available_falling));
            self.avail_trend.set(c.available_trend_bytes_per_sec.min(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        input::{HostMemObs, Identity, MemInfoObs, Obs, ResObs},
        state::timeline::TimelineConfig,
    };

    #[test]
    fn families() {
        let mut r = Registry::default();
        let m = ResourceMetrics::register(&mut r, 10);
        let mut table = ProcessTable::new(10, TimelineConfig::default());
        table.start(
            &Identity {
                pid: 7,
                start: 1,
                comm: "py".into(),
                ..Identity::default()
            },
            0.0,
        );
        table.observe(&Obs(7, 1, 4096, 0, 0, 0, None), 0.0);
        let mut res = Resources::new(TimelineConfig::default());
        let mut kinds = crate::sys::fds::FdCounts::default();
        kinds.add(FdKind::Pipe);
        res.observe(
            &ResObs {
                fds: Some(12),
                kinds: Some(kinds),
                fd_limit: Some(1024),
                kernel: Some(1 << 20),
                ..ResObs::new(7, 1)
            },
            0.0,
        );
        let mut host = HostState::new(TimelineConfig::default());
        host.observe(
            &HostMemObs {
                mem: MemInfoObs {
                    total: 1 << 30,
                    free: 1 << 29,
                    available: 1 << 29,
                    shmem: 8 << 20,
                    swap_total: 100,
                    swap_free: 20,
                    ..MemInfoObs::default()
                },
                tmpfs: vec![("/dev/shm".into(), 4 << 20)],
                slabs: Some(vec![("kmalloc-1k".into(), 1 << 20, false)]),
                ..HostMemObs::default()
            },
            0.0,
        );
        let clues = Some(crate::analysis::host::Clues {
            swap_used_ratio: Some(0.8),
            swap_high: true,
            ..Default::default()
        });
        m.set(&View {
            table: &table,
            res: &res,
            host: &host,
            clues,
        });
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        for want in [
            r#"leaktrace_process_open_fds{pid="7",comm="py",cgroup=""} 12"#,
            r#"leaktrace_process_open_fds_by_kind{pid="7",comm="py",cgroup="",kind="pipe"} 1"#,
            r#"leaktrace_process_fd_limit{pid="7",comm="py",cgroup=""} 1024"#,
            r#"leaktrace_process_fd_leak_suspected{pid="7",comm="py",cgroup=""} 0"#,
            r#"leaktrace_process_kernel_memory_bytes{pid="7",comm="py",cgroup=""} 1048576"#,
            r#"leaktrace_host_memory_part_bytes{part="tmpfs"} 4194304"#,
            r#"leaktrace_host_memory_part_bytes{part="free"} 536870912"#,
            r#"leaktrace_host_leak_suspected{part="tmpfs",name="/dev/shm"} 0"#,
            r#"leaktrace_host_leak_suspected{part="slab_unreclaimable",name=""} 0"#,
            r#"leaktrace_host_tmpfs_used_bytes{mount="/dev/shm"} 4194304"#,
            r#"leaktrace_host_slab_bytes{cache="kmalloc-1k",reclaimable="false"} 1048576"#,
            "leaktrace_host_swap_used_ratio 0.8",
            "leaktrace_host_memory_available_falling 0",
        ] {
            assert!(s.contains(want), "{want} missing:\n{s}");
        }
        assert!(
            !s.contains(r#"part="page_cache",name"#),
            "caches are never leak candidates"
        );
    }
}
