//! The live pipeline shared by `run`, `watch`, `top` and `sites`: kernel events and RSS change
//! marks in, complete typed [`Event`]s out.
//!
//! ```text
//!  EventSource (ring buffers) ─┐                       ┌─▶ Vec<Event>  (to the sinks)
//!  RssChanges (changed tgids) ┼─▶ Monitor (driver) ─▶ Core::apply ─┤
//!  /proc (observe.rs) ─────────┘    builds Batches      (core.rs)   └─▶ ProcessTable (read by sinks)
//!                                   │
//!                                   └─▶ Batches, for `run --record` (replayed by `analyze`)
//! ```
//!
//! The driver does the I/O (reading /proc, kernel maps, OOM victims at once); everything it
//! reads becomes a [`Batch`] applied to the [`Core`], which holds the state and the analysis.
//! What it reads at each tick is decided by [`schedule`]: the processes the kernel marked,
//! lives announced by fork/exec once they have lived an interval, and a slice of the rest.
pub mod core;
mod exec_args;
pub mod memcg_watch;
mod observe;
pub mod oom;
pub mod replay;
mod resources;
mod runtimes;
pub mod schedule;
pub mod work;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use leaktrace_common::{EventKind, names::prog};

use self::schedule::Schedule;
pub use self::{
    core::{Core, CoreConfig, World},
    resources::host_now as host_parts_now,
};
use crate::{
    analysis::memcg_binding,
    events::{
        KernelEvent, Payload, enrich, is_err_ret,
        rss_dirty::RssChanges,
        source::{Counts, EventSource},
    },
    input::{Batch, CgObs, Identity, Obs},
    output::{Event, KillContext},
    probes::{self, LoadOptions, Probes},
    sites::SiteTracker,
    state::{Proc, ProcessTable, Snapshot, SyscallNote, memcg::MemcgResolver},
    sys::{cgroup::MemcgPath, memcg_levels::read_limits, proc::ProcStatus},
    util::monotonic_ns,
};

/// Which processes to track.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    All,
    Filter {
        pids: Vec<u32>,
        comms: Vec<String>,
    },
    /// A process and every descendant it starts while watched.
    Tree {
        root: u32,
    },
}

