//! The monitor's logic, without the system: observations ([`Batch`]) in, complete typed events
//! out. The live agent and `analyze` (replaying a record) both drive this, so a record replays
//! to the same decisions at the same times. Reading the system is the driver's job
//! (`monitor/mod.rs`); what the logic may ask of the live system goes through [`World`].
use std::collections::HashSet;

use crate::{
    analysis::{
        alarm::{self, AlarmConfig, Context, Decision, Evidence},
        classify::{ClassifierConfig, Pattern, Verdict, classify},
        predict::{Limit, LimitKind, binding_limit, eta_secs},
    },
    input::{Batch, CgObs, HostObs},
    output::{Event, Placement, Subject, VerdictFields, VerdictSites},
    report::{OomReport, runtime::RuntimeReport},
    state::{
        Eta, Proc, ProcessTable, Snapshot, Started,
        gc::{GcConfig, GcTracker},
        timeline::Timeline,
        timeline::TimelineConfig,
    },
};

mod runtime;
use runtime::signs;

/// What the logic may ask of the live system. A replay answers from the record.
pub trait World {
    /// The limit that binds the memory cgroup `memcg` of process `pid` (its own or an
    /// ancestor's), as `[path, usage, limit]`.
    fn memcg(&mut self, pid: u32, memcg: &str) -> Option<CgObs>;
    /// A pre-OOM snapshot of a live process; None when it cannot be had (gone, or a replay).
    fn snapshot(&mut self, p: &Proc, eta_secs: f64, limit: &str) -> Option<Snapshot>;
    /// The report of a JVM's OutOfMemoryError (`rt`: its collector); None when it cannot be built
    /// (a replay).
    fn java_report(&mut self, _p: &Proc, _rt: RuntimeReport) -> Option<OomReport> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub classifier: ClassifierConfig,
    /// When the host agent raises and clears leak alarms.
    pub alarm: AlarmConfig,
    pub timeline: TimelineConfig,
    pub max_processes: usize,
    /// Interval between ticks, seconds.
    pub interval_secs: f64,
    /// Send `oom_predicted` when a process's time to its binding limit drops under this (s).
    pub predict_within: f64,
    /// Capture a pre-OOM snapshot when the time to OOM drops under this (s).
    pub snapshot_within: f64,
    /// Follow one process tree as a whole (`watch`): its root.
    pub tree_root: Option<u32>,
    /// The life `--work-metric` counts the work of (`run --pid P`; `watch`: the tree).
    pub work_pid: Option<u32>,
    /// Classifications per tick of processes not under judgement (neither flagged nor leak
    /// candidates), oldest verdict first; the rest wait for the next tick. A full timeline
    /// costs about 0.1 ms to classify: on a host where hundreds of processes change every
    /// interval this bounds the agent's CPU, and delays a first verdict by at most
    /// ⌈changed / budget⌉ ticks. Processes under judgement are always classified.
    pub classify_budget: usize,
}

impl CoreConfig {
    pub fn new(interval_secs: f64) -> CoreConfig {
        CoreConfig {
            classifier: ClassifierConfig::default(),
            alarm: AlarmConfig::default(),
            timeline: TimelineConfig::default(),
            max_processes: 8192,
            interval_secs,
            predict_within: 300.0,
            snapshot_within: 30.0,
            tree_root: None,
            work_pid: None,
            classify_budget: 32,
        }
    }
}

