//! Allocation sites: *where* a process grows.
//!
//! The kernel aggregates bytes per (process, user stack) — brk / anonymous mmap / mremap growth
//! and sampled page faults by default, outstanding malloc bytes with `--malloc` — in hash maps
//! keyed by (tgid, stack id, cpu). Each interval the agent reads those maps ([`SiteTracker::refresh`]),
//! sums the CPUs, reads new stacks once, captures the process's mappings while it lives and (for
//! `watch` / `sites`) names the frames at once, so a process that dies keeps its sites. When a
//! process exits its kernel entries are deleted, and stacks nobody references any more are removed
//! from the stack map.
//!
//! Frame-pointer stacks are wrong wherever code has no frame pointers (the distribution's glibc,
//! libstdc++, most packaged binaries). So each sampled event whose frame-pointer stack is not
//! known to be right also sends a copy of its registers and stack window ([`copies`], rate-limited
//! in the kernel); the agent unwinds it by the binaries' CFI ([`unwind`]) and splits the bytes of
//! the frame-pointer stack among the stacks its copies unwound to, in proportion to the copies'
//! bytes. Frame-pointer stacks that the CFI confirms are marked trusted and copied no more.
//!
//! Stacks that never leave the C library (no unwind information past it, or no copy) say nothing
//! about where the program allocated: they are kept, flagged `unattributed` and ranked after the
//! others.
pub mod binfile;
pub mod copies;
pub mod perfmap;
pub mod symbolize;
pub mod unwind;
pub mod uprobes;

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap as KMap, MapData, PerCpuArray, StackTraceMap},
    programs::uprobe::UProbeLinkId,
};
use leaktrace_common::{
    names,
    sites::{AllocInfo, AllocKey, MallocSite, NO_STACK, SiteKey, SiteValue, SitesConfig, site_counter},
};
use serde::{Deserialize, Serialize};

use self::{
    copies::Copies,
    perfmap::PerfMap,
    symbolize::{Frame, Frames, ProcMaps, Resolver, is_c_runtime},
    unwind::{UnwindStats, Unwinding},
};

/// Default `--fault-sample`: one page fault in this many, per CPU, takes a stack. Chosen by
/// measurement (README, "Where the memory grows"): the largest sampling rate whose cost on a
/// page-fault storm of the watched process stays under 2 %.
pub const DEFAULT_FAULT_SAMPLE: u64 = 64;
/// Sites shown in verdicts and OOM reports.
pub const TOP_SITES: usize = 5;
pub const PAGE: u64 = 4096;
/// Default `--stack-copies`: stack copies per second per process (for unwinding by CFI).
pub const DEFAULT_STACK_COPIES: u32 = 50;
/// All processes together may take this many times the per-process rate.
pub const GLOBAL_COPIES_FACTOR: u32 = 4;
/// Default stack window copied per event, in pages (README: chosen by measurement).
pub const DEFAULT_COPY_PAGES: u32 = 8;
/// Distinct unwound stacks kept per process, and for all processes together (beyond: counted in
/// `unwound_dropped`).
const MAX_UNWOUND_PER_PROC: usize = 4096;
const MAX_UNWOUND: usize = 32768;
/// How often the binaries' mapped CFI pages are let go.
const RELEASE_CFI_EVERY: Duration = Duration::from_secs(10);
/// Copies handled per `poll` (the rest wait for the next one).
const DRAIN_BATCH: usize = 1024;

/// What the kernel side records; part of `probes::LoadOptions`.
#[derive(Debug, Clone)]
pub struct SitesOptions {
    /// Every process (`run --stacks` without filters), not only the watched ones.
    pub all: bool,
    /// Sample one page fault in N per CPU.
    pub fault_sample: u64,
    /// Precise mode: uprobes on the watched processes' C allocator.
    pub malloc: bool,
    /// With `malloc`: record one allocator call in N per CPU.
    pub malloc_sample: u32,
    /// Name frames every interval and keep a process's sites after it exits (`watch`, `sites`);
    /// otherwise (`run --stacks`) frames are named on demand (OOM reports) and dropped at exit.
    pub eager: bool,
    /// Stack copies per second per process, for unwinding by CFI; 0 = frame pointers only.
    pub stack_copies: u32,
    /// Stack window copied per event, in pages (1..=COPY_MAX_PAGES).
    pub copy_pages: u32,
}

