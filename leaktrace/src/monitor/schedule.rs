//! Which processes the driver reads from /proc at each tick — the agent's cost grows with what it
//! reads, so it reads only what can have changed:
//!
//! - **dirty** processes: the kernel marked their RSS as changed (`events::rss_dirty`);
//! - **young** lives: announced by fork (or exec, for `--comm` filters), read once they have lived
//!   one interval — a process that ends sooner is never read at all (fork/exec churn costs
//!   nothing here) — or at the next tick when a whole tree is watched (its sum must include
//!   every member alive at the tick);
//! - **exec'd** lives: their identity (comm, argv, cgroup) is read again at the next tick if they
//!   are still alive, not at the exec itself;
//! - **a slice of the rest** each tick (round robin by pid), so that every tracked process is
//!   re-read at least every `refresh_quiet_every` ticks: what changes outside the process's own
//!   context (file pages reclaimed, a lost exit event) is seen in the end. While the host swaps
//!   or discards lazily-freed pages (`/proc/vmstat` `pswpout`, `pglazyfreed` moving), which can
//!   lower a footprint unseen, the slice grows to a re-read every `refresh_every` ticks.
//!
//! Processes are discovered from fork/exec events and dirty marks; a full `/proc` sweep happens
//! only at start, when lifecycle events were dropped, or when the kernel cannot mark changes.
//! Pids that cannot be tracked (kernel threads, out of scope, refused by a full table) are
//! remembered until a fork or exec gives the pid a new life or program, so a dirty mark on them
//! costs nothing.
//!
//! Pure bookkeeping: the driver (`monitor/mod.rs`) does the reading.
use std::collections::{HashMap, HashSet};

/// Re-read a tracked process's memory cgroup at most this often (ticks) while its footprint
/// moves (processes rarely change cgroups; the first reading of a life always reads it).
pub const MEMCG_RECHECK_TICKS: u64 = 10;

#[derive(Debug, Clone)]
pub struct Schedule {
    interval_secs: f64,
    /// Read young lives at the next tick whatever their age (a watched tree).
    eager: bool,
    /// Young lives not read yet: pid → monitor time first announced.
    young: HashMap<u32, f64>,
    /// Tracked lives that exec'd since their identity was read.
    execed: HashSet<u32>,
    /// Pids known not to be trackable: kernel threads, out of scope, the agent itself.
    skip: HashSet<u32>,
    /// Pids the table refused (full); tried again once it has room.
    refused: HashSet<u32>,
    /// Tick at which each tracked pid's memory cgroup was last read.
    memcg_read: HashMap<u32, u64>,
    /// A full sweep is due (lifecycle events were dropped).
    rediscover: bool,
    refresh_every: u64,
    refresh_quiet_every: u64,
    /// Last `/proc/vmstat` reclaim counter, and the tick it last moved.
    reclaim: Option<u64>,
    reclaim_tick: Option<u64>,
}

impl Schedule {
    /// `refresh_every`: ticks between re-reads of every process while the host reclaims
    /// anonymous memory; `refresh_quiet_every`: otherwise.
    pub fn new(interval_secs: f64, eager: bool, refresh_every: u64, refresh_quiet_every: u64) -> Schedule {
        Schedule {
            interval_secs,
            eager,
            young: HashMap::new(),
            execed: HashSet::new(),
            skip: HashSet::new(),
            refused: HashSet::new(),
            memcg_read: HashMap::new(),
            rediscover: false,
            refresh_every: refresh_every.max(1),
            refresh_quiet_every: refresh_quiet_every.max(refresh_every).max(1),
            reclaim: None,
            reclaim_tick: None,
        }
    }

    /// A new life (fork) at monitor time `t`: read it once it has lived an interval.
    pub fn born(&mut self, pid: u32, t: f64) {
        self.skip.remove(&pid);
        self.refused.remove(&pid);
        self.execed.remove(&pid);
        self.memcg_read.remove(&pid);
        self.young.insert(pid, t);
    }

    /// A process not tracked yet ran a new program that makes it wanted (`--comm`); its age
    /// counts from its fork when that was seen.
    pub fn wanted(&mut self, pid: u32, t: f64) {
        self.skip.remove(&pid);
        self.young.entry(pid).or_insert(t);
    }

