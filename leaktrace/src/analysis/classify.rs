//! Memory-growth pattern classifier.
//!
//! Input: one RSS sample per interval for one process (time ordered, gaps
//! allowed). Output: a [`Verdict`] telling whether the memory of the process
//! is `flat`, `tidal` (rises and falls, floor does not trend), `plateau`
//! (grew, then stopped) or `mountain` (the floor keeps rising: a leak).
//!
//! Method (see `docs/classifier.md` for the reasoning):
//!
//! 1. **Swings.** A zig-zag filter with a threshold `D` of
//!    `max(min_swing_bytes, swing_relative * median RSS)` counts confirmed
//!    falls (tides).
//! 2. **Floor.** Windows of width `W` are laid back from the newest sample
//!    with a stride of `W / 2`; the minimum sample of each window is a floor
//!    point. Memory that is given back (tides, GC cycles) never reaches the
//!    floor, memory that is kept does. `W` is the smallest window (from
//!    `floor_window_min_secs` up, ×1.25 per step, at most
//!    `floor_window_max_secs`) for which the floor has no spike (a point
//!    more than `D` above both an earlier and a later floor point), i.e. every
//!    window reached a trough; plus one step of margin.
//! 3. **Trend of the floor**, on several horizons ending now (the whole series,
//!    then its last half, quarter, ... down to `min_span_secs`): Theil–Sen
//!    slope (robust rate), one-sided Mann–Kendall test (significance),
//!    observed floor growth, how many equivalent steps it came in, and two
//!    deceleration tests: the slope of the recent floor against the
//!    horizon's, and whether the raw samples of the last stretch stayed
//!    within one swing although the rate says they should have grown by two.
//!    A horizon that is still growing is a mountain candidate.
//! 4. **Confidence** of a mountain is the weakest of its pieces of evidence,
//!    each mapped by `1 - 0.2 * threshold / value` (or `1 - 0.2 * p / alpha`),
//!    so a piece of evidence scores exactly 0.8 when it just meets its
//!    configured minimum and tends to 1 as it exceeds it. With the default
//!    `leak_confidence` of 0.8 a leak is flagged exactly when every minimum
//!    (span, samples, total growth, relative growth, rate, steps,
//!    significance) is met. A mountain below 0.5 is not reported as one.
//! 5. Otherwise: `plateau` if the floor rose by at least the growth minimums
//!    and is no longer rising, `tidal` if memory fell by a swing at least
//!    twice (or once and rose again), else `flat`.
//!
//! Cost: O(n log n + m² log m) with m ≤ `max_floor_points`; about 0.1 ms in
//! a release build for a full default timeline (961 samples).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One RSS observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds on a monotonic clock (any origin).
    pub t_secs: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Shape of the memory curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// No meaningful change.
    Flat,
    /// Rises and falls; the floor does not trend up.
    Tidal,
    /// Grew, then stopped growing.
    Plateau,
    /// The floor keeps rising: a leak candidate.
    Mountain,
}

impl Pattern {
    /// Lower-case name, as used by `Display`, `FromStr` and serde.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Flat => "flat",
            Pattern::Tidal => "tidal",
            Pattern::Plateau => "plateau",
            Pattern::Mountain => "mountain",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown pattern name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePatternError(pub String);

impl fmt::Display for ParsePatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown pattern {:?} (expected flat, tidal, plateau or mountain)",
            self.0
        )
    }
}

impl std::error::Error for ParsePatternError {}

impl FromStr for Pattern {
    type Err = ParsePatternError;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flat" => Ok(Pattern::Flat),
            "tidal" => Ok(Pattern::Tidal),
            "plateau" => Ok(Pattern::Plateau),
            "mountain" => Ok(Pattern::Mountain),
            _ => Err(ParsePatternError(s.to_string())),
        }
    }
}

/// Result of [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Verdict {
    pub pattern: Pattern,
    /// `pattern == Mountain && confidence >= cfg.leak_confidence`.
    pub leak: bool,
    /// Confidence in `pattern`, in `[0, 1]`. For `Mountain` it is the leak
    /// confidence; 0.8 means "every configured minimum is just met".
    pub confidence: f64,
    /// Theil–Sen slope of the memory floor, bytes per second:
    /// * `Mountain`: the leak rate over the horizon that gave the verdict
    ///   (while the series is too short for a floor, the Theil–Sen slope of
    ///   the raw samples, with confidence 0);
    /// * `Plateau`: the slope of the most recent third of the floor (≈ 0);
    /// * `Flat`, `Tidal`: the slope of the floor over the whole series (≈ 0,
    ///   may be slightly negative);
    /// * 0 when there are too few samples to fit a slope.
    ///
    /// Only the `Mountain` value is meant to feed a time-to-limit estimate.
    pub growth_bytes_per_sec: f64,
    /// Number of samples analysed.
    pub samples: usize,
    /// Time from the first to the last sample, seconds.
    pub span_secs: f64,
    /// The longest horizon (seconds, ending now) over which the floor is still growing with
    /// leak-level confidence; 0 when none is. How long the leak evidence has been building.
    pub growth_secs: f64,
    /// Floor growth over that horizon, bytes.
    pub floor_growth_bytes: f64,
    /// On that horizon, the floor's slope over its last third (by time, however long the waits
    /// between steps) over the horizon's slope: ≈ 1 for steady growth, → 0 for a warm-up
    /// levelling off.
    pub recent_ratio: f64,
    /// Falls of at least one swing seen over the whole series (collections, tides).
    pub falls: usize,
    /// Major falls: those of at least a quarter of the series' whole range (a major
    /// collection of a garbage-collected heap, not a young generation's scavenge).
    pub major_falls: usize,
    /// Slope of the bottoms of the major falls, B/s (see `Swings`).
    pub major_trough_slope: f64,
}

/// Tuning of [`classify`]. Every field has a sensible default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierConfig {
    /// Minimum mountain confidence for `leak = true`.
    pub leak_confidence: f64,
    /// Minimum number of samples in the analysed horizon.
    pub min_samples: usize,
    /// Minimum time span of the analysed horizon, seconds. A monotone ramp
    /// shorter than this (e.g. the first allocation burst of a tidal
    /// process, or a GC cycle's rise) is never a leak.
    pub min_span_secs: f64,
    /// Minimum floor growth rate for a leak, bytes per second.
    pub min_growth_bytes_per_sec: f64,
    /// Minimum observed floor growth for a leak, bytes.
    pub min_total_growth_bytes: u64,
    /// Minimum observed floor growth relative to the floor level at the
    /// start of the horizon (0.05 = 5 %).
    pub min_relative_growth: f64,
    /// One-sided Mann–Kendall significance level for the floor trend.
    pub significance: f64,
    /// Smallest floor window, seconds.
    pub floor_window_min_secs: f64,
    /// Largest floor window derived from the observed cycle length, seconds.
    pub floor_window_max_secs: f64,
    /// Smallest rise or fall that counts as a swing, bytes.
    pub min_swing_bytes: u64,
    /// Smallest swing relative to the median RSS.
    pub swing_relative: f64,
    /// Growth is "still going" when the recent floor slope is at least this
    /// fraction of the slope over the horizon (and at least
    /// `min_growth_bytes_per_sec`); otherwise it decelerated (plateau).
    pub decel_ratio: f64,
    /// The floor growth must be spread over at least this many equivalent
    /// steps (observed growth / largest rise between consecutive floor
    /// points). One jump is a step up (plateau onset) or the unconfirmed high
    /// phase of a tide, not yet a leak.
    pub min_floor_steps: f64,
    /// Time after the first sample ignored when measuring a plateau's rise
    /// (process start-up: loader, interpreter, libraries).
    pub startup_grace_secs: f64,
    /// Upper bound on floor points (bounds the O(m²) statistics).
    pub max_floor_points: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            leak_confidence: 0.8,
            min_samples: 10,
            min_span_secs: 15.0,
            min_growth_bytes_per_sec: 16.0 * 1024.0,
            min_total_growth_bytes: 4 * 1024 * 1024,
            min_relative_growth: 0.05,
            significance: 0.01,
            floor_window_min_secs: 4.0,
            floor_window_max_secs: 300.0,
            min_swing_bytes: 1024 * 1024,
            swing_relative: 0.02,
            decel_ratio: 0.25,
            min_floor_steps: 3.0,
            startup_grace_secs: 2.0,
            max_floor_points: 128,
        }
    }
}

