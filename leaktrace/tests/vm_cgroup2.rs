//! cgroup v2 for real: OOM kills under `memory.max` at the level that fired (a parent's limit
//! binding a child that has none), time-to-OOM against the tightest ancestor, `memory.high`
//! throttling as pre-OOM evidence, and `memory.oom.group` kills (one report per victim, linked).
//!
//! This file runs in the kernel matrix (`cargo xtask test --kernel 6.1|6.12`), whose guests
//! mount cgroup2 with the memory controller. It is `test = false` in Cargo.toml, so the host's
//! `cargo xtask test` (cgroup v1 here) leaves it out; run on a machine without cgroup v2 it
//! FAILS (first test), it never skips. Cgroups are named `lt-vm-*` and removed on drop.
mod common;

use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup2 mount with the memory controller, or a panic that says what this machine has.
fn v2_root() -> PathBuf {
    let root = Path::new(ROOT);
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    assert!(
        controllers.split_whitespace().any(|c| c == "memory"),
        "this test file needs cgroup v2 with the memory controller at {ROOT} (the kernel matrix's \
         guests have it; run it with `cargo xtask test --kernel 6.12`); cgroup.controllers: {controllers:?}"
    );
    root.to_path_buf()
}

/// A v2 cgroup (and its parents' `+memory` delegation); removed on drop, processes killed first.
struct Cg {
    dir: PathBuf,
    rel: String,
}

impl Cg {
    fn new(rel: &str, files: &[(&str, String)]) -> Cg {
        let root = v2_root();
        let dir = root.join(rel.trim_start_matches('/'));
        // Delegate the memory controller down to the new cgroup's parent.
        let mut p = dir.parent().unwrap().to_path_buf();
        let mut chain = Vec::new();
        while p.starts_with(&root) {
            chain.push(p.clone());
            if p == root {
                break;
            }
            p = p.parent().unwrap().to_path_buf();
        }
        for d in chain.iter().rev() {
            let _ = fs::write(d.join("cgroup.subtree_control"), "+memory");
        }
        if dir.exists() {
            let _ = fs::remove_dir(&dir);
        }
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let _ = fs::write(dir.join("memory.swap.max"), "0");
        for (name, value) in files {
            fs::write(dir.join(name), value).unwrap_or_else(|e| panic!("write {name}={value}: {e}"));
        }
        Cg {
            dir,
            rel: rel.to_owned(),
        }
    }

    fn procs(&self) -> String {
        self.dir.join("cgroup.procs").display().to_string()
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        remove_cgroup(&self.dir);
    }
}

fn spawn(cg: &Cg, args: &[&str]) -> Child {
    Command::new(workload())
        .arg("--cgroup")
        .arg(cg.procs())
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn lt-workload")
}

fn report(kill: &Value) -> Value {
    let p = kill["report"]
        .as_str()
        .unwrap_or_else(|| panic!("no report path in {kill}"));
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

fn level<'a>(r: &'a Value, path: &str) -> &'a Value {
    r["memcg_levels"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["path"] == path))
        .unwrap_or_else(|| panic!("no level {path} in {}", r["memcg_levels"]))
}

#[test]
fn cgroup2_is_what_this_kernel_runs() {
    v2_root();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains(" - cgroup ") && l.contains("memory")),
        "a cgroup v1 memory hierarchy is mounted: this file tests cgroup v2 alone\n{mounts}"
    );
    assert!(
        bpf_available("cgroup2_is_what_this_kernel_runs"),
        "BPF cannot load here"
    );
}

