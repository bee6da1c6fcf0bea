//! What each tracked life holds outside its RSS (issue 14): open descriptors (a timeline of the
//! count, the kinds at each scan), the descriptor limit, the kernel memory of its own memory
//! cgroup (a timeline), and its CPU time (for bytes per CPU-second). Fed with [`ResObs`];
//! nothing here reads the system. Judged by `analysis::resources`.
//!
//! Memory: a life whose descriptor count never moved keeps no timeline (its count is a number);
//! one starts at the first change, with the earlier count as its first sample.
use std::collections::{HashMap, VecDeque};

use super::timeline::{Timeline, TimelineConfig};
pub use crate::analysis::resources::{FD_UNIT, Flag};
use crate::{
    analysis::classify::{ClassifierConfig, Verdict, classify},
    input::ResObs,
    sys::fds::FdCounts,
};

/// Scans kept per life (older ones are thinned, every other one dropped).
const MAX_SCANS: usize = 64;
/// CPU readings kept per life.
const MAX_CPU: usize = 128;

/// One judged series of a life (descriptor count, or kernel memory).
#[derive(Debug, Clone)]
pub struct Series {
    pub timeline: Option<Timeline>,
    /// The last value read, and when it was first seen (before the timeline started).
    pub last: Option<u64>,
    pub first_t: f64,
    pub changed: bool,
    pub verdict: Option<Verdict>,
    pub flag: Option<Flag>,
    pub last_classified_t: f64,
}

impl Series {
    fn new() -> Series {
        Series {
            timeline: None,
            last: None,
            first_t: 0.0,
            changed: false,
            verdict: None,
            flag: None,
            last_classified_t: f64::NEG_INFINITY,
        }
    }

    /// A reading at `t` (in timeline units: `scale` per unit of the value).
    fn read(&mut self, t: f64, v: u64, scale: u64, tl: &TimelineConfig) {
        match self.last {
            None => self.first_t = t,
            Some(prev) if prev != v => {
                if self.timeline.is_none() {
                    let mut new = Timeline::new(tl.clone());
                    new.push(self.first_t, prev.saturating_mul(scale));
                    self.timeline = Some(new);
                }
                self.changed = true;
            }
            Some(_) => {}
        }
        self.last = Some(v);
        if let Some(timeline) = self.timeline.as_mut() {
            timeline.push(t, v.saturating_mul(scale));
        }
    }

    /// Classify the timeline if it moved, is flagged, or was last judged `stale` seconds ago;
    /// the verdict (kept in `verdict`), or None when not due or no timeline.
    pub fn classify_if_due(&mut self, cfg: &ClassifierConfig, t: f64, stale: f64) -> Option<Verdict> {
        let tl = self.timeline.as_ref()?;
        if !(self.changed || self.flag.is_some() || t - self.last_classified_t >= stale) {
            return None;
        }
        let v = classify(&tl.samples(), cfg);
        self.verdict = Some(v);
        self.changed = false;
        self.last_classified_t = t;
        Some(v)
    }

    fn carry(&mut self, t: f64, scale: u64) {
        if let (Some(timeline), Some(v)) = (self.timeline.as_mut(), self.last) {
            timeline.push(t, v.saturating_mul(scale));
        }
    }
}

/// What one life holds outside its RSS.
#[derive(Debug, Clone)]
pub struct ProcRes {
    pub start: u64,
    /// Open descriptors (timeline in [`FD_UNIT`]s).
    pub fds: Series,
    /// The kinds at each scan, oldest first.
    pub scans: VecDeque<(f64, FdCounts)>,
    pub fd_limit: Option<u64>,
    /// Kernel memory of its own memory cgroup, bytes.
    pub kernel: Series,
    pub kernel_reclaimable: bool,
    /// Socket buffer memory of that cgroup, bytes.
    pub sock: Option<u64>,
    /// `(t, cpu seconds)`, oldest first.
    pub cpu: VecDeque<(f64, f64)>,
    /// Projected time to the descriptor limit, seconds; and when `fd_exhaustion_predicted` was sent.
    pub fd_eta: Option<f64>,
    pub fd_predicted_at: Option<f64>,
    /// Read this tick (not carried).
    seen: bool,
}

impl ProcRes {
    fn new(start: u64) -> ProcRes {
        ProcRes {
            start,
            fds: Series::new(),
            scans: VecDeque::new(),
            fd_limit: None,
            kernel: Series::new(),
            kernel_reclaimable: false,
            sock: None,
            cpu: VecDeque::new(),
            fd_eta: None,
            fd_predicted_at: None,
            seen: false,
        }
    }

    /// The kinds at the last scan.
    pub fn kinds(&self) -> Option<FdCounts> {
        self.scans.back().map(|s| s.1)
    }

    /// The kinds' growth per second between the scan nearest `since` and the last one.
    pub fn kind_growth(&self, since: f64) -> Option<(f64, FdCounts, FdCounts)> {
        let last = self.scans.back()?;
        let first = self
            .scans
            .iter()
            .find(|s| s.0 >= since)
            .filter(|s| s.0 < last.0)
            .or_else(|| self.scans.front().filter(|s| s.0 < last.0))?;
        Some((last.0 - first.0, first.1, last.1))
    }

    /// CPU seconds used per wall-clock second between `since` and now (None without two
    /// readings at least `min_span` apart).
    pub fn cpu_rate(&self, since: f64, min_span: f64) -> Option<f64> {
        let last = self.cpu.back()?;
        let first = self.cpu.iter().find(|c| c.0 >= since)?;
        let dt = last.0 - first.0;
        (dt >= min_span && dt > 0.0).then(|| (last.1 - first.1).max(0.0) / dt)
    }
}

