//! Both kernel paths of the memory-syscall probes, on kernels with BPF trampolines: fexit/fentry
//! on the x86_64 syscall functions by default, the `syscalls:*` tracepoints with
//! `--pretend-missing fexit`. Each test proves which programs ran (the kernel's program list and
//! `run_cnt`, with BPF run-time stats on), not only that the events look right.
//!
//! Run by the kernel matrix (`cargo xtask test --kernel 6.1|6.12`); `test = false` in Cargo.toml
//! keeps it out of the host's `cargo xtask test` (this host refuses fentry/fexit programs). On a
//! kernel without trampolines it FAILS: it never skips.
mod common;

use std::{
    collections::HashMap,
    fs,
    os::{fd::OwnedFd, unix::process::ExitStatusExt as _},
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const FEXIT_PROGS: [&str; 5] = [
    "mmap_fexit",
    "munmap_fexit",
    "brk_fexit",
    "mremap_fexit",
    "exitgrp_fentry",
];
const TP_PROGS: [&str; 9] = [
    "mmap_enter",
    "mmap_exit",
    "munmap_enter",
    "munmap_exit",
    "brk_enter",
    "brk_exit",
    "mremap_enter",
    "mremap_exit",
    "exit_group_enter",
];

/// BPF run-time statistics (run_cnt) on while the guard lives.
fn stats_on() -> OwnedFd {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS")
}

/// Run counts of the loaded programs with these names (summed over instances). The kernel keeps
/// 15 characters of a name (`exit_group_enter` is `exit_group_ente` there).
fn run_counts(names: &[&str]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for p in aya::programs::loaded_programs().filter_map(Result::ok) {
        let kname = String::from_utf8_lossy(p.name()).into_owned();
        if let Some(n) = names.iter().find(|n| n[..n.len().min(15)] == kname) {
            *out.entry(n.to_string()).or_insert(0) += p.run_count();
        }
    }
    out
}

fn workload_json(args: &[&str], code: i32) -> Value {
    let out = Command::new(workload()).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(code), "workload {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `trace` with `extra` flags: exact mmap/munmap/brk/mremap/exit facts of a known workload, and
/// the run counts of both program sets at the end.
fn trace_exact(extra: &[&str]) -> (HashMap<String, u64>, HashMap<String, u64>) {
    let mut args = vec!["trace", "--json"];
    args.extend_from_slice(extra);
    let agent = Agent::start(&args, "leaktrace: tracing");
    let facts = workload_json(&["spine", "7", "1024", "3"], 3);
    let pid = facts["pid"].as_u64().unwrap() as u32;
    let mut remaps = Command::new(workload()).args(["mremaps", "25"]).spawn().unwrap();
    let rpid = remaps.id();
    assert!(remaps.wait().unwrap().success());
    agent.wait_for("exit of the mremap workload", Duration::from_secs(10), |v| {
        v["event"] == "exit" && v["pid"] == rpid
    });
    let fexit = run_counts(&FEXIT_PROGS);
    let tp = run_counts(&TP_PROGS);
    let (_, ev) = agent.stop();

    let m = events_for(&ev, "mmap", pid)
        .into_iter()
        .find(|v| v["len"] == 7 * MIB)
        .unwrap_or_else(|| panic!("no 7 MiB mmap of {pid}"));
    assert_eq!((&m["addr"], &m["ok"]), (&facts["mmap_addr"], &Value::Bool(true)), "{m}");
    assert!(
        events_for(&ev, "munmap", pid)
            .iter()
            .any(|v| v["addr"] == facts["mmap_addr"] && v["len"] == 7 * MIB && v["ok"] == true),
        "no munmap of the 7 MiB mapping"
    );
    let b = events_for(&ev, "brk", pid)
        .into_iter()
        .find(|v| v["new_brk"] == facts["brk_new"])
        .unwrap_or_else(|| panic!("no brk to {}", facts["brk_new"]));
    assert_eq!(b["old_brk"], facts["brk_old"], "{b}");
    let exits = events_for(&ev, "exit", pid);
    assert_eq!(exits.len(), 1);
    assert_eq!(
        exits[0]["exit_code"], 3,
        "the exit code comes from exit_group on both paths"
    );
    let mremaps = events_for(&ev, "mremap", rpid);
    assert_eq!(mremaps.len(), 25, "every mremap call of {rpid}, exactly once");
    (fexit, tp)
}

#[test]
fn fexit_path_is_taken_where_trampolines_exist() {
    assert!(bpf_available("fexit_path_is_taken_where_trampolines_exist"));
    let (code, out, _) = run_agent(&["doctor"]);
    assert_eq!(code, 0, "{out}");
    for f in [
        "fexit:__x64_sys_mmap",
        "fexit:__x64_sys_munmap",
        "fexit:__x64_sys_brk",
        "fexit:__x64_sys_mremap",
        "fentry:__x64_sys_exit_group",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(f)),
            "this kernel should take {f} (BPF trampolines):\n{out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("syscalls:sys_exit_mmap") && l.contains("standby")),
        "the tracepoint is the standby:\n{out}"
    );
    let _stats = stats_on();
    let (fexit, tp) = trace_exact(&[]);
    for p in FEXIT_PROGS {
        assert!(fexit.get(p).is_some_and(|n| *n > 0), "{p} did not run: {fexit:?}");
    }
    assert!(
        tp.is_empty(),
        "syscall tracepoint programs loaded on the fexit path: {tp:?}"
    );
}

#[test]
fn tracepoint_fallback_when_trampolines_are_pretended_missing() {
    assert!(bpf_available(
        "tracepoint_fallback_when_trampolines_are_pretended_missing"
    ));
    let (code, out, _) = run_agent(&["doctor", "--pretend-missing", "fexit"]);
    assert_eq!(code, 0, "a missing trampoline path must not stop the agent:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("fallback") && l.contains("fexit:__x64_sys_mmap") && l.contains("tracepoints")),
        "no named fallback for the fexit path:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("syscalls:sys_exit_mmap") && !l.contains("standby")),
        "{out}"
    );
    let _stats = stats_on();
    let (fexit, tp) = trace_exact(&["--pretend-missing", "fexit"]);
    assert!(
        fexit.is_empty(),
        "fexit programs loaded although pretended missing: {fexit:?}"
    );
    for p in TP_PROGS {
        assert!(tp.get(p).is_some_and(|n| *n > 0), "{p} did not run: {tp:?}");
    }
}

/// Where trampolines exist, `run` keeps the memory-syscall history without `--syscalls`: an OOM
/// report carries the victim's last mmaps. With the fallback forced, it does not (the syscall
/// tracepoints stay off unless asked).
#[test]
fn run_has_the_syscall_history_by_default_with_fexit() {
    assert!(bpf_available("run_has_the_syscall_history_by_default_with_fexit"));
    for (extra, want_history) in [(&[][..], true), (&["--pretend-missing", "fexit"][..], false)] {
        let cg = MemCgroup::new("lt-vm-paths-oom", 48 * MIB);
        let dir = tempdir("vm-paths");
        let mut args = vec!["run", "--json", "--report-dir", &dir];
        args.extend_from_slice(extra);
        let agent = Agent::start(&args, "leaktrace: running");
        let running = agent.stderr().join("\n");
        assert_eq!(
            running.contains("BPF trampolines"),
            want_history,
            "the start line says which path: {running}"
        );
        let mut hog = Command::new(workload())
            .args(["--cgroup", &cg.procs_file(), "oom"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = hog.id();
        assert_eq!(hog.wait().unwrap().signal(), Some(9));
        let kill = agent.wait_for("oom_kill", Duration::from_secs(10), |v| {
            v["event"] == "oom_kill" && v["pid"] == pid
        });
        agent.stop();
        let r: Value = serde_json::from_slice(&fs::read(kill["report"].as_str().unwrap()).unwrap()).unwrap();
        let mmaps = r["last_syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["call"] == "mmap")
            .count();
        assert_eq!(
            mmaps > 0,
            want_history,
            "{extra:?}: last_syscalls {}",
            r["last_syscalls"]
        );
        drop(cg);
        let _ = fs::remove_dir_all(&dir);
    }
}
