//! The spine against the real kernel: exact events for a process we drive, a real OOM kill in a
//! memory cgroup, doctor, and bad input. Run serially (`cargo xtask test`).
mod common;

use std::{os::unix::process::ExitStatusExt as _, process::Command, time::Duration};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

#[test]
fn doctor_says_the_agent_can_run() {
    if !bpf_available("doctor_says_the_agent_can_run") {
        return;
    }
    let (code, out, _) = run_agent(&["doctor"]);
    assert_eq!(code, 0, "doctor failed:\n{out}");
    for probe in [
        "syscalls:sys_enter_mmap",
        "sched:sched_process_exit",
        "oom:mark_victim",
        "ring buffer",
        "tracefs",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(probe)),
            "doctor has no ok line for {probe}:\n{out}"
        );
    }
}

#[test]
fn trace_reports_exact_syscalls_and_lifecycle() {
    if !bpf_available("trace_reports_exact_syscalls_and_lifecycle") {
        return;
    }
    let agent = Agent::start(&["trace", "--json"], "leaktrace: tracing");
    let out = Command::new(workload())
        .args(["spine", "7", "1024", "3"])
        .output()
        .expect("run workload");
    assert_eq!(
        out.status.code(),
        Some(3),
        "workload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: Value = serde_json::from_slice(&out.stdout).expect("workload facts");
    let pid = facts["pid"].as_u64().unwrap() as u32;
    let child = facts["child_pid"].as_u64().unwrap() as u32;
    agent.wait_for("exit event", Duration::from_secs(10), |v| {
        v["event"] == "exit" && v["pid"] == pid
    });
    let (status, ev) = agent.stop();
    assert!(status.success(), "leaktrace exited with {status}");

    let mmaps = events_for(&ev, "mmap", pid);
    let m = mmaps
        .iter()
        .find(|v| v["len"] == 7 * MIB)
        .unwrap_or_else(|| panic!("no 7 MiB mmap for pid {pid}: {mmaps:?}"));
    assert_eq!(m["addr"], facts["mmap_addr"]);
    assert_eq!(m["ok"], true);
    assert_eq!(m["tid"], pid);
    assert_eq!(m["comm"], "lt-workload");
    let un = events_for(&ev, "munmap", pid);
    assert!(
        un.iter()
            .any(|v| v["addr"] == facts["mmap_addr"] && v["len"] == 7 * MIB && v["ok"] == true),
        "no munmap of the 7 MiB mapping: {un:?}"
    );
    let brks = events_for(&ev, "brk", pid);
    let b = brks
        .iter()
        .find(|v| v["new_brk"] == facts["brk_new"])
        .unwrap_or_else(|| panic!("no brk to {}: {brks:?}", facts["brk_new"]));
    assert_eq!(b["old_brk"], facts["brk_old"]);
    assert_eq!(
        b["new_brk"].as_u64().unwrap() - b["old_brk"].as_u64().unwrap(),
        1024 * 1024
    );
    let forks = events_for(&ev, "fork", pid);
    assert!(
        forks.iter().any(|v| v["child_pid"] == child),
        "no fork of {child}: {forks:?}"
    );
    let execs = events_for(&ev, "exec", pid);
    assert!(
        execs
            .iter()
            .any(|v| v["filename"].as_str().is_some_and(|f| f.ends_with("lt-workload"))),
        "no exec of lt-workload: {execs:?}"
    );
    let exits = events_for(&ev, "exit", pid);
    assert_eq!(exits.len(), 1, "one exit for {pid}: {exits:?}");
    assert_eq!(exits[0]["exit_code"], 3);
    let child_exit = events_for(&ev, "exit", child);
    assert_eq!(
        child_exit.len(),
        1,
        "one exit for the forked child {child}: {child_exit:?}"
    );
    assert_eq!(child_exit[0]["exit_code"], 0);
    // Every line honours the envelope contract.
    for v in &ev {
        for k in ["event", "ts_ns", "pid", "tid", "comm"] {
            assert!(v.get(k).is_some(), "line without {k}: {v}");
        }
    }
}

#[test]
fn trace_reports_a_real_oom_kill() {
    if !bpf_available("trace_reports_a_real_oom_kill") {
        return;
    }
    let limit = 64 * MIB;
    let cg = MemCgroup::new("leaktrace-test-spine-oom", limit);
    let agent = Agent::start(&["trace", "--json"], "leaktrace: tracing");
    let mut child = Command::new(workload())
        .args(["--cgroup", &cg.procs_file(), "oom"])
        .spawn()
        .expect("spawn workload");
    let pid = child.id();
    let status = child.wait().expect("wait workload");
    assert_eq!(status.signal(), Some(9), "workload should be OOM-killed, got {status}");
    let kill = agent.wait_for("oom_kill", Duration::from_secs(10), |v| {
        v["event"] == "oom_kill" && v["pid"] == pid
    });
    let (st, _) = agent.stop();
    assert!(st.success());
    let anon = kill["anon_rss_bytes"].as_u64().expect("anon_rss_bytes");
    assert!(
        anon > limit / 2,
        "anon_rss_bytes {anon} should be above half the {limit} limit"
    );
    assert!(
        anon <= limit + 8 * MIB,
        "anon_rss_bytes {anon} cannot exceed the limit by much"
    );
    assert_eq!(kill["comm"], "lt-workload");
    assert!(kill["total_vm_bytes"].as_u64().unwrap() >= anon);
    assert!(kill["oom_score_adj"].is_i64());
    drop(cg);
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    let cases: &[&[&str]] = &[
        &["trace", "--bogus"],
        &["trace", "--pid", "abc"],
        &["trace", "--pid", "4000000"],
        &["trace", "--duration", "0"],
        &["trace", "--duration", "-3"],
        &["trace", "--duration", "soon"],
        &["frobnicate"],
    ];
    for args in cases {
        let (code, out, err) = run_agent(args);
        assert_ne!(code, 0, "{args:?} should fail");
        assert_eq!(code, 2, "{args:?}: usage errors exit 2; stderr {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one line expected, got:\n{err}"
        );
        assert!(err.starts_with("error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: stdout should be empty: {out}");
    }
}
