//! Results: medians and ratios, goals, the terminal table, `--json`, and BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::agent::{Arm, Cost};
use super::capacity::Step;
use super::workload::Metric;

/// One run of one workload under one arm.
#[derive(Clone, Debug)]
pub struct Sample {
    /// 0-based round.
    pub round: usize,
    /// One value per metric of the workload.
    pub values: Vec<f64>,
    /// The agent's cost during the run (None for the baseline).
    pub cost: Option<Cost>,
    /// Busy share of all CPUs just before the run (others' work; the agent was not started yet).
    pub busy_before_pct: f64,
    /// Busy share of all CPUs during the run (workload + agent + others).
    pub busy_during_pct: f64,
    /// leaktrace/bpftrace processes not started by the benchmark, just before the run.
    pub foreign_tracers: usize,
}

#[derive(Debug)]
pub struct ArmRun {
    pub arm: Arm,
    pub samples: Vec<Sample>,
    /// Why (some) runs of this arm failed.
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct WorkloadRun {
    pub key: &'static str,
    pub title: String,
    pub metrics: Vec<Metric>,
    pub arms: Vec<ArmRun>,
    /// Set-up failure (e.g. redis missing): no arm ran.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu: String,
    pub mem_gib: f64,
    pub thp: String,
    /// Busy share of all CPUs in a 2 s sample before the first workload (others' load).
    pub busy_before_pct: f64,
    pub load_before: String,
    pub load_after: String,
    pub bpftrace: String,
    pub redis: String,
    /// Runs wait (bounded) until the machine is at most this busy.
    pub quiet_pct: f64,
    pub quiet_wait_secs: f64,
    pub quiet_budget_secs: f64,
}

#[derive(Debug)]
pub struct Results {
    pub quick: bool,
    pub rounds: usize,
    pub command: String,
    pub date: String,
    pub revision: String,
    pub machine: Machine,
    pub workloads: Vec<WorkloadRun>,
    pub capacity: Result<Vec<Step>, String>,
    /// `no-capacity`: the capacity test was not run (not a problem).
    pub capacity_skipped: bool,
    pub duration_secs: f64,
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The q-quantile (0..=1) with linear interpolation; NaN when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .filter(|x| x.is_finite())
        .fold((f64::NAN, f64::NAN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// One metric of one arm, summarised over the rounds.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// median ÷ baseline median.
    pub ratio: f64,
    /// % extra time (timed workloads) or % lost throughput (redis): positive is worse.
    pub cost_pct: f64,
    /// The same, as the median of the per-round ratios to that round's baseline (paired:
    /// less sensitive to slow changes in background load).
    pub paired_cost_pct: f64,
    /// Quartiles of the per-round costs (the spread of the paired figure).
    pub paired_q1_pct: f64,
    pub paired_q3_pct: f64,
    /// Rounds with both this arm and the baseline.
    pub paired_n: usize,
}

impl Figure {
    /// Whether the per-round costs sit clearly on one side of zero (the middle half of them
    /// all above, or all below): otherwise the figure does not tell the arm from the baseline.
    pub fn distinguishable(&self) -> bool {
        self.paired_n >= 3
            && ((self.paired_q1_pct > 0.0 && self.paired_q3_pct > 0.0)
                || (self.paired_q1_pct < 0.0 && self.paired_q3_pct < 0.0))
    }
}

/// The agent's cost over the rounds.
#[derive(Clone, Debug)]
pub struct CostSummary {
    pub cpu_pct: f64,
    pub cpu_pct_max: f64,
    pub peak_rss_mib: f64,
    pub final_rss_mib: f64,
    pub drops: BTreeMap<String, u64>,
}

impl WorkloadRun {
    pub fn arm(&self, arm: Arm) -> Option<&ArmRun> {
        self.arms.iter().find(|a| a.arm == arm)
    }

    pub fn figure(&self, metric: usize, arm: Arm) -> Option<Figure> {
        let values = |a: &ArmRun| a.samples.iter().map(|s| s.values[metric]).collect::<Vec<_>>();
        let own = values(self.arm(arm)?);
        if own.is_empty() {
            return None;
        }
        let base = median(&values(self.arm(Arm::Baseline)?));
        let med = median(&own);
        let (min, max) = min_max(&own);
        let ratio = med / base;
        let hib = self.metrics[metric].higher_is_better;
        let cost = |ratio: f64| {
            if hib {
                (1.0 - ratio) * 100.0
            } else {
                (ratio - 1.0) * 100.0
            }
        };
        let base_samples = &self.arm(Arm::Baseline)?.samples;
        let paired: Vec<f64> = self
            .arm(arm)?
            .samples
            .iter()
            .filter_map(|s| {
                base_samples
                    .iter()
                    .find(|b| b.round == s.round)
                    .map(|b| s.values[metric] / b.values[metric])
            })
            .collect();
        let per_round: Vec<f64> = paired.iter().map(|&r| cost(r)).collect();
        Some(Figure {
            n: own.len(),
            median: med,
            min,
            max,
            ratio,
            cost_pct: cost(ratio),
            paired_cost_pct: median(&per_round),
            paired_q1_pct: quantile(&per_round, 0.25),
            paired_q3_pct: quantile(&per_round, 0.75),
            paired_n: per_round.len(),
        })
    }

    pub fn cost(&self, arm: Arm) -> Option<CostSummary> {
        let costs: Vec<&Cost> = self.arm(arm)?.samples.iter().filter_map(|s| s.cost.as_ref()).collect();
        if costs.is_empty() {
            return None;
        }
        let cpu: Vec<f64> = costs.iter().map(|c| c.cpu_pct).collect();
        let mut drops = BTreeMap::new();
        for c in &costs {
            for (k, n) in &c.drops {
                *drops.entry(k.clone()).or_insert(0) += n;
            }
        }
        Some(CostSummary {
            cpu_pct: median(&cpu),
            cpu_pct_max: min_max(&cpu).1,
            peak_rss_mib: min_max(&costs.iter().map(|c| c.peak_rss_mib).collect::<Vec<_>>()).1,
            final_rss_mib: median(&costs.iter().map(|c| c.final_rss_mib).collect::<Vec<_>>()),
            drops,
        })
    }
}

// ---------------------------------------------------------------------------
// Goals
// ---------------------------------------------------------------------------

pub const CPU_GOAL_PCT: f64 = 1.0;
pub const RSS_GOAL_MIB: f64 = 32.0;

#[derive(Clone, Debug)]
pub struct Goal {
    pub name: String,
    pub limit: String,
    pub value: String,
    /// How sure the figure is (the per-round spread), when it has one.
    pub spread: String,
    /// None: no figure (the run failed).
    pub met: Option<bool>,
}

fn goal_name(workload: &str, metric: &str) -> String {
    match (workload, metric) {
        ("faults", _) => "page-fault storm, 1 process: extra time".into(),
        ("faults_per_cpu", _) => "page-fault storm, one process per CPU: extra time".into(),
        ("mmaps", _) => "mmap/munmap storm: extra time".into(),
        ("forkexec", _) => "fork/exec/exit churn: extra time".into(),
        ("redis", "set_rps") => "redis SET: lost throughput".into(),
        ("redis", "get_rps") => "redis GET: lost throughput".into(),
        (w, m) => format!("{w} {m}"),
    }
}

/// The goals, judged on the `leaktrace run` arm.
pub fn goals(r: &Results) -> Vec<Goal> {
    let arm = Arm::Run;
    let mut out = Vec::new();
    for w in &r.workloads {
        for (i, m) in w.metrics.iter().enumerate() {
            let Some(limit) = m.goal_pct else { continue };
            let f = w.figure(i, arm);
            out.push(Goal {
                name: goal_name(w.key, m.key),
                limit: format!("≤ {limit} %"),
                value: f.map_or("no figure".into(), |f| format!("{} %", signed(f.cost_pct))),
                spread: f.map_or(String::new(), |f| {
                    format!(
                        "paired {} % (IQR {} … {} %){}",
                        signed(f.paired_cost_pct),
                        signed(f.paired_q1_pct),
                        signed(f.paired_q3_pct),
                        if f.paired_n < 3 {
                            "; too few rounds to judge"
                        } else if f.distinguishable() {
                            ""
                        } else {
                            "; within noise"
                        }
                    )
                }),
                met: f.filter(|f| f.cost_pct.is_finite()).map(|f| f.cost_pct <= limit),
            });
        }
    }
    let costs: Vec<(&WorkloadRun, CostSummary)> =
        r.workloads.iter().filter_map(|w| w.cost(arm).map(|c| (w, c))).collect();
    let worst_cpu = costs.iter().max_by(|a, b| a.1.cpu_pct.total_cmp(&b.1.cpu_pct));
    let idle_cpu = costs.iter().find(|(w, _)| w.key == "idle").map(|(_, c)| c.cpu_pct);
    out.push(Goal {
        name: "agent CPU, % of one core (median per workload)".into(),
        limit: format!("≤ {CPU_GOAL_PCT} %"),
        value: match worst_cpu {
            Some((w, c)) => format!(
                "worst {:.2} % ({}); idle {}",
                c.cpu_pct,
                w.key,
                idle_cpu.map_or("n/a".into(), |v| format!("{v:.2} %"))
            ),
            None => "no figure".into(),
        },
        spread: String::new(),
        met: worst_cpu.map(|(_, c)| c.cpu_pct <= CPU_GOAL_PCT),
    });
    let worst_rss = costs
        .iter()
        .max_by(|a, b| a.1.peak_rss_mib.total_cmp(&b.1.peak_rss_mib));
    out.push(Goal {
        name: "agent peak RSS (VmHWM, any run)".into(),
        limit: format!("≤ {RSS_GOAL_MIB} MiB"),
        value: worst_rss.map_or("no figure".into(), |(w, c)| {
            format!("{:.1} MiB ({})", c.peak_rss_mib, w.key)
        }),
        spread: String::new(),
        met: worst_rss.map(|(_, c)| c.peak_rss_mib <= RSS_GOAL_MIB),
    });
    out
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "no figure",
    }
}

// ---------------------------------------------------------------------------
// Checks (every arm ran, every figure exists, no lifecycle event lost)
// ---------------------------------------------------------------------------

pub fn problems(r: &Results) -> Vec<String> {
    let mut p = Vec::new();
    for w in &r.workloads {
        if let Some(e) = &w.error {
            p.push(format!("{}: {e}", w.key));
            continue;
        }
        for arm in Arm::ALL.into_iter().filter(|a| a.implemented()) {
            let Some(a) = w.arm(arm) else {
                p.push(format!("{} / {}: did not run", w.key, arm.label()));
                continue;
            };
            if let Some(e) = &a.error {
                p.push(format!("{} / {}: {}", w.key, arm.label(), first_line(e)));
            }
            for (i, m) in w.metrics.iter().enumerate() {
                match w.figure(i, arm) {
                    Some(f) if f.median.is_finite() && f.ratio.is_finite() && f.cost_pct.is_finite() => {}
                    _ => p.push(format!("{} / {}: no {} figure", w.key, arm.label(), m.key)),
                }
            }
            if arm != Arm::Baseline {
                match w.cost(arm) {
                    Some(c) if c.cpu_pct.is_finite() && c.peak_rss_mib.is_finite() && c.final_rss_mib.is_finite() => {}
                    _ => p.push(format!("{} / {}: no agent cost figures", w.key, arm.label())),
                }
            }
        }
    }
    match &r.capacity {
        _ if r.capacity_skipped => {}
        Err(e) => p.push(format!("capacity: {}", first_line(e))),
        Ok(steps) if steps.is_empty() => p.push("capacity: no step ran".into()),
        Ok(steps) => {
            for s in steps {
                if !(s.offered_per_sec.is_finite() && s.seen_per_sec.is_finite() && s.agent_cpu_pct.is_finite()) {
                    p.push(format!("capacity k={}: missing figures", s.k));
                }
                if s.exits_missing > 0 || s.exits_duplicated > 0 || s.exits_wrong_code > 0 {
                    p.push(format!(
                        "capacity k={}: exit events lost/duplicated/wrong: {}/{}/{} of {}",
                        s.k, s.exits_missing, s.exits_duplicated, s.exits_wrong_code, s.exits_expected
                    ));
                }
                if s.unaccounted > 0 || s.excess > 0 {
                    p.push(format!(
                        "capacity k={}: storm events silently lost {} / duplicated {} (offered {}, seen {}, dropped {})",
                        s.k, s.unaccounted, s.excess, s.offered, s.seen, s.dropped
                    ));
                }
            }
        }
    }
    p
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

// ---------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------

fn signed(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let s = format!("{x:+.1}");
    if s == "-0.0" { "+0.0".into() } else { s }
}

fn value(x: f64, unit: &str) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    match unit {
        "s" => format!("{x:.3} s"),
        _ => format!("{x:.0} {unit}"),
    }
}

fn range(f: &Figure, unit: &str) -> String {
    match unit {
        "s" => format!("{:.3}–{:.3}", f.min, f.max),
        _ => format!("{:.0}–{:.0}", f.min, f.max),
    }
}

fn drops_text(d: &BTreeMap<String, u64>) -> String {
    let nonzero: Vec<String> = d
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}:{n}"))
        .collect();
    if nonzero.is_empty() {
        "0".into()
    } else {
        nonzero.join(" ")
    }
}

fn metric_prefix(w: &WorkloadRun, m: &Metric) -> String {
    if w.metrics.len() > 1 {
        match m.key {
            "set_rps" => "SET ".into(),
            "get_rps" => "GET ".into(),
            k => format!("{k} "),
        }
    } else {
        String::new()
    }
}

/// Rows of (arm label, median, range, ratio, cost, cpu, peak, final, drops) for one metric.
fn rows(w: &WorkloadRun, mi: usize) -> Vec<[String; 10]> {
    let m = &w.metrics[mi];
    let mut out = Vec::new();
    for arm in Arm::ALL {
        let label = format!("{}{}", metric_prefix(w, m), arm.label());
        if !arm.implemented() {
            out.push(note(label, "n/a (not implemented)".into()));
            continue;
        }
        let Some(f) = w.figure(mi, arm) else {
            let why = w
                .arm(arm)
                .and_then(|a| a.error.as_deref())
                .or(w.error.as_deref())
                .map_or("did not run", first_line);
            out.push(note(label, format!("failed: {why}")));
            continue;
        };
        let (cpu, peak, fin, drops) = match w.cost(arm) {
            Some(c) if arm != Arm::Baseline => (
                format!("{:.2} %", c.cpu_pct),
                format!("{:.1}", c.peak_rss_mib),
                format!("{:.1}", c.final_rss_mib),
                if arm == Arm::Bpftrace {
                    "n/a".into()
                } else {
                    drops_text(&c.drops)
                },
            ),
            _ => ("—".into(), "—".into(), "—".into(), "—".into()),
        };
        let (ratio, cost, paired) = if arm == Arm::Baseline {
            ("1.000".into(), "—".into(), "—".into())
        } else {
            (
                format!("{:.3}", f.ratio),
                format!("{} %", signed(f.cost_pct)),
                format!("{} %", signed(f.paired_cost_pct)),
            )
        };
        out.push([
            label,
            value(f.median, m.unit),
            range(&f, m.unit),
            ratio,
            cost,
            paired,
            cpu,
            peak,
            fin,
            drops,
        ]);
    }
    out
}

const HEADERS: [&str; 10] = [
    "arm",
    "median",
    "range (min–max)",
    "×base",
    "cost",
    "paired cost",
    "agent CPU",
    "peak RSS MiB",
    "final RSS MiB",
    "drops",
];

/// A row whose second cell (a note) spans the rest.
fn note(label: String, text: String) -> [String; 10] {
    let mut row: [String; 10] = Default::default();
    row[0] = label;
    row[1] = text;
    row
}

// ---------------------------------------------------------------------------
// Terminal
// ---------------------------------------------------------------------------

pub fn table(r: &Results) -> String {
    let mut all: Vec<(Option<String>, [String; 10])> = Vec::new();
    for w in &r.workloads {
        all.push((Some(w.title.clone()), Default::default()));
        for mi in 0..w.metrics.len() {
            for row in rows(w, mi) {
                all.push((None, row));
            }
        }
    }
    let mut widths = HEADERS.map(|h| h.chars().count());
    for (_, row) in all.iter().filter(|(t, _)| t.is_none()) {
        for (i, c) in row.iter().enumerate() {
            // A failure/n-a note spans the remaining columns.
            if i == 1 && row[2].is_empty() {
                continue;
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String; 10]| {
        let mut s = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
            s.push_str("  ");
        }
        s.trim_end().to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "leaktrace benchmarks ({}, {} round{}; median; cost = extra time, or lost throughput for redis)",
        if r.quick { "quick" } else { "full" },
        r.rounds,
        if r.rounds == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "{}", line(&HEADERS.map(String::from)));
    for (title, row) in &all {
        match title {
            Some(t) => {
                let _ = writeln!(out, "{t}");
            }
            None if row[2].is_empty() && !row[1].is_empty() && row[3].is_empty() => {
                let _ = writeln!(out, "  {:<w$}  {}", row[0], row[1], w = widths[0]);
            }
            None => {
                let _ = writeln!(out, "{}", line(row));
            }
        }
    }
    out.push('\n');
    out.push_str(&capacity_text(r));
    out.push('\n');
    let _ = writeln!(out, "goals (leaktrace run):");
    for g in goals(r) {
        let spread = if g.spread.is_empty() {
            String::new()
        } else {
            format!(" [{}]", g.spread)
        };
        let _ = writeln!(
            out,
            "  {:<9} {} {}: {}{spread}",
            met_text(g.met),
            g.name,
            g.limit,
            g.value
        );
    }
    out
}

fn capacity_text(r: &Results) -> String {
    let mut out = String::new();
    match &r.capacity {
        _ if r.capacity_skipped => {
            let _ = writeln!(out, "capacity: skipped");
        }
        Err(e) => {
            let _ = writeln!(out, "capacity: failed: {e}");
        }
        Ok(steps) => {
            let _ = writeln!(out, "capacity (leaktrace trace --json; k mmap storms + exit churn):");
            let _ = writeln!(
                out,
                "  {:>2}  {:>13}  {:>13}  {:>9}  {:>9}  {:>8}  {:>6}  {:>9}  {:>8}  {:>13}  {:>9}",
                "k",
                "offered ev/s",
                "handled ev/s",
                "offered",
                "seen",
                "dropped",
                "exact",
                "others",
                "exits/s",
                "exits missing",
                "agent CPU"
            );
            for s in steps {
                let _ = writeln!(
                    out,
                    "  {:>2}  {:>13.0}  {:>13.0}  {:>9}  {:>9}  {:>8}  {:>6}  {:>9}  {:>8.0}  {:>13}  {:>7.1} %",
                    s.k,
                    s.offered_per_sec,
                    s.seen_per_sec,
                    s.offered,
                    s.seen,
                    s.dropped,
                    if s.exact { "yes" } else { "no" },
                    s.seen_other,
                    s.exits_per_sec,
                    format!("{}/{}", s.exits_missing, s.exits_expected),
                    s.agent_cpu_pct
                );
            }
            let _ = writeln!(out, "  capacity: {}", capacity_figure(steps));
        }
    }
    out
}

fn capacity_figure(steps: &[Step]) -> String {
    let best = |f: &dyn Fn(&Step) -> bool| {
        steps
            .iter()
            .filter(|s| f(s))
            .max_by(|a, b| a.offered_per_sec.total_cmp(&b.offered_per_sec))
    };
    let Some(clean) = best(&|s: &Step| s.clean()) else {
        return "no step was clean (exit events lost, or bulk events lost without a drop count)".into();
    };
    let mut text = format!(
        "no exit event lost and every bulk event seen or counted as dropped up to {:.0} bulk events/s offered (k={}, {} dropped)",
        clean.offered_per_sec, clean.k, clean.dropped
    );
    match best(&|s: &Step| s.clean() && s.dropped == 0) {
        Some(s) => text.push_str(&format!(
            "; no bulk event dropped up to {:.0}/s (k={})",
            s.offered_per_sec, s.k
        )),
        None => text.push_str("; bulk events were dropped at every rate tried"),
    }
    text
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

pub fn to_json(r: &Results) -> Value {
    let m = &r.machine;
    let workloads: Vec<Value> = r
        .workloads
        .iter()
        .map(|w| {
            let metrics: Vec<Value> = w
                .metrics
                .iter()
                .enumerate()
                .map(|(mi, m)| {
                    let arms: Vec<Value> = Arm::ALL
                        .into_iter()
                        .map(|arm| {
                            if !arm.implemented() {
                                return json!({"arm": arm.key(), "implemented": false});
                            }
                            let samples: Vec<Value> = w.arm(arm).map_or(vec![], |a| a.samples.iter().map(|s| finite(s.values[mi])).collect());
                            let f = w.figure(mi, arm);
                            json!({
                                "arm": arm.key(),
                                "implemented": true,
                                "n": f.map_or(0, |f| f.n),
                                "samples": samples,
                                "median": f.map_or(Value::Null, |f| finite(f.median)),
                                "min": f.map_or(Value::Null, |f| finite(f.min)),
                                "max": f.map_or(Value::Null, |f| finite(f.max)),
                                "ratio": f.map_or(Value::Null, |f| finite(f.ratio)),
                                "cost_pct": f.map_or(Value::Null, |f| finite(f.cost_pct)),
                                "paired_cost_pct": f.map_or(Value::Null, |f| finite(f.paired_cost_pct)),
                                "paired_cost_q1_pct": f.map_or(Value::Null, |f| finite(f.paired_q1_pct)),
                                "paired_cost_q3_pct": f.map_or(Value::Null, |f| finite(f.paired_q3_pct)),
                                "machine_busy_before_pct": w.arm(arm).map_or(vec![], |a| a.samples.iter().map(|s| finite(s.busy_before_pct)).collect()),
                                "foreign_tracers": w.arm(arm).map_or(vec![], |a| a.samples.iter().map(|s| s.foreign_tracers).collect()),
                                "machine_busy_during_pct": w.arm(arm).map_or(vec![], |a| a.samples.iter().map(|s| finite(s.busy_during_pct)).collect()),
                                "error": w.arm(arm).and_then(|a| a.error.clone()),
                            })
                        })
                        .collect();
                    json!({"metric": m.key, "unit": m.unit, "higher_is_better": m.higher_is_better, "goal_pct": m.goal_pct, "arms": arms})
                })
                .collect();
            let agents: Vec<Value> = Arm::ALL
                .into_iter()
                .filter(|a| *a != Arm::Baseline)
                .filter_map(|arm| {
                    w.cost(arm).map(|c| {
                        json!({
                            "arm": arm.key(),
                            "cpu_pct_median": finite(c.cpu_pct),
                            "cpu_pct_max": finite(c.cpu_pct_max),
                            "peak_rss_mib": finite(c.peak_rss_mib),
                            "final_rss_mib_median": finite(c.final_rss_mib),
                            "drops": (arm != Arm::Bpftrace).then_some(&c.drops),
                        })
                    })
                })
                .collect();
            json!({"workload": w.key, "title": w.title, "error": w.error, "metrics": metrics, "agent_cost": agents})
        })
        .collect();
    let capacity = match &r.capacity {
        Err(e) => json!({"error": e}),
        Ok(steps) => json!({
            "figure": capacity_figure(steps),
            "steps": steps.iter().map(|s| json!({
                "k": s.k,
                "offered": s.offered,
                "storm_secs": finite(s.storm_secs),
                "offered_per_sec": finite(s.offered_per_sec),
                "seen": s.seen,
                "seen_per_sec": finite(s.seen_per_sec),
                "seen_other_processes": s.seen_other,
                "dropped_mmap_munmap": s.dropped,
                "dropped_by_kind": s.dropped_by_kind,
                "exact": s.exact,
                "unaccounted": s.unaccounted,
                "excess": s.excess,
                "exits_expected": s.exits_expected,
                "exits_per_sec": finite(s.exits_per_sec),
                "exits_missing": s.exits_missing,
                "exits_duplicated": s.exits_duplicated,
                "exits_wrong_code": s.exits_wrong_code,
                "bad_lines": s.bad_lines,
                "agent_cpu_pct": finite(s.agent_cpu_pct),
                "agent_peak_rss_mib": finite(s.agent_peak_rss_mib),
                "clean": s.clean(),
            })).collect::<Vec<_>>(),
        }),
    };
    let problems = problems(r);
    json!({
        "mode": if r.quick { "quick" } else { "full" },
        "rounds": r.rounds,
        "command": r.command,
        "date": r.date,
        "revision": r.revision,
        "duration_secs": finite(r.duration_secs),
        "machine": {
            "nproc": m.nproc, "kernel": m.kernel, "cpu": m.cpu, "mem_gib": finite(m.mem_gib), "thp": m.thp,
            "busy_before_pct": finite(m.busy_before_pct), "loadavg_before": m.load_before, "loadavg_after": m.load_after,
            "bpftrace": m.bpftrace, "redis": m.redis,
        },
        "workloads": workloads,
        "capacity": capacity,
        "goals": goals(r).iter().map(|g| json!({"goal": g.name, "limit": g.limit, "value": g.value, "per_round": g.spread, "met": g.met})).collect::<Vec<_>>(),
        "problems": problems,
        "ok": problems.is_empty(),
    })
}

// ---------------------------------------------------------------------------
// BENCHMARKS.md
// ---------------------------------------------------------------------------

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn markdown(r: &Results) -> String {
    let m = &r.machine;
    let mut o = String::new();
    let _ = writeln!(o, "# leaktrace benchmarks\n");
    let _ = writeln!(
        o,
        "Written by `{}` on {} (revision {}); the run took {:.0} s. Do not edit by hand: the next full run \
         replaces this file.\n",
        r.command, r.date, r.revision, r.duration_secs
    );
    let _ = writeln!(o, "## Machine\n");
    let _ = writeln!(o, "- CPU: {} × {} (`nproc`), {:.1} GiB RAM", m.nproc, m.cpu, m.mem_gib);
    let _ = writeln!(
        o,
        "- kernel: {} (`uname -r`); transparent huge pages: {}",
        m.kernel, m.thp
    );
    let _ = writeln!(o, "- peer: {}; redis: {}", m.bpftrace, m.redis);
    let _ = writeln!(
        o,
        "- background load: {:.1} % of all CPUs busy in a 2 s sample before the first workload; load average {} before, {} after",
        m.busy_before_pct, m.load_before, m.load_after
    );
    let samples: Vec<&Sample> = r
        .workloads
        .iter()
        .flat_map(|w| w.arms.iter().flat_map(|a| a.samples.iter()))
        .collect();
    let busy_starts = samples.iter().filter(|s| s.busy_before_pct > m.quiet_pct).count();
    let foreign_starts = samples.iter().filter(|s| s.foreign_tracers > 0).count();
    let idle_bg = r
        .workloads
        .iter()
        .find(|w| w.key == "idle")
        .and_then(|w| w.arm(Arm::Baseline))
        .map(|a| median(&a.samples.iter().map(|s| s.busy_during_pct).collect::<Vec<_>>()));
    let _ = writeln!(
        o,
        "- during the run: each run waited (up to {:.0} s, {:.0} s in all) for the machine to be at most {:.0} % busy \
         and free of other tracing agents; {} of {} runs started busier than that, and {} while a leaktrace or \
         bpftrace not started by the benchmark was running (its probes slow the baseline too). With only \
         `sleep` running (idle baseline), all CPUs were {} busy (median): the rest was other people's work.\n",
        m.quiet_wait_secs,
        m.quiet_budget_secs,
        m.quiet_pct,
        busy_starts,
        samples.len(),
        foreign_starts,
        idle_bg.map_or("n/a".into(), |v| format!("{v:.1} %"))
    );

    let _ = writeln!(o, "## Goals (judged on `leaktrace run`)\n");
    let _ = writeln!(
        o,
        "| goal | limit | measured | | per-round check |\n|---|---|---|---|---|"
    );
    for g in goals(r) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | **{}** | {} |",
            g.name,
            g.limit,
            g.value,
            met_text(g.met),
            g.spread
        );
    }
    let _ = writeln!(
        o,
        "\n*measured* compares medians (the figure the goal is judged on). The per-round check pairs each \
         run with the same round's baseline run: *IQR* is the middle half of those per-round costs, and \
         *within noise* means it straddles zero — the run could not tell the agent from no tracing."
    );
    o.push('\n');

    let _ = writeln!(
        o,
        "## Figures\n\n{} rounds; in each round every arm runs each workload once, arms in a rotating order; \
         the median is shown with the range over the rounds. *cost* is the extra wall time relative to the \
         baseline median (timed workloads) or the lost throughput (redis); positive is worse; the goals are judged \
         on it. *paired cost* is the median over the rounds of each run's ratio to the same round's baseline run, \
         which is less sensitive to background load that changes slowly; where the two disagree a lot, the \
         figure is mostly noise. *agent CPU* is \
         the agent process's CPU time (all threads, from `/proc/PID/task/*/schedstat`) divided by the \
         workload's wall time, in % of one core (median over the rounds); *peak RSS* is the largest VmHWM \
         seen, *final RSS* the median VmRSS just before the agent was stopped; *drops* are the `dropped` \
         events' counts summed over all rounds.\n",
        r.rounds
    );
    let _ = writeln!(o, "| workload | {} |", HEADERS.join(" | "));
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for w in &r.workloads {
        let mut first = true;
        for mi in 0..w.metrics.len() {
            for row in rows(w, mi) {
                let title = if first { md_escape(&w.title) } else { String::new() };
                first = false;
                let cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
                let _ = writeln!(o, "| {title} | {} |", cells.join(" | "));
            }
        }
    }
    o.push('\n');

    let _ = writeln!(o, "## Capacity\n");
    let _ = writeln!(
        o,
        "`leaktrace trace --json` (stdout to a file) while k processes run `lt-workload mmaps {}` at once (each \
         makes exactly that many 64 KiB mmap+munmap pairs, flooding the bulk ring buffer) and, for as long as \
         the storms last, `lt-workload exits 7` forks short-lived children one after another (each exits at \
         once with code 7 and makes no mmap of its own; their pids are recorded). Every such child must \
         show exactly one `exit` event with `exit_code` 7. *seen* counts the \
         storms' own 64 KiB mmap/munmap events; *dropped* is the sum of the `dropped` lines for mmap and \
         munmap. The kernel counts drops per kind, not per process, so seen + dropped equals the offered \
         count exactly only when no other process's bulk event was dropped; *others* is how many bulk \
         events of other processes were seen.\n",
        match &r.capacity {
            Ok(s) if !s.is_empty() => (s[0].offered / 2 / s[0].k as u64).to_string(),
            _ => "N".into(),
        }
    );
    match &r.capacity {
        Err(e) => {
            let _ = writeln!(o, "The capacity test failed: {}\n", md_escape(e));
        }
        Ok(steps) => {
            let _ = writeln!(
                o,
                "| k | offered events/s | handled events/s | offered | seen | dropped | seen + dropped = offered | others | exits/s | exits missing / expected | agent CPU |\n|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
            );
            for s in steps {
                let _ = writeln!(
                    o,
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {} / {} | {:.1} % |",
                    s.k,
                    s.offered_per_sec,
                    s.seen_per_sec,
                    s.offered,
                    s.seen,
                    s.dropped,
                    if s.exact {
                        "yes".to_string()
                    } else if s.unaccounted > 0 {
                        format!("no: {} lost silently", s.unaccounted)
                    } else {
                        format!("no: {} more (others' drops)", s.seen + s.dropped - s.offered)
                    },
                    s.seen_other,
                    s.exits_per_sec,
                    s.exits_missing,
                    s.exits_expected,
                    s.agent_cpu_pct
                );
            }
            let _ = writeln!(o, "\nCapacity: {}.\n", capacity_figure(steps));
            let _ = writeln!(
                o,
                "On this machine the storms and the agent share {} CPUs, so the offered rate is bounded by the \
                 CPU the storms get, not chosen freely; more storm processes do not always offer more.\n",
                r.machine.nproc
            );
        }
    }

    let _ = writeln!(o, "## Reading the figures\n");
    for line in readings(r) {
        let _ = writeln!(o, "- {line}");
    }
    o.push('\n');
    let problems = problems(r);
    if !problems.is_empty() {
        let _ = writeln!(o, "## Problems in this run\n");
        for p in problems {
            let _ = writeln!(o, "- {}", md_escape(&p));
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "## Method\n\n\
         - Arms: *baseline* (nothing traced); *leaktrace run* = `leaktrace run --json --report-dir TMP` with \
         stdout to a file; *leaktrace run +stacks* = the same with `--stacks` (sampled page faults with user stacks); *bpftrace* = \
         a script keeping `@x[pid] = count()` maps on `kmem:rss_stat`, `exceptions:page_fault_user`, \
         `syscalls:sys_enter_mmap`, `sys_enter_munmap`, `sys_enter_brk` and `oom:mark_victim` (plus one \
         readiness probe on `sys_enter_kill`) — a peer for scale, not a tool doing the same job.\n\
         - Each workload runs once unrecorded before the first round (warm-up).\n\
         - Each agent is started afresh for every run and the workload starts only once it has attached \
         (`leaktrace: running`; for bpftrace, which prints `Attaching N probes...` *before* attaching, a last \
         probe on `kill(2147480000, 0)` that the harness pokes until it answers) and 0.3 s have passed; it is stopped with SIGINT after \
         the workload and must exit successfully.\n\
         - The probes' own cost is paid in the kernel, in the context of the traced workload: it shows up as \
         the workload's *cost*, not as *agent CPU*. *agent CPU* is only the agent process's work (draining \
         the ring buffers, decoding, reading /proc, writing JSON).\n\
         - The workloads are `lt-workload` modes (testprogs): `faults MIB ROUNDS`, `mmaps COUNT`, \
         `forkexec N /bin/true`; `sleep` for idle; `redis-benchmark -t set,get --csv` against a private \
         `redis-server --save '' --appendonly no` on 127.0.0.1.\n\
         - Differences smaller than the baseline's own round-to-round range are noise: on a 2-core machine \
         shared with other work they can be several %.\n"
    );
    o
}

/// One plain-language sentence (or two) per figure.
pub fn readings(r: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for w in &r.workloads {
        if let Some(e) = &w.error {
            out.push(format!("**{}**: did not run ({}).", w.title, first_line(e)));
            continue;
        }
        for (mi, m) in w.metrics.iter().enumerate() {
            let name = if w.metrics.len() > 1 {
                format!("{}, {}", w.title, metric_prefix(w, m).trim())
            } else {
                w.title.clone()
            };
            let Some(base) = w.figure(mi, Arm::Baseline) else {
                out.push(format!("**{name}**: no baseline figure."));
                continue;
            };
            let spread = (base.max - base.min) / base.median * 100.0;
            let mut s = format!(
                "**{name}**: without tracing the median is {} (the baseline's own rounds spread over {:.1} %).",
                value(base.median, m.unit),
                spread
            );
            let word = if m.higher_is_better { "throughput" } else { "time" };
            if let Some(f) = w.figure(mi, Arm::Run) {
                let verdict = match m.goal_pct {
                    Some(g) if f.cost_pct <= g => format!(" — within the ≤ {g} % goal"),
                    Some(g) => format!(" — the ≤ {g} % goal is missed"),
                    None => String::new(),
                };
                let change = if m.higher_is_better {
                    if f.cost_pct >= 0.0 {
                        format!("{:.1} % less throughput", f.cost_pct)
                    } else {
                        format!("{:.1} % more throughput", -f.cost_pct)
                    }
                } else if f.cost_pct >= 0.0 {
                    format!("{:.1} % more time", f.cost_pct)
                } else {
                    format!("{:.1} % less time", -f.cost_pct)
                };
                let _ = write!(
                    s,
                    " With `leaktrace run` it is {} ({change}){verdict}",
                    value(f.median, m.unit)
                );
                let _ = write!(
                    s,
                    ". Paired with the same round's baseline the cost is {} % (middle half of the rounds: {} % to {} %)",
                    signed(f.paired_cost_pct),
                    signed(f.paired_q1_pct),
                    signed(f.paired_q3_pct)
                );
                if f.paired_n < 3 {
                    let _ = write!(s, " (too few rounds to tell a cost from noise)");
                } else if !f.distinguishable() {
                    let _ = write!(s, ", so this run cannot tell `leaktrace run` from no tracing here");
                } else if f.paired_cost_pct >= 0.5 {
                    let _ = write!(s, ", so the cost is real, not noise");
                }
                s.push('.');
            }
            if let Some(c) = w.cost(Arm::Run).filter(|_| mi == 0) {
                let _ = write!(
                    s,
                    " The agent itself used {:.2} % of one core (max {:.2} %), peaked at {:.1} MiB RSS and ended at {:.1} MiB; drops: {}.",
                    c.cpu_pct,
                    c.cpu_pct_max,
                    c.peak_rss_mib,
                    c.final_rss_mib,
                    drops_text(&c.drops)
                );
            }
            if let Some(f) = w.figure(mi, Arm::Bpftrace) {
                let _ = write!(
                    s,
                    " bpftrace counting the same tracepoints changes the {word} by {} %.",
                    signed(if m.higher_is_better { -f.cost_pct } else { f.cost_pct })
                );
            }
            out.push(s);
        }
    }
    if let Ok(steps) = &r.capacity {
        out.push(format!("**Capacity**: {}.", capacity_figure(steps)));
        for s in steps {
            let lost = if s.exits_missing == 0 {
                "no exit event was lost".to_string()
            } else {
                format!("{} of {} exit events were LOST", s.exits_missing, s.exits_expected)
            };
            let drops = if s.dropped == 0 {
                "no bulk event was dropped".to_string()
            } else {
                format!(
                    "{} bulk events ({:.1} % of those offered) were dropped and counted",
                    s.dropped,
                    100.0 * s.dropped as f64 / s.offered as f64
                )
            };
            out.push(format!(
                "With {} storm process{} offering {:.0} mmap/munmap events/s, the agent wrote {:.0} of them per second; {drops}; {lost}{}.",
                s.k,
                if s.k == 1 { "" } else { "es" },
                s.offered_per_sec,
                s.seen_per_sec,
                if s.unaccounted > 0 { format!("; {} storm events vanished without a drop count", s.unaccounted) } else { String::new() }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 1.0]), 1.0);
    }

    #[test]
    fn quantiles() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&v, 0.25), 2.0);
        assert_eq!(quantile(&v, 0.75), 4.0);
        assert_eq!(quantile(&[1.0, 2.0], 0.5), 1.5);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn signs() {
        assert_eq!(signed(1.234), "+1.2");
        assert_eq!(signed(-0.01), "+0.0");
        assert_eq!(signed(-2.0), "-2.0");
        assert_eq!(signed(f64::NAN), "n/a");
    }
}
