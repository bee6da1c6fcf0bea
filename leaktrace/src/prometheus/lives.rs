//! From Prometheus series to what the monitor observes: each judged series is cut into lives
//! (a process's run from start to exit), and the series of one host (`instance`) become one
//! [`Record`], one tick per step, as `run --record` would have written it.
//!
//! A life ends where the value drops to 0 (process-exporter reports a group with no process as
//! 0), where a label that names one life changes (`pid`, a container id: the series that differ
//! only in those labels are one judged series with successive lives), at the series' last value,
//! and where it has no value for more than [`MAX_GAP_MS`] (a long outage: the host may have
//! restarted). A shorter gap — scrapes that failed or timed out, the target answering slowly —
//! is bridged: the life goes on with its last value, as the live agent carries a process it did
//! not read.
use std::collections::BTreeMap;

use super::{api::Series, plan::Grid};
use crate::{
    analysis::predict::UNLIMITED_BYTES,
    input::{Batch, CgObs, Header, HostInfo, HostObs, Identity, Obs, RECORD_VERSION, Record},
};

/// Labels that name one life of a series rather than the series (`--life-label` replaces them).
pub const DEFAULT_LIFE_LABELS: &[&str] = &["pid", "container_id", "id"];

/// Labels that name a process or container in a life's `comm`, best first.
const NAME_LABELS: &[&str] = &["groupname", "comm", "container", "pod", "name", "job", "__name__"];

/// Longest gap without values within one life (Prometheus's staleness window): longer ends it.
pub const MAX_GAP_MS: i64 = 5 * 60 * 1000;

/// The host's memory when a limit is known: far above any limit, so the series' own binds.
const HOST_BYTES: u64 = UNLIMITED_BYTES / 2;

/// One run of a series: its points (time order, none 0) and the limit at each, if known.
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub points: Vec<(i64, u64)>,
    pub limits: Vec<Option<u64>>,
    /// It is known to have ended after its last value: a 0 or a long gap followed, or the series
    /// stopped more than [`MAX_GAP_MS`] before the end of the range. Otherwise it may still run.
    pub ended: bool,
}

impl Life {
    fn new() -> Life {
        Life {
            points: Vec::new(),
            limits: Vec::new(),
            ended: false,
        }
    }
}

/// A judged series: Prometheus series that differ only by their life labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Logical {
    /// Its labels, life labels left out.
    pub labels: BTreeMap<String, String>,
    /// In order of their first point.
    pub lives: Vec<Life>,
    /// Values read, zeros included.
    pub points: usize,
}

impl Logical {
    /// The name a life of it goes by in events (`comm`).
    pub fn name(&self) -> String {
        NAME_LABELS
            .iter()
            .find_map(|k| self.labels.get(*k).filter(|v| !v.is_empty()))
            .cloned()
            .unwrap_or_else(|| "series".to_string())
    }
}

/// Labels without `__name__`: what limit series are matched on.
fn matchable(labels: &BTreeMap<String, String>) -> impl Iterator<Item = (&String, &String)> {
    labels.iter().filter(|(k, _)| *k != "__name__")
}

/// The limit series that apply to `s`: those whose labels (`__name__` aside) are all among its own.
fn limits_of<'a>(s: &Series, limits: &'a [Series]) -> Vec<&'a Series> {
    limits
        .iter()
        .filter(|l| matchable(&l.labels).all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect()
}

/// The tightest known limit among `limits` at time `ms` (0 and "unlimited" are no limit).
fn limit_at(limits: &[&Series], ms: i64) -> Option<u64> {
    limits
        .iter()
        .filter_map(|l| {
            let i = l.points.binary_search_by_key(&ms, |p| p.0).ok()?;
            let v = l.points[i].1;
            (v > 0 && v < UNLIMITED_BYTES).then_some(v)
        })
        .min()
}

/// Cut `s` into lives: at zeros (left out), and at gaps over [`MAX_GAP_MS`] (or over one step,
/// for steps longer than that).
fn cut(s: &Series, limits: &[&Series], grid: &Grid) -> Vec<Life> {
    let max_gap = max_gap(grid.step_ms);
    let mut lives = Vec::new();
    let mut cur = Life::new();
    let mut prev: Option<i64> = None;
    for &(ms, v) in &s.points {
        let gap = prev.is_some_and(|p| ms - p > max_gap);
        prev = Some(ms);
        if (gap || v == 0) && !cur.points.is_empty() {
            cur.ended = true;
            lives.push(std::mem::replace(&mut cur, Life::new()));
        }
        if v > 0 {
            cur.points.push((ms, v));
            cur.limits.push(limit_at(limits, ms));
        }
    }
    if let Some(&(last, _)) = cur.points.last() {
        cur.ended = grid.end_ms - last > max_gap;
        lives.push(cur);
    }
    lives
}