/// A point of the series: (seconds since the first sample, bytes).
type Pt = (f64, f64);

thread_local! {
    /// When set, each horizon's evidence is written here (see [`explain`]).
    static EXPLAIN: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// [`classify`], and one line per horizon on the evidence it weighed (`analyze --explain`).
pub fn explain(samples: &[Sample], cfg: &ClassifierConfig) -> (Verdict, Vec<String>) {
    EXPLAIN.with(|e| *e.borrow_mut() = Some(Vec::new()));
    let v = classify(samples, cfg);
    let lines = EXPLAIN.with(|e| e.borrow_mut().take()).unwrap_or_default();
    (v, lines)
}

fn note(f: impl FnOnce() -> String) {
    EXPLAIN.with(|e| {
        if let Some(v) = e.borrow_mut().as_mut() {
            v.push(f());
        }
    });
}

/// Classify one process's RSS series. Never panics; O(n + m² log m) with
/// `m <= max_floor_points`.
pub fn classify(samples: &[Sample], cfg: &ClassifierConfig) -> Verdict {
    let pts = prepare(samples);
    let n = pts.len();
    let span = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    let insufficient = Verdict {
        pattern: Pattern::Flat,
        leak: false,
        confidence: 0.0,
        growth_bytes_per_sec: 0.0,
        samples: n,
        span_secs: span,
        growth_secs: 0.0,
        floor_growth_bytes: 0.0,
        recent_ratio: 0.0,
        falls: 0,
        major_falls: 0,
        major_trough_slope: 0.0,
    };
    if n < 3 || span.is_nan() || span <= 0.0 {
        return insufficient;
    }
    let p = Params::new(cfg);

    // 1. Swings and cycle length.
    let median_y = {
        let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
        median(&mut ys)
    };
    let swing = p.min_swing.max(p.swing_rel * median_y);
    let sw = swings(&pts, swing);

    // 2. Floor.
    let (w, floor) = choose_floor(&pts, span, swing, &p);

    // 3. Trend on horizons ending now.
    let full = eval_horizon(&pts, &floor, span, &Shape { w, swing }, &p);
    let mut best: Option<TrendEval> = full.filter(|e| e.still_growing);
    // The longest horizon still growing with leak-level confidence: (seconds, growth).
    let mut longest = full
        .filter(|e| e.still_growing && e.conf >= p.leak_conf)
        .map(|e| (span, e.growth, e.third_slope / e.slope));
    let mut h = span / 2.0;
    let mut guard = 0;
    while h >= p.min_span && guard < 16 {
        if let Some(e) = eval_horizon(&pts, &floor, h, &Shape { w, swing }, &p)
            && e.still_growing
        {
            if best.is_none_or(|b| e.conf > b.conf) {
                best = Some(e);
            }
            if longest.is_none() && e.conf >= p.leak_conf {
                longest = Some((h, e.growth, e.third_slope / e.slope));
            }
        }
        h /= 2.0;
        guard += 1;
    }

    let mountain_label = p.leak_conf.min(0.5);
    if let Some(e) = best.filter(|e| e.conf >= mountain_label) {
        let mut v = verdict(Pattern::Mountain, e.conf, e.slope, n, span, p.leak_conf);
        if let Some((secs, growth, ratio)) = longest {
            v.growth_secs = secs;
            v.floor_growth_bytes = growth;
            v.recent_ratio = if ratio.is_finite() { ratio } else { 0.0 };
        }
        v.falls = sw.falls;
        v.major_falls = sw.major_falls;
        v.major_trough_slope = sw.major_trough_slope;
        return v;
    }

    // 4. Plateau: the floor rose enough and is no longer rising.
    // The rise is measured from the floor after the start-up grace, in a
    // window that ends before the last one starts; short series skip the
    // grace.
    let grace = if span >= p.grace + 2.0 * w { p.grace } else { 0.0 };
    let early_end = (grace + w).min(span - w).max(grace);
    let early = window_min(&pts, grace, early_end)
        .or_else(|| pts.iter().find(|q| q.0 >= grace).map(|q| q.1))
        .unwrap_or(pts[0].1);
    let last = window_min(&pts, span - w, span).unwrap_or(pts[n - 1].1);
    let rise = last - early;
    let rise_ok = rise >= p.min_total && rise > 0.0 && rise >= p.min_rel * early.max(1.0);
    let full_slope = full.map_or(0.0, |e| e.slope);
    let tidal = sw.falls >= 2 || (sw.falls >= 1 && sw.cycle_complete);
    let tidal_conf = ramp(span, p.min_span).min(ramp(sw.falls as f64, 2.0));

    // Swings as large as the rise (e.g. a tide whose last trough fell
    // between samples) make it a tide, not a step.
    if rise_ok && !(tidal && sw.median_fall * 2.0 > rise) {
        match full {
            Some(e) if e.still_growing => {
                // Rising, but not (yet) convincing: a low-confidence mountain.
                let e = best.unwrap_or(e);
                return verdict(Pattern::Mountain, e.conf, e.slope, n, span, p.leak_conf);
            }
            Some(_) => {}
            None => {
                // Too short for a floor trend: rising if the raw slope is
                // positive and the last window still moved by a swing.
                let slope = theil_sen(&pts).map_or(0.0, |r| r.0);
                let moved = window_max(&pts, span - w, span) - last >= swing;
                return if slope > 0.0 && moved {
                    verdict(Pattern::Mountain, 0.0, slope, n, span, p.leak_conf)
                } else {
                    verdict(Pattern::Flat, 0.0, 0.0, n, span, p.leak_conf)
                };
            }
        }
        let tol = swing.max(0.1 * rise);
        let mut t_reach = span;
        for q in floor.iter().rev() {
            if q.1 >= last - tol {
                t_reach = q.0;
            } else {
                break;
            }
        }
        let hold = span - t_reach;
        let c = ramp(rise, p.min_total).min(ramp(hold, p.min_span));
        let s = full.map_or(0.0, |e| e.recent_slope);
        return verdict(Pattern::Plateau, c, s, n, span, p.leak_conf);
    }
    if tidal {
        return verdict(Pattern::Tidal, tidal_conf, full_slope, n, span, p.leak_conf);
    }
    let c = ramp(span, p.min_span).min(ramp(n as f64, p.min_samples));
    verdict(Pattern::Flat, c, full_slope, n, span, p.leak_conf)
}

fn verdict(pattern: Pattern, confidence: f64, growth: f64, samples: usize, span: f64, leak_conf: f64) -> Verdict {
    let confidence = if confidence.is_finite() {
        confidence.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Verdict {
        pattern,
        leak: pattern == Pattern::Mountain && confidence >= leak_conf,
        confidence,
        growth_bytes_per_sec: if growth.is_finite() { growth } else { 0.0 },
        samples,
        span_secs: span,
        growth_secs: 0.0,
        floor_growth_bytes: 0.0,
        recent_ratio: 0.0,
        falls: 0,
        major_falls: 0,
        major_trough_slope: 0.0,
    }
}

/// Sanitised configuration values.
struct Params {
    leak_conf: f64,
    min_samples: f64,
    min_span: f64,
    min_rate: f64,
    min_total: f64,
    min_rel: f64,
    alpha: f64,
    w_min: f64,
    w_max: f64,
    min_swing: f64,
    swing_rel: f64,
    decel: f64,
    min_steps: f64,
    grace: f64,
    max_pts: usize,
}

impl Params {
    fn new(c: &ClassifierConfig) -> Self {
        let nonneg = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
        let w_min = if c.floor_window_min_secs.is_finite() && c.floor_window_min_secs > 0.0 {
            c.floor_window_min_secs.clamp(0.05, 86_400.0)
        } else {
            4.0
        };
        let w_max = if c.floor_window_max_secs.is_finite() {
            c.floor_window_max_secs.clamp(w_min, 864_000.0)
        } else {
            w_min.max(300.0)
        };
        Params {
            leak_conf: if c.leak_confidence.is_finite() {
                c.leak_confidence
            } else {
                0.8
            },
            min_samples: c.min_samples as f64,
            min_span: nonneg(c.min_span_secs),
            min_rate: nonneg(c.min_growth_bytes_per_sec),
            min_total: c.min_total_growth_bytes as f64,
            min_rel: nonneg(c.min_relative_growth),
            alpha: nonneg(c.significance),
            w_min,
            w_max,
            min_swing: (c.min_swing_bytes as f64).max(1.0),
            swing_rel: nonneg(c.swing_relative),
            decel: nonneg(c.decel_ratio),
            min_steps: nonneg(c.min_floor_steps),
            grace: nonneg(c.startup_grace_secs),
            max_pts: c.max_floor_points.clamp(8, 4096),
        }
    }
}

/// Evidence score: 0.8 when `value == threshold`, → 1 as value grows,
/// 0 at `value <= threshold / 4`. A threshold of 0 (or less) always scores 1.
fn ramp(value: f64, threshold: f64) -> f64 {
    if threshold.is_nan() || threshold <= 0.0 {
        return 1.0;
    }
    if value.is_nan() || value <= 0.0 {
        return 0.0;
    }
    (1.0 - 0.2 * threshold / value).clamp(0.0, 1.0)
}

/// Finite samples, times relative to the first one, sorted by time.
fn prepare(samples: &[Sample]) -> Vec<Pt> {
    let mut v: Vec<Pt> = samples
        .iter()
        .filter(|s| s.t_secs.is_finite())
        .map(|s| (s.t_secs, s.rss_bytes as f64))
        .collect();
    if v.windows(2).any(|w| w[1].0 < w[0].0) {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    if let Some(&(t0, _)) = v.first() {
        for p in &mut v {
            p.0 -= t0;
        }
    }
    v
}

/// Median (mean of the two middle values for even lengths); 0 for empty.
fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    let (lo, m, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        let l = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (l + m) / 2.0
    }
}

/// Maximum value among points with `a <= t <= b` (−∞ if none).
fn window_max(pts: &[Pt], a: f64, b: f64) -> f64 {
    let lo = pts.partition_point(|p| p.0 < a);
    let hi = pts.partition_point(|p| p.0 <= b);
    pts.get(lo..hi)
        .and_then(|w| w.iter().map(|p| p.1).reduce(f64::max))
        .unwrap_or(f64::NEG_INFINITY)
}

/// Minimum value among points with `a <= t <= b`.
fn window_min(pts: &[Pt], a: f64, b: f64) -> Option<f64> {
    let lo = pts.partition_point(|p| p.0 < a);
    let hi = pts.partition_point(|p| p.0 <= b);
    pts.get(lo..hi)?.iter().map(|p| p.1).reduce(f64::min)
}

struct Swings {
    /// Confirmed falls (peaks followed by a drop of at least the threshold).
    falls: usize,
    /// A trough was confirmed after a fall (a full down-up cycle was seen).
    cycle_complete: bool,
    /// Median fall size, bytes.
    median_fall: f64,
    /// Falls of at least a quarter of the series' range.
    major_falls: usize,
    /// Slope between the bottoms of the last two major falls, B/s (0 with fewer than two): for a
    /// collected heap, the level each major collection gets back to.
    major_trough_slope: f64,
}

/// Zig-zag filter: pivots alternate and are at least `d` apart in value.
fn swings(pts: &[Pt], d: f64) -> Swings {
    #[derive(PartialEq)]
    enum Dir {
        Unknown,
        Up,
        Down,
    }
    let mut peaks: Vec<usize> = Vec::new();
    let mut troughs: Vec<usize> = Vec::new();
    let mut dir = Dir::Unknown;
    let (mut hi, mut lo, mut cand) = (0usize, 0usize, 0usize);
    for (i, &(_, y)) in pts.iter().enumerate().skip(1) {
        match dir {
            Dir::Unknown => {
                if y > pts[hi].1 {
                    hi = i;
                }
                if y < pts[lo].1 {
                    lo = i;
                }
                if y - pts[lo].1 >= d {
                    troughs.push(lo);
                    dir = Dir::Up;
                    cand = i;
                } else if pts[hi].1 - y >= d {
                    peaks.push(hi);
                    dir = Dir::Down;
                    cand = i;
                }
            }
            Dir::Up => {
                if y >= pts[cand].1 {
                    cand = i;
                } else if pts[cand].1 - y >= d {
                    peaks.push(cand);
                    dir = Dir::Down;
                    cand = i;
                }
            }
            Dir::Down => {
                if y <= pts[cand].1 {
                    cand = i;
                } else if y - pts[cand].1 >= d {
                    troughs.push(cand);
                    dir = Dir::Up;
                    cand = i;
                }
            }
        }
    }
    let cycle_complete = match (peaks.first(), troughs.last()) {
        (Some(&fp), Some(&lt)) => lt > fp,
        _ => false,
    };
    // Each fall: from its peak to the next trough (or the current low).
    let mut falls: Vec<f64> = Vec::with_capacity(peaks.len());
    let mut bottoms: Vec<usize> = Vec::with_capacity(peaks.len());
    let mut ti = 0;
    for &pk in &peaks {
        while ti < troughs.len() && troughs[ti] <= pk {
            ti += 1;
        }
        let bottom = match troughs.get(ti) {
            Some(&t) => t,
            None if dir == Dir::Down => cand,
            None => pk,
        };
        falls.push(pts[pk].1 - pts[bottom].1);
        bottoms.push(bottom);
    }
    let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), q| {
        (lo.min(q.1), hi.max(q.1))
    });
    let majors: Vec<usize> = bottoms
        .iter()
        .zip(&falls)
        .filter(|(_, f)| **f >= (hi - lo) / 4.0)
        .map(|(b, _)| *b)
        .collect();
    // The last two: a warm-up before them does not count.
    let major_trough_slope = match majors.as_slice() {
        [.., a, b] if pts[*b].0 > pts[*a].0 => (pts[*b].1 - pts[*a].1) / (pts[*b].0 - pts[*a].0),
        _ => 0.0,
    };
    Swings {
        falls: peaks.len(),
        cycle_complete,
        major_falls: majors.len(),
        major_trough_slope,
        median_fall: median(&mut falls),
    }
}