    /// A tracked life exec'd: its identity is read again at the next tick.
    pub fn execed(&mut self, pid: u32) {
        self.execed.insert(pid);
    }

    /// A process's program changed: what made it untrackable may no longer hold.
    pub fn new_program(&mut self, pid: u32) {
        self.skip.remove(&pid);
    }

    /// A process ended (or vanished).
    pub fn ended(&mut self, pid: u32) {
        self.young.remove(&pid);
        self.execed.remove(&pid);
        self.skip.remove(&pid);
        self.refused.remove(&pid);
        self.memcg_read.remove(&pid);
    }

    pub fn is_young(&self, pid: u32) -> bool {
        self.young.contains_key(&pid)
    }

    /// Young lives due for their first reading at time `t`, in pid order; they leave the set.
    pub fn take_due(&mut self, t: f64) -> Vec<u32> {
        let min_age = if self.eager {
            f64::NEG_INFINITY
        } else {
            self.interval_secs * 0.999
        };
        let mut due: Vec<u32> = self
            .young
            .iter()
            .filter(|&(_, &born)| t - born >= min_age)
            .map(|(&pid, _)| pid)
            .collect();
        due.sort_unstable();
        for pid in &due {
            self.young.remove(pid);
        }
        due
    }

    /// Tracked lives that exec'd since the last call, in pid order.
    pub fn take_execed(&mut self) -> Vec<u32> {
        let mut v: Vec<u32> = self.execed.drain().collect();
        v.sort_unstable();
        v
    }

    /// This pid cannot be tracked (kernel thread, out of scope, self) until its next fork/exec.
    pub fn skip(&mut self, pid: u32) {
        self.young.remove(&pid);
        self.skip.insert(pid);
    }

    pub fn is_skipped(&self, pid: u32) -> bool {
        self.skip.contains(&pid)
    }

    /// The table refused this pid (full).
    pub fn refuse(&mut self, pid: u32) {
        self.refused.insert(pid);
    }

    pub fn is_refused(&self, pid: u32) -> bool {
        self.refused.contains(&pid)
    }

    /// The table has room again: refused pids may be tried.
    pub fn table_has_room(&mut self) {
        if !self.refused.is_empty() {
            self.refused.clear();
        }
    }

    /// Whether to read this tracked pid's memory cgroup again now (its footprint moved).
    pub fn memcg_due(&self, pid: u32, tick: u64) -> bool {
        self.memcg_read
            .get(&pid)
            .is_none_or(|&at| tick.saturating_sub(at) >= MEMCG_RECHECK_TICKS)
    }

    pub fn memcg_read(&mut self, pid: u32, tick: u64) {
        self.memcg_read.insert(pid, tick);
    }

    /// Lifecycle events were lost: sweep /proc at the next tick.
    pub fn lost_lifecycle_events(&mut self) {
        self.rediscover = true;
    }

    /// Whether a full sweep is due (and it is then no longer).
    pub fn take_rediscover(&mut self) -> bool {
        std::mem::take(&mut self.rediscover)
    }

    /// After a full sweep: everything announced has been read or found gone.
    pub fn swept(&mut self) {
        self.young.clear();
        self.execed.clear();
        self.refused.clear();
    }

    /// The host's count of pages swapped out or lazily freed (`/proc/vmstat`), read at `tick`.
    pub fn reclaim_counter(&mut self, value: Option<u64>, tick: u64) {
        if let (Some(now), Some(before)) = (value, self.reclaim)
            && now != before
        {
            self.reclaim_tick = Some(tick);
        }
        if value.is_some() {
            self.reclaim = value;
        }
    }

    /// Ticks between re-reads of a carried process now: short while the host reclaims
    /// (within the last `refresh_every` ticks), long otherwise.
    pub fn refresh_period(&self, tick: u64) -> u64 {
        match self.reclaim_tick {
            Some(at) if tick.saturating_sub(at) < self.refresh_every => self.refresh_every,
            _ => self.refresh_quiet_every,
        }
    }

    /// Whether a tracked pid not otherwise read is re-read at `tick` (its slice of the round robin).
    pub fn refresh_due(pid: u32, tick: u64, period: u64) -> bool {
        u64::from(pid) % period == tick % period
    }