/// Every tracked life's resources, by pid.
#[derive(Debug, Default)]
pub struct Resources {
    procs: HashMap<u32, ProcRes>,
    timeline: TimelineConfig,
}

impl Resources {
    pub fn new(timeline: TimelineConfig) -> Resources {
        Resources {
            procs: HashMap::new(),
            timeline,
        }
    }

    pub fn get(&self, pid: u32) -> Option<&ProcRes> {
        self.procs.get(&pid)
    }

    #[cfg(test)]
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut ProcRes> {
        self.procs.get_mut(&pid)
    }

    /// The resources of life `key`, if they are that life's.
    pub fn life(&self, key: (u32, u64)) -> Option<&ProcRes> {
        self.procs.get(&key.0).filter(|r| r.start == key.1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &ProcRes)> {
        self.procs.iter().map(|(p, r)| (*p, r))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut ProcRes)> {
        self.procs.iter_mut().map(|(p, r)| (*p, r))
    }

    /// A reading of life `o.key()` at `t` (a new life with the same pid replaces the old one).
    pub fn observe(&mut self, o: &ResObs, t: f64) {
        let r = self.procs.entry(o.pid).or_insert_with(|| ProcRes::new(o.start));
        if r.start != o.start {
            *r = ProcRes::new(o.start);
        }
        r.seen = true;
        if let Some(n) = o.fds {
            r.fds.read(t, n, FD_UNIT, &self.timeline);
        }
        if let Some(k) = o.kinds {
            if r.scans.len() >= MAX_SCANS {
                // Thin the older half: every other scan goes.
                let keep: VecDeque<_> = r
                    .scans
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i >= MAX_SCANS / 2 || i % 2 == 0)
                    .map(|(_, s)| *s)
                    .collect();
                r.scans = keep;
            }
            r.scans.push_back((t, k));
        }
        if o.fd_limit.is_some() {
            r.fd_limit = o.fd_limit;
        }
        if let Some(k) = o.kernel {
            r.kernel.read(t, k, 1, &self.timeline);
            r.kernel_reclaimable = o.kernel_reclaimable;
        }
        if o.sock.is_some() {
            r.sock = o.sock;
        }
    }

    /// CPU time of life `key` (seconds used so far), read at `t`.
    pub fn cpu(&mut self, key: (u32, u64), t: f64, secs: f64) {
        let r = self.procs.entry(key.0).or_insert_with(|| ProcRes::new(key.1));
        if r.start != key.1 {
            *r = ProcRes::new(key.1);
        }
        if r.cpu.len() >= MAX_CPU {
            r.cpu.pop_front();
        }
        r.cpu.push_back((t, secs));
    }

    /// A tick: lives not read this tick keep their last values.
    pub fn carry(&mut self, t: f64) {
        for r in self.procs.values_mut() {
            if !std::mem::take(&mut r.seen) {
                r.fds.carry(t, FD_UNIT);
                r.kernel.carry(t, 1);
            }
        }
    }

    /// A life ended: its resources go (returned, to clear its flags).
    pub fn remove_life(&mut self, key: (u32, u64)) -> Option<ProcRes> {
        if self.life(key).is_some() {
            self.procs.remove(&key.0)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(pid: u32, fds: u64) -> ResObs {
        ResObs {
            fds: Some(fds),
            ..ResObs::new(pid, 1)
        }
    }

    #[test]
    fn a_timeline_starts_at_the_first_change() {
        let mut r = Resources::new(TimelineConfig::default());
        r.observe(&obs(1, 10), 0.0);
        r.carry(0.0);
        r.carry(1.0);
        assert!(r.get(1).unwrap().fds.timeline.is_none(), "flat: no timeline");
        r.observe(&obs(1, 12), 2.0);
        r.carry(2.0);
        r.carry(3.0);
        let s = r.get(1).unwrap().fds.timeline.as_ref().unwrap().samples();
        let v: Vec<(f64, u64)> = s.iter().map(|x| (x.t_secs, x.rss_bytes / FD_UNIT)).collect();
        assert_eq!(v, [(0.0, 10), (2.0, 12), (3.0, 12)]);
        // Another life with the same pid starts afresh.
        r.observe(
            &ResObs {
                fds: Some(3),
                ..ResObs::new(1, 2)
            },
            4.0,
        );
        assert!(r.get(1).unwrap().fds.timeline.is_none());
        assert!(r.remove_life((1, 1)).is_none());
        assert!(r.remove_life((1, 2)).is_some());
    }

    #[test]
    fn scans_and_cpu() {
        let mut r = Resources::new(TimelineConfig::default());
        for i in 0..200u32 {
            let mut k = FdCounts::default();
            for _ in 0..i {
                k.add(crate::sys::fds::FdKind::Pipe);
            }
            r.observe(
                &ResObs {
                    kinds: Some(k),
                    ..ResObs::new(7, 1)
                },
                f64::from(i),
            );
            r.cpu((7, 1), f64::from(i), f64::from(i) * 0.5);
        }
        let p = r.get(7).unwrap();
        assert!(p.scans.len() <= MAX_SCANS);
        assert_eq!(p.kinds().unwrap().pipe, 199);
        let (dt, a, b) = p.kind_growth(150.0).unwrap();
        assert!(dt > 0.0 && b.pipe > a.pipe);
        let rate = p.cpu_rate(100.0, 10.0).unwrap();
        assert!((rate - 0.5).abs() < 1e-9, "{rate}");
        assert_eq!(p.cpu_rate(199.0, 10.0), None);
    }
}
