//! Leaks outside RSS, judged per life (issue 14): the open-descriptor count and the kernel
//! memory of a life's own memory cgroup are timelines classified with the same classifier as
//! RSS ([`classify`]), giving `fd_leak` and `kernel_leak` evidence; the descriptor limit
//! (`RLIMIT_NOFILE`) is a second limit with a time to exhaustion (EMFILE comes before the OOM
//! killer). Pure: the series come from `state::resources`.
use serde::Serialize;

use super::classify::{ClassifierConfig, Pattern, Verdict};

/// One descriptor in a timeline (timelines store 4 KiB units: one unit per descriptor).
pub const FD_UNIT: u64 = 4096;

/// A series flagged as leaking: when, and its level then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flag {
    pub t: f64,
    pub level: u64,
}

/// Which resource a piece of evidence is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakKind {
    /// The open-descriptor count is a mountain.
    FdLeak,
    /// The kernel memory of the life's own memory cgroup is a mountain.
    KernelLeak,
}

impl LeakKind {
    pub fn name(self) -> &'static str {
        match self {
            LeakKind::FdLeak => "fd_leak",
            LeakKind::KernelLeak => "kernel_leak",
        }
    }
}

/// The classifier tuned for descriptor counts (one descriptor = [`FD_UNIT`] "bytes"): a leak
/// is a floor that rises by at least 32 descriptors and 20 % at 3 a minute or more; swings of a
/// few descriptors (a connection opened and closed) are noise.
pub fn fd_classifier() -> ClassifierConfig {
    let u = FD_UNIT as f64;
    ClassifierConfig {
        min_growth_bytes_per_sec: 0.05 * u,
        min_total_growth_bytes: 32 * FD_UNIT,
        min_relative_growth: 0.2,
        min_swing_bytes: 4 * FD_UNIT,
        ..ClassifierConfig::default()
    }
}

/// The classifier for a life's kernel memory (bytes): the RSS defaults.
pub fn kernel_classifier() -> ClassifierConfig {
    ClassifierConfig::default()
}

/// What judging a series changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    Flagged(Verdict),
    /// `no longer growing`, `released` (the level fell under half of what it was when flagged).
    Cleared(&'static str),
}

/// Flag or clear a series judged `v` at `t`, at `level` now. A flag is raised on a leak
/// verdict (when `allowed`: false for evidence that needs corroboration); it is cleared when the
/// level falls under half of what it was when flagged (`released`) or the series stops being a
/// mountain (`no longer growing`).
pub fn decide(v: &Verdict, level: u64, flag: &mut Option<Flag>, t: f64, allowed: bool) -> Option<Change> {
    match *flag {
        None if v.leak && allowed => {
            *flag = Some(Flag { t, level });
            Some(Change::Flagged(*v))
        }
        Some(f) if level < f.level / 2 => {
            *flag = None;
            Some(Change::Cleared("released"))
        }
        Some(_) if !v.leak && v.pattern != Pattern::Mountain => {
            *flag = None;
            Some(Change::Cleared("no longer growing"))
        }
        _ => None,
    }
}

/// Descriptor growth in descriptors per second, from a verdict on an fd timeline.
pub fn fds_per_sec(v: &Verdict) -> f64 {
    v.growth_bytes_per_sec / FD_UNIT as f64
}

/// Seconds until `open` descriptors growing at `growth` a second reach `limit` (None when not
/// growing or no limit; 0 when at it).
pub fn fd_eta(open: u64, limit: Option<u64>, growth: f64) -> Option<f64> {
    let limit = limit?;
    if !growth.is_finite() || growth <= 0.0 || limit == 0 {
        return None;
    }
    Some(limit.saturating_sub(open) as f64 / growth)
}

/// A rising share: `part` of the growth of `total` (host slab, say) attributed to one life among
/// lives growing at `rates`; None when the total is not growing.
pub fn attribute(total_growth: f64, mine: f64, all: f64) -> Option<f64> {
    (total_growth > 0.0 && mine > 0.0 && all > 0.0).then(|| total_growth * mine / all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        input::ResObs,
        state::{resources::Resources, timeline::TimelineConfig},
    };

    /// As the core does it: classify when due, then decide.
    fn judge(
        s: &mut crate::state::resources::Series,
        cfg: &ClassifierConfig,
        t: f64,
        stale: f64,
        allowed: bool,
    ) -> Option<Change> {
        let v = s.classify_if_due(cfg, t, stale)?;
        decide(&v, s.last.unwrap_or(0), &mut s.flag, t, allowed)
    }

    fn run(series: impl Fn(u32) -> u64, secs: u32) -> (Resources, Vec<(u32, Change)>) {
        let mut r = Resources::new(TimelineConfig::default());
        let cfg = fd_classifier();
        let mut changes = Vec::new();
        for i in 0..secs {
            let t = f64::from(i);
            r.observe(
                &ResObs {
                    fds: Some(series(i)),
                    ..ResObs::new(1, 1)
                },
                t,
            );
            r.carry(t);
            let p = r.get_mut(1).unwrap();
            if let Some(c) = judge(&mut p.fds, &cfg, t, 10.0, true) {
                changes.push((i, c));
            }
        }
        (r, changes)
    }

    #[test]
    fn a_descriptor_leak_is_flagged_and_churn_is_not() {
        // 5 pipes a second (two descriptors each) on top of 20.
        let (r, ch) = run(|i| 20 + 10 * u64::from(i), 60);
        let (at, Change::Flagged(v)) = ch[0] else {
            panic!("{ch:?}")
        };
        assert!(at <= 30, "flagged after {at}s");
        assert_eq!(v.pattern, Pattern::Mountain);
        let g = fds_per_sec(&v);
        assert!((8.0..12.0).contains(&g), "{g} fds/s");
        let p = r.get(1).unwrap();
        let eta = fd_eta(p.fds.last.unwrap(), Some(1024), g).unwrap();
        assert!((30.0..60.0).contains(&eta), "{eta}");

        // Opening and closing as many: the count swings, the floor does not rise.
        let (_, ch) = run(|i| 20 + (u64::from(i) % 5) * 40, 120);
        assert!(ch.is_empty(), "churn flagged: {ch:?}");
        // Constant: never even classified (no timeline).
        let (r, ch) = run(|_| 7, 60);
        assert!(ch.is_empty() && r.get(1).unwrap().fds.timeline.is_none());
    }

    #[test]
    fn closing_the_leaked_descriptors_clears() {
        let (_, ch) = run(|i| if i < 60 { 20 + 10 * u64::from(i) } else { 20 }, 80);
        assert!(matches!(ch.first(), Some((_, Change::Flagged(_)))), "{ch:?}");
        assert!(
            matches!(ch.last(), Some((60..=62, Change::Cleared("released")))),
            "{ch:?}"
        );
    }

    #[test]
    fn etas_and_shares() {
        assert_eq!(fd_eta(1000, Some(1024), 2.0), Some(12.0));
        assert_eq!(fd_eta(2000, Some(1024), 2.0), Some(0.0));
        assert_eq!(fd_eta(10, None, 2.0), None);
        assert_eq!(fd_eta(10, Some(1024), 0.0), None);
        assert_eq!(fd_eta(10, Some(1024), f64::NAN), None);
        assert_eq!(attribute(300.0, 1.0, 3.0), Some(100.0));
        assert_eq!(attribute(-5.0, 1.0, 3.0), None);
    }
}
