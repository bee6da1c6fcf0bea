//! The second layer of the CLI: what the user said (`RunArgs` & co.), validated once and turned
//! into the domain configuration the commands wire (`MonitorConfig`, `LoadOptions`, sinks).
//! Every error here is a usage error (exit 2), found before anything is loaded.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{AnalyzeArgs, RunArgs, SitesArgs, TopArgs, TraceArgs, UsageError, WatchArgs};
use crate::{
    monitor::{MonitorConfig, Scope, work::WorkSource},
    probes::LoadOptions,
    prometheus::{
        Source,
        client::Auth,
        lives::DEFAULT_LIFE_LABELS,
        plan::{Grid, default_step_ms, parse_time},
    },
};

/// `--work-metric URL#NAME`.
fn work_metric(v: Option<&str>) -> Result<Option<WorkSource>, UsageError> {
    v.map(|v| WorkSource::parse(v).map_err(|e| UsageError(format!("--work-metric: {e}"))))
        .transpose()
}

/// Every pid must name a live process.
pub fn check_pids(pids: &[u32]) -> Result<(), UsageError> {
    for pid in pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(UsageError(format!("no process with pid {pid}")));
        }
    }
    Ok(())
}

/// Probes as every command but `run`/`top` wants them: syscall tracepoints on.
fn load(pretend_missing: &[String]) -> LoadOptions {
    LoadOptions {
        pretend_missing: pretend_missing.to_vec(),
        syscalls: true,
        sites: None,
        floor: true,
    }
}

/// `leaktrace run`.
pub struct Run {
    pub monitor: MonitorConfig,
    pub load: LoadOptions,
    pub json: bool,
    pub duration: Option<Duration>,
    pub report_dir: PathBuf,
    /// Address and number of processes with their own series.
    pub metrics: Option<(SocketAddr, usize)>,
    pub record: Option<PathBuf>,
    /// Capabilities kept once the probes are attached.
    pub keep_caps: Vec<caps::Capability>,
}

impl Run {
    pub fn new(a: RunArgs, pretend_missing: &[String]) -> Result<Run, UsageError> {
        check_pids(&a.pids)?;
        let all = a.pids.is_empty() && a.comms.is_empty();
        // Syscall probes cost every syscall on the host something: off for the host agent unless asked.
        let load = LoadOptions {
            syscalls: a.syscalls,
            sites: a.stacks.options(all).map_err(UsageError)?,
            ..load(pretend_missing)
        };
        let mut monitor = MonitorConfig::new(a.interval, Scope::from_filters(&a.pids, &a.comms));
        monitor.core.max_processes = a.max_processes as usize;
        monitor.core.predict_within = a.predict_within.as_secs_f64();
        monitor.core.snapshot_within = a.snapshot_within.as_secs_f64();
        monitor.record = a.record.is_some();
        monitor.runtimes = !a.no_runtimes;
        monitor.heap_snapshots = a.heap_snapshots;
        monitor.host_parts = true;
        monitor.work = work_metric(a.work_metric.as_deref())?;
        if monitor.work.is_some() {
            match a.pids.as_slice() {
                [pid] => monitor.core.work_pid = Some(*pid),
                _ => {
                    return Err(UsageError(
                        "--work-metric needs exactly one --pid (the process doing the work)".into(),
                    ));
                }
            }
        }
        Ok(Run {
            keep_caps: crate::probes::privileges::keep_after_attach(!a.no_runtimes, a.heap_snapshots),
            monitor,
            load,
            json: a.json,
            duration: a.duration,
            report_dir: a.report_dir,
            metrics: a.metrics.map(|addr| (addr, a.metrics_top as usize)),
            record: a.record,
        })
    }
}

/// `leaktrace watch`: a pid, or a command to start (root 0 until it is spawned).
pub struct Watch {
    pub monitor: MonitorConfig,
    pub load: LoadOptions,
    pub json: bool,
    pub duration: Option<Duration>,
    pub command: Vec<String>,
    /// `--runs N`: the command run this many times.
    pub runs: Option<u32>,
}

impl Watch {
    pub fn new(a: WatchArgs, pretend_missing: &[String]) -> Result<Watch, UsageError> {
        let root = match (a.pid, a.command.is_empty()) {
            (Some(pid), true) => {
                check_pids(&[pid])?;
                pid
            }
            (None, false) => 0,
            (Some(_), false) => return Err(UsageError("give either --pid or a command, not both".into())),
            (None, true) => {
                return Err(UsageError(
                    "nothing to watch: give --pid PID or -- CMD [ARGS...]".into(),
                ));
            }
        };
        if a.runs.is_some() && a.command.is_empty() {
            return Err(UsageError(
                "--runs needs a command to run N times (-- CMD [ARGS...]), not --pid".into(),
            ));
        }
        let mut monitor = MonitorConfig::new(a.interval, Scope::Tree { root });
        monitor.work = work_metric(a.work_metric.as_deref())?;
        monitor.runtimes = !a.no_runtimes;
        Ok(Watch {
            monitor,
            // `sites` judges no timeline, so it needs no floor; and the floor's BTF tracepoint
            // (a tracing program) cannot tail-call the stack copy, which the 1-in-N fault
            // samples on the raw `rss_stat` tracepoint do.
            load: LoadOptions {
                sites: Some(a.malloc.options(&a.faults)),
                floor: false,
                ..load(pretend_missing)
            },
            json: a.json,
            duration: a.duration,
            command: a.command,
            runs: a.runs,
        })
    }
}