/// Longest gap bridged within a life at this step.
fn max_gap(step_ms: i64) -> i64 {
    MAX_GAP_MS.max(step_ms + step_ms / 2)
}

/// The judged series, sorted by labels: `series` grouped by their labels without
/// `life_labels`, each cut into lives; `limits` give each point its limit.
pub fn logical(series: &[Series], limits: &[Series], life_labels: &[String], grid: &Grid) -> Vec<Logical> {
    let mut by_key: BTreeMap<BTreeMap<String, String>, Logical> = BTreeMap::new();
    for s in series {
        let key: BTreeMap<String, String> = s
            .labels
            .iter()
            .filter(|(k, _)| !life_labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let l = by_key.entry(key.clone()).or_insert_with(|| Logical {
            labels: key,
            lives: Vec::new(),
            points: 0,
        });
        l.points += s.points.len();
        l.lives.extend(cut(s, &limits_of(s, limits), grid));
    }
    let mut out: Vec<Logical> = by_key.into_values().collect();
    for l in &mut out {
        l.lives.sort_by_key(|life| life.points.first().map_or(0, |p| p.0));
    }
    out
}

/// One host's series as a record: lives are numbered (pid) 1, 2, ... in the order of `owner`.
#[derive(Debug, Clone)]
pub struct Host {
    pub record: Record,
    /// For each pid - 1: (index into the judged series, index of the life).
    pub owner: Vec<(usize, usize)>,
}

/// The records to replay: one per `instance` (the series of one host are judged together, as
/// one agent on that host would judge them), ticks on the grid from the host's first value to
/// its last.
pub fn hosts(logicals: &[Logical], grid: &Grid) -> Vec<Host> {
    let mut by_instance: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in logicals.iter().enumerate() {
        by_instance
            .entry(l.labels.get("instance").map_or("", String::as_str))
            .or_default()
            .push(i);
    }
    let mut out = Vec::new();
    for (instance, members) in by_instance {
        let owner: Vec<(usize, usize)> = members
            .iter()
            .flat_map(|&i| (0..logicals[i].lives.len()).map(move |j| (i, j)))
            .collect();
        let life = |&(i, j): &(usize, usize)| &logicals[i].lives[j];
        let step = grid.step_ms;
        // From the first value to the last exit, or to the end of the range while a life may run.
        let (Some(first), Some(last)) = (
            owner.iter().filter_map(|o| life(o).points.first()).map(|p| p.0).min(),
            owner
                .iter()
                .filter_map(|o| {
                    let l = life(o);
                    let last = l.points.last()?.0;
                    Some(if l.ended { last + step } else { grid.end_ms.max(last) })
                })
                .max(),
        ) else {
            continue;
        };
        let tick = |ms: i64| usize::try_from(((ms - first) as f64 / step as f64).round() as i64).unwrap_or(0);
        let n = tick(last) + 1;
        let mut batches: Vec<Batch> = (0..n)
            .map(|k| Batch::at(k as f64 * step as f64 / 1000.0, true))
            .collect();
        let any_limit = owner.iter().any(|o| life(o).limits.iter().any(Option::is_some));
        if any_limit {
            batches[0].host = Some(HostObs {
                avail: HOST_BYTES,
                swap_free: 0,
            });
        }
        for (k, o) in owner.iter().enumerate() {
            let pid = k as u32 + 1;
            let l = life(o);
            let memcg = l
                .limits
                .iter()
                .any(Option::is_some)
                .then(|| format!("/prometheus/{pid}"));
            let Some(&(start_ms, _)) = l.points.first() else {
                continue;
            };
            batches[tick(start_ms)].new.push(Identity {
                pid,
                start: 1,
                ppid: 0,
                comm: logicals[o.0].name(),
                cmdline: Vec::new(),
                memcg: memcg.clone(),
                limit: l.limits.iter().flatten().next().copied(),
                // Seen starting within the range (after a gap or a 0), else of unknown age.
                age: (start_ms > grid.start_ms).then_some(0.0),
            });
            for (&(ms, v), limit) in l.points.iter().zip(&l.limits) {
                let b = &mut batches[tick(ms)];
                b.obs.push(Obs(pid, 1, v, 0, 0, 0, None));
                if let (Some(limit), Some(m)) = (limit, &memcg) {
                    b.cg.push(CgObs(m.clone(), v, Some(*limit)));
                }
            }
            // It exits the step after its last value, when it is known to have ended.
            let end = tick(l.points.last().map_or(start_ms, |p| p.0)) + 1;
            if let (true, Some(b)) = (l.ended, batches.get_mut(end)) {
                b.exit.push((pid, 1));
            }
        }
        let header = Header {
            leaktrace_record: RECORD_VERSION,
            interval_secs: step as f64 / 1000.0,
            source: "prometheus".to_string(),
            kernel: String::new(),
            host: HostInfo {
                mem_total: if any_limit { HOST_BYTES } else { 0 },
                swap_total: 0,
            },
            started_unix_ms: u64::try_from(first).unwrap_or(0),
            default_leak: false,
            note: instance.to_string(),
        };
        out.push(Host {
            record: Record {
                header,
                batches,
                labels: Vec::new(),
            },
            owner,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn series(pairs: &[(&str, &str)], points: &[(i64, u64)]) -> Series {
        Series {
            labels: labels(pairs),
            points: points.to_vec(),
        }
    }

    fn grid() -> Grid {
        Grid {
            start_ms: 0,
            end_ms: 100_000,
            step_ms: 1000,
        }
    }

    fn life_labels() -> Vec<String> {
        DEFAULT_LIFE_LABELS.iter().map(|s| s.to_string()).collect()
    }

    fn spans(l: &Logical) -> Vec<(i64, i64, usize)> {
        l.lives
            .iter()
            .map(|x| (x.points[0].0, x.points.last().unwrap().0, x.points.len()))
            .collect()
    }

    #[test]
    fn zeros_and_long_gaps_end_a_life_short_gaps_do_not() {
        // A process-exporter group: running, gone (0), back; scrapes failing for 3 steps
        // (bridged); then nothing for over 5 minutes, back.
        let s = series(
            &[("__name__", "namedprocess_namegroup_memory_bytes"), ("groupname", "w")],
            &[
                (1000, 5 << 20),
                (2000, 6 << 20),
                (3000, 0),
                (4000, 0),
                (5000, 4 << 20),
                (6000, 4 << 20),
                (10_000, 4 << 20),
                (11_000, 5 << 20),
                (12_000 + MAX_GAP_MS, 5 << 20),
            ],
        );
        let l = logical(&[s], &[], &life_labels(), &grid());
        assert_eq!(l.len(), 1);
        assert_eq!(
            spans(&l[0]),
            vec![(1000, 2000, 2), (5000, 11_000, 4), (312_000, 312_000, 1)]
        );
        assert_eq!(l[0].points, 9);
        let ended: Vec<bool> = l[0].lives.iter().map(|x| x.ended).collect();
        assert_eq!(ended, vec![true, true, false], "the last one may still run");
        // At a step over 5 minutes, one missing step is the gap.
        let coarse = Grid {
            start_ms: 0,
            end_ms: 3_600_000,
            step_ms: 600_000,
        };
        let s = series(&[("groupname", "w")], &[(0, 1), (600_000, 1), (1_800_000, 1)]);
        assert_eq!(logical(&[s], &[], &[], &coarse)[0].lives.len(), 2);
        assert_eq!(l[0].name(), "w");
        // A tide is not a restart: no cut while the value stays above 0.
        let tide = series(
            &[("groupname", "t")],
            &[(1000, 100 << 20), (2000, 1 << 20), (3000, 100 << 20)],
        );
        assert_eq!(logical(&[tide], &[], &life_labels(), &grid())[0].lives.len(), 1);
    }

    #[test]
    fn a_new_pid_is_a_new_life_of_the_same_series() {
        // leaktrace's own series: the process restarted under a new pid.
        let a = series(
            &[
                ("__name__", "leaktrace_process_rss_bytes"),
                ("comm", "java"),
                ("kind", "anon"),
                ("pid", "100"),
            ],
            &[(1000, 1 << 20), (2000, 2 << 20)],
        );
        let b = series(
            &[
                ("__name__", "leaktrace_process_rss_bytes"),
                ("comm", "java"),
                ("kind", "anon"),
                ("pid", "200"),
            ],
            &[(3000, 1 << 20), (4000, 2 << 20)],
        );
        let other = series(
            &[
                ("__name__", "leaktrace_process_rss_bytes"),
                ("comm", "redis"),
                ("kind", "anon"),
                ("pid", "300"),
            ],
            &[(1000, 1 << 20)],
        );
        let l = logical(&[b, other, a], &[], &life_labels(), &grid());
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].labels.get("pid"), None);
        assert_eq!(l[0].labels["comm"], "java");
        assert_eq!(spans(&l[0]), vec![(1000, 2000, 2), (3000, 4000, 2)], "in time order");
        // Without life labels each pid is its own series.
        assert_eq!(logical(&l_series(), &[], &[], &grid()).len(), 2);
    }

    fn l_series() -> Vec<Series> {
        vec![
            series(&[("comm", "x"), ("pid", "1")], &[(1000, 1)]),
            series(&[("comm", "x"), ("pid", "2")], &[(1000, 1)]),
        ]
    }

    #[test]
    fn limits_match_on_shared_labels_and_the_tightest_binds() {
        let s = series(
            &[
                ("__name__", "container_memory_working_set_bytes"),
                ("namespace", "a"),
                ("pod", "p"),
                ("container", "c"),
            ],
            &[(1000, 10), (2000, 20), (3000, 30)],
        );
        let pod_limit = series(
            &[("namespace", "a"), ("pod", "p")],
            &[(1000, 1000), (2000, 1000), (3000, 1000)],
        );
        let container_limit = series(
            &[
                ("__name__", "container_spec_memory_limit_bytes"),
                ("namespace", "a"),
                ("pod", "p"),
                ("container", "c"),
            ],
            // 0: cAdvisor's "no limit"; then a limit; then none at that step.
            &[(1000, 0), (2000, 500)],
        );
        let elsewhere = series(&[("namespace", "b")], &[(1000, 1), (2000, 1), (3000, 1)]);
        let l = logical(&[s], &[pod_limit, container_limit, elsewhere], &life_labels(), &grid());
        assert_eq!(l[0].lives[0].limits, vec![Some(1000), Some(500), Some(1000)]);
        let unlimited = series(&[], &[(1000, u64::MAX)]);
        let s = series(&[("job", "j")], &[(1000, 10)]);
        assert_eq!(logical(&[s], &[unlimited], &[], &grid())[0].lives[0].limits, vec![None]);
    }

    #[test]
    fn one_record_per_instance_with_a_tick_per_step() {
        let a = series(
            &[("groupname", "a"), ("instance", "h1:9256")],
            &[
                (10_000, 1 << 20),
                (11_000, 2 << 20),
                (12_000, 0),
                (13_000, 3 << 20),
                (16_000, 4 << 20),
                (17_000, 0),
            ],
        );
        let b = series(
            &[("groupname", "b"), ("instance", "h1:9256")],
            // Gone for over 5 minutes: a new life.
            &[(11_000, 7 << 20), (16_000 + MAX_GAP_MS, 7 << 20)],
        );
        let c = series(&[("groupname", "c"), ("instance", "h2:9256")], &[(50_000, 1 << 20)]);
        let limit = series(&[("groupname", "b")], &[(11_000, 64 << 20)]);
        let g = grid();
        let l = logical(&[a, b, c], &[limit], &life_labels(), &g);
        let h = hosts(&l, &g);
        assert_eq!(h.len(), 2);
        let r = &h[0].record;
        assert_eq!(r.header.note, "h1:9256");
        assert_eq!(r.header.started_unix_ms, 10_000);
        assert_eq!(r.header.interval_secs, 1.0);
        // 10 s .. 316 s: a tick a second, t from 0.
        assert_eq!(r.batches.len(), 307);
        assert!(r.batches.iter().all(|b| b.tick));
        assert_eq!(r.batches[306].t, 306.0);
        // a: lives 1 (10-11 s) and 2 (13-16 s); b: lives 3 (11 s) and 4 (316 s).
        assert_eq!(h[0].owner, vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!(r.batches[0].new[0].comm, "a");
        assert_eq!(r.batches[0].obs, vec![Obs(1, 1, 1 << 20, 0, 0, 0, None)]);
        assert_eq!(r.batches[1].new.iter().map(|i| i.pid).collect::<Vec<_>>(), vec![3]);
        assert_eq!(r.batches[1].new[0].limit, Some(64 << 20));
        assert_eq!(
            r.batches[1].cg,
            vec![CgObs("/prometheus/3".into(), 7 << 20, Some(64 << 20))]
        );
        assert_eq!(
            r.batches[2].exit,
            vec![(1, 1), (3, 1)],
            "each life ends the step after its last value"
        );
        assert_eq!(r.batches[3].new[0].pid, 2);
        // Failed scrapes at 14 and 15 s: no reading (the core carries the last), no exit.
        assert!(r.batches[4].obs.is_empty() && r.batches[5].obs.is_empty() && r.batches[5].exit.is_empty());
        assert_eq!(r.batches[6].obs, vec![Obs(2, 1, 4 << 20, 0, 0, 0, None)]);
        assert_eq!(r.batches[7].exit, vec![(2, 1)]);
        assert_eq!(r.batches[306].new[0].pid, 4);
        assert!(
            r.batches[0].host.is_some(),
            "a limit is known: host memory so the core predicts"
        );
        // c may still run (its last value is less than 5 minutes before the end): ticks to the end.
        assert_eq!(h[1].record.batches.len(), 51);
        assert!(h[1].record.batches.iter().all(|b| b.exit.is_empty()));
        assert!(h[1].record.batches[0].host.is_none());
    }
}
