//! The process table: one entry per live process, keyed so pid reuse cannot merge two lives,
//! each with a bounded timeline of its memory footprint. Fed with [`Identity`] and [`Obs`]
//! readings (see `monitor::input`); nothing here reads the system.
pub mod gc;
pub mod host;
pub mod memcg;
pub mod resources;
pub mod timeline;

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use self::timeline::{Timeline, TimelineConfig};
use crate::{
    analysis::{
        alarm::AlarmState,
        caps::{self, Cap},
        classify::{ClassifierConfig, Verdict, classify},
        predict::LimitKind,
    },
    input::{Identity, Obs},
    sys::proc::Mapping,
};

/// A process life: pid plus its start time (clock ticks after boot, /proc/PID/stat field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ProcKey {
    pub pid: u32,
    pub start_ticks: u64,
}

/// Resident memory split, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rss {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
}

impl Rss {
    pub fn of(o: &Obs) -> Rss {
        Rss {
            anon: o.2,
            file: o.3,
            shmem: o.4,
            swap: o.5,
        }
    }
    /// VmRSS: what is resident, file pages included.
    pub fn resident(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
    /// What a leak grows and the kernel cannot simply drop: anonymous + shmem, resident or swapped.
    /// File-backed pages are reclaimable cache and are left out of leak detection.
    pub fn footprint(&self) -> u64 {
        self.anon + self.shmem + self.swap
    }
}

/// A memory syscall remembered for OOM reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyscallNote {
    pub ts_ns: u64,
    pub call: std::borrow::Cow<'static, str>,
    pub addr: u64,
    pub len: u64,
    /// Growth this call asked for (negative for releases), bytes.
    pub delta: i64,
    pub ok: bool,
}

pub const SYSCALL_HISTORY: usize = 32;

/// What an SRE would capture before restarting a leaking service (taken when the time to OOM
/// drops under `snapshot_within`; kept for the OOM report).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub pid: u32,
    pub comm: String,
    pub taken_unix_ms: u64,
    pub eta_secs: f64,
    pub limit: String,
    pub smaps_rollup: std::collections::BTreeMap<String, u64>,
    pub status: std::collections::BTreeMap<String, String>,
    pub top_mappings: Vec<Mapping>,
}

/// The projected time to OOM of a growing process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eta {
    pub secs: f64,
    pub limit: LimitKind,
    pub limit_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Proc {
    pub key: ProcKey,
    pub comm: String,
    pub ppid: u32,
    /// argv, cached while the process lives (a dying process shows an empty one).
    pub cmdline: Vec<String>,
    /// Memory cgroup (relative to the controller's root), cached while the process lives (on
    /// cgroup v1 a dying process is moved to the root).
    pub memcg: Option<String>,
    /// The tightest memory limit on the cgroup or its ancestors, when seen.
    pub memcg_limit: Option<u64>,
    /// The footprint's history up to the last reading or catch-up: a life whose footprint did
    /// not move is not touched at a tick; the samples carried since (its last value again at each
    /// tick) are added by [`ProcessTable::catch_up`], which the monitor calls before it judges
    /// or reports the life, or are seen on a copy through [`ProcessTable::samples`].
    pub timeline: Timeline,
    pub rss: Rss,
    /// Readings so far (0: identity known, memory not yet read).
    pub readings: u64,
    pub peak_resident: u64,
    pub first_t: f64,
    /// Time of the last reading.
    pub last_t: f64,
    pub verdict: Option<Verdict>,
    /// Currently reported as a leak (`leak_suspected` sent, `leak_cleared` not yet).
    pub flagged: bool,
    pub flagged_at: Option<f64>,
    /// The footprint changed since the last classification.
    pub changed: bool,
    /// The first tick (index in the table's [`TickLog`]) whose carried sample is not in the
    /// timeline yet (see [`ProcessTable::catch_up`]).
    carried: u64,
    pub last_classified_t: f64,
    pub syscalls: VecDeque<SyscallNote>,
    /// `oom_predicted` was sent at this time, with this ETA.
    pub predicted_at: Option<f64>,
    /// The last time it was growing (for forgetting a prediction).
    pub last_growing: f64,
    pub predicted_eta: Option<f64>,
    pub eta: Option<Eta>,
    pub snapshot: Option<Snapshot>,
    /// Collector figures (a JVM or CPython with probes attached), refreshed every interval.
    pub gc: Option<Box<gc::GcFigures>>,
    /// The memory cap it declares on its command line (`-Xmx`, `maxmemory`, ...).
    pub cap: Option<Cap>,
    /// Its age when first seen, seconds.
    pub age_at_first: f64,
    /// It runs a garbage-collected runtime (`analysis::caps::gc_runtime`), or one whose bounds
    /// cannot be read (`caps::bounds_unread`): its growth is judged more patiently.
    pub gc_runtime: bool,
    /// CPU time used so far (s), as last read.
    pub cpu_secs: Option<f64>,
    /// The live alarm's state (`analysis::alarm`).
    pub alarm: AlarmState,
}

