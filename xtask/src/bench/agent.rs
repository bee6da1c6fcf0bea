//! The arms of the benchmark (no tracing, leaktrace, bpftrace) and a running agent process:
//! started, waited for until it has attached, measured, stopped with SIGINT.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::sys;

/// One way of running a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// No tracing at all.
    Baseline,
    /// `leaktrace run --json`: the agent as deployed.
    Run,
    /// `leaktrace run --stacks`: allocation-site attribution (sampled page faults with user stacks,
    /// stack copies unwound by CFI) for every process.
    RunStacks,
    /// `leaktrace sites --pid PID`: allocation sites of the workload's (first) process, with the
    /// brk/mmap/mremap stacks too.
    Sites,
    /// bpftrace counting the same tracepoints per pid (a peer tool for scale).
    Bpftrace,
}

/// What an arm starts next to the workload.
pub enum Spec {
    Nothing,
    /// `leaktrace ARGS... --report-dir DIR`.
    Leaktrace(&'static [&'static str]),
    /// `leaktrace ARGS... PID`, PID being the workload's (first) process.
    LeaktraceAt(&'static [&'static str]),
    Bpftrace,
}

impl Arm {
    pub const ALL: [Arm; 5] = [Arm::Baseline, Arm::Run, Arm::RunStacks, Arm::Sites, Arm::Bpftrace];

    /// `None`: the arm does not exist yet; it is listed as "n/a (not implemented)".
    pub fn spec(self) -> Option<Spec> {
        match self {
            Arm::Baseline => Some(Spec::Nothing),
            Arm::Run => Some(Spec::Leaktrace(&["run", "--json"])),
            Arm::RunStacks => Some(Spec::Leaktrace(&["run", "--json", "--stacks"])),
            Arm::Sites => Some(Spec::LeaktraceAt(&["sites", "--json", "--pid"])),
            Arm::Bpftrace => Some(Spec::Bpftrace),
        }
    }

    /// The arm watches one process: the workload's pid must exist before the agent starts.
    pub fn needs_target(self) -> bool {
        matches!(self.spec(), Some(Spec::LeaktraceAt(_)))
    }

    pub fn implemented(self) -> bool {
        self.spec().is_some()
    }

    /// Short machine name (JSON keys).
    pub fn key(self) -> &'static str {
        match self {
            Arm::Baseline => "baseline",
            Arm::Run => "leaktrace_run",
            Arm::RunStacks => "leaktrace_run_stacks",
            Arm::Sites => "leaktrace_sites",
            Arm::Bpftrace => "bpftrace",
        }
    }

    /// What a person sees in the table.
    pub fn label(self) -> &'static str {
        match self {
            Arm::Baseline => "baseline",
            Arm::Run => "leaktrace run",
            Arm::RunStacks => "leaktrace run +stacks",
            Arm::Sites => "leaktrace sites --pid",
            Arm::Bpftrace => "bpftrace (peer)",
        }
    }
}

