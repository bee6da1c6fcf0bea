//! The time grid of a range query: which step, which times, and how many `query_range` calls
//! it takes. Prometheus refuses a query that would return more than 11,000 points per series
//! (`exceeded maximum resolution of 11,000 points per timeseries`), so a long range at a fine
//! step is asked for in chunks on one grid, and the answers are joined.

/// Most steps in one `query_range` call: Prometheus allows `(end - start) / step <= 11,000`;
/// one less leaves room for rounding on its side.
pub const CHUNK_STEPS: i64 = 10_999;
/// The default step is never finer than this: Prometheus's usual scrape interval (finer steps
/// only repeat the last scraped value).
pub const MIN_DEFAULT_STEP_MS: i64 = 15_000;
/// Most points per series over the whole range (memory: 16 bytes a point).
pub const MAX_POINTS: i64 = 1_000_000;

/// Evaluation times `start_ms, start_ms + step_ms, ..., end_ms` (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

/// The step for `range_ms` when none is given: one query's worth of points (whole seconds),
/// at least [`MIN_DEFAULT_STEP_MS`].
pub fn default_step_ms(range_ms: i64) -> i64 {
    let up = |a: i64, b: i64| (a.max(1) + b - 1) / b;
    up(up(range_ms, CHUNK_STEPS), 1000)
        .saturating_mul(1000)
        .max(MIN_DEFAULT_STEP_MS)
}

impl Grid {
    /// The grid ending at or before `end_ms`, covering `range_ms`, on multiples of the step (so
    /// two runs over the same range ask for the same times). Errors say what to change.
    pub fn new(end_ms: i64, range_ms: i64, step_ms: i64) -> Result<Grid, String> {
        if step_ms <= 0 || range_ms <= 0 {
            return Err("the range and the step must be positive".into());
        }
        if step_ms > range_ms {
            return Err(format!(
                "the step ({}) is longer than the range ({}): nothing to judge",
                secs(step_ms),
                secs(range_ms)
            ));
        }
        let end = end_ms.div_euclid(step_ms) * step_ms;
        let start = (end - range_ms).div_euclid(step_ms) * step_ms;
        let g = Grid {
            start_ms: start,
            end_ms: end,
            step_ms,
        };
        if g.points() > MAX_POINTS {
            return Err(format!(
                "{} points per series ({} at a {} step) is more than {MAX_POINTS}: use a larger --step or a shorter --range",
                g.points(),
                secs(range_ms),
                secs(step_ms)
            ));
        }
        Ok(g)
    }

    /// Evaluation times on the grid.
    pub fn points(&self) -> i64 {
        (self.end_ms - self.start_ms) / self.step_ms + 1
    }

    /// The `query_range` calls that cover the grid: consecutive, on the same grid, none over
    /// Prometheus's limit, each time in exactly one.
    pub fn chunks(&self) -> Vec<Grid> {
        let mut out = Vec::new();
        let mut s = self.start_ms;
        while s <= self.end_ms {
            let e = (s + CHUNK_STEPS * self.step_ms).min(self.end_ms);
            out.push(Grid {
                start_ms: s,
                end_ms: e,
                step_ms: self.step_ms,
            });
            s = e + self.step_ms;
        }
        out
    }
}