impl Proc {
    fn new(id: &Identity, t: f64, tl: &TimelineConfig) -> Proc {
        Proc {
            key: ProcKey {
                pid: id.pid,
                start_ticks: id.start,
            },
            comm: id.comm.clone(),
            ppid: id.ppid,
            cmdline: id.cmdline.clone(),
            memcg: id.memcg.clone(),
            memcg_limit: id.limit,
            timeline: Timeline::new(tl.clone()),
            rss: Rss::default(),
            readings: 0,
            peak_resident: 0,
            first_t: t,
            last_t: t,
            verdict: None,
            flagged: false,
            flagged_at: None,
            changed: true,
            carried: 0,
            last_classified_t: f64::NEG_INFINITY,
            syscalls: VecDeque::new(),
            predicted_at: None,
            last_growing: t,
            predicted_eta: None,
            eta: None,
            snapshot: None,
            gc: None,
            cap: caps::declared(&id.cmdline, &id.comm),
            gc_runtime: caps::gc_runtime(&id.cmdline, &id.comm) || caps::bounds_unread(&id.cmdline, &id.comm),
            age_at_first: id.age.unwrap_or(0.0),
            cpu_secs: None,
            alarm: AlarmState::default(),
        }
    }

    /// Seconds this process has lived at `t`.
    pub fn age(&self, t: f64) -> f64 {
        self.age_at_first + (t - self.first_t).max(0.0)
    }

    /// A new identity for the same life (exec: new comm and cmdline; a move to another cgroup).
    fn renew(&mut self, id: &Identity) {
        if !id.comm.is_empty() {
            self.comm.clone_from(&id.comm);
        }
        if !id.cmdline.is_empty() {
            self.cmdline.clone_from(&id.cmdline);
            self.cap = caps::declared(&self.cmdline, &self.comm);
            self.gc_runtime =
                caps::gc_runtime(&self.cmdline, &self.comm) || caps::bounds_unread(&self.cmdline, &self.comm);
        }
        if id.memcg.is_some() {
            self.memcg.clone_from(&id.memcg);
            self.memcg_limit = id.limit;
        }
        self.ppid = id.ppid;
    }

    pub fn note_syscall(&mut self, n: SyscallNote) {
        if self.syscalls.len() == SYSCALL_HISTORY {
            self.syscalls.pop_front();
        }
        self.syscalls.push_back(n);
    }

    /// Classify the floor series (each interval's low); with `explain`, the evidence too.
    pub fn classify(&mut self, cfg: &ClassifierConfig, t: f64, explain: Option<&mut Vec<String>>) -> Verdict {
        let v = match explain {
            Some(out) => {
                let (v, lines) = crate::analysis::classify::explain(&self.timeline.lows(), cfg);
                out.extend(lines);
                v
            }
            None => classify(&self.timeline.lows(), cfg),
        };
        self.verdict = Some(v);
        self.changed = false;
        self.last_classified_t = t;
        v
    }
}

/// All tracked processes, bounded in number.
pub struct ProcessTable {
    procs: HashMap<u32, Proc>,
    pub max: usize,
    pub timeline_cfg: TimelineConfig,
    /// Processes not tracked because the table was full.
    pub refused: u64,
    /// Times of the ticks, for the samples carried lazily.
    ticks: TickLog,
    /// The batch being applied is a tick (its time is the log's newest).
    in_tick: bool,
}

/// The times of the table's last ticks, oldest first, numbered from 0 at the first tick ever.
/// It holds more ticks than a timeline keeps samples, so a life idle for longer than the log
/// is caught up exactly: everything before the log's first tick has left its timeline anyway.
#[derive(Debug)]
struct TickLog {
    /// Number of `times[0]`.
    first: u64,
    times: VecDeque<f64>,
    cap: usize,
}

