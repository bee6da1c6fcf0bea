//! Leak detection against real processes, all driven at once under one `leaktrace run` (and
//! `leaktrace watch` for the exit-status contract) to keep CI time down. Run serially.
mod common;

use std::{
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn spawn(args: &[&str]) -> Child {
    Command::new(workload())
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn workload")
}

fn first_event(ev: &[Value], kind: &str, pid: u32) -> Option<Value> {
    ev.iter().find(|v| v["event"] == kind && v["pid"] == pid).cloned()
}

#[test]
fn leaks_are_flagged_and_tides_are_not() {
    if !bpf_available("leaks_are_flagged_and_tides_are_not") {
        return;
    }
    let dir = tempdir("leaks");
    let agent = Agent::start(
        &["run", "--json", "--comm", "lt-workload", "--report-dir", &dir],
        "leaktrace: running",
    );
    let start = Instant::now();
    let mut fast = spawn(&["leak", "2048", "80"]);
    let mut slow = spawn(&["leak", "128", "125"]);
    let mut tidal = spawn(&["tidal", "100", "3", "70"]);
    let mut plateau = spawn(&["plateau", "80", "10", "60"]);
    let mut saw = spawn(&["sawtooth", "30", "24", "2", "90"]);
    let (f, s, t, p, w) = (fast.id(), slow.id(), tidal.id(), plateau.id(), saw.id());

    // watch gates CI: exit 3 on a leak, 0 on tides.
    let watch_leak = Command::new(AGENT)
        .args([
            "watch",
            "--json",
            "--",
            workload().to_str().unwrap(),
            "leak",
            "2048",
            "25",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let watch_tide = Command::new(AGENT)
        .args([
            "watch",
            "--json",
            "--",
            workload().to_str().unwrap(),
            "tidal",
            "100",
            "3",
            "25",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let fast_flag = agent.wait_for("leak_suspected for the 2 MiB/s leak", Duration::from_secs(70), |v| {
        v["event"] == "leak_suspected" && v["pid"] == f
    });
    let fast_secs = start.elapsed().as_secs_f64();
    assert!(
        fast_secs <= 60.0 + 1.0,
        "2 MiB/s leak flagged after {fast_secs:.1}s (> 60 s: issue 11's figure for leaks of 1 MiB/s and more)"
    );
    assert_eq!(fast_flag["pattern"], "mountain");
    assert!(fast_flag["confidence"].as_f64().unwrap() >= 0.8);
    let g = fast_flag["growth_bytes_per_sec"].as_f64().unwrap();
    assert!((1.5e6..3.0e6).contains(&g), "growth {g} B/s for a 2 MiB/s leak");

    for (name, out, code, pattern) in [("leak", watch_leak, 3, "mountain"), ("tidal", watch_tide, 0, "tidal")] {
        let out = out.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "watch of {name}: {:?}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let verdict: Value = serde_json::from_str(stdout.lines().last().expect("a verdict line")).unwrap();
        assert_eq!(verdict["event"], "verdict");
        assert_eq!(verdict["pattern"], pattern, "watch of {name}: {verdict}");
        assert_eq!(verdict["leak"], code == 3);
        for k in [
            "pid",
            "comm",
            "confidence",
            "growth_bytes_per_sec",
            "start_rss_bytes",
            "end_rss_bytes",
            "peak_rss_bytes",
            "samples",
            "duration_secs",
        ] {
            assert!(verdict.get(k).is_some(), "verdict without {k}: {verdict}");
        }
        assert!(verdict["samples"].as_u64().unwrap() >= 20);
    }

    let slow_flag = agent.wait_for("leak_suspected for the 128 KiB/s leak", Duration::from_secs(125), |v| {
        v["event"] == "leak_suspected" && v["pid"] == s
    });
    let slow_secs = start.elapsed().as_secs_f64();
    assert!(
        slow_secs <= 121.0,
        "128 KiB/s leak flagged after {slow_secs:.1}s (> 120 s)"
    );
    assert_eq!(slow_flag["pattern"], "mountain");

    for c in [&mut fast, &mut tidal, &mut plateau, &mut saw] {
        let _ = c.wait();
    }
    thread::sleep(Duration::from_secs(2));
    let (_, ev) = agent.stop();
    let _ = slow.kill();
    let _ = slow.wait();

    assert!(
        first_event(&ev, "leak_suspected", t).is_none(),
        "tidal process {t} was flagged: {:?}",
        first_event(&ev, "leak_suspected", t)
    );
    assert!(
        first_event(&ev, "leak_suspected", w).is_some(),
        "sawtooth with a rising floor ({w}) was not flagged"
    );
    // The plateau may look like a mountain while it grows; once it has held it must not be a leak.
    if first_event(&ev, "leak_suspected", p).is_some() {
        assert!(
            first_event(&ev, "leak_cleared", p).is_some(),
            "plateau {p} flagged and never cleared"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_bad_input_and_short_lives() {
    let cases: &[(&[&str], i32)] = &[
        (&["watch", "--interval", "0", "--pid", "1"], 2),
        (&["watch", "--pid", "1", "--", "true"], 2),
        (&["watch"], 2),
        (&["watch", "--pid", "4000000"], 2),
        (&["run", "--interval", "-1"], 2),
    ];
    for (args, code) in cases {
        let (c, _, err) = run_agent(args);
        assert_eq!(c, *code, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
    if !bpf_available("watch_bad_input_and_short_lives") {
        return;
    }
    let (c, _, err) = run_agent(&["watch", "--", "/no/such/command-xyz"]);
    assert_eq!(c, 127, "{err}");
    assert!(err.contains("command not found"), "{err}");
    // A pid that exits during the watch gets a verdict on what was seen.
    let mut child = Command::new(workload()).args(["hold", "20", "4"]).spawn().unwrap();
    let pid = child.id().to_string();
    let (c, out, err) = run_agent(&["watch", "--json", "--pid", &pid, "--duration", "30"]);
    let _ = child.wait();
    assert_eq!(c, 0, "{err}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "verdict");
    assert_eq!(last["pid"].as_u64().unwrap().to_string(), pid);
    assert!(last["duration_secs"].as_f64().unwrap() < 10.0, "{last}");
}