/// The limit that binds a process: its memory cgroup's limit when smaller, else the host's memory.
fn limit_of(p: &Proc, mem_total: u64) -> u64 {
    let host = if mem_total > 0 { mem_total } else { u64::MAX };
    p.memcg_limit.unwrap_or(host).min(host)
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

impl Group {
    fn new(root: u32, tl: &TimelineConfig) -> Group {
        Group {
            root,
            members: HashSet::from([root]),
            timeline: Timeline::new(tl.clone()),
            start_resident: None,
            last_resident: 0,
            peak_resident: 0,
            first_t: None,
            last_t: 0.0,
            comm: String::new(),
        }
    }
}

pub struct Core {
    pub cfg: CoreConfig,
    table: ProcessTable,
    group: Option<Group>,
    host: Option<HostObs>,
    mem_total: u64,
    /// CLOCK_MONOTONIC ns at t = 0 (events carry `ts_ns = t0_ns + t`).
    t0_ns: u64,
    now: f64,
    /// Managed runtimes' collectors (JVM, CPython).
    rt: runtime::Runtimes,
    /// Processes that were leak candidates at the last tick (the host's multiple testing).
    candidates: usize,
    /// `analyze --explain PID`: one line per tick on how this process was judged.
    pub explain: Option<u32>,
    pub explained: Vec<String>,
    /// Issue 14: what lives hold outside their RSS (`core/resources.rs`), the host's memory
    /// in parts (`core/host.rs`).
    beyond: resources::BeyondRss,
    hostmem: crate::state::host::HostState,
}

impl Core {
    pub fn new(cfg: CoreConfig, mem_total: u64, t0_ns: u64) -> Core {
        let group = cfg.tree_root.map(|r| Group::new(r, &cfg.timeline));
        Core {
            table: ProcessTable::new(cfg.max_processes, cfg.timeline.clone()),
            group,
            host: None,
            mem_total,
            t0_ns,
            now: 0.0,
            rt: runtime::Runtimes::new(GcTracker::new(
                GcConfig {
                    interval_secs: cfg.interval_secs,
                    classifier: cfg.classifier.clone(),
                    predict_within_secs: cfg.predict_within,
                    ..GcConfig::default()
                },
                0,
            )),
            candidates: 0,
            explain: None,
            explained: Vec::new(),
            beyond: resources::BeyondRss::new(cfg.timeline.clone()),
            hostmem: crate::state::host::HostState::new(cfg.timeline.clone()),
            cfg,
        }
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut ProcessTable {
        &mut self.table
    }

    pub fn group(&self) -> Option<&Group> {
        self.group.as_ref()
    }

    /// Follow the tree rooted at `pid` from now on (`watch -- CMD`, once spawned).
    pub fn set_root(&mut self, pid: u32) {
        self.group = Some(Group::new(pid, &self.cfg.timeline));
        self.beyond.new_group();
    }

    /// Whether `pid` belongs to the watched tree.
    pub fn in_group(&self, pid: u32) -> bool {
        self.group.as_ref().is_some_and(|g| g.members.contains(&pid))
    }

    /// A fork in the watched tree: the child belongs to it.
    pub fn adopt(&mut self, parent: u32, child: u32) {
        if let Some(g) = self.group.as_mut()
            && g.members.contains(&parent)
        {
            g.members.insert(child);
        }
    }

    fn subject(&self, p: &Proc) -> Subject {
        Subject {
            ts_ns: self.ts_ns(self.now),
            pid: p.key.pid,
            comm: p.comm.clone(),
            t: self.now,
        }
    }

    fn ts_ns(&self, t: f64) -> u64 {
        self.t0_ns.saturating_add((t.max(0.0) * 1e9) as u64)
    }

    /// Apply one batch of observations; the events it leads to, in order.
    pub fn apply(&mut self, b: &Batch, world: &mut dyn World) -> Vec<Event> {
        let mut out = Vec::new();
        self.now = self.now.max(b.t);
        let t = b.t;
        self.table.begin_batch(t, b.tick);
        if let Some(h) = b.host {
            self.host = Some(h);
        }
        for id in &b.new {
            match self.table.start(id, t) {
                Started::New(old) => {
                    if let Some(old) = old {
                        self.runtime_ended(&old, world, &mut out);
                        self.ended(*old, &mut out);
                    }
                    if let Some(g) = self.group.as_mut()
                        && g.members.contains(&id.ppid)
                    {
                        g.members.insert(id.pid);
                    }
                }
                Started::Renewed | Started::Refused => {}
            }
        }
        for o in &b.obs {
            self.table.observe(o, t);
        }
        self.runtime_inputs(b, world, &mut out);
        for &(pid, start, ms) in &b.cpu {
            self.table.cpu((pid, start), ms);
        }
        for key in &b.exit {
            if let Some(p) = self.table.remove_life(*key) {
                self.runtime_ended(&p, world, &mut out);
                self.ended(p, &mut out);
            }
        }
        self.observe_resources(b, t);
        if b.tick {
            self.update_group(t);
            self.classify(t, &mut out);
            self.runtime_tick(t, world, &mut out);
            self.predict(t, world, &mut out);
            self.judge_resources(t, &mut out);
            self.judge_host(t, &mut out);
            if let Some(e) = self.sample_event() {
                out.push(e);
            }
        }
        out
    }

    /// A life ended: its flag, if any, is cleared.
    fn ended(&mut self, p: Proc, out: &mut Vec<Event>) {
        self.resources_ended(&p, out);
        if let Some(g) = self.group.as_mut()
            && p.key.pid != g.root
        {
            g.members.remove(&p.key.pid);
        }
        if p.flagged {
            out.push(self.cleared(&p, "exited"));
        }
    }

    fn cleared(&self, p: &Proc, reason: &str) -> Event {
        Event::LeakCleared {
            subject: self.subject(p),
            reason: reason.to_string(),
            rss_bytes: p.rss.resident(),
            footprint_bytes: p.rss.footprint(),
            flagged_secs: p.flagged_at.map(|f| (self.now - f).round()),
            verdict: p.verdict.as_ref().map(VerdictFields::from),
        }
    }

    fn suspected(&self, p: &Proc, v: &Verdict, evidence: Evidence) -> Event {
        Event::LeakSuspected {
            subject: self.subject(p),
            rss_bytes: p.rss.resident(),
            footprint_bytes: p.rss.footprint(),
            anon_bytes: p.rss.anon,
            swap_bytes: p.rss.swap,
            samples: v.samples,
            observed_secs: (self.now - p.first_t).round(),
            verdict: v.into(),
            placement: Placement::of(p.memcg.as_deref()),
            evidence,
            signs: signs(p),
            gc: p.gc.clone(),
            work: self.work_of(p.key.pid, v.growth_bytes_per_sec, v.span_secs),
        }
    }

    fn update_group(&mut self, t: f64) {
        let Some(g) = self.group.as_mut() else { return };
        let mut footprint = 0;
        let mut resident = 0;
        let mut any = false;
        g.members.retain(|pid| self.table.contains(*pid) || *pid == g.root);
        for pid in &g.members {
            if let Some(p) = self.table.get(*pid).filter(|p| p.readings > 0) {
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

    /// Classify what changed, then run each process's alarm (`analysis::alarm`).
    fn classify(&mut self, t: f64, out: &mut Vec<Event>) {
        let significance = alarm::host_significance(self.cfg.classifier.significance, self.candidates);
        let cfg = ClassifierConfig {
            significance,
            min_floor_steps: self.cfg.alarm.floor_steps,
            ..self.cfg.classifier.clone()
        };
        let mut flag = Vec::new();
        let mut clear = Vec::new();
        let mut candidates = 0;
        for pid in self.due(t) {
            self.table.catch_up(pid);
            let Some(p) = self.table.get_mut(pid) else { continue };
            let mut lines = Vec::new();
            let explaining = self.explain == Some(p.key.pid);
            let v = p.classify(&cfg, t, explaining.then_some(&mut lines));
            let ctx = Context {
                t,
                age_secs: p.age(t),
                cpu_secs: p.cpu_secs,
                footprint: p.rss.footprint(),
                cap: p.cap.as_ref(),
                gc_runtime: p.gc_runtime,
                limit_bytes: limit_of(p, self.mem_total),
            };
            let decision = alarm::step(&mut p.alarm, &v, &ctx, &self.cfg.alarm, significance);
            if explaining {
                self.explained.push(format!(
                    "{t:7.1}s low {:>9} {:<8} leak {:<5} conf {:.2} rate {:>8.0} B/s growth {:>5.0}s/{:>8.0} B recent {:>5.2} falls {:>2}/{} bottoms {:>7.0} B/s{} cpu {:>6} | candidate {:>6} held {:<14} {decision:?}",
                    p.timeline.lows().last().map_or(0, |s| s.rss_bytes),
                    v.pattern.as_str(),
                    v.leak,
                    v.confidence,
                    v.growth_bytes_per_sec,
                    v.growth_secs,
                    v.floor_growth_bytes,
                    v.recent_ratio,
                    v.falls,
                    v.major_falls,
                    v.major_trough_slope,
                    if p.gc_runtime { " gc" } else { "" },
                    ctx.cpu_secs.map_or("-".into(), |c| format!("{c:.1}")),
                    p.alarm.candidate_since.map_or("-".into(), |c| format!("{c:.0}")),
                    p.alarm.held.map_or("-".into(), |h| format!("{h:?}")),
                ));
                self.explained.append(&mut lines);
            }
            match decision {
                // Already flagged by its heap floor (a JVM): said once.
                Decision::Flag(_) if p.flagged => {}
                Decision::Flag(e) => {
                    p.flagged = true;
                    p.flagged_at = Some(t);
                    flag.push((p.key.pid, v, e));
                }
                // The footprint stopped growing, but the heap floor still leaks: still flagged.
                Decision::Clear if runtime::heap_leak(p) => {}
                Decision::Clear => {
                    p.flagged = false;
                    clear.push(p.key.pid);
                }
                Decision::Quiet => {}
            }
            candidates += usize::from(p.alarm.candidate_since.is_some());
        }
        self.candidates = candidates;
        // Emitted in pid order, so a replay gives the same sequence.
        flag.sort_by_key(|(pid, ..)| *pid);
        clear.sort_unstable();
        for (pid, v, e) in flag {
            if let Some(p) = self.table.get(pid) {
                out.push(self.suspected(p, &v, e));
            }
        }
        for pid in clear {
            if let Some(p) = self.table.get(pid) {
                out.push(self.cleared(p, "no longer growing"));
            }
        }
    }

    /// The processes to classify at `t`, in pid order: every one under judgement (flagged or a
    /// leak candidate), then — within `classify_budget`, those without a verdict first, then the
    /// oldest verdict first — those whose
    /// footprint changed or that have no verdict yet, and growing ones (a mountain) not judged
    /// for ten intervals, so that a process that stopped growing loses its prediction. A process
    /// whose footprint has not changed since a verdict other than a mountain is not classified
    /// again: the samples carried since are all equal to its last one, which cannot turn a
    /// verdict that was not growing into one that is.
    fn due(&self, t: f64) -> Vec<u32> {
        let stale = 10.0 * self.cfg.interval_secs;
        let mut judged = Vec::new();
        let mut waiting = Vec::new();
        for p in self.table.iter().filter(|p| p.readings > 0) {
            if p.flagged || p.alarm.candidate_since.is_some() {
                judged.push(p.key.pid);
                continue;
            }
            let growing = p.verdict.is_some_and(|v| v.pattern == Pattern::Mountain);
            if p.changed || p.verdict.is_none() || (growing && t - p.last_classified_t >= stale) {
                waiting.push((p.verdict.is_some(), p.last_classified_t, p.key.pid));
            }
        }
        waiting.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        judged.extend(waiting.into_iter().take(self.cfg.classify_budget).map(|(.., pid)| pid));
        judged.sort_unstable();
        judged
    }

    /// Time to OOM for every growing process, against the limit that binds it.
    fn predict(&mut self, t: f64, world: &mut dyn World, out: &mut Vec<Event>) {
        // Growing, and not towards a cap it declares below the limit that binds it.
        let mem_total = self.mem_total;
        let growing = |p: &Proc| {
            p.verdict
                .is_some_and(|v| v.pattern == Pattern::Mountain && v.growth_bytes_per_sec > 0.0)
                && !alarm::bounded_by_cap(p.cap.as_ref(), p.rss.footprint(), limit_of(p, mem_total))
        };
        let mut pids: Vec<u32> = self.table.iter().filter(|p| growing(p)).map(|p| p.key.pid).collect();
        pids.sort_unstable();
        let quiet_for = self.cfg.alarm.clear_after_secs;
        for p in self.table.iter_mut() {
            if growing(p) {
                p.last_growing = t;
            } else {
                p.eta = None;
                // Like a leak alarm, a prediction is not repeated for a process whose growth
                // only paused: it is forgotten after `clear_after_secs` without growth.
                if t - p.last_growing >= quiet_for {
                    p.predicted_at = None;
                    p.predicted_eta = None;
                }
            }
        }
        let Some(h) = self.host.filter(|_| !pids.is_empty()) else {
            return;
        };
        let host = Limit {
            kind: LimitKind::Host,
            limit_bytes: self.mem_total,
            usage_bytes: self.mem_total.saturating_sub(h.avail),
        };
        for pid in pids {
            let Some(p) = self.table.get(pid) else { continue };
            // The world answers with the tightest level above the process (its own cgroup or an
            // ancestor): that level's limit is the one to project against.
            let mut level = None;
            let memcg = p
                .memcg
                .clone()
                .and_then(|m| world.memcg(pid, &m))
                .and_then(|CgObs(path, usage, limit)| {
                    level = Some(path);
                    Some(Limit {
                        kind: LimitKind::Memcg,
                        limit_bytes: limit?,
                        usage_bytes: usage,
                    })
                });
            if let Some(m) = memcg
                && let Some(p) = self.table.get_mut(pid)
            {
                p.memcg_limit = Some(m.limit_bytes);
            }
            let Some(p) = self.table.get(pid) else { continue };
            let lim = binding_limit(memcg, host);
            let limit_memcg = level.filter(|_| lim.kind == LimitKind::Memcg);
            let growth = p.verdict.map_or(0.0, |v| v.growth_bytes_per_sec);
            let Some(secs) = eta_secs(growth, &lim) else { continue };
            let kind = if lim.kind == LimitKind::Memcg { "memcg" } else { "host" };
            let snapshot = (secs <= self.cfg.snapshot_within && p.snapshot.is_none())
                .then(|| world.snapshot(p, secs, kind))
                .flatten();
            let predict = secs <= self.cfg.predict_within && p.predicted_at.is_none();
            let subject = self.subject(p);
            let Some(p) = self.table.get_mut(pid) else { continue };
            p.eta = Some(Eta {
                secs,
                limit: lim.kind,
                limit_bytes: lim.limit_bytes,
            });
            if predict {
                p.predicted_at = Some(t);
                p.predicted_eta = Some(secs);
                out.push(Event::OomPredicted {
                    subject: subject.clone(),
                    eta_secs: (secs * 10.0).round() / 10.0,
                    limit: lim.kind,
                    limit_bytes: lim.limit_bytes,
                    growth_bytes_per_sec: growth.round(),
                    footprint_bytes: p.rss.footprint(),
                    rss_bytes: p.rss.resident(),
                    placement: Placement::of(p.memcg.as_deref()),
                    limit_memcg,
                });
            }
            if let Some(s) = snapshot {
                p.snapshot = Some(s.clone());
                out.push(Event::OomSnapshot {
                    subject,
                    eta_secs: s.eta_secs,
                    limit: s.limit.clone(),
                    path: None,
                    snapshot: Box::new(s),
                });
            }
        }
    }

    /// The watched tree's verdict now (`watch`).
    pub fn group_verdict(&self) -> Option<Verdict> {
        let g = self.group.as_ref().filter(|g| g.first_t.is_some())?;
        Some(classify(&g.timeline.samples(), &self.cfg.classifier))
    }

    fn sample_event(&self) -> Option<Event> {
        let g = self.group.as_ref().filter(|g| g.first_t.is_some())?;
        let v = self.group_verdict()?;
        Some(Event::Sample {
            subject: Subject {
                ts_ns: self.ts_ns(g.last_t),
                pid: g.root,
                comm: g.comm.clone(),
                t: g.last_t,
            },
            t_secs: (g.last_t * 10.0).round() / 10.0,
            processes: g.members.len(),
            rss_bytes: g.last_resident,
            footprint_bytes: g.timeline.last().map_or(0, |s| s.rss_bytes),
            verdict: (&v).into(),
        })
    }

    /// `watch`'s last line; None when the tree was never sampled.
    pub fn verdict_event(&self, command_exit_code: Option<i32>, sites: Option<VerdictSites>) -> Option<(Event, bool)> {
        let g = self.group.as_ref().filter(|g| g.first_t.is_some())?;
        let v = self.group_verdict()?;
        // A JVM's heap floor that leaks is a leak even while RSS is flat.
        let seen = &self.rt.seen;
        let mut signs = Vec::new();
        if v.leak {
            signs.push("rss_floor");
        }
        if seen.heap_leak {
            signs.push("heap_floor");
        }
        if seen.pressure {
            signs.push("gc_pressure");
        }
        let leak = v.leak || seen.heap_leak;
        // The runtime the verdict talks about: the root if it is one, else the member with a Java
        // OOM, else the one that leaked, else the lowest pid.
        let gc_pid = if seen.gc.contains_key(&g.root) {
            Some(g.root)
        } else if let Some((p, _)) = &seen.java_oom {
            Some(*p)
        } else {
            let mut pids: Vec<u32> = seen.gc.keys().copied().collect();
            pids.sort_by_key(|p| (!seen.gc[p].heap_floor.is_some_and(|h| h.leak), *p));
            pids.first().copied()
        };
        let mut fields: VerdictFields = (&v).into();
        fields.leak = leak;
        let e = Event::Verdict {
            pid: g.root,
            comm: g.comm.clone(),
            start_rss_bytes: g.start_resident.unwrap_or(0),
            end_rss_bytes: g.last_resident,
            peak_rss_bytes: g.peak_resident,
            samples: v.samples,
            duration_secs: ((g.last_t - g.first_t.unwrap_or(g.last_t)) * 10.0).round() / 10.0,
            command_exit_code,
            verdict: fields,
            sites,
            signs,
            gc_pid,
            gc: gc_pid.and_then(|p| seen.gc.get(&p)).cloned().map(Box::new),
            java_oom: seen.java_oom.as_ref().map(|(_, j)| j.clone()),
            work: self.group_work(v.growth_bytes_per_sec, v.span_secs),
        };
        Some((e, leak))
    }
}

mod host;
mod resources;
#[cfg(test)]
mod tests;