/// Milliseconds as Prometheus's API takes a time or a step: decimal seconds.
pub fn api_secs(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// A duration for messages: `55s`, `1.5s`.
fn secs(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

/// `--end`: `now`, seconds since the epoch (`1767225600`, `1767225600.5`), or RFC 3339
/// (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00`, fractions allowed). Milliseconds.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let t = s.trim();
    let bad =
        || format!("`{s}` is not a time (now, seconds since the epoch, or RFC 3339 such as 2026-01-01T00:00:00Z)");
    if t == "now" {
        return Ok(now_ms);
    }
    if let Ok(v) = t.parse::<f64>() {
        return if v.is_finite() && v > 0.0 && v < 1e11 {
            Ok((v * 1000.0).round() as i64)
        } else {
            Err(bad())
        };
    }
    t.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_millisecond())
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn default_steps_keep_one_query_per_range() {
        // 7 days: 55 s, 10,996 points, one call.
        assert_eq!(default_step_ms(7 * DAY), 55_000);
        let g = Grid::new(1_767_225_600_000, 7 * DAY, default_step_ms(7 * DAY)).unwrap();
        assert!(g.points() <= 11_000, "{}", g.points());
        assert_eq!(g.chunks().len(), 1);
        // Short ranges: the usual scrape interval, not finer.
        assert_eq!(default_step_ms(3_600_000), 15_000);
        // 30 days: 236 s.
        assert_eq!(default_step_ms(30 * DAY), 236_000);
        for range in [60_000, 3_600_000, DAY, 7 * DAY, 30 * DAY, 400 * DAY] {
            let g = Grid::new(1_767_225_600_000, range, default_step_ms(range)).unwrap();
            assert!(g.chunks().len() == 1, "range {range}: {} points", g.points());
        }
    }

    #[test]
    fn a_fine_step_is_split_into_chunks_on_one_grid() {
        // 2 days at 15 s: 11,521 points, over Prometheus's limit: two calls.
        let end = 1_767_225_600_000 + 7_000; // not on the grid: rounded down
        let g = Grid::new(end, 2 * DAY, 15_000).unwrap();
        assert_eq!(g.end_ms, 1_767_225_600_000);
        assert_eq!(g.start_ms % 15_000, 0);
        assert_eq!(g.points(), 2 * DAY / 15_000 + 1);
        let c = g.chunks();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].start_ms, g.start_ms);
        assert_eq!(c.last().unwrap().end_ms, g.end_ms);
        let mut total = 0;
        for (i, ch) in c.iter().enumerate() {
            assert!(
                (ch.end_ms - ch.start_ms) / ch.step_ms <= 11_000,
                "chunk {i} over the limit"
            );
            assert_eq!((ch.start_ms - g.start_ms) % g.step_ms, 0, "chunk {i} off the grid");
            if i > 0 {
                assert_eq!(ch.start_ms, c[i - 1].end_ms + g.step_ms, "no time twice, none skipped");
            }
            total += ch.points();
        }
        assert_eq!(total, g.points());
        // 7 days at 1 s: 55 calls, still every point once.
        let g = Grid::new(1_767_225_600_000, 7 * DAY, 1000).unwrap();
        let c = g.chunks();
        assert_eq!(c.len(), 55);
        assert_eq!(c.iter().map(Grid::points).sum::<i64>(), g.points());
        // Exactly one chunk's worth.
        let g = Grid::new(CHUNK_STEPS * 1000, CHUNK_STEPS * 1000, 1000).unwrap();
        assert_eq!((g.points(), g.chunks().len()), (CHUNK_STEPS + 1, 1));
    }

    #[test]
    fn bad_grids_say_what_to_change() {
        assert!(
            Grid::new(DAY, 60_000, 120_000)
                .unwrap_err()
                .contains("longer than the range")
        );
        let e = Grid::new(400 * DAY, 30 * DAY, 1000).unwrap_err();
        assert!(e.contains("--step"), "{e}");
        assert!(Grid::new(DAY, 0, 1000).is_err());
    }

    #[test]
    fn api_times() {
        assert_eq!(api_secs(1_767_225_600_500), "1767225600.500");
        assert_eq!(api_secs(15_000), "15.000");
        assert_eq!(api_secs(5), "0.005");
    }

    #[test]
    fn times() {
        let now = 1_767_225_600_000;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("1767225600", 0).unwrap(), now);
        assert_eq!(parse_time("1767225600.25", 0).unwrap(), now + 250);
        assert_eq!(parse_time("2026-01-01T00:00:00Z", 0).unwrap(), now);
        assert_eq!(parse_time("2026-01-01T01:00:00+01:00", 0).unwrap(), now);
        assert_eq!(parse_time("2025-12-31T23:00:00.5-01:00", 0).unwrap(), now + 500);
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0).unwrap(), 1000);
        assert_eq!(parse_time("2024-02-29T12:00:00Z", 0).unwrap(), 1_709_208_000_000);
        for bad in [
            "",
            "yesterday",
            "-5",
            "NaN",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01",
            "2026-01-01T25:00:00Z",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
