//! The live pipeline shared by `run`, `watch` (and later `top`): kernel events and RSS change marks
//! in, process state and analysed updates out. Commands only wire this to sinks.
use std::{
    collections::HashSet,
    fs,
    time::{Duration, Instant},
};

use leaktrace_common::{EventKind, names::prog};

use crate::{
    analysis::{
        classify::{ClassifierConfig, Pattern, Verdict},
        predict::{Limit, LimitKind, binding_limit, eta_secs},
    },
    events::{Event, Payload, enrich, is_err_ret, source::EventSource},
    probes::{LoadOptions, Probes},
    report::capture::{self, VictimLive},
    state::memcg::MemcgResolver,
    state::{
        Observed, Proc, ProcKey, ProcessTable, Rss, SyscallNote,
        rss_watch::RssWatch,
        timeline::{Timeline, TimelineConfig},
    },
    sys::proc::{ProcStatus, read_stat, read_status},
    sys::{
        cgroup::read_memcg_stats,
        proc::{read_cmdline, read_meminfo},
    },
};

/// Which processes to track.
#[derive(Debug, Clone)]
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
    /// Re-read every tracked process (and, for `Scope::All`, discover new ones) every N intervals,
    /// to catch RSS changes made outside the process's own context (e.g. reclaim, swap-out).
    pub sweep_every: u64,
    pub max_processes: usize,
    pub classifier: ClassifierConfig,
    pub timeline: TimelineConfig,
    pub scope: Scope,
    /// Send `oom_predicted` when a process's time to its binding limit drops under this (s).
    pub predict_within: f64,
    /// Capture a pre-OOM snapshot when the time to OOM drops under this (s).
    pub snapshot_within: f64,
}

impl MonitorConfig {
    pub fn new(interval: Duration, scope: Scope) -> Self {
        Self {
            interval,
            sweep_every: 10,
            max_processes: 8192,
            classifier: ClassifierConfig::default(),
            timeline: TimelineConfig::default(),
            scope,
            predict_within: 300.0,
            snapshot_within: 30.0,
        }
    }
}

/// Something a sink may want to show.
#[derive(Debug)]
pub enum Update {
    LeakSuspected {
        pid: u32,
    },
    LeakCleared {
        pid: u32,
    },
    /// The process ended; its final state.
    Exited {
        proc: Box<Proc>,
        exit_code: Option<i32>,
    },
    /// The victim's state as last seen (if tracked), and what was read of it at once.
    OomKill {
        event: Event,
        victim: Option<Box<Proc>>,
        live: Box<VictimLive>,
    },
    /// The process's time to OOM dropped under `predict_within`.
    OomPredicted {
        pid: u32,
    },
    /// A pre-OOM snapshot was captured (stored on the process).
    Snapshot {
        pid: u32,
    },
    Dropped {
        kind: EventKind,
        count: u64,
    },
}

/// The memory of a whole process tree (`watch -- CMD`).
#[derive(Debug, Clone)]
pub struct Group {
    pub root: u32,
    pub members: HashSet<u32>,
    pub timeline: Timeline,
    pub start_resident: Option<u64>,
    pub last_resident: u64,
    pub peak_resident: u64,
    pub first_t: Option<f64>,
    pub last_t: f64,
    pub comm: String,
}

pub struct Monitor {
    pub probes: Probes,
    source: EventSource,
    rss: Option<RssWatch>,
    pub table: ProcessTable,
    pub cfg: MonitorConfig,
    pub group: Option<Group>,
    start: Instant,
    next_tick: Instant,
    ticks: u64,
    batch: Vec<Event>,
    self_pid: u32,
    pub memcgs: MemcgResolver,
    /// task:task_newtask is not attached: fork events may be threads.
    threads_unknown: bool,
    /// Allocation sites of the tracked processes (stacks on: `run --stacks`, `watch`, `sites`).
    pub sites: Option<crate::sites::SiteTracker>,
}

