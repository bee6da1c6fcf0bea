//! Helpers for the privileged integration tests: the real agent binary, real workloads, real cgroups.
#![allow(dead_code)]

pub mod prom;
pub mod sites;

use std::{
    fs,
    io::{BufRead, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const AGENT: &str = env!("CARGO_BIN_EXE_leaktrace");

/// `lt-workload`, built by `cargo build --workspace` next to the test binaries.
pub fn workload() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join("lt-workload");
    assert!(
        p.exists(),
        "{} missing: run the tests through `cargo xtask test` (it builds the workspace)",
        p.display()
    );
    p
}

/// Timeouts are multiplied by `LEAKTRACE_TEST_TIMEOUT_SCALE` (default 1): the kernel matrix sets
/// it for guests under software emulation (TCG), where everything runs several times slower.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(timeout_scale())
}

/// `LEAKTRACE_TEST_TIMEOUT_SCALE`, at least 1.
pub fn timeout_scale() -> f64 {
    std::env::var("LEAKTRACE_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|k| k.is_finite() && *k >= 1.0)
        .unwrap_or(1.0)
}

/// True when this test may load BPF programs. Under CI=true a machine that cannot is a failure,
/// not a skip; locally the test is skipped with the reason printed.
pub fn bpf_available(test: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let out = Command::new(AGENT)
        .arg("doctor")
        .output()
        .expect("run leaktrace doctor");
    if out.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("missing"))
        .collect::<Vec<_>>()
        .join(" | ");
    if ci {
        panic!("{test}: BPF cannot be loaded here and CI=true: {why}");
    }
    eprintln!("SKIP {test}: BPF cannot be loaded here (run as root via `cargo xtask test`): {why}");
    false
}

/// `path` exists, or `apt-get install -y PACKAGE` makes it so (apt-get update and again on a
/// first failure). A test that needs it fails, not skips, when it cannot be had.
pub fn ensure_package(path: &str, package: &str) {
    if Path::new(path).exists() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        install();
    }
    assert!(
        Path::new(path).exists(),
        "{path} missing and `apt-get install {package}` did not provide it"
    );
}

