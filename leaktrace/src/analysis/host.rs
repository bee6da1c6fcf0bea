//! The host's memory, explained (issue 14): `MemTotal` split into parts that do not overlap,
//! which parts can be a leak, and the article's host-level clues. Pure: readings come from
//! `input::HostMemObs`, the series from `state::host`.
//!
//! The split (bytes):
//!
//! | part | from `/proc/meminfo` |
//! |---|---|
//! | `free` | MemFree |
//! | `process_anon` | AnonPages (processes' private memory; judged per process) |
//! | `page_cache` | Buffers + Cached − Shmem (file pages; reclaimable, never a leak) |
//! | `swap_cache` | SwapCached |
//! | `tmpfs` | the used blocks of each tmpfs mount (`statvfs`), at most Shmem |
//! | `shmem` | Shmem − tmpfs: shared anonymous memory, SysV segments, memfds |
//! | `slab_reclaimable` | SReclaimable (dentry and inode caches: reclaimable, never a leak) |
//! | `slab_unreclaimable` | SUnreclaim |
//! | `kernel_stack` | KernelStack |
//! | `page_tables` | PageTables + SecPageTables |
//! | `vmalloc` | VmallocUsed − KernelStack (stacks are vmalloc'ed with CONFIG_VMAP_STACK) |
//! | `percpu` | Percpu |
//! | `hugetlb` | Hugetlb (or HugePages_Total × Hugepagesize) |
//! | `socket_buffers` | `/proc/net/sockstat` TCP + UDP `mem`, FRAG `memory` |
//! | `unexplained` | MemTotal − all of the above (drivers' pages, pipe buffers, ...) |
use serde::Serialize;

use super::classify::{ClassifierConfig, Pattern, Verdict};
use crate::input::HostMemObs;

/// One part of the host's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Free,
    ProcessAnon,
    PageCache,
    SwapCache,
    Tmpfs,
    Shmem,
    SlabReclaimable,
    SlabUnreclaimable,
    KernelStack,
    PageTables,
    Vmalloc,
    Percpu,
    Hugetlb,
    SocketBuffers,
    Unexplained,
}

impl Part {
    #[cfg(test)]
    pub const ALL: [Part; 15] = [
        Part::Free,
        Part::ProcessAnon,
        Part::PageCache,
        Part::SwapCache,
        Part::Tmpfs,
        Part::Shmem,
        Part::SlabReclaimable,
        Part::SlabUnreclaimable,
        Part::KernelStack,
        Part::PageTables,
        Part::Vmalloc,
        Part::Percpu,
        Part::Hugetlb,
        Part::SocketBuffers,
        Part::Unexplained,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Free => "free",
            Part::ProcessAnon => "process_anon",
            Part::PageCache => "page_cache",
            Part::SwapCache => "swap_cache",
            Part::Tmpfs => "tmpfs",
            Part::Shmem => "shmem",
            Part::SlabReclaimable => "slab_reclaimable",
            Part::SlabUnreclaimable => "slab_unreclaimable",
            Part::KernelStack => "kernel_stack",
            Part::PageTables => "page_tables",
            Part::Vmalloc => "vmalloc",
            Part::Percpu => "percpu",
            Part::Hugetlb => "hugetlb",
            Part::SocketBuffers => "socket_buffers",
            Part::Unexplained => "unexplained",
        }
    }

    /// Whether a mountain in this part is a host leak. Free memory and caches the kernel
    /// reclaims (page cache, reclaimable slab, swap cache) never are — a host that caches files
    /// is not leaking; processes' anonymous memory is judged per process; tmpfs is judged per
    /// mount (the aggregate only sums them).
    pub fn candidate(self) -> bool {
        !matches!(
            self,
            Part::Free | Part::ProcessAnon | Part::PageCache | Part::SwapCache | Part::SlabReclaimable | Part::Tmpfs
        )
    }

    /// Parts that grow with processes' own memory (page tables map it; kernel stacks are per
    /// thread; shmem is in a mapping process's footprint): while a process is flagged, its
    /// leak explains them.
    pub fn follows_processes(self) -> bool {
        matches!(self, Part::PageTables | Part::KernelStack | Part::Shmem)
    }

    /// Parts a life's open descriptors pin (socket and pipe objects are unreclaimable slab,
    /// pipe buffers are pages of their own, socket buffers are counted apart).
    pub fn pinned_by_descriptors(self) -> bool {
        matches!(self, Part::SlabUnreclaimable | Part::SocketBuffers | Part::Unexplained)
    }
}

