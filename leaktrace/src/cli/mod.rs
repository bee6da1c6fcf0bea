//! Command line, in two layers (as ripgrep's lowargs → hiargs): clap derive parses what the user
//! said into plain data here (with `config.rs` for `run --config FILE`), then `settings.rs`
//! validates it once and builds the domain configuration each command wires (monitor, probes,
//! sinks). Modules below the CLI never import from it. Bad values give one line and exit 2.
pub mod config;
pub mod settings;
pub mod sites;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand};

pub use self::sites::SitesArgs;

/// Where `--metrics` without a value listens.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";
/// Default for `--metrics-top`.
pub const DEFAULT_METRICS_TOP: u64 = 50;
/// Where the agent writes OOM reports unless told otherwise.
pub const DEFAULT_REPORT_DIR: &str = "/var/lib/leaktrace/reports";

/// A bad argument found after parsing (e.g. a pid that does not exist): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit statuses (README.md, "Exit status").
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LEAK: u8 = 3;
    pub const NOT_FOUND: u8 = 127;
}

#[derive(Debug, Parser)]
#[command(
    name = "leaktrace",
    version,
    about = "Finds memory leaks and explains OOM kills while they happen (eBPF)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Testing: pretend a probe is missing (program name or category:tracepoint) to exercise its fallback.
    #[arg(long, global = true, hide = true, value_name = "PROBE")]
    pub pretend_missing: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the decoded kernel event stream (mmap, munmap, brk, mremap, fork, exec, exit, oom_kill).
    Trace(TraceArgs),
    /// The host agent: track every process (or the filtered ones), report leaks and OOM kills live.
    Run(RunArgs),
    /// Observe one process (or a command and its descendants) and give a leak verdict.
    /// Exit status: 0 no leak, 3 leak found, other non-zero on errors.
    Watch(WatchArgs),
    /// Check what leaktrace needs from this machine, one line per requirement and probe.
    Doctor(DoctorArgs),
    /// List the OOM kills: leaktrace's reports, and kills the kernel logged without one.
    Oom(OomArgs),
    /// Show one OOM report (by id, file name or path) for a person, or as JSON.
    Report(ReportArgs),
    /// Live terminal view: processes sorted by growth, with host memory signs (q to quit).
    Top(TopArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(hide = true)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout: leaktrace(1), or leaktrace-SUBCOMMAND(1).
    #[command(hide = true)]
    Man(ManArgs),
    /// Where a process's memory grows: bytes by allocation site (user stack), sorted; `--malloc`
    /// for outstanding malloc bytes instead.
    Sites(SitesArgs),
    /// Replay a record (`run --record FILE`) through the agent's own logic: the events `run` would
    /// have printed, and how it scored against the record's labels. With `--prometheus URL
    /// --query Q`: judge the memory series a Prometheus stores, one verdict per series.
    Analyze(AnalyzeArgs),
    /// What a JVM's heap is full of: live objects by class (a class histogram through the HotSpot
    /// attach mechanism, no JDK tools needed), or with --diff what grew between two. Each
    /// histogram makes the JVM run a full garbage collection first (a stop-the-world pause).
    Heap(HeapArgs),
    /// Where the host's memory is now: MemTotal in parts (processes, page cache, slab, tmpfs,
    /// kernel, unexplained), the largest tmpfs mounts and slab caches; `--files N` for the
    /// largest files in tmpfs mounts.
    Host(HostArgs),
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also list the N largest files in tmpfs mounts (and /dev/shm), by the memory they hold.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub files: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A record written by `leaktrace run --record` (JSON lines; `.gz` compressed too).
    #[arg(value_name = "FILE", required_unless_present = "prometheus")]
    pub record: Option<PathBuf>,
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also print every event the agent would have printed, not only the summary.
    #[arg(long)]
    pub events: bool,
    /// Say on stderr, tick by tick, how the process PID was judged (verdict, evidence, alarm).
    #[arg(long, value_name = "PID")]
    pub explain: Option<u32>,
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
}