impl Scope {
    /// Every process when no filter is given, else the processes matching `--pid` / `--comm`.
    pub fn from_filters(pids: &[u32], comms: &[String]) -> Scope {
        if pids.is_empty() && comms.is_empty() {
            Scope::All
        } else {
            Scope::Filter {
                pids: pids.to_vec(),
                comms: comms.to_vec(),
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub interval: Duration,
    /// While the host swaps out or discards lazily-freed pages, re-read every tracked process
    /// at least every N intervals (changes made outside the process's own context).
    pub refresh_every: u64,
    /// Otherwise, at least every this many seconds (file pages reclaimed, a lost exit event).
    pub refresh_quiet_secs: f64,
    pub scope: Scope,
    pub core: CoreConfig,
    /// Keep every batch for `run --record` ([`Monitor::take_batches`]).
    pub record: bool,
    /// Attach the collector probes of JVM and CPython processes (GC figures, heap floor).
    pub runtimes: bool,
    /// Take JVM class histograms when a JVM is flagged and when its OOM is predicted.
    pub heap_snapshots: bool,
    /// Read what lives hold outside their RSS (descriptors, kernel memory, CPU time).
    pub resources: bool,
    /// Read the host's memory in parts (`run`, `top`).
    pub host_parts: bool,
    /// `--work-metric`: the counter of work done, read every tick.
    pub work: Option<work::WorkSource>,
}

impl MonitorConfig {
    pub fn new(interval: Duration, scope: Scope) -> Self {
        let mut core = CoreConfig::new(interval.as_secs_f64());
        if let Scope::Tree { root } = scope {
            core.tree_root = Some(root);
        }
        Self {
            interval,
            refresh_every: 10,
            refresh_quiet_secs: 300.0,
            scope,
            core,
            record: false,
            runtimes: true,
            heap_snapshots: false,
            resources: true,
            host_parts: false,
            work: None,
        }
    }
}

pub struct Monitor {
    pub probes: Probes,
    source: EventSource,
    rss: Option<RssChanges>,
    core: Core,
    cfg: MonitorConfig,
    start: Instant,
    next_tick: Instant,
    ticks: u64,
    kernel: Vec<KernelEvent>,
    self_pid: u32,
    memcgs: MemcgResolver,
    /// Where each tracked process's memory cgroup lives (read while it runs: a dying v1 task is
    /// moved to the root cgroup).
    memcg_dirs: HashMap<u32, MemcgPath>,
    /// Per-cgroup pre-OOM evidence (usage, memory.events, PSI) of the levels above tracked
    /// processes, read each interval.
    memcg_watch: memcg_watch::MemcgWatch,
    /// task:task_newtask is not attached: fork events may be threads.
    threads_unknown: bool,
    /// Allocation sites of the tracked processes (stacks on: `run --stacks`, `watch`, `sites`).
    pub sites: Option<SiteTracker>,
    recorded: Vec<Batch>,
    /// Collector probes of JVM / CPython processes (`runtimes` on and loadable).
    runtimes: Option<runtimes::Live>,
    /// Issue 14's reads (descriptors, kernel memory, CPU time, host memory in parts).
    res: resources::ResourceReader,
    /// What to read at each tick (see [`schedule`]).
    sched: Schedule,
    /// Pids read this tick (kept to reuse its allocation).
    read_now: HashSet<u32>,
    /// The argv of programs that exec'd, until their identity is read.
    exec_args: exec_args::ExecArgs,
    /// Memory syscalls of processes not in the table yet (a life is read an interval after it
    /// starts): a process that dies sooner, an OOM victim above all, keeps its history.
    unread_notes: HashMap<u32, std::collections::VecDeque<SyscallNote>>,
}

impl Monitor {
    /// Check privileges, load and attach the probes, and take a first look at every process.
    pub fn start(cfg: MonitorConfig, opts: &LoadOptions) -> anyhow::Result<Monitor> {
        let mut probes = probes::start(opts)?;
        let source = EventSource::new(&mut probes.ebpf)?;
        let rss = if probes.is_attached(prog::RSS_STAT) {
            Some(RssChanges::new(&mut probes.ebpf, probes.rss_floor)?)
        } else {
            None
        };
        let sites = opts
            .sites
            .clone()
            .map(|o| SiteTracker::new(&mut probes.ebpf, o))
            .transpose()?;
        let now = Instant::now();
        let mem_total = crate::sys::host::MemInfo::read().map_or(0, |m| m.mem_total);
        let threads_unknown = !probes.is_attached(prog::TASK_NEWTASK);
        let t0_ns = monotonic_ns();
        let (runtimes, heap_snapshots) = (cfg.runtimes, cfg.heap_snapshots);
        let cfg_host_parts = cfg.host_parts;
        let interval_secs = cfg.interval.as_secs_f64();
        let quiet_ticks = (cfg.refresh_quiet_secs / interval_secs.max(1e-3)).round() as u64;
        let sched = Schedule::new(
            interval_secs,
            matches!(cfg.scope, Scope::Tree { .. }),
            cfg.refresh_every,
            quiet_ticks,
        );
        let mut m = Monitor {
            probes,
            source,
            rss,
            core: Core::new(cfg.core.clone(), mem_total, t0_ns),
            cfg,
            start: now,
            next_tick: now,
            ticks: 0,
            kernel: Vec::new(),
            self_pid: std::process::id(),
            memcgs: MemcgResolver::new(),
            memcg_dirs: HashMap::new(),
            memcg_watch: Default::default(),
            threads_unknown,
            sites,
            recorded: Vec::new(),
            runtimes: None,
            res: resources::ResourceReader::new(cfg_host_parts),
            sched,
            read_now: HashSet::new(),
            exec_args: Default::default(),
            unread_notes: HashMap::new(),
        };
        if runtimes {
            m.start_runtimes(heap_snapshots, t0_ns);
        }
        let mut b = Batch::at(0.0, false);
        m.sweep(&mut b);
        m.apply(b);
        // Loading (the kernel's BTF for the trampolines) and the first look at every process
        // leave megabytes of freed heap that glibc keeps; the agent runs for weeks at a steady
        // size well under that peak, so give it back once.
        // SAFETY: malloc_trim only releases free memory of the allocator; no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
        Ok(m)
    }

    /// Watch a process tree rooted at `pid` (for `watch -- CMD`, once the command is spawned).
    pub fn set_root(&mut self, pid: u32) {
        self.core.set_root(pid);
        let mut b = Batch::at(self.now_secs(), false);
        self.track(pid, &mut b);
        // Just started: its runtime (the java launcher's libjvm.so) may load a moment later.
        self.runtime_consider(pid, true);
        self.apply(b);
    }

    /// Seconds since the monitor started (the timelines' clock).
    pub fn now_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The process table, as the sinks read it.
    pub fn table(&self) -> &ProcessTable {
        self.core.table()
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Kernel events decoded so far, per kind (self-monitoring).
    pub fn counts(&self) -> Counts {
        self.source.counts()
    }

    /// Records that did not decode (a kernel/agent mismatch); said once at the end.
    pub fn decode_errors(&self) -> u64 {
        self.source.decode_errors
    }

    /// The batches applied since the last call (only with `record`).
    pub fn take_batches(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.recorded)
    }

    fn in_scope(&self, pid: u32, comm: &str) -> bool {
        if pid == self.self_pid {
            return false;
        }
        match &self.cfg.scope {
            Scope::All => true,
            Scope::Filter { pids, comms } => {
                (pids.is_empty() || pids.contains(&pid)) && (comms.is_empty() || comms.iter().any(|c| c == comm))
            }
            Scope::Tree { .. } => self.core.in_group(pid),
        }
    }

    /// Wait for the next interval (draining kernel events meanwhile); returns early with urgent
    /// events (exits of flagged processes, OOM kills) so they are handled within milliseconds.
    /// Cancel-safe: it only awaits with nothing drained and not returned.
    pub async fn next(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
                // Cancel-safe: nothing is drained yet while the counter is read.
                let work = match &self.cfg.work {
                    Some(w) => w.read(self.cfg.interval.mul_f64(0.5).min(Duration::from_secs(2))).await,
                    None => None,
                };
                self.drain(&mut out);
                self.tick(&mut out, work);
                while self.next_tick <= now {
                    self.next_tick += self.cfg.interval;
                }
                return out;
            }
            let wait = (self.next_tick - now).min(Duration::from_millis(50));
            self.source.wait(wait).await;
            self.drain(&mut out);
            if !out.is_empty() {
                return out;
            }
        }
    }

    /// Apply a batch to the core (answering its questions from the live system) and keep it
    /// for the record.
    fn apply(&mut self, mut b: Batch) -> Vec<Event> {
        let mut world = LiveWorld {
            memcgs: &self.memcgs,
            dirs: &self.memcg_dirs,
            read: Vec::new(),
            snapshots: self.runtimes.as_ref().and_then(|r| r.snapshots.as_ref()),
            now: b.t,
            interval: self.cfg.interval.as_secs_f64(),
            asked: HashMap::new(),
        };
        let mut events = self.core.apply(&b, &mut world);
        b.cg = world.read;
        if self.cfg.record && (b.tick || !b.is_empty()) {
            self.recorded.push(b);
        }
        self.runtime_after(&mut events);
        events
    }

    /// Read a process that should be tracked: its identity if it is a new life, and its memory.
    fn track(&mut self, pid: u32, b: &mut Batch) {
        if pid == self.self_pid {
            self.sched.skip(pid);
            return;
        }
        let (key, st) = match observe::read_key(pid) {
            Ok(Some(k)) => k,
            // A kernel thread: nothing to track until the pid has a new life.
            Ok(None) => {
                self.sched.skip(pid);
                return;
            }
            Err(_) => return, // gone
        };
        if !self.in_scope(pid, &st.name) {
            self.sched.skip(pid);
            return;
        }
        if self.core.table().life((pid, key)).is_some() {
            self.observed(pid, key, &st, b);
            return;
        }
        {
            if self.core.table().len() >= self.cfg.core.max_processes && !self.core.table().contains(pid) {
                // Counted by the table as refused; nothing to read until it has room.
                b.new.push(observe::bare_identity(pid, key, &st));
                self.sched.refuse(pid);
                return;
            }
            let memcg = self.memcgs.of(pid);
            self.sched.memcg_read(pid, self.ticks);
            let exec = self.exec_args.take(pid);
            b.new.push(observe::identity(pid, key, &st, memcg.as_ref(), exec));
            if let Some(m) = memcg {
                self.memcg_dirs.insert(pid, m);
            }
            if let Some(s) = self.sites.as_mut() {
                s.watch(&mut self.probes.ebpf, pid);
            }
            self.runtime_consider(pid, false);
        }
        b.obs.push(self.reading(pid, key, &st, b.tick));
    }

    /// Re-read one tracked process (with its identity when it exec'd); a vanished one ends.
    fn read_one(&mut self, pid: u32, b: &mut Batch, identity: bool) {
        let Some(p) = self.core.table().get(pid) else { return };
        let start = p.key.start_ticks;
        match crate::sys::proc::read_status(pid) {
            // A zombie (vm_size 0) has released its memory: it is gone for our purposes.
            Ok(st) if st.vm_size > 0 => {
                if identity {
                    // A new program in the same life: its identity is read again.
                    let memcg = self.memcgs.of(pid);
                    self.sched.memcg_read(pid, self.ticks);
                    let exec = self.exec_args.take(pid);
                    b.new.push(observe::identity(pid, start, &st, memcg.as_ref(), exec));
                    if let Some(m) = memcg {
                        self.memcg_dirs.insert(pid, m);
                    }
                }
                self.observed(pid, start, &st, b);
            }
            _ => {
                self.forget(pid);
                b.exit.push((pid, start));
            }
        }
    }

    /// A tracked life was read: its memory, and its cgroup again when its footprint changed
    /// (processes move between cgroups: containers, systemd, tests).
    fn observed(&mut self, pid: u32, start: u64, st: &ProcStatus, b: &mut Batch) {
        let o = self.reading(pid, start, st, b.tick);
        let moved = self
            .core
            .table()
            .get(pid)
            .is_some_and(|p| p.readings == 0 || crate::state::Rss::of(&o).footprint() != p.rss.footprint());
        let recheck = moved && self.sched.memcg_due(pid, self.ticks);
        if recheck {
            self.sched.memcg_read(pid, self.ticks);
        }
        if recheck
            && let Some(m) = self.memcgs.of(pid)
            && self.memcg_dirs.get(&pid) != Some(&m)
        {
            // The cmdline is unchanged: what was read at start is kept.
            b.new.push(Identity {
                memcg: Some(m.rel.clone()),
                ..observe::bare_identity(pid, start, st)
            });
            self.memcg_dirs.insert(pid, m);
        }
        // CPU time, for the processes whose memory moves (the alarm tells computing from leaking).
        if moved && let Some(ms) = observe::cpu_ms(pid) {
            b.cpu.push((pid, start, ms));
        }
        b.obs.push(o);
    }

    /// The memory reading of one life; at a tick, with the lowest footprint the kernel saw during
    /// the interval that just ended (None between ticks, or when the floor is off).
    fn reading(&self, pid: u32, start: u64, st: &ProcStatus, tick: bool) -> Obs {
        let mut o = observe::obs(pid, start, st);
        if tick {
            let footprint = crate::state::Rss::of(&o).footprint();
            o.6 = self.rss.as_ref().and_then(|r| r.floor(pid, o.2, footprint));
        }
        o
    }

    fn forget(&mut self, pid: u32) {
        self.memcg_dirs.remove(&pid);
        self.exec_args.ended(pid);
        self.runtime_forget(pid);
        self.sched.ended(pid);
    }

    /// Discover processes and re-read every tracked one.
    fn sweep(&mut self, b: &mut Batch) {
        let candidates: Vec<u32> = match &self.cfg.scope {
            Scope::All => observe::all_pids(),
            Scope::Filter { pids, comms } if comms.is_empty() => pids.clone(),
            Scope::Filter { .. } => observe::all_pids(),
            Scope::Tree { .. } => self
                .core
                .group()
                .map(|g| g.members.iter().copied().collect())
                .unwrap_or_default(),
        };
        let mut seen = HashSet::new();
        for pid in candidates {
            seen.insert(pid);
            self.track(pid, b);
        }
        for pid in self.core.table().pids() {
            if !seen.contains(&pid) {
                self.read_one(pid, b, false);
            }
        }
        self.sched.swept();
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        let mut kernel = std::mem::take(&mut self.kernel);
        kernel.clear();
        self.source.drain(&mut kernel);
        if let Some(r) = self.runtimes.as_mut() {
            r.read();
        }
        for e in kernel.drain(..) {
            self.handle(e, out);
        }
        self.kernel = kernel;
        // Stack copies wait in a small ring buffer: unwind them as often as events are drained.
        if let Some(s) = self.sites.as_mut() {
            s.poll();
        }
    }

    fn note(&mut self, pid: u32, n: SyscallNote) {
        if let Some(p) = self.core.table_mut().get_mut(pid) {
            for earlier in self.unread_notes.remove(&pid).into_iter().flatten() {
                p.note_syscall(earlier);
            }
            p.note_syscall(n);
        } else if self.unread_notes.len() < UNREAD_NOTES_PIDS || self.unread_notes.contains_key(&pid) {
            let q = self.unread_notes.entry(pid).or_default();
            if q.len() == crate::state::SYSCALL_HISTORY {
                q.pop_front();
            }
            q.push_back(n);
        }
    }

    fn handle(&mut self, e: KernelEvent, out: &mut Vec<Event>) {
        let pid = e.hdr.pid;
        let note = |call: &'static str, addr: u64, len: u64, delta: i64, ok: bool| SyscallNote {
            ts_ns: e.hdr.ts_ns,
            call: call.into(),
            addr,
            len,
            delta,
            ok,
        };
        match &e.payload {
            Payload::Mmap { len, ret, .. } => {
                let ok = !is_err_ret(*ret);
                self.note(
                    pid,
                    note("mmap", *ret as u64, *len, if ok { *len as i64 } else { 0 }, ok),
                );
            }
            Payload::Munmap { addr, len, ret } => {
                self.note(pid, note("munmap", *addr, *len, -(*len as i64), !is_err_ret(*ret)));
            }
            Payload::Brk {
                requested,
                old_brk,
                new_brk,
            } => {
                let delta = old_brk.map_or(0, |o| *new_brk as i64 - o as i64);
                let ok = *requested == 0 || requested == new_brk;
                self.note(pid, note("brk", *new_brk, delta.unsigned_abs(), delta, ok));
            }
            Payload::Mremap {
                old_len, new_len, ret, ..
            } => {
                let ok = !is_err_ret(*ret);
                let delta = if ok { *new_len as i64 - *old_len as i64 } else { 0 };
                self.note(pid, note("mremap", *ret as u64, *new_len, delta, ok));
            }
            Payload::Fork { child_pid } => {
                let child = *child_pid;
                if self.threads_unknown && enrich::is_thread(child) {
                    return;
                }
                self.core.adopt(pid, child);
                // Read once it has lived an interval (at the next tick for a watched tree).
                let wanted = match &self.cfg.scope {
                    Scope::All => true,
                    Scope::Filter { .. } => self.core.table().contains(pid),
                    Scope::Tree { .. } => self.core.in_group(child),
                };
                if wanted {
                    self.sched.born(child, self.now_secs());
                } else {
                    self.sched.ended(child);
                }
            }
            Payload::Exec { args, args_cut, .. } => {
                self.sched.new_program(pid);
                // Kept for the identity read at the next tick (or when the new process is first
                // read): /proc's may have been rewritten by then.
                let relevant = if self.core.table().contains(pid) {
                    self.sched.execed(pid);
                    self.runtime_consider(pid, true);
                    true
                } else if let Scope::Filter { pids, comms } = &self.cfg.scope {
                    // The event carries the new comm: only a match is read (at the next tick).
                    let matched = pids.contains(&pid) || comms.contains(&e.hdr.comm);
                    if matched {
                        self.sched.wanted(pid, self.now_secs());
                    }
                    matched
                } else if let Scope::Tree { .. } = &self.cfg.scope {
                    self.core.in_group(pid)
                } else {
                    true
                };
                if relevant {
                    self.exec_args.execed(pid, args, *args_cut);
                } else {
                    self.exec_args.ended(pid);
                }
            }
            Payload::Exit { .. } => {
                self.exec_args.ended(pid);
                self.unread_notes.remove(&pid);
                if let Some(s) = self.sites.as_mut() {
                    s.exited(pid);
                }
                self.sched.ended(pid);
                if let Some(p) = self.core.table().get(pid) {
                    let mut b = Batch::at(self.now_secs(), false);
                    b.exit.push((pid, p.key.start_ticks));
                    self.runtime_events(&mut b);
                    self.forget(pid);
                    out.extend(self.apply(b));
                }
            }
            Payload::OomKill(_) => out.push(self.oom_kill(e)),
        }
    }

