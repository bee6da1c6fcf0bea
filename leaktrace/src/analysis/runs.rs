//! `watch --runs N -- CMD` (issue 14): the same command run N times; a footprint that grows run
//! after run (a cache that is never trimmed, state that accumulates) is a leak across runs even
//! when each run, alone, looks fine. Pure.
use serde::Serialize;

/// One run of the command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStat {
    /// 1-based.
    pub run: u32,
    pub pid: u32,
    /// Largest footprint (anon + shmem + swap of the tree) during the run, bytes.
    pub peak_bytes: u64,
    /// Footprint at the run's last sample: what it still held when its work was done, bytes.
    pub retained_bytes: u64,
    pub samples: usize,
    pub duration_secs: f64,
    pub exit_code: Option<i32>,
}

/// Growth across runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunsVerdict {
    /// The footprint grows from run to run.
    pub growing: bool,
    /// Median growth per run of the peak and of the retained footprint, bytes.
    pub peak_growth_per_run_bytes: f64,
    pub retained_growth_per_run_bytes: f64,
}

/// Growth per run smaller than this is noise (allocator, page rounding), bytes…
pub const MIN_GROWTH_PER_RUN: f64 = 1024.0 * 1024.0;
/// …or than this share of the smallest run.
pub const MIN_RELATIVE_GROWTH_PER_RUN: f64 = 0.05;

/// Median of pairwise slopes of `v` against the run number.
fn slope(v: &[f64]) -> f64 {
    let mut s = Vec::new();
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            s.push((v[j] - v[i]) / (j - i) as f64);
        }
    }
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Whether a series grows run after run: its median step is above the noise, and almost every
/// step rises (all of them for up to 4 runs, all but a quarter beyond).
fn grows(v: &[f64]) -> (bool, f64) {
    let k = slope(v);
    if v.len() < 2 {
        return (false, k);
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min).max(0.0);
    let threshold = MIN_GROWTH_PER_RUN.max(MIN_RELATIVE_GROWTH_PER_RUN * min);
    let steps = v.len() - 1;
    let rising = v.windows(2).filter(|w| w[1] - w[0] >= threshold / 2.0).count();
    let allowed_flat = if steps <= 3 { 0 } else { steps / 4 };
    (k >= threshold && rising + allowed_flat >= steps, k)
}

pub fn judge(runs: &[RunStat]) -> RunsVerdict {
    let peak: Vec<f64> = runs.iter().map(|r| r.peak_bytes as f64).collect();
    let kept: Vec<f64> = runs.iter().map(|r| r.retained_bytes as f64).collect();
    let (pg, pk) = grows(&peak);
    let (rg, rk) = grows(&kept);
    RunsVerdict {
        growing: pg || rg,
        peak_growth_per_run_bytes: pk.round(),
        retained_growth_per_run_bytes: rk.round(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(peaks_mib: &[u64]) -> Vec<RunStat> {
        peaks_mib
            .iter()
            .enumerate()
            .map(|(i, m)| RunStat {
                run: i as u32 + 1,
                pid: 100 + i as u32,
                peak_bytes: m << 20,
                retained_bytes: m << 20,
                samples: 10,
                duration_secs: 5.0,
                exit_code: Some(0),
            })
            .collect()
    }

    #[test]
    fn growth_across_runs() {
        let v = judge(&runs(&[40, 60, 80]));
        assert!(v.growing);
        assert_eq!(v.peak_growth_per_run_bytes, f64::from(20 << 20));
        assert!(!judge(&runs(&[40, 41, 40])).growing, "noise");
        assert!(
            !judge(&runs(&[40, 80, 80])).growing,
            "one step up: a warm cache, not growth"
        );
        assert!(!judge(&runs(&[80, 60, 40])).growing);
        assert!(!judge(&runs(&[40])).growing);
        assert!(
            judge(&runs(&[10, 20, 30, 30, 40, 50, 60, 70, 80])).growing,
            "one flat step of eight"
        );
        assert!(!judge(&runs(&[])).growing);
    }
}
