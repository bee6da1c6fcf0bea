//! Pre-OOM evidence per memory cgroup: each interval, every cgroup v2 level above a tracked
//! process (its own cgroup and its ancestors) is read once — usage, `memory.events` `high`/`max`
//! counts (throttling above `memory.high`, failed charges at `memory.max`), and `memory.pressure`
//! (PSI). A bounded history per level goes into OOM reports; a level whose `high` or `max`
//! count rises is reported live (`memcg_pressure`), at most once per [`REPORT_EVERY_SECS`].
//!
//! The last `memory.events.local` `oom` count seen per level is kept too: at a kill, the level
//! whose count rose is the one whose limit fired (see `analysis::memcg_binding`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;

use serde::Serialize;

use crate::sys::cgroup::{CgroupVersion, MemcgPath};
pub use crate::sys::memcg_levels::MemcgSample;
use crate::sys::memcg_levels::{level_dirs, read_level};

/// Samples kept per level (at the default 1 s interval, two minutes).
pub const HISTORY: usize = 120;
/// Levels watched at most; the rest are not sampled until some leave.
pub const MAX_LEVELS: usize = 256;
/// A level not above any tracked process for this long is forgotten.
const FORGET_SECS: f64 = 60.0;
/// Live `memcg_pressure` reports per level at most this often.
pub const REPORT_EVERY_SECS: f64 = 10.0;

/// A level's `high` or `max` count rose: the cgroup is being throttled or failing charges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PressureReport {
    pub memcg: String,
    pub usage_bytes: Option<u64>,
    pub high_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// Rise of the counts since the previous report of this level (or since first seen).
    pub high_events: u64,
    pub max_events: u64,
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
}

struct Level {
    dir: PathBuf,
    samples: VecDeque<MemcgSample>,
    oom_local: Option<u64>,
    last_wanted: f64,
    /// (time, high, max) at the last live report, or at first sight.
    reported: Option<(f64, u64, u64)>,
    first: Option<(u64, u64)>,
}

#[derive(Default)]
pub struct MemcgWatch {
    levels: HashMap<String, Level>,
}