impl SitesOptions {
    pub fn config(&self) -> SitesConfig {
        let rate = u64::from(self.stack_copies);
        let pages = if rate == 0 {
            0
        } else {
            self.copy_pages.clamp(1, leaktrace_common::sites::COPY_MAX_PAGES as u32)
        };
        SitesConfig {
            enabled: 1,
            all: self.all as u32,
            fault_bytes: self.fault_sample.saturating_mul(PAGE),
            malloc_sample: self.malloc_sample.max(1),
            rss_every: 0,
            copy_pages: pages,
            _pad: 0,
            copy_interval_ns: 1_000_000_000 / rate.max(1),
            copy_burst_ns: 250_000_000,
            copy_global_interval_ns: 1_000_000_000 / (rate * u64::from(GLOBAL_COPIES_FACTOR)).max(1),
        }
    }
}

/// A site as verdicts and OOM reports show it: bytes and frames, innermost first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Site {
    pub bytes: u64,
    pub frames: Vec<String>,
    /// Growth events (syscalls and fault samples), or outstanding allocations with `--malloc`.
    #[serde(default)]
    pub events: u64,
}

/// Which table: growth (default) or outstanding malloc bytes (`--malloc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Growth,
    Malloc,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Growth => "growth",
            Mode::Malloc => "malloc",
        }
    }
}

/// One row of the table: identical stacks of the selected processes merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Growth: grown + sampled fault bytes. Malloc: outstanding bytes (scaled by the sample rate).
    pub bytes: u64,
    pub grown_bytes: u64,
    pub fault_bytes: u64,
    pub events: u64,
    /// The stack never leaves the C library (or could not be had): it says nothing about where.
    pub unattributed: bool,
    /// Innermost first, from the first frame outside the C runtime (all frames when unattributed).
    pub frames: Vec<String>,
}

impl Row {
    pub fn site(&self) -> Site {
        Site {
            bytes: self.bytes,
            frames: self.frames.clone(),
            events: self.events,
        }
    }
}

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counters {
    pub stack_collisions: u64,
    pub stack_errors: u64,
    pub sites_full: u64,
    pub fault_samples: u64,
    pub allocs_full: u64,
    /// Stack copies sent, not taken (rate limit), lost (ring buffer full), failed.
    pub stack_copies: u64,
    pub copies_limited: u64,
    pub copies_dropped: u64,
    pub copy_errors: u64,
}

/// Weight of one unwound stack among the copies of one frame-pointer stack.
#[derive(Debug, Clone, Copy, Default)]
struct Weight {
    bytes: u64,
    copies: u64,
}

/// An unwound stack: instruction pointer, then return addresses.
type Addrs = Arc<[u64]>;

#[derive(Default)]
struct ProcSites {
    growth: HashMap<u32, SiteValue>,
    /// Outstanding (bytes, allocations), two's-complement sums over CPUs.
    malloc: HashMap<u32, (i64, i64)>,
    frames: HashMap<u32, Frames>,
    /// Frame-pointer stack id → the stacks its copies unwound to, weighted by their bytes.
    unwound: HashMap<u32, HashMap<Addrs, Weight>>,
    /// Entries in `unwound`.
    unwound_len: usize,
    /// Its frame-pointer stacks the CFI confirmed (kept with the process: ids are reused).
    trusted: HashSet<u32>,
    unwound_frames: HashMap<Addrs, Frames>,
    /// Names of JIT code (`/tmp/perf-PID.map`), read while the process lives.
    jit: Option<PerfMap>,
    /// When `maps` was last read (copies re-read it at most once a second).
    maps_at: Option<Instant>,
    maps: Option<Arc<ProcMaps>>,
    /// Exited: read one last time, then its kernel entries are deleted.
    dead: bool,
    /// Kernel entries deleted; what is here is final.
    done: bool,
}

