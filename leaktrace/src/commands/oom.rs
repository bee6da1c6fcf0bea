//! `leaktrace oom`: the OOM kills this machine has seen, oldest first. Two sources: leaktrace's
//! reports in the report directory, and the kernel log (`/dev/kmsg`) for kills leaktrace did not
//! report (it was not running, or the kill predates it). Read-only.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::{
    cli::{OomArgs, exit},
    report::{
        OomReport,
        render::{one_line, utc},
        store::ReportStore,
    },
    sinks::out::Out,
    sys::{
        container,
        kmsg::{self, KernelOomKill, OomScope},
    },
    util::{bytes, unix_ms},
};

/// A report and a kernel log line further apart than this are different kills.
const MATCH_WINDOW_MS: u64 = 5_000;

/// One line of the listing.
#[derive(Debug)]
enum Entry {
    /// A leaktrace report, with the kernel's account of the same kill when the log still has it.
    Report {
        path: PathBuf,
        report: Box<OomReport>,
        kernel: Option<KernelOomKill>,
    },
    /// A kill only the kernel log knows about.
    Kernel { kill: KernelOomKill, time_unix_ms: u64 },
    /// A report file that cannot be read; time and pid from its name when it has the usual one.
    Broken {
        path: PathBuf,
        error: String,
        time_unix_ms: Option<u64>,
        pid: Option<u32>,
    },
}

impl Entry {
    fn time_unix_ms(&self) -> Option<u64> {
        match self {
            Entry::Report { report, .. } => Some(report.kill_unix_ms),
            Entry::Kernel { time_unix_ms, .. } => Some(*time_unix_ms),
            Entry::Broken { time_unix_ms, .. } => *time_unix_ms,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Entry::Report { report, .. } => report.victim.pid,
            Entry::Kernel { kill, .. } => kill.pid,
            Entry::Broken { pid, .. } => pid.unwrap_or(0),
        }
    }

    fn json(&self) -> Value {
        match self {
            Entry::Report {
                path,
                report: r,
                kernel,
            } => {
                let k = kernel.as_ref();
                json!({
                    "source": "leaktrace",
                    "id": r.id,
                    "time_unix_ms": r.kill_unix_ms,
                    "time_utc": utc(r.kill_unix_ms),
                    "pid": r.victim.pid,
                    "comm": r.victim.comm.clone().or_else(|| k.map(|k| k.comm.clone())),
                    "memcg": r.memcg.as_ref().map(|m| m.path.clone())
                        .or_else(|| k.and_then(|k| k.task_memcg.clone())),
                    "container": r.victim.container.clone().or_else(|| {
                        k.and_then(|k| k.task_memcg.as_deref()).and_then(container::attribute)
                    }),
                    "binding_limit": r.binding_limit,
                    "anon_rss_bytes": r.victim.anon_rss_bytes
                        .or_else(|| k.and_then(|k| kb(k.anon_rss_kb))),
                    "constraint": k.and_then(|k| k.constraint.clone()),
                    "report": path,
                    "pattern": r.analysis.as_ref().map(|a| a.pattern),
                    "leak": r.analysis.as_ref().map(|a| a.leak),
                    "flagged": r.flagged,
                    "predicted": r.predicted,
                    "lead_time_secs": r.lead_time_secs,
                })
            }
            Entry::Kernel { kill: k, time_unix_ms } => json!({
                "source": "kernel-log",
                "time_unix_ms": time_unix_ms,
                "time_utc": utc(*time_unix_ms),
                "pid": k.pid,
                "comm": k.comm,
                "memcg": k.task_memcg,
                "oom_memcg": k.oom_memcg,
                "container": k.task_memcg.as_deref().and_then(container::attribute),
                "scope": k.scope,
                "anon_rss_bytes": kb(k.anon_rss_kb),
                "constraint": k.constraint,
                "report": Value::Null,
                "predicted": false,
                "lead_time_secs": Value::Null,
            }),
            Entry::Broken {
                path,
                error,
                time_unix_ms,
                pid,
            } => json!({
                "source": "leaktrace",
                "time_unix_ms": time_unix_ms,
                "pid": pid,
                "report": path,
                "error": error,
            }),
        }
    }

