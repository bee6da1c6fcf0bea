//! A bounded per-process footprint timeline: recent samples at full resolution, older ones folded
//! into coarse buckets that keep the floor (minimum), which is what leak detection judges.
use std::collections::VecDeque;

use crate::analysis::classify::Sample;

#[derive(Debug, Clone)]
pub struct TimelineConfig {
    pub full_res: usize,
    pub coarse_factor: usize,
    pub coarse_cap: usize,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        Self { full_res: 600, coarse_factor: 10, coarse_cap: 360 }
    }
}

const PAGE: u64 = 4096;

/// 8 bytes a sample: time as f32 seconds since the first sample, footprint in pages.
#[derive(Debug, Clone, Copy)]
struct Packed {
    t: f32,
    pages: u32,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    cfg: TimelineConfig,
    t0: Option<f64>,
    full: VecDeque<Packed>,
    /// Folded buckets (minimum of each), and the bucket being filled.
    coarse: VecDeque<Packed>,
    pending: Vec<Packed>,
    peak_pages: u32,
}

fn pages(bytes: u64) -> u32 {
    (bytes.div_ceil(PAGE)).min(u32::MAX as u64) as u32
}

impl Timeline {
    pub fn new(cfg: TimelineConfig) -> Self {
        let cfg = TimelineConfig { full_res: cfg.full_res.max(1), coarse_factor: cfg.coarse_factor.max(1), coarse_cap: cfg.coarse_cap };
        Self { cfg, t0: None, full: VecDeque::new(), coarse: VecDeque::new(), pending: Vec::new(), peak_pages: 0 }
    }

    pub fn push(&mut self, t_secs: f64, rss_bytes: u64) {
        let t0 = *self.t0.get_or_insert(t_secs);
        let p = Packed { t: (t_secs - t0) as f32, pages: pages(rss_bytes) };
        self.peak_pages = self.peak_pages.max(p.pages);
        self.full.push_back(p);
        while self.full.len() > self.cfg.full_res {
            let old = self.full.pop_front().expect("non-empty");
            self.pending.push(old);
            if self.pending.len() >= self.cfg.coarse_factor {
                let min = self.pending.iter().map(|x| x.pages).min().unwrap_or(0);
                let t = self.pending.iter().map(|x| x.t).sum::<f32>() / self.pending.len() as f32;
                self.pending.clear();
                if self.cfg.coarse_cap > 0 {
                    self.coarse.push_back(Packed { t, pages: min });
                    while self.coarse.len() > self.cfg.coarse_cap {
                        self.coarse.pop_front();
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.coarse.len() + self.pending.len() + self.full.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn unpack(&self, p: Packed) -> Sample {
        Sample { t_secs: self.t0.unwrap_or(0.0) + p.t as f64, rss_bytes: p.pages as u64 * PAGE }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.coarse.iter().chain(self.pending.iter()).chain(self.full.iter()).map(|p| self.unpack(*p)).collect()
    }

    pub fn recent(&self, window_secs: f64) -> Vec<Sample> {
        let Some(last) = self.last() else { return Vec::new() };
        self.samples().into_iter().filter(|s| s.t_secs >= last.t_secs - window_secs).collect()
    }

    pub fn first(&self) -> Option<Sample> {
        self.coarse.front().or(self.pending.first()).or(self.full.front()).map(|p| self.unpack(*p))
    }

    pub fn last(&self) -> Option<Sample> {
        self.full.back().map(|p| self.unpack(*p))
    }

    pub fn peak_bytes(&self) -> u64 {
        self.peak_pages as u64 * PAGE
    }

    pub fn heap_bytes(&self) -> usize {
        (self.full.capacity() + self.coarse.capacity() + self.pending.capacity()) * std::mem::size_of::<Packed>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_ordered_and_keeps_floor() {
        let mut tl = Timeline::new(TimelineConfig { full_res: 10, coarse_factor: 5, coarse_cap: 3 });
        for i in 0..100u64 {
            // sawtooth: floor at 100 pages every 5th sample
            let v = if i % 5 == 0 { 100 } else { 200 + i } * PAGE;
            tl.push(i as f64, v);
        }
        assert!(tl.len() <= 10 + 3 + 5);
        let s = tl.samples();
        assert!(s.windows(2).all(|w| w[0].t_secs <= w[1].t_secs));
        // Coarse buckets keep the minimum of what they folded.
        assert!(s.iter().take(3).all(|x| x.rss_bytes == 100 * PAGE));
        assert_eq!(tl.peak_bytes(), 299 * PAGE);
        assert_eq!(tl.last().unwrap().t_secs, 99.0);
        assert_eq!(tl.recent(3.0).len(), 4);
    }

    #[test]
    fn empty() {
        let tl = Timeline::new(TimelineConfig::default());
        assert!(tl.is_empty() && tl.samples().is_empty() && tl.first().is_none() && tl.recent(5.0).is_empty());
    }
}
