//! Memory per unit of work (issue 14): a leak keeps a share of what each unit of work allocates,
//! so the floor grows with the work done; a warm-up does not. Two units: the CPU time the process
//! used, and a counter the service exposes (`--work-metric`, e.g. requests served). Pure.
use serde::Serialize;

/// Bytes retained per unit of work, as events show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WorkFields {
    /// CPU seconds used per second while the floor grew (None: not measured).
    pub cpu_secs_per_sec: Option<f64>,
    /// Floor growth per CPU-second of the process, bytes (None: no CPU used, or not measured).
    pub bytes_per_cpu_sec: Option<f64>,
    /// Units of `--work-metric` done per second.
    pub work_per_sec: Option<f64>,
    /// Floor growth per unit of `--work-metric` (e.g. per request), bytes.
    pub bytes_per_work: Option<f64>,
}

impl WorkFields {
    pub fn is_empty(&self) -> bool {
        self.cpu_secs_per_sec.is_none() && self.work_per_sec.is_none()
    }
}

/// Less CPU than this (seconds per second) is idle: no rate per CPU-second.
const MIN_CPU_RATE: f64 = 0.001;

/// Floor growth per unit, from the floor's growth rate and the unit's rate over the same time.
pub fn per_unit(growth_bytes_per_sec: f64, unit_per_sec: Option<f64>, min_rate: f64) -> Option<f64> {
    let r = unit_per_sec?;
    (r.is_finite() && r >= min_rate && growth_bytes_per_sec.is_finite()).then(|| growth_bytes_per_sec / r)
}

/// The fields for a floor growing at `growth` bytes/s while `cpu_rate` CPU-s/s and `work_rate`
/// units/s were done.
pub fn fields(growth: f64, cpu_rate: Option<f64>, work_rate: Option<f64>) -> WorkFields {
    WorkFields {
        cpu_secs_per_sec: cpu_rate.map(round3),
        bytes_per_cpu_sec: per_unit(growth, cpu_rate, MIN_CPU_RATE).map(f64::round),
        work_per_sec: work_rate.map(round3),
        bytes_per_work: per_unit(growth, work_rate, 1e-6).map(f64::round),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Robust rate of a counter: the Theil–Sen slope (median of pairwise slopes) of `(t, value)`
/// points, over at most 64 of them (evenly picked). None with fewer than two points or no time.
pub fn rate(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let step = pts.len().div_ceil(64);
    let pick: Vec<(f64, f64)> = pts.iter().step_by(step).copied().collect();
    let pick = if pick.last() != pts.last() {
        let mut p = pick;
        p.extend(pts.last());
        p
    } else {
        pick
    };
    let mut slopes = Vec::with_capacity(pick.len() * pick.len() / 2);
    for i in 0..pick.len() {
        for j in i + 1..pick.len() {
            let dt = pick[j].0 - pick[i].0;
            if dt > 0.0 {
                slopes.push((pick[j].1 - pick[i].1) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let n = slopes.len();
    Some(if n % 2 == 1 {
        slopes[n / 2]
    } else {
        (slopes[n / 2 - 1] + slopes[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let pts: Vec<(f64, f64)> = (0..300).map(|i| (f64::from(i), 20.0 * f64::from(i))).collect();
        assert!((rate(&pts).unwrap() - 20.0).abs() < 1e-9);
        // Bursty counter (10 every 5 s) and an outlier: still about 2/s.
        let mut b: Vec<(f64, f64)> = (0..100).map(|i| (f64::from(i), f64::from(i / 5 * 10))).collect();
        b[50].1 = 1e9;
        let r = rate(&b).unwrap();
        assert!((1.8..2.2).contains(&r), "{r}");
        assert_eq!(rate(&[(1.0, 1.0)]), None);
        assert_eq!(rate(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn per_unit_values() {
        let f = fields(64.0 * 1024.0 * 20.0, Some(0.5), Some(20.0));
        assert_eq!(f.bytes_per_work, Some(65536.0));
        assert_eq!(f.bytes_per_cpu_sec, Some(64.0 * 1024.0 * 40.0));
        let idle = fields(1000.0, Some(0.0), None);
        assert_eq!((idle.bytes_per_cpu_sec, idle.bytes_per_work), (None, None));
        assert!(fields(1.0, None, None).is_empty());
    }
}
