//! The driver's reads for issue 14: what tracked lives hold outside their RSS (descriptors,
//! their limit, the kernel memory of a cgroup of their own, CPU time) and the host's memory in
//! parts, into `input::ResObs` and `input::HostMemObs`.
//!
//! Costs decide what is read when (figures from `read_costs` below; README.md "What it costs"):
//! - the descriptor count is one `stat` of `/proc/PID/fd` (its size is the count since Linux
//!   6.2), about as dear as one small /proc read; it is read every tick for lives whose count
//!   moved in the last [`HOT_TICKS`] ticks, every few ticks for lives read this tick (their
//!   RSS moved; [`Ctx::moved_period`]), and for
//!   every other life once per pass: a slice of the table each tick ([`Ctx::period`]), so that
//!   a host with ten thousand idle processes costs a bounded number of reads a tick (an idle
//!   process's descriptors are looked at every `period` ticks, not all at once);
//! - the kinds cost one `readlinkat` per descriptor: a life is scanned only when its count
//!   differs from its last scan, at most once per `100 ×` the last scan's duration (1 % of a
//!   core per life), and at most [`SCAN_BUDGET`] descriptors a tick over all lives;
//! - `/proc/slabinfo` is by far the dearest host read (the kernel walks every cache): every
//!   [`SLAB_EVERY`] ticks, and never again once refused (not root);
//! - the tmpfs mount list is re-read at sweeps; each mount is one `statvfs` a tick.
//!
//! Kernels before 6.2 report no count in the directory's size: then a life is scanned when it
//! is read (RSS moved) or in its slice of the pass, under the same limits.
use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use crate::{
    input::{Batch, HostMemObs, MemInfoObs, ResObs},
    state::ProcessTable,
    sys::{
        cgroup::{CgroupVersion, MemcgPath},
        fds,
        host::{MemParts, read_oom_kills},
        hostmem, kmem,
    },
};

/// Ticks a life stays "hot" (its count re-read every tick) after its count moved.
pub const HOT_TICKS: u64 = 30;
/// Descriptors scanned per tick, at most, over all lives.
pub const SCAN_BUDGET: u64 = 20_000;
/// A life's scans take at most this share of a core.
const SCAN_DUTY: f64 = 0.01;
/// `/proc/slabinfo` is read every this many ticks.
pub const SLAB_EVERY: u64 = 30;
/// Which process owns a memory cgroup is re-checked after this many ticks.
const OWN_TICKS: u64 = 10;
/// A cgroup with more processes than this is nobody's own (one read of its `cgroup.procs`
/// per check, whatever its size).
const MAX_OWN_PROCS: usize = 256;
/// tmpfs mounts recorded per reading, at most (the largest).
const MAX_MOUNTS: usize = 64;
/// Slab caches recorded per slabinfo reading: the largest and the fastest-growing, each.
const SLABS_EACH: usize = 16;

#[derive(Debug, Default)]
struct Probe {
    start: u64,
    /// Last count reported.
    count: Option<u64>,
    /// Count at the last scan.
    scanned: Option<u64>,
    next_scan_t: f64,
    hot_until: u64,
}

/// What the reader needs to know of the monitor this tick.
pub struct Ctx<'a> {
    pub t: f64,
    pub tick: u64,
    /// Every life is read this tick (the driver re-read everything: no change marks, or
    /// lifecycle events lost).
    pub full: bool,
    /// Re-read the tmpfs mount list, drop what ended (every few ticks).
    pub sweep: bool,
    /// Lives with `pid % period == tick % period` are this tick's slice of the pass …
    pub period: u64,
    /// … and lives read this tick, of this shorter one.
    pub moved_period: u64,
    pub table: &'a ProcessTable,
    /// The watched tree (`watch`): CPU time of every member each tick.
    pub group: Option<&'a HashSet<u32>>,
    /// Where each life's memory cgroup lives.
    pub memcg_dirs: &'a HashMap<u32, MemcgPath>,
}

impl Ctx<'_> {
    /// Whether `pid` is in this tick's slice of the pass (or everything is read).
    fn in_pass(&self, pid: u32) -> bool {
        self.full || pass_due(pid, self.tick, self.period)
    }
}

/// Whether `pid` is in the slice of a pass of `period` ticks due at `tick`.
pub fn pass_due(pid: u32, tick: u64, period: u64) -> bool {
    let period = period.max(1);
    u64::from(pid) % period == tick % period
}

