//! How a run of the agent scored against the truth: for each labelled life, whether it was
//! flagged, when, and how many times; for the rest, every alarm is a false one. Pure: the alarm
//! times come from a replay (`monitor::replay`), the truth from a record's labels.
use std::collections::HashMap;

use serde::Serialize;

use crate::input::Label;

/// What the agent said about one life.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Said {
    /// Times (seconds since the recording started) of each `leak_suspected`.
    pub flagged: Vec<f64>,
    /// Times of each `leak_cleared` (for a reason other than exit).
    pub cleared: Vec<f64>,
    /// Times of each `oom_predicted`.
    pub predicted: Vec<f64>,
}

/// One life's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifeScore {
    pub pid: u32,
    pub start: u64,
    pub comm: String,
    pub leak: bool,
    pub what: String,
    /// Seconds the life was observed.
    pub observed_secs: f64,
    /// Seconds from the leak's start to its first flag (leaks flagged after their start).
    pub flag_secs: Option<f64>,
    pub flag_within: Option<f64>,
    pub alarms: usize,
    /// Flags raised again after a clear, for the same life.
    pub re_alarms: usize,
    pub oom_predictions: usize,
    /// `ok`, `false_alarm`, `missed`, `late`, `re_alarmed`, `unjudged` (a leak whose life
    /// ended before its deadline without being flagged: not enough time to tell; a heap leak in
    /// a record without the collector's figures), or `ok_growing` (bounded growth flagged
    /// while it still grew, which a leak of its rate would have been).
    pub outcome: &'static str,
}

/// The whole record's score.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub lives: usize,
    pub labelled: usize,
    pub leaks: usize,
    pub leaks_flagged_in_time: usize,
    pub leaks_late: usize,
    pub leaks_missed: usize,
    /// Non-leaking lives with at least one `leak_suspected`.
    pub false_alarm_lives: usize,
    /// `leak_suspected` events about non-leaking lives (and flags before a leak started).
    pub false_alarms: usize,
    /// Second and later flags of one life.
    pub re_alarms: usize,
}

