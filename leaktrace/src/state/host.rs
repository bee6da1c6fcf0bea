//! The host's memory over time (issue 14): a timeline per part of the split
//! (`analysis::host::split`), per tmpfs mount and per slab cache (both bounded in number), and
//! of used memory (MemTotal − MemAvailable) for the "MemAvailable keeps falling" clue. Fed with
//! [`HostMemObs`]; judged by `analysis::host` through the monitor core.
use std::collections::{BTreeMap, HashMap};

use super::{
    resources::Flag,
    timeline::{Timeline, TimelineConfig},
};
use crate::{
    analysis::{
        classify::Verdict,
        host::{Part, Split, split},
    },
    input::HostMemObs,
};

/// tmpfs mounts with a timeline, at most (the largest; a flagged one is kept).
pub const MAX_MOUNTS: usize = 32;
/// Slab caches with a timeline, at most.
pub const MAX_SLABS: usize = 48;

/// One part's history and judgement.
#[derive(Debug, Clone)]
pub struct PartSeries {
    pub timeline: Timeline,
    pub last: u64,
    pub verdict: Option<Verdict>,
    pub flag: Option<Flag>,
    pub last_classified_t: f64,
    /// The level when last classified (a part that has not moved is not classified again).
    pub classified_level: u64,
    /// Read at the last reading (a mount that disappeared is not).
    pub present: bool,
}

impl PartSeries {
    fn new(tl: &TimelineConfig) -> PartSeries {
        PartSeries {
            timeline: Timeline::new(tl.clone()),
            last: 0,
            verdict: None,
            flag: None,
            last_classified_t: f64::NEG_INFINITY,
            classified_level: 0,
            present: true,
        }
    }

    fn push(&mut self, t: f64, v: u64) {
        self.timeline.push(t, v);
        self.last = v;
        self.present = true;
    }
}

/// A slab cache's history.
#[derive(Debug, Clone)]
pub struct SlabSeries {
    pub timeline: Timeline,
    pub last: u64,
    pub reclaimable: bool,
}

#[derive(Debug)]
pub struct HostState {
    tl: TimelineConfig,
    /// The last split of MemTotal.
    pub split: Option<Split>,
    pub last: Option<HostMemObs>,
    pub parts: BTreeMap<Part, PartSeries>,
    pub mounts: HashMap<String, PartSeries>,
    pub slabs: HashMap<String, SlabSeries>,
    /// When slabinfo was last read (the slab timelines' last sample).
    pub slabs_t: Option<f64>,
    /// MemTotal − MemAvailable.
    pub used: PartSeries,
    /// `oom_kill` at the first reading.
    pub oom_first: Option<u64>,
    pub readings: u64,
}

impl HostState {
    pub fn new(tl: TimelineConfig) -> HostState {
        HostState {
            used: PartSeries::new(&tl),
            tl,
            split: None,
            last: None,
            parts: BTreeMap::new(),
            mounts: HashMap::new(),
            slabs: HashMap::new(),
            slabs_t: None,
            oom_first: None,
            readings: 0,
        }
    }

    /// A reading at `t`.
    pub fn observe(&mut self, h: &HostMemObs, t: f64) {
        let s = split(h);
        for (p, v) in &s.parts {
            self.parts
                .entry(*p)
                .or_insert_with(|| PartSeries::new(&self.tl))
                .push(t, *v);
        }
        for m in self.mounts.values_mut() {
            m.present = false;
        }
        for (name, v) in &s.tmpfs {
            if !self.mounts.contains_key(name) {
                if self.mounts.len() >= MAX_MOUNTS {
                    // Make room: drop the smallest unflagged mount, if it is smaller.
                    let smallest = self
                        .mounts
                        .iter()
                        .filter(|(_, m)| m.flag.is_none())
                        .min_by(|a, b| a.1.last.cmp(&b.1.last).then_with(|| b.0.cmp(a.0)))
                        .map(|(n, m)| (n.clone(), m.last));
                    match smallest {
                        Some((n, last)) if last < *v => {
                            self.mounts.remove(&n);
                        }
                        _ => continue,
                    }
                }
                self.mounts.insert(name.clone(), PartSeries::new(&self.tl));
            }
            if let Some(m) = self.mounts.get_mut(name) {
                m.push(t, *v);
            }
        }
        // A mount gone (unmounted) keeps its history only while flagged (to be cleared).
        self.mounts.retain(|_, m| m.present || m.flag.is_some());
        if let Some(slabs) = &h.slabs {
            for (name, bytes, reclaimable) in slabs {
                if !self.slabs.contains_key(name) {
                    if self.slabs.len() >= MAX_SLABS {
                        let smallest = self
                            .slabs
                            .iter()
                            .min_by(|a, b| a.1.last.cmp(&b.1.last).then_with(|| b.0.cmp(a.0)))
                            .map(|(n, s)| (n.clone(), s.last));
                        match smallest {
                            Some((n, last)) if last < *bytes => {
                                self.slabs.remove(&n);
                            }
                            _ => continue,
                        }
                    }
                    self.slabs.insert(
                        name.clone(),
                        SlabSeries {
                            timeline: Timeline::new(self.tl.clone()),
                            last: 0,
                            reclaimable: *reclaimable,
                        },
                    );
                }
                if let Some(s) = self.slabs.get_mut(name) {
                    s.timeline.push(t, *bytes);
                    s.last = *bytes;
                    s.reclaimable = *reclaimable;
                }
            }
            self.slabs_t = Some(t);
        }
        self.used.push(t, h.mem.total.saturating_sub(h.mem.available));
        if self.oom_first.is_none() {
            self.oom_first = h.oom_kills;
        }
        self.split = Some(s);
        self.last = Some(h.clone());
        self.readings += 1;
    }

