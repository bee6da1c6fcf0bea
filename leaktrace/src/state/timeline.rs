//! Bounded per-process RSS timeline.
//!
//! Each sample is the footprint at the end of an interval and its *low*: the
//! lowest footprint during the interval when the kernel knows it (else the
//! same value). The newest `full_res` samples are kept as they are. Older
//! samples are folded, `coarse_factor` at a time, into coarse buckets that
//! keep the minimum (the floor is what leak detection looks at) and the mean
//! time; at most `coarse_cap` buckets are kept.
//!
//! Storage: times are milliseconds (u32) from a base time, bytes are in 4 KiB
//! units (u32, saturating at 16 TiB): 12 bytes per full-resolution sample and
//! 8 bytes per bucket, i.e. about 10 KiB for a full timeline with the
//! defaults (600 s at 1 s + 1 h of 10 s buckets).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::analysis::classify::Sample;

/// Unit of stored RSS values.
const UNIT: u64 = 4096;

/// Offsets beyond this many ms trigger a rebase (u32::MAX ms ≈ 49.7 days).
const MAX_OFFSET_MS: f64 = u32::MAX as f64;

/// Sizes of a [`Timeline`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimelineConfig {
    /// Newest samples kept at full resolution (at least 1).
    pub full_res: usize,
    /// Samples folded into one coarse bucket (at least 1).
    pub coarse_factor: usize,
    /// Coarse buckets kept (0 = older samples are dropped).
    pub coarse_cap: usize,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig {
            full_res: 600,
            coarse_factor: 10,
            coarse_cap: 360,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Point {
    ms: u32,
    units: u32,
    /// The interval's low (≤ `units`).
    low: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Mean time of the folded samples.
    ms: u32,
    min: u32,
}

/// Bucket being filled.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    n: u32,
    first_ms: u32,
    sum_ms: u64,
    min: u32,
}

impl Pending {
    fn bucket(&self) -> Option<Bucket> {
        (self.n > 0).then(|| Bucket {
            ms: u32::try_from(self.sum_ms / u64::from(self.n)).unwrap_or(u32::MAX),
            min: self.min,
        })
    }
}

/// Bounded RSS history of one process. See the module documentation.
#[derive(Debug, Clone)]
pub struct Timeline {
    cfg: TimelineConfig,
    /// Seconds; stored times are `base + ms / 1000`.
    base: f64,
    last_t: Option<f64>,
    full: VecDeque<Point>,
    pending: Pending,
    coarse: VecDeque<Bucket>,
}

impl Timeline {
    pub fn new(cfg: TimelineConfig) -> Self {
        let cfg = TimelineConfig {
            full_res: cfg.full_res.max(1),
            coarse_factor: cfg.coarse_factor.clamp(1, u32::MAX as usize),
            coarse_cap: cfg.coarse_cap,
        };
        Timeline {
            cfg,
            base: 0.0,
            last_t: None,
            full: VecDeque::new(),
            pending: Pending::default(),
            coarse: VecDeque::new(),
        }
    }

    /// The most samples a timeline with `cfg` holds: samples pushed longer ago than this many
    /// pushes have left it.
    pub fn retention(cfg: &TimelineConfig) -> usize {
        let factor = cfg.coarse_factor.max(1);
        cfg.full_res.max(1) + factor * cfg.coarse_cap + (factor - 1)
    }

    /// Append a sample whose low is not known (the same value).
    pub fn push(&mut self, t_secs: f64, rss_bytes: u64) {
        self.push_low(t_secs, rss_bytes, rss_bytes);
    }

    /// Append a sample: the value at the end of the interval and the lowest value during it.
    /// Samples must come in time order: a time earlier than the previous one is taken as equal
    /// to it; a non-finite time is ignored. Times are kept to the millisecond.
    pub fn push_low(&mut self, t_secs: f64, rss_bytes: u64, low_bytes: u64) {
        if !t_secs.is_finite() {
            return;
        }
        let t = match self.last_t {
            Some(last) => t_secs.max(last),
            None => {
                self.base = t_secs;
                t_secs
            }
        };
        let ms = self.offset_ms(t);
        let to_units = |b: u64| u32::try_from(b.saturating_add(UNIT / 2) / UNIT).unwrap_or(u32::MAX);
        let units = to_units(rss_bytes);
        let low = to_units(low_bytes).min(units);

        if self.full.len() >= self.cfg.full_res
            && let Some(old) = self.full.pop_front()
        {
            self.fold(old);
        }
        grow_bounded(&mut self.full, self.cfg.full_res);
        self.full.push_back(Point { ms, units, low });
        self.last_t = Some(t);
    }