impl TickLog {
    fn new(cfg: &TimelineConfig) -> TickLog {
        TickLog {
            first: 0,
            times: VecDeque::new(),
            cap: Timeline::retention(cfg) + cfg.coarse_factor.max(1) + 16,
        }
    }

    /// Number the next tick will get.
    fn next(&self) -> u64 {
        self.first + self.times.len() as u64
    }

    fn push(&mut self, t: f64) {
        if self.times.len() == self.cap {
            self.times.pop_front();
            self.first += 1;
        }
        self.times.push_back(t);
    }

    /// Add to `tl` the samples of value `bytes` carried at ticks `from..upto`.
    fn carry(&self, tl: &mut Timeline, from: u64, upto: u64, bytes: u64, factor: u64) {
        if upto <= from {
            return;
        }
        if from < self.first {
            // Ticks older than the log: their samples (and all before them) have been pushed
            // out of the timeline by the ones the log still has; only how many there were
            // matters, for where the coarse buckets begin.
            let lost = (self.first.min(upto) - from) % factor;
            let t = self.times.front().copied().unwrap_or(0.0);
            for _ in 0..lost {
                tl.push(t, bytes);
            }
        }
        let start = (from.max(self.first) - self.first) as usize;
        let end = (upto - self.first) as usize;
        for &t in self.times.range(start..end.min(self.times.len())) {
            tl.push(t, bytes);
        }
    }
}

pub enum Started {
    /// A new life was added (a previous life with the same pid, if any, is returned).
    New(Option<Box<Proc>>),
    /// The same life seen again: its identity was refreshed.
    Renewed,
    Refused,
}

impl ProcessTable {
    pub fn new(max: usize, timeline_cfg: TimelineConfig) -> Self {
        Self {
            procs: HashMap::new(),
            max,
            ticks: TickLog::new(&timeline_cfg),
            timeline_cfg,
            refused: 0,
            in_tick: false,
        }
    }

    /// A batch of readings at `t` starts; `tick`: it is an interval's tick, at which every
    /// life read before and not read in this batch carries its last value (lazily: see
    /// [`catch_up`](Self::catch_up)).
    pub fn begin_batch(&mut self, t: f64, tick: bool) {
        self.in_tick = tick;
        if tick {
            self.ticks.push(t);
        }
    }

    /// The ticks whose carried samples a life read or ended in this batch is owed: every one
    /// logged but this batch's own tick (a reading stands for it; an ended life is not carried).
    fn owed_upto(&self) -> u64 {
        self.ticks.next() - u64::from(self.in_tick)
    }

    /// Add the samples `pid` carried since its last reading or catch-up to its timeline, this
    /// batch's tick included. Call it before judging or reporting the life.
    pub fn catch_up(&mut self, pid: u32) {
        self.settle(pid, self.ticks.next());
    }

    fn settle(&mut self, pid: u32, upto: u64) {
        if let Some(p) = self.procs.get_mut(&pid) {
            catch_up(p, &self.ticks, upto, &self.timeline_cfg);
        }
    }