    /// An OOM kill: what can only be read now (the victim is being torn down), then the report.
    fn oom_kill(&mut self, mut e: KernelEvent) -> Event {
        let Payload::OomKill(k) = &mut e.payload else {
            unreachable!("only called for OOM kills")
        };
        // The victim may be a thread: report its process.
        if !self.core.table().contains(k.victim_pid)
            && let Ok(st) = crate::sys::proc::read_status(k.victim_pid)
            && st.tgid != 0
        {
            k.victim_pid = st.tgid;
        }
        enrich::fill_oom(k);
        let k = k.clone();
        let t = self.now_secs();
        // The report's timeline runs up to the kill.
        self.core.table_mut().catch_up(k.victim_pid);
        let victim = self.core.table().get(k.victim_pid);
        let dir = self.memcg_dirs.get(&k.victim_pid);
        let ctx = oom::LiveCtx {
            memcgs: &self.memcgs,
            watch: &self.memcg_watch,
            ts_ns: e.hdr.ts_ns,
            now_t: t,
        };
        let mut live = oom::victim_live(k.victim_pid, victim, dir, &ctx);
        if let Some(s) = self.sites.as_mut() {
            live.top_sites = s.top_now(&mut self.probes.ebpf, k.victim_pid, crate::sites::TOP_SITES);
        }
        // Its collector, if it is a JVM / CPython; its exit will not be a Java OutOfMemoryError.
        live.runtime = self.core.runtime_report(k.victim_pid).map(|mut r| {
            r.heap_snapshot = self.last_heap_snapshot(k.victim_pid);
            r
        });
        self.core.note_oom_kill(k.victim_pid);
        let mut report = oom::build(oom::KillInput {
            event: &e,
            kill: &k,
            victim: self.core.table().get(k.victim_pid),
            live: &live,
            table: self.core.table(),
            memcgs: &self.memcgs,
            now_t: t,
            interval_secs: self.cfg.interval.as_secs_f64(),
        });
        report.host.parts = self.core.host_parts_now();
        if report.last_syscalls.is_empty()
            && let Some(q) = self.unread_notes.get(&k.victim_pid)
        {
            report.last_syscalls = q.iter().cloned().collect();
        }
        let context = KillContext {
            memcg: report.memcg.as_ref().map(|m| m.path.clone()),
            container: report.victim.container.clone(),
            binding_limit: report.binding_limit.clone(),
            binding_memcg: report.binding_memcg.clone(),
            oom_group: report.oom_group.clone(),
            predicted: report.predicted,
            lead_time_secs: report.lead_time_secs,
            flagged: report.flagged,
            report: None,
            full: Box::new(report),
        };
        Event::oom_kill(&e, &k, Some(Box::new(context)))
    }