pub struct SiteTracker {
    opts: SitesOptions,
    stacks: StackTraceMap<MapData>,
    sites: KMap<MapData, SiteKey, SiteValue>,
    malloc_sites: KMap<MapData, SiteKey, MallocSite>,
    allocs: KMap<MapData, AllocKey, AllocInfo>,
    watched: KMap<MapData, u32, u32>,
    counters: PerCpuArray<MapData, u64>,
    procs: HashMap<u32, ProcSites>,
    /// Raw addresses per stack id, read once (an id is stable while referenced).
    addrs: HashMap<u32, Arc<[u64]>>,
    resolver: Resolver,
    malloc_links: HashMap<u32, Vec<(&'static str, UProbeLinkId)>>,
    /// Stack copies (None: off, or the kernel cannot take them).
    copies: Option<Copies>,
    unwinding: Unwinding,
    /// Frame-pointer stack id → whether the CFI confirmed it (checked once per id).
    trusted: HashMap<u32, bool>,
    unwound_dropped: u64,
    /// Entries in every process's `unwound`.
    unwound_total: usize,
    cfi_released: Instant,
    /// One line per problem worth telling the user once (e.g. --malloc could not attach).
    pub notes: Vec<String>,
}

fn take<T>(
    ebpf: &mut Ebpf,
    name: &str,
    f: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> anyhow::Result<T> {
    let m = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} not in the eBPF object"))?;
    f(m).with_context(|| format!("map {name}"))
}

fn no_stack() -> Frames {
    Arc::new(vec![Frame {
        text: "[no stack: stack-map collision or unreadable user stack]".into(),
        module: None,
    }])
}

impl SiteTracker {
    pub fn new(ebpf: &mut Ebpf, opts: SitesOptions) -> anyhow::Result<Self> {
        let mut notes = Vec::new();
        let copies = if opts.stack_copies > 0 {
            let c = Copies::new(ebpf)?;
            if !c.unavailable.is_empty() {
                notes.push(format!(
                    "stack copies unavailable for some events (frame-pointer stacks only there): {}",
                    c.unavailable.join("; ")
                ));
            }
            Some(c)
        } else {
            None
        };
        Ok(SiteTracker {
            stacks: take(ebpf, names::STACKS, StackTraceMap::try_from)?,
            sites: take(ebpf, names::SITES, KMap::try_from)?,
            malloc_sites: take(ebpf, names::MALLOC_SITES, KMap::try_from)?,
            allocs: take(ebpf, names::ALLOCS, KMap::try_from)?,
            watched: take(ebpf, names::SITES_WATCHED, KMap::try_from)?,
            counters: take(ebpf, names::SITE_COUNTERS, PerCpuArray::try_from)?,
            opts,
            procs: HashMap::new(),
            addrs: HashMap::new(),
            resolver: Resolver::new(),
            malloc_links: HashMap::new(),
            copies,
            unwinding: Unwinding::new(),
            trusted: HashMap::new(),
            unwound_dropped: 0,
            unwound_total: 0,
            cfi_released: Instant::now(),
            notes,
        })
    }

    pub fn options(&self) -> &SitesOptions {
        &self.opts
    }

    pub fn mode(&self) -> Mode {
        if self.opts.malloc { Mode::Malloc } else { Mode::Growth }
    }

    /// Start recording `pid`'s stacks (and, with `--malloc`, attach the allocator uprobes).
    pub fn watch(&mut self, ebpf: &mut Ebpf, pid: u32) {
        if self.procs.get(&pid).is_some_and(|p| !p.dead) {
            return;
        }
        if !self.opts.all
            && let Err(e) = self.watched.insert(pid, 1, 0)
        {
            self.notes.push(format!(
                "pid {pid}: cannot record its stacks ({e}); at most 1024 processes are watched"
            ));
            return;
        }
        // Every process (`run --stacks`): its mappings are read when it first shows a stack, not
        // now for each of them.
        let maps = if self.opts.all {
            None
        } else {
            ProcMaps::read(pid).map(Arc::new)
        };
        self.procs.insert(
            pid,
            ProcSites {
                maps_at: maps.as_ref().map(|_| Instant::now()),
                maps,
                ..Default::default()
            },
        );
        if self.opts.malloc && !self.malloc_links.contains_key(&pid) {
            match uprobes::attach(ebpf, pid) {
                Ok(links) => {
                    self.malloc_links.insert(pid, links);
                }
                Err(e) => self.notes.push(format!("pid {pid}: --malloc unavailable: {e:#}")),
            }
        }
    }