    fn human(&self) -> String {
        match self {
            Entry::Report { report, .. } => one_line(report),
            Entry::Kernel { kill: k, time_unix_ms } => {
                let memcg = k.task_memcg.as_deref().or(k.oom_memcg.as_deref());
                let place = match (k.scope, memcg) {
                    (OomScope::Memcg, Some(m)) => match k.oom_memcg.as_deref() {
                        Some(limit) if limit != m => format!("memcg {m} (limit of {limit})"),
                        _ => format!("memcg {m}"),
                    },
                    (OomScope::Memcg, None) => "memcg ?".to_string(),
                    _ => "host".to_string(),
                };
                let anon = kb(k.anon_rss_kb).map_or_else(|| "?".to_string(), bytes);
                let constraint = k.constraint.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
                let comm: String = k.comm.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
                format!(
                    "{} UTC  pid {} ({comm})  {place}  anon-rss {anon}  \
                     kernel log only{constraint}, no leaktrace report",
                    utc(*time_unix_ms),
                    k.pid
                )
            }
            Entry::Broken { error, .. } => format!("error: {error}"),
        }
    }
}

fn kb(v: Option<u64>) -> Option<u64> {
    v.map(|x| x.saturating_mul(1024))
}

/// `oom-<unix ms>-<pid>.json` → (ms, pid).
fn parse_report_name(path: &Path) -> Option<(u64, u32)> {
    let stem = path
        .file_name()?
        .to_str()?
        .strip_prefix("oom-")?
        .strip_suffix(".json")?;
    let (ms, pid) = stem.split_once('-')?;
    Some((ms.parse().ok()?, pid.parse().ok()?))
}

/// Put reports and kernel kills together: a kernel kill with the same pid as a report and within
/// [`MATCH_WINDOW_MS`] of it is that report's (the closest report wins; one kernel kill per
/// report). Kernel kills are listed only with a boot time to place them. `since` drops kills
/// older than it (broken files whose time is unknown are kept). Sorted by time, then pid.
fn merge(
    reports: Vec<(PathBuf, anyhow::Result<OomReport>)>,
    kernel: Vec<KernelOomKill>,
    boot_unix_ms: Option<u64>,
    since_unix_ms: Option<u64>,
) -> Vec<Entry> {
    let mut entries: Vec<Entry> = reports
        .into_iter()
        .map(|(path, r)| match r {
            Ok(report) => Entry::Report {
                path,
                report: Box::new(report),
                kernel: None,
            },
            Err(e) => {
                let named = parse_report_name(&path);
                Entry::Broken {
                    error: format!("{e:#}"),
                    time_unix_ms: named.map(|n| n.0),
                    pid: named.map(|n| n.1),
                    path,
                }
            }
        })
        .collect();
    if let Some(boot) = boot_unix_ms {
        for kill in kernel {
            let t = boot.saturating_add(kill.ts_usec / 1000);
            let best = entries
                .iter_mut()
                .filter_map(|e| match e {
                    Entry::Report {
                        report, kernel: None, ..
                    } if report.victim.pid == kill.pid && report.kill_unix_ms.abs_diff(t) <= MATCH_WINDOW_MS => {
                        Some((report.kill_unix_ms.abs_diff(t), e))
                    }
                    _ => None,
                })
                .min_by_key(|(d, _)| *d);
            match best {
                Some((_, Entry::Report { kernel, .. })) => *kernel = Some(kill),
                _ => entries.push(Entry::Kernel { kill, time_unix_ms: t }),
            }
        }
    }
    if let Some(since) = since_unix_ms {
        entries.retain(|e| e.time_unix_ms().is_none_or(|t| t >= since));
    }
    entries.sort_by_key(|e| (e.time_unix_ms(), e.pid()));
    entries
}

/// Wall-clock time of boot: now − `/proc/uptime`. Kernel log timestamps count from there.
fn boot_unix_ms(now_ms: u64) -> anyhow::Result<u64> {
    let up = crate::sys::proc::read_uptime().context("reading /proc/uptime")?;
    Ok(now_ms.saturating_sub(up.as_millis() as u64))
}

/// The kernel's OOM kills and a boot time to place them, or why they cannot be had.
fn kernel_kills(now_ms: u64) -> Result<(Vec<KernelOomKill>, u64), String> {
    let records = kmsg::read_kmsg_snapshot().map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (needs root or CAP_SYSLOG)"
        } else {
            ""
        };
        format!("cannot read the kernel log /dev/kmsg: {e}{why}")
    })?;
    let boot = boot_unix_ms(now_ms).map_err(|e| format!("cannot place kernel log times: {e:#}"))?;
    Ok((kmsg::collect_kills(&records), boot))
}