/// Ticks a pass over every life takes: at least `every`, longer when the table holds more than
/// `per_tick` lives a tick would allow.
pub fn pass_period(lives: usize, every: u64, per_tick: usize) -> u64 {
    every.max(lives.div_ceil(per_tick.max(1)) as u64).max(1)
}

#[derive(Debug, Default)]
pub struct ResourceReader {
    procs: HashMap<u32, Probe>,
    /// Each memory cgroup's owner ([`owner_of`]), and when it was checked: read once per cgroup,
    /// not once per process in it.
    owners: HashMap<std::path::PathBuf, (Option<u32>, u64)>,
    host: Option<HostReader>,
}

#[derive(Debug, Default)]
struct HostReader {
    mounts: Vec<hostmem::TmpfsMount>,
    /// Mounts that held memory since they were mounted: emptied, they are still reported (at 0).
    reported: HashSet<String>,
    slabs_refused: bool,
    prev_slabs: HashMap<String, u64>,
    reclaimable: HashMap<String, bool>,
}

impl ResourceReader {
    /// `host`: read the host's memory in parts too (`run`, `top`).
    pub fn new(host: bool) -> ResourceReader {
        ResourceReader {
            procs: HashMap::new(),
            owners: HashMap::new(),
            host: host.then(HostReader::default),
        }
    }

    /// Read the lives due this tick into `b.res` (`b.obs` must be filled: those lives moved).
    pub fn read_lives(&mut self, b: &mut Batch, ctx: &Ctx) {
        // Lives read this tick (their RSS moved) are looked at on a pass of their own, of
        // `moved_period` ticks: a host's growing processes move every tick.
        let mut due: Vec<(u32, u64)> = b
            .obs
            .iter()
            .map(|o| o.key())
            .filter(|&(pid, _)| ctx.full || pass_due(pid, ctx.tick, ctx.moved_period))
            .collect();
        let in_obs: HashSet<u32> = due.iter().map(|d| d.0).collect();
        if ctx.sweep {
            self.procs.retain(|pid, p| ctx.table.life((*pid, p.start)).is_some());
            self.owners.retain(|_, (_, at)| ctx.tick < *at + OWN_TICKS);
        }
        due.extend(
            ctx.table
                .iter()
                .filter(|p| ctx.in_pass(p.key.pid))
                .map(|p| (p.key.pid, p.key.start_ticks)),
        );
        due.extend(
            self.procs
                .iter()
                .filter(|(_, p)| p.hot_until >= ctx.tick)
                .map(|(pid, p)| (*pid, p.start)),
        );
        if let Some(g) = ctx.group {
            due.extend(
                g.iter()
                    .filter_map(|pid| ctx.table.get(*pid))
                    .map(|p| (p.key.pid, p.key.start_ticks)),
            );
        }
        due.sort_unstable();
        due.dedup();
        let mut budget = SCAN_BUDGET;
        // Lives whose count moved most since their last scan go first.
        let mut scans: Vec<(u64, usize, bool)> = Vec::new();
        let mut out: Vec<ResObs> = Vec::with_capacity(due.len());
        for (pid, start) in due {
            if ctx.table.life((pid, start)).is_none() {
                continue;
            }
            let probe = self.procs.entry(pid).or_default();
            if probe.start != start {
                *probe = Probe {
                    start,
                    ..Probe::default()
                };
            }
            let mut r = ResObs::new(pid, start);
            let count = fds::count(pid);
            if count.is_some() && count != probe.count {
                r.fds = count;
                if probe.count.is_some() {
                    probe.hot_until = ctx.tick + HOT_TICKS;
                }
                probe.count = count;
            }
            let want_scan = match count {
                // Only lives whose count moved: a steady count's kinds are of no interest.
                Some(n) => probe.hot_until > 0 && probe.scanned != Some(n),
                // No count from stat (before 6.2): scan when read.
                None => in_obs.contains(&pid) || ctx.in_pass(pid),
            };
            if want_scan && ctx.t >= probe.next_scan_t {
                let moved = match (count, probe.scanned) {
                    (Some(n), Some(s)) => n.abs_diff(s),
                    _ => u64::MAX,
                };
                scans.push((moved, out.len(), count.is_some()));
            }
            let hot = probe.hot_until >= ctx.tick;
            if hot || ctx.in_pass(pid) {
                self.kernel(pid, &mut r, ctx);
            }
            // CPU time (bytes per CPU-second): the watched tree every tick (the driver already
            // reads the lives whose memory moved, which is every growing one).
            let member = ctx.group.is_some_and(|g| g.contains(&pid));
            if member
                && !b.cpu.iter().any(|c| c.0 == pid)
                && let Some(ms) = super::observe::cpu_ms(pid)
            {
                b.cpu.push((pid, start, ms));
            }
            out.push(r);
        }
        scans.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (_, i, counted) in scans {
            let r = &mut out[i];
            let Some(probe) = self.procs.get_mut(&r.pid) else {
                continue;
            };
            if probe.count.unwrap_or(0) > budget {
                continue;
            }
            let began = Instant::now();
            let Ok(s) = fds::scan(r.pid) else { continue };
            probe.next_scan_t = ctx.t + began.elapsed().as_secs_f64() / SCAN_DUTY;
            let total = s.counts.total();
            budget = budget.saturating_sub(total.max(1));
            if !counted && probe.count != Some(total) {
                // No count from stat: the scan's total is the count.
                r.fds = Some(total);
                if probe.count.is_some() {
                    probe.hot_until = ctx.tick + HOT_TICKS;
                }
                probe.count = Some(total);
            }
            probe.scanned = probe.count;
            r.kinds = Some(s.counts);
            r.fd_limit = fds::nofile_limit(r.pid);
        }
        b.res.extend(
            out.into_iter()
                .filter(|r| r.fds.is_some() || r.kinds.is_some() || r.kernel.is_some()),
        );
    }

