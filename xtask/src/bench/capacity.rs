//! Capacity: `leaktrace trace --json` while k mmap storms flood the bulk ring buffer and the
//! harness churns short-lived processes. Every churned process must show exactly one `exit`
//! event; every storm call must be either seen or counted in a `dropped` line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::agent::Agent;

/// Exit code of the churned processes (so their `exit` events can be checked).
const CHURN_CODE: i32 = 7;
/// Length of each storm mapping (`lt-workload mmaps` uses 64 KiB).
const STORM_LEN: u64 = 64 << 10;

#[derive(Clone, Debug)]
pub struct Plan {
    pub ks: Vec<usize>,
    /// mmap+munmap pairs per storm process.
    pub calls: u64,
    /// At least this many churned processes per step (more while the storm lasts).
    pub min_exits: usize,
}

impl Plan {
    pub fn full() -> Self {
        Plan {
            ks: vec![1, 2, 4],
            calls: 150_000,
            min_exits: 200,
        }
    }

    pub fn quick() -> Self {
        Plan {
            ks: vec![1],
            calls: 10_000,
            min_exits: 20,
        }
    }
}

/// One step of the capacity test.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Parallel storm processes.
    pub k: usize,
    /// mmap + munmap calls the storms made (2 × calls × k), exactly.
    pub offered: u64,
    /// Wall time from the first storm's start to the last one's exit.
    pub storm_secs: f64,
    pub offered_per_sec: f64,
    /// The storms' mmap/munmap events in the output.
    pub seen: u64,
    pub seen_per_sec: f64,
    /// mmap/munmap events of other processes in the output (background activity).
    pub seen_other: u64,
    /// `dropped` counts for mmap + munmap (all processes: the kernel counts drops per kind).
    pub dropped: u64,
    /// All `dropped` counts per kind.
    pub dropped_by_kind: BTreeMap<String, u64>,
    /// Storm calls neither seen nor covered by a drop count: max(0, offered − seen − dropped).
    pub unaccounted: u64,
    /// seen + dropped == offered.
    pub exact: bool,
    /// Storm events seen more often than they were made (duplicates): max(0, seen − offered).
    pub excess: u64,
    pub exits_expected: usize,
    /// Churned processes per second (each a fork + exit event).
    pub exits_per_sec: f64,
    /// Churned processes with no `exit` event.
    pub exits_missing: usize,
    /// Churned processes with more than one `exit` event.
    pub exits_duplicated: usize,
    /// `exit` events of churned processes whose `exit_code` is not CHURN_CODE.
    pub exits_wrong_code: usize,
    /// Output lines that are not JSON.
    pub bad_lines: u64,
    /// Agent CPU time ÷ storm wall time, % of one core.
    pub agent_cpu_pct: f64,
    pub agent_peak_rss_mib: f64,
}

impl Step {
    /// No lifecycle event lost, no storm event lost silently, no duplicate.
    pub fn clean(&self) -> bool {
        self.exits_missing == 0
            && self.exits_duplicated == 0
            && self.exits_wrong_code == 0
            && self.unaccounted == 0
            && self.excess == 0
    }
}

pub fn run(plan: &Plan, leaktrace: &Path, workload: &Path, dir: &Path, log: &dyn Fn(&str)) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &k in &plan.ks {
        let step = one(k, plan, leaktrace, workload, dir).with_context(|| format!("capacity step k={k}"))?;
        log(&format!(
            "capacity k={k}: offered {:.0}/s, seen {} + dropped {} of {} (exact: {}), exits missing {}",
            step.offered_per_sec, step.seen, step.dropped, step.offered, step.exact, step.exits_missing
        ));
        steps.push(step);
    }
    Ok(steps)
}

