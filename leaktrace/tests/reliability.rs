//! Reliability against the real kernel: forced fallbacks, floods, churn, clean shutdown, least
//! privilege. Run serially (`cargo xtask test`).
mod common;

use std::{
    collections::HashSet,
    fs,
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHash, Map, MapData, loaded_maps};
use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
// mmap_fexit: the trampoline path (kernels with BPF trampolines) must be detached too;
// rss_stat_floor: rss_stat as a BTF tracepoint, when the floor is measured.
const OUR_PROGRAMS: [&str; 6] = [
    "mmap_enter",
    "mmap_fexit",
    "process_exit",
    "mark_victim",
    "rss_stat",
    "rss_stat_floor",
];

fn our_programs_loaded() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| String::from_utf8_lossy(p.name()).into_owned())
        .filter(|n| OUR_PROGRAMS.contains(&n.as_str()))
        .collect()
}

fn workload_json(args: &[&str]) -> Value {
    let out = Command::new(workload()).args(args).output().unwrap();
    assert!(out.status.success(), "workload {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn doctor_reports_forced_fallbacks() {
    if !bpf_available("doctor_reports_forced_fallbacks") {
        return;
    }
    let (code, out, _) = run_agent(&[
        "doctor",
        "--pretend-missing",
        "task_newtask",
        "--pretend-missing",
        "exit_group_enter",
        "--pretend-missing",
        "rss_stat",
        "--pretend-missing",
        "mark_victim.fields",
    ]);
    assert_eq!(code, 0, "optional probes missing must not stop the agent:\n{out}");
    for p in ["task:task_newtask", "syscalls:sys_enter_exit_group", "raw_tp:rss_stat"] {
        assert!(
            out.lines().any(|l| l.starts_with("fallback") && l.contains(p)),
            "no fallback line for {p}:\n{out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("oom:mark_victim") && l.contains("older layout")),
        "{out}"
    );
    let (code, out, _) = run_agent(&["doctor", "--pretend-missing", "ringbuf"]);
    assert_ne!(code, 0, "no ring buffer must mean the agent cannot run:\n{out}");
    assert!(out.contains("ring buffer"), "{out}");
    let (code, _, err) = run_agent(&["trace", "--pretend-missing", "ringbuf", "--duration", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("ring buffer") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn fallbacks_keep_the_facts() {
    if !bpf_available("fallbacks_keep_the_facts") {
        return;
    }
    let cg = MemCgroup::new("leaktrace-test-fallback-oom", 48 * MIB);
    let since = newest_program_id();
    let agent = Agent::start(
        &[
            "trace",
            "--json",
            "--pretend-missing",
            "task_newtask",
            "--pretend-missing",
            "exit_group_enter",
            "--pretend-missing",
            "mark_victim.fields",
        ],
        "leaktrace: tracing",
    );
    // The path taken: the missing probes are not in the kernel, the rest are.
    let loaded = programs_since(since);
    assert!(
        loaded_since(since, "process_fork") && loaded_since(since, "mark_victim"),
        "the agent's programs are not where they should be: {loaded:?}"
    );
    for missing in ["task_newtask", "exit_group_enter"] {
        assert!(
            !loaded_since(since, missing),
            "{missing} was attached anyway: {loaded:?}"
        );
    }
    let t = workload_json(&["threads", "4"]);
    let (pid, child) = (
        t["pid"].as_u64().unwrap() as u32,
        t["child_pid"].as_u64().unwrap() as u32,
    );
    let mut hog = Command::new(workload())
        .args(["--cgroup", &cg.procs_file(), "oom"])
        .spawn()
        .unwrap();
    let hog_pid = hog.id();
    assert_eq!(hog.wait().unwrap().signal(), Some(9));
    let kill = agent.wait_for("oom_kill", Duration::from_secs(10), |v| {
        v["event"] == "oom_kill" && v["pid"] == hog_pid
    });
    agent.wait_for("exit", Duration::from_secs(5), |v| {
        v["event"] == "exit" && v["pid"] == pid
    });
    let (_, ev) = agent.stop();
    // Without task_newtask, threads are still not reported as forks.
    let forks = events_for(&ev, "fork", pid);
    assert_eq!(forks.len(), 1, "one fork (the child), no threads: {forks:?}");
    assert_eq!(forks[0]["child_pid"], child);
    // Without exit_group, the exit code is unknown rather than wrong.
    let exits = events_for(&ev, "exit", pid);
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0]["exit_code"], Value::Null);
    // Without mark_victim's fields (pre-6.9 layout), they come from /proc and the kernel log.
    assert_eq!(kill["comm"], "lt-workload", "{kill}");
    let anon = kill["anon_rss_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("anon_rss_bytes not filled: {kill}"));
    assert!(anon > 24 * MIB, "{kill}");
    assert!(kill["oom_score_adj"].is_i64() && kill["uid"].is_u64(), "{kill}");
    // ...and the event says where they came from.
    let from = kill["filled_from"]
        .as_array()
        .unwrap_or_else(|| panic!("no filled_from: {kill}"));
    assert!(!from.is_empty(), "the fields were filled by a fallback: {kill}");
    drop(cg);
}

#[test]
fn leak_found_without_the_rss_probe() {
    if !bpf_available("leak_found_without_the_rss_probe") {
        return;
    }
    let since = newest_program_id();
    let watch = Command::new(AGENT)
        .args(["watch", "--json", "--pretend-missing", "rss_stat", "--"])
        .arg(workload())
        .args(["leak", "4096", "22"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it watches: the path taken is the /proc sweep, not the kernel's RSS marks.
    let start = Instant::now();
    while !loaded_since(since, "process_exit") && start.elapsed() < Duration::from_secs(30) {
        thread::sleep(Duration::from_millis(200));
    }
    let loaded = programs_since(since);
    assert!(
        loaded_since(since, "process_exit"),
        "the agent never loaded: {loaded:?}"
    );
    assert!(
        !loaded_since(since, "rss_stat"),
        "rss_stat was attached anyway: {loaded:?}"
    );
    let out = watch.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["pattern"], "mountain");
}

#[test]
fn shutdown_detaches_everything_and_privileges_are_dropped() {
    if !bpf_available("shutdown_detaches_everything_and_privileges_are_dropped") {
        return;
    }
    assert!(
        our_programs_loaded().is_empty(),
        "leaktrace programs loaded before the test: {:?}",
        our_programs_loaded()
    );
    let dir = tempdir("shutdown");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // --no-runtimes: following JVM / CPython collectors keeps more (tests/runtimes.rs).
        let mut child = Command::new(AGENT)
            .args(["run", "--json", "--no-runtimes", "--report-dir", &dir])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(line.contains("leaktrace: running"), "{line}");
        assert!(
            !our_programs_loaded().is_empty(),
            "programs should be loaded while running"
        );
        // Least privilege: once attached, only the capabilities it still needs.
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim()
            .to_string();
        let eff = u64::from_str_radix(&eff, 16).unwrap();
        let allowed: u64 = (1 << 2) | (1 << 19) | (1 << 34);
        assert_eq!(eff & !allowed, 0, "capabilities kept after attach: {eff:#x}");
        assert_eq!(
            eff & ((1 << 39) | (1 << 38) | (1 << 21)),
            0,
            "CAP_BPF/PERFMON/SYS_ADMIN still held: {eff:#x}"
        );
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, signal) };
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(0), "exit status after signal {signal}: {st}");
        // The kernel may free a detached program after a grace period rather than at close (CI
        // once saw one listed just after exit): give it a moment before calling it left behind.
        let until = Instant::now() + scaled(Duration::from_secs(5));
        while !our_programs_loaded().is_empty() && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        assert!(
            our_programs_loaded().is_empty(),
            "programs left loaded after signal {signal}: {:?}",
            our_programs_loaded()
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_flood_loses_no_exit_or_oom_kill_and_counts_its_drops() {
    if !bpf_available("a_flood_loses_no_exit_or_oom_kill_and_counts_its_drops") {
        return;
    }
    let cg = MemCgroup::new("leaktrace-test-flood-oom", 48 * MIB);
    let agent = Agent::start(&["trace", "--json"], "leaktrace: tracing");
    // Stop the reader so the bulk ring buffer overflows for sure; lifecycle events have their own.
    let agent_pid = agent.pid();
    // Enough calls to overflow the 4 MiB bulk buffer several times over (fewer under emulation,
    // where each one costs far more; 2 × 60 000 records still overflow it).
    let calls: u64 = if timeout_scale() > 1.0 { 60_000 } else { 200_000 };
    let storms: Vec<_> = (0..2)
        .map(|_| {
            Command::new(workload())
                .args(["mremaps", &calls.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    // SAFETY: pausing our own child.
    unsafe { libc::kill(agent_pid as i32, libc::SIGSTOP) };
    let churn = workload_json(&["churn", "300"]);
    let mut hog = Command::new(workload())
        .args(["--cgroup", &cg.procs_file(), "oom"])
        .spawn()
        .unwrap();
    let hog_pid = hog.id();
    assert_eq!(hog.wait().unwrap().signal(), Some(9));
    let storm_pids: Vec<u32> = storms
        .into_iter()
        .map(|mut c| {
            let id = c.id();
            assert!(c.wait().unwrap().success());
            id
        })
        .collect();
    // SAFETY: resuming our own child.
    unsafe { libc::kill(agent_pid as i32, libc::SIGCONT) };
    // The whole backlog (the full bulk buffer, ~44,000 lines) is printed before the kill, which
    // came last: seconds natively, much longer under emulation.
    agent.wait_for("oom_kill", Duration::from_secs(30), |v| {
        v["event"] == "oom_kill" && v["pid"] == hog_pid
    });
    thread::sleep(Duration::from_secs(2));
    let (_, ev) = agent.stop();

    let exits: HashSet<u64> = ev
        .iter()
        .filter(|v| v["event"] == "exit")
        .filter_map(|v| v["pid"].as_u64())
        .collect();
    let churn_pids: Vec<u64> = churn["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    let lost: Vec<&u64> = churn_pids.iter().filter(|p| !exits.contains(p)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} exits lost in the flood: {lost:?}",
        lost.len(),
        churn_pids.len()
    );
    for p in &storm_pids {
        assert!(exits.contains(&(*p as u64)), "exit of storm process {p} lost");
    }
    let dropped = |kind: &str| -> u64 {
        ev.iter()
            .filter(|v| v["event"] == "dropped" && v["kind"] == kind)
            .filter_map(|v| v["count"].as_u64())
            .sum()
    };
    let seen = |kind: &str, pids: &[u32]| {
        ev.iter()
            .filter(|v| v["event"] == kind && pids.iter().any(|p| v["pid"] == *p))
            .count() as u64
    };
    let seen_other = |kind: &str| {
        ev.iter()
            .filter(|v| v["event"] == kind && !storm_pids.iter().any(|p| v["pid"] == *p))
            .count() as u64
    };
    assert_eq!(
        dropped("exit") + dropped("oom_kill") + dropped("fork"),
        0,
        "lifecycle events dropped"
    );
    // mremap: only the storms make such calls, so what was seen plus what was counted as dropped
    // must be exactly what they did.
    let d = dropped("mremap");
    assert!(d > 0, "the flood should have overflowed the bulk buffer");
    let s = seen("mremap", &storm_pids);
    let others = seen_other("mremap");
    let expected = 2 * calls;
    if others == 0 {
        assert_eq!(
            s + d,
            expected,
            "mremap: seen {s} + dropped {d} != {expected} calls made"
        );
    } else {
        assert!(
            s + d >= expected && s + d <= expected + 10 * others,
            "mremap: seen {s} + dropped {d} vs {expected} (+{others} from other processes)"
        );
    }
    drop(cg);
}

/// The highest BPF map id now: the test's agent's maps come after it.
fn newest_map_id() -> u32 {
    loaded_maps().filter_map(Result::ok).map(|m| m.id()).max().unwrap_or(0)
}

/// The map `name` of the agent started after map id `since`.
fn map_by_name(name: &str, since: u32) -> Option<MapData> {
    let info = loaded_maps()
        .filter_map(Result::ok)
        .filter(|m| m.name() == name.as_bytes() && m.id() > since)
        .last()?;
    MapData::from_id(info.id()).ok()
}

fn keys<const V: usize>(name: &str, hash: bool, since: u32) -> Vec<u32> {
    let Some(data) = map_by_name(name, since) else {
        panic!("map {name} not loaded")
    };
    let map = if hash {
        Map::HashMap(data)
    } else {
        Map::LruHashMap(data)
    };
    let h: BpfHash<&MapData, u32, [u8; V]> = BpfHash::try_from(&map).unwrap_or_else(|e| panic!("{name}: {e}"));
    h.keys().filter_map(Result::ok).collect()
}

#[test]
fn churn_leaves_nothing_behind() {
    if !bpf_available("churn_leaves_nothing_behind") {
        return;
    }
    let dir = tempdir("churn");
    let since = newest_program_id();
    let since_map = newest_map_id();
    let _stats = bpf_stats();
    // With the syscall probes: they are the ones that keep per-process entries (BRK_LAST,
    // EXIT_CODES, PENDING), so without them this test would prove nothing.
    let agent = Agent::start(
        &["run", "--json", "--syscalls", "--report-dir", &dir],
        "leaktrace: running",
    );
    let rss = |pid: u32| -> u64 {
        let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // 6,000 processes natively; a fifth of that under emulation (each one costs far more there).
    const ROUNDS: usize = 4;
    let per_round: u64 = if timeout_scale() > 1.0 { 300 } else { 1500 };
    // Warm-up: one full round, so that what the agent keeps bounded (caches, queues, the
    // allocator's high-water mark) has reached its size before the measurement starts.
    workload_json(&["churn", &per_round.to_string()]);
    thread::sleep(scaled(Duration::from_secs(2)));
    let before = rss(agent.pid());
    let runs = |name: &str| run_count(since, name).unwrap_or_else(|| panic!("{name} is not loaded"));
    // The memory-syscall programs of the path this kernel took: BPF trampolines where it has
    // them (fentry/fexit, no PENDING entries), else the syscall tracepoints.
    let (exit_prog, brk_prog) = if run_count(since, "exitgrp_fentry").is_some() {
        ("exitgrp_fentry", "brk_fexit")
    } else {
        ("exit_group_enter", "brk_exit")
    };
    let (exits0, brks0, tasks0) = (runs(exit_prog), runs(brk_prog), runs("task_newtask"));
    let floors0 = runs("rss_stat_floor");
    let mut pids = Vec::new();
    let mut after_round = vec![before];
    for _ in 0..ROUNDS {
        let c = workload_json(&["churn", &per_round.to_string()]);
        pids.extend(c["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u32));
        thread::sleep(scaled(Duration::from_secs(1)));
        after_round.push(rss(agent.pid()));
    }
    eprintln!(
        "churn: agent RSS (KiB) before and after each round of {per_round}: {:?}",
        after_round.iter().map(|b| b / 1024).collect::<Vec<_>>()
    );
    thread::sleep(Duration::from_secs(3));
    // The probes that keep per-process state really ran for the churn.
    let (exits, brks, tasks) = (
        runs(exit_prog) - exits0,
        runs(brk_prog) - brks0,
        runs("task_newtask") - tasks0,
    );
    let floors = runs("rss_stat_floor") - floors0;
    assert!(
        exits >= ROUNDS as u64 * per_round && tasks >= 2 * ROUNDS as u64 * per_round && brks > 0 && floors > 0,
        "probe runs during the churn: exit_group {exits}, task_newtask {tasks}, brk {brks}, rss_stat_floor {floors}"
    );
    // State kept per dead process grows the agent by the same amount every round; a one-off
    // step (the allocator's high-water mark after a backlog the agent caught up with) does not.
    // So judge the median growth per round, and bound the total.
    let mut growth: Vec<i64> = after_round.windows(2).map(|w| w[1] as i64 - w[0] as i64).collect();
    growth.sort_unstable();
    let median = (growth[ROUNDS / 2 - 1] + growth[ROUNDS / 2]) / 2;
    let after = rss(agent.pid());
    assert!(
        median <= (MIB / 2) as i64 && after <= before + 8 * MIB,
        "agent RSS grew {} KiB over {} processes (median {} KiB a round of {per_round}): per-process state is left behind",
        (after as i64 - before as i64) / 1024,
        ROUNDS as u64 * per_round,
        median / 1024
    );
    let dead = |k: &u32| !Path::new(&format!("/proc/{k}")).exists();
    for (name, ks) in [
        ("RSS_DIRTY", keys::<16>("RSS_DIRTY", false, since_map)),
        ("BRK_LAST", keys::<8>("BRK_LAST", false, since_map)),
        ("EXIT_CODES", keys::<4>("EXIT_CODES", false, since_map)),
        ("NEW_TASKS", keys::<8>("NEW_TASKS", false, since_map)),
    ] {
        let stale: Vec<u32> = ks.into_iter().filter(|k| pids.contains(k) && dead(k)).collect();
        assert!(
            stale.is_empty(),
            "{name} holds {} entries of dead churn processes: {:?}",
            stale.len(),
            &stale[..stale.len().min(10)]
        );
    }
    // RSS_FLOOR is keyed by (tgid, cpu << 1 | epoch parity): the tgid is the low half.
    let floor_stale: Vec<u32> = {
        let data = map_by_name("RSS_FLOOR", since_map).expect("RSS_FLOOR");
        let map = Map::LruHashMap(data);
        let h: BpfHash<&MapData, u64, [u8; 16]> = BpfHash::try_from(&map).unwrap();
        h.keys()
            .filter_map(Result::ok)
            .map(|k| k as u32)
            .filter(|k| pids.contains(k) && dead(k))
            .collect()
    };
    assert!(
        floor_stale.is_empty(),
        "RSS_FLOOR holds {} entries of dead churn processes: {:?}",
        floor_stale.len(),
        &floor_stale[..floor_stale.len().min(10)]
    );
    let pending = {
        let data = map_by_name("PENDING", since_map).expect("PENDING");
        let map = Map::HashMap(data);
        let h: BpfHash<&MapData, u64, [u8; 56]> = BpfHash::try_from(&map).unwrap();
        h.keys()
            .filter_map(Result::ok)
            .filter(|k| pids.contains(&((*k >> 32) as u32)))
            .count()
    };
    assert_eq!(pending, 0, "PENDING holds syscalls of dead churn processes");
    agent.stop();
    let _ = fs::remove_dir_all(&dir);
}
