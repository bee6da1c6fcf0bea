//! Issue 14 against the real kernel and real programs: leaks that RSS does not show (descriptors
//! and the kernel memory they pin, files in a tmpfs mount), memory per unit of work, and growth
//! across identical runs. Run serially (`cargo xtask test -- beyond`).
mod common;

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
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

fn events<'a>(ev: &'a [Value], kind: &str, pid: u32) -> Vec<&'a Value> {
    ev.iter().filter(|v| v["event"] == kind && v["pid"] == pid).collect()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("no number {k} in {v}"))
}

#[test]
fn descriptor_leaks_are_flagged_with_the_kernel_memory_they_pin_and_churn_is_not() {
    const TEST: &str = "descriptor_leaks_are_flagged_with_the_kernel_memory_they_pin_and_churn_is_not";
    if !bpf_available(TEST) {
        return;
    }
    let dir = tempdir("fds");
    // Each in a memory cgroup of its own: the kernel memory charged there is the process's.
    let cg_pipes = MemCgroup::new("leaktrace-fds-pipes", 1 << 30);
    let cg_tcp = MemCgroup::new("leaktrace-fds-tcp", 1 << 30);
    let cg_churn = MemCgroup::new("leaktrace-fds-churn", 1 << 30);
    let start = Instant::now();
    // 40 pipes a second with 4 KiB in each (80 descriptors/s); 40 loopback connections a second
    // with 4 KiB sent and never read (80 descriptors/s); as many opened and closed.
    let mut pipes = spawn(&["--cgroup", &cg_pipes.procs_file(), "pipes", "40", "90", "4096"]);
    let mut tcp = spawn(&["--cgroup", &cg_tcp.procs_file(), "tcp", "40", "90", "4096"]);
    let mut churn = spawn(&["--cgroup", &cg_churn.procs_file(), "fdchurn", "40", "90", "4096"]);
    let (p, t, c) = (pipes.id(), tcp.id(), churn.id());
    // These three only (other tests on this kernel run lt-workload too).
    let (ps, ts, cs) = (p.to_string(), t.to_string(), c.to_string());
    let agent = Agent::start(
        &[
            "run",
            "--json",
            "--pid",
            &ps,
            "--pid",
            &ts,
            "--pid",
            &cs,
            "--report-dir",
            &dir,
        ],
        "leaktrace: running",
    );

    let is = |v: &Value, pid: u32, kind: &str| {
        v["event"] == "resource_leak_suspected" && v["pid"] == pid && v["kind"] == kind
    };
    let pipe_leak = agent.wait_for("fd_leak of the pipe leaker", Duration::from_secs(60), |v| {
        is(v, p, "fd_leak")
    });
    eprintln!("pipes flagged after {:.1}s: {pipe_leak}", start.elapsed().as_secs_f64());
    let tcp_leak = agent.wait_for("fd_leak of the TCP leaker", Duration::from_secs(60), |v| {
        is(v, t, "fd_leak")
    });
    eprintln!("tcp flagged after {:.1}s: {tcp_leak}", start.elapsed().as_secs_f64());

    for (name, v, kind, rate) in [("pipes", &pipe_leak, "pipe", 80.0), ("tcp", &tcp_leak, "socket", 80.0)] {
        assert_eq!(v["pattern"], "mountain", "{name}: {v}");
        let g = f(v, "fd_growth_per_sec");
        assert!(
            (0.6 * rate..1.4 * rate).contains(&g),
            "{name}: {g} fds/s, expected ~{rate}: {v}"
        );
        let kind_g = v["fd_kind_growth_per_sec"][kind].as_f64().unwrap_or(0.0);
        assert!(kind_g > 0.5 * rate, "{name}: {kind} not named as the growing kind: {v}");
        assert!(
            v["fds_by_kind"][kind].as_u64().unwrap_or(0) > v["open_fds"].as_u64().unwrap() / 2,
            "{name}: {v}"
        );
        assert!(v["fd_limit"].as_u64().is_some_and(|l| l > 0), "{name}: {v}");
        // The kernel memory of its own cgroup is attributed to it, and grows.
        assert!(v["kernel_bytes"].as_u64().is_some_and(|k| k > 0), "{name}: {v}");
        assert_eq!(v["memcg"], format!("/leaktrace-fds-{name}"), "{v}");
    }

    // The kernel memory they pin, as its own evidence: 4 KiB of pipe buffer per pipe at least;
    // socket objects and queued data per connection.
    let pipe_kernel = agent.wait_for("kernel_leak of the pipe leaker", Duration::from_secs(60), |v| {
        is(v, p, "kernel_leak")
    });
    let k = f(&pipe_kernel, "kernel_growth_bytes_per_sec");
    assert!(
        k >= 0.5 * 40.0 * 4096.0,
        "pipes: kernel memory grows {k} B/s, less than half of the pipe buffers written: {pipe_kernel}"
    );
    eprintln!("pipes kernel_leak: {pipe_kernel}");
    let tcp_kernel = agent.wait_for("kernel_leak of the TCP leaker", Duration::from_secs(60), |v| {
        is(v, t, "kernel_leak")
    });
    eprintln!("tcp kernel_leak: {tcp_kernel}");
    let k = f(&tcp_kernel, "kernel_growth_bytes_per_sec");
    assert!(
        k >= 40.0 * 1024.0,
        "tcp: kernel memory grows only {k} B/s: {tcp_kernel}"
    );

    for ch in [&mut pipes, &mut tcp, &mut churn] {
        let _ = ch.wait();
    }
    thread::sleep(Duration::from_secs(2));
    let (_, ev) = agent.stop();
    // Flat RSS: not a heap leak.
    for pid in [p, t] {
        assert!(
            events(&ev, "leak_suspected", pid).is_empty(),
            "pid {pid} flagged by RSS"
        );
        assert!(
            events(&ev, "resource_leak_cleared", pid)
                .iter()
                .any(|v| v["reason"] == "exited" && v["kind"] == "fd_leak"),
            "pid {pid}: no fd_leak cleared at exit"
        );
    }
    let churned = events(&ev, "resource_leak_suspected", c);
    assert!(churned.is_empty(), "the churning process was flagged: {churned:?}");
    let _ = fs::remove_dir_all(&dir);
}