    fn tick(&mut self, out: &mut Vec<Event>, work: Option<f64>) {
        let t = self.now_secs();
        self.ticks += 1;
        let mut b = Batch::at(t, true);
        let dirty = self.rss.as_mut().map(RssChanges::take_dirty);
        let swept = match dirty {
            Some(dirty) if !self.sched.take_rediscover() => {
                self.read_changed(t, dirty, &mut b);
                false
            }
            // No change marks from the kernel, or lifecycle events lost: look at everything.
            _ => {
                self.sweep(&mut b);
                true
            }
        };
        // What lives hold outside RSS (descriptors, kernel memory) changes without RSS moving:
        // every life is looked at once per pass, a slice of the table each tick — every
        // RESOURCE_PASS_EVERY ticks, or RESOURCE_PASS_PER_TICK lives a tick on a larger host.
        let sweep = swept || self.ticks.is_multiple_of(RESOURCE_PASS_EVERY);
        let period = resources::pass_period(self.core.table().len(), RESOURCE_PASS_EVERY, RESOURCE_PASS_PER_TICK);
        b.host = observe::host();
        self.runtime_fill(&mut b);
        {
            let ctx = resources::Ctx {
                t,
                tick: self.ticks,
                full: swept,
                sweep,
                period,
                moved_period: RESOURCE_PASS_EVERY / 2,
                table: self.core.table(),
                group: self.core.group().map(|g| &g.members),
                memcg_dirs: &self.memcg_dirs,
            };
            if self.cfg.resources {
                self.res.read_lives(&mut b, &ctx);
            }
            b.hostmem = self.res.read_host(&ctx).map(Box::new);
        }
        b.work = work;
        out.extend(self.apply(b));
        // Pre-OOM evidence of the cgroup levels above the tracked processes.
        let ts_ns = monotonic_ns();
        for r in self.memcg_watch.sample(t, self.memcg_dirs.values()) {
            out.push(Event::MemcgPressure {
                ts_ns,
                memcg: r.memcg,
                usage_bytes: r.usage_bytes,
                high_bytes: r.high_bytes,
                limit_bytes: r.limit_bytes,
                high_events: r.high_events,
                max_events: r.max_events,
                psi_some_avg10: r.psi_some_avg10,
                psi_full_avg10: r.psi_full_avg10,
                t,
            });
        }
        if let Some(s) = self.sites.as_mut() {
            s.refresh(&mut self.probes.ebpf, None);
        }
        for (kind, count) in self.source.new_drops() {
            let kind: EventKind = kind;
            if matches!(kind, EventKind::Fork | EventKind::Exec | EventKind::Exit) {
                self.sched.lost_lifecycle_events();
            }
            out.push(Event::dropped(monotonic_ns(), kind.name(), count));
        }
    }