/// The bpftrace peer: per-pid counts on the tracepoints leaktrace uses for the same facts.
pub const BPFTRACE_SCRIPT: &str = "\
tracepoint:kmem:rss_stat { @rss[pid] = count(); }
tracepoint:exceptions:page_fault_user { @fault[pid] = count(); }
tracepoint:syscalls:sys_enter_mmap { @mmap[pid] = count(); }
tracepoint:syscalls:sys_enter_munmap { @munmap[pid] = count(); }
tracepoint:syscalls:sys_enter_brk { @brk[pid] = count(); }
tracepoint:oom:mark_victim { @oom[args->pid] = count(); }
tracepoint:syscalls:sys_enter_kill /args->sig == 0 && args->pid == 2147480000/ { printf(\"bench: attached\\n\"); }
";

/// bpftrace prints `Attaching N probes...` *before* attaching; the last probe above answers a
/// `kill -0` of this (impossible) pid once everything before it is attached.
const BPFTRACE_POKE_PID: u32 = 2_147_480_000;

/// Paths the arms need.
pub struct Tools {
    pub leaktrace: PathBuf,
    pub bpftrace: Option<PathBuf>,
    /// Where the bpftrace script is written.
    pub scratch: PathBuf,
}

/// What the agent cost while the workload ran.
#[derive(Clone, Debug, Default)]
pub struct Cost {
    /// CPU time of the agent process ÷ wall time of the workload, in % of one core.
    pub cpu_pct: f64,
    /// VmHWM just before stopping, MiB.
    pub peak_rss_mib: f64,
    /// VmRSS just before stopping, MiB.
    pub final_rss_mib: f64,
    /// `dropped` events' counts per kind (leaktrace only).
    pub drops: BTreeMap<String, u64>,
}

/// Lines kept from an agent's stderr (and bpftrace's stdout) for error messages.
const LOG_LINES: usize = 40;

pub struct Agent {
    name: String,
    child: Child,
    pub pid: u32,
    /// The agent's stdout (leaktrace's JSON lines), when it goes to a file.
    pub out: Option<PathBuf>,
    log: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
    /// A peer tool: a hang at stop is a warning, not a failure of the run.
    pub lenient: bool,
}

/// Starts the agent of `arm` (None for the baseline) and waits until it has attached; `target`:
/// the workload's (first) process, for the arms that watch one.
pub fn start(arm: Arm, tools: &Tools, dir: &Path, tag: &str, target: Option<u32>) -> Result<Option<Agent>> {
    let Some(spec) = arm.spec() else {
        bail!("{}: not implemented", arm.label())
    };
    match spec {
        Spec::Nothing => Ok(None),
        Spec::Leaktrace(args) => {
            let reports = dir.join(format!("reports-{tag}"));
            let mut cmd = Command::new(&tools.leaktrace);
            cmd.args(args).arg("--report-dir").arg(&reports);
            let out = dir.join(format!("agent-{tag}.jsonl"));
            Agent::spawn(arm.label(), cmd, "leaktrace: running", Some(out)).map(Some)
        }
        Spec::LeaktraceAt(args) => {
            let Some(pid) = target else {
                bail!("{}: the workload has no process to watch", arm.label())
            };
            let mut cmd = Command::new(&tools.leaktrace);
            cmd.args(args).arg(pid.to_string());
            let out = dir.join(format!("agent-{tag}.jsonl"));
            Agent::spawn(arm.label(), cmd, "leaktrace: allocation sites of pid", Some(out)).map(Some)
        }
        Spec::Bpftrace => {
            let Some(bpftrace) = &tools.bpftrace else {
                bail!("bpftrace is not installed")
            };
            let script = tools.scratch.join("peer.bt");
            if !script.is_file() {
                fs::write(&script, BPFTRACE_SCRIPT).with_context(|| format!("cannot write {}", script.display()))?;
            }
            let mut cmd = Command::new(bpftrace);
            cmd.arg(&script);
            let mut agent = Agent::spawn_poked(arm.label(), cmd, "bench: attached", None, Some(BPFTRACE_POKE_PID))?;
            agent.lenient = true;
            Ok(Some(agent))
        }
    }
}

/// Reads a stream line by line: signals `ready` on the first line containing `pattern`, keeps
/// the last lines in `log`, and discards the rest (so the agent never blocks on a full pipe).
fn reader(
    stream: impl Read + Send + 'static,
    pattern: &'static str,
    ready: Sender<()>,
    log: Arc<Mutex<VecDeque<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if !seen && line.contains(pattern) {
                seen = true;
                let _ = ready.send(());
            }
            let mut log = log.lock().unwrap();
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    })
}

impl Agent {
    /// Spawns `cmd`; its stdout goes to `out` (or is read like stderr when `None`); returns
    /// once a line containing `ready` appeared on stderr or stdout.
    pub fn spawn(name: &str, cmd: Command, ready: &'static str, out: Option<PathBuf>) -> Result<Agent> {
        Self::spawn_poked(name, cmd, ready, out, None)
    }