    /// Number of samples [`samples`](Self::samples) returns.
    pub fn len(&self) -> usize {
        self.coarse.len() + usize::from(self.pending.n > 0) + self.full.len()
    }

    /// The whole timeline, oldest first: coarse buckets (mean time, minimum
    /// RSS), the bucket being filled, then full-resolution samples.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.coarse.iter().map(|b| self.bucket_sample(b)));
        out.extend(self.pending.bucket().map(|b| self.bucket_sample(&b)));
        out.extend(self.full.iter().map(|p| self.point_sample(p)));
        out
    }

    /// Like [`samples`](Self::samples), each sample's low instead of its end value: the series
    /// the floor is judged on.
    pub fn lows(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.coarse.iter().map(|b| self.bucket_sample(b)));
        out.extend(self.pending.bucket().map(|b| self.bucket_sample(&b)));
        out.extend(self.full.iter().map(|p| Sample {
            t_secs: self.time(p.ms),
            rss_bytes: u64::from(p.low) * UNIT,
        }));
        out
    }

    /// Newest sample.
    pub fn last(&self) -> Option<Sample> {
        self.full.back().map(|p| self.point_sample(p))
    }

    fn time(&self, ms: u32) -> f64 {
        self.base + f64::from(ms) / 1000.0
    }

    fn point_sample(&self, p: &Point) -> Sample {
        Sample {
            t_secs: self.time(p.ms),
            rss_bytes: u64::from(p.units) * UNIT,
        }
    }

    fn bucket_sample(&self, b: &Bucket) -> Sample {
        Sample {
            t_secs: self.time(b.ms),
            rss_bytes: u64::from(b.min) * UNIT,
        }
    }

    /// Offset of `t` from the base in ms, rebasing when it does not fit.
    fn offset_ms(&mut self, t: f64) -> u32 {
        let mut off = ((t - self.base) * 1000.0).round();
        if off > MAX_OFFSET_MS {
            self.rebase(off);
            off = ((t - self.base) * 1000.0).round();
        }
        off.clamp(0.0, MAX_OFFSET_MS) as u32
    }

    /// Move the base forward so that offset `off` (ms) fits: to the oldest
    /// retained time, or further if the gap is longer than ~49 days (then
    /// the oldest times are squashed onto the new base; order is kept).
    fn rebase(&mut self, off: f64) {
        let oldest = self
            .coarse
            .front()
            .map(|b| b.ms)
            .or_else(|| (self.pending.n > 0).then_some(self.pending.first_ms))
            .or_else(|| self.full.front().map(|p| p.ms))
            .unwrap_or(0);
        let need = (off - MAX_OFFSET_MS).max(0.0);
        let shift = need.max(f64::from(oldest)).min(1e18) as u64;
        if shift == 0 {
            return;
        }
        let s32 = u32::try_from(shift).unwrap_or(u32::MAX);
        for b in &mut self.coarse {
            b.ms = b.ms.saturating_sub(s32);
        }
        let pd = &mut self.pending;
        pd.sum_ms = pd.sum_ms.saturating_sub(shift.saturating_mul(u64::from(pd.n)));
        pd.first_ms = pd.first_ms.saturating_sub(s32);
        for p in &mut self.full {
            p.ms = p.ms.saturating_sub(s32);
        }
        self.base += shift as f64 / 1000.0;
    }

    /// Fold a sample that left the full-resolution ring into the coarse ring.
    fn fold(&mut self, p: Point) {
        let pd = &mut self.pending;
        if pd.n == 0 {
            pd.first_ms = p.ms;
            pd.min = p.low;
        } else {
            pd.min = pd.min.min(p.low);
        }
        pd.n += 1;
        pd.sum_ms += u64::from(p.ms);
        if pd.n as usize >= self.cfg.coarse_factor {
            let b = pd.bucket();
            *pd = Pending::default();
            if let Some(b) = b {
                if self.cfg.coarse_cap == 0 {
                    return;
                }
                if self.coarse.len() >= self.cfg.coarse_cap {
                    self.coarse.pop_front();
                }
                grow_bounded(&mut self.coarse, self.cfg.coarse_cap);
                self.coarse.push_back(b);
            }
        }
    }
}