/// `MemTotal` in parts, at one reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Split {
    pub total: u64,
    pub available: u64,
    /// Every part, in [`Part::ALL`] order.
    pub parts: Vec<(Part, u64)>,
    /// The tmpfs mounts (largest first).
    pub tmpfs: Vec<(String, u64)>,
}

impl Split {
    #[cfg(test)]
    pub fn get(&self, p: Part) -> u64 {
        self.parts.iter().find(|x| x.0 == p).map_or(0, |x| x.1)
    }
}

pub fn split(h: &HostMemObs) -> Split {
    let m = &h.mem;
    let tmpfs_sum: u64 = h.tmpfs.iter().map(|t| t.1).sum();
    let tmpfs = tmpfs_sum.min(m.shmem);
    let vmalloc = m.vmalloc.saturating_sub(m.kernel_stack);
    let known = [
        (Part::Free, m.free),
        (Part::ProcessAnon, m.anon),
        (Part::PageCache, (m.buffers + m.cached).saturating_sub(m.shmem)),
        (Part::SwapCache, m.swap_cached),
        (Part::Tmpfs, tmpfs),
        (Part::Shmem, m.shmem - tmpfs),
        (Part::SlabReclaimable, m.slab_reclaimable),
        (Part::SlabUnreclaimable, m.slab_unreclaimable),
        (Part::KernelStack, m.kernel_stack),
        (Part::PageTables, m.page_tables),
        (Part::Vmalloc, vmalloc),
        (Part::Percpu, m.percpu),
        (Part::Hugetlb, m.hugetlb),
        (Part::SocketBuffers, h.sock.unwrap_or(0)),
    ];
    let sum: u64 = known.iter().map(|p| p.1).sum();
    let mut parts = known.to_vec();
    parts.push((Part::Unexplained, m.total.saturating_sub(sum)));
    let mut mounts = h.tmpfs.clone();
    mounts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Split {
        total: m.total,
        available: m.available,
        parts,
        tmpfs: mounts,
    }
}

/// The classifier for host parts: the RSS defaults with larger minimums for the kernel's
/// aggregates (they move by megabytes on a busy host), the defaults for a tmpfs mount (it only
/// moves when files do).
pub fn part_classifier(p: Part) -> ClassifierConfig {
    let d = ClassifierConfig::default();
    match p {
        Part::Tmpfs => d,
        _ => ClassifierConfig {
            min_total_growth_bytes: 8 << 20,
            min_growth_bytes_per_sec: 32.0 * 1024.0,
            min_swing_bytes: 4 << 20,
            ..d
        },
    }
}

/// The classifier for "MemAvailable falling without recovering": used memory (MemTotal −
/// MemAvailable) as a floor that keeps rising over the window.
pub fn available_classifier() -> ClassifierConfig {
    ClassifierConfig {
        min_total_growth_bytes: 16 << 20,
        min_growth_bytes_per_sec: 16.0 * 1024.0,
        min_swing_bytes: 8 << 20,
        ..ClassifierConfig::default()
    }
}