    /// Bookkeeping sizes (young, execed, skip, refused).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize, usize) {
        (self.young.len(), self.execed.len(), self.skip.len(), self.refused.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn young_lives_wait_one_interval() {
        let mut s = Schedule::new(1.0, false, 10, 300);
        s.born(100, 0.2);
        s.born(101, 0.9);
        assert!(s.take_due(1.0).is_empty());
        assert_eq!(s.take_due(1.2), vec![100]);
        assert!(s.is_young(101) && !s.is_young(100));
        // A life that ended before its first reading is never read.
        s.ended(101);
        assert!(s.take_due(5.0).is_empty());
    }

    #[test]
    fn a_watched_tree_reads_at_the_next_tick() {
        let mut s = Schedule::new(1.0, true, 10, 300);
        s.born(7, 0.95);
        assert_eq!(s.take_due(1.0), vec![7]);
    }

    #[test]
    fn wanted_keeps_the_fork_time() {
        let mut s = Schedule::new(1.0, false, 10, 300);
        s.born(5, 0.0);
        s.wanted(5, 0.8);
        assert_eq!(s.take_due(1.0), vec![5]);
        s.wanted(6, 0.5);
        assert!(s.take_due(1.0).is_empty());
        assert_eq!(s.take_due(1.5), vec![6]);
    }

    #[test]
    fn skipped_pids_come_back_with_a_new_life_or_program() {
        let mut s = Schedule::new(1.0, false, 10, 300);
        s.skip(9);
        assert!(s.is_skipped(9));
        s.new_program(9);
        assert!(!s.is_skipped(9));
        s.skip(9);
        s.born(9, 2.0);
        assert!(!s.is_skipped(9) && s.is_young(9));
        s.refuse(3);
        assert!(s.is_refused(3));
        s.table_has_room();
        assert!(!s.is_refused(3));
    }

    #[test]
    fn execed_lives_are_read_once() {
        let mut s = Schedule::new(1.0, false, 10, 300);
        s.execed(4);
        s.execed(2);
        s.execed(4);
        assert_eq!(s.take_execed(), vec![2, 4]);
        assert!(s.take_execed().is_empty());
    }

    #[test]
    fn memcg_is_rechecked_at_most_every_n_ticks() {
        let mut s = Schedule::new(1.0, false, 10, 300);
        assert!(s.memcg_due(1, 0));
        s.memcg_read(1, 5);
        assert!(!s.memcg_due(1, 5 + MEMCG_RECHECK_TICKS - 1));
        assert!(s.memcg_due(1, 5 + MEMCG_RECHECK_TICKS));
        s.ended(1);
        assert!(s.memcg_due(1, 6));
    }

    #[test]
    fn refresh_is_fast_only_while_the_host_reclaims() {
        let mut s = Schedule::new(1.0, false, 10, 300);
        s.reclaim_counter(Some(50), 1);
        assert_eq!(s.refresh_period(1), 300, "the first reading is no change");
        s.reclaim_counter(Some(50), 2);
        assert_eq!(s.refresh_period(2), 300);
        s.reclaim_counter(Some(60), 3);
        assert_eq!(s.refresh_period(3), 10);
        s.reclaim_counter(None, 4);
        assert_eq!(s.refresh_period(12), 10);
        assert_eq!(s.refresh_period(13), 300);
    }

    #[test]
    fn the_round_robin_covers_every_pid_once_per_period() {
        let period = 7;
        for pid in [1u32, 2, 99, 4_000_000] {
            let hits = (100..100 + period)
                .filter(|&t| Schedule::refresh_due(pid, t, period))
                .count();
            assert_eq!(hits, 1, "pid {pid}");
        }
        // The quiet period never drops below the fast one.
        let s = Schedule::new(1.0, false, 10, 3);
        assert_eq!(s.refresh_period(0), 10);
    }

    #[test]
    fn lost_lifecycle_events_ask_for_one_sweep() {
        let mut s = Schedule::new(1.0, false, 10, 300);
        assert!(!s.take_rediscover());
        s.lost_lifecycle_events();
        assert!(s.take_rediscover());
        assert!(!s.take_rediscover());
        s.born(3, 0.0);
        s.execed(4);
        s.swept();
        assert_eq!(s.sizes(), (0, 0, 0, 0));
    }
}