    /// One tick's reading without a sweep (see [`schedule`]): the exec'd lives, the marked
    /// processes, the young lives now due, and this tick's slice of the rest.
    fn read_changed(&mut self, t: f64, dirty: Vec<u32>, b: &mut Batch) {
        let mut read = std::mem::take(&mut self.read_now);
        read.clear();
        if self.core.table().len() < self.cfg.core.max_processes {
            self.sched.table_has_room();
        }
        for pid in self.sched.take_execed() {
            if read.insert(pid) {
                self.read_one(pid, b, true);
            }
        }
        for pid in dirty {
            if !read.insert(pid) {
                continue;
            }
            if self.core.table().contains(pid) {
                self.read_one(pid, b, false);
            } else if !matches!(self.cfg.scope, Scope::Tree { .. })
                && !self.sched.is_young(pid)
                && !self.sched.is_skipped(pid)
                && !self.sched.is_refused(pid)
            {
                // A process whose start was not announced (its fork event was not wanted or
                // not seen).
                self.track(pid, b);
            }
        }
        for pid in self.sched.take_due(t) {
            if read.insert(pid) {
                self.track(pid, b);
            }
        }
        self.sched.reclaim_counter(observe::reclaim_counter(), self.ticks);
        let period = self.sched.refresh_period(self.ticks);
        let tick = self.ticks;
        let slice: Vec<u32> = self
            .core
            .table()
            .iter()
            .map(|p| p.key.pid)
            .filter(|&pid| Schedule::refresh_due(pid, tick, period) && !read.contains(&pid))
            .collect();
        for pid in slice {
            self.read_one(pid, b, false);
        }
        self.read_now = read;
    }
}

