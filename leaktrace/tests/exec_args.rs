//! The exec probe keeps a program's argv before it can rewrite its process title: redis-server
//! replaces /proc/PID/cmdline with "redis-server 127.0.0.1:PORT", losing `--maxmemory`, which the
//! agent's identity (and the declared-cap analysis) still shows.
mod common;

use std::{
    fs,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{Agent, bpf_available, ensure_package, prom::free_port, scaled, tempdir};
use serde_json::Value;

const REDIS: &str = "/usr/bin/redis-server";

/// A redis-server killed when the test ends.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(dir: &str) -> Redis {
    let port = free_port().to_string();
    Redis(
        Command::new(REDIS)
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir,
                "--maxmemory",
                "64mb",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    )
}

fn proc_cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Every cmdline the record gives the life(s) of `pid` (`new` identities; those that only say
/// its cgroup moved have none).
fn recorded_cmdlines(record: &str, pid: u32) -> Vec<Vec<String>> {
    let text = fs::read_to_string(record).unwrap_or_else(|e| panic!("{record}: {e}"));
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for id in v["new"].as_array().into_iter().flatten().filter(|i| i["pid"] == pid) {
            let cmd = id["cmdline"].as_array().cloned().unwrap_or_default();
            if !cmd.is_empty() {
                out.push(cmd.iter().map(|a| a.as_str().unwrap_or_default().to_string()).collect());
            }
        }
    }
    out
}

/// Run the agent (extra `flags`), start redis under it, and return what the record says its
/// command line is, with /proc's at that time.
fn observe_redis(name: &str, flags: &[&str]) -> (u32, Vec<Vec<String>>, Vec<String>) {
    let dir = tempdir(name);
    fs::create_dir_all(&dir).unwrap();
    let record = format!("{dir}/record.jsonl");
    let mut args = vec![
        "run",
        "--json",
        "--interval",
        "500ms",
        "--report-dir",
        &dir,
        "--record",
        &record,
        "--comm",
        "redis-server",
    ];
    args.extend_from_slice(flags);
    let agent = Agent::start(&args, "leaktrace: running");
    let redis = start_redis(&dir);
    let pid = redis.0.id();
    // Redis sets its title once it listens; the agent reads the identity at its next tick.
    let until = Instant::now() + scaled(Duration::from_secs(20));
    let mut proc = proc_cmdline(pid);
    while proc.iter().any(|a| a == "--maxmemory") && Instant::now() < until {
        thread::sleep(Duration::from_millis(100));
        proc = proc_cmdline(pid);
    }
    thread::sleep(scaled(Duration::from_secs(2)));
    let (status, _) = agent.stop();
    assert!(status.success(), "agent exit: {status:?}");
    let seen = recorded_cmdlines(&record, pid);
    drop(redis);
    let _ = fs::remove_dir_all(&dir);
    (pid, seen, proc)
}

#[test]
fn exec_args_survive_a_rewritten_process_title() {
    if !bpf_available("exec_args_survive_a_rewritten_process_title") {
        return;
    }
    ensure_package(REDIS, "redis-server");

    let (pid, seen, proc) = observe_redis("execargs-on", &[]);
    assert!(
        !proc.iter().any(|a| a == "--maxmemory"),
        "redis-server {pid} did not rewrite its title (the test needs it to): /proc cmdline {proc:?}"
    );
    assert!(!seen.is_empty(), "the record has no identity for redis-server {pid}");
    for cmd in &seen {
        let at = cmd.iter().position(|a| a == "--maxmemory");
        assert!(
            at.is_some_and(|i| cmd.get(i + 1).is_some_and(|v| v == "64mb")),
            "identity of redis-server {pid} lacks `--maxmemory 64mb`: {cmd:?} (/proc: {proc:?})"
        );
        assert_eq!(cmd[0], REDIS, "argv[0] as exec'd: {cmd:?}");
    }

    // Without the exec-time argv the agent only has /proc's: the cap is lost (what this fixes).
    let (pid, seen, _) = observe_redis("execargs-off", &["--pretend-missing", "exec_args"]);
    // The agent may read /proc before redis rewrites its title (then a later identity replaces
    // that one): the identity it ends with is the rewritten one.
    let last = seen.last();
    assert!(last.is_some(), "the record has no identity for redis-server {pid}");
    assert!(
        last.is_some_and(|cmd| !cmd.iter().any(|a| a == "--maxmemory")),
        "with exec_args off, /proc's rewritten cmdline was expected last: {seen:?}"
    );
}