/// A tmpfs mount of the test's own, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(name: &str) -> Tmpfs {
        let p = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        fs::create_dir_all(&p).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512m", "leaktrace-fds"])
            .arg(&p)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {}", p.display());
        Tmpfs(p)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn files_piling_up_in_tmpfs_are_a_host_leak_and_file_caching_is_not() {
    const TEST: &str = "files_piling_up_in_tmpfs_are_a_host_leak_and_file_caching_is_not";
    if !bpf_available(TEST) {
        return;
    }
    let dir = tempdir("tmpfs");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // No process is tracked: what grows is nobody's RSS.
    let agent = Agent::start(
        &[
            "run",
            "--json",
            "--comm",
            "leaktrace-none",
            "--metrics",
            &listen,
            "--report-dir",
            &dir,
        ],
        "leaktrace: running",
    );

    // A host that merely caches files: 480 MiB written and read back, 6000 small files (page
    // cache, dentries, inodes). Not a leak.
    let cache = std::env::temp_dir().join(format!("leaktrace-fds-cache-{}", std::process::id()));
    let cache = if fs::metadata("/var/tmp").is_ok() {
        PathBuf::from("/var/tmp").join(cache.file_name().unwrap())
    } else {
        cache
    };
    fs::create_dir_all(&cache).unwrap();
    let block = vec![0x5au8; 1 << 20];
    for i in 0..24 {
        let mut fh = fs::File::create(cache.join(format!("big{i}"))).unwrap();
        for _ in 0..20 {
            fh.write_all(&block).unwrap();
        }
        for j in 0..250 {
            fs::write(cache.join(format!("small-{i}-{j}")), b"x").unwrap();
        }
        thread::sleep(Duration::from_millis(800));
    }
    for i in 0..24 {
        let _ = fs::read(cache.join(format!("big{i}"))).unwrap();
    }
    thread::sleep(Duration::from_secs(6));
    let cached_alarms: Vec<Value> = agent
        .json()
        .into_iter()
        .filter(|v| v["event"] == "host_leak_suspected")
        .collect();
    let _ = fs::remove_dir_all(&cache);
    assert!(
        cached_alarms.is_empty(),
        "file caching raised host leak alarms (another test's activity on this shared kernel?): {cached_alarms:?}"
    );

    // Files piling up in a tmpfs mount: 2 MiB a second, no process growing.
    let mount = Tmpfs::new("leaktrace-fds-tmpfs");
    let mp = mount.0.display().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, root) = (Arc::clone(&stop), Arc::clone(&written), mount.0.clone());
        thread::spawn(move || {
            let chunk = vec![0xa5u8; 1 << 20];
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 150 {
                fs::write(root.join(format!("f{i}")), &chunk).unwrap();
                written.fetch_add(1 << 20, Ordering::SeqCst);
                i += 1;
                thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let flagged = agent.wait_for(
        "host_leak_suspected naming the tmpfs mount",
        Duration::from_secs(60),
        |v| v["event"] == "host_leak_suspected" && v["part"] == "tmpfs" && v["name"] == mp.as_str(),
    );
    let g = f(&flagged, "growth_bytes_per_sec");
    assert!(
        (1.0e6..3.2e6).contains(&g),
        "tmpfs growth {g} B/s for 2 MiB/s: {flagged}"
    );
    assert!(flagged["bytes"].as_u64().unwrap() <= written.load(Ordering::SeqCst) + (1 << 20));
    // The metric says so too.
    let body = http_get(port, "/metrics").expect("GET /metrics");
    let series = format!("leaktrace_host_leak_suspected{{part=\"tmpfs\",name=\"{mp}\"}} 1");
    assert!(body.contains(&series), "no {series} in /metrics:\n{body}");
    assert!(
        body.contains("leaktrace_host_memory_part_bytes{part=\"tmpfs\"}"),
        "{body}"
    );

    // Deleting the files clears it.
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    for e in fs::read_dir(&mount.0).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let cleared = agent.wait_for("host_leak_cleared for the mount", Duration::from_secs(30), |v| {
        v["event"] == "host_leak_cleared" && v["name"] == mp.as_str()
    });
    assert_eq!(cleared["reason"], "released", "{cleared}");
    eprintln!("tmpfs: {flagged}\n{cleared}");
    let (_, ev) = agent.stop();
    drop(mount);
    let ours = ev
        .iter()
        .filter(|v| v["event"] == "host_leak_suspected" && v["name"] == mp.as_str())
        .count();
    assert_eq!(ours, 1, "flagged once");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn work_metric_gives_bytes_retained_per_request() {
    const TEST: &str = "work_metric_gives_bytes_retained_per_request";
    if !bpf_available(TEST) {
        return;
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics#lt_requests_total");
    let w = workload();
    let watch = Command::new(AGENT)
        .args(["watch", "--json", "--work-metric", &url, "--duration", "45", "--"])
        .arg(&w)
        .args(["serve", &port.to_string(), "64", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // 20 requests a second, each keeping 64 KiB, from as soon as the server answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/metrics").is_none() {
        assert!(Instant::now() < deadline, "the server never answered");
        thread::sleep(Duration::from_millis(50));
    }
    let began = Instant::now();
    let mut sent = 0u64;
    while began.elapsed() < Duration::from_secs(50) {
        if http_get(port, "/work").is_none() {
            break; // the watch ended and stopped the server
        }
        sent += 1;
        let next = began + Duration::from_millis(50 * sent);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            thread::sleep(d);
        }
    }
    let out = watch.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict: Value = serde_json::from_str(stdout.lines().last().expect("a verdict")).unwrap();
    assert_eq!(verdict["event"], "verdict", "{stdout}");
    assert!(sent > 200, "only {sent} requests served");
    let per = f(&verdict, "bytes_per_work");
    let truth = 64.0 * 1024.0;
    eprintln!("{sent} requests: {per} bytes retained per request (truth {truth}): {verdict}");
    assert!(
        (per - truth).abs() <= 0.2 * truth,
        "{per} bytes per request, {truth} retained: {verdict}"
    );
    let rate = f(&verdict, "work_per_sec");
    assert!((14.0..24.0).contains(&rate), "{rate} requests/s: {verdict}");
    assert!(
        verdict["bytes_per_cpu_sec"].as_f64().is_some_and(|b| b > 0.0),
        "{verdict}"
    );
    assert_eq!(verdict["leak"], true, "{verdict}");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn runs_whose_footprint_grows_are_flagged_and_steady_runs_are_not() {
    const TEST: &str = "runs_whose_footprint_grows_are_flagged_and_steady_runs_are_not";
    if !bpf_available(TEST) {
        return;
    }
    let dir = PathBuf::from(tempdir("runs"));
    fs::create_dir_all(&dir).unwrap();
    let w = workload();
    let watch = |state: &str, base: &str, step: &str| {
        let out = Command::new(AGENT)
            .args(["watch", "--json", "--interval", "250ms", "--runs", "3", "--"])
            .arg(&w)
            .args(["grows", &dir.join(state).display().to_string(), base, step, "2"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (out.status.code(), lines)
    };
    // 20, 44, 68 MiB: the same command holds more each time (state it never trims).
    let (code, lines) = watch("growing", "20", "24");
    let runs = lines.last().unwrap();
    assert_eq!(runs["event"], "runs", "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l["event"] == "verdict").count(), 3);
    let peaks: Vec<u64> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["peak_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(peaks.len(), 3);
    for (i, p) in peaks.iter().enumerate() {
        let want = (20 + 24 * i as u64) << 20;
        assert!(
            p.abs_diff(want) < 8 << 20,
            "run {}: peak {p}, expected ~{want}: {runs}",
            i + 1
        );
    }
    eprintln!("growing runs: {runs}");
    assert_eq!(runs["growing"], true, "{runs}");
    let g = f(runs, "peak_growth_per_run_bytes");
    assert!((20e6..30e6).contains(&g), "{g} bytes per run: {runs}");
    assert_eq!(code, Some(3));

    // 40 MiB every time.
    let (code, lines) = watch("steady", "40", "0");
    let runs = lines.last().unwrap();
    assert_eq!(runs["event"], "runs", "{lines:?}");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 3);
    eprintln!("steady runs: {runs}");
    assert_eq!(runs["growing"], false, "{runs}");
    assert_eq!(code, Some(0), "{lines:?}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_work_metric_and_runs_are_usage_errors() {
    for (args, want) in [
        (
            &["watch", "--work-metric", "127.0.0.1:80/metrics", "--", "true"][..],
            "URL#NAME",
        ),
        (
            &["watch", "--work-metric", "https://x/m#n", "--", "true"][..],
            "http://",
        ),
        (
            &["run", "--work-metric", "http://127.0.0.1:9/m#n"][..],
            "exactly one --pid",
        ),
        (&["watch", "--runs", "0", "--", "true"][..], "runs"),
        (&["watch", "--runs", "2", "--pid", "1"][..], "runs"),
        (&["host", "--files", "0"][..], "files"),
    ] {
        let (c, _, err) = run_agent(args);
        assert_eq!(c, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
    // `leaktrace host` needs no privileges beyond reading /proc.
    let (c, out, err) = run_agent(&["host", "--json"]);
    assert_eq!(c, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["event"], "host");
    let sum: u64 = v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();
    let unexplained = v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "unexplained")
        .and_then(|p| p["bytes"].as_u64())
        .unwrap();
    // The parts add up to MemTotal (unless the kernel's own counters overlap past it).
    assert!(
        sum == v["mem_total_bytes"].as_u64().unwrap() || unexplained == 0,
        "the parts do not add up to MemTotal: {v}"
    );
}