    /// The kernel memory of `pid`'s memory cgroup, when the cgroup is its own.
    fn kernel(&mut self, pid: u32, r: &mut ResObs, ctx: &Ctx) {
        let Some(dir) = ctx.memcg_dirs.get(&pid) else { return };
        let owner = match self.owners.get(&dir.fs_path) {
            Some((owner, at)) if ctx.tick < at + OWN_TICKS => *owner,
            _ => {
                let owner = owner_of(dir, ctx.table);
                self.owners.insert(dir.fs_path.clone(), (owner, ctx.tick));
                owner
            }
        };
        if owner != Some(pid) {
            return;
        }
        if let Ok(k) = kmem::read_kernel_mem(dir) {
            r.kernel = Some(k.kernel);
            r.kernel_reclaimable = dir.version == CgroupVersion::V1;
            r.sock = k.sock.filter(|s| *s > 0);
        }
    }

    /// The host's memory in parts (None when not asked for, or /proc/meminfo is unreadable).
    pub fn read_host(&mut self, ctx: &Ctx) -> Option<HostMemObs> {
        let h = self.host.as_mut()?;
        let first = ctx.tick <= 1;
        h.read(ctx.sweep || first, first || ctx.tick.is_multiple_of(SLAB_EVERY), false)
    }
}

/// The host's memory in parts now, every tmpfs mount and slab cache (`leaktrace host`).
pub fn host_now() -> Option<HostMemObs> {
    HostReader::default().read(true, true, true)
}

impl HostReader {
    /// One reading: re-read the mount list (`mounts`), slabinfo (`slabs`; `all`: every cache).
    fn read(&mut self, mounts: bool, slabs: bool, all: bool) -> Option<HostMemObs> {
        let m = MemParts::read().ok()?;
        if mounts || self.mounts.is_empty() {
            self.mounts = hostmem::read_tmpfs_mounts().unwrap_or_default();
        }
        let mut tmpfs: Vec<(String, u64)> = self
            .mounts
            .iter()
            .filter_map(|m| Some((m.mount_point.clone(), hostmem::used_bytes(&m.mount_point).ok()?)))
            .filter(|m| m.1 > 0 || all || self.reported.contains(&m.0))
            .collect();
        tmpfs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if !all {
            tmpfs.truncate(MAX_MOUNTS);
        }
        let mounted: HashSet<&str> = self.mounts.iter().map(|m| m.mount_point.as_str()).collect();
        self.reported.retain(|m| mounted.contains(m.as_str()));
        self.reported
            .extend(tmpfs.iter().filter(|m| m.1 > 0).map(|m| m.0.clone()));
        let slabs = if !self.slabs_refused && slabs {
            match hostmem::read_slabinfo() {
                Ok(s) if all => Some(self.mark(s)),
                Ok(s) => Some(self.pick_slabs(s)),
                Err(e) => {
                    log::info!("/proc/slabinfo: {e}: slab caches are not named");
                    self.slabs_refused = true;
                    None
                }
            }
        } else {
            None
        };
        Some(HostMemObs {
            mem: MemInfoObs {
                total: m.mem_total,
                free: m.mem_free,
                available: m.mem_available,
                buffers: m.buffers,
                cached: m.cached,
                swap_cached: m.swap_cached,
                anon: m.anon_pages,
                mapped: m.mapped,
                shmem: m.shmem,
                slab_reclaimable: m.s_reclaimable,
                slab_unreclaimable: m.s_unreclaim,
                kernel_stack: m.kernel_stack,
                page_tables: m.page_tables,
                vmalloc: m.vmalloc_used,
                percpu: m.percpu,
                hugetlb: m.hugetlb,
                swap_total: m.swap_total,
                swap_free: m.swap_free,
            },
            sock: hostmem::read_sockstat(),
            tmpfs,
            slabs,
            oom_kills: read_oom_kills().ok(),
        })
    }

