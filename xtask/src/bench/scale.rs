//! The agent's own cost at scale: `leaktrace run` on a host with N idle processes plus a few
//! growing ones, and with a paced fork/exec churn. Each run starts the load, then a fresh agent;
//! once the agent has settled (its first look at every process is excluded), its CPU time over
//! a fixed window and its memory are read from /proc. Loads are interleaved round by round in a
//! rotating order; each load's figure is the mean over the rounds with a t-based 95 % interval.
//!
//! The load is `lt-workload population IDLE GROWING KIB_PER_SEC MAX_MIB` (sleeping children and
//! children touching new memory every few ms, freeing it at a cap; all die with their parent)
//! or `lt-workload forkrate RATE SECS` (fork + exec `/bin/true`, paced).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::agent::Agent;
use super::stats::{Interval, mean_ci, slope_ci};
use super::sys;

/// What the agent runs next to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Nothing added: the machine's own processes.
    Idle,
    /// `idle` sleeping processes plus the plan's growing ones.
    Population { idle: usize },
    /// fork + exec of `/bin/true`, this many per second.
    Forks { rate: u32 },
}

impl Load {
    pub fn key(self) -> String {
        match self {
            Load::Idle => "idle".into(),
            Load::Population { idle } => format!("pop{idle}"),
            Load::Forks { rate } => format!("forks{rate}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub loads: Vec<Load>,
    /// Growing processes added to every population.
    pub growing: usize,
    pub grow_kib_per_sec: u64,
    pub grow_max_mib: u64,
    /// From the agent's `running` line to the start of the window.
    pub settle: Duration,
    /// The measured window.
    pub window: Duration,
    pub rounds: usize,
}

impl Plan {
    pub fn full(rounds: usize) -> Plan {
        Plan {
            loads: vec![
                Load::Idle,
                Load::Population { idle: 1_000 },
                Load::Population { idle: 5_000 },
                Load::Population { idle: 10_000 },
                Load::Forks { rate: 1_000 },
            ],
            growing: 100,
            grow_kib_per_sec: 64,
            grow_max_mib: 8,
            settle: Duration::from_secs(8),
            window: Duration::from_secs(15),
            rounds,
        }
    }

    pub fn quick() -> Plan {
        Plan {
            loads: vec![Load::Population { idle: 200 }, Load::Forks { rate: 200 }],
            growing: 10,
            grow_kib_per_sec: 64,
            grow_max_mib: 2,
            settle: Duration::from_secs(2),
            window: Duration::from_secs(3),
            rounds: 1,
        }
    }

    pub fn title(&self, load: Load) -> String {
        match load {
            Load::Idle => "this machine's own processes only".into(),
            Load::Population { idle } => format!(
                "{} idle + {} growing processes ({} KiB/s each, freed at {} MiB)",
                thousands(idle as u64),
                self.growing,
                self.grow_kib_per_sec,
                self.grow_max_mib
            ),
            Load::Forks { rate } => format!("{} fork+exec of /bin/true per second", thousands(u64::from(rate))),
        }
    }
}

/// `10000` → `10,000`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One agent run under one load.
#[derive(Clone, Debug)]
pub struct Run {
    pub round: usize,
    pub load: Load,
    /// Agent CPU time over the window ÷ the window, % of one core.
    pub cpu_pct: f64,
    pub cpu_ns: u64,
    pub window_secs: f64,
    /// VmRSS at the end of the window, MiB.
    pub rss_mib: f64,
    /// VmHWM at the end of the window, MiB.
    pub hwm_mib: f64,
    /// Processes on the machine during the window (all of /proc).
    pub processes: usize,
    /// Forks the workload made during the window (fork loads).
    pub forks: Option<u64>,
    /// Busy share of all CPUs during the window (everyone's work).
    pub busy_pct: f64,
}

#[derive(Debug, Default)]
pub struct Results {
    pub runs: Vec<Run>,
    /// (load key, error) of runs that failed.
    pub errors: Vec<(String, String)>,
}

/// One load's runs, summarised.
#[derive(Clone, Debug)]
pub struct Summary {
    pub n: usize,
    pub cpu: Option<Interval>,
    pub cpu_min: f64,
    pub cpu_max: f64,
    pub rss: Option<Interval>,
    pub hwm_max: f64,
    pub processes: f64,
    /// Agent ns per fork (fork loads), mean interval.
    pub ns_per_fork: Option<Interval>,
    pub forks_per_sec: f64,
}

impl Results {
    pub fn summary(&self, load: Load) -> Option<Summary> {
        let runs: Vec<&Run> = self.runs.iter().filter(|r| r.load == load).collect();
        if runs.is_empty() {
            return None;
        }
        let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_pct).collect();
        let one = |v: &[f64]| {
            mean_ci(v).or_else(|| {
                v.first().map(|&x| Interval {
                    n: 1,
                    mean: x,
                    lo: f64::NAN,
                    hi: f64::NAN,
                    sd: f64::NAN,
                })
            })
        };
        let ns_per_fork: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.forks.filter(|&f| f > 0).map(|f| r.cpu_ns as f64 / f as f64))
            .collect();
        let fps: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.forks.map(|f| f as f64 / r.window_secs))
            .collect();
        Some(Summary {
            n: runs.len(),
            cpu: one(&cpu),
            cpu_min: cpu.iter().copied().fold(f64::INFINITY, f64::min),
            cpu_max: cpu.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            rss: one(&runs.iter().map(|r| r.rss_mib).collect::<Vec<_>>()),
            hwm_max: runs.iter().map(|r| r.hwm_mib).fold(f64::NAN, f64::max),
            processes: runs.iter().map(|r| r.processes as f64).sum::<f64>() / runs.len() as f64,
            ns_per_fork: one(&ns_per_fork),
            forks_per_sec: if fps.is_empty() {
                f64::NAN
            } else {
                fps.iter().sum::<f64>() / fps.len() as f64
            },
        })
    }