/// Score every life of a replay. `lives`: life → (comm, first seen, last seen); `default_leak`:
/// the truth for lives without a label.
pub fn score(
    labels: &[Label],
    default_leak: bool,
    lives: &HashMap<(u32, u64), (String, f64, f64)>,
    said: &HashMap<(u32, u64), Said>,
    heap_figures: bool,
) -> (Vec<LifeScore>, Summary) {
    let by_life: HashMap<(u32, u64), &Label> = labels.iter().map(|l| ((l.pid, l.start), l)).collect();
    let mut keys: Vec<&(u32, u64)> = lives.keys().collect();
    keys.sort_by(|a, b| {
        let (la, lb) = (&lives[a], &lives[b]);
        la.1.total_cmp(&lb.1).then(a.cmp(b))
    });
    let none = Said::default();
    let mut out = Vec::new();
    let mut sum = Summary {
        lives: lives.len(),
        labelled: by_life.len(),
        ..Summary::default()
    };
    for key in keys {
        let (comm, first_t, last_t) = &lives[key];
        let s = said.get(key).unwrap_or(&none);
        let label = by_life.get(key);
        let leak = label.map_or(default_leak, |l| l.leak);
        let leak_start = label.and_then(|l| l.leak_starts).unwrap_or(*first_t);
        let flag_within = label.and_then(|l| l.flag_within);
        let early = s.flagged.iter().filter(|t| **t < leak_start).count();
        let first = s.flagged.iter().copied().find(|t| *t >= leak_start);
        let re_alarms = s.flagged.len().saturating_sub(1);
        // Bounded growth: alarms raised while it still grew are not held against the agent.
        let stops = label.and_then(|l| l.growth_stops);
        let after_stop = s.flagged.iter().filter(|t| stops.is_none_or(|st| **t > st)).count();
        let heap_unjudged = label.is_some_and(|l| l.heap_leak) && !heap_figures;
        let outcome = if !leak {
            match (s.flagged.is_empty(), after_stop) {
                (true, _) => "ok",
                (false, 0) if s.flagged.len() == 1 => "ok_growing",
                _ => "false_alarm",
            }
        } else if heap_unjudged && s.flagged.is_empty() {
            "unjudged"
        } else if early > 0 {
            "false_alarm"
        } else if re_alarms > 0 {
            "re_alarmed"
        } else {
            match (first, flag_within) {
                (Some(t), Some(w)) if t - leak_start > w => "late",
                (Some(_), _) => "ok",
                (None, Some(w)) if last_t - leak_start < w => "unjudged",
                (None, _) => "missed",
            }
        };
        if leak {
            sum.leaks += 1;
            match outcome {
                "late" => sum.leaks_late += 1,
                "missed" => sum.leaks_missed += 1,
                "ok" | "re_alarmed" if first.is_some() => sum.leaks_flagged_in_time += 1,
                _ => {}
            }
            sum.false_alarms += early;
        } else if outcome == "false_alarm" {
            sum.false_alarms += if stops.is_some() {
                after_stop.max(1)
            } else {
                s.flagged.len()
            };
            sum.false_alarm_lives += 1;
        }
        sum.re_alarms += re_alarms;
        out.push(LifeScore {
            pid: key.0,
            start: key.1,
            comm: comm.clone(),
            leak,
            what: label.map_or_else(String::new, |l| l.what.clone()),
            observed_secs: ((last_t - first_t) * 10.0).round() / 10.0,
            flag_secs: first.map(|t| ((t - leak_start) * 10.0).round() / 10.0),
            flag_within,
            alarms: s.flagged.len(),
            re_alarms,
            oom_predictions: s.predicted.len(),
            outcome,
        });
    }
    (out, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(pid: u32, leak: bool, within: Option<f64>) -> Label {
        Label {
            pid,
            start: 1,
            leak,
            what: String::new(),
            rate: None,
            flag_within: within,
            leak_starts: None,
            growth_stops: None,
            heap_leak: false,
        }
    }

    #[test]
    fn outcomes() {
        let labels = [
            label(1, true, Some(60.0)),
            label(2, true, Some(60.0)),
            label(3, false, None),
            label(4, true, Some(60.0)),
            label(5, true, Some(600.0)),
        ];
        let lives: HashMap<(u32, u64), (String, f64, f64)> = [1, 2, 3, 4, 5, 6]
            .into_iter()
            .map(|p| ((p, 1), (format!("p{p}"), 10.0, 200.0)))
            .collect();
        let said: HashMap<(u32, u64), Said> = [
            (
                (1, 1),
                Said {
                    flagged: vec![50.0],
                    ..Said::default()
                },
            ),
            (
                (2, 1),
                Said {
                    flagged: vec![100.0],
                    ..Said::default()
                },
            ),
            (
                (3, 1),
                Said {
                    flagged: vec![20.0, 90.0],
                    ..Said::default()
                },
            ),
            (
                (6, 1),
                Said {
                    flagged: vec![30.0],
                    ..Said::default()
                },
            ),
        ]
        .into_iter()
        .collect();
        let (lives_scored, sum) = score(&labels, false, &lives, &said, false);
        let outcome = |pid: u32| lives_scored.iter().find(|l| l.pid == pid).unwrap().outcome;
        assert_eq!(outcome(1), "ok");
        assert_eq!(outcome(2), "late");
        assert_eq!(outcome(3), "false_alarm");
        assert_eq!(outcome(4), "missed");
        assert_eq!(outcome(5), "unjudged", "190 s observed of a 600 s deadline");
        assert_eq!(outcome(6), "false_alarm", "unlabelled lives take the default");
        assert_eq!(
            (sum.leaks, sum.leaks_flagged_in_time, sum.leaks_late, sum.leaks_missed),
            (4, 1, 1, 1)
        );
        assert_eq!((sum.false_alarm_lives, sum.false_alarms, sum.re_alarms), (2, 3, 1));
    }

    #[test]
    fn bounded_growth_and_heap_leaks() {
        let mut bounded = label(1, false, None);
        bounded.growth_stops = Some(80.0);
        let mut heap = label(2, true, Some(300.0));
        heap.heap_leak = true;
        let labels = [bounded.clone(), heap];
        let lives: HashMap<(u32, u64), (String, f64, f64)> =
            [1, 2].into_iter().map(|p| ((p, 1), ("x".into(), 0.0, 700.0))).collect();
        let flags = |v: Vec<f64>| Said {
            flagged: v,
            ..Said::default()
        };
        let run = |said1: Vec<f64>, heap_figures: bool| {
            let said: HashMap<(u32, u64), Said> = [((1, 1), flags(said1))].into_iter().collect();
            score(&labels, false, &lives, &said, heap_figures)
        };
        let outcome = |r: &(Vec<LifeScore>, Summary), pid: u32| r.0.iter().find(|l| l.pid == pid).unwrap().outcome;
        let r = run(vec![60.0], false);
        assert_eq!((outcome(&r, 1), outcome(&r, 2)), ("ok_growing", "unjudged"));
        assert_eq!((r.1.false_alarms, r.1.leaks_missed), (0, 0));
        let r = run(vec![90.0], true);
        assert_eq!((outcome(&r, 1), outcome(&r, 2)), ("false_alarm", "missed"));
        assert_eq!((r.1.false_alarms, r.1.leaks_missed), (1, 1));
        let r = run(vec![60.0, 500.0], false);
        assert_eq!(outcome(&r, 1), "false_alarm", "flagged again after it stopped");
    }
}