/// Pick the floor window: the smallest `W` (geometric ladder from
/// `floor_window_min_secs`) whose floor has no spike — no floor point more
/// than `d` above both an earlier and a later floor point. A spike means a
/// window missed the trough of a cycle (tide, GC, aliasing between the
/// cycle and the sampling interval), so the window is too short. If the
/// smallest window already needed widening, one more ladder step is added
/// as a safety margin. Returns `(W, floor points)`.
fn choose_floor(pts: &[Pt], span: f64, d: f64, p: &Params) -> (f64, Vec<Pt>) {
    let w_floor = p.w_min.max(2.0 * span / p.max_pts as f64);
    // Never so wide that fewer than a dozen floor points are left to judge a trend on.
    let w_top = p.w_max.min(span / MIN_WINDOWS).max(w_floor);
    let mut w = w_floor;
    let mut widened = false;
    loop {
        let floor = floor_points(pts, w, w / 2.0);
        // The troughs themselves vary (a tide does not always fall to the same depth): a spike
        // must stand out of that variation too, not only of one swing.
        let d = d.max(SPIKE_MADS * mad_of_steps(&floor));
        if !has_spike(&floor, d) || w >= w_top {
            if widened && w < w_top {
                let w2 = (w * LADDER).min(w_top);
                return (w2, floor_points(pts, w2, w2 / 2.0));
            }
            return (w, floor);
        }
        widened = true;
        w = (w * LADDER).min(w_top);
    }
}

