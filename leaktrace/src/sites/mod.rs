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
//! Stacks that never leave the C library (glibc and the loader are built without frame pointers
//! on most distributions, so a walk that starts inside them stops there) say nothing about where
//! the program allocated: they are kept, flagged `unattributed` and ranked after the others.
pub mod args;
pub mod symbolize;
pub mod uprobes;

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::Arc,
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

use self::symbolize::{Frame, Frames, ProcMaps, Resolver, is_c_runtime};

/// Default `--fault-sample`: one page fault in this many, per CPU, takes a stack. Chosen by
/// measurement (README, "Where the memory grows"): the largest sampling rate whose cost on a
/// page-fault storm of the watched process stays under 2 %.
pub const DEFAULT_FAULT_SAMPLE: u64 = 64;
/// Sites shown in verdicts and OOM reports.
pub const TOP_SITES: usize = 5;
pub const PAGE: u64 = 4096;

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
}

impl SitesOptions {
    pub fn config(&self) -> SitesConfig {
        SitesConfig {
            enabled: 1,
            all: self.all as u32,
            fault_bytes: self.fault_sample.saturating_mul(PAGE),
            malloc_sample: self.malloc_sample.max(1),
            rss_every: 0,
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
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Growth: grown + sampled fault bytes. Malloc: outstanding bytes (scaled by the sample rate).
    pub bytes: u64,
    pub grown_bytes: u64,
    pub fault_bytes: u64,
    pub events: u64,
    /// The stack never leaves the C library (or could not be had): it says nothing about where.
    pub unattributed: bool,
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
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counters {
    pub stack_collisions: u64,
    pub stack_errors: u64,
    pub sites_full: u64,
    pub fault_samples: u64,
    pub allocs_full: u64,
}

#[derive(Default)]
struct ProcSites {
    growth: HashMap<u32, SiteValue>,
    /// Outstanding (bytes, allocations), two's-complement sums over CPUs.
    malloc: HashMap<u32, (i64, i64)>,
    frames: HashMap<u32, Frames>,
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
            notes: Vec::new(),
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
        let maps = ProcMaps::read(pid).map(Arc::new);
        self.procs.insert(
            pid,
            ProcSites {
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
        }
    }

    /// Read the kernel's aggregates; name new stacks (eagerly, or for `only`); clean up exits.
    pub fn refresh(&mut self, ebpf: &mut Ebpf, only: Option<u32>) {
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
                new_stack |= !p.frames.contains_key(id);
            }
            // Capture the mappings while the process lives, whenever it shows stacks not yet named.
            if new_stack
                && !p.dead
                && let Some(m) = ProcMaps::read(tgid)
            {
                p.maps = Some(Arc::new(m));
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
        for id in ids {
            let frames = if id == NO_STACK {
                no_stack()
            } else {
                let addrs = self.addrs.get(&id).cloned().unwrap_or_default();
                if addrs.is_empty() {
                    no_stack()
                } else {
                    Arc::new(self.resolver.resolve(p.maps.as_deref(), &addrs))
                }
            };
            p.frames.insert(id, frames);
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
        }
        for pid in dead {
            let _ = self.watched.remove(&pid);
            if let Some(links) = self.malloc_links.remove(&pid) {
                uprobes::detach(ebpf, links);
            }
            if self.opts.eager {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.done = true;
                    p.maps = None;
                }
            } else {
                self.procs.remove(&pid);
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
                let frames = p
                    .frames
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| raw_frames(self.addrs.get(&id)));
                let unattributed =
                    id == NO_STACK || frames.iter().all(|f| f.module.as_deref().is_none_or(is_c_runtime));
                let texts: Vec<String> = frames.iter().map(|f| f.text.clone()).collect();
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
                r.events += events;
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
        };
        let c = o.config();
        assert_eq!((c.enabled, c.all, c.fault_bytes, c.malloc_sample), (1, 1, 64 * 4096, 1));
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
