//! Live OOM forensics against real memory cgroups. Run serially.
mod common;

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::ExitStatusExt as _},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn report(path: &Value) -> Value {
    let p = path.as_str().expect("report path");
    let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "report {p} mode {mode:o}");
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_leak_killed_in_its_memcg_was_predicted_and_reported() {
    if !bpf_available("a_leak_killed_in_its_memcg_was_predicted_and_reported") {
        return;
    }
    let dir = tempdir("oom-leak");
    let cg = MemCgroup::new("leaktrace-test-oom-leak", 160 * MIB);
    // --syscalls: the report then also carries the victim's last memory syscalls.
    let agent = Agent::start(
        &["run", "--json", "--syscalls", "--report-dir", &dir],
        "leaktrace: running",
    );
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "report dir mode {mode:o}");
    let mut child = Command::new(workload())
        .args(["--cgroup", &cg.procs_file(), "leak", "8192", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9), "the leak should be OOM-killed, got {st}");
    let kill = agent.wait_for("oom_kill", Duration::from_secs(5), |v| {
        v["event"] == "oom_kill" && v["pid"] == pid
    });
    let (_, ev) = agent.stop();

    assert_eq!(kill["memcg"], cg.rel, "{kill}");
    assert_eq!(kill["binding_limit"], "memcg");
    assert_eq!(kill["predicted"], true, "{kill}");
    let lead = kill["lead_time_secs"].as_f64().expect("lead time");
    assert!(lead >= 5.0, "lead time {lead}s < 5 s");
    assert!(kill["anon_rss_bytes"].as_u64().unwrap() > 80 * MIB);
    let pred = ev
        .iter()
        .find(|v| v["event"] == "oom_predicted" && v["pid"] == pid)
        .expect("an oom_predicted event");
    assert_eq!(pred["limit"], "memcg");
    assert_eq!(pred["limit_bytes"], 160 * MIB);
    assert!(
        ev.iter().any(|v| v["event"] == "oom_snapshot" && v["pid"] == pid),
        "no oom_snapshot event"
    );

    let r = report(&kill["report"]);
    assert_eq!(r["victim"]["pid"], pid);
    assert_eq!(r["victim"]["comm"], "lt-workload");
    assert!(
        r["victim"]["cmdline"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "8192")),
        "{}",
        r["victim"]
    );
    assert_eq!(r["memcg"]["path"], cg.rel);
    assert_eq!(r["memcg"]["limit_bytes"], 160 * MIB);
    assert_eq!(r["binding_limit"], "memcg");
    let tl = r["timeline"].as_array().unwrap();
    assert!(tl.len() >= 10, "timeline has {} samples", tl.len());
    assert!(tl.iter().all(|p| p["t_secs"].as_f64().unwrap() <= 0.0));
    assert_eq!(r["analysis"]["pattern"], "mountain");
    assert_eq!(r["predicted"], true);
    let snap = &r["snapshot"];
    assert_eq!(snap["pid"], pid, "snapshot missing from the report");
    assert!(snap["smaps_rollup"]["Rss"].as_u64().unwrap() > 0);
    assert!(!snap["top_mappings"].as_array().unwrap().is_empty());
    assert!(
        r["last_syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["call"] == "mmap")
    );
    assert!(r["host"]["mem_total_bytes"].as_u64().unwrap() > 0);
    // Where the host's memory was at the kill: MemTotal in parts (issue 14).
    let parts = r["host"]["parts"].as_array().expect("host.parts");
    let sum: u64 = parts
        .iter()
        .filter(|p| p["name"].is_null())
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();
    let total = r["host"]["mem_total_bytes"].as_u64().unwrap();
    assert!(
        parts.iter().any(|p| p["part"] == "process_anon") && sum <= total && sum > total / 2,
        "{parts:?}"
    );
    assert_eq!(r["top_growers_cgroup"][0]["pid"], pid);
    drop(cg);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_grower_is_named_when_a_bystander_is_killed() {
    if !bpf_available("the_grower_is_named_when_a_bystander_is_killed") {
        return;
    }
    let dir = tempdir("oom-bystander");
    let cg = MemCgroup::new("leaktrace-test-oom-bystander", 128 * MIB);
    let agent = Agent::start(&["run", "--json", "--report-dir", &dir], "leaktrace: running");
    let mut idle = Command::new(workload())
        .args([
            "--cgroup",
            &cg.procs_file(),
            "--oom-score-adj",
            "1000",
            "hold",
            "16",
            "120",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut grower = Command::new(workload())
        .args(["--cgroup", &cg.procs_file(), "leak", "8192", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (victim, grower_pid) = (idle.id(), grower.id());
    let st = idle.wait().unwrap();
    assert_eq!(
        st.signal(),
        Some(9),
        "the idle process should be the OOM victim, got {st}"
    );
    let kill = agent.wait_for("oom_kill", Duration::from_secs(5), |v| {
        v["event"] == "oom_kill" && v["pid"] == victim
    });
    let _ = grower.kill();
    let _ = grower.wait();
    agent.stop();
    let r = report(&kill["report"]);
    assert_eq!(r["victim"]["pid"], victim);
    assert_eq!(r["victim"]["oom_score_adj"], 1000);
    let top = &r["top_growers_cgroup"][0];
    assert_eq!(
        top["pid"], grower_pid,
        "top grower in the cgroup should be the grower: {}",
        r["top_growers_cgroup"]
    );
    assert_eq!(top["is_victim"], false);
    // Host-wide, other growers may exist on a shared machine; the grower must be among the top.
    let host = r["top_growers_host"].as_array().unwrap();
    assert!(
        host.iter().any(|g| g["pid"] == grower_pid),
        "grower missing from the host-wide top: {host:?}"
    );
    drop(cg);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn unwritable_report_dir_fails_at_start() {
    if !bpf_available("unwritable_report_dir_fails_at_start") {
        return;
    }
    let f = std::env::temp_dir().join(format!("leaktrace-not-a-dir-{}", std::process::id()));
    fs::write(&f, "x").unwrap();
    let bad = f.join("reports");
    let (code, _, err) = run_agent(&["run", "--report-dir", bad.to_str().unwrap(), "--duration", "1"]);
    let _ = fs::remove_file(&f);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("report directory") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!Path::new(&bad).exists());
}
