//! What the benchmark reads from the machine: /proc, tracefs, signals, a scratch directory.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// Number of CPUs this process may run on.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

/// `model name` of the first CPU in /proc/cpuinfo.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// MemTotal in GiB.
pub fn mem_total_gib() -> f64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| field_kib(&s, "MemTotal:"))
        .map_or(f64::NAN, |kib| kib as f64 / (1024.0 * 1024.0))
}

/// The selected transparent-huge-page mode (`always`, `madvise`, `never`).
pub fn thp() -> String {
    fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|s| {
            let start = s.find('[')?;
            let end = s[start..].find(']')?;
            Some(s[start + 1..start + end].to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// (busy, total) jiffies of all CPUs from /proc/stat.
pub fn cpu_jiffies() -> Option<(u64, u64)> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4]; // idle + iowait
    Some((total - idle, total))
}

/// Share of all CPUs that was busy over `dur`, in percent (while the harness itself sleeps).
pub fn busy_pct(dur: Duration) -> f64 {
    let a = cpu_jiffies();
    std::thread::sleep(dur);
    busy_between(a, cpu_jiffies())
}

/// Busy share of all CPUs between two [`cpu_jiffies`] readings, in percent.
pub fn busy_between(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> f64 {
    match (a, b) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A `VmHWM:`/`VmRSS:` style field of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&text, key)
}

fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .stdin(Stdio::null())
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// CPU time (user + system) the process has used so far, in nanoseconds: the sum of
/// `/proc/PID/task/*/schedstat` (nanosecond resolution), or utime+stime from
/// `/proc/PID/stat` (clock-tick resolution) when schedstat is not available.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) {
        let mut sum = 0u64;
        let mut any = false;
        for e in dir.flatten() {
            if let Some(ns) = fs::read_to_string(e.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
            {
                sum += ns;
                any = true;
            }
        }
        if any && sum > 0 {
            return Some(sum);
        }
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000_000 / clk_tck())
}

/// Tracing agents running on the machine that the benchmark did not start (their probes
/// would slow the baseline too): (pid, comm) of every `leaktrace` / `bpftrace` process.
pub fn foreign_tracers() -> Vec<(u32, String)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            (comm == "leaktrace" || comm == "bpftrace").then(|| (pid, comm.to_owned()))
        })
        .collect()
}

/// Sends a signal with kill(1) (`sig` as in `kill -INT`).
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("could not run `kill`")?;
    if !status.success() {
        bail!("`kill -{sig} {pid}` failed ({status})");
    }
    Ok(())
}

/// Mounts tracefs at /sys/kernel/tracing when it is not mounted (bpftrace needs it; leaktrace
/// mounts it itself).
pub fn ensure_tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status()
        .context("could not run `mount`")?;
    if !status.success() || !Path::new("/sys/kernel/tracing/events").is_dir() {
        bail!("tracefs is not mounted and `mount -t tracefs tracefs /sys/kernel/tracing` failed ({status})");
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it at once).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

pub fn which(program: &str) -> Option<PathBuf> {
    crate::util::find_in_path(program)
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("leaktrace-bench-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `2026-05-21 14:03 UTC`.
pub fn utc_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// `git describe`-like identification of the checkout: commit and whether it has local changes.
pub fn git_revision(root: &Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev} + local changes") } else { rev }
        }
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tx\nVmHWM:\t  12345 kB\nVmRSS:\t   2048 kB\n";
        assert_eq!(field_kib(text, "VmHWM:"), Some(12345));
        assert_eq!(field_kib(text, "VmRSS:"), Some(2048));
        assert_eq!(field_kib(text, "VmSwap:"), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_ns(std::process::id()).is_some());
    }

    #[test]
    fn date_format() {
        let d = utc_now();
        assert!(d.ends_with(" UTC") && d.len() == 20, "{d}");
    }
}
