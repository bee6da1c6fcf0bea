//! The soak: one `leaktrace run` for an hour (or `soak=SECS`) on a host with 5,000 idle and 100
//! growing processes and a light fork/exec churn, sampling the agent's CPU and memory every
//! `STEP`. A figure is flat when its least-squares drift over the soak (slope × duration, after
//! a warm-up) stays under a small threshold — judged on the drift's 95 % interval like every
//! other goal. Not part of CI (too long), nor of the default full run: `cargo xtask bench --
//! soak`; its section of BENCHMARKS.md is kept when a full run rewrites the file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::agent::Agent;
use super::stats::{Interval, Verdict, mean_ci, slope_ci};

/// Sampling step.
pub const STEP: Duration = Duration::from_secs(30);
/// Samples before this are the warm-up (timelines filling, first classifications).
pub const WARMUP: Duration = Duration::from_secs(120);
/// Idle and growing processes, and the churn rate (fork+exec per second).
pub const IDLE: usize = 5_000;
pub const GROWING: usize = 100;
pub const CHURN_PER_SEC: u32 = 20;

/// CPU is flat when its drift over the soak is at most this (percentage points of a core) or
/// this share of its level, whichever is larger.
pub const CPU_DRIFT_PP: f64 = 0.05;
pub const CPU_DRIFT_SHARE: f64 = 0.10;
/// RSS is flat when its drift is at most this (MiB) or this share of its level.
pub const RSS_DRIFT_MIB: f64 = 1.0;
pub const RSS_DRIFT_SHARE: f64 = 0.03;

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds since the agent attached.
    pub t: f64,
    /// Agent CPU over the last step, % of one core.
    pub cpu_pct: f64,
    pub rss_mib: f64,
    pub hwm_mib: f64,
    pub processes: usize,
}

#[derive(Debug)]
pub struct Results {
    pub secs: f64,
    pub samples: Vec<Sample>,
    pub forks: u64,
    pub date: String,
    pub revision: String,
    pub load: String,
}

/// A figure's drift over the soak after the warm-up.
#[derive(Clone, Copy, Debug)]
pub struct Drift {
    /// Mean level after the warm-up.
    pub level: Interval,
    /// Slope × the measured span (units of the figure), with its interval.
    pub drift: Interval,
    pub limit: f64,
    pub verdict: Verdict,
}

impl Results {
    fn after_warmup(&self) -> Vec<Sample> {
        self.samples
            .iter()
            .copied()
            .filter(|s| s.t >= WARMUP.as_secs_f64())
            .collect()
    }

    fn drift(&self, value: fn(&Sample) -> f64, abs: f64, share: f64) -> Option<Drift> {
        let s = self.after_warmup();
        let level = mean_ci(&s.iter().map(value).collect::<Vec<_>>())?;
        let slope = slope_ci(&s.iter().map(|x| (x.t, value(x))).collect::<Vec<_>>())?;
        let span = s.last()?.t - s.first()?.t;
        let drift = Interval {
            n: slope.n,
            mean: slope.mean * span,
            lo: slope.lo * span,
            hi: slope.hi * span,
            sd: slope.sd * span,
        };
        let limit = abs.max(share * level.mean);
        Some(Drift {
            level,
            drift,
            limit,
            verdict: Verdict::of(Some(&drift), limit),
        })
    }

    pub fn cpu(&self) -> Option<Drift> {
        self.drift(|s| s.cpu_pct, CPU_DRIFT_PP, CPU_DRIFT_SHARE)
    }

    pub fn rss(&self) -> Option<Drift> {
        self.drift(|s| s.rss_mib, RSS_DRIFT_MIB, RSS_DRIFT_SHARE)
    }

