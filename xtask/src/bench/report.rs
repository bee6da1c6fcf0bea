//! Results: medians and ratios, goals, the terminal table, `--json`, and BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::agent::{Arm, Cost};
use super::capacity::Step;
use super::stats::{Interval, Verdict, mean_ci, paired_cost_pct};
use super::workload::Metric;
use super::{kcost, scale};

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
    /// `kernel.bpf_stats_enabled` during the timed runs (someone else may have turned it on).
    pub bpf_stats_on: Option<bool>,
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
    /// The agent's cost at scale (None: not run).
    pub scale: Option<ScaleRun>,
    /// The programs' kernel cost (None: not run).
    pub kcost: Option<kcost::Results>,
    /// The soak section of the BENCHMARKS.md being replaced, kept as it is.
    pub soak_section: Option<String>,
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
    /// % extra time (timed workloads) or % lost throughput (redis) of the medians: positive is
    /// worse. Shown for reference; the goals are judged on `paired`.
    pub cost_pct: f64,
    /// The cost paired round by round with that round's baseline run: the mean per-round
    /// log-ratio turned into % (see `stats::paired_cost_pct`), with its 95 % interval. None
    /// with fewer than two paired rounds.
    pub paired: Option<Interval>,
}

impl Figure {
    /// Whether the paired interval lies wholly on one side of zero: otherwise the run cannot
    /// tell the arm from the baseline.
    pub fn distinguishable(&self) -> bool {
        self.paired.is_some_and(|i| i.n >= 3 && (i.lo > 0.0 || i.hi < 0.0))
    }

    pub fn paired_n(&self) -> usize {
        self.paired.map_or(0, |i| i.n)
    }
}

