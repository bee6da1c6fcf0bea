//! Each host's record replayed through the agent's own core (`monitor::replay`), and what it
//! said about each life gathered into one verdict per judged series.
use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::{
    lives::{Host, Logical},
    plan::Grid,
};
use crate::{
    analysis::{
        classify::Pattern,
        predict::{Limit, LimitKind, eta_secs},
    },
    monitor::{
        CoreConfig,
        replay::{Life, Replayed, replay},
    },
    output::{Event, SeriesSummary, SeriesVerdict, VerdictFields},
};

/// RFC 3339 (UTC, to the second) of milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| "?".into(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// What the replays said.
#[derive(Debug, Default)]
pub struct Judged {
    /// One per judged series, in the order of the judged series.
    pub verdicts: Vec<SeriesVerdict>,
    /// Every event the agent would have printed, host by host (`--events`).
    pub events: Vec<Event>,
    pub summary: SeriesSummary,
}

/// What a replay returns: the events, and each life.
type Replay = (Vec<Replayed>, HashMap<(u32, u64), Life>);

/// Replay every host (in parallel: hosts are independent) with `cfg`.
fn replay_all(hosts: &[Host], cfg: &CoreConfig) -> Vec<Replay> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(hosts.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<_>>> = Mutex::new(vec![None; hosts.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(h) = hosts.get(i) else { break };
                    let r = replay(&h.record, cfg.clone(), None);
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

/// What one series' lives went through.
#[derive(Default, Clone)]
struct Acc {
    alarms: usize,
    first_flag_ms: Option<i64>,
    /// (time, life) of the latest flag.
    last_flag: Option<(i64, usize)>,
    /// Lives flagged now.
    flagged: Vec<usize>,
}

/// The verdicts on `logicals`, replayed as `hosts` on `grid` (`queries` calls made).
pub fn judge(logicals: &[Logical], hosts: &[Host], grid: &Grid, cfg: &CoreConfig, queries: usize) -> Judged {
    let replays = replay_all(hosts, cfg);
    let mut acc = vec![Acc::default(); logicals.len()];
    // (host, pid) of every life, by (series, life).
    let mut whose: HashMap<(usize, usize), (usize, u32)> = HashMap::new();
    let mut events = Vec::new();
    for (hi, (h, (said, _))) in hosts.iter().zip(&replays).enumerate() {
        for (k, o) in h.owner.iter().enumerate() {
            whose.insert(*o, (hi, k as u32 + 1));
        }
        let t0 = i64::try_from(h.record.header.started_unix_ms).unwrap_or(0);
        for r in said {
            let Some(&(series, life)) = usize::try_from(r.life.0)
                .ok()
                .and_then(|p| h.owner.get(p.wrapping_sub(1)))
            else {
                continue;
            };
            let a = &mut acc[series];
            let ms = t0 + (r.t * 1000.0).round() as i64;
            match &r.event {
                Event::LeakSuspected { .. } => {
                    a.alarms += 1;
                    a.first_flag_ms.get_or_insert(ms);
                    a.last_flag = Some((ms, life));
                    a.flagged.push(life);
                }
                Event::LeakCleared { .. } => a.flagged.retain(|l| *l != life),
                _ => {}
            }
            events.push(r.event.clone());
        }
    }
    let mut verdicts = Vec::with_capacity(logicals.len());
    for (i, (l, a)) in logicals.iter().zip(&acc).enumerate() {
        let last_point = |j: usize| l.lives[j].points.last().map_or(i64::MIN, |p| p.0);
        // The flagged life, else the latest.
        let chosen = a
            .last_flag
            .map(|(_, j)| j)
            .or_else(|| (0..l.lives.len()).max_by_key(|&j| (last_point(j), l.lives[j].points.len())));
        let replayed = chosen
            .and_then(|j| whose.get(&(i, j)))
            .and_then(|&(hi, pid)| replays[hi].1.get(&(pid, 1)));
        let verdict = replayed.and_then(|r| r.verdict);
        let fields = verdict.as_ref().map(VerdictFields::from);
        let all = l.lives.iter().flat_map(|x| x.points.iter());
        let first = l.lives.iter().filter_map(|x| x.points.first()).map(|p| p.0).min();
        let last = l.lives.iter().filter_map(|x| x.points.last()).max_by_key(|p| p.0);
        // Time to the limit: only for a life still running at the end, growing, with a limit.
        let (limit_bytes, eta) = match chosen.map(|j| &l.lives[j]) {
            Some(life) => {
                let limit = life.limits.last().copied().flatten();
                let running = !life.ended;
                let usage = life.points.last().map_or(0, |p| p.1);
                let eta = match (verdict, limit) {
                    (Some(v), Some(limit_bytes)) if running && v.pattern == Pattern::Mountain => eta_secs(
                        v.growth_bytes_per_sec,
                        &Limit {
                            kind: LimitKind::Memcg,
                            limit_bytes,
                            usage_bytes: usage,
                        },
                    )
                    .map(|s| s.round()),
                    _ => None,
                };
                (limit, eta)
            }
            None => (None, None),
        };
        verdicts.push(SeriesVerdict {
            labels: l.labels.clone(),
            lives: l.lives.len(),
            points: l.points,
            from: first.map(rfc3339),
            to: last.map(|p| rfc3339(p.0)),
            pattern: fields.map_or(Pattern::Flat, |f| f.pattern),
            leak: a.alarms > 0,
            confidence: fields.map_or(0.0, |f| f.confidence),
            growth_bytes_per_sec: fields.map_or(0.0, |f| f.growth_bytes_per_sec),
            flagged_at: a.first_flag_ms.map(rfc3339),
            still_flagged: !a.flagged.is_empty(),
            alarms: a.alarms,
            last_bytes: last.map_or(0, |p| p.1),
            peak_bytes: all.map(|p| p.1).max().unwrap_or(0),
            limit_bytes,
            eta_secs: eta,
        });
    }
    let summary = SeriesSummary {
        series: verdicts.len(),
        lives: logicals.iter().map(|l| l.lives.len()).sum(),
        points: logicals.iter().map(|l| l.points).sum(),
        leaks: verdicts.iter().filter(|v| v.leak).count(),
        step_secs: grid.step_ms as f64 / 1000.0,
        from: rfc3339(grid.start_ms),
        to: rfc3339(grid.end_ms),
        queries,
    };
    Judged {
        verdicts,
        events,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::prometheus::{api::Series, lives};

    const T0: i64 = 1_767_225_600_000;
    const MIB: u64 = 1 << 20;

    fn series(group: &str, points: Vec<(i64, u64)>) -> Series {
        Series {
            labels: BTreeMap::from([
                ("groupname".to_string(), group.to_string()),
                ("instance".to_string(), "web-1:9256".to_string()),
            ]),
            points,
        }
    }

    /// `f(second)` every second for `secs`, from `from` seconds after T0.
    fn every_second(from: i64, secs: i64, f: impl Fn(i64) -> u64) -> Vec<(i64, u64)> {
        (from..from + secs).map(|s| (T0 + s * 1000, f(s))).collect()
    }

    #[test]
    fn one_verdict_per_series_from_the_agents_own_replay() {
        let grid = Grid {
            start_ms: T0,
            end_ms: T0 + 179_000,
            step_ms: 1000,
        };
        // 2 MiB/s for the whole range, under a 1 GiB limit.
        let leak = series("leak", every_second(0, 180, |s| 50 * MIB + 2 * MIB * s as u64));
        let limit = Series {
            labels: BTreeMap::from([("groupname".to_string(), "leak".to_string())]),
            points: every_second(0, 180, |_| 1 << 30),
        };
        // Flat at 30 MiB, with page-sized jitter.
        let flat = series("flat", every_second(0, 180, |s| 30 * MIB + (s as u64 % 3) * 4096));
        // Leaks for 60 s, exits (0), comes back flat: two lives, the first one flagged.
        let restarted = series(
            "restarted",
            every_second(0, 180, |s| match s {
                0..60 => 20 * MIB + 2 * MIB * s as u64,
                60..65 => 0,
                _ => 20 * MIB,
            }),
        );
        let logical = lives::logical(&[leak, flat, restarted], &[limit], &[], &grid);
        let hosts = lives::hosts(&logical, &grid);
        assert_eq!(hosts.len(), 1, "one instance, one host");
        let j = judge(&logical, &hosts, &grid, &CoreConfig::new(1.0), 1);
        let by: BTreeMap<&str, &SeriesVerdict> =
            j.verdicts.iter().map(|v| (v.labels["groupname"].as_str(), v)).collect();

        let l = by["leak"];
        assert!(l.leak && l.still_flagged && l.alarms == 1, "{l:?}");
        assert_eq!(l.pattern, Pattern::Mountain);
        let flagged = l.flagged_at.as_deref().unwrap();
        assert!(
            flagged > "2026-01-01T00:00:10Z" && flagged < "2026-01-01T00:01:00Z",
            "2 MiB/s flagged within a minute, not before 10 s: {flagged}"
        );
        assert!((1.5e6..2.7e6).contains(&l.growth_bytes_per_sec), "{l:?}");
        assert_eq!(l.limit_bytes, Some(1 << 30));
        // 1 GiB - (50 + 358) MiB at ~2 MiB/s: ~308 s.
        let eta = l.eta_secs.unwrap();
        assert!((250.0..380.0).contains(&eta), "eta {eta}");
        assert_eq!((l.lives, l.points, l.last_bytes), (1, 180, 408 * MIB));
        assert_eq!(l.from.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(l.to.as_deref(), Some("2026-01-01T00:02:59Z"));

        let f = by["flat"];
        assert!(
            !f.leak && !f.still_flagged && f.alarms == 0 && f.flagged_at.is_none(),
            "{f:?}"
        );
        assert_eq!((f.limit_bytes, f.eta_secs), (None, None));

        let r = by["restarted"];
        assert_eq!(r.lives, 2);
        assert!(r.leak && !r.still_flagged, "flagged, then it exited: {r:?}");
        assert_eq!(r.pattern, Pattern::Mountain, "the verdict on the flagged life");
        assert_eq!(r.last_bytes, 20 * MIB);

        assert_eq!(
            (j.summary.series, j.summary.lives, j.summary.leaks, j.summary.points),
            (3, 4, 2, 540)
        );
        assert!(
            j.events
                .iter()
                .any(|e| matches!(e, Event::LeakCleared { reason, .. } if reason == "exited")),
            "the replayed events are kept for --events"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(T0), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(T0 + 86_399_999), "2026-01-01T23:59:59Z");
    }
}
