//! What each of the agent's BPF programs costs in the kernel, per call and per workload event,
//! from the kernel's own run-time statistics (`run_time_ns` / `run_cnt` of every program,
//! counted while `kernel.bpf_stats_enabled` is on). Measured apart from the timed runs: the
//! statistics add two clock reads to every program run. When the sysctl is off, the harness
//! turns the statistics on for this phase only through `BPF_ENABLE_STATS` (they go off again when
//! its descriptor is closed, even if the harness dies); when someone already turned it on, it is
//! left as it is (and the timed figures carry that overhead too; BENCHMARKS.md says which).
//!
//! Each workload runs under a fresh `leaktrace run`; the programs' counters are read from
//! `/proc/AGENT/fdinfo` before and after. Other processes on the machine trigger the same
//! programs, so a window of the same length without the workload, just before it, is read too
//! and its calls are subtracted from the workload's (per-call costs are averages over all calls).

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::agent::Agent;
use super::workload::timed;

/// The statistics switch: on while this lives (when this process turned it on).
pub struct Stats {
    /// Whether the sysctl was already on (then nothing was changed).
    pub already_on: bool,
    _fd: Option<OwnedFd>,
}

/// `kernel.bpf_stats_enabled` now.
pub fn sysctl_on() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .ok()
        .map(|s| s.trim() == "1")
}

impl Stats {
    pub fn enable() -> Result<Stats> {
        if sysctl_on() == Some(true) {
            return Ok(Stats {
                already_on: true,
                _fd: None,
            });
        }
        // union bpf_attr { struct { __u32 type; } enable_stats; }, BPF_ENABLE_STATS = 32,
        // BPF_STATS_RUN_TIME = 0.
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&0u32.to_ne_bytes());
        // SAFETY: bpf(2) reads `attr` (zeroed beyond the one field) for the given size.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 32, attr.as_mut_ptr(), attr.len()) };
        if fd < 0 {
            bail!("BPF_ENABLE_STATS failed: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor returned by the kernel, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Stats {
            already_on: false,
            _fd: Some(fd),
        })
    }
}

/// One program's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The counters of every BPF program a process holds, by program id.
pub fn programs_of(pid: u32) -> BTreeMap<u32, Counters> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        let is_prog = std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy()));
        if let Ok(info) = info
            && let Some((id, c)) = parse_fdinfo(&info)
        {
            out.insert(id, c);
        }
    }
    out
}

/// `prog_id`, `run_time_ns` and `run_cnt` of a BPF program's fdinfo.
pub fn parse_fdinfo(text: &str) -> Option<(u32, Counters)> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        u32::try_from(field("prog_id")?).ok()?,
        Counters {
            run_time_ns: field("run_time_ns")?,
            run_cnt: field("run_cnt")?,
        },
    ))
}