/// The agent's cost over the rounds.
#[derive(Clone, Debug)]
pub struct CostSummary {
    pub cpu_pct: f64,
    /// Mean agent CPU over the rounds with its 95 % interval.
    pub cpu: Option<Interval>,
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
        let pairs: Vec<(f64, f64)> = self
            .arm(arm)?
            .samples
            .iter()
            .filter_map(|s| {
                base_samples
                    .iter()
                    .find(|b| b.round == s.round)
                    .map(|b| (s.values[metric], b.values[metric]))
            })
            .collect();
        Some(Figure {
            n: own.len(),
            median: med,
            min,
            max,
            ratio,
            cost_pct: cost(ratio),
            paired: paired_cost_pct(&pairs, hib),
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
            cpu: mean_ci(&cpu),
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
/// Allocation sites (`run --stacks`, `sites --pid`): at most this % extra time / lost throughput
/// on the page-fault storm and redis, and this % of a core of agent CPU there.
pub const SITES_GOAL_PCT: f64 = 2.0;
pub const SITES_CPU_GOAL_PCT: f64 = 2.0;

#[derive(Clone, Debug)]
pub struct Goal {
    pub name: String,
    pub limit: String,
    /// The figure judged, with its 95 % interval when it has one.
    pub value: String,
    /// More about the figure (the medians, the per-round scatter).
    pub spread: String,
    pub verdict: Verdict,
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

/// `+1.2 % (95 % CI -0.3 … +2.7 %)`.
pub fn ci_text(i: &Interval, unit: &str, signed_values: bool) -> String {
    let f = |x: f64| if signed_values { signed(x) } else { format!("{x:.2}") };
    if i.lo.is_finite() && i.hi.is_finite() {
        format!("{}{unit} (95 % CI {} … {}{unit})", f(i.mean), f(i.lo), f(i.hi))
    } else {
        format!("{}{unit} (one run: no interval)", f(i.mean))
    }
}

/// One cost goal of `arm` on metric `i` of `w`: the paired interval against `limit`.
fn cost_goal(w: &WorkloadRun, i: usize, arm: Arm, name: String, limit: f64) -> Goal {
    let f = w.figure(i, arm);
    let paired = f.and_then(|f| f.paired);
    Goal {
        name,
        limit: format!("≤ {limit} %"),
        value: paired.map_or("no figure".into(), |p| ci_text(&p, " %", true)),
        spread: f.map_or(String::new(), |f| {
            format!(
                "{} paired rounds, one round's scatter ±{:.1} %; medians {} %",
                f.paired_n(),
                f.paired.map_or(f64::NAN, |p| p.sd),
                signed(f.cost_pct)
            )
        }),
        verdict: Verdict::of(paired.as_ref(), limit),
    }
}

/// The allocation-site goals: `run --stacks` and `sites --pid` on the page-fault storm and redis.
fn site_goals(r: &Results) -> Vec<Goal> {
    let mut out = Vec::new();
    for arm in [Arm::RunStacks, Arm::Sites] {
        let mut cpu: Option<(&str, f64)> = None;
        for w in r.workloads.iter().filter(|w| matches!(w.key, "faults" | "redis")) {
            for (i, m) in w.metrics.iter().enumerate() {
                let name = format!("`{}`: {}", arm.label(), goal_name(w.key, m.key));
                out.push(cost_goal(w, i, arm, name, SITES_GOAL_PCT));
            }
            if let Some(c) = w.cost(arm)
                && cpu.is_none_or(|(_, v)| c.cpu_pct > v)
            {
                cpu = Some((w.key, c.cpu_pct));
            }
        }
        out.push(Goal {
            name: format!("`{}`: agent CPU, % of one core (faults, redis)", arm.label()),
            limit: format!("≤ {SITES_CPU_GOAL_PCT} %"),
            value: cpu.map_or("no figure".into(), |(w, v)| format!("worst {v:.2} % ({w})")),
            spread: String::new(),
            verdict: match cpu {
                None => Verdict::NoFigure,
                Some((_, v)) if v <= SITES_CPU_GOAL_PCT => Verdict::Met,
                Some(_) => Verdict::Missed,
            },
        });
    }
    out
}

/// The goals: the workloads' costs and the agent's own cost, judged on the `leaktrace run` arm,
/// then the agent's cost at scale.
pub fn goals(r: &Results) -> Vec<Goal> {
    let arm = Arm::Run;
    let mut out = Vec::new();
    for w in &r.workloads {
        for (i, m) in w.metrics.iter().enumerate() {
            let Some(limit) = m.goal_pct else { continue };
            out.push(cost_goal(w, i, arm, goal_name(w.key, m.key), limit));
        }
    }
    let costs: Vec<(&WorkloadRun, CostSummary)> =
        r.workloads.iter().filter_map(|w| w.cost(arm).map(|c| (w, c))).collect();
    let mean = |c: &CostSummary| c.cpu.map_or(c.cpu_pct, |i| i.mean);
    let worst_cpu = costs.iter().max_by(|a, b| mean(&a.1).total_cmp(&mean(&b.1)));
    out.push(Goal {
        name: "agent CPU while the workloads run, % of one core (worst workload)".into(),
        limit: format!("≤ {CPU_GOAL_PCT} %"),
        value: match worst_cpu {
            Some((w, c)) => match &c.cpu {
                Some(i) => format!("{} ({})", ci_text(i, " %", false), w.key),
                None => format!("{:.2} % ({}; one run)", c.cpu_pct, w.key),
            },
            None => "no figure".into(),
        },
        spread: String::new(),
        verdict: Verdict::of(worst_cpu.and_then(|(_, c)| c.cpu.as_ref()), CPU_GOAL_PCT),
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
        spread: "a maximum, no interval".into(),
        verdict: match worst_rss {
            Some((_, c)) if c.peak_rss_mib <= RSS_GOAL_MIB => Verdict::Met,
            Some((_, c)) if c.peak_rss_mib.is_finite() => Verdict::Missed,
            _ => Verdict::NoFigure,
        },
    });
    if let Some(sc) = &r.scale {
        out.extend(scale_goals(sc));
    }
    out.extend(site_goals(r));
    out
}

/// The agent's cost at scale against the issue-16 goals.
fn scale_goals(sc: &ScaleRun) -> Vec<Goal> {
    let mut out = Vec::new();
    let cpu_goal = |load: scale::Load, name: String, limit: f64, out: &mut Vec<Goal>| {
        let Some(s) = sc.results.summary(load) else { return };
        out.push(Goal {
            name,
            limit: format!("≤ {limit} %"),
            value: s.cpu.map_or("no figure".into(), |i| ci_text(&i, " %", false)),
            spread: format!(
                "{} rounds, range {:.3} … {:.3} %{}",
                s.n,
                s.cpu_min,
                s.cpu_max,
                s.ns_per_fork.map_or(String::new(), |f| format!(
                    "; {:.0} µs of agent CPU per fork",
                    f.mean / 1000.0
                ))
            ),
            verdict: Verdict::of(s.cpu.as_ref(), limit),
        });
    };
    let g = sc.plan.growing;
    cpu_goal(
        scale::Load::Population { idle: 5_000 },
        format!("5,000 idle + {g} growing processes: agent CPU, % of one core"),
        0.5,
        &mut out,
    );
    if let Some(s) = sc.results.summary(scale::Load::Population { idle: 5_000 }) {
        out.push(Goal {
            name: format!("5,000 idle + {g} growing processes: agent RSS (VmRSS at the end of the window)"),
            limit: format!("≤ {SCALE_RSS_GOAL_MIB} MiB"),
            value: s.rss.map_or("no figure".into(), |i| ci_text(&i, " MiB", false)),
            spread: format!("peak (VmHWM) {:.1} MiB", s.hwm_max),
            verdict: Verdict::of(s.rss.as_ref(), SCALE_RSS_GOAL_MIB),
        });
    }
    cpu_goal(
        scale::Load::Population { idle: 10_000 },
        format!("10,000 idle + {g} growing processes: agent CPU, % of one core"),
        1.0,
        &mut out,
    );
    cpu_goal(
        scale::Load::Forks { rate: 1_000 },
        "1,000 fork+exec per second: agent CPU, % of one core".into(),
        2.0,
        &mut out,
    );
    out
}

/// The scale goal on memory (5,000 idle + 100 growing processes).
pub const SCALE_RSS_GOAL_MIB: f64 = 48.0;

/// The scale runs and the plan they followed.
#[derive(Debug)]
pub struct ScaleRun {
    pub plan: scale::Plan,
    pub results: scale::Results,
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
    if let Some(sc) = &r.scale {
        for (k, e) in &sc.results.errors {
            p.push(format!("scale {k}: {}", first_line(e)));
        }
        for load in &sc.plan.loads {
            if sc
                .results
                .summary(*load)
                .is_none_or(|s| !s.cpu.is_some_and(|c| c.mean.is_finite()))
            {
                p.push(format!("scale {}: no agent CPU figure", load.key()));
            }
        }
    }
    if let Some(k) = &r.kcost {
        for e in &k.errors {
            p.push(format!("kernel cost: {}", first_line(e)));
        }
        if k.jobs.is_empty() && k.errors.is_empty() {
            p.push("kernel cost: no workload measured".into());
        }
        for j in &k.jobs {
            if j.progs.is_empty() {
                p.push(format!("kernel cost {}: no program ran", j.job.key));
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
                f.paired.map_or("n/a".into(), |p| {
                    if p.lo.is_finite() {
                        format!("{} % [{} … {}]", signed(p.mean), signed(p.lo), signed(p.hi))
                    } else {
                        format!("{} %", signed(p.mean))
                    }
                }),
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
    "paired cost [95 % CI]",
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
        if r.quick {
            "quick: a smoke test on the debug build"
        } else {
            "full"
        },
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
    if let Some(sc) = &r.scale {
        let _ = writeln!(
            out,
            "agent cost at scale (leaktrace run; mean over {} round(s)):",
            sc.plan.rounds
        );
        for load in &sc.plan.loads {
            match sc.results.summary(*load) {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "  {:<58} {:>6.0} processes  CPU {}  RSS {:.1} MiB (peak {:.1}){}",
                        sc.plan.title(*load),
                        s.processes,
                        s.cpu.map_or("n/a".into(), |i| ci_text(&i, " %", false)),
                        s.rss.map_or(f64::NAN, |i| i.mean),
                        s.hwm_max,
                        s.ns_per_fork
                            .map_or(String::new(), |f| format!("  {:.0} µs/fork", f.mean / 1000.0))
                    );
                }
                None => {
                    let _ = writeln!(out, "  {:<58} failed", sc.plan.title(*load));
                }
            }
        }
        out.push('\n');
    }
    if let Some(k) = &r.kcost {
        let _ = writeln!(out, "kernel cost of the BPF programs (run_time_ns / run_cnt):");
        for j in &k.jobs {
            let _ = writeln!(
                out,
                "  {:<12} {:>7.0} ns per {} ({})",
                j.job.key,
                j.ns_per_event(),
                j.job.event,
                j.progs
                    .iter()
                    .take(4)
                    .map(|p| format!(
                        "{} {:.0} ns × {:.2}",
                        p.name,
                        p.ns_per_call(),
                        p.calls_per_event(j.events)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "goals (leaktrace run):");
    for g in goals(r) {
        let spread = if g.spread.is_empty() {
            String::new()
        } else {
            format!(" [{}]", g.spread)
        };
        let _ = writeln!(
            out,
            "  {:<12} {} {}: {}{spread}",
            g.verdict.text(),
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
                                "paired_cost_pct": f.and_then(|f| f.paired).map_or(Value::Null, |p| finite(p.mean)),
                                "paired_cost_ci95_pct": f.and_then(|f| f.paired).map_or(Value::Null, |p| json!([finite(p.lo), finite(p.hi)])),
                                "paired_round_sd_pct": f.and_then(|f| f.paired).map_or(Value::Null, |p| finite(p.sd)),
                                "paired_rounds": f.map_or(0, |f| f.paired_n()),
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
        "scale": r.scale.as_ref().map(scale_json),
        "kernel_cost": r.kcost.as_ref().map(|k| json!({
            "stats_already_on": k.stats_already_on,
            "errors": k.errors,
            "workloads": k.jobs.iter().map(|j| json!({
                "workload": j.job.key,
                "event": j.job.event,
                "events": j.events,
                "ns_per_event": finite(j.ns_per_event()),
                "programs": j.progs.iter().map(|p| json!({
                    "name": p.name,
                    "calls": p.calls,
                    "background_calls": p.background_calls,
                    "run_time_ns": p.run_time_ns,
                    "ns_per_call": finite(p.ns_per_call()),
                    "calls_per_event": finite(p.calls_per_event(j.events)),
                    "ns_per_event": finite(p.ns_per_event(j.events)),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        "goals": goals(r).iter().map(|g| json!({
            "goal": g.name, "limit": g.limit, "value": g.value, "detail": g.spread, "verdict": g.verdict.text(),
            "met": match g.verdict { Verdict::Met => Some(true), Verdict::Missed => Some(false), _ => None },
        })).collect::<Vec<_>>(),
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
        "- `kernel.bpf_stats_enabled` during the timed runs: {} (when on, every BPF program run also reads the \
         clock twice: the timed costs include that)",
        match m.bpf_stats_on {
            Some(true) => "**on** (turned on by someone else on this shared machine)",
            Some(false) => "off",
            None => "unknown",
        }
    );
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

    let _ = writeln!(
        o,
        "## Goals (judged on `leaktrace run`; allocation sites on `run --stacks` and `sites --pid`)\n"
    );
    let _ = writeln!(
        o,
        "| goal | limit | measured (mean, 95 % CI) | | detail |\n|---|---|---|---|---|"
    );
    for g in goals(r) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | **{}** | {} |",
            g.name,
            g.limit,
            g.value,
            g.verdict.text(),
            g.spread
        );
    }
    let _ = writeln!(
        o,
        "\nA goal is judged on the 95 % confidence interval of its figure: **met** when the whole interval is \
         within the limit, **MISSED** only when the whole interval lies beyond it, **not resolved** when it \
         straddles the limit (more rounds, or a quieter machine, would tell). Workload costs are paired: each \
         run is divided by the baseline run of the same round, the mean of the per-round log-ratios is taken \
         with its t-interval and turned back into % (see *Method*). *one round's scatter* is the standard \
         deviation of a single round's cost: the interval's half-width is about 2.1 × that ÷ √rounds."
    );
    o.push('\n');

    let _ = writeln!(
        o,
        "## Figures\n\n{} rounds; in each round every arm runs each workload once, arms in a rotating order; \
         the median is shown with the range over the rounds. *cost* is the extra wall time relative to the \
         baseline median (timed workloads) or the lost throughput (redis); positive is worse. *paired cost* is \
         the mean over the rounds of each run's log-ratio to the same round's baseline run, in %, with its \
         95 % interval: less sensitive to background load that changes slowly; the goals are judged on it. \
         *agent CPU* is \
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

    if let Some(sc) = &r.scale {
        o.push_str(&scale::markdown(&sc.plan, &sc.results));
    }
    if let Some(k) = &r.kcost {
        o.push_str(&kcost_markdown(r, k));
    }
    if let Some(soak) = &r.soak_section {
        o.push_str(soak.trim_end());
        o.push_str("\n\n");
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

fn interval_json(i: Option<Interval>) -> Value {
    i.map_or(
        Value::Null,
        |i| json!({"n": i.n, "mean": finite(i.mean), "ci95": [finite(i.lo), finite(i.hi)], "sd": finite(i.sd)}),
    )
}

fn scale_json(sc: &ScaleRun) -> Value {
    let budget = sc.results.within_budget();
    json!({
        "rounds": sc.plan.rounds,
        "settle_secs": sc.plan.settle.as_secs_f64(),
        "window_secs": sc.plan.window.as_secs_f64(),
        "loads": sc.plan.loads.iter().map(|&l| {
            let s = sc.results.summary(l);
            json!({
                "load": l.key(),
                "title": sc.plan.title(l),
                "runs": s.as_ref().map_or(0, |s| s.n),
                "processes": s.as_ref().map_or(Value::Null, |s| finite(s.processes)),
                "agent_cpu_pct": interval_json(s.as_ref().and_then(|s| s.cpu)),
                "agent_rss_mib": interval_json(s.as_ref().and_then(|s| s.rss)),
                "agent_peak_rss_mib": s.as_ref().map_or(Value::Null, |s| finite(s.hwm_max)),
                "agent_ns_per_fork": interval_json(s.as_ref().and_then(|s| s.ns_per_fork)),
            })
        }).collect::<Vec<_>>(),
        "runs": sc.results.runs.iter().map(|r| json!({
            "round": r.round, "load": r.load.key(), "cpu_pct": finite(r.cpu_pct), "rss_mib": finite(r.rss_mib),
            "hwm_mib": finite(r.hwm_mib), "processes": r.processes, "forks": r.forks, "busy_pct": finite(r.busy_pct),
        })).collect::<Vec<_>>(),
        "per_process_pct": sc.results.per_process().map_or(Value::Null, |(s, _)| interval_json(Some(s))),
        "within_budget_processes": budget.map_or(Value::Null, |(n, safe)| json!({"estimate": finite(n), "conservative": finite(safe)})),
        "errors": sc.results.errors.iter().map(|(k, e)| json!({"load": k, "error": e})).collect::<Vec<_>>(),
    })
}

/// The timed runs' paired extra time per workload event (ns, with its interval), for workload
/// `key` whose run makes `events_per_run` events.
fn timed_ns_per_event(r: &Results, key: &str, events_per_run: u64) -> Option<Interval> {
    let w = r.workloads.iter().find(|w| w.key == key)?;
    let base = w.figure(0, Arm::Baseline)?.median;
    let p = w.figure(0, Arm::Run)?.paired?;
    let ns = |pct: f64| pct / 100.0 * base * 1e9 / events_per_run as f64;
    Some(Interval {
        n: p.n,
        mean: ns(p.mean),
        lo: ns(p.lo),
        hi: ns(p.hi),
        sd: f64::NAN,
    })
}

fn kcost_markdown(r: &Results, k: &kcost::Results) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## Kernel cost of the programs
"
    );
    let _ = writeln!(
        o,
        "Measured apart from the timed runs, from the kernel's own statistics of every program of the agent \
         (`run_time_ns` / `run_cnt` in `/proc/AGENT/fdinfo`, counted while `kernel.bpf_stats_enabled` is on{}). \
         Each workload runs under a fresh `leaktrace run`; a window of the same length without it follows, and \
         its calls (other processes on the machine) are subtracted. *calls per event* and *ns per event* are per \
         event of the workload, from its own exact count (pages touched, calls made, processes started). \
         The last column is the same cost seen from outside: the timed runs' paired extra time of the workload \
         (goal table) divided by its events — it also holds what the programs' statistics cannot see (the \
         tracepoint's own dispatch, cache effects).\n",
        if k.stats_already_on {
            "; it was already on, turned on by someone else"
        } else {
            "; the harness turned it on for this phase only (`BPF_ENABLE_STATS`)"
        }
    );
    let _ = writeln!(
        o,
        "| workload | events | program | calls per event | ns per call | ns per event | timed extra ns per event (95 % CI) |\n|---|---:|---|---:|---:|---:|---:|"
    );
    for j in &k.jobs {
        let timed = timed_ns_per_event(r, j.job.key, j.job.events).map_or("—".into(), |i| {
            if i.lo.is_finite() {
                format!("{:.0} ({:.0} … {:.0})", i.mean, i.lo, i.hi)
            } else {
                format!("{:.0}", i.mean)
            }
        });
        let _ = writeln!(
            o,
            "| {} | {} × {} | **all programs** | | | **{:.0}** | {timed} |",
            md_escape(&j.job.title),
            j.events,
            j.job.event,
            j.ns_per_event()
        );
        for p in &j.progs {
            let _ = writeln!(
                o,
                "| | | {} | {:.3} | {:.0} | {:.1} | |",
                p.name,
                p.calls_per_event(j.events),
                p.ns_per_call(),
                p.ns_per_event(j.events)
            );
        }
    }
    for e in &k.errors {
        let _ = writeln!(o, "\nFailed: {}", md_escape(first_line(e)));
    }
    o.push('\n');
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
                let verdict = match (m.goal_pct, Verdict::of(f.paired.as_ref(), m.goal_pct.unwrap_or(0.0))) {
                    (Some(g), Verdict::Met) => format!(" — the ≤ {g} % goal is met"),
                    (Some(g), Verdict::Missed) => format!(" — the ≤ {g} % goal is missed"),
                    (Some(g), Verdict::NotResolved) => {
                        format!(" — the run cannot tell whether the ≤ {g} % goal is met")
                    }
                    _ => String::new(),
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
                if let Some(p) = f.paired {
                    let _ = write!(
                        s,
                        " (medians). Paired with the same round's baseline the cost is {}",
                        ci_text(&p, " %", true)
                    );
                }
                if f.paired_n() < 3 {
                    let _ = write!(s, " (too few rounds to tell a cost from noise)");
                } else if !f.distinguishable() {
                    let _ = write!(s, ", so this run cannot tell `leaktrace run` from no tracing here");
                } else if f.paired.is_some_and(|p| p.lo > 0.0) {
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
    fn signs() {
        assert_eq!(signed(1.234), "+1.2");
        assert_eq!(signed(-0.01), "+0.0");
        assert_eq!(signed(-2.0), "-2.0");
        assert_eq!(signed(f64::NAN), "n/a");
    }
}