    /// The process ended: its entries are read one last time at the next refresh, then deleted.
    pub fn exited(&mut self, pid: u32) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.dead = true;
        } else if self.opts.all {
            self.procs.insert(
                pid,
                ProcSites {
                    dead: true,
                    ..Default::default()
                },
            );
        }
    }

    pub fn counters(&self) -> Counters {
        let sum = |slot: u32| self.counters.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0);
        Counters {
            stack_collisions: sum(site_counter::COLLISIONS),
            stack_errors: sum(site_counter::STACK_ERRORS),
            sites_full: sum(site_counter::SITES_FULL),
            fault_samples: sum(site_counter::FAULT_SAMPLES),
            allocs_full: sum(site_counter::ALLOCS_FULL),
            stack_copies: sum(site_counter::COPIES),
            copies_limited: sum(site_counter::COPY_LIMITED),
            copies_dropped: sum(site_counter::COPY_DROPS),
            copy_errors: sum(site_counter::COPY_ERRORS),
        }
    }

    /// How unwinding went (copies unwound, truncated, CPU time, ...).
    pub fn unwind_stats(&self) -> UnwindStats {
        let mut s = self.unwinding.stats.clone();
        s.unwound_dropped = self.unwound_dropped;
        s
    }

    /// Unwind the stack copies waiting in the kernel (call often: the ring buffer is small).
    pub fn poll(&mut self) {
        let Some(mut copies) = self.copies.take() else { return };
        let mut batch: Vec<(leaktrace_common::sites::StackCopyHeader, Vec<u8>)> = Vec::new();
        copies.drain(DRAIN_BATCH, |h, d| batch.push((*h, d.to_vec())));
        self.copies = Some(copies);
        for (hdr, data) in batch {
            self.take_copy(&hdr, &data);
        }
    }

    fn take_copy(&mut self, hdr: &leaktrace_common::sites::StackCopyHeader, data: &[u8]) {
        let tgid = hdr.tgid;
        if !self.procs.contains_key(&tgid)
            && (!self.opts.all || !std::path::Path::new(&format!("/proc/{tgid}")).exists())
        {
            // Not followed, or (every process followed) gone already: its exit was handled.
            return;
        }
        let p = self.procs.entry(tgid).or_default();
        if p.done {
            return;
        }
        // The mappings as they are now (a library may have been loaded), at most once a second.
        if !p.dead && p.maps_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            if let Some(m) = ProcMaps::read(tgid) {
                p.maps = Some(Arc::new(m));
            }
            p.maps_at = Some(Instant::now());
        }
        let Some(maps) = p.maps.clone() else { return };
        let mut u = self.unwinding.unwind(&maps, hdr, data);
        if u.truncated && hdr.stack_id != NO_STACK {
            // The window ran out: continue along the frame-pointer stack of the same event
            // where it passes through the last frame reached (deep JIT stacks keep frame pointers).
            let fp = self.addrs.get(&hdr.stack_id).cloned().or_else(|| {
                self.stacks
                    .get(&hdr.stack_id, 0)
                    .ok()
                    .map(|s| s.frames().iter().map(|f| f.ip).collect())
            });
            if let Some(fp) = fp {
                stitch(&mut u.addrs, &fp);
            }
        }
        let weight = hdr.grown_bytes + hdr.fault_bytes;
        let p = self.procs.get_mut(&tgid).expect("inserted above");
        let dist = p.unwound.entry(hdr.stack_id).or_default();
        let key: Addrs = u.addrs.into();
        if !dist.contains_key(&key) {
            if p.unwound_len >= MAX_UNWOUND_PER_PROC || self.unwound_total >= MAX_UNWOUND {
                self.unwound_dropped += 1;
                return;
            }
            p.unwound_len += 1;
            self.unwound_total += 1;
        }
        let w = dist.entry(key).or_default();
        w.bytes += weight.max(1);
        w.copies += 1;
    }

    /// Read the kernel's aggregates; name new stacks (eagerly, or for `only`); clean up exits.
    pub fn refresh(&mut self, ebpf: &mut Ebpf, only: Option<u32>) {
        self.poll();
        if self.cfi_released.elapsed() >= RELEASE_CFI_EVERY {
            self.unwinding.release_pages();
            self.cfi_released = Instant::now();
        }
        let mut growth: HashMap<u32, HashMap<u32, SiteValue>> = HashMap::new();
        for (k, v) in self.sites.iter().filter_map(Result::ok) {
            let e = growth.entry(k.tgid).or_default().entry(k.stack_id).or_default();
            e.grown_bytes = e.grown_bytes.wrapping_add(v.grown_bytes);
            e.fault_bytes = e.fault_bytes.wrapping_add(v.fault_bytes);
            e.events = e.events.wrapping_add(v.events);
        }
        let entries: usize = growth.values().map(HashMap::len).sum();
        let mut malloc: HashMap<u32, HashMap<u32, (i64, i64)>> = HashMap::new();
        if self.opts.malloc {
            for (k, v) in self.malloc_sites.iter().filter_map(Result::ok) {
                let e = malloc.entry(k.tgid).or_default().entry(k.stack_id).or_default();
                e.0 = e.0.wrapping_add(v.bytes as i64);
                e.1 = e.1.wrapping_add(v.allocs as i64);
            }
        }
        let tgids: HashSet<u32> = growth.keys().chain(malloc.keys()).copied().collect();
        for tgid in tgids {
            let g = growth.remove(&tgid).unwrap_or_default();
            let m = malloc.remove(&tgid).unwrap_or_default();
            if !self.opts.all && !self.procs.contains_key(&tgid) {
                // Left over from a process no longer followed: delete at cleanup below.
                self.procs.insert(
                    tgid,
                    ProcSites {
                        dead: true,
                        ..Default::default()
                    },
                );
            }
            let p = self.procs.entry(tgid).or_default();
            if p.done {
                continue;
            }
            let mut new_stack = false;
            for id in g.keys().chain(m.keys()) {
                if *id != NO_STACK && !self.addrs.contains_key(id) {
                    let ips: Arc<[u64]> = self
                        .stacks
                        .get(id, 0)
                        .map(|s| s.frames().iter().map(|f| f.ip).collect())
                        .unwrap_or_default();
                    self.addrs.insert(*id, ips);
                }
                // Not seen before (named or not): its addresses may be in a new mapping.
                new_stack |= !p.frames.contains_key(id) && !p.growth.contains_key(id) && !p.malloc.contains_key(id);
            }
            // Capture the mappings while the process lives, whenever it shows stacks not yet named.
            if new_stack
                && !p.dead
                && let Some(m) = ProcMaps::read(tgid)
            {
                p.maps = Some(Arc::new(m));
                p.maps_at = Some(Instant::now());
            }
            // New frame-pointer stacks that the CFI confirms need no more copies.
            for id in g.keys().chain(m.keys()) {
                if *id == NO_STACK {
                    continue;
                }
                if !self.trusted.contains_key(id)
                    && let (Some(copies), Some(maps)) = (self.copies.as_mut(), p.maps.as_ref())
                    && let Some(ips) = self.addrs.get(id).filter(|a| !a.is_empty())
                {
                    let ok = self.unwinding.fp_trusted(maps, ips);
                    self.trusted.insert(*id, ok);
                    if ok {
                        copies.trust(*id);
                    }
                }
                if self.trusted.get(id) == Some(&true) {
                    p.trusted.insert(*id);
                }
            }
            p.growth = g;
            p.malloc = m;
        }
        let name_now: Vec<u32> = self
            .procs
            .iter()
            .filter(|(pid, p)| !p.done && (self.opts.eager || only == Some(**pid)))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in name_now {
            self.name_frames(pid);
        }
        self.cleanup(ebpf);
        log::debug!(
            "sites: {entries} (process, stack) entries read, {} stacks held, {} processes ({} final)",
            self.addrs.len(),
            self.procs.len(),
            self.procs.values().filter(|p| p.done).count()
        );
    }

    fn name_frames(&mut self, pid: u32) {
        let Some(p) = self.procs.get_mut(&pid) else { return };
        let ids: Vec<u32> = p
            .growth
            .keys()
            .chain(p.malloc.keys())
            .filter(|id| !p.frames.contains_key(id))
            .copied()
            .collect();
        let unwound: Vec<Addrs> = p
            .unwound
            .values()
            .flat_map(HashMap::keys)
            .filter(|a| !p.unwound_frames.contains_key(*a))
            .cloned()
            .collect();
        if ids.is_empty() && unwound.is_empty() {
            return;
        }
        if !p.dead {
            p.jit.get_or_insert_with(|| PerfMap::for_pid(pid)).refresh();
        }
        for id in ids {
            let frames = if id == NO_STACK {
                no_stack()
            } else {
                let addrs = self.addrs.get(&id).cloned().unwrap_or_default();
                if addrs.is_empty() {
                    no_stack()
                } else {
                    Arc::new(self.resolver.resolve(p.maps.as_deref(), p.jit.as_ref(), &addrs))
                }
            };
            p.frames.insert(id, frames);
        }
        for addrs in unwound {
            let frames = Arc::new(self.resolver.resolve(p.maps.as_deref(), p.jit.as_ref(), &addrs));
            p.unwound_frames.insert(addrs, frames);
        }
    }

    /// Delete the kernel entries of exited processes, forget them (unless eager: then they are
    /// kept, final) and remove stacks no process references any more.
    fn cleanup(&mut self, ebpf: &mut Ebpf) {
        let dead: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.dead && !p.done)
            .map(|(pid, _)| *pid)
            .collect();
        if dead.is_empty() {
            return;
        }
        let dead_set: HashSet<u32> = dead.iter().copied().collect();
        let gone: Vec<SiteKey> = self
            .sites
            .keys()
            .filter_map(Result::ok)
            .filter(|k| dead_set.contains(&k.tgid))
            .collect();
        for k in &gone {
            let _ = self.sites.remove(k);
        }
        if self.opts.malloc {
            let gone: Vec<SiteKey> = self
                .malloc_sites
                .keys()
                .filter_map(Result::ok)
                .filter(|k| dead_set.contains(&k.tgid))
                .collect();
            for k in &gone {
                let _ = self.malloc_sites.remove(k);
            }
            let gone: Vec<AllocKey> = self
                .allocs
                .keys()
                .filter_map(Result::ok)
                .filter(|k| dead_set.contains(&k.tgid))
                .collect();
            for k in &gone {
                let _ = self.allocs.remove(k);
            }
        }
        // Stacks still referenced by a live process stay; the others leave the stack map.
        let mut live_refs: HashSet<u32> = HashSet::new();
        for (pid, p) in &self.procs {
            if !dead_set.contains(pid) && !p.done {
                live_refs.extend(p.growth.keys().chain(p.malloc.keys()).copied());
            }
        }
        let stale: Vec<u32> = self
            .addrs
            .keys()
            .filter(|id| !live_refs.contains(id))
            .copied()
            .collect();
        for id in stale {
            let _ = self.stacks.remove(&id);
            self.addrs.remove(&id);
            self.trusted.remove(&id);
            if let Some(c) = self.copies.as_mut() {
                c.forget(id);
            }
        }
        for pid in dead {
            let _ = self.watched.remove(&pid);
            self.unwinding.forget(pid);
            if let Some(links) = self.malloc_links.remove(&pid) {
                uprobes::detach(ebpf, links);
            }
            if self.opts.eager {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.done = true;
                    p.maps = None;
                    p.jit = None;
                }
            } else if let Some(p) = self.procs.remove(&pid) {
                self.unwound_total -= p.unwound_len;
            }
        }
    }

    /// The table for `pids` (all followed processes when empty): attributable rows by bytes,
    /// then the unattributed ones.
    pub fn rows(&self, pids: &[u32]) -> Vec<Row> {
        let mode = self.mode();
        let scale = if mode == Mode::Malloc {
            i64::from(self.opts.malloc_sample.max(1))
        } else {
            1
        };
        let mut merged: HashMap<Vec<String>, Row> = HashMap::new();
        for (pid, p) in &self.procs {
            if !pids.is_empty() && !pids.contains(pid) {
                continue;
            }
            let mut add = |id: u32, bytes: u64, grown: u64, fault: u64, events: u64| {
                if bytes == 0 {
                    return;
                }
                for (frames, share) in self.shares(p, id) {
                    let part = |v: u64| (v as f64 * share).round() as u64;
                    let (grown, fault) = (part(grown), part(fault));
                    // Growth rows keep bytes = grown + fault exactly.
                    let bytes = if grown + fault > 0 { grown + fault } else { part(bytes) };
                    // The site is where the program is: leading C-runtime frames (malloc, brk,
                    // memset, ...) only say how it grew, and are left out; a stack that never
                    // leaves the C runtime is unattributed.
                    let own = frames
                        .iter()
                        .position(|f| f.module.as_deref().is_some_and(|m| !is_c_runtime(m)));
                    let unattributed = own.is_none();
                    let texts: Vec<String> = frames[own.unwrap_or(0)..].iter().map(|f| f.text.clone()).collect();
                    let r = merged.entry(texts.clone()).or_insert(Row {
                        bytes: 0,
                        grown_bytes: 0,
                        fault_bytes: 0,
                        events: 0,
                        unattributed,
                        frames: texts,
                    });
                    r.bytes += bytes;
                    r.grown_bytes += grown;
                    r.fault_bytes += fault;
                    r.events += part(events);
                }
            };
            match mode {
                Mode::Growth => {
                    for (id, v) in &p.growth {
                        add(
                            *id,
                            v.grown_bytes + v.fault_bytes,
                            v.grown_bytes,
                            v.fault_bytes,
                            v.events,
                        );
                    }
                }
                Mode::Malloc => {
                    for (id, (bytes, allocs)) in &p.malloc {
                        let b = (bytes.saturating_mul(scale)).max(0) as u64;
                        add(*id, b, 0, 0, (allocs.saturating_mul(scale)).max(0) as u64);
                    }
                }
            }
        }
        let mut rows: Vec<Row> = merged.into_values().collect();
        rows.sort_by(|a, b| {
            a.unattributed
                .cmp(&b.unattributed)
                .then(b.bytes.cmp(&a.bytes))
                .then(a.frames.cmp(&b.frames))
        });
        rows
    }

    /// The stacks that frame-pointer stack `id` of `p` stands for, with their shares: the stacks
    /// its copies unwound to, weighted by the copies' bytes; else (trusted, or no copy) itself.
    fn shares(&self, p: &ProcSites, id: u32) -> Vec<(Frames, f64)> {
        if !p.trusted.contains(&id)
            && let Some(dist) = p.unwound.get(&id)
        {
            let total: u64 = dist.values().map(|w| w.bytes).sum();
            if total > 0 {
                return dist
                    .iter()
                    .map(|(addrs, w)| {
                        let frames = p
                            .unwound_frames
                            .get(addrs)
                            .cloned()
                            .unwrap_or_else(|| raw_frames(Some(addrs)));
                        (frames, w.bytes as f64 / total as f64)
                    })
                    .collect();
            }
        }
        let frames = if id == NO_STACK {
            no_stack()
        } else {
            p.frames
                .get(&id)
                .cloned()
                .unwrap_or_else(|| raw_frames(self.addrs.get(&id)))
        };
        vec![(frames, 1.0)]
    }

    /// The top `n` attributable sites of `pids` (all followed processes when empty).
    pub fn top(&self, pids: &[u32], n: usize) -> Vec<Site> {
        self.rows(pids)
            .iter()
            .filter(|r| !r.unattributed)
            .take(n)
            .map(Row::site)
            .collect()
    }

    /// Bytes in unattributed rows.
    pub fn unattributed_bytes(&self, pids: &[u32]) -> u64 {
        self.rows(pids).iter().filter(|r| r.unattributed).map(|r| r.bytes).sum()
    }

    /// Read the kernel now and name `pid`'s frames (an OOM victim, `run --stacks`).
    pub fn top_now(&mut self, ebpf: &mut Ebpf, pid: u32, n: usize) -> Vec<Site> {
        self.refresh(ebpf, Some(pid));
        self.top(&[pid], n)
    }
}