/// Ratio between successive candidate floor windows.
const LADDER: f64 = 1.25;

/// The floor window is at most the span over this (a dozen floor points at a stride of W/2).
const MIN_WINDOWS: f64 = 6.0;

/// A floor spike stands this many median absolute deviations (of the floor's steps) out.
const SPIKE_MADS: f64 = 3.0;

/// Median absolute deviation of the steps between consecutive floor points (0 with < 3 points).
fn mad_of_steps(f: &[Pt]) -> f64 {
    if f.len() < 3 {
        return 0.0;
    }
    let mut d: Vec<f64> = f.windows(2).map(|q| q[1].1 - q[0].1).collect();
    let m = median(&mut d);
    let mut dev: Vec<f64> = d.iter().map(|x| (x - m).abs()).collect();
    median(&mut dev)
}

fn has_spike(f: &[Pt], d: f64) -> bool {
    if f.len() < 3 {
        return false;
    }
    let mut suffix = vec![f64::INFINITY; f.len()];
    for k in (0..f.len() - 1).rev() {
        suffix[k] = suffix[k + 1].min(f[k + 1].1);
    }
    let mut prefix = f[0].1;
    for k in 1..f.len() - 1 {
        if f[k].1 > prefix + d && f[k].1 > suffix[k] + d {
            return true;
        }
        prefix = prefix.min(f[k].1);
    }
    false
}

/// Floor points: the minimum sample of each window `[end - w, end]`, with
/// `end` stepping back from the newest sample by `stride`. Deduplicated,
/// time ordered.
fn floor_points(pts: &[Pt], w: f64, stride: f64) -> Vec<Pt> {
    let Some(&(t_end, _)) = pts.last() else {
        return Vec::new();
    };
    if w.is_nan() || stride.is_nan() || w <= 0.0 || stride <= 0.0 {
        return pts.to_vec();
    }
    let mut idx: Vec<usize> = Vec::new();
    let mut k = 0u32;
    while k < 100_000 {
        let end = t_end - f64::from(k) * stride;
        if end < 0.0 {
            break;
        }
        let lo = pts.partition_point(|p| p.0 < end - w);
        let hi = pts.partition_point(|p| p.0 <= end);
        if let Some(win) = pts.get(lo..hi) {
            let mut best: Option<usize> = None;
            for (j, p) in win.iter().enumerate() {
                if best.is_none_or(|b| p.1 < pts[lo + b].1) {
                    best = Some(j);
                }
            }
            if let Some(b) = best {
                idx.push(lo + b);
            }
        }
        k += 1;
    }
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(|i| pts[i]).collect()
}

#[derive(Debug, Clone, Copy)]
struct TrendEval {
    conf: f64,
    slope: f64,
    recent_slope: f64,
    still_growing: bool,
    /// Floor growth over the horizon, bytes.
    growth: f64,
    /// Slope of the floor over the horizon's last third, whatever the waits between steps.
    third_slope: f64,
}

/// Trend of the floor over the last `h` seconds.
/// Floor window and swing threshold of a series.
struct Shape {
    w: f64,
    swing: f64,
}

fn eval_horizon(pts: &[Pt], floor: &[Pt], h: f64, sh: &Shape, p: &Params) -> Option<TrendEval> {
    let t_end = pts.last()?.0;
    let start = t_end - h;
    let f = &floor[floor.partition_point(|q| q.0 < start)..];
    if f.len() < 3 {
        return None;
    }
    let n_samples = pts.len() - pts.partition_point(|q| q.0 < start);
    let data_span = t_end - start.max(0.0);
    let (slope, intercept) = theil_sen(f)?;
    let (t_first, t_last) = (f[0].0, f[f.len() - 1].0);
    let growth = slope * (t_last - t_first);
    let base = (intercept + slope * t_first).max(1.0);
    let pval = mann_kendall_p(f);
    // Growth spread over several floor rises, not one jump (a step, or the
    // still-unconfirmed high phase of a tide at the end of the series). The
    // rises are those of the floor's monotone (isotonic) fit, so that noise
    // in the troughs — up one point, down the next — does not count as a
    // step. The first point is left out: it often holds the process start-up.
    let max_jump = isotonic(&f[1..]).windows(2).map(|q| q[1] - q[0]).fold(0.0f64, f64::max);
    let steps = if max_jump > 0.0 { growth / max_jump } else { 0.0 };

    let sig = if p.alpha > 0.0 {
        (1.0 - 0.2 * pval / p.alpha).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let conf = sig
        .min(ramp(data_span, p.min_span))
        .min(ramp(n_samples as f64, p.min_samples))
        .min(ramp(growth, p.min_total))
        .min(ramp(growth / base, p.min_rel))
        .min(ramp(slope, p.min_rate))
        .min(ramp(steps, p.min_steps));

    // Growth may come in steps (a staircase). The longest wait between two
    // rises of the samples (of a quarter swing or more from one sample to
    // the next) sets how far back the deceleration tests must look; the wait
    // since the last rise is left out (that is what the tests judge).
    let mut gap: f64 = 0.0;
    let mut last_rise: Option<f64> = None;
    for q in pts[pts.partition_point(|q| q.0 < start)..].windows(2) {
        if q[1].1 - q[0].1 >= sh.swing / 4.0 {
            if let Some(r) = last_rise {
                gap = gap.max(q[1].0 - r);
            }
            last_rise = Some(q[1].0);
        }
    }

    // Deceleration: slope of the recent floor (the last third, or two step
    // waits; at least 3 points) against the horizon's slope.
    let recent = ((t_last - t_first) / 3.0).max(2.0 * gap);
    let rec_from = f.partition_point(|q| q.0 < t_last - recent);
    let rec = &f[rec_from.min(f.len() - 3)..];
    let recent_slope = theil_sen(rec).map_or(0.0, |r| r.0);
    // The growth of the last third against the whole horizon's, from the floor's levels (the
    // median of three floor points) at the start, at two thirds and at the end: Theil–Sen would
    // treat a warm-up's ramp as outliers and see a slow creep after it as the whole trend.
    let level = |i: usize| {
        let lo = i.saturating_sub(1).min(f.len() - 3);
        let mut v = [f[lo].1, f[lo + 1].1, f[lo + 2].1];
        median(&mut v)
    };
    let third_from = f.partition_point(|q| q.0 < t_last - (t_last - t_first) / 3.0);
    let (l0, l2, l3) = (level(0), level(third_from), level(f.len() - 1));
    let third_slope = if l3 > l0 && t_last > t_first {
        // Expressed as a slope that equals the horizon's for steady growth.
        ((l3 - l2).max(0.0) / (l3 - l0)) * 3.0 * slope
    } else {
        0.0
    };
    // The floor lags the samples by up to W. If at the horizon's rate the
    // last max(W, h/4, 1.5 step waits) seconds should have grown by two
    // swings, yet the raw samples stayed within one swing, growth has
    // stopped (step then flat).
    let tail = sh.w.max(h / 4.0).max(1.5 * gap);
    let tail_range = {
        let from = pts.partition_point(|q| q.0 < t_end - tail);
        let (lo, hi) = pts[from..]
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), q| {
                (lo.min(q.1), hi.max(q.1))
            });
        hi - lo
    };
    let stalled = slope * tail >= 2.0 * sh.swing && tail_range < sh.swing;
    let still_growing =
        slope > 0.0 && recent_slope > 0.0 && recent_slope >= p.min_rate.max(p.decel * slope) && !stalled;
    note(|| {
        format!(
            "    h {h:6.0}s W {:5.1}s pts {:3} slope {slope:9.0} p {pval:.1e} growth {:6.1}MiB rel {:5.2} steps {steps:5.2} recent {recent_slope:9.0} stalled {stalled} -> conf {conf:.2} growing {still_growing}",
            sh.w,
            f.len(),
            growth / 1048576.0,
            growth / base
        )
    });
    Some(TrendEval {
        conf,
        slope,
        recent_slope,
        still_growing,
        growth,
        third_slope,
    })
}

