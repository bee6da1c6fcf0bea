//! `leaktrace analyze --prometheus` against a real Prometheus scraping the Debian
//! `prometheus-process-exporter` every second, while real processes leak, breathe, plateau, hold
//! and restart: the leaking groups are flagged, the others are not. Also its bad-input paths.
//! A loaded machine makes some 1 s scrapes time out: those gaps are bridged, not restarts.
mod common;

use std::{
    collections::BTreeMap,
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{prom::*, *};
use serde_json::Value;

/// `leaktrace ARGS`: (exit code, stdout, stderr).
fn leaktrace(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(AGENT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run leaktrace");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A failure: one line on stderr (with `want` in it), nothing on stdout, no panic.
fn one_line_error(args: &[&str], code: i32, want: &str) {
    let (c, out, err) = leaktrace(args);
    assert_eq!(c, code, "{args:?}: stdout {out:?} stderr {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err:?}");
    assert!(err.contains(want), "{args:?}: {err:?} has no {want:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.is_empty(), "{args:?}: {out}");
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Seconds since the epoch of an RFC 3339 time as `analyze` writes it (`2026-01-01T00:00:00Z`).
fn unix(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .as_second()
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[test]
fn prometheus_history_flags_the_leaking_groups_only() {
    const TEST: &str = "prometheus_history_flags_the_leaking_groups_only";
    if !prometheus_available(TEST)
        || !installed(TEST, &["prometheus-process-exporter"], &["prometheus-process-exporter"])
    {
        return;
    }
    let tmp = TempDir::new("prom-history");
    // Only this test's processes: other tests (and other users of the machine) run lt-workload too.
    let marker = format!("ltprom{}", std::process::id());
    let exporter_port = free_port();
    let pe_config = tmp.0.join("process-exporter.yml");
    fs::write(
        &pe_config,
        format!(
            "process_names:\n  - name: \"{{{{.Matches.mode}}}}\"\n    comm: [lt-workload]\n    cmdline:\n      - 'lt-workload\\s+(?P<mode>[a-z]+)\\s.*\\s{marker}$'\n"
        ),
    )
    .unwrap();
    let exporter_log = tmp.0.join("process-exporter.log");
    let log = fs::File::create(&exporter_log).unwrap();
    let _exporter = Killed(
        Command::new("prometheus-process-exporter")
            .arg(format!("-config.path={}", pe_config.display()))
            .arg(format!("-web.listen-address=127.0.0.1:{exporter_port}"))
            .args(["-threads=false", "-gather-smaps=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus-process-exporter"),
    );
    let prom = Prometheus::start(
        &tmp.0,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: process\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    );
    prom.wait_up("process", Duration::from_secs(20));
    let url = format!("http://127.0.0.1:{}", prom.port);

    // The workloads, each its own group (named by its mode). `hold` runs twice: a restart.
    const RUN: u64 = 130;
    let spawn = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push(marker.clone());
        Killed(
            Command::new(workload())
                .args(&all)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn lt-workload"),
        )
    };
    let begin = now_unix();
    let started = Instant::now();
    let run = RUN.to_string();
    let mut procs = vec![
        // 1 MiB/s, steady.
        spawn(&["leak", "1024", &run]),
        // Floor rising 2 MiB every 4 s (512 KiB/s) inside 10 MiB tides.
        spawn(&["sawtooth", "12", "10", "4", &run]),
        // 40 MiB tides every 8 s, no growth.
        spawn(&["tidal", "40", "8", &run]),
        // 48 MiB over 6 s (a warm-up shorter than any leak the agent may call), then held.
        spawn(&["plateau", "48", "6", &run]),
        // 24 MiB held for 50 s, exits, starts again.
        spawn(&["hold", "24", "50"]),
    ];
    thread::sleep(Duration::from_secs(54));
    procs.push(spawn(&["hold", "24", &(RUN - 54).to_string()]));
    while started.elapsed() < Duration::from_secs(RUN + 2) {
        thread::sleep(Duration::from_millis(500));
    }
    let end = now_unix();
    drop(procs);

    let query = r#"namedprocess_namegroup_memory_bytes{memtype="resident"}"#;
    let range = format!("{}s", end - begin + 5);
    let t = Instant::now();
    let (code, out, err) = leaktrace(&[
        "analyze",
        "--prometheus",
        &url,
        "--query",
        query,
        "--range",
        &range,
        "--end",
        &end.to_string(),
        "--step",
        "1s",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    eprintln!("{TEST}: analyze took {:.2}s:\n{out}", t.elapsed().as_secs_f64());
    let lines = json_lines(&out);
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "series_summary", "{summary}");
    let verdicts: BTreeMap<String, &Value> = lines
        .iter()
        .filter(|v| v["event"] == "series_verdict")
        .map(|v| (v["labels"]["groupname"].as_str().unwrap().to_string(), v))
        .collect();
    let groups: Vec<&str> = verdicts.keys().map(String::as_str).collect();
    assert_eq!(
        groups,
        vec!["hold", "leak", "plateau", "sawtooth", "tidal"],
        "one verdict per group"
    );
    for (g, v) in &verdicts {
        assert_eq!(v["labels"]["memtype"], "resident", "{v}");
        assert_eq!(v["labels"]["job"], "process", "{v}");
        let leaking = g == "leak" || g == "sawtooth";
        assert_eq!(v["leak"], leaking, "{g}: {v}");
        if leaking {
            let at = unix(v["flagged_at"].as_str().expect("flagged_at"));
            assert!(
                (begin..=end).contains(&at),
                "{g} flagged at {at}, outside the run {begin}..{end}: {v}"
            );
            eprintln!("{TEST}: {g} flagged {}s after it started", at - begin);
            assert_eq!(v["pattern"], "mountain", "{g}: {v}");
            let growth = v["growth_bytes_per_sec"].as_f64().unwrap();
            let want = if g == "leak" { 1024.0 * 1024.0 } else { 512.0 * 1024.0 };
            assert!(
                (0.5 * want..2.0 * want).contains(&growth),
                "{g}: growth {growth} B/s for {want} B/s: {v}"
            );
            assert!(v["alarms"].as_u64().unwrap() >= 1, "{v}");
        } else {
            assert_eq!(v["alarms"], 0, "{g}: {v}");
            assert_eq!(v["flagged_at"], Value::Null, "{g}: {v}");
        }
    }
    // The restart: two lives (the group fell to 0 between them).
    assert_eq!(verdicts["hold"]["lives"], 2, "{}", verdicts["hold"]);
    assert_eq!(verdicts["leak"]["lives"], 1, "{}", verdicts["leak"]);
    assert!(verdicts["plateau"]["peak_bytes"].as_u64().unwrap() > 48 << 20);
    assert_eq!(summary["series"], 5);
    assert_eq!(summary["leaks"], 2);
    assert_eq!(summary["queries"], 1);
    assert_eq!(summary["step_secs"], 1.0);

    // Text form: one line per series, then the summary.
    let (code, text, err) = leaktrace(&[
        "analyze",
        "--prometheus",
        &url,
        "--query",
        query,
        "--range",
        &range,
        "--end",
        &end.to_string(),
        "--step",
        "1s",
    ]);
    assert_eq!(code, 0, "{err}");
    let text: Vec<&str> = text.lines().collect();
    assert_eq!(text.len(), 6, "{text:?}");
    assert!(
        text.iter()
            .any(|l| l.starts_with("LEAK") && l.contains(r#"groupname="sawtooth""#)),
        "{text:?}"
    );
    assert!(text[5].ends_with("2 leaks flagged"), "{}", text[5]);

    // Over Prometheus's 11,000 points a query: the range is read in two calls, each time once.
    let (code, out, err) = leaktrace(&[
        "analyze",
        "--prometheus",
        &url,
        "--query",
        r#"namedprocess_namegroup_memory_bytes{memtype="resident",groupname="hold"}"#,
        "--range",
        "60s",
        "--end",
        &end.to_string(),
        "--step",
        "5ms",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    let (v, summary) = (&lines[0], &lines[1]);
    assert_eq!(summary["queries"], 2, "{summary}");
    assert_eq!(v["points"], 12_001, "every step of 60 s once: {v}");

    // Bad input: one line, non-zero, no panic.
    let base = ["analyze", "--prometheus", url.as_str(), "--range", "5m", "--query"];
    let with = |q: &'static str| -> Vec<&str> {
        let mut a = base.to_vec();
        a.push(q);
        a
    };
    one_line_error(&with("rate(namedprocess_namegroup_memory_bytes[1m]"), 1, "bad_data");
    one_line_error(&with("leaktrace_no_such_metric_anywhere"), 1, "returned no series");
    one_line_error(&with("vector(0) / 0"), 1, r#"value "NaN" is not a memory size"#);
    // Not Prometheus: the exporter answers the API path with its own page.
    let exporter = format!("http://127.0.0.1:{exporter_port}");
    one_line_error(&["analyze", "--prometheus", &exporter, "--query", "up"], 1, &exporter);
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    one_line_error(
        &["analyze", "--prometheus", &nowhere, "--query", "up"],
        1,
        "cannot reach Prometheus",
    );
    one_line_error(
        &["analyze", "--prometheus", "ftp://x", "--query", "up"],
        2,
        "not an http:// or https:// URL",
    );
    one_line_error(&["analyze", "--prometheus", &url], 2, "--query");
    one_line_error(
        &[
            "analyze",
            "--prometheus",
            &url,
            "--query",
            "up",
            "--step",
            "1h",
            "--range",
            "10m",
        ],
        2,
        "longer than the range",
    );
    one_line_error(
        &["analyze", "--prometheus", &url, "--query", "up", "--end", "yesterday"],
        2,
        "--end",
    );
}