/// Processes whose syscalls are kept before they are read (see `Monitor::unread_notes`).
const UNREAD_NOTES_PIDS: usize = 1024;

/// Ticks between passes over every life's descriptors and kernel memory …
const RESOURCE_PASS_EVERY: u64 = 10;
/// … at most this many lives a tick (one `stat` of /proc/PID/fd each, ~5 µs): with 5,000 idle
/// processes a pass takes 25 ticks and costs ~0.1 % of a core instead of 0.5 % in bursts.
const RESOURCE_PASS_PER_TICK: usize = 200;

/// The live system, as the core may ask it.
struct LiveWorld<'a> {
    memcgs: &'a MemcgResolver,
    dirs: &'a HashMap<u32, MemcgPath>,
    /// What was read, for the record.
    read: Vec<CgObs>,
    /// Class histograms taken (`run --heap-snapshots`), for Java OOM reports.
    snapshots: Option<&'a crate::runtimes::snapshots::HeapSnapshots>,
    now: f64,
    interval: f64,
    /// The answer for each cgroup asked about in this batch: processes share cgroups, and each
    /// is read once per batch.
    asked: HashMap<String, Option<CgObs>>,
}

impl World for LiveWorld<'_> {
    /// The tightest level above the process (its own cgroup or an ancestor: on cgroup v2 a
    /// parent's `memory.max` binds a child without one), as `[level, usage, limit]`.
    fn memcg(&mut self, pid: u32, memcg: &str) -> Option<CgObs> {
        if let Some(c) = self.asked.get(memcg) {
            return c.clone();
        }
        let dir = self.dirs.get(&pid).cloned().or_else(|| self.memcgs.of(pid));
        let Some(dir) = dir else {
            self.asked.insert(memcg.to_string(), None);
            return None;
        };
        // Only the limits and usages: the tightest level is all the answer needs.
        let levels = read_limits(&dir);
        let c = match memcg_binding::tightest_level(&levels) {
            Some(l) => CgObs(l.path.clone(), l.usage_bytes.unwrap_or(0), l.limit_bytes),
            None => CgObs(
                memcg.to_string(),
                levels.first().and_then(|l| l.usage_bytes).unwrap_or(0),
                None,
            ),
        };
        self.asked.insert(memcg.to_string(), Some(c.clone()));
        if self.read.contains(&c) {
            return Some(c);
        }
        self.read.push(c.clone());
        Some(c)
    }

    fn snapshot(&mut self, p: &Proc, eta_secs: f64, limit: &str) -> Option<Snapshot> {
        Some(oom::snapshot(p, eta_secs, limit))
    }

    fn java_report(
        &mut self,
        p: &Proc,
        mut rt: crate::report::runtime::RuntimeReport,
    ) -> Option<crate::report::OomReport> {
        rt.heap_snapshot = self.snapshots.and_then(|s| s.last(p.key.pid));
        let dir = self.dirs.get(&p.key.pid).cloned().or_else(|| self.memcgs.of(p.key.pid));
        Some(oom::build_java(p, rt, dir.as_ref(), self.now, self.interval))
    }
}
