//! The statistics behind every goal: means with t-based 95 % confidence intervals, the paired
//! per-round log-ratio of an arm against the same round's baseline, least-squares slopes, and
//! the three-way verdict (met / MISSED / not resolved) a goal gets from an interval.
//!
//! Why these: on a shared 2-core machine the background load drifts over minutes, so each run
//! is paired with the baseline run of the same round (arms interleaved, order rotating) and the
//! cost is the mean of the per-round `ln(arm / baseline)` — a ratio, so rounds on a busier
//! machine count as much as quiet ones, and a log so that +x % and −x % noise cancel. The
//! interval is the t-interval of that mean (Student's t, n − 1 degrees of freedom): with 15
//! rounds its half-width is 0.55 × the per-round standard deviation, so a 1 % cost is resolved
//! when the rounds scatter by less than about ±2 %.

/// Two-sided 97.5 % quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom (the table to 30, then
/// 1.96 + 2.4 / df, within 0.003 of the true value).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::INFINITY,
        1..=30 => T975[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

/// A mean and its 95 % confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub n: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// Sample standard deviation.
    pub sd: f64,
}

impl Interval {
    /// Half the interval's width.
    #[cfg(test)]
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }
}

/// Mean and t-based 95 % interval of the finite values; None with fewer than two.
pub fn mean_ci(values: &[f64]) -> Option<Interval> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n < 2 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    let h = t975(n - 1) * sd / (n as f64).sqrt();
    Some(Interval {
        n,
        mean,
        lo: mean - h,
        hi: mean + h,
        sd,
    })
}

/// The cost of an arm in %, from pairs (arm value, baseline value) of the same rounds: the mean
/// per-round log-ratio `ln(arm / base)` and its interval, turned back into %: extra time
/// `exp(x) − 1` (lower is better), or lost throughput `1 − exp(x)` (`higher_is_better`), so
/// that positive is worse either way. `sd` is the per-round standard deviation of the log-ratio
/// (×100, ≈ % scatter of one round).
pub fn paired_cost_pct(pairs: &[(f64, f64)], higher_is_better: bool) -> Option<Interval> {
    let logs: Vec<f64> = pairs
        .iter()
        .filter(|(a, b)| *a > 0.0 && *b > 0.0 && a.is_finite() && b.is_finite())
        .map(|(a, b)| (a / b).ln())
        .collect();
    let i = mean_ci(&logs)?;
    let (mean, lo, hi) = if higher_is_better {
        let c = |x: f64| (1.0 - x.exp()) * 100.0;
        (c(i.mean), c(i.hi), c(i.lo))
    } else {
        let c = |x: f64| (x.exp() - 1.0) * 100.0;
        (c(i.mean), c(i.lo), c(i.hi))
    };
    Some(Interval {
        n: i.n,
        mean,
        lo,
        hi,
        sd: i.sd * 100.0,
    })
}

/// Least-squares slope of `y` over `x` and its 95 % interval; None with fewer than three points
/// or no spread in `x`.
pub fn slope_ci(points: &[(f64, f64)]) -> Option<Interval> {
    let p: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let n = p.len();
    if n < 3 {
        return None;
    }
    let mx = p.iter().map(|q| q.0).sum::<f64>() / n as f64;
    let my = p.iter().map(|q| q.1).sum::<f64>() / n as f64;
    let sxx: f64 = p.iter().map(|q| (q.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = p.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let rss: f64 = p.iter().map(|q| (q.1 - a - b * q.0).powi(2)).sum();
    let se = (rss / (n - 2) as f64 / sxx).sqrt();
    let h = t975(n - 2) * se;
    Some(Interval {
        n,
        mean: b,
        lo: b - h,
        hi: b + h,
        sd: se,
    })
}

/// What an interval says about an upper limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The whole interval is at or under the limit.
    Met,
    /// The whole interval is above the limit.
    Missed,
    /// The interval straddles the limit: more rounds or a quieter machine are needed.
    NotResolved,
    /// No interval (too few runs, or the runs failed).
    NoFigure,
}

impl Verdict {
    pub fn of(i: Option<&Interval>, limit: f64) -> Verdict {
        match i {
            None => Verdict::NoFigure,
            Some(i) if !(i.lo.is_finite() && i.hi.is_finite()) => Verdict::NoFigure,
            Some(i) if i.hi <= limit => Verdict::Met,
            Some(i) if i.lo > limit => Verdict::Missed,
            Some(_) => Verdict::NotResolved,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::NotResolved => "not resolved",
            Verdict::NoFigure => "no figure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles() {
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(14), 2.145);
        assert!((t975(40) - 2.021).abs() < 0.003);
        assert!((t975(120) - 1.980).abs() < 0.003);
        assert!(t975(0).is_infinite());
    }

    #[test]
    fn mean_interval() {
        let i = mean_ci(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(i.mean, 3.0);
        // sd = sqrt(2.5); half-width = 2.776 * sd / sqrt(5)
        assert!((i.half_width() - 2.776 * 2.5f64.sqrt() / 5f64.sqrt()).abs() < 1e-9);
        assert!(mean_ci(&[1.0]).is_none());
        assert!(mean_ci(&[f64::NAN, 1.0]).is_none());
    }

    #[test]
    fn paired_costs() {
        // Every round 10 % slower: the interval is a point at +10 %.
        let pairs: Vec<(f64, f64)> = (1..=5).map(|i| (1.1 * i as f64, i as f64)).collect();
        let c = paired_cost_pct(&pairs, false).unwrap();
        assert!((c.mean - 10.0).abs() < 1e-9 && (c.lo - 10.0).abs() < 1e-9);
        // Throughput 10 % lower: a cost of +10 %; noisy rounds keep lo ≤ mean ≤ hi.
        let tput: Vec<(f64, f64)> = (1..=5).map(|i| (0.9 * i as f64, i as f64)).collect();
        let c = paired_cost_pct(&tput, true).unwrap();
        assert!((c.mean - 10.0).abs() < 1e-9);
        let c = paired_cost_pct(&[(0.9, 1.0), (0.8, 1.0), (0.95, 1.0)], true).unwrap();
        assert!(c.lo < c.mean && c.mean < c.hi && c.mean > 0.0);
        // Noise either way: the interval straddles 0.
        let noisy = [(1.02, 1.0), (0.98, 1.0), (1.01, 1.0), (0.99, 1.0)];
        let c = paired_cost_pct(&noisy, false).unwrap();
        assert!(c.lo < 0.0 && c.hi > 0.0);
        assert!(paired_cost_pct(&[(1.0, 0.0), (1.0, 1.0)], false).is_none());
    }

    #[test]
    fn slopes() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        let s = slope_ci(&pts).unwrap();
        assert!((s.mean - 2.0).abs() < 1e-9 && s.half_width() < 1e-9);
        assert!(slope_ci(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
    }

    #[test]
    fn verdicts() {
        let i = |lo, hi| Interval {
            n: 15,
            mean: (lo + hi) / 2.0,
            lo,
            hi,
            sd: 0.0,
        };
        assert_eq!(Verdict::of(Some(&i(0.1, 0.4)), 0.5), Verdict::Met);
        assert_eq!(Verdict::of(Some(&i(0.6, 0.9)), 0.5), Verdict::Missed);
        assert_eq!(Verdict::of(Some(&i(0.4, 0.6)), 0.5), Verdict::NotResolved);
        assert_eq!(Verdict::of(None, 0.5), Verdict::NoFigure);
    }
}