pub fn run(args: OomArgs) -> anyhow::Result<ExitCode> {
    let now = unix_ms();
    let since = args.since.map(|d| now.saturating_sub(d.as_millis() as u64));
    let store = ReportStore::at(&args.report_dir);
    let reports = store.list();
    let kernel = kernel_kills(now);
    let (reports, kernel, boot) = match (reports, kernel) {
        (Err(e), Err(k)) => anyhow::bail!("{e:#}; {k}"),
        (Err(e), Ok((kills, boot))) => {
            eprintln!("warning: {e:#}; listing only the kills in the kernel log");
            (Vec::new(), kills, Some(boot))
        }
        (Ok(r), Err(k)) => {
            eprintln!("warning: {k}; listing only leaktrace's reports");
            (r, Vec::new(), None)
        }
        (Ok(r), Ok((kills, boot))) => (r, kills, Some(boot)),
    };
    let entries = merge(reports, kernel, boot, since);

    let mut out = Out::new(args.json);
    if entries.is_empty() && !args.json {
        let when = since.map(|t| format!(" since {} UTC", utc(t))).unwrap_or_default();
        let log = if boot.is_some() { " and the kernel log" } else { "" };
        out.line(&format!(
            "no OOM kills{when} (looked in {}{log})",
            args.report_dir.display()
        ))
        .context("writing to stdout")?;
    }
    for e in &entries {
        if args.json {
            out.json(&e.json())
        } else {
            out.line(&e.human())
        }
        .context("writing to stdout")?;
        if !out.is_open() {
            break;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::from(exit::OK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render::tests::sample;

    fn kernel(pid: u32, ts_usec: u64) -> KernelOomKill {
        KernelOomKill {
            seq: 1,
            ts_usec,
            scope: OomScope::Memcg,
            pid,
            comm: "lt-workload".into(),
            constraint: Some("CONSTRAINT_MEMCG".into()),
            oom_memcg: Some("/lt".into()),
            task_memcg: Some("/lt/job".into()),
            uid: Some(0),
            total_vm_kb: Some(300_000),
            anon_rss_kb: Some(65_536),
            file_rss_kb: Some(0),
            shmem_rss_kb: Some(0),
            pgtables_kb: Some(100),
            oom_score_adj: Some(0),
        }
    }

    fn report_at(ms: u64, pid: u32) -> (PathBuf, anyhow::Result<OomReport>) {
        let mut r = sample();
        r.kill_unix_ms = ms;
        r.victim.pid = pid;
        r.id = format!("oom-{ms}-{pid}");
        (PathBuf::from(format!("/r/{}.json", r.id)), Ok(r))
    }

    const BOOT: u64 = 1_764_000_000_000 - 3_600_000; // booted an hour before the sample's kill

    #[test]
    fn matches_by_pid_and_time() {
        let kill_ms = 1_764_000_000_000;
        let reports = vec![report_at(kill_ms, 4242)];
        let kills = vec![
            kernel(4242, (kill_ms - BOOT + 4_000) * 1000), // same kill, logged 4 s later
            kernel(4242, (kill_ms - BOOT - 600_000) * 1000), // same pid, 10 min earlier
            kernel(99, (kill_ms - BOOT) * 1000),           // other pid, same time
        ];
        let e = merge(reports, kills, Some(BOOT), None);
        assert_eq!(e.len(), 3, "{e:#?}");
        let j: Vec<Value> = e.iter().map(Entry::json).collect();
        assert_eq!(j[0]["source"], "kernel-log");
        assert_eq!(j[0]["time_unix_ms"], kill_ms - 600_000);
        assert_eq!(j[0]["report"], Value::Null);
        assert_eq!(j[0]["memcg"], "/lt/job");
        assert_eq!(j[0]["anon_rss_bytes"], 64 << 20);
        assert_eq!(j[0]["constraint"], "CONSTRAINT_MEMCG");
        assert_eq!(j[0]["predicted"], false);
        assert_eq!(
            (j[1]["source"].as_str(), j[1]["pid"].as_u64()),
            (Some("kernel-log"), Some(99))
        );
        assert_eq!(j[2]["source"], "leaktrace");
        assert_eq!(j[2]["pid"], 4242);
        assert_eq!(j[2]["report"], "/r/oom-1764000000000-4242.json");
        assert_eq!(j[2]["memcg"], "/leak-test");
        assert_eq!(j[2]["comm"], "lt-workload");
        assert_eq!(j[2]["predicted"], true);
        assert_eq!(j[2]["lead_time_secs"], 30.0);
        assert_eq!(j[2]["constraint"], "CONSTRAINT_MEMCG");
        assert_eq!(j[2]["anon_rss_bytes"], 250u64 << 20);
        // Just outside the window: two separate kills.
        let e = merge(
            vec![report_at(kill_ms, 4242)],
            vec![kernel(4242, (kill_ms - BOOT + 5_001) * 1000)],
            Some(BOOT),
            None,
        );
        assert_eq!(e.len(), 2);
        // Without a boot time the kernel's kills cannot be placed: reports only.
        let e = merge(vec![report_at(kill_ms, 4242)], vec![kernel(1, 0)], None, None);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn broken_files_are_listed_in_place() {
        let bad = PathBuf::from("/r/oom-1764000001000-7.json");
        let reports = vec![
            report_at(1_764_000_002_000, 8),
            (
                bad.clone(),
                Err(anyhow::anyhow!("{} is not a leaktrace report", bad.display())),
            ),
            report_at(1_764_000_000_000, 9),
            (
                PathBuf::from("/r/oom-garbage.json"),
                Err(anyhow::anyhow!("/r/oom-garbage.json: bad")),
            ),
        ];
        let e = merge(reports, vec![], Some(BOOT), None);
        let lines: Vec<String> = e.iter().map(Entry::human).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "error: /r/oom-garbage.json: bad");
        assert!(lines[1].contains("pid 9 "), "{lines:?}");
        assert_eq!(lines[2], "error: /r/oom-1764000001000-7.json is not a leaktrace report");
        assert!(lines[3].contains("pid 8 "), "{lines:?}");
        let j = e[2].json();
        assert_eq!(j["error"], "/r/oom-1764000001000-7.json is not a leaktrace report");
        assert_eq!(j["pid"], 7);
        assert_eq!(j["report"], "/r/oom-1764000001000-7.json");
    }

    #[test]
    fn since_keeps_newer_kills() {
        let reports = vec![
            report_at(1_764_000_000_000, 1),
            report_at(1_764_000_100_000, 2),
            (PathBuf::from("/r/oom-x.json"), Err(anyhow::anyhow!("bad"))),
        ];
        let kills = vec![kernel(3, 1_000_000), kernel(4, (1_764_000_200_000 - BOOT) * 1000)];
        let e = merge(reports, kills, Some(BOOT), Some(1_764_000_050_000));
        let pids: Vec<u32> = e.iter().map(Entry::pid).collect();
        assert_eq!(pids, vec![0, 2, 4]);
    }

    #[test]
    fn kernel_line_reads_well() {
        let e = Entry::Kernel {
            kill: kernel(77, 0),
            time_unix_ms: 1_764_000_000_000,
        };
        assert_eq!(
            e.human(),
            "2025-11-24 16:00:00 UTC  pid 77 (lt-workload)  memcg /lt/job (limit of /lt)  \
             anon-rss 64.0 MiB  kernel log only (CONSTRAINT_MEMCG), no leaktrace report"
        );
        let mut k = kernel(79, 0);
        k.task_memcg = Some(format!("/system.slice/docker-{}.scope", "ab".repeat(32)));
        let j = Entry::Kernel {
            kill: k,
            time_unix_ms: 0,
        }
        .json();
        assert_eq!(j["container"]["runtime"], "docker");
        assert_eq!(j["container"]["id"], "ab".repeat(32));
        let mut k = kernel(78, 0);
        k.scope = OomScope::Global;
        k.constraint = None;
        k.anon_rss_kb = None;
        let e = Entry::Kernel {
            kill: k,
            time_unix_ms: 0,
        };
        assert_eq!(
            e.human(),
            "1970-01-01 00:00:00 UTC  pid 78 (lt-workload)  host  anon-rss ?  \
             kernel log only, no leaktrace report"
        );
    }

    #[test]
    fn parses() {
        use clap::Parser as _;

        use crate::cli::{Cli, Command};
        let c = Cli::try_parse_from(["leaktrace", "oom", "--since", "2h", "--json"]).unwrap();
        let Command::Oom(a) = c.command else { panic!() };
        assert_eq!(a.since, Some(std::time::Duration::from_secs(7200)));
        assert!(a.json);
        assert_eq!(a.report_dir, PathBuf::from(crate::cli::DEFAULT_REPORT_DIR));
        let c = Cli::try_parse_from(["leaktrace", "oom", "--report-dir", "/tmp/x"]).unwrap();
        let Command::Oom(a) = c.command else { panic!() };
        assert_eq!((a.report_dir, a.since, a.json), (PathBuf::from("/tmp/x"), None, false));
        for bad in ["-5", "0", "soon"] {
            assert!(
                Cli::try_parse_from(["leaktrace", "oom", "--since", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn boot_time_is_in_the_past() {
        let now = unix_ms();
        let boot = boot_unix_ms(now).unwrap();
        assert!(boot <= now && boot > 0);
    }

    #[test]
    fn report_names() {
        assert_eq!(parse_report_name(Path::new("/a/oom-17-42.json")), Some((17, 42)));
        assert_eq!(parse_report_name(Path::new("oom-17.json")), None);
        assert_eq!(parse_report_name(Path::new("snapshot-17-42.json")), None);
    }
}
