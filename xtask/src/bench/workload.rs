//! The workloads: commands timed by wall clock, and redis throughput.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::sys;

/// How big each workload is. Full sizes take ~1–3 s per baseline run on a 2-core VM.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub idle_secs: f64,
    pub fault_mib: u64,
    pub fault_rounds: u64,
    pub mmaps: u64,
    pub forkexec: u64,
    pub redis_requests: u64,
}

impl Sizes {
    pub fn full() -> Self {
        Sizes {
            idle_secs: 2.0,
            fault_mib: 256,
            fault_rounds: 10,
            mmaps: 300_000,
            forkexec: 2_000,
            redis_requests: 200_000,
        }
    }

    pub fn quick() -> Self {
        Sizes {
            idle_secs: 0.5,
            fault_mib: 32,
            fault_rounds: 2,
            mmaps: 20_000,
            forkexec: 50,
            redis_requests: 5_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Idle,
    Faults,
    FaultsPerCpu,
    Mmaps,
    ForkExec,
    Redis,
}

/// One figure a workload produces.
#[derive(Clone, Debug)]
pub struct Metric {
    pub key: &'static str,
    /// `s` (lower is better) or `req/s` (higher is better).
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// The agent's goal: at most this % extra time / lost throughput.
    pub goal_pct: Option<f64>,
}

pub struct Workload {
    pub kind: Kind,
    pub key: &'static str,
    pub title: String,
    pub metrics: Vec<Metric>,
}

const SECONDS: Metric = Metric {
    key: "seconds",
    unit: "s",
    higher_is_better: false,
    goal_pct: None,
};

fn seconds(goal: f64) -> Metric {
    Metric {
        goal_pct: Some(goal),
        ..SECONDS
    }
}

fn rps(key: &'static str) -> Metric {
    Metric {
        key,
        unit: "req/s",
        higher_is_better: true,
        goal_pct: Some(1.0),
    }
}

/// All workloads, in the order they run.
pub fn all(s: &Sizes, nproc: usize) -> Vec<Workload> {
    vec![
        Workload {
            kind: Kind::Idle,
            key: "idle",
            title: format!("idle machine (sleep {} s)", s.idle_secs),
            metrics: vec![SECONDS],
        },
        Workload {
            kind: Kind::Faults,
            key: "faults",
            title: format!(
                "page-fault storm, 1 process ({} MiB mmap+touch+munmap ×{})",
                s.fault_mib, s.fault_rounds
            ),
            metrics: vec![seconds(1.0)],
        },
        Workload {
            kind: Kind::FaultsPerCpu,
            key: "faults_per_cpu",
            title: format!("page-fault storm, {nproc} processes (one per CPU, each as above)"),
            metrics: vec![seconds(1.0)],
        },
        Workload {
            kind: Kind::Mmaps,
            key: "mmaps",
            title: format!("mmap/munmap storm ({} × 64 KiB, untouched)", s.mmaps),
            metrics: vec![seconds(3.0)],
        },
        Workload {
            kind: Kind::ForkExec,
            key: "forkexec",
            title: format!("fork/exec/exit churn ({} × /bin/true)", s.forkexec),
            metrics: vec![seconds(3.0)],
        },
        Workload {
            kind: Kind::Redis,
            key: "redis",
            title: format!(
                "redis SET/GET (redis-benchmark, 50 clients, {} requests each)",
                s.redis_requests
            ),
            metrics: vec![rps("set_rps"), rps("get_rps")],
        },
    ]
}

/// What running a workload needs.
pub struct Ctx {
    pub workload_bin: PathBuf,
    pub nproc: usize,
    pub sizes: Sizes,
    pub timeout: Duration,
    /// Longest wait for the machine to quiet down before a run.
    pub quiet_wait: Duration,
    /// What is left of the total time the runs may wait for quiet.
    pub quiet_budget: std::cell::Cell<Duration>,
    pub redis_server: Option<PathBuf>,
    pub redis_benchmark: Option<PathBuf>,
    pub scratch: PathBuf,
}

impl Ctx {
    fn lt(&self, args: &[String]) -> Command {
        let mut c = Command::new(&self.workload_bin);
        c.args(args);
        c
    }
}

/// Per-workload state kept across rounds (the redis server).
pub enum State {
    None,
    Redis(Redis),
}

impl Workload {
    /// Starts what must exist before the first round (redis).
    pub fn prepare(&self, ctx: &Ctx) -> Result<State> {
        match self.kind {
            Kind::Redis => {
                let Some(server) = &ctx.redis_server else {
                    bail!("redis-server is not installed")
                };
                if ctx.redis_benchmark.is_none() {
                    bail!("redis-benchmark is not installed");
                }
                Ok(State::Redis(Redis::start(server, &ctx.scratch)?))
            }
            _ => Ok(State::None),
        }
    }

    /// Starts one run: the workload's processes exist (held before they do any work, so an
    /// agent can be pointed at them) but do not run until [`Started::finish`].
    pub fn start(&self, ctx: &Ctx, state: &State) -> Result<Started> {
        let s = &ctx.sizes;
        let faults = || ctx.lt(&["faults".into(), s.fault_mib.to_string(), s.fault_rounds.to_string()]);
        let cmds = match self.kind {
            Kind::Idle => {
                let mut c = Command::new("sleep");
                c.arg(s.idle_secs.to_string());
                vec![c]
            }
            Kind::Faults => vec![faults()],
            Kind::FaultsPerCpu => (0..ctx.nproc).map(|_| faults()).collect(),
            Kind::Mmaps => vec![ctx.lt(&["mmaps".into(), s.mmaps.to_string()])],
            Kind::ForkExec => vec![ctx.lt(&["forkexec".into(), s.forkexec.to_string(), "/bin/true".into()])],
            Kind::Redis => {
                let State::Redis(redis) = state else {
                    bail!("redis is not running")
                };
                return Ok(Started::Redis { server: redis.pid() });
            }
        };
        Ok(Started::Timed(Gated::spawn(cmds)?))
    }
}

/// A run whose processes exist but have not started their work.
pub enum Started {
    Timed(Gated),
    Redis { server: u32 },
}

impl Started {
    /// The (first) process of the workload: the one a per-process agent watches.
    pub fn target(&self) -> Option<u32> {
        match self {
            Started::Timed(g) => g.children.first().map(|(c, _)| c.id()),
            Started::Redis { server } => Some(*server),
        }
    }

    /// Lets it run to the end; one value per metric.
    pub fn finish(self, ctx: &Ctx, state: &State) -> Result<Vec<f64>> {
        match self {
            Started::Timed(g) => Ok(vec![g.run(ctx.timeout)?]),
            Started::Redis { .. } => {
                let State::Redis(redis) = state else {
                    bail!("redis is not running")
                };
                let bench = ctx.redis_benchmark.as_ref().expect("checked in prepare");
                let (set, get) = redis.benchmark(bench, ctx.sizes.redis_requests, ctx.timeout)?;
                Ok(vec![set, get])
            }
        }
    }
}

/// Processes started as `sh -c 'read _ && exec CMD'`: each waits for a line on its stdin before
/// it becomes the command (same pid), so an agent can attach to it first. Killed if dropped
/// before [`Gated::run`].
pub struct Gated {
    children: Vec<(Child, String)>,
}

impl Gated {
    pub fn spawn(cmds: Vec<Command>) -> Result<Gated> {
        let mut g = Gated { children: Vec::new() };
        for c in cmds {
            let mut sh = Command::new("sh");
            sh.args(["-c", "read _ && exec \"$@\"", "sh"])
                .arg(c.get_program())
                .args(c.get_args())
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
            let child = sh
                .spawn()
                .with_context(|| format!("could not start `{}`", crate::util::display(&c)))?;
            g.children.push((child, crate::util::display(&c)));
        }
        Ok(g)
    }

    /// Releases every process at once; the wall time until the last one exits. Each must succeed.
    pub fn run(mut self, timeout: Duration) -> Result<f64> {
        let start = Instant::now();
        for (c, what) in &mut self.children {
            let mut stdin = c.stdin.take().expect("piped");
            stdin
                .write_all(b"go\n")
                .with_context(|| format!("could not release `{what}`"))?;
        }
        let (fired, watchdog) = watchdog(self.children.iter().map(|(c, _)| c.id()).collect(), timeout);
        let mut failures = Vec::new();
        for (c, what) in &mut self.children {
            let status = c.wait()?;
            if !status.success() {
                failures.push(format!("`{what}` failed ({status})"));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        drop(fired);
        self.children.clear();
        if watchdog.join().unwrap_or(false) {
            bail!(
                "the workload did not finish within {} s and was killed",
                timeout.as_secs()
            );
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(secs)
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        for (c, _) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the commands in parallel; the wall time until the last one exits. Each must succeed.
pub fn timed(cmds: Vec<Command>, timeout: Duration) -> Result<f64> {
    Gated::spawn(cmds)?.run(timeout)
}

/// Kills `pids` unless the returned sender is dropped within `timeout`; the thread returns
/// whether it had to.
fn watchdog(pids: Vec<u32>, timeout: Duration) -> (mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
    let (tx, rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            for pid in pids {
                let _ = sys::signal(pid, "KILL");
            }
            return true;
        }
        false
    });
    (tx, h)
}

/// A private redis-server on 127.0.0.1, killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(server: &Path, scratch: &Path) -> Result<Redis> {
        let port = sys::free_port()?;
        let dir = scratch.join("redis");
        std::fs::create_dir_all(&dir)?;
        let mut cmd = Command::new(server);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "yes", "--logfile", ""])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", crate::util::display(&cmd)))?;
        let mut redis = Redis { child, port };
        let start = Instant::now();
        loop {
            if redis.ping() {
                return Ok(redis);
            }
            if let Some(status) = redis.child.try_wait()? {
                bail!(
                    "redis-server exited at start ({status}): `{}`",
                    crate::util::display(&cmd)
                );
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("redis-server did not answer PING on 127.0.0.1:{port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// `redis-benchmark -t set,get`: (SET, GET) requests per second.
    pub fn benchmark(&self, bench: &Path, requests: u64, timeout: Duration) -> Result<(f64, f64)> {
        let mut cmd = Command::new(bench);
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-t",
            "set,get",
            "-n",
            &requests.to_string(),
            "--csv",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", crate::util::display(&cmd)))?;
        let (fired, watchdog) = watchdog(vec![child.id()], timeout);
        let out = child.wait_with_output()?;
        drop(fired);
        if watchdog.join().unwrap_or(false) {
            bail!("redis-benchmark did not finish within {} s", timeout.as_secs());
        }
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                crate::util::display(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse_csv(&String::from_utf8_lossy(&out.stdout))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `"SET","98039.22",...` and `"GET","..."` lines of `redis-benchmark --csv` (with or without
/// the header line of redis ≥ 7).
fn parse_csv(text: &str) -> Result<(f64, f64)> {
    let mut set = None;
    let mut get = None;
    for line in text.lines() {
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
        let (Some(name), Some(rps)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(rps) = rps.parse::<f64>() else {
            continue;
        };
        match name {
            "SET" => set = Some(rps),
            "GET" => get = Some(rps),
            _ => {}
        }
    }
    match (set, get) {
        (Some(s), Some(g)) => Ok((s, g)),
        _ => bail!("no SET/GET figures in redis-benchmark's output:\n{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_csv() {
        let v7 = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"98039.22\",\"0.3\"\n\"GET\",\"101010.10\",\"0.2\"\n";
        assert_eq!(parse_csv(v7).unwrap(), (98039.22, 101010.10));
        let old = "\"SET\",\"5.5\"\n\"GET\",\"6\"\n";
        assert_eq!(parse_csv(old).unwrap(), (5.5, 6.0));
        assert!(parse_csv("\"PING_INLINE\",\"5\"\n").is_err());
    }

    #[test]
    fn timed_runs_and_fails() {
        let ok = timed(
            vec![Command::new("true"), Command::new("true")],
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(ok >= 0.0);
        assert!(timed(vec![Command::new("false")], Duration::from_secs(10)).is_err());
        let mut slow = Command::new("sleep");
        slow.arg("5");
        assert!(timed(vec![slow], Duration::from_millis(200)).is_err());
    }
}