/// Grandparent 1 GiB, parent 96 MiB, child 512 MiB (looser than its parent): the parent binds.
/// The prediction and the kill both name the parent, not the victim's own cgroup or the host.
#[test]
fn cgroup2_parent_limit_binds_predicted_and_named() {
    assert!(bpf_available("cgroup2_parent_limit_binds_predicted_and_named"));
    let gp = Cg::new("/lt-vm-gp", &[("memory.max", (1024 * MIB).to_string())]);
    let p = Cg::new("/lt-vm-gp/p", &[("memory.max", (96 * MIB).to_string())]);
    let c = Cg::new("/lt-vm-gp/p/c", &[("memory.max", (512 * MIB).to_string())]);
    let dir = tempdir("vm-parent");
    let agent = Agent::start(&["run", "--json", "--report-dir", &dir], "leaktrace: running");
    let mut child = spawn(&c, &["leak", "4096", "90"]);
    let pid = child.id();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9), "the leak should be OOM-killed, got {st}");
    let kill = agent.wait_for("oom_kill", Duration::from_secs(10), |v| {
        v["event"] == "oom_kill" && v["pid"] == pid
    });
    let (_, ev) = agent.stop();
    assert_eq!(kill["memcg"], c.rel, "{kill}");
    assert_eq!(kill["binding_limit"], "memcg", "{kill}");
    assert_eq!(kill["binding_memcg"], p.rel, "{kill}");
    let pred = ev
        .iter()
        .find(|v| v["event"] == "oom_predicted" && v["pid"] == pid)
        .unwrap_or_else(|| panic!("no oom_predicted for {pid}"));
    assert_eq!(pred["limit"], "memcg", "{pred}");
    assert_eq!(pred["limit_bytes"], 96 * MIB, "{pred}");
    assert_eq!(pred["limit_memcg"], p.rel, "{pred}");
    assert_eq!(kill["predicted"], true, "{kill}");

    let r = report(&kill);
    assert_eq!(r["memcg"]["path"], c.rel);
    assert_eq!(r["memcg"]["version"], "v2");
    assert_eq!(r["memcg"]["limit_bytes"], 512 * MIB);
    assert_eq!(r["binding_limit"], "memcg");
    assert_eq!(r["binding_memcg"], p.rel);
    assert_eq!(
        r["binding_source"], "kernel_log",
        "the kernel's oom-kill line names the level"
    );
    let levels: Vec<&str> = r["memcg_levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert_eq!(levels, [c.rel.as_str(), p.rel.as_str(), gp.rel.as_str()]);
    assert_eq!(level(&r, &p.rel)["limit_bytes"], 96 * MIB);
    assert!(
        level(&r, &p.rel)["events_local"]["oom"].as_u64().unwrap() >= 1,
        "{}",
        r["memcg_levels"]
    );
    assert_eq!(
        level(&r, &c.rel)["events_local"]["oom"],
        0,
        "the child's own limit did not fire"
    );
    assert!(level(&r, &p.rel)["events"]["max"].as_u64().unwrap() > 0);
    assert!(
        !r["memcg_timeline"].as_array().unwrap().is_empty(),
        "no pre-OOM history of the parent"
    );
    drop((c, p, gp));
    let _ = fs::remove_dir_all(&dir);
}