    /// Every cache, largest first, with whether it is reclaimable.
    fn mark(&mut self, mut all: Vec<hostmem::SlabCache>) -> Vec<(String, u64, bool)> {
        all.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        all.into_iter()
            .map(|c| {
                let rec = hostmem::slab_reclaimable(&c.name).unwrap_or(false);
                (c.name, c.bytes, rec)
            })
            .collect()
    }

    /// The largest caches and the fastest-growing since the last reading, with whether each is
    /// reclaimable.
    fn pick_slabs(&mut self, all: Vec<hostmem::SlabCache>) -> Vec<(String, u64, bool)> {
        let mut by_size: Vec<&hostmem::SlabCache> = all.iter().collect();
        by_size.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        let mut by_growth: Vec<(&hostmem::SlabCache, u64)> = all
            .iter()
            .map(|c| {
                (
                    c,
                    c.bytes
                        .saturating_sub(*self.prev_slabs.get(&c.name).unwrap_or(&c.bytes)),
                )
            })
            .filter(|c| c.1 > 0)
            .collect();
        by_growth.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
        let mut names: Vec<&str> = by_size.iter().take(SLABS_EACH).map(|c| c.name.as_str()).collect();
        for (c, _) in by_growth.iter().take(SLABS_EACH) {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
        let out = names
            .iter()
            .filter_map(|n| all.iter().find(|c| c.name == *n))
            .map(|c| {
                let rec = *self
                    .reclaimable
                    .entry(c.name.clone())
                    .or_insert_with(|| hostmem::slab_reclaimable(&c.name).unwrap_or(false));
                (c.name.clone(), c.bytes, rec)
            })
            .collect();
        self.prev_slabs = all.into_iter().map(|c| (c.name, c.bytes)).collect();
        out
    }
}

/// The process that owns a memory cgroup: the one process in it whose parent is not in it (the
/// others descend from it), when the cgroup has no child cgroup (whose memory it would count
/// too) and at most [`MAX_OWN_PROCS`] processes. None for shared cgroups (and the root).
fn owner_of(dir: &MemcgPath, table: &ProcessTable) -> Option<u32> {
    if dir.rel == "/" || kmem::has_children(dir) {
        return None;
    }
    let procs = kmem::read_procs(dir).ok()?;
    if procs.is_empty() || procs.len() > MAX_OWN_PROCS {
        return None;
    }
    let inside: HashSet<u32> = procs.iter().copied().collect();
    let parent = |q: u32| match table.get(q) {
        Some(p) => Some(p.ppid),
        None => crate::sys::proc::read_status(q).ok().map(|s| s.ppid),
    };
    let mut roots = procs
        .iter()
        .filter(|q| parent(**q).is_none_or(|pp| !inside.contains(&pp)));
    match (roots.next(), roots.next()) {
        (Some(r), None) => Some(*r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_pass_covers_every_life_once_within_its_budget() {
        // Small tables: the pass takes `every` ticks; large ones, as many as the budget needs.
        assert_eq!(pass_period(50, 10, 200), 10);
        assert_eq!(pass_period(5_000, 10, 200), 25);
        assert_eq!(pass_period(10_001, 10, 200), 51);
        let pids: Vec<u32> = (300..10_300).collect();
        let period = pass_period(pids.len(), 10, 200);
        let mut seen = vec![0u32; pids.len()];
        let mut most = 0;
        for tick in 1000..1000 + period {
            let due: Vec<usize> = (0..pids.len()).filter(|&i| pass_due(pids[i], tick, period)).collect();
            most = most.max(due.len());
            for i in due {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert!(most <= 200, "{most}");
    }

    /// Read costs of what this module reads, interleaved over rounds (figures for the report):
    /// `cargo test --release read_costs -- --ignored --nocapture` as root.
    #[test]
    #[ignore = "a measurement: prints figures"]
    fn read_costs() {
        use std::hint::black_box;
        const ROUNDS: usize = 15;
        // A child holding many descriptors (pipes), like a leaking process.
        let mut fds_held = Vec::new();
        for _ in 0..2000 {
            let mut p = [0; 2];
            // SAFETY: a two-int array for pipe(2).
            assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
            fds_held.extend(p);
        }
        let me = std::process::id();
        let n_fds = fds::count(me).unwrap_or(0);
        type Probe = (&'static str, Box<dyn Fn() -> usize>);
        let probes: Vec<Probe> = vec![
            (
                "read /proc/PID/status (baseline: what every RSS read costs)",
                Box::new(move || black_box(crate::sys::proc::read_status(me).is_ok()) as usize),
            ),
            (
                "stat /proc/PID/fd (the descriptor count)",
                Box::new(move || black_box(fds::count(me)).is_some() as usize),
            ),
            (
                "scan /proc/PID/fd (readlink each; per descriptor)",
                Box::new(move || black_box(fds::scan(me).map(|s| s.counts.total()).unwrap_or(0)) as usize),
            ),
            (
                "read /proc/PID/limits",
                Box::new(move || black_box(fds::nofile_limit(me)).is_some() as usize),
            ),
            (
                "read /proc/PID/stat (CPU time)",
                Box::new(move || black_box(crate::sys::proc::read_stat(me).is_ok()) as usize),
            ),
            (
                "read+parse /proc/meminfo (procfs-core)",
                Box::new(|| black_box(MemParts::read().is_ok()) as usize),
            ),
            (
                "read+parse /proc/slabinfo",
                Box::new(|| black_box(hostmem::read_slabinfo().map(|s| s.len()).unwrap_or(0))),
            ),
            (
                "read /proc/self/mountinfo (tmpfs mounts)",
                Box::new(|| black_box(hostmem::read_tmpfs_mounts().map(|m| m.len()).unwrap_or(0))),
            ),
            (
                "statvfs of every tmpfs mount",
                Box::new(|| {
                    let m = hostmem::read_tmpfs_mounts().unwrap_or_default();
                    m.iter().filter(|m| hostmem::used_bytes(&m.mount_point).is_ok()).count()
                }),
            ),
            (
                "read /proc/net/sockstat",
                Box::new(|| black_box(hostmem::read_sockstat()).is_some() as usize),
            ),
        ];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); probes.len()];
        for round in 0..ROUNDS {
            // Rotate the order every round so no probe always runs first (cold caches).
            for k in 0..probes.len() {
                let i = (k + round) % probes.len();
                let reps = if probes[i].0.contains("scan") || probes[i].0.contains("slabinfo") {
                    20
                } else {
                    200
                };
                let began = Instant::now();
                for _ in 0..reps {
                    probes[i].1();
                }
                times[i].push(began.elapsed().as_secs_f64() / reps as f64);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("{n_fds} descriptors open; median over {ROUNDS} interleaved rounds (min–max):");
        let base = {
            let mut v = times[0].clone();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (i, (name, _)) in probes.iter().enumerate() {
            let mut v = times[i].clone();
            v.sort_by(f64::total_cmp);
            let med = v[v.len() / 2];
            let per = if name.contains("per descriptor") {
                format!(" = {:.2} µs per descriptor", med * 1e6 / n_fds.max(1) as f64)
            } else {
                String::new()
            };
            println!(
                "  {name:<62} {:>9.1} µs ({:.1}–{:.1}) ×{:.2} status{per}",
                med * 1e6,
                v[0] * 1e6,
                v[v.len() - 1] * 1e6,
                med / base
            );
        }
        for fd in fds_held {
            // SAFETY: closing the pipes opened above.
            unsafe { libc::close(fd) };
        }
    }
}