/// `analyze --prometheus`: series a Prometheus stores instead of a record.
#[derive(Debug, Args)]
pub struct PrometheusArgs {
    /// Judge memory series a Prometheus stores (one verdict per series) instead of a record: its
    /// base URL. Credentials from the environment: LEAKTRACE_PROMETHEUS_TOKEN (or _TOKEN_FILE)
    /// for a bearer token, LEAKTRACE_PROMETHEUS_USER and _PASSWORD for basic auth.
    #[arg(long, value_name = "URL", conflicts_with_all = ["record", "explain"], requires = "query")]
    pub prometheus: Option<String>,
    /// PromQL giving the memory series to judge, in bytes (e.g.
    /// `namedprocess_namegroup_memory_bytes{memtype="resident"}`).
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub query: Option<String>,
    /// How far back to read (default 7d).
    #[arg(long, value_name = "DURATION", requires = "prometheus", value_parser = parse_duration, allow_negative_numbers = true)]
    pub range: Option<Duration>,
    /// Resolution (default: the range in one query of ≤ 11,000 points, at least 15s). Use your
    /// scrape interval or more.
    #[arg(long, value_name = "DURATION", requires = "prometheus", value_parser = parse_duration, allow_negative_numbers = true)]
    pub step: Option<Duration>,
    /// End of the range: now (default), seconds since the epoch, or RFC 3339.
    #[arg(long, value_name = "TIME", requires = "prometheus")]
    pub end: Option<String>,
    /// PromQL giving memory limits in bytes; a limit applies to every series that has all its
    /// labels (`__name__` aside): aggregate it `by` the labels to match on.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub limit_query: Option<String>,
    /// A label that names one life of a series rather than the series (a new value is a
    /// restart); repeatable; replaces the default pid, container_id, id.
    #[arg(long = "life-label", value_name = "LABEL", requires = "prometheus")]
    pub life_labels: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read these options from a TOML file (keys: the long flag names); flags given here win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the options in effect (config file and flags) as a config file, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only this process (tgid); repeatable.
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,
    /// Only processes with this command name; repeatable.
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// Sampling interval (seconds, or 500ms, 2s, ...).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Duration,
    /// Stop after this long.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Also trace mmap/munmap/brk/mremap and exit_group (memory-syscall history in OOM reports).
    /// Off by default: any syscall tracepoint puts every syscall on the host through the
    /// kernel's tracing path.
    #[arg(long)]
    pub syscalls: bool,
    /// Most processes tracked at once.
    #[arg(long, value_name = "N", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_processes: u64,
    /// Where OOM reports and pre-OOM snapshots are written (created 0700; files 0600).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_REPORT_DIR)]
    pub report_dir: PathBuf,
    /// Emit `oom_predicted` when a process's projected time to OOM drops under this.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_duration, allow_negative_numbers = true)]
    pub predict_within: Duration,
    /// Capture a pre-OOM snapshot (smaps_rollup, status, top mappings) when the time to OOM drops under this.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_duration, allow_negative_numbers = true)]
    pub snapshot_within: Duration,
    /// Serve Prometheus metrics (`GET /metrics`) on ADDR: HOST:PORT or a bare PORT (on 127.0.0.1); without a value 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_METRICS_ADDR, value_parser = parse_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Processes given per-process metrics series: the top N (leak suspected, then by growth, then footprint).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_METRICS_TOP, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub metrics_top: u64,
    #[command(flatten)]
    pub stacks: sites::RunStackArgs,
    /// Record what the agent observes (per-process memory readings, tick by tick) to FILE, for
    /// `leaktrace analyze FILE`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Do not attach the collector (USDT) probes of JVM and CPython processes: no GC figures,
    /// no heap floor, no Java OutOfMemoryError detection (and the minimal capabilities kept).
    #[arg(long)]
    pub no_runtimes: bool,
    /// Take a class histogram of a JVM when it is flagged as leaking and again when its OOM is
    /// predicted, and put what grew in the events and OOM reports. Each histogram makes the JVM
    /// run a full garbage collection (a stop-the-world pause): at most 4 per JVM, 15 s apart.
    #[arg(long, conflicts_with = "no_runtimes")]
    pub heap_snapshots: bool,
    /// With one --pid: a Prometheus counter of the work that process does (e.g. requests served),
    /// read every interval, to report the bytes it retains per unit of work: http://HOST:PORT/PATH#NAME.
    #[arg(long, value_name = "URL#NAME")]
    pub work_metric: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// JSON lines instead of text; the last line is the verdict.
    #[arg(long)]
    pub json: bool,
    /// Stop after this long (the verdict covers what was seen).
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Sampling interval.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Duration,
    /// The process to watch.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "command")]
    pub pid: Option<u32>,
    /// The command to start and watch, with its descendants (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// A Prometheus counter of the work the watched process does (e.g. requests served), read
    /// every interval, to report the bytes it retains per unit of work: http://HOST:PORT/PATH#NAME.
    #[arg(long, value_name = "URL#NAME")]
    pub work_metric: Option<String>,
    /// Run the command N times, one after the other, and report each run's peak and retained
    /// memory; growth across the identical runs is a leak (exit status 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: Option<u32>,
    #[command(flatten)]
    pub faults: sites::FaultSampleArgs,
    #[command(flatten)]
    pub malloc: sites::MallocArgs,
    /// Do not attach the collector (USDT) probes of JVM and CPython processes.
    #[arg(long)]
    pub no_runtimes: bool,
}