fn read_key(pid: u32) -> Option<(ProcKey, ProcStatus)> {
    let stat = read_stat(pid).ok()?;
    let st = read_status(pid).ok()?;
    // Kernel threads have no memory of their own.
    if st.vm_size == 0 {
        return None;
    }
    Some((
        ProcKey {
            pid,
            start_ticks: stat.starttime_ticks,
        },
        st,
    ))
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Monitor {
    pub fn start(cfg: MonitorConfig, opts: &LoadOptions) -> anyhow::Result<Monitor> {
        let mut probes = crate::commands::start_probes(opts)?;
        let source = EventSource::new(&mut probes.ebpf)?;
        let rss = if probes.is_attached(prog::RSS_STAT) {
            Some(RssWatch::new(&mut probes.ebpf)?)
        } else {
            None
        };
        let sites = opts
            .sites
            .clone()
            .map(|o| crate::sites::SiteTracker::new(&mut probes.ebpf, o))
            .transpose()?;
        let group = match cfg.scope {
            Scope::Tree { root } => Some(Group {
                root,
                members: HashSet::from([root]),
                timeline: Timeline::new(cfg.timeline.clone()),
                start_resident: None,
                last_resident: 0,
                peak_resident: 0,
                first_t: None,
                last_t: 0.0,
                comm: String::new(),
            }),
            _ => None,
        };
        let now = Instant::now();
        let mut m = Monitor {
            probes,
            source,
            rss,
            table: ProcessTable::new(cfg.max_processes, cfg.timeline.clone()),
            cfg,
            group,
            start: now,
            next_tick: now,
            ticks: 0,
            batch: Vec::new(),
            self_pid: std::process::id(),
            memcgs: MemcgResolver::new(),
            threads_unknown: false,
            sites,
        };
        m.threads_unknown = !m.probes.is_attached(prog::TASK_NEWTASK);
        m.sweep(0.0, &mut Vec::new());
        Ok(m)
    }

    /// Watch a process tree rooted at `pid` (for `watch -- CMD`, once the command is spawned).
    pub fn set_root(&mut self, pid: u32) {
        if let Some(g) = self.group.as_mut() {
            g.root = pid;
            g.members = HashSet::from([pid]);
        }
        let t = self.now_secs();
        self.track(pid, t, &mut Vec::new());
    }

    /// Seconds since the monitor started (the timelines' clock).
    pub fn now_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn source(&self) -> &EventSource {
        &self.source
    }

    fn in_scope(&self, pid: u32, st: &ProcStatus) -> bool {
        if pid == self.self_pid {
            return false;
        }
        match &self.cfg.scope {
            Scope::All => true,
            Scope::Filter { pids, comms } => {
                (pids.is_empty() || pids.contains(&pid)) && (comms.is_empty() || comms.iter().any(|c| *c == st.name))
            }
            Scope::Tree { .. } => self.group.as_ref().is_some_and(|g| g.members.contains(&pid)),
        }
    }

    /// Wait for the next interval (draining kernel events meanwhile); returns early with urgent
    /// updates (exits, OOM kills) so they are handled within milliseconds.
    pub async fn next(&mut self) -> Vec<Update> {
        let mut ups = Vec::new();
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
                self.drain(&mut ups);
                self.tick(&mut ups);
                while self.next_tick <= now {
                    self.next_tick += self.cfg.interval;
                }
                return ups;
            }
            let wait = (self.next_tick - now).min(Duration::from_millis(50));
            self.source.wait(wait).await;
            self.drain(&mut ups);
            if !ups.is_empty() {
                return ups;
            }
        }
    }

    fn track(&mut self, pid: u32, t: f64, ups: &mut Vec<Update>) {
        let Some((key, st)) = read_key(pid) else { return };
        if !self.in_scope(pid, &st) {
            return;
        }
        match self.table.observe(key, &st, t) {
            Observed::New(old) => {
                if let Some(old) = old {
                    ups.push(Update::Exited {
                        proc: Box::new(old),
                        exit_code: None,
                    });
                }
                if let Some(s) = self.sites.as_mut() {
                    s.watch(&mut self.probes.ebpf, pid);
                }
                self.refresh_identity(pid, true);
            }
            Observed::Updated => self.refresh_identity(pid, false),
            Observed::Refused => {}
        }
    }

    /// Cache the cmdline and memory cgroup while the process lives (an exiting process shows an
    /// empty cmdline and, on cgroup v1, the root cgroup). The cgroup is re-read whenever the
    /// footprint changed, as processes move between cgroups (containers, systemd, tests).
    fn refresh_identity(&mut self, pid: u32, all: bool) {
        let memcgs = &self.memcgs;
        let Some(p) = self.table.get_mut(pid) else { return };
        if all || p.changed || p.memcg.is_none() {
            if let Some(m) = memcgs.of(pid) {
                p.memcg = Some(m);
            }
        }
        if all || p.cmdline.is_none() {
            if let Ok(c) = read_cmdline(pid)
                && !c.is_empty()
            {
                p.cmdline = Some(c);
            }
        }
    }

    fn drain(&mut self, ups: &mut Vec<Update>) {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        self.source.drain(&mut batch);
        let t = self.now_secs();
        for e in batch.drain(..) {
            self.handle(e, t, ups);
        }
        self.batch = batch;
    }

    fn handle(&mut self, e: Event, t: f64, ups: &mut Vec<Update>) {
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
                if let Some(p) = self.table.get_mut(pid) {
                    p.note_syscall(note("mmap", *ret as u64, *len, if ok { *len as i64 } else { 0 }, ok));
                }
            }
            Payload::Munmap { addr, len, ret } => {
                if let Some(p) = self.table.get_mut(pid) {
                    p.note_syscall(note("munmap", *addr, *len, -(*len as i64), !is_err_ret(*ret)));
                }
            }
            Payload::Brk {
                requested,
                old_brk,
                new_brk,
            } => {
                if let Some(p) = self.table.get_mut(pid) {
                    let delta = old_brk.map_or(0, |o| *new_brk as i64 - o as i64);
                    p.note_syscall(note(
                        "brk",
                        *new_brk,
                        delta.unsigned_abs(),
                        delta,
                        *requested == 0 || requested == new_brk,
                    ));
                }
            }
            Payload::Mremap {
                old_len, new_len, ret, ..
            } => {
                let ok = !is_err_ret(*ret);
                if let Some(p) = self.table.get_mut(pid) {
                    p.note_syscall(note(
                        "mremap",
                        *ret as u64,
                        *new_len,
                        if ok { *new_len as i64 - *old_len as i64 } else { 0 },
                        ok,
                    ));
                }
            }
            Payload::Fork { child_pid } => {
                let child = *child_pid;
                if self.threads_unknown && enrich::is_thread(child) {
                    return;
                }
                if let Some(g) = self.group.as_mut()
                    && g.members.contains(&pid)
                {
                    g.members.insert(child);
                }
                if self.table.contains(pid) || matches!(self.cfg.scope, Scope::Tree { .. }) {
                    self.track(child, t, ups);
                }
            }
            Payload::Exec { .. } => {
                if let Some(p) = self.table.get_mut(pid) {
                    p.comm.clone_from(&e.hdr.comm);
                    self.refresh_identity(pid, true);
                } else if matches!(self.cfg.scope, Scope::Filter { .. }) {
                    self.track(pid, t, ups);
                }
            }
            Payload::Exit { exit_code } => {
                if let Some(s) = self.sites.as_mut() {
                    s.exited(pid);
                }
                if let Some(p) = self.table.remove(pid) {
                    ups.push(Update::Exited {
                        proc: Box::new(p),
                        exit_code: *exit_code,
                    });
                }
            }
            Payload::OomKill(k) => {
                // The victim may be a thread: report its process.
                let mut e = e.clone();
                let Payload::OomKill(k) = &mut e.payload else {
                    unreachable!()
                };
                if !self.table.contains(k.victim_pid)
                    && let Ok(st) = read_status(k.victim_pid)
                    && st.tgid != 0
                {
                    k.victim_pid = st.tgid;
                }
                enrich::fill_oom(k);
                let victim = self.table.get(k.victim_pid);
                let mut live = capture::victim_live(k.victim_pid, victim, &self.memcgs);
                if let Some(s) = self.sites.as_mut() {
                    live.top_sites = s.top_now(&mut self.probes.ebpf, k.victim_pid, crate::sites::TOP_SITES);
                }
                let victim = victim.cloned().map(Box::new);
                ups.push(Update::OomKill {
                    event: e,
                    victim,
                    live: Box::new(live),
                });
            }
        }
    }

    /// Discover processes (Scope::All) and re-read every tracked one.
    fn sweep(&mut self, t: f64, ups: &mut Vec<Update>) {
        let candidates: Vec<u32> = match &self.cfg.scope {
            Scope::All => all_pids(),
            Scope::Filter { pids, comms } if comms.is_empty() => pids.clone(),
            Scope::Filter { .. } => all_pids(),
            Scope::Tree { .. } => self
                .group
                .as_ref()
                .map(|g| g.members.iter().copied().collect())
                .unwrap_or_default(),
        };
        let mut seen = HashSet::new();
        for pid in candidates {
            seen.insert(pid);
            self.track(pid, t, ups);
        }
        for pid in self.table.pids() {
            if !seen.contains(&pid) {
                self.read_one(pid, t, ups);
            }
        }
    }

    /// Re-read one tracked process; a vanished one is reported as exited.
    fn read_one(&mut self, pid: u32, t: f64, ups: &mut Vec<Update>) {
        let Some(p) = self.table.get(pid) else { return };
        let key = p.key;
        match read_status(pid) {
            // A zombie (vm_size 0) has released its memory: it is gone for our purposes.
            Ok(st) if st.vm_size > 0 => {
                if let Observed::Updated = self.table.observe(key, &st, t) {
                    self.refresh_identity(pid, false);
                }
            }
            _ => {
                if let Some(p) = self.table.remove(pid) {
                    ups.push(Update::Exited {
                        proc: Box::new(p),
                        exit_code: None,
                    });
                }
            }
        }
    }

    fn tick(&mut self, ups: &mut Vec<Update>) {
        let t = self.now_secs();
        self.ticks += 1;
        if self.ticks % self.cfg.sweep_every == 0 || self.rss.is_none() {
            self.sweep(t, ups);
        } else {
            let dirty = self.rss.as_mut().map(RssWatch::take_dirty).unwrap_or_default();
            let mut done = HashSet::new();
            for pid in dirty {
                if done.insert(pid) {
                    if self.table.contains(pid) {
                        self.read_one(pid, t, ups);
                    } else if !matches!(self.cfg.scope, Scope::Tree { .. }) {
                        self.track(pid, t, ups);
                    }
                }
            }
            for pid in self.table.pids() {
                if !done.contains(&pid) {
                    self.table.carry(pid, t);
                }
            }
        }
        if let Some(rss) = self.rss.as_mut()
            && self.ticks % self.cfg.sweep_every == 0
        {
            rss.take_dirty();
        }
        self.update_group(t);
        self.classify(t, ups);
        self.predict(t, ups);
        if let Some(s) = self.sites.as_mut() {
            s.refresh(&mut self.probes.ebpf, None);
        }
        for (kind, count) in self.source.new_drops() {
            ups.push(Update::Dropped { kind, count });
        }
    }

    fn update_group(&mut self, t: f64) {
        let Some(g) = self.group.as_mut() else { return };
        let mut footprint = 0;
        let mut resident = 0;
        let mut any = false;
        g.members.retain(|pid| self.table.contains(*pid) || *pid == g.root);
        for pid in &g.members {
            if let Some(p) = self.table.get(*pid) {
                any = true;
                footprint += p.rss.footprint();
                resident += p.rss.resident();
                if *pid == g.root {
                    g.comm.clone_from(&p.comm);
                }
            }
        }
        if !any {
            return;
        }
        g.timeline.push(t, footprint);
        g.start_resident.get_or_insert(resident);
        g.first_t.get_or_insert(t);
        g.last_resident = resident;
        g.peak_resident = g.peak_resident.max(resident);
        g.last_t = t;
    }

    fn classify(&mut self, t: f64, ups: &mut Vec<Update>) {
        let cfg = self.cfg.classifier.clone();
        let stale = 10.0 * self.cfg.interval.as_secs_f64();
        for p in self.table.iter_mut() {
            if !(p.changed || p.flagged || t - p.last_classified_t >= stale) {
                continue;
            }
            let v = p.classify(&cfg, t);
            if v.leak && !p.flagged {
                p.flagged = true;
                p.flagged_at = Some(t);
                ups.push(Update::LeakSuspected { pid: p.key.pid });
            } else if p.flagged && !v.leak && v.pattern != Pattern::Mountain {
                p.flagged = false;
                ups.push(Update::LeakCleared { pid: p.key.pid });
            }
        }
    }

    /// Time to OOM for every growing process, against the limit that binds it.
    fn predict(&mut self, t: f64, ups: &mut Vec<Update>) {
        let growing = |p: &Proc| {
            p.verdict
                .is_some_and(|v| v.pattern == Pattern::Mountain && v.growth_bytes_per_sec > 0.0)
        };
        let pids: Vec<u32> = self.table.iter().filter(|p| growing(p)).map(|p| p.key.pid).collect();
        for p in self.table.iter_mut().filter(|p| !growing(p)) {
            p.eta = None;
            p.predicted_at = None;
            p.predicted_eta = None;
        }
        if pids.is_empty() {
            return;
        }
        let Ok(mi) = read_meminfo() else { return };
        let host = Limit {
            kind: LimitKind::Host,
            limit_bytes: mi.mem_total,
            usage_bytes: mi.mem_total.saturating_sub(mi.mem_available),
        };
        for pid in pids {
            let memcgs = &self.memcgs;
            let Some(p) = self.table.get_mut(pid) else { continue };
            if p.memcg.is_none() {
                p.memcg = memcgs.of(pid);
            }
            let memcg = p.memcg.as_ref().and_then(|m| read_memcg_stats(m).ok()).and_then(|s| {
                Some(Limit {
                    kind: LimitKind::Memcg,
                    limit_bytes: s.limit_bytes?,
                    usage_bytes: s.usage_bytes,
                })
            });
            let lim = binding_limit(memcg, host);
            let growth = p.verdict.map_or(0.0, |v| v.growth_bytes_per_sec);
            let Some(eta) = eta_secs(growth, &lim) else { continue };
            p.eta = Some((eta, lim.kind, lim.limit_bytes));
            if eta <= self.cfg.predict_within && p.predicted_at.is_none() {
                p.predicted_at = Some(t);
                p.predicted_eta = Some(eta);
                ups.push(Update::OomPredicted { pid });
            }
            if eta <= self.cfg.snapshot_within && p.snapshot.is_none() {
                let kind = if lim.kind == LimitKind::Memcg { "memcg" } else { "host" };
                p.snapshot = Some(capture::snapshot(p, eta, kind));
                ups.push(Update::Snapshot { pid });
            }
        }
    }

    /// The verdict for the watched tree (watch).
    pub fn group_verdict(&self) -> Option<Verdict> {
        let g = self.group.as_ref()?;
        Some(crate::analysis::classify::classify(
            &g.timeline.samples(),
            &self.cfg.classifier,
        ))
    }
}

/// Footprint/resident of a process, for sinks.
pub fn sizes(p: &Proc) -> (Rss, u64) {
    (p.rss, p.rss.resident())
}