/// A running `leaktrace` whose stdout lines are collected.
pub struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Agent {
    /// Start `leaktrace ARGS` and wait until it says it is attached (a line on stderr containing
    /// `ready_marker`).
    pub fn start(args: &[&str], ready_marker: &str) -> Agent {
        Agent::start_env(args, &[], ready_marker)
    }

    /// [`Agent::start`] with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)], ready_marker: &str) -> Agent {
        let mut child = Command::new(AGENT)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn leaktrace");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let l2 = Arc::clone(&lines);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let s2 = Arc::clone(&stderr_lines);
        let marker = ready_marker.to_string();
        thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Stored before the ready signal, so `stderr()` has the ready line once
                // `start` returns.
                let ready = !sent && line.contains(&marker);
                s2.lock().unwrap().push(line);
                if ready {
                    let _ = tx.send(());
                    sent = true;
                }
            }
        });
        let mut agent = Agent {
            child,
            lines,
            stderr: stderr_lines,
            reader: Some(reader),
        };
        if rx.recv_timeout(scaled(Duration::from_secs(60))).is_err() {
            let _ = agent.child.kill();
            panic!(
                "leaktrace {args:?} did not become ready; stderr: {:?}",
                agent.stderr.lock().unwrap()
            );
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Wait until `pred` holds for some collected JSON line, or panic after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let timeout = scaled(timeout);
        let start = Instant::now();
        // Only the lines that arrived since the last look are parsed (a flood is tens of
        // thousands of lines; parsing them all every 100 ms starves a slow guest).
        let mut seen = 0;
        loop {
            let new: Vec<String> = {
                let lines = self.lines.lock().unwrap();
                let new = lines[seen..].to_vec();
                seen = lines.len();
                new
            };
            for l in &new {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                if pred(&v) {
                    return v;
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "no {what} within {timeout:?}; got {} lines, stderr {:?}",
                    self.lines().len(),
                    self.stderr.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGINT, then wait for a clean exit; returns the exit status.
    pub fn stop(mut self) -> (ExitStatus, Vec<Value>) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("wait leaktrace");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let v = self.json();
        (status, v)
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn events_for<'a>(events: &'a [Value], kind: &str, pid: u32) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|v| v["event"] == kind && v["pid"] == pid)
        .collect()
}

/// A memory cgroup with a limit, removed on drop (its processes killed first).
pub struct MemCgroup {
    pub dir: PathBuf,
    pub rel: String,
    pub v2: bool,
}

impl MemCgroup {
    pub fn new(name: &str, limit_bytes: u64) -> MemCgroup {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let (dir, v2) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(name), false)
        } else {
            let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .iter()
                .map(Path::new)
                .find(|p| {
                    fs::read_to_string(p.join("cgroup.controllers"))
                        .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
                })
                .expect("no memory cgroup controller (v1 or v2) on this machine");
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory");
            (root.join(name), true)
        };
        if dir.exists() {
            let _ = fs::remove_dir(&dir);
        }
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let cg = MemCgroup {
            rel: format!("/{name}"),
            dir,
            v2,
        };
        if v2 {
            fs::write(cg.dir.join("memory.max"), limit_bytes.to_string()).expect("memory.max");
            let _ = fs::write(cg.dir.join("memory.swap.max"), "0");
        } else {
            fs::write(cg.dir.join("memory.limit_in_bytes"), limit_bytes.to_string()).expect("memory.limit_in_bytes");
            let _ = fs::write(cg.dir.join("memory.memsw.limit_in_bytes"), limit_bytes.to_string());
        }
        cg
    }

    pub fn procs_file(&self) -> String {
        self.dir.join("cgroup.procs").display().to_string()
    }
}

/// Kill what is left in a cgroup the test made, then remove it (tried for 5 s).
pub fn remove_cgroup(dir: &Path) {
    for _ in 0..50 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() && fs::remove_dir(dir).is_ok() {
            return;
        }
        for p in pids {
            // SAFETY: killing processes the test put in its own cgroup.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("warning: could not remove {}", dir.display());
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        remove_cgroup(&self.dir);
    }
}

/// Run `leaktrace ARGS` without privileges needed; returns (exit code, stdout, stderr).
pub fn run_agent(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(AGENT)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let st = child.wait().unwrap();
    (st.code().unwrap_or(-1), out, err)
}

/// A fresh directory for this test's reports.
pub fn tempdir(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("leaktrace-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d.display().to_string()
}

/// The highest BPF program id loaded now: programs loaded later (by the agent a test starts)
/// have larger ids, which tells them from other tools' (or earlier tests') programs.
pub fn newest_program_id() -> u32 {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .max()
        .unwrap_or(0)
}

/// Programs loaded after `since` (see [`newest_program_id`]): name and run count (run counts
/// move only while BPF statistics are on: hold [`bpf_stats`]).
pub fn programs_since(since: u32) -> Vec<(String, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.id() > since)
        .map(|p| (String::from_utf8_lossy(p.name()).into_owned(), p.run_count()))
        .collect()
}

/// The kernel keeps 15 bytes of a program's name.
pub fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// Whether a program called `name` was loaded after `since`.
pub fn loaded_since(since: u32, name: &str) -> bool {
    run_count(since, name).is_some()
}

/// Run count of the program `name` among those loaded after `since` (None: not loaded).
pub fn run_count(since: u32, name: &str) -> Option<u64> {
    programs_since(since)
        .into_iter()
        .find(|(n, _)| n == kernel_name(name))
        .map(|(_, c)| c)
}

/// BPF run-time statistics on for as long as the value lives.
pub fn bpf_stats() -> std::os::fd::OwnedFd {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS")
}