/// `memory.high` 16 MiB under a 128 MiB `memory.max`: a leak above it is throttled (high events,
/// memory stalls), reported live as `memcg_pressure`; then lowering `memory.max` below the usage
/// makes the kernel OOM-kill it, and the report carries the throttling as evidence.
#[test]
fn cgroup2_memory_high_throttling_is_pre_oom_evidence() {
    assert!(bpf_available("cgroup2_memory_high_throttling_is_pre_oom_evidence"));
    let cg = Cg::new(
        "/lt-vm-high",
        &[
            ("memory.high", (16 * MIB).to_string()),
            ("memory.max", (128 * MIB).to_string()),
        ],
    );
    let dir = tempdir("vm-high");
    let agent = Agent::start(&["run", "--json", "--report-dir", &dir], "leaktrace: running");
    let mut child = spawn(&cg, &["leak", "4096", "120"]);
    let pid = child.id();
    let pressure = agent.wait_for("memcg_pressure", Duration::from_secs(60), |v| {
        v["event"] == "memcg_pressure" && v["memcg"] == cg.rel && v["high_events"].as_u64() > Some(0)
    });
    assert_eq!(pressure["high_bytes"], 16 * MIB, "{pressure}");
    assert_eq!(pressure["limit_bytes"], 128 * MIB, "{pressure}");
    // Throttled: the usage stays near memory.high, far below the 128 MiB limit.
    let usage = pressure["usage_bytes"].as_u64().unwrap();
    assert!(usage < 40 * MIB, "usage {usage} not held near memory.high: {pressure}");
    // Stalls show in the cgroup's PSI once its 2 s averaging has seen them.
    let start = Instant::now();
    let psi = loop {
        let some: f64 = cg
            .read("memory.pressure")
            .split_whitespace()
            .find_map(|t| t.strip_prefix("avg10="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if some > 0.0 || start.elapsed() > Duration::from_secs(20) {
            break some;
        }
        thread::sleep(Duration::from_millis(500));
    };
    assert!(psi > 0.0, "no memory stall in {}'s memory.pressure", cg.rel);
    thread::sleep(Duration::from_secs(3));
    // Lower memory.max under the usage: the kernel reclaims what it can, then OOM-kills.
    fs::write(cg.dir.join("memory.max"), (4 * MIB).to_string()).expect("lower memory.max");
    let st = child.wait().unwrap();
    assert_eq!(
        st.signal(),
        Some(9),
        "lowering memory.max should OOM-kill the leak, got {st}"
    );
    let kill = agent.wait_for("oom_kill", Duration::from_secs(10), |v| {
        v["event"] == "oom_kill" && v["pid"] == pid
    });
    agent.stop();
    assert_eq!(kill["binding_memcg"], cg.rel, "{kill}");
    let r = report(&kill);
    let l = level(&r, &cg.rel);
    assert_eq!(l["high_bytes"], 16 * MIB);
    assert!(l["events"]["high"].as_u64().unwrap() > 0, "{l}");
    assert!(l["pressure"]["some_total_usec"].as_u64().unwrap() > 0, "{l}");
    let tl = r["memcg_timeline"].as_array().unwrap();
    assert!(tl.len() >= 5, "memcg timeline has {} samples", tl.len());
    assert!(tl.iter().all(|s| s["t_secs"].as_f64().unwrap() <= 0.0));
    let high = |s: &Value| s["high_events"].as_u64().unwrap_or(0);
    assert!(
        high(tl.last().unwrap()) > high(&tl[0]),
        "high events did not rise before the kill: {tl:?}"
    );
    assert!(
        tl.iter().any(|s| s["psi_some_avg10"].as_f64().unwrap_or(0.0) > 0.0),
        "no PSI stall in the timeline"
    );
    // The human report shows it.
    let text = run_agent(&["report", r["id"].as_str().unwrap(), "--report-dir", &dir]);
    assert!(text.1.contains("Cgroup levels"), "{}", text.1);
    drop(cg);
    let _ = fs::remove_dir_all(&dir);
}

/// `memory.oom.group` = 1: the kernel kills every process of the cgroup at once. Each victim gets
/// its own report, and every report lists all the victims (and their reports) under one group id.
#[test]
fn cgroup2_oom_group_kill_reports_every_victim_linked() {
    assert!(bpf_available("cgroup2_oom_group_kill_reports_every_victim_linked"));
    let cg = Cg::new(
        "/lt-vm-group",
        &[("memory.max", (64 * MIB).to_string()), ("memory.oom.group", "1".into())],
    );
    let dir = tempdir("vm-group");
    let agent = Agent::start(&["run", "--json", "--report-dir", &dir], "leaktrace: running");
    let mut holders: Vec<Child> = (0..2).map(|_| spawn(&cg, &["hold", "4", "300"])).collect();
    thread::sleep(Duration::from_secs(2));
    let mut leak = spawn(&cg, &["leak", "8192", "60"]);
    let mut pids: Vec<u32> = holders.iter().map(Child::id).collect();
    pids.push(leak.id());
    assert_eq!(leak.wait().unwrap().signal(), Some(9));
    for h in &mut holders {
        let st = h.wait().unwrap();
        assert_eq!(st.signal(), Some(9), "a group member survived the oom.group kill: {st}");
    }
    let mut kills = Vec::new();
    for pid in &pids {
        kills.push(
            agent.wait_for("oom_kill of every member", Duration::from_secs(10), |v| {
                v["event"] == "oom_kill" && v["pid"] == *pid
            }),
        );
    }
    agent.stop();
    let mut group_ids = Vec::new();
    for k in &kills {
        assert_eq!(k["binding_memcg"], cg.rel, "{k}");
        // Re-read from disk: earlier reports are rewritten as later victims arrive.
        let r = report(k);
        let g = &r["oom_group"];
        assert_eq!(g["memcg"], cg.rel, "{r}");
        group_ids.push(g["group_id"].as_str().unwrap().to_owned());
        let mut victims: Vec<u64> = g["victims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["pid"].as_u64().unwrap())
            .collect();
        victims.sort_unstable();
        let mut want: Vec<u64> = pids.iter().map(|p| u64::from(*p)).collect();
        want.sort_unstable();
        assert_eq!(victims, want, "report {} does not list every victim", r["id"]);
        for v in g["victims"].as_array().unwrap() {
            let file = Path::new(&dir).join(format!("{}.json", v["report"].as_str().unwrap()));
            assert!(file.exists(), "linked report {} missing", file.display());
        }
    }
    group_ids.dedup();
    assert_eq!(group_ids.len(), 1, "one group id for the kill: {group_ids:?}");
    drop(cg);
    let _ = fs::remove_dir_all(&dir);
}