    /// The unreclaimable slab cache that grew most over the last `secs` seconds (name, bytes
    /// now, growth in bytes).
    pub fn top_unreclaimable_slab(&self, secs: f64) -> Option<(String, u64, u64)> {
        let now = self.slabs_t?;
        self.slabs
            .iter()
            .filter(|(_, s)| !s.reclaimable)
            .filter_map(|(n, s)| {
                let past = s
                    .timeline
                    .samples()
                    .into_iter()
                    .find(|x| x.t_secs >= now - secs)
                    .map_or(s.last, |x| x.rss_bytes);
                let g = s.last.saturating_sub(past);
                (g > 0).then(|| (n.clone(), s.last, g))
            })
            .max_by(|a, b| a.2.cmp(&b.2).then_with(|| b.0.cmp(&a.0)))
    }

    /// The largest slab caches now (name, bytes, reclaimable), largest first.
    pub fn largest_slabs(&self, n: usize) -> Vec<(String, u64, bool)> {
        let mut v: Vec<(String, u64, bool)> = self
            .slabs
            .iter()
            .map(|(k, s)| (k.clone(), s.last, s.reclaimable))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::MemInfoObs;

    fn reading(tmpfs: Vec<(String, u64)>, slabs: Option<Vec<(String, u64, bool)>>) -> HostMemObs {
        HostMemObs {
            mem: MemInfoObs {
                total: 1 << 30,
                free: 1 << 29,
                available: 1 << 29,
                shmem: 1 << 28,
                ..MemInfoObs::default()
            },
            sock: None,
            tmpfs,
            slabs,
            oom_kills: Some(2),
        }
    }

    #[test]
    fn mounts_are_bounded_and_the_largest_kept() {
        let mut h = HostState::new(TimelineConfig::default());
        let many: Vec<(String, u64)> = (0..(MAX_MOUNTS as u64 + 10))
            .map(|i| (format!("/m{i}"), (i + 1) << 20))
            .collect();
        h.observe(&reading(many.clone(), None), 0.0);
        h.observe(&reading(many, None), 1.0);
        assert_eq!(h.mounts.len(), MAX_MOUNTS);
        assert!(h.mounts.contains_key(&format!("/m{}", MAX_MOUNTS + 9)));
        assert!(!h.mounts.contains_key("/m0"));
        // Unmounted: gone.
        h.observe(&reading(vec![("/m41".into(), 1)], None), 2.0);
        assert_eq!(h.mounts.len(), 1);
        assert_eq!(h.parts.len(), Part::ALL.len());
        assert_eq!(h.oom_first, Some(2));
    }

    #[test]
    fn the_growing_unreclaimable_slab_is_named() {
        let mut h = HostState::new(TimelineConfig::default());
        for i in 0..10u64 {
            let slabs = vec![
                ("kmalloc-1k".to_string(), (1 << 20) + i * (256 << 10), false),
                ("dentry".to_string(), (8 << 20) + i * (1 << 20), true),
                ("idle".to_string(), 4 << 20, false),
            ];
            h.observe(&reading(vec![], Some(slabs)), i as f64);
        }
        let (name, now, g) = h.top_unreclaimable_slab(60.0).unwrap();
        assert_eq!(name, "kmalloc-1k");
        assert_eq!(now, (1 << 20) + 9 * (256 << 10));
        assert_eq!(g, 9 * (256 << 10));
        assert_eq!(h.largest_slabs(1)[0].0, "dentry");
    }
}