    /// As [`Agent::spawn`]; while waiting, sends `kill -0 POKE` every 100 ms (a syscall the
    /// agent may be waiting to see).
    pub fn spawn_poked(
        name: &str,
        mut cmd: Command,
        ready: &'static str,
        out: Option<PathBuf>,
        poke: Option<u32>,
    ) -> Result<Agent> {
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        match &out {
            Some(path) => {
                let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
                cmd.stdout(f);
            }
            None => {
                cmd.stdout(Stdio::piped());
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {name}: `{}`", crate::util::display(&cmd)))?;
        let pid = child.id();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let mut readers = vec![reader(child.stderr.take().unwrap(), ready, tx.clone(), log.clone())];
        if let Some(stdout) = child.stdout.take() {
            readers.push(reader(stdout, ready, tx, log.clone()));
        } else {
            drop(tx);
        }
        let mut agent = Agent {
            name: name.to_owned(),
            child,
            pid,
            out,
            log,
            readers,
            lenient: false,
        };
        let start = Instant::now();
        loop {
            if let Some(p) = poke {
                let _ = sys::signal(p, "0"); // fails (no such process) but makes the syscall
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => return Ok(agent),
                Err(e) => {
                    if e == RecvTimeoutError::Disconnected {
                        // Both streams closed without the line: the exit check below decides.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if let Some(status) = agent.child.try_wait()? {
                        let log = agent.log_tail();
                        agent.join_readers();
                        bail!("{name} exited before it attached ({status}):\n{log}");
                    }
                    if start.elapsed() > Duration::from_secs(90) {
                        let _ = agent.child.kill();
                        let _ = agent.child.wait();
                        let log = agent.log_tail();
                        bail!("{name} did not attach within 90 s (no `{ready}` line):\n{log}");
                    }
                }
            }
        }
    }

    /// CPU time used so far (ns).
    pub fn cpu_ns(&self) -> u64 {
        sys::cpu_ns(self.pid).unwrap_or(0)
    }

    /// (VmHWM, VmRSS) in MiB, now.
    pub fn memory_mib(&self) -> (f64, f64) {
        let mib = |k: &str| sys::status_kib(self.pid, k).map_or(f64::NAN, |kib| kib as f64 / 1024.0);
        (mib("VmHWM:"), mib("VmRSS:"))
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// SIGINT (again every 10 s), then waits; SIGKILL after 60 s. Fails unless the agent exits
    /// successfully — except a peer (`lenient`), which is only warned about when it hangs.
    pub fn stop(mut self) -> Result<ExitStatus> {
        sys::signal(self.pid, "INT")?;
        let start = Instant::now();
        let mut last_int = start;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let status = self.child.wait()?;
                self.join_readers();
                if self.lenient {
                    eprintln!(
                        "bench: warning: {} did not stop within 60 s of SIGINT and was killed",
                        self.name
                    );
                    return Ok(status);
                }
                bail!("{} did not stop within 60 s of SIGINT:\n{}", self.name, self.log_tail());
            }
            if last_int.elapsed() > Duration::from_secs(10) {
                let _ = sys::signal(self.pid, "INT");
                last_int = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.join_readers();
        if !status.success() {
            bail!("{} exited with {status} after SIGINT:\n{}", self.name, self.log_tail());
        }
        Ok(status)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Only reached with the child still running when an error cut a round short.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sums the `count` of `{"event":"dropped","kind":K,"count":N}` lines per kind.
pub fn drops_in(path: &Path) -> Result<BTreeMap<String, u64>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut drops = BTreeMap::new();
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.contains("\"dropped\"") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["event"] == "dropped" {
            let kind = v["kind"].as_str().unwrap_or("?").to_owned();
            *drops.entry(kind).or_insert(0) += v["count"].as_u64().unwrap_or(0);
        }
    }
    Ok(drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms() {
        // Baseline, the agent and the peer always exist; only optional arms may be missing.
        assert!([Arm::Baseline, Arm::Run, Arm::Bpftrace].iter().all(|a| a.implemented()));
        assert!(matches!(Arm::Baseline.spec(), Some(Spec::Nothing)));
        let keys: std::collections::HashSet<_> = Arm::ALL.iter().map(|a| a.key()).collect();
        assert_eq!(keys.len(), Arm::ALL.len());
    }

    #[test]
    fn drops_are_summed_per_kind() {
        let dir = sys::TempDir::new().unwrap();
        let p = dir.0.join("x.jsonl");
        fs::write(
            &p,
            "{\"event\":\"dropped\",\"ts_ns\":1,\"pid\":0,\"kind\":\"mmap\",\"count\":3}\n\
             {\"event\":\"leak_suspected\",\"pid\":5}\n\
             {\"event\":\"dropped\",\"ts_ns\":2,\"pid\":0,\"kind\":\"mmap\",\"count\":4}\n\
             {\"event\":\"dropped\",\"ts_ns\":2,\"pid\":0,\"kind\":\"munmap\",\"count\":1}\n",
        )
        .unwrap();
        let d = drops_in(&p).unwrap();
        assert_eq!(d.get("mmap"), Some(&7));
        assert_eq!(d.get("munmap"), Some(&1));
    }
}