#[derive(Debug, Args)]
pub struct HeapArgs {
    /// The JVM (its pid on this host; containers work).
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: u32,
    /// Take a second histogram this long after the first and show what grew, by bytes.
    /// Two histograms: two full collections.
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub diff: Option<Duration>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Classes shown (text); JSON has them all.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub top: u64,
    /// Give up on the JVM's answer after this long (its full collection included).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_duration, allow_negative_numbers = true)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Only this process (tgid); repeatable.
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,
    /// Only processes with this command name (as in /proc/PID/comm); repeatable.
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Stop after this long (seconds, or with a unit: 500ms, 30s, 5m, 1h).
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct OomArgs {
    /// One JSON object per kill instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only kills newer than this (e.g. 30m, 2h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_negative_numbers = true)]
    pub since: Option<Duration>,
    /// Where the agent writes its reports.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_REPORT_DIR)]
    pub report_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report id (`oom-1764000000000-4242`), file name, or path.
    #[arg(value_name = "ID|PATH")]
    pub report: String,
    /// The report as pretty-printed JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the agent writes its reports (for ids and file names).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_REPORT_DIR)]
    pub report_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Sampling interval (seconds, or 500ms, 2s, ...).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Duration,
    /// Only this process (tgid); repeatable.
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,
    /// Only processes with this command name; repeatable.
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// Do not attach the collector (USDT) probes of JVM and CPython processes.
    #[arg(long)]
    pub no_runtimes: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand's page instead of the main one.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A positive duration: `10`, `1.5`, `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = t.strip_suffix('d') {
        (n, 86400.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30, 1.5, 500ms, 5m)"))?;
    let secs = v * mult;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("must be greater than zero, got `{s}`"));
    }
    if secs > 10.0 * 365.0 * 86400.0 {
        return Err(format!("`{s}` is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `leaktrace completions SHELL`: the script, generated from the definitions above.
pub fn completions(shell: clap_complete::Shell) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(
        shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "leaktrace",
        &mut buf,
    );
    write_stdout(&buf)
}

/// `leaktrace man [SUBCOMMAND]`: the roff page; `false` when there is no such (visible) subcommand.
pub fn man(subcommand: Option<&str>) -> std::io::Result<bool> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build(); // names subcommands `leaktrace-run` & co.
    let page = match subcommand {
        None => cmd,
        Some(name) => match cmd.get_subcommands().find(|c| c.get_name() == name && !c.is_hide_set()) {
            Some(c) => c.clone(),
            None => return Ok(false),
        },
    };
    let mut buf = Vec::new();
    let source = format!("leaktrace {}", env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(page).source(source).render(&mut buf)?;
    write_stdout(&buf).map(|()| true)
}

/// All of `buf` to stdout; a closed pipe (`leaktrace man | head`) is not an error.
fn write_stdout(buf: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// `--metrics` value: `HOST:PORT` (an IP address, v6 in brackets) or a bare `PORT` (on 127.0.0.1).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(port) = t.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(format!(
        "`{s}` is not an address to listen on (e.g. 127.0.0.1:9464, [::1]:9464, 9464)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["0", "-1", "-0.5", "abc", "", "NaN", "inf", "1e300", "0ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            parse_addr(DEFAULT_METRICS_ADDR).unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(parse_addr("9100").unwrap(), "127.0.0.1:9100".parse().unwrap());
        assert_eq!(parse_addr("[::1]:9464").unwrap(), "[::1]:9464".parse().unwrap());
        for bad in ["", "localhost:9464", "1.2.3.4", "1.2.3.4:99999", "abc"] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from([
            "leaktrace",
            "trace",
            "--pid",
            "5",
            "--pid",
            "6",
            "--json",
            "--duration",
            "3",
        ])
        .unwrap();
        let Command::Trace(t) = c.command else { panic!() };
        assert_eq!(t.pids, vec![5, 6]);
        assert!(Cli::try_parse_from(["leaktrace", "trace", "--pid", "x"]).is_err());
        assert!(Cli::try_parse_from(["leaktrace", "trace", "--pid", "0"]).is_err());
        assert!(Cli::try_parse_from(["leaktrace", "trace", "--duration", "-5"]).is_err());
        assert!(Cli::try_parse_from(["leaktrace", "trace", "--bogus"]).is_err());
        assert!(Cli::try_parse_from(["leaktrace", "frobnicate"]).is_err());
        assert!(Cli::try_parse_from(["leaktrace", "watch", "--pid", "5", "--", "ls"]).is_err());
        assert!(Cli::try_parse_from(["leaktrace", "watch", "--interval", "0", "--pid", "5"]).is_err());
        let c = Cli::try_parse_from(["leaktrace", "watch", "--json", "--", "ls", "-l"]).unwrap();
        let Command::Watch(w) = c.command else { panic!() };
        assert_eq!(w.command, vec!["ls", "-l"]);
    }
}