impl MemcgWatch {
    /// Reads every v2 level above `leaves` once; returns the levels to report live.
    pub fn sample<'a>(&mut self, t: f64, leaves: impl Iterator<Item = &'a MemcgPath>) -> Vec<PressureReport> {
        let mut wanted: HashSet<String> = HashSet::new();
        let mut seen_leaf: HashSet<&str> = HashSet::new();
        for leaf in leaves {
            if leaf.version != CgroupVersion::V2 || !seen_leaf.insert(leaf.rel.as_str()) {
                continue;
            }
            for (path, dir) in level_dirs(leaf) {
                if !wanted.insert(path.clone()) {
                    continue;
                }
                if !self.levels.contains_key(&path) && self.levels.len() >= MAX_LEVELS {
                    continue;
                }
                let l = self.levels.entry(path).or_insert_with(|| Level {
                    dir,
                    samples: VecDeque::new(),
                    oom_local: None,
                    last_wanted: t,
                    reported: None,
                    first: None,
                });
                l.last_wanted = t;
            }
        }
        self.levels.retain(|_, l| t - l.last_wanted <= FORGET_SECS);
        let mut out = Vec::new();
        for (path, l) in self.levels.iter_mut().filter(|(p, _)| wanted.contains(*p)) {
            let Some(level) = read_level(CgroupVersion::V2, path.clone(), &l.dir) else {
                continue;
            };
            l.oom_local = level.events_local.as_ref().and_then(|e| e.oom).or(l.oom_local);
            let s = MemcgSample::of(t, &level);
            let (high, max) = (s.high_events.unwrap_or(0), s.max_events.unwrap_or(0));
            let first = *l.first.get_or_insert((high, max));
            let (last_t, last_high, last_max) = l.reported.unwrap_or((f64::NEG_INFINITY, first.0, first.1));
            if (high > last_high || max > last_max) && t - last_t >= REPORT_EVERY_SECS {
                out.push(PressureReport {
                    memcg: path.clone(),
                    usage_bytes: level.usage_bytes,
                    high_bytes: level.high_bytes,
                    limit_bytes: level.limit_bytes,
                    high_events: high - last_high,
                    max_events: max - last_max,
                    psi_some_avg10: s.psi_some_avg10,
                    psi_full_avg10: s.psi_full_avg10,
                });
                l.reported = Some((t, high, max));
            }
            if l.samples.len() == HISTORY {
                l.samples.pop_front();
            }
            l.samples.push_back(s);
        }
        out.sort_by(|a, b| a.memcg.cmp(&b.memcg));
        out
    }

    /// The level's history, times made relative to `now` (≤ 0).
    pub fn history(&self, path: &str, now: f64) -> Vec<MemcgSample> {
        self.levels.get(path).map_or_else(Vec::new, |l| {
            l.samples
                .iter()
                .map(|s| MemcgSample {
                    t_secs: ((s.t_secs - now) * 1000.0).round() / 1000.0,
                    ..s.clone()
                })
                .collect()
        })
    }

    /// The level's own `oom` count (`memory.events.local`) as last sampled.
    pub fn oom_before(&self, path: &str) -> Option<u64> {
        self.levels.get(path).and_then(|l| l.oom_local)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.levels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn level_files(dir: &std::path::Path, high: u64, max: u64, oom: u64, usage: u64) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        fs::write(dir.join("memory.max"), "67108864\n").unwrap();
        fs::write(dir.join("memory.high"), "33554432\n").unwrap();
        fs::write(dir.join("memory.current"), format!("{usage}\n")).unwrap();
        fs::write(
            dir.join("memory.events"),
            format!("low 0\nhigh {high}\nmax {max}\noom {oom}\noom_kill 0\n"),
        )
        .unwrap();
        fs::write(
            dir.join("memory.events.local"),
            format!("low 0\nhigh {high}\nmax {max}\noom {oom}\noom_kill 0\n"),
        )
        .unwrap();
        fs::write(
            dir.join("memory.pressure"),
            "some avg10=5.00 avg60=1.00 avg300=0.00 total=100\nfull avg10=4.00 avg60=1.00 avg300=0.00 total=80\n",
        )
        .unwrap();
    }

    #[test]
    fn rising_high_counts_are_reported_at_most_every_ten_seconds() {
        let root = std::env::temp_dir().join(format!("lt-watch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join("w");
        level_files(&dir, 0, 0, 0, 1 << 20);
        let leaf = MemcgPath {
            version: CgroupVersion::V2,
            rel: "/w".into(),
            fs_path: dir.clone(),
        };
        let mut w = MemcgWatch::default();
        assert!(w.sample(0.0, [&leaf].into_iter()).is_empty());
        level_files(&dir, 7, 0, 0, 40 << 20);
        let r = w.sample(1.0, [&leaf].into_iter());
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].memcg.as_str(), r[0].high_events, r[0].max_events), ("/w", 7, 0));
        assert_eq!(r[0].psi_some_avg10, Some(5.0));
        level_files(&dir, 9, 1, 1, 60 << 20);
        assert!(
            w.sample(2.0, [&leaf].into_iter()).is_empty(),
            "within 10 s of the last report"
        );
        let r = w.sample(11.5, [&leaf].into_iter());
        assert_eq!((r[0].high_events, r[0].max_events), (2, 1));
        assert_eq!(w.oom_before("/w"), Some(1));
        let h = w.history("/w", 12.0);
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].t_secs, -12.0);
        assert_eq!(h[3].high_events, Some(9));
        // v1 leaves and levels no longer above a process are not kept.
        let v1 = MemcgPath {
            version: CgroupVersion::V1,
            ..leaf.clone()
        };
        w.sample(100.0, [&v1].into_iter());
        assert_eq!(w.len(), 0);
        let _ = fs::remove_dir_all(&root);
    }
}