/// Program names by id (`bpftool prog show --json`); empty without bpftool.
pub fn names(bpftool: Option<&Path>) -> BTreeMap<u32, String> {
    let Some(b) = bpftool else { return BTreeMap::new() };
    let Ok(o) = Command::new(b)
        .args(["prog", "show", "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return BTreeMap::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((u32::try_from(p["id"].as_u64()?).ok()?, p["name"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A workload with an exact count of the events it causes.
#[derive(Clone, Debug)]
pub struct Job {
    pub key: &'static str,
    pub title: String,
    /// What one event is (`page fault`, `mmap+munmap call`, `fork+exec+exit`).
    pub event: &'static str,
    pub events: u64,
    pub args: Vec<String>,
}

/// One program over one workload (summed over the rounds).
#[derive(Clone, Debug, Default)]
pub struct ProgCost {
    pub name: String,
    /// Calls during the workload windows, and during the background windows of equal length.
    pub calls: u64,
    pub background_calls: u64,
    pub run_time_ns: u64,
    pub background_ns: u64,
}

impl ProgCost {
    pub fn ns_per_call(&self) -> f64 {
        self.run_time_ns as f64 / self.calls as f64
    }

    /// The workload's own calls per event (background subtracted).
    pub fn calls_per_event(&self, events: u64) -> f64 {
        self.calls.saturating_sub(self.background_calls) as f64 / events as f64
    }

    /// Kernel time of this program per workload event, ns (background subtracted).
    pub fn ns_per_event(&self, events: u64) -> f64 {
        self.run_time_ns.saturating_sub(self.background_ns) as f64 / events as f64
    }
}

#[derive(Clone, Debug)]
pub struct JobCost {
    pub job: Job,
    /// Events over all rounds.
    pub events: u64,
    pub progs: Vec<ProgCost>,
}

impl JobCost {
    /// All programs' kernel time per workload event, ns.
    pub fn ns_per_event(&self) -> f64 {
        self.progs.iter().map(|p| p.ns_per_event(self.events)).sum()
    }
}

#[derive(Debug, Default)]
pub struct Results {
    pub stats_already_on: bool,
    pub jobs: Vec<JobCost>,
    pub errors: Vec<String>,
}

pub fn run(
    jobs: &[Job],
    rounds: usize,
    leaktrace: &Path,
    workload: &Path,
    dir: &Path,
    bpftool: Option<&Path>,
    log: &dyn Fn(&str),
) -> Results {
    let mut res = Results::default();
    let stats = match Stats::enable() {
        Ok(s) => s,
        Err(e) => {
            res.errors.push(format!("{e:#}"));
            return res;
        }
    };
    res.stats_already_on = stats.already_on;
    for job in jobs {
        match one_job(job, rounds, leaktrace, workload, dir, bpftool) {
            Ok(c) => {
                log(&format!(
                    "  kernel cost {}: {:.0} ns of BPF per {} ({} events)",
                    job.key,
                    c.ns_per_event(),
                    job.event,
                    c.events
                ));
                res.jobs.push(c);
            }
            Err(e) => {
                log(&format!("  kernel cost {}: FAILED: {e:#}", job.key));
                res.errors.push(format!("{}: {e:#}", job.key));
            }
        }
    }
    drop(stats);
    res
}

fn one_job(
    job: &Job,
    rounds: usize,
    leaktrace: &Path,
    workload: &Path,
    dir: &Path,
    bpftool: Option<&Path>,
) -> Result<JobCost> {
    let mut progs: BTreeMap<String, ProgCost> = BTreeMap::new();
    for round in 0..rounds {
        let mut cmd = Command::new(leaktrace);
        cmd.args(["run", "--json", "--report-dir"])
            .arg(dir.join(format!("reports-kcost-{}-{round}", job.key)));
        let out: PathBuf = dir.join(format!("agent-kcost-{}-{round}.jsonl", job.key));
        let agent = Agent::spawn("leaktrace run", cmd, "leaktrace: running", Some(out.clone()))?;
        let pid = agent.pid;
        std::thread::sleep(Duration::from_millis(500));
        let names = names(bpftool);
        // The workload's window first, then a background window of the same length.
        let before = programs_of(agent.pid);
        let start = Instant::now();
        let mut c = Command::new(workload);
        c.args(&job.args);
        timed(vec![c], Duration::from_secs(600))?;
        let d = start.elapsed();
        let after = programs_of(agent.pid);
        std::thread::sleep(d);
        let quiet = programs_of(agent.pid);
        agent.stop()?;
        let _ = std::fs::remove_file(&out);
        if before.is_empty() {
            bail!("no BPF program found in /proc/{pid}/fdinfo");
        }
        for (id, a) in &after {
            let Some(b) = before.get(id) else { continue };
            let q = quiet.get(id).copied().unwrap_or(*a);
            let name = names.get(id).cloned().unwrap_or_else(|| format!("prog {id}"));
            let p = progs.entry(name.clone()).or_insert_with(|| ProgCost {
                name,
                ..ProgCost::default()
            });
            p.calls += a.run_cnt.saturating_sub(b.run_cnt);
            p.run_time_ns += a.run_time_ns.saturating_sub(b.run_time_ns);
            p.background_calls += q.run_cnt.saturating_sub(a.run_cnt);
            p.background_ns += q.run_time_ns.saturating_sub(a.run_time_ns);
        }
    }
    let mut progs: Vec<ProgCost> = progs.into_values().filter(|p| p.calls > 0).collect();
    progs.sort_by_key(|p| std::cmp::Reverse(p.run_time_ns));
    Ok(JobCost {
        job: job.clone(),
        events: job.events * rounds as u64,
        progs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t26785\nrun_time_ns:\t2060060\nrun_cnt:\t1596\n";
        assert_eq!(
            parse_fdinfo(text),
            Some((
                26785,
                Counters {
                    run_time_ns: 2060060,
                    run_cnt: 1596
                }
            ))
        );
        assert_eq!(parse_fdinfo("prog_id:\t1\n"), None);
    }

    #[test]
    fn per_event_costs_subtract_the_background() {
        let p = ProgCost {
            name: "rss_stat".into(),
            calls: 1_100,
            background_calls: 100,
            run_time_ns: 55_000,
            background_ns: 5_000,
        };
        assert_eq!(p.ns_per_call(), 50.0);
        assert_eq!(p.calls_per_event(1_000), 1.0);
        assert_eq!(p.ns_per_event(1_000), 50.0);
    }
}