    /// The BENCHMARKS.md section (between the markers).
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!(
            "{MARK_BEGIN}\n## Soak\n\nWritten by `cargo xtask bench -- soak` on {} (revision {}); {} of one `leaktrace run` \
             on {}, sampled every {} s. A figure is *flat* when its drift over the soak after a {} s warm-up \
             (least-squares slope × the span, with its 95 % interval) stays under the limit: *met* when the whole \
             interval is under it, *MISSED* when the whole interval is above it, *not resolved* otherwise.\n\n",
            self.date,
            self.revision,
            duration_text(self.secs),
            self.load,
            STEP.as_secs(),
            WARMUP.as_secs()
        ));
        o.push_str("| figure | level (mean, 95 % CI) | drift over the soak (95 % CI) | limit | flat? |\n|---|---|---|---|---|\n");
        for (name, d, unit) in [
            ("agent CPU", self.cpu(), "% of a core"),
            ("agent RSS", self.rss(), "MiB"),
        ] {
            match d {
                Some(d) => o.push_str(&format!(
                    "| {name} | {:.3} {unit} ({:.3} … {:.3}) | {:+.3} {unit} ({:+.3} … {:+.3}) | ±{:.3} {unit} | **{}** |\n",
                    d.level.mean,
                    d.level.lo,
                    d.level.hi,
                    d.drift.mean,
                    d.drift.lo,
                    d.drift.hi,
                    d.limit,
                    d.verdict.text()
                )),
                None => o.push_str(&format!("| {name} | no figure | | | |\n")),
            }
        }
        let peak = self.samples.iter().map(|s| s.hwm_mib).fold(f64::NAN, f64::max);
        o.push_str(&format!(
            "\nPeak RSS (VmHWM) over the soak: {peak:.1} MiB. The churn made {} fork+exec in all.\n\n",
            self.forks
        ));
        o.push_str("| minute | agent CPU % | RSS MiB | processes |\n|---:|---:|---:|---:|\n");
        let per_min = (60.0 / STEP.as_secs_f64()).round().max(1.0) as usize;
        for chunk in self.samples.chunks(per_min * 5) {
            let s = chunk.last().expect("chunks are not empty");
            let cpu = chunk.iter().map(|x| x.cpu_pct).sum::<f64>() / chunk.len() as f64;
            o.push_str(&format!(
                "| {:.0} | {cpu:.3} | {:.1} | {} |\n",
                s.t / 60.0,
                s.rss_mib,
                s.processes
            ));
        }
        o.push_str(&format!(
            "\n(CPU per row: the mean of that row's {} s.)\n{MARK_END}\n",
            per_min * 5 * STEP.as_secs() as usize
        ));
        o
    }
}

pub const MARK_BEGIN: &str = "<!-- soak: written by `cargo xtask bench -- soak`, kept by full runs -->";
pub const MARK_END: &str = "<!-- soak end -->";

/// The soak section of an existing BENCHMARKS.md, markers included.
pub fn section_of(text: &str) -> Option<&str> {
    let a = text.find(MARK_BEGIN)?;
    let b = text[a..].find(MARK_END)? + a + MARK_END.len();
    Some(&text[a..b])
}

/// `text` with its soak section replaced by `section` (appended when it has none).
pub fn replace_section(text: &str, section: &str) -> String {
    let section = section.trim_end();
    match (text.find(MARK_BEGIN), section_of(text)) {
        (Some(a), Some(old)) => format!("{}{}{}", &text[..a], section, &text[a + old.len()..]),
        _ => format!("{}\n{}\n", text.trim_end(), section),
    }
}