/// Continue a stack unwound from a copy whose window ran out along the frame-pointer stack `fp`
/// of the same event, from where `fp` passes through the last frame reached.
fn stitch(addrs: &mut Vec<u64>, fp: &[u64]) {
    let Some(&last) = addrs.last() else { return };
    if addrs.len() < 2 {
        return;
    }
    if let Some(i) = fp.iter().skip(1).position(|&a| a == last) {
        addrs.extend_from_slice(&fp[i + 2..]);
        addrs.truncate(unwind::MAX_FRAMES);
    }
}

fn raw_frames(addrs: Option<&Arc<[u64]>>) -> Frames {
    match addrs {
        Some(a) if !a.is_empty() => Arc::new(
            a.iter()
                .map(|x| Frame {
                    text: format!("{x:#x}"),
                    module: None,
                })
                .collect(),
        ),
        _ => no_stack(),
    }
}

/// Folded stacks for flamegraph.pl / inferno: `outer;...;inner bytes` per row.
pub fn folded(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.bytes > 0) {
        let frames: Vec<String> = r
            .frames
            .iter()
            .rev()
            .map(|f| f.replace(';', ":").replace('\n', " "))
            .collect();
        let _ = writeln!(out, "{} {}", frames.join(";"), r.bytes);
    }
    out
}