    /// Agent CPU against the number of processes on the machine (idle and population loads):
    /// the least-squares slope in % of a core per process, and the intercept.
    pub fn per_process(&self) -> Option<(Interval, f64)> {
        let pts: Vec<(f64, f64)> = self
            .runs
            .iter()
            .filter(|r| matches!(r.load, Load::Idle | Load::Population { .. }))
            .map(|r| (r.processes as f64, r.cpu_pct))
            .collect();
        let slope = slope_ci(&pts)?;
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        Some((slope, my - slope.mean * mx))
    }
}

/// A running `lt-workload population`: killed (with all its children) when dropped.
struct Population {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Population {
    fn start(workload: &Path, idle: usize, plan: &Plan) -> Result<Population> {
        let mut cmd = Command::new(workload);
        cmd.args([
            "population".to_string(),
            idle.to_string(),
            plan.growing.to_string(),
            plan.grow_kib_per_sec.to_string(),
            plan.grow_max_mib.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().context("could not start `lt-workload population`")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let mut pop = Population { child, stdin };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains("\"ready\"") => Ok(pop),
            Ok(line) => {
                pop.stop();
                bail!("`lt-workload population {idle}` did not start its processes: {line:?}")
            }
            Err(_) => {
                pop.stop();
                bail!("`lt-workload population {idle}` not ready within 120 s")
            }
        }
    }

    /// Close its stdin (it kills and reaps its children), wait; SIGKILL after 60 s (the children
    /// then die with it).
    fn stop(&mut self) {
        close_and_reap(&mut self.child, &mut self.stdin);
    }
}

/// Close a child's stdin (the population's signal to kill and reap its children) and wait for
/// it; SIGKILL after 60 s.
pub(super) fn close_and_reap(child: &mut Child, stdin: &mut Option<ChildStdin>) {
    if let Some(mut s) = stdin.take() {
        let _ = s.flush();
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Population {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes on the machine now.
fn process_count() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
}

pub struct Env<'a> {
    pub leaktrace: &'a Path,
    pub workload: &'a Path,
    pub dir: &'a Path,
}

/// Every round, every load (rotating order).
pub fn run(plan: &Plan, env: &Env<'_>, log: &dyn Fn(&str)) -> Results {
    let mut res = Results::default();
    for round in 0..plan.rounds {
        let mut order = plan.loads.clone();
        order.rotate_left(round % plan.loads.len().max(1));
        for load in order {
            match one(round, load, plan, env) {
                Ok(r) => {
                    log(&format!(
                        "  scale round {}/{} {:<10} agent {:.3} % CPU, {:.1} MiB RSS ({:.1} peak), {} processes{} [machine {:.0} % busy]",
                        round + 1,
                        plan.rounds,
                        load.key(),
                        r.cpu_pct,
                        r.rss_mib,
                        r.hwm_mib,
                        r.processes,
                        r.forks.map_or(String::new(), |f| format!(", {f} forks")),
                        r.busy_pct
                    ));
                    res.runs.push(r);
                }
                Err(e) => {
                    log(&format!(
                        "  scale round {}/{} {}: FAILED: {e:#}",
                        round + 1,
                        plan.rounds,
                        load.key()
                    ));
                    res.errors.push((load.key(), format!("{e:#}")));
                }
            }
        }
    }
    res
}

fn one(round: usize, load: Load, plan: &Plan, env: &Env<'_>) -> Result<Run> {
    let pop = match load {
        Load::Population { idle } => Some(Population::start(env.workload, idle, plan)?),
        _ => None,
    };
    let tag = format!("scale-{}-{round}", load.key());
    let mut cmd = Command::new(env.leaktrace);
    cmd.args(["run", "--json", "--report-dir"])
        .arg(env.dir.join(format!("reports-{tag}")));
    let out: PathBuf = env.dir.join(format!("agent-{tag}.jsonl"));
    let agent = Agent::spawn("leaktrace run", cmd, "leaktrace: running", Some(out.clone()))?;
    std::thread::sleep(plan.settle);
    let processes = process_count();
    let jiffies = sys::cpu_jiffies();
    let cpu0 = agent.cpu_ns();
    let start = Instant::now();
    let forks = match load {
        Load::Forks { rate } => {
            let o = Command::new(env.workload)
                .args([
                    "forkrate".to_string(),
                    rate.to_string(),
                    format!("{}", plan.window.as_secs_f64()),
                ])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .context("could not run `lt-workload forkrate`")?;
            if !o.status.success() {
                bail!("`lt-workload forkrate` failed ({})", o.status);
            }
            let text = String::from_utf8_lossy(&o.stdout);
            let v: serde_json::Value =
                serde_json::from_str(text.trim()).with_context(|| format!("forkrate printed {text:?}"))?;
            Some(v["forks"].as_u64().context("no fork count")?)
        }
        _ => {
            std::thread::sleep(plan.window);
            None
        }
    };
    let window_secs = start.elapsed().as_secs_f64();
    let cpu1 = agent.cpu_ns();
    let busy_pct = sys::busy_between(jiffies, sys::cpu_jiffies());
    let (hwm_mib, rss_mib) = agent.memory_mib();
    agent.stop()?;
    drop(pop);
    let _ = std::fs::remove_file(&out);
    let cpu_ns = cpu1.saturating_sub(cpu0);
    // Let the machine settle (processes reaped, memory freed) before the next run.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Run {
        round,
        load,
        cpu_pct: 100.0 * cpu_ns as f64 / 1e9 / window_secs,
        cpu_ns,
        window_secs,
        rss_mib,
        hwm_mib,
        processes,
        forks,
        busy_pct,
    })
}

/// The default size of the agent's process table (`--max-processes`): beyond it, processes are
/// counted as refused and not tracked.
pub const DEFAULT_MAX_PROCESSES: usize = 8_192;
/// The CPU budget the largest process count is judged against (% of one core).
pub const BUDGET_PCT: f64 = 1.0;

impl Results {
    /// The largest process count within [`BUDGET_PCT`] by the per-process line (its central
    /// estimate, and a conservative one from the slope's upper bound), or None without a slope.
    pub fn within_budget(&self) -> Option<(f64, f64)> {
        let (slope, intercept) = self.per_process()?;
        let at = |b: f64| {
            if b > 0.0 {
                (BUDGET_PCT - intercept) / b
            } else {
                f64::INFINITY
            }
        };
        Some((at(slope.mean), at(slope.hi)))
    }
}

fn ci(i: Option<Interval>, digits: usize) -> String {
    match i {
        Some(i) if i.lo.is_finite() => format!("{:.d$} ({:.d$} … {:.d$})", i.mean, i.lo, i.hi, d = digits),
        Some(i) => format!("{:.d$} (one run)", i.mean, d = digits),
        None => "n/a".into(),
    }
}

/// The BENCHMARKS.md section.
pub fn markdown(plan: &Plan, r: &Results) -> String {
    let mut o = String::new();
    o.push_str("## Agent cost at scale\n\n");
    o.push_str(&format!(
        "`leaktrace run --json` with its defaults (1 s interval, a table of {} processes) next to each load below; \
         {} round{}, the loads interleaved in a rotating order. Each run starts the load, then a fresh agent, waits \
         {} s (the agent's first look at every process is left out), then reads the agent's CPU time (all threads, \
         `/proc/PID/task/*/schedstat`) over {} s and its VmRSS at the end. Figures are the mean over the rounds with \
         a t-based 95 % interval. *processes* counts everything in /proc during the window (this machine runs a few \
         hundred of its own).\n\n",
        thousands(DEFAULT_MAX_PROCESSES as u64),
        plan.rounds,
        if plan.rounds == 1 { "" } else { "s" },
        plan.settle.as_secs(),
        plan.window.as_secs()
    ));
    o.push_str(
        "| load | processes | agent CPU, % of one core (95 % CI) | range | RSS MiB (95 % CI) | peak RSS MiB | agent CPU per event |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for &load in &plan.loads {
        let Some(s) = r.summary(load) else {
            let why = r
                .errors
                .iter()
                .find(|(k, _)| *k == load.key())
                .map_or("did not run", |(_, e)| e.lines().next().unwrap_or(""));
            o.push_str(&format!(
                "| {} | failed: {} | | | | | |\n",
                plan.title(load),
                why.replace('|', "\\|")
            ));
            continue;
        };
        let per_event = match s.ns_per_fork {
            Some(f) => format!("{:.0} µs per fork ({:.0} forks/s)", f.mean / 1000.0, s.forks_per_sec),
            None => "—".into(),
        };
        o.push_str(&format!(
            "| {} | {:.0} | {} | {:.3} … {:.3} | {} | {:.1} | {} |\n",
            plan.title(load),
            s.processes,
            ci(s.cpu, 3),
            s.cpu_min,
            s.cpu_max,
            ci(s.rss, 1),
            s.hwm_max,
            per_event
        ));
    }
    o.push('\n');
    if let (Some((slope, intercept)), Some((n, n_safe))) = (r.per_process(), r.within_budget()) {
        let ns = |pct: f64| pct / 100.0 * 1e9;
        o.push_str(&format!(
            "**Per process**: a least-squares line through every run of the idle and population loads gives \
             {:.4} % of a core per 1,000 processes (95 % CI {:.4} … {:.4}), i.e. {:.0} ns of agent CPU per process \
             per second, on top of {:.3} %. By that line the agent stays within {BUDGET_PCT} % of a core up to about \
             **{}** processes ({} by the slope's upper bound). Tracking stops at the table's default size of {} \
             processes (`--max-processes`): on a bigger host the rest are refused (counted, not tracked), so with \
             the defaults the agent handles **{}** processes within budget.\n\n",
            slope.mean * 1000.0,
            slope.lo * 1000.0,
            slope.hi * 1000.0,
            ns(slope.mean),
            intercept,
            big(n),
            big(n_safe),
            thousands(DEFAULT_MAX_PROCESSES as u64),
            big(n_safe.min(DEFAULT_MAX_PROCESSES as f64)),
        ));
    }
    if !r.errors.is_empty() {
        o.push_str(&format!(
            "{} scale run(s) failed; the first: {}\n\n",
            r.errors.len(),
            r.errors[0].1.lines().next().unwrap_or("").replace('|', "\\|")
        ));
    }
    o
}

fn big(n: f64) -> String {
    if n.is_finite() {
        thousands((n.max(0.0) / 100.0).floor() as u64 * 100)
    } else {
        "any number of".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_numbers() {
        assert_eq!(Load::Population { idle: 5000 }.key(), "pop5000");
        assert_eq!(Load::Forks { rate: 1000 }.key(), "forks1000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn summaries_and_the_per_process_slope() {
        let run = |round, load, processes, cpu_pct| Run {
            round,
            load,
            cpu_pct,
            cpu_ns: 0,
            window_secs: 10.0,
            rss_mib: 30.0,
            hwm_mib: 31.0,
            processes,
            forks: None,
            busy_pct: 0.0,
        };
        let mut r = Results::default();
        for round in 0..3 {
            r.runs.push(run(round, Load::Idle, 100, 0.1 + 0.01 * round as f64));
            r.runs.push(run(
                round,
                Load::Population { idle: 1000 },
                1100,
                0.2 + 0.01 * round as f64,
            ));
        }
        let s = r.summary(Load::Idle).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.cpu.unwrap().mean - 0.11).abs() < 1e-9);
        let (slope, intercept) = r.per_process().unwrap();
        assert!((slope.mean - 0.1 / 1000.0).abs() < 1e-9, "{slope:?}");
        assert!((intercept - (0.11 - 100.0 * 0.1 / 1000.0)).abs() < 1e-9);
        assert!(r.summary(Load::Forks { rate: 5 }).is_none());
    }
}