/// Before pushing onto a full deque, grow its capacity geometrically but
/// never beyond `cap` elements, so a full ring holds exactly `cap`.
fn grow_bounded<T>(q: &mut VecDeque<T>, cap: usize) {
    if q.len() == q.capacity() {
        let room = cap.saturating_sub(q.len());
        let extra = q.capacity().clamp(4, 1 << 20).min(room).max(1);
        q.reserve_exact(extra);
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;
    use crate::analysis::classify::{ClassifierConfig, Pattern, classify};

    const MIB: u64 = 1 << 20;

    fn small() -> TimelineConfig {
        TimelineConfig {
            full_res: 5,
            coarse_factor: 3,
            coarse_cap: 4,
        }
    }

    fn assert_ordered(s: &[Sample]) {
        for w in s.windows(2) {
            assert!(w[0].t_secs <= w[1].t_secs, "{:?} then {:?}", w[0], w[1]);
        }
    }

    /// Heap memory held by the sample buffers, bytes.
    fn heap_bytes(t: &Timeline) -> usize {
        t.full.capacity() * size_of::<Point>() + t.coarse.capacity() * size_of::<Bucket>()
    }

    #[test]
    fn empty() {
        let t = Timeline::new(TimelineConfig::default());
        assert_eq!(t.len(), 0);
        assert_eq!(t.samples(), vec![]);
        assert_eq!(t.lows(), vec![]);
        assert_eq!(t.last(), None);
        assert_eq!(heap_bytes(&t), 0);
    }

    #[test]
    fn lows_are_the_floor_series() {
        let mut t = Timeline::new(small());
        for i in 0..8u64 {
            // End values swing by 40 MiB; the lows (troughs within each interval) stay at 10.
            t.push_low(i as f64, (10 + 40 * (i % 2)) * MIB, 10 * MIB);
        }
        t.push(8.0, 12 * MIB);
        let (s, l) = (t.samples(), t.lows());
        assert_eq!(s.len(), l.len());
        assert!(l.iter().all(|x| x.rss_bytes <= 12 * MIB), "{l:?}");
        assert_eq!(s.last().unwrap().rss_bytes, 12 * MIB);
        assert_eq!(s[s.len() - 2].rss_bytes, 50 * MIB);
        // A low above the value is taken as the value.
        t.push_low(9.0, MIB, 5 * MIB);
        assert_eq!(t.lows().last().unwrap().rss_bytes, MIB);
    }

    #[test]
    fn keeps_full_resolution_then_folds() {
        let mut t = Timeline::new(small());
        for i in 0..5u64 {
            t.push(100.0 + i as f64, (i + 1) * MIB);
        }
        assert_eq!(t.len(), 5);
        let s = t.samples();
        assert_eq!(
            s[0],
            Sample {
                t_secs: 100.0,
                rss_bytes: MIB
            }
        );
        assert_eq!(
            s[4],
            Sample {
                t_secs: 104.0,
                rss_bytes: 5 * MIB
            }
        );
        // Sixth sample: the first one moves to the pending bucket.
        t.push(105.0, 6 * MIB);
        assert_eq!(t.len(), 6);
        assert_eq!(
            t.samples().first().copied(),
            Some(Sample {
                t_secs: 100.0,
                rss_bytes: MIB
            })
        );
        // Two more: pending bucket of 3 (t 100, 101, 102) is emitted.
        t.push(106.0, 7 * MIB);
        t.push(107.0, 8 * MIB);
        let s = t.samples();
        assert_eq!(s.len(), 6);
        assert_eq!(
            s[0],
            Sample {
                t_secs: 101.0,
                rss_bytes: MIB
            }
        );
        assert_eq!(s[1].t_secs, 103.0);
        assert_ordered(&s);
    }

    #[test]
    fn bounded_and_ordered() {
        let cfg = small();
        let mut t = Timeline::new(cfg.clone());
        for i in 0..10_000u64 {
            t.push(i as f64 * 0.5, (i % 97) * MIB);
            assert!(t.len() <= cfg.full_res + cfg.coarse_cap + 1);
        }
        assert_eq!(t.len(), 5 + 4 + 1);
        let s = t.samples();
        assert_eq!(s.len(), t.len());
        assert_ordered(&s);
        assert_eq!(t.last().unwrap().t_secs, 9999.0 * 0.5);
        assert_eq!(heap_bytes(&t), 5 * 12 + 4 * 8);
    }

    #[test]
    fn memory_budget_for_1000_processes() {
        let mut t = Timeline::new(TimelineConfig::default());
        for i in 0..20_005u64 {
            t.push(i as f64, (100 + i % 7) * MIB);
        }
        assert_eq!(t.len(), 600 + 360 + 1);
        let per = heap_bytes(&t) + size_of::<Timeline>();
        assert!(heap_bytes(&t) <= 600 * 12 + 360 * 8, "{}", heap_bytes(&t));
        assert!(per * 1000 < 10 * 1024 * 1024, "{per} bytes per process");
        // A short-lived process does not pay for a full ring.
        let mut short = Timeline::new(TimelineConfig::default());
        for i in 0..10 {
            short.push(i as f64, MIB);
        }
        assert!(heap_bytes(&short) <= 16 * 12, "{}", heap_bytes(&short));
    }

    #[test]
    fn downsampling_keeps_the_floor() {
        let mut t = Timeline::new(small());
        // A one-sample dip to 1 MiB among 50 MiB samples, then many more.
        for i in 0..12u64 {
            let rss = if i == 4 { MIB } else { 50 * MIB + i * 4096 };
            t.push(i as f64, rss);
        }
        // Samples 0..=6 have left the full ring: buckets {0,1,2} {3,4,5}, pending {6}.
        let s = t.samples();
        assert_eq!(s[1].rss_bytes, MIB, "{s:?}");
        assert_eq!(s[1].t_secs, 4.0); // mean of 3, 4, 5
        assert_eq!(s[0].rss_bytes, 50 * MIB);
    }

    #[test]
    fn odd_inputs() {
        let mut t = Timeline::new(TimelineConfig {
            full_res: 0,
            coarse_factor: 0,
            coarse_cap: 0,
        });
        t.push(f64::NAN, 1);
        t.push(f64::INFINITY, 1);
        assert_eq!(t.len(), 0);
        t.push(10.0, u64::MAX);
        t.push(5.0, 0); // out of order: kept at t = 10
        assert_eq!(t.len(), 1); // full_res 1, coarse disabled
        assert_eq!(
            t.last(),
            Some(Sample {
                t_secs: 10.0,
                rss_bytes: 0
            })
        );
        let mut t = Timeline::new(TimelineConfig {
            full_res: 2,
            coarse_factor: 1,
            coarse_cap: 3,
        });
        t.push(1.0, u64::MAX);
        assert_eq!(t.last().unwrap().rss_bytes, u64::from(u32::MAX) * 4096);
        for i in 2..10 {
            t.push(i as f64, 4096 * i);
        }
        assert_eq!(t.len(), 5);
        assert_ordered(&t.samples());
        // Rounding to 4 KiB units.
        t.push(11.0, 6000);
        assert_eq!(t.last().unwrap().rss_bytes, 4096);
    }

    #[test]
    fn rebase_after_50_days() {
        let mut t = Timeline::new(small());
        let day = 86_400.0;
        for i in 0..10 {
            t.push(1e6 + i as f64, MIB);
        }
        for i in 0..20 {
            t.push(1e6 + 50.0 * day + i as f64, 2 * MIB);
        }
        let s = t.samples();
        assert_ordered(&s);
        let last = t.last().unwrap();
        assert!((last.t_secs - (1e6 + 50.0 * day + 19.0)).abs() < 1e-3, "{last:?}");
        let recent = s.iter().filter(|x| x.t_secs >= last.t_secs - 3.0).count();
        assert_eq!(recent, 4);
        // Even a 200-day gap keeps order (older times are squashed).
        t.push(1e6 + 250.0 * day, 3 * MIB);
        assert_ordered(&t.samples());
        assert!((t.last().unwrap().t_secs - (1e6 + 250.0 * day)).abs() < 1e-3);
    }

    #[test]
    fn classifies_a_long_leak_through_the_timeline() {
        // 90 minutes at 20 KiB/s: only the last 10 min are full resolution.
        let mut t = Timeline::new(TimelineConfig::default());
        for i in 0..5400u64 {
            let jitter = (i * 2_654_435_761) % 17 * 4096;
            t.push(50_000.0 + i as f64, 30 * MIB + i * 20 * 1024 + jitter);
        }
        let s = t.samples();
        assert_ordered(&s);
        let v = classify(&s, &ClassifierConfig::default());
        assert_eq!(v.pattern, Pattern::Mountain, "{v:?}");
        assert!(v.leak);
        assert!((v.growth_bytes_per_sec / 20480.0 - 1.0).abs() < 0.1, "{v:?}");
        assert!(v.span_secs > 3500.0);
    }

    #[test]
    fn classifies_a_long_tide_through_the_timeline() {
        let mut t = Timeline::new(TimelineConfig::default());
        let cfg = ClassifierConfig::default();
        for i in 0..5400u64 {
            let rss = if i % 4 < 2 { 100 * MIB } else { 2 * MIB + (i % 3) * 4096 };
            t.push(i as f64, rss);
            if i % 97 == 0 {
                assert!(!classify(&t.samples(), &cfg).leak, "at {i}");
            }
        }
        let v = classify(&t.samples(), &cfg);
        assert_eq!(v.pattern, Pattern::Tidal, "{v:?}");
    }
}