/// `a ← b ← c`, at most `max` frames.
pub fn short(frames: &[String], max: usize) -> String {
    let mut s = frames.iter().take(max).cloned().collect::<Vec<_>>().join(" ← ");
    if frames.len() > max {
        s.push_str(" ← …");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bytes: u64, frames: &[&str]) -> Row {
        Row {
            bytes,
            grown_bytes: bytes,
            fault_bytes: 0,
            events: 1,
            unattributed: false,
            frames: frames.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn folded_is_outermost_first() {
        let rows = [
            row(4096, &["leak_here", "main", "_start"]),
            row(10, &["a;b", "main"]),
            row(0, &["never"]),
        ];
        assert_eq!(folded(&rows), "_start;main;leak_here 4096\nmain;a:b 10\n");
    }

    #[test]
    fn stitch_continues_along_the_frame_pointer_stack() {
        // The copy reached 0x30 (a frame-pointer frame the walk also passed), then ran out.
        let mut a = vec![0x10, 0x20, 0x30];
        stitch(&mut a, &[0x11, 0x30, 0x40, 0x50]);
        assert_eq!(a, [0x10, 0x20, 0x30, 0x40, 0x50]);
        // No common frame (or only the innermost): left as it is.
        let mut b = vec![0x10, 0x20];
        stitch(&mut b, &[0x10, 0x99]);
        assert_eq!(b, [0x10, 0x20]);
        let mut c = vec![0x10];
        stitch(&mut c, &[0x10, 0x40]);
        assert_eq!(c, [0x10]);
    }

    #[test]
    fn short_caps_frames() {
        let f: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(short(&f, 2), "a ← b ← …");
        assert_eq!(short(&f, 3), "a ← b ← c");
    }

    #[test]
    fn config_from_options() {
        let o = SitesOptions {
            all: true,
            fault_sample: 64,
            malloc: false,
            malloc_sample: 0,
            eager: false,
            stack_copies: 50,
            copy_pages: 99,
        };
        let c = o.config();
        assert_eq!((c.enabled, c.all, c.fault_bytes, c.malloc_sample), (1, 1, 64 * 4096, 1));
        assert_eq!(
            (c.copy_pages, c.copy_interval_ns, c.copy_global_interval_ns),
            (8, 20_000_000, 5_000_000)
        );
        let off = SitesOptions { stack_copies: 0, ..o }.config();
        assert_eq!(off.copy_pages, 0, "no copies: frame pointers only");
    }

    #[test]
    fn site_reads_old_reports() {
        let s: Site = serde_json::from_str(r#"{"bytes":5,"frames":["f"]}"#).unwrap();
        assert_eq!(
            s,
            Site {
                bytes: 5,
                frames: vec!["f".into()],
                events: 0
            }
        );
    }
}