/// Isotonic (non-decreasing) least-squares fit of the values, by pool-adjacent-violators.
fn isotonic(pts: &[Pt]) -> Vec<f64> {
    // Blocks of (mean, count).
    let mut blocks: Vec<(f64, usize)> = Vec::with_capacity(pts.len());
    for q in pts {
        let mut cur = (q.1, 1usize);
        while let Some(&(m, n)) = blocks.last() {
            if m <= cur.0 {
                break;
            }
            blocks.pop();
            let total = n + cur.1;
            cur = ((m * n as f64 + cur.0 * cur.1 as f64) / total as f64, total);
        }
        blocks.push(cur);
    }
    blocks
        .into_iter()
        .flat_map(|(m, n)| std::iter::repeat_n(m, n))
        .collect()
}

/// Theil–Sen estimator: (median pairwise slope, median intercept).
fn theil_sen(pts: &[Pt]) -> Option<(f64, f64)> {
    let n = pts.len();
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            let dt = b.0 - a.0;
            if dt > 0.0 {
                let s = (b.1 - a.1) / dt;
                if s.is_finite() {
                    slopes.push(s);
                }
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let slope = median(&mut slopes);
    let mut res: Vec<f64> = pts.iter().map(|q| q.1 - slope * q.0).collect();
    Some((slope, median(&mut res)))
}

/// One-sided (increasing trend) Mann–Kendall p-value, tie corrected, with
/// continuity correction.
fn mann_kendall_p(pts: &[Pt]) -> f64 {
    let n = pts.len();
    let mut s: i64 = 0;
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            s += match b.1.partial_cmp(&a.1) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let mut ys: Vec<f64> = pts.iter().map(|q| q.1).collect();
    ys.sort_by(|a, b| a.total_cmp(b));
    let mut ties = 0.0;
    let mut i = 0;
    while i < ys.len() {
        let mut j = i + 1;
        while j < ys.len() && ys[j] == ys[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if var.is_nan() || var <= 0.0 {
        return 0.5;
    }
    let s = s as f64;
    let z = if s > 0.0 {
        (s - 1.0) / var.sqrt()
    } else if s < 0.0 {
        (s + 1.0) / var.sqrt()
    } else {
        0.0
    };
    upper_tail(z)
}

/// P(Z > z) for a standard normal Z.
fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Abramowitz & Stegun 7.1.26, |err| < 1.5e-7).
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (poly * (-x * x).exp()).clamp(0.0, 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;

    /// xorshift64* — deterministic pseudo-random numbers for tests.
    struct Rng(u64);
    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [-1, 1).
        fn sym(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    /// Series from a function of time, 1 s interval with ±`jit_t` s timing
    /// jitter and ±`noise` bytes of RSS noise (rounded to pages).
    fn series(n: usize, seed: u64, noise: f64, jit_t: f64, f: impl Fn(f64) -> f64) -> Vec<Sample> {
        let mut r = Rng::new(seed);
        (0..n)
            .map(|i| {
                let t = i as f64 + jit_t * r.sym();
                let y = (f(t) + noise * r.sym()).max(0.0);
                Sample {
                    t_secs: 1000.0 + t,
                    rss_bytes: ((y / 4096.0).round() as u64) * 4096,
                }
            })
            .collect()
    }

    fn cfg() -> ClassifierConfig {
        ClassifierConfig::default()
    }

    fn first_leak(s: &[Sample]) -> Option<usize> {
        (1..=s.len()).find(|&k| classify(&s[..k], &cfg()).leak)
    }

    fn assert_never_leak(s: &[Sample], what: &str) {
        for k in 1..=s.len() {
            let v = classify(&s[..k], &cfg());
            assert!(!v.leak, "{what}: leak at prefix {k}: {v:?}");
        }
    }

    // ---- degenerate input -------------------------------------------------

    #[test]
    fn empty_and_single() {
        let v = classify(&[], &cfg());
        assert_eq!(v.pattern, Pattern::Flat);
        assert!(!v.leak);
        assert_eq!(v.samples, 0);
        assert_eq!(v.confidence, 0.0);
        let one = [Sample {
            t_secs: 5.0,
            rss_bytes: 123,
        }];
        let v = classify(&one, &cfg());
        assert_eq!(v.pattern, Pattern::Flat);
        assert_eq!(v.samples, 1);
        assert_eq!(v.span_secs, 0.0);
        let two = [
            one[0],
            Sample {
                t_secs: 6.0,
                rss_bytes: u64::MAX,
            },
        ];
        assert!(!classify(&two, &cfg()).leak);
    }

    #[test]
    fn constant_series_is_flat() {
        let s: Vec<Sample> = (0..120)
            .map(|i| Sample {
                t_secs: i as f64,
                rss_bytes: 50 << 20,
            })
            .collect();
        let v = classify(&s, &cfg());
        assert_eq!(v.pattern, Pattern::Flat, "{v:?}");
        assert!(!v.leak);
        assert!(v.confidence >= 0.8);
        assert_eq!(v.growth_bytes_per_sec, 0.0);
        assert_eq!(v.span_secs, 119.0);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        for rss in [0u64, 1, u64::MAX, u64::MAX - 4096] {
            let s: Vec<Sample> = (0..50)
                .map(|i| Sample {
                    t_secs: i as f64,
                    rss_bytes: rss,
                })
                .collect();
            let v = classify(&s, &cfg());
            assert_eq!(v.pattern, Pattern::Flat);
            assert!(v.confidence.is_finite() && v.growth_bytes_per_sec.is_finite());
        }
        // Alternating 0 / u64::MAX, identical times, reversed times, huge times.
        let s: Vec<Sample> = (0..100)
            .map(|i| Sample {
                t_secs: if i % 3 == 0 { 7.0 } else { 1e15 - i as f64 },
                rss_bytes: if i % 2 == 0 { 0 } else { u64::MAX },
            })
            .collect();
        let v = classify(&s, &cfg());
        assert!(v.confidence.is_finite() && v.growth_bytes_per_sec.is_finite());
        let same_t: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t_secs: 3.0,
                rss_bytes: i << 20,
            })
            .collect();
        assert_eq!(classify(&same_t, &cfg()).pattern, Pattern::Flat);
        let nan_t = [
            Sample {
                t_secs: f64::NAN,
                rss_bytes: 1,
            },
            Sample {
                t_secs: f64::INFINITY,
                rss_bytes: 1,
            },
            Sample {
                t_secs: 1.0,
                rss_bytes: 1,
            },
        ];
        assert_eq!(classify(&nan_t, &cfg()).samples, 1);
        // A ramp from 0 to u64::MAX is huge growth, must not overflow.
        let ramp_max: Vec<Sample> = (0..40u64)
            .map(|i| Sample {
                t_secs: i as f64,
                rss_bytes: (u64::MAX / 40) * i,
            })
            .collect();
        let v = classify(&ramp_max, &cfg());
        assert_eq!(v.pattern, Pattern::Mountain);
        assert!(v.growth_bytes_per_sec.is_finite());
    }

    #[test]
    fn weird_config_does_not_panic() {
        let s = series(60, 1, 64.0 * KIB, 0.0, |t| 10.0 * MIB + 2.0 * MIB * t);
        let bad = ClassifierConfig {
            leak_confidence: f64::NAN,
            min_samples: 0,
            min_span_secs: -1.0,
            min_growth_bytes_per_sec: f64::NAN,
            min_total_growth_bytes: 0,
            min_relative_growth: f64::INFINITY,
            significance: 0.0,
            floor_window_min_secs: 0.0,
            floor_window_max_secs: f64::NAN,
            min_swing_bytes: 0,
            swing_relative: -3.0,
            decel_ratio: f64::NAN,
            min_floor_steps: -1.0,
            startup_grace_secs: f64::INFINITY,
            max_floor_points: 0,
        };
        let v = classify(&s, &bad);
        assert!(v.confidence.is_finite());
    }

    // ---- flat ----------------------------------------------------------------

    #[test]
    fn noise_is_flat() {
        for seed in 0..10 {
            let s = series(300, seed, 64.0 * KIB, 0.1, |_| 30.0 * MIB);
            let v = classify(&s, &cfg());
            assert_eq!(v.pattern, Pattern::Flat, "seed {seed}: {v:?}");
            assert!(v.confidence >= 0.8);
            assert!(v.growth_bytes_per_sec.abs() < 4.0 * KIB, "{v:?}");
            assert_never_leak(&s[..80], "noise");
        }
    }

    #[test]
    fn startup_step_then_noise_is_flat() {
        // First sample caught during start-up (loader), then steady.
        let mut s = series(120, 3, 16.0 * KIB, 0.0, |_| 12.0 * MIB);
        s[0].rss_bytes = 3 << 20;
        let v = classify(&s, &cfg());
        assert_eq!(v.pattern, Pattern::Flat, "{v:?}");
    }

    // ---- mountain --------------------------------------------------------------

    #[test]
    fn leak_2mib_per_sec_flagged_within_20_samples() {
        for seed in 0..20 {
            let s = series(120, seed, 64.0 * KIB, 0.05, |t| 8.0 * MIB + 2.0 * MIB * t);
            let k = first_leak(&s).expect("never flagged");
            assert!(k <= 20, "seed {seed}: flagged only at sample {k}");
            for j in k..=s.len() {
                let v = classify(&s[..j], &cfg());
                assert!(v.leak, "seed {seed}: lost flag at {j}: {v:?}");
            }
            let v = classify(&s, &cfg());
            assert_eq!(v.pattern, Pattern::Mountain);
            let r = v.growth_bytes_per_sec / (2.0 * MIB);
            assert!((0.9..1.1).contains(&r), "rate {}", v.growth_bytes_per_sec);
        }
    }

    #[test]
    fn leak_128kib_per_sec_flagged_within_90_samples() {
        for seed in 0..20 {
            let s = series(240, seed, 64.0 * KIB, 0.05, |t| 10.0 * MIB + 128.0 * KIB * t);
            let k = first_leak(&s).expect("never flagged");
            assert!(k <= 90, "seed {seed}: flagged only at sample {k}");
            assert!(k >= 30, "seed {seed}: flagged at {k} before 4 MiB of growth");
            // Near the threshold the flag may flicker for a few samples.
            for j in (k + 5).min(s.len())..=s.len() {
                assert!(classify(&s[..j], &cfg()).leak, "seed {seed}: lost flag at {j}");
            }
            let v = classify(&s, &cfg());
            let r = v.growth_bytes_per_sec / (128.0 * KIB);
            assert!((0.85..1.15).contains(&r), "rate {}", v.growth_bytes_per_sec);
        }
    }

    #[test]
    fn step_wise_leak_with_python_like_startup() {
        // Interpreter start-up 2 -> 10 MiB in the first second, then 2 MiB
        // appended every second, sampled with jitter so some intervals see
        // 0 or 4 MiB of growth.
        for seed in 0..10 {
            let s = series(40, seed, 32.0 * KIB, 0.45, |t| {
                if t < 0.5 {
                    2.0 * MIB
                } else {
                    10.0 * MIB + 2.0 * MIB * t.floor()
                }
            });
            let k = first_leak(&s).expect("never flagged");
            assert!(k <= 22, "seed {seed}: flagged at {k}");
        }
    }

    #[test]
    fn slow_linear_growth_is_mountain() {
        let s = series(600, 9, 32.0 * KIB, 0.05, |t| 40.0 * MIB + 40.0 * KIB * t);
        let v = classify(&s, &cfg());
        assert_eq!(v.pattern, Pattern::Mountain, "{v:?}");
        assert!(v.leak, "{v:?}");
        // Below the rate minimum (16 KiB/s): not a leak.
        let s = series(600, 9, 8.0 * KIB, 0.05, |t| 40.0 * MIB + 4.0 * KIB * t);
        assert!(!classify(&s, &cfg()).leak);
    }

    #[test]
    fn sawtooth_with_rising_floor_is_flagged() {
        // alloc 50 MiB, 2 s later free 40 MiB, 2 s later alloc 50 MiB, ...
        for seed in 0..10 {
            let s = series(90, seed, 64.0 * KIB, 0.1, |t| {
                let c = (t / 4.0).floor();
                let in_cycle = t - 4.0 * c;
                let floor = 5.0 * MIB + 10.0 * MIB * c;
                if in_cycle < 2.0 {
                    floor + 50.0 * MIB
                } else {
                    floor + 10.0 * MIB
                }
            });
            let k = first_leak(&s).expect("never flagged");
            assert!(k <= 40, "seed {seed}: flagged at {k}");
            let v = classify(&s, &cfg());
            assert_eq!(v.pattern, Pattern::Mountain);
            let r = v.growth_bytes_per_sec / (2.5 * MIB);
            assert!((0.8..1.2).contains(&r), "rate {}", v.growth_bytes_per_sec);
        }
    }

    #[test]
    fn leak_with_time_gaps() {
        // 2 MiB/s leak, sampled 0..30 s, then nothing until 200 s, then 30 s.
        let s: Vec<Sample> = (0..30)
            .chain(200..230)
            .map(|t| Sample {
                t_secs: t as f64,
                rss_bytes: (4 << 20) + (2 << 20) * t,
            })
            .collect();
        let v = classify(&s, &cfg());
        assert!(v.leak, "{v:?}");
        assert!((v.growth_bytes_per_sec / (2.0 * MIB) - 1.0).abs() < 0.05, "{v:?}");
        // Irregular intervals: the rate must come from time, not the index.
        let mut r = Rng::new(4);
        let mut t = 0.0;
        let mut s = Vec::new();
        for _ in 0..60 {
            t += 0.5 + 2.5 * (r.sym() + 1.0) / 2.0;
            s.push(Sample {
                t_secs: t,
                rss_bytes: (10.0 * MIB + 256.0 * KIB * t) as u64,
            });
        }
        let v = classify(&s, &cfg());
        assert!(v.leak, "{v:?}");
        assert!((v.growth_bytes_per_sec / (256.0 * KIB) - 1.0).abs() < 0.05, "{v:?}");
        // Flat with gaps stays flat.
        let s: Vec<Sample> = (0..20)
            .chain(500..520)
            .chain(2000..2040)
            .map(|t| Sample {
                t_secs: t as f64,
                rss_bytes: 20 << 20,
            })
            .collect();
        assert_eq!(classify(&s, &cfg()).pattern, Pattern::Flat);
    }

    #[test]
    fn late_onset_leak_is_found_on_a_short_horizon() {
        // Flat for 600 s, then 256 KiB/s.
        let s = series(900, 5, 32.0 * KIB, 0.05, |t| {
            50.0 * MIB + if t > 600.0 { 256.0 * KIB * (t - 600.0) } else { 0.0 }
        });
        let k = first_leak(&s).expect("never flagged");
        assert!((620..=700).contains(&k), "flagged at {k}");
        let v = classify(&s, &cfg());
        assert!(v.leak);
        let r = v.growth_bytes_per_sec / (256.0 * KIB);
        assert!((0.8..1.2).contains(&r), "rate {}", v.growth_bytes_per_sec);
    }

    // ---- tidal -----------------------------------------------------------------

    /// Allocate `hi`, hold, free, repeat; ramp over `ramp` s, hold `hold` s,
    /// low for `low` s.
    fn tide(t: f64, lo: f64, hi: f64, ramp: f64, hold: f64, low: f64) -> f64 {
        let period = ramp + hold + low;
        let x = t.rem_euclid(period);
        if x < ramp {
            lo + (hi - lo) * x / ramp
        } else if x < ramp + hold {
            hi
        } else {
            lo
        }
    }

    #[test]
    fn tidal_never_flagged_at_any_prefix() {
        let shapes = [
            (1.0, 1.0, 1.0),
            (2.0, 1.0, 1.0),
            (1.5, 2.0, 0.7),
            (0.5, 3.0, 2.0),
            (2.0, 3.0, 0.6),
        ];
        for (i, &(ramp, hold, low)) in shapes.iter().enumerate() {
            for seed in 0..6 {
                let s = series(90, seed + 100 * i as u64, 64.0 * KIB, 0.3, |t| {
                    tide(t, 2.0 * MIB, 100.0 * MIB, ramp, hold, low)
                });
                assert_never_leak(&s, "tidal");
                let v = classify(&s, &cfg());
                assert_eq!(v.pattern, Pattern::Tidal, "shape {i} seed {seed}: {v:?}");
            }
        }
    }

    #[test]
    fn sawtooth_without_floor_growth_is_tidal() {
        let s = series(120, 7, 64.0 * KIB, 0.1, |t| {
            if t.rem_euclid(4.0) < 2.0 { 55.0 * MIB } else { 5.0 * MIB }
        });
        assert_never_leak(&s, "sawtooth");
        assert_eq!(classify(&s, &cfg()).pattern, Pattern::Tidal);
    }

    #[test]
    fn gc_like_collapses_are_tidal() {
        // Slow rise of 40 MiB over 8 s, sharp drop to the same baseline.
        for (seed, rise) in [(1u64, 8.0), (2, 5.0), (3, 12.0), (4, 3.0)] {
            let s = series(180, seed, 64.0 * KIB, 0.2, |t| {
                let x = t.rem_euclid(rise + 1.0);
                30.0 * MIB + if x < rise { 40.0 * MIB * x / rise } else { 0.0 }
            });
            assert_never_leak(&s, "gc");
            let v = classify(&s, &cfg());
            assert_eq!(v.pattern, Pattern::Tidal, "rise {rise}: {v:?}");
        }
    }

    #[test]
    fn first_ramp_of_a_tidal_process_is_not_a_leak() {
        let s = series(6, 1, 0.0, 0.0, |t| 2.0 * MIB + 50.0 * MIB * t);
        for k in 1..=s.len() {
            assert!(!classify(&s[..k], &cfg()).leak);
        }
    }

    // ---- plateau ---------------------------------------------------------------

    #[test]
    fn plateau_after_30s_hold_is_not_a_leak() {
        for seed in 0..10 {
            // 2 MiB start, +78 MiB over 10 s (from t = 2), then flat.
            let s = series(150, seed, 64.0 * KIB, 0.1, |t| {
                2.0 * MIB + 78.0 * MIB * ((t - 2.0) / 10.0).clamp(0.0, 1.0)
            });
            for k in 1..=s.len() {
                let v = classify(&s[..k], &cfg());
                let held = s[k - 1].t_secs - 1000.0 - 12.0;
                if held >= 30.0 {
                    assert_eq!(v.pattern, Pattern::Plateau, "seed {seed} prefix {k}: {v:?}");
                    assert!(!v.leak);
                    assert!(v.growth_bytes_per_sec.abs() < 64.0 * KIB, "{v:?}");
                }
            }
            assert!(classify(&s, &cfg()).confidence >= 0.8);
        }
    }

    #[test]
    fn step_then_flat_is_plateau() {
        let s = series(
            100,
            2,
            32.0 * KIB,
            0.0,
            |t| {
                if t < 20.0 { 10.0 * MIB } else { 60.0 * MIB }
            },
        );
        assert_never_leak(&s, "step");
        let v = classify(&s, &cfg());
        assert_eq!(v.pattern, Pattern::Plateau, "{v:?}");
        assert!(v.confidence >= 0.8);
    }

    #[test]
    fn warmup_curve_is_plateau() {
        // Exponential approach (cache warm-up), time constant 20 s.
        let s = series(300, 8, 32.0 * KIB, 0.05, |t| {
            10.0 * MIB + 200.0 * MIB * (1.0 - (-t / 20.0).exp())
        });
        let v = classify(&s, &cfg());
        assert_eq!(v.pattern, Pattern::Plateau, "{v:?}");
        for k in 150..=s.len() {
            assert!(!classify(&s[..k], &cfg()).leak, "prefix {k}");
        }
    }

    // ---- models of the lt-workload integration scenarios ----------------------

    /// Sampled every ~1 s from a random offset after spawn; footprint of a
    /// small Rust process (~180 KiB) plus a few pages of noise.
    fn workload(seed: u64, secs: f64, f: impl Fn(f64) -> f64) -> Vec<Sample> {
        let mut r = Rng::new(seed);
        let mut t = 0.05 + 0.45 * (r.sym() + 1.0);
        let mut out = Vec::new();
        while t < secs {
            let y = 180.0 * KIB + f(t) + 16.0 * KIB * (r.sym() + 1.0);
            out.push(Sample {
                t_secs: 7.0 + t,
                rss_bytes: ((y / 4096.0).round() as u64) * 4096,
            });
            t += 1.0 + 0.02 * r.sym();
        }
        out
    }

    #[test]
    fn workload_leak_2048_kib() {
        // 208 KiB (2048 KiB / 10, page rounded) every ~0.1 s.
        for seed in 0..10 {
            let step = 0.1 + 0.002 * seed as f64;
            let s = workload(seed, 40.0, |t| (t / step).floor() * 208.0 * KIB);
            let k = first_leak(&s).expect("never flagged");
            assert!(s[k - 1].t_secs - 7.0 <= 20.0, "seed {seed}: flagged at {k}");
            let v = classify(&s[..k], &cfg());
            assert!((1.5e6..3.0e6).contains(&v.growth_bytes_per_sec), "{v:?}");
            // `watch` of a 25 s leak: the final verdict is a leak.
            let w = workload(seed + 50, 25.0, |t| (t / step).floor() * 208.0 * KIB);
            let v = classify(&w, &cfg());
            assert!(v.leak && v.pattern == Pattern::Mountain, "{v:?}");
        }
    }

    #[test]
    fn workload_leak_128_kib() {
        // 16 KiB (128 KiB / 10 rounded up to pages) every ~0.1 s.
        for seed in 0..5 {
            let s = workload(seed, 125.0, |t| (t / 0.1).floor() * 16.0 * KIB);
            let k = first_leak(&s).expect("never flagged");
            assert!(s[k - 1].t_secs - 7.0 <= 60.0, "seed {seed}: flagged at {k}");
        }
    }

    #[test]
    fn workload_tidal_100_mib_period_3() {
        for seed in 0..10 {
            let touch = 0.05 + 0.03 * seed as f64;
            let tide = |t: f64| {
                let x = t.rem_euclid(3.0);
                if x < touch {
                    100.0 * MIB * x / touch
                } else if x < touch + 1.5 {
                    100.0 * MIB
                } else {
                    0.0
                }
            };
            let s = workload(seed, 70.0, tide);
            assert_never_leak(&s, "workload tidal");
            let w = workload(seed + 50, 25.0, tide);
            let v = classify(&w, &cfg());
            assert_eq!(v.pattern, Pattern::Tidal, "{v:?}");
        }
    }

    #[test]
    fn workload_plateau_80_mib_over_10s() {
        for seed in 0..10 {
            let s = workload(seed, 60.0, |t| (t / 0.125).floor().min(80.0) * MIB);
            assert_never_leak(&s, "workload plateau");
            assert_eq!(classify(&s, &cfg()).pattern, Pattern::Plateau);
        }
    }

    #[test]
    fn workload_sawtooth_30_up_24_down() {
        for seed in 0..10 {
            let s = workload(seed, 60.0, |t| {
                let n = (t / 2.0).floor();
                let x = t - 2.0 * n;
                6.0 * MIB * n
                    + if x < 1.0 {
                        30.0 * MIB * (x / 0.1).min(1.0)
                    } else {
                        6.0 * MIB
                    }
            });
            let k = first_leak(&s).expect("never flagged");
            assert!(k <= 35, "seed {seed}: flagged at {k}");
        }
    }

    #[test]
    fn fast_leak_is_a_mountain_early_for_oom_prediction() {
        // 8 MiB/s into a 160 MiB memcg dies at ~20 s: a (low-confidence)
        // mountain with the right rate must come well before that.
        for seed in 0..10 {
            let s = workload(seed, 20.0, |t| (t / 0.102).floor() * 832.0 * KIB);
            let k = (1..=s.len())
                .find(|&k| classify(&s[..k], &cfg()).pattern == Pattern::Mountain)
                .expect("never a mountain");
            assert!(k <= 8, "seed {seed}: first mountain at {k}");
            for j in k..=s.len() {
                let v = classify(&s[..j], &cfg());
                assert_eq!(v.pattern, Pattern::Mountain, "seed {seed} prefix {j}");
                let r = v.growth_bytes_per_sec / (8.0 * MIB);
                assert!((0.9..1.1).contains(&r), "{v:?}");
            }
        }
    }

    #[test]
    fn chunky_leak_does_not_flicker() {
        // 20 MiB every 8 s: a staircase. Once flagged, it stays a mountain.
        for seed in 0..5 {
            let s = workload(seed, 200.0, |t| {
                10.0 * MIB + 20.0 * MIB * ((t + seed as f64) / 8.0).floor()
            });
            let k = first_leak(&s).expect("never flagged");
            assert!(k <= 40, "flagged at {k}");
            for j in k..=s.len() {
                let v = classify(&s[..j], &cfg());
                assert_eq!(v.pattern, Pattern::Mountain, "seed {seed} prefix {j}: {v:?}");
            }
        }
    }

    // ---- misc ------------------------------------------------------------------

    #[test]
    fn pattern_names_round_trip() {
        for p in [Pattern::Flat, Pattern::Tidal, Pattern::Plateau, Pattern::Mountain] {
            assert_eq!(p.to_string().parse::<Pattern>(), Ok(p));
            let j = serde_json::to_string(&p).unwrap();
            assert_eq!(j, format!("\"{p}\""));
            assert_eq!(serde_json::from_str::<Pattern>(&j).unwrap(), p);
        }
        assert_eq!(" Mountain ".parse::<Pattern>(), Ok(Pattern::Mountain));
        assert!("hill".parse::<Pattern>().is_err());
        let v = classify(&[], &cfg());
        let j = serde_json::to_value(v).unwrap();
        assert_eq!(j["pattern"], "flat");
        assert_eq!(j["leak"], false);
    }

    #[test]
    fn config_deserializes_with_defaults() {
        let c: ClassifierConfig = serde_json::from_str(r#"{"leak_confidence": 0.9}"#).unwrap();
        assert_eq!(c.leak_confidence, 0.9);
        assert_eq!(c.min_samples, ClassifierConfig::default().min_samples);
    }

    #[test]
    fn statistics_helpers() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let line: Vec<Pt> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        let (s, b) = theil_sen(&line).unwrap();
        assert!((s - 2.0).abs() < 1e-12 && (b - 3.0).abs() < 1e-12);
        assert!(mann_kendall_p(&line) < 0.001);
        let down: Vec<Pt> = line.iter().map(|p| (p.0, -p.1)).collect();
        assert!(mann_kendall_p(&down) > 0.999);
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-6);
        assert!((upper_tail(1.644_854) - 0.05).abs() < 1e-5);
        assert!((upper_tail(-2.326_348) - 0.99).abs() < 1e-5);
        assert_eq!(ramp(1.0, 0.0), 1.0);
        assert_eq!(ramp(0.0, 1.0), 0.0);
        assert!((ramp(1.0, 1.0) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn large_input_is_fast_enough() {
        let s = series(960, 1, 64.0 * KIB, 0.1, |t| {
            tide(t, 2.0 * MIB, 100.0 * MIB, 1.0, 1.0, 1.0)
        });
        let start = std::time::Instant::now();
        for _ in 0..10 {
            let _ = classify(&s, &cfg());
        }
        let per = start.elapsed() / 10;
        // Debug build; release is ~10x faster.
        assert!(per.as_millis() < 200, "{per:?} per call");
    }
}