/// `leaktrace top`.
pub struct Top {
    pub monitor: MonitorConfig,
    pub load: LoadOptions,
}

impl Top {
    pub fn new(a: TopArgs, pretend_missing: &[String]) -> Result<Top, UsageError> {
        check_pids(&a.pids)?;
        let mut monitor = MonitorConfig::new(a.interval, Scope::from_filters(&a.pids, &a.comms));
        monitor.runtimes = !a.no_runtimes;
        monitor.host_parts = true;
        Ok(Top {
            monitor,
            load: LoadOptions {
                syscalls: false,
                ..load(pretend_missing)
            },
        })
    }
}

/// `leaktrace sites`.
pub struct Sites {
    pub monitor: MonitorConfig,
    pub load: LoadOptions,
    pub pid: u32,
    pub json: bool,
    pub duration: Option<Duration>,
    pub folded: Option<PathBuf>,
}

impl Sites {
    pub fn new(a: SitesArgs, pretend_missing: &[String]) -> Result<Sites, UsageError> {
        check_pids(&[a.pid])?;
        let scope = Scope::Filter {
            pids: vec![a.pid],
            comms: vec![],
        };
        Ok(Sites {
            monitor: MonitorConfig::new(a.interval, scope),
            // `sites` judges no timeline, so it needs no floor; and the floor's BTF tracepoint
            // (a tracing program) cannot tail-call the stack copy, which the 1-in-N fault
            // samples on the raw `rss_stat` tracepoint do.
            load: LoadOptions {
                sites: Some(a.malloc.options(&a.faults)),
                floor: false,
                ..load(pretend_missing)
            },
            pid: a.pid,
            json: a.json,
            duration: a.duration,
            folded: a.folded,
        })
    }
}

/// `leaktrace trace`.
pub struct Trace {
    pub load: LoadOptions,
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub json: bool,
    pub duration: Option<Duration>,
}

impl Trace {
    pub fn new(a: TraceArgs, pretend_missing: &[String]) -> Result<Trace, UsageError> {
        check_pids(&a.pids)?;
        Ok(Trace {
            // `trace` reads no RSS marks: the raw rss_stat tracepoint is enough.
            load: LoadOptions {
                floor: false,
                ..load(pretend_missing)
            },
            pids: a.pids,
            comms: a.comms,
            json: a.json,
            duration: a.duration,
        })
    }
}

/// `leaktrace heap`.
pub struct Heap {
    pub pid: u32,
    pub diff: Option<Duration>,
    pub json: bool,
    pub top: usize,
    pub timeout: Duration,
}

impl Heap {
    pub fn new(a: super::HeapArgs) -> Result<Heap, UsageError> {
        check_pids(&[a.pid])?;
        Ok(Heap {
            pid: a.pid,
            diff: a.diff,
            json: a.json,
            top: a.top as usize,
            timeout: a.timeout,
        })
    }
}

/// `leaktrace analyze`: a record, or series from Prometheus.
#[derive(Debug)]
pub enum Analyze {
    Record {
        path: PathBuf,
        json: bool,
        events: bool,
        /// A pid whose judgement is written to stderr, tick by tick.
        explain: Option<u32>,
    },
    Prometheus {
        source: Source,
        json: bool,
        events: bool,
    },
}

/// `--range` when not given.
const DEFAULT_RANGE: Duration = Duration::from_secs(7 * 86_400);

impl Analyze {
    /// `now_ms`: the time `--end` defaults to; `env`: the environment (credentials).
    pub fn new(a: AnalyzeArgs, now_ms: i64, env: impl Fn(&str) -> Option<String>) -> Result<Analyze, UsageError> {
        let p = a.prometheus;
        let (Some(url), Some(query)) = (p.prometheus, p.query) else {
            let path = a
                .record
                .ok_or_else(|| UsageError("give a record FILE, or --prometheus URL --query PROMQL".into()))?;
            return Ok(Analyze::Record {
                path,
                json: a.json,
                events: a.events,
                explain: a.explain,
            });
        };
        let url = url.trim().to_string();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or("");
        if rest.is_empty() || rest.starts_with('/') || url.contains(char::is_whitespace) {
            return Err(UsageError(format!(
                "--prometheus: `{url}` is not an http:// or https:// URL (e.g. http://prometheus:9090)"
            )));
        }
        if query.trim().is_empty() {
            return Err(UsageError("--query: empty".into()));
        }
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let range_ms = ms(p.range.unwrap_or(DEFAULT_RANGE));
        let step_ms = p.step.map_or_else(|| default_step_ms(range_ms), ms);
        if step_ms < 1 {
            return Err(UsageError("--step: at least 1ms".into()));
        }
        let end_ms = match &p.end {
            Some(e) => parse_time(e, now_ms).map_err(|e| UsageError(format!("--end: {e}")))?,
            None => now_ms,
        };
        let grid = Grid::new(end_ms, range_ms, step_ms).map_err(UsageError)?;
        let auth = Auth::from_env(env).map_err(UsageError)?;
        let life_labels = if p.life_labels.is_empty() {
            DEFAULT_LIFE_LABELS.iter().map(|s| s.to_string()).collect()
        } else {
            p.life_labels
        };
        Ok(Analyze::Prometheus {
            source: Source {
                url,
                auth,
                query,
                limit_query: p.limit_query,
                grid,
                life_labels,
            },
            json: a.json,
            events: a.events,
        })
    }
}