    /// `p`'s footprint samples (as [`Timeline::samples`]) with the carried ones it is owed,
    /// without changing it: for sinks that only look.
    pub fn samples(&self, p: &Proc) -> Vec<crate::analysis::classify::Sample> {
        let upto = self.ticks.next();
        if !owes(p, upto) {
            return p.timeline.samples();
        }
        let mut tl = p.timeline.clone();
        self.ticks.carry(
            &mut tl,
            p.carried,
            upto,
            p.rss.footprint(),
            coarse_factor(&self.timeline_cfg),
        );
        tl.samples()
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Proc> {
        self.procs.get_mut(&pid)
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    /// The life tracked under `key.pid`, if it is that life.
    pub fn life(&self, key: (u32, u64)) -> Option<&Proc> {
        self.procs.get(&key.0).filter(|p| p.key.start_ticks == key.1)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        self.procs.values_mut()
    }

    /// Remove the life `key` (not another life that reused its pid).
    /// Its timeline is caught up: it holds every sample up to its end (this batch's tick not
    /// included: it ended before).
    pub fn remove_life(&mut self, key: (u32, u64)) -> Option<Proc> {
        if self.life(key).is_some() {
            self.settle(key.0, self.owed_upto());
            self.procs.remove(&key.0)
        } else {
            None
        }
    }

    /// A life starts being tracked (or its identity is refreshed).
    pub fn start(&mut self, id: &Identity, t: f64) -> Started {
        if let Some(p) = self.procs.get_mut(&id.pid) {
            if p.key.start_ticks == id.start {
                p.renew(id);
                return Started::Renewed;
            }
            // Same pid, another life: the old one ended without us seeing its exit.
            self.settle(id.pid, self.owed_upto());
            let old = self.procs.remove(&id.pid).map(Box::new);
            self.procs.insert(id.pid, Proc::new(id, t, &self.timeline_cfg));
            return Started::New(old);
        }
        if self.procs.len() >= self.max {
            self.refused += 1;
            return Started::Refused;
        }
        self.procs.insert(id.pid, Proc::new(id, t, &self.timeline_cfg));
        Started::New(None)
    }

    /// A reading of the life's memory at time `t`; false when that life is not tracked.
    pub fn observe(&mut self, o: &Obs, t: f64) -> bool {
        let upto = self.owed_upto();
        let Some(p) = self.procs.get_mut(&o.0).filter(|p| p.key.start_ticks == o.1) else {
            return false;
        };
        let rss = Rss::of(o);
        if p.readings == 0 || rss.footprint() != p.rss.footprint() {
            p.changed = true;
        }
        catch_up(p, &self.ticks, upto, &self.timeline_cfg);
        p.carried = self.ticks.next();
        p.rss = rss;
        p.readings += 1;
        p.peak_resident = p.peak_resident.max(rss.resident());
        p.last_t = t;
        // The interval's low, when the kernel knows it (never above the end value).
        let low = o.6.map_or(rss.footprint(), |f| f.min(rss.footprint()));
        p.timeline.push_low(t, rss.footprint(), low);
        true
    }

    /// CPU time of the life `key` (ms), as read at this tick.
    pub fn cpu(&mut self, key: (u32, u64), ms: u64) {
        if let Some(p) = self.procs.get_mut(&key.0).filter(|p| p.key.start_ticks == key.1) {
            p.cpu_secs = Some(ms as f64 / 1000.0);
        }
    }
}

/// Add the samples `p` carried at ticks `p.carried..upto`.
fn catch_up(p: &mut Proc, ticks: &TickLog, upto: u64, cfg: &TimelineConfig) {
    if owes(p, upto) {
        ticks.carry(&mut p.timeline, p.carried, upto, p.rss.footprint(), coarse_factor(cfg));
        p.carried = upto;
    }
}

/// `p` has carried samples before tick `upto` not in its timeline yet (a life never read has
/// nothing to carry).
fn owes(p: &Proc, upto: u64) -> bool {
    p.readings > 0 && p.carried < upto
}

fn coarse_factor(cfg: &TimelineConfig) -> u64 {
    cfg.coarse_factor.max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pid: u32, start: u64, comm: &str) -> Identity {
        Identity {
            pid,
            start,
            comm: comm.into(),
            ..Identity::default()
        }
    }

    fn obs(pid: u32, start: u64, anon: u64) -> Obs {
        Obs(pid, start, anon, 4096, 0, 0, None)
    }

    #[test]
    fn pid_reuse_starts_a_new_life() {
        let mut t = ProcessTable::new(10, TimelineConfig::default());
        assert!(matches!(t.start(&id(10, 100, "a"), 0.0), Started::New(None)));
        assert!(t.observe(&obs(10, 100, 1 << 20), 0.0));
        assert!(t.observe(&obs(10, 100, 2 << 20), 1.0));
        assert_eq!(t.get(10).unwrap().timeline.len(), 2);
        assert!(matches!(t.start(&id(10, 100, "a2"), 1.5), Started::Renewed));
        assert_eq!(t.get(10).unwrap().comm, "a2", "exec renews the identity");
        let Started::New(Some(old)) = t.start(&id(10, 200, "b"), 2.0) else {
            panic!("expected a new life")
        };
        assert_eq!(old.comm, "a2");
        assert!(
            !t.observe(&obs(10, 100, 1 << 20), 2.0),
            "a reading of the old life is refused"
        );
        assert!(t.observe(&obs(10, 200, 1 << 20), 2.0));
        let p = t.get(10).unwrap();
        assert_eq!((p.comm.as_str(), p.timeline.len(), p.key.start_ticks), ("b", 1, 200));
        assert!(
            t.remove_life((10, 100)).is_none(),
            "the old life is not the tracked one"
        );
        assert!(t.remove_life((10, 200)).is_some());
    }

    #[test]
    fn carry_needs_a_first_reading() {
        let mut t = ProcessTable::new(10, TimelineConfig::default());
        t.start(&id(1, 1, "x"), 0.0);
        t.start(&id(2, 1, "y"), 0.0);
        t.begin_batch(1.0, true);
        assert!(t.samples(t.get(1).unwrap()).is_empty());
        t.begin_batch(1.5, true);
        t.observe(&obs(1, 1, 8192), 1.5);
        t.observe(&obs(2, 1, 8192), 1.5);
        assert_eq!(t.samples(t.get(1).unwrap()).len(), 1, "read at this tick: not carried");
        t.begin_batch(2.0, true);
        t.observe(&obs(2, 1, 4 * 8192), 2.0);
        let p = t.get(1).unwrap();
        assert_eq!(p.timeline.len(), 1, "not touched");
        let s = t.samples(p);
        assert_eq!(
            (s.len(), s[1].t_secs, s[1].rss_bytes),
            (2, 2.0, 8192),
            "not read: carried"
        );
        assert_eq!(t.samples(t.get(2).unwrap()).len(), 2);
        t.catch_up(1);
        assert_eq!(t.get(1).unwrap().timeline.len(), 2);
    }

    /// Lazy carries give exactly the timeline eager ones would: lives read at ticks, between
    /// ticks, or idle for longer than the tick log (a small timeline, so its coarse buckets and
    /// the log's end are crossed), caught up by a reading, a judgement or only looked at.
    #[test]
    fn lazy_carries_equal_eager_ones() {
        let cfg = TimelineConfig {
            full_res: 5,
            coarse_factor: 3,
            coarse_cap: 4,
        };
        let mut table = ProcessTable::new(100, cfg.clone());
        let lives = 6u32;
        let mut eager: Vec<Option<Timeline>> = vec![None; lives as usize];
        let mut value = vec![0u64; lives as usize];
        for pid in 0..lives {
            table.start(&id(pid, 1, "p"), 0.0);
        }
        // Deterministic pseudo-random schedule.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut t = 0.0;
        for step in 0..400 {
            t += 0.25 + 0.01 * rnd(50) as f64;
            let tick = rnd(4) != 0;
            table.begin_batch(t, tick);
            let mut seen = vec![false; lives as usize];
            for pid in 0..lives {
                // pid 0 reads often; pid 5 is idle for 150 steps at a time (longer than the log).
                let read = match pid {
                    0 => rnd(2) == 0,
                    5 => step % 150 == 0,
                    _ => rnd(10) < u64::from(pid),
                };
                if !read {
                    continue;
                }
                let bytes = (1 + rnd(64)) * 4096;
                table.observe(&obs(pid, 1, bytes), t);
                value[pid as usize] = bytes;
                seen[pid as usize] = true;
                eager[pid as usize]
                    .get_or_insert_with(|| Timeline::new(cfg.clone()))
                    .push(t, bytes);
            }
            if tick {
                for pid in 0..lives as usize {
                    if let Some(tl) = eager[pid].as_mut().filter(|_| !seen[pid]) {
                        tl.push(t, value[pid]);
                    }
                }
            }
            if rnd(7) == 0 {
                table.catch_up(1 + rnd(u64::from(lives) - 1) as u32);
            }
            for pid in 0..lives {
                let p = table.get(pid).unwrap();
                let want = eager[pid as usize].as_ref().map(Timeline::samples).unwrap_or_default();
                assert_eq!(table.samples(p), want, "life {pid} at step {step}");
            }
        }
        // Removed: caught up to its end.
        let p = table.remove_life((5, 1)).unwrap();
        assert_eq!(p.timeline.samples(), eager[5].as_ref().unwrap().samples());
    }

    #[test]
    fn bounded() {
        let mut t = ProcessTable::new(2, TimelineConfig::default());
        for pid in 1..=3 {
            t.start(&id(pid, 1, "x"), 0.0);
        }
        assert_eq!((t.len(), t.refused), (2, 1));
    }
}