fn one(k: usize, plan: &Plan, leaktrace: &Path, workload: &Path, dir: &Path) -> Result<Step> {
    let out = dir.join(format!("capacity-{k}.jsonl"));
    let mut cmd = Command::new(leaktrace);
    cmd.args(["trace", "--json"]);
    let agent = Agent::spawn("leaktrace trace", cmd, "leaktrace: tracing", Some(out.clone()))?;
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = agent.cpu_ns();

    let start = Instant::now();
    let mut storms = Vec::new();
    for _ in 0..k {
        let mut c = Command::new(workload);
        c.args(["mmaps", &plan.calls.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        storms.push((c.spawn().context("could not start the mmap storm")?, None::<Duration>));
    }
    let storm_pids: HashSet<u32> = storms.iter().map(|(c, _)| c.id()).collect();

    // Churn short-lived processes for as long as the storms run: `lt-workload exits` forks
    // children that exit at once (no mmap of their own), until its stdin is closed.
    let mut churner = Command::new(workload)
        .args(["exits", &CHURN_CODE.to_string(), &plan.min_exits.to_string(), "200"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start the exit churn")?;
    let mut failed = Vec::new();
    loop {
        for (c, end) in &mut storms {
            if end.is_none()
                && let Some(status) = c.try_wait()?
            {
                *end = Some(start.elapsed());
                if !status.success() {
                    failed.push(format!("mmap storm failed ({status})"));
                }
            }
        }
        if storms.iter().all(|(_, end)| end.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(churner.stdin.take());
    let churned = churner.wait_with_output()?;
    if !churned.status.success() {
        bail!("the exit churn failed ({})", churned.status);
    }
    let churn = parse_pids(&String::from_utf8_lossy(&churned.stdout))?;
    let storm_secs = storms
        .iter()
        .filter_map(|(_, e)| *e)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let exits_per_sec = churn.len() as f64 / start.elapsed().as_secs_f64();
    // Let the agent drain what is in flight, then stop it (it drains and reports drops at exit).
    std::thread::sleep(Duration::from_millis(500));
    let cpu1 = agent.cpu_ns();
    let wall = start.elapsed().as_secs_f64();
    let (peak, _) = agent.memory_mib();
    agent.stop()?;
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }

    let mut step = tally(&out, &storm_pids, &churn)?;
    step.k = k;
    step.exits_per_sec = exits_per_sec;
    step.offered = 2 * plan.calls * k as u64;
    step.storm_secs = storm_secs;
    step.offered_per_sec = step.offered as f64 / storm_secs;
    step.seen_per_sec = step.seen as f64 / storm_secs;
    step.unaccounted = step.offered.saturating_sub(step.seen + step.dropped);
    step.excess = step.seen.saturating_sub(step.offered);
    step.exact = step.seen + step.dropped == step.offered;
    step.agent_cpu_pct = 100.0 * (cpu1.saturating_sub(cpu0)) as f64 / 1e9 / wall;
    step.agent_peak_rss_mib = peak;
    let _ = std::fs::remove_file(&out);
    Ok(step)
}

/// `{"pids":[1,2,...]}` from `lt-workload exits`.
fn parse_pids(text: &str) -> Result<Vec<u32>> {
    let v: Value =
        serde_json::from_str(text.trim()).with_context(|| format!("bad output of `lt-workload exits`: {text}"))?;
    let pids = v["pids"]
        .as_array()
        .context("no `pids` in the output of `lt-workload exits`")?;
    Ok(pids.iter().filter_map(|p| p.as_u64()).map(|p| p as u32).collect())
}

/// Counts the storms' events, others' bulk events, drops and the churned processes' exits.
fn tally(out: &Path, storm_pids: &HashSet<u32>, churn: &[u32]) -> Result<Step> {
    let f = File::open(out).with_context(|| format!("cannot open {}", out.display()))?;
    let mut step = Step {
        exits_expected: churn.len(),
        ..Step::default()
    };
    let mut exits: HashMap<u32, usize> = churn.iter().map(|&p| (p, 0)).collect();
    for line in BufReader::with_capacity(1 << 20, f).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            step.bad_lines += 1;
            continue;
        };
        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
        match v["event"].as_str().unwrap_or("") {
            "mmap" | "munmap" => {
                if storm_pids.contains(&pid) && v["len"].as_u64() == Some(STORM_LEN) {
                    step.seen += 1;
                } else {
                    step.seen_other += 1;
                }
            }
            "exit" => {
                if let Some(n) = exits.get_mut(&pid) {
                    *n += 1;
                    if v["exit_code"].as_i64() != Some(i64::from(CHURN_CODE)) {
                        step.exits_wrong_code += 1;
                    }
                }
            }
            "dropped" => {
                let kind = v["kind"].as_str().unwrap_or("?").to_owned();
                let count = v["count"].as_u64().unwrap_or(0);
                if kind == "mmap" || kind == "munmap" {
                    step.dropped += count;
                }
                *step.dropped_by_kind.entry(kind).or_insert(0) += count;
            }
            _ => {}
        }
    }
    step.exits_missing = exits.values().filter(|&&n| n == 0).count();
    step.exits_duplicated = exits.values().filter(|&&n| n > 1).count();
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts() {
        let dir = super::super::sys::TempDir::new().unwrap();
        let p = dir.0.join("t.jsonl");
        std::fs::write(
            &p,
            "{\"event\":\"mmap\",\"pid\":10,\"len\":65536}\n\
             {\"event\":\"munmap\",\"pid\":10,\"len\":65536}\n\
             {\"event\":\"mmap\",\"pid\":10,\"len\":8192}\n\
             {\"event\":\"mmap\",\"pid\":11,\"len\":65536}\n\
             {\"event\":\"exit\",\"pid\":20,\"exit_code\":7}\n\
             {\"event\":\"exit\",\"pid\":21,\"exit_code\":7}\n\
             {\"event\":\"exit\",\"pid\":21,\"exit_code\":7}\n\
             {\"event\":\"dropped\",\"kind\":\"mmap\",\"count\":5}\n\
             {\"event\":\"dropped\",\"kind\":\"brk\",\"count\":1}\n\
             not json\n",
        )
        .unwrap();
        let s = tally(&p, &HashSet::from([10]), &[20, 21, 22]).unwrap();
        assert_eq!((s.seen, s.seen_other, s.dropped, s.bad_lines), (2, 2, 5, 1));
        assert_eq!(
            (
                s.exits_expected,
                s.exits_missing,
                s.exits_duplicated,
                s.exits_wrong_code
            ),
            (3, 1, 1, 0)
        );
        assert_eq!(s.dropped_by_kind.get("brk"), Some(&1));
    }
}