/// `leaktrace doctor`: probes as `trace` loads them.
pub fn doctor_load(pretend_missing: &[String]) -> LoadOptions {
    load(pretend_missing)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    const NOW: i64 = 1_767_225_600_000;

    fn analyze(args: &[&str], env: &[(&str, &str)]) -> Result<Analyze, String> {
        let mut all = vec!["leaktrace", "analyze"];
        all.extend(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        let Command::Analyze(a) = cli.command else { panic!() };
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Analyze::new(a, NOW, |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).map_err(|e| e.0)
    }

    fn source(a: Analyze) -> Source {
        match a {
            Analyze::Prometheus { source, .. } => source,
            Analyze::Record { .. } => panic!("a record"),
        }
    }

    #[test]
    fn analyze_prometheus_settings() {
        let s = source(analyze(&["--prometheus", "http://prom:9090/", "--query", "up"], &[]).unwrap());
        // Defaults: 7 days ending now, at 55 s, pid/container ids naming lives.
        assert_eq!(s.grid.step_ms, 55_000);
        assert_eq!(s.grid.end_ms, NOW - NOW % 55_000);
        assert!(s.grid.points() <= 11_000);
        assert_eq!(s.life_labels, vec!["pid", "container_id", "id"]);
        assert!(s.auth.is_none());
        let s = source(
            analyze(
                &[
                    "--prometheus",
                    "https://prom.example/prometheus",
                    "--query",
                    "up",
                    "--range",
                    "1h",
                    "--step",
                    "10s",
                    "--end",
                    "2026-01-01T01:00:00Z",
                    "--life-label",
                    "instance_id",
                ],
                &[("LEAKTRACE_PROMETHEUS_TOKEN", "t")],
            )
            .unwrap(),
        );
        assert_eq!(
            (s.grid.start_ms, s.grid.end_ms, s.grid.step_ms),
            (NOW, NOW + 3_600_000, 10_000)
        );
        assert_eq!(s.life_labels, vec!["instance_id"]);
        assert_eq!(s.auth, Some(crate::prometheus::client::Auth::Bearer("t".into())));
        // A record, as before.
        assert!(matches!(analyze(&["x.jsonl"], &[]).unwrap(), Analyze::Record { .. }));
    }

    #[test]
    fn analyze_prometheus_usage_errors() {
        for (args, want) in [
            (
                &["--prometheus", "prom:9090", "--query", "up"][..],
                "not an http:// or https:// URL",
            ),
            (&["--prometheus", "http://", "--query", "up"], "not an http"),
            (&["--prometheus", "http://p", "--query", " "], "--query: empty"),
            (&["--prometheus", "http://p", "--query", "up", "--end", "x"], "--end"),
            (
                &[
                    "--prometheus",
                    "http://p",
                    "--query",
                    "up",
                    "--range",
                    "1m",
                    "--step",
                    "2m",
                ],
                "longer than the range",
            ),
            (
                &[
                    "--prometheus",
                    "http://p",
                    "--query",
                    "up",
                    "--range",
                    "30d",
                    "--step",
                    "1s",
                ],
                "--step",
            ),
            // clap: --query needs --prometheus and the other way round; not with a FILE.
            (&["--prometheus", "http://p"], "--query"),
            (&["--query", "up"], "--prometheus"),
            (
                &["x.jsonl", "--prometheus", "http://p", "--query", "up"],
                "cannot be used",
            ),
            (&["x.jsonl", "--step", "1s"], "--prometheus"),
            (
                &["--prometheus", "http://p", "--query", "up", "--explain", "3"],
                "cannot be used",
            ),
            (&[], "FILE"),
        ] {
            let e = analyze(args, &[]).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
        let e = analyze(
            &["--prometheus", "http://p", "--query", "up"],
            &[("LEAKTRACE_PROMETHEUS_USER", "u")],
        )
        .unwrap_err();
        assert!(e.contains("LEAKTRACE_PROMETHEUS_PASSWORD"), "{e}");
    }
}