fn duration_text(secs: f64) -> String {
    if secs >= 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

/// A child fed on stdin, killed when dropped.
struct Held {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Held {
    fn drop(&mut self) {
        super::scale::close_and_reap(&mut self.child, &mut self.stdin);
    }
}

pub fn run(secs: u64, leaktrace: &Path, workload: &Path, dir: &Path, log: &dyn Fn(&str)) -> Result<(Vec<Sample>, u64)> {
    let mut cmd = Command::new(workload);
    cmd.args([
        "population".to_string(),
        IDLE.to_string(),
        GROWING.to_string(),
        "64".into(),
        "8".into(),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().context("could not start `lt-workload population`")?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("no stdout")?;
    let _pop = Held { child, stdin };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    if !rx
        .recv_timeout(Duration::from_secs(120))
        .is_ok_and(|l| l.contains("\"ready\""))
    {
        bail!("the population did not start");
    }
    let mut acmd = Command::new(leaktrace);
    acmd.args(["run", "--json", "--report-dir"])
        .arg(dir.join("reports-soak"));
    let out = dir.join("agent-soak.jsonl");
    let agent = Agent::spawn("leaktrace run", acmd, "leaktrace: running", Some(out.clone()))?;
    let attached = Instant::now();
    let churn = Command::new(workload)
        .args(["forkrate".to_string(), CHURN_PER_SEC.to_string(), secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start `lt-workload forkrate`")?;
    let mut samples = Vec::new();
    let mut last_cpu = agent.cpu_ns();
    let mut last_t = Instant::now();
    while attached.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(STEP);
        let cpu = agent.cpu_ns();
        let now = Instant::now();
        let (hwm, rss) = agent.memory_mib();
        let s = Sample {
            t: attached.elapsed().as_secs_f64(),
            cpu_pct: 100.0 * cpu.saturating_sub(last_cpu) as f64 / 1e9 / (now - last_t).as_secs_f64(),
            rss_mib: rss,
            hwm_mib: hwm,
            processes: std::fs::read_dir("/proc").map_or(0, |d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .count()
            }),
        };
        if samples.len() % 10 == 0 {
            log(&format!(
                "  soak {:>5.0} s: agent {:.3} % CPU, {:.1} MiB RSS, {} processes",
                s.t, s.cpu_pct, s.rss_mib, s.processes
            ));
        }
        samples.push(s);
        last_cpu = cpu;
        last_t = now;
    }
    let o = churn.wait_with_output()?;
    let forks = serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v["forks"].as_u64())
        .unwrap_or(0);
    agent.stop()?;
    let _ = std::fs::remove_file(&out);
    Ok((samples, forks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(rss: impl Fn(f64) -> f64) -> Results {
        Results {
            secs: 3600.0,
            samples: (0..120)
                .map(|i| {
                    let t = 30.0 * (i + 1) as f64;
                    Sample {
                        t,
                        cpu_pct: 0.3 + if i % 2 == 0 { 0.01 } else { -0.01 },
                        rss_mib: rss(t),
                        hwm_mib: 40.0,
                        processes: 5400,
                    }
                })
                .collect(),
            forks: 72_000,
            date: "d".into(),
            revision: "r".into(),
            load: "l".into(),
        }
    }

    #[test]
    fn flat_and_growing_figures() {
        let flat = results(|_| 30.0);
        assert_eq!(flat.cpu().unwrap().verdict, Verdict::Met);
        assert_eq!(flat.rss().unwrap().verdict, Verdict::Met);
        // 4 MiB an hour: above the 1 MiB limit.
        let growing = results(|t| 30.0 + 4.0 * t / 3600.0);
        assert_eq!(growing.rss().unwrap().verdict, Verdict::Missed);
        assert!(growing.markdown().contains("**MISSED**"));
    }

    #[test]
    fn sections_are_replaced_or_appended() {
        let sec = format!("{MARK_BEGIN}\nnew\n{MARK_END}");
        let doc = format!("# t\n\n{MARK_BEGIN}\nold\n{MARK_END}\n\n## after\n");
        let r = replace_section(&doc, &sec);
        assert!(r.contains("new") && !r.contains("old") && r.contains("## after"));
        assert_eq!(section_of(&r), Some(sec.as_str()));
        let r = replace_section("# t\n", &sec);
        assert!(r.ends_with(&format!("{MARK_END}\n")));
    }
}