/// The host-level clues of the source article, now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Clues {
    /// SwapUsed / SwapTotal (None without swap).
    pub swap_used_ratio: Option<f64>,
    /// More than half of swap is used.
    pub swap_high: bool,
    /// MemAvailable keeps falling over the window without recovering (the classifier says the
    /// floor of used memory is a mountain).
    pub available_falling: bool,
    /// Change of MemAvailable, bytes per second (the classifier's slope of used memory, negated).
    pub available_trend_bytes_per_sec: f64,
    /// OOM kills in the kernel log since boot, and since leaktrace started.
    pub oom_kills_boot: Option<u64>,
    pub oom_kills_seen: u64,
}

/// The clues from the last reading, the used-memory verdict and the OOM-kill counts.
pub fn clues(h: &HostMemObs, used: Option<&Verdict>, oom_first: Option<u64>) -> Clues {
    let m = &h.mem;
    let ratio = (m.swap_total > 0).then(|| m.swap_total.saturating_sub(m.swap_free) as f64 / m.swap_total as f64);
    Clues {
        swap_used_ratio: ratio,
        swap_high: ratio.is_some_and(|r| r > 0.5),
        available_falling: used.is_some_and(|v| v.leak),
        available_trend_bytes_per_sec: used.map_or(0.0, |v| {
            if v.pattern == Pattern::Mountain {
                -v.growth_bytes_per_sec
            } else {
                0.0
            }
        }),
        oom_kills_boot: h.oom_kills,
        oom_kills_seen: match (oom_first, h.oom_kills) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::MemInfoObs;

    fn obs() -> HostMemObs {
        HostMemObs {
            mem: MemInfoObs {
                total: 1000,
                free: 100,
                available: 500,
                buffers: 10,
                cached: 300,
                anon: 200,
                shmem: 60,
                slab_reclaimable: 60,
                slab_unreclaimable: 20,
                kernel_stack: 8,
                page_tables: 12,
                vmalloc: 18,
                percpu: 4,
                swap_total: 100,
                swap_free: 40,
                ..MemInfoObs::default()
            },
            sock: Some(6),
            tmpfs: vec![("/a".into(), 10), ("/dev/shm".into(), 30)],
            slabs: None,
            oom_kills: Some(3),
        }
    }

    #[test]
    fn the_parts_add_up_to_memtotal() {
        let s = split(&obs());
        let sum: u64 = s.parts.iter().map(|p| p.1).sum();
        assert_eq!(sum, 1000);
        assert_eq!(s.get(Part::PageCache), 250);
        assert_eq!(s.get(Part::Tmpfs), 40);
        assert_eq!(s.get(Part::Shmem), 20);
        assert_eq!(s.get(Part::Vmalloc), 10);
        assert_eq!(s.get(Part::SocketBuffers), 6);
        assert_eq!(
            s.get(Part::Unexplained),
            1000 - 100 - 200 - 250 - 40 - 20 - 60 - 20 - 8 - 12 - 10 - 4 - 6
        );
        assert_eq!(s.tmpfs[0], ("/dev/shm".to_string(), 30));
        assert_eq!(s.parts.len(), Part::ALL.len());
        // tmpfs usage above Shmem (a mount full of swapped-out pages) is capped.
        let mut o = obs();
        o.tmpfs = vec![("/big".into(), 500)];
        let s = split(&o);
        assert_eq!((s.get(Part::Tmpfs), s.get(Part::Shmem)), (60, 0));
    }

    #[test]
    fn caches_are_never_candidates() {
        for p in [Part::PageCache, Part::SlabReclaimable, Part::Free, Part::SwapCache] {
            assert!(!p.candidate(), "{p:?}");
        }
        assert!(Part::SlabUnreclaimable.candidate() && Part::Unexplained.candidate());
    }

    #[test]
    fn clue_values() {
        let c = clues(&obs(), None, Some(1));
        assert_eq!(c.swap_used_ratio, Some(0.6));
        assert!(c.swap_high && !c.available_falling);
        assert_eq!((c.oom_kills_boot, c.oom_kills_seen), (Some(3), 2));
        let mut o = obs();
        o.mem.swap_total = 0;
        assert_eq!(clues(&o, None, None).swap_used_ratio, None);
    }
}
