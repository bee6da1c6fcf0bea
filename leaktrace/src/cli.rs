//! Command line: clap derive, parsed then validated. Bad values give one line and exit 2.
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

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
    Sites(crate::sites::args::SitesArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read these options from a TOML file (keys: the long flag names); flags given here win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    #[arg(long, value_name = "DIR", default_value = crate::report::store::DEFAULT_DIR)]
    pub report_dir: PathBuf,
    /// Emit `oom_predicted` when a process's projected time to OOM drops under this.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_duration, allow_negative_numbers = true)]
    pub predict_within: Duration,
    /// Capture a pre-OOM snapshot (smaps_rollup, status, top mappings) when the time to OOM drops under this.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_duration, allow_negative_numbers = true)]
    pub snapshot_within: Duration,
    /// Serve Prometheus metrics (`GET /metrics`) on ADDR: HOST:PORT or a bare PORT (on 127.0.0.1); without a value 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::sinks::metrics::DEFAULT_ADDR, value_parser = crate::sinks::metrics::parse_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Processes given per-process metrics series: the top N (leak suspected, then by growth, then footprint).
    #[arg(long, value_name = "N", default_value_t = crate::sinks::metrics::DEFAULT_TOP, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub metrics_top: u64,
    #[command(flatten)]
    pub stacks: crate::sites::args::RunStackArgs,
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
    #[command(flatten)]
    pub faults: crate::sites::args::FaultSampleArgs,
    #[command(flatten)]
    pub malloc: crate::sites::args::MallocArgs,
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
    #[arg(long, value_name = "DIR", default_value = crate::report::store::DEFAULT_DIR)]
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
    #[arg(long, value_name = "DIR", default_value = crate::report::store::DEFAULT_DIR)]
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

/// An existing file system path we will write into later.
#[allow(dead_code)]
pub fn parse_dir(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(s))
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
