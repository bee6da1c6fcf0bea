//! Managed runtimes against real JVMs (Debian's OpenJDK 17, `hotspot` USDT probes) and CPython
//! (Debian's python3.11, `python` USDT probes), installed by the tests when missing. Run serially.
mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const JDK: &str = "/usr/lib/jvm/java-17-openjdk-amd64";
const PYTHON: &str = "/usr/bin/python3.11";

fn testprogs(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testprogs").join(sub)
}

/// A directory removed when the test ends (passed or not).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The Java test programs, compiled with the JDK's javac into a fresh directory outside /tmp
/// (the mount-namespace test gives the JVM a /tmp of its own).
fn java_classes(name: &str) -> TempDir {
    ensure_package(&format!("{JDK}/bin/javac"), "openjdk-17-jdk-headless");
    let dir = PathBuf::from(format!("/var/tmp/leaktrace-test-gc-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let src = testprogs("java");
    let mut javac = Command::new(format!("{JDK}/bin/javac"));
    javac.arg("-d").arg(&dir);
    for f in ["HeapLeak.java", "BoundedCache.java"] {
        javac.arg(src.join(f));
    }
    let st = javac.status().expect("run javac");
    assert!(st.success(), "javac failed");
    TempDir(dir)
}

fn java() -> String {
    format!("{JDK}/bin/java")
}

fn python() -> &'static str {
    ensure_package(PYTHON, "python3.11");
    PYTHON
}

fn events<'a>(ev: &'a [Value], kind: &str, pid: u32) -> Vec<&'a Value> {
    events_for(ev, kind, pid)
}

/// `leaktrace watch --json ARGS`: (exit code, JSON lines of stdout, stderr).
fn watch(args: &[&str]) -> (i32, Vec<Value>, String) {
    let mut a = vec!["watch", "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = run_agent(&a);
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {err}")))
        .collect();
    (code, lines, err)
}

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `HeapLeak RATE 20000` on a JVM started with `jvm_opts` inside the memory cgroup `cg`, and an
/// agent following it with heap snapshots and reports in `dir`.
fn heap_leak_in(
    cg: &MemCgroup,
    jvm_opts: &str,
    classes: &Path,
    rate: &str,
    stderr: Stdio,
    dir: &str,
) -> (Reaper, u32, Agent) {
    let script = format!(
        "echo $$ > {} && exec {} {jvm_opts} -cp {} HeapLeak {rate} 20000",
        cg.procs_file(),
        java(),
        classes.display()
    );
    let jvm = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let pid = jvm.id();
    let jvm = Reaper(jvm);
    let pid_s = pid.to_string();
    let agent = Agent::start(
        &[
            "run",
            "--json",
            "--pid",
            &pid_s,
            "--heap-snapshots",
            "--report-dir",
            dir,
        ],
        "leaktrace: running",
    );
    (jvm, pid, agent)
}

/// The JVM's exit status, once it has ended; `late` is the failure when that takes over 240 s.
fn exited_within_240s(jvm: &mut Reaper, late: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = jvm.0.try_wait().unwrap() {
            return st;
        }
        assert!(start.elapsed() < Duration::from_secs(240), "{late}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn jvm_heap_leak_behind_flat_rss_is_flagged_named_and_its_outofmemoryerror_reported() {
    if !bpf_available("jvm_heap_leak_behind_flat_rss_is_flagged_named_and_its_outofmemoryerror_reported") {
        return;
    }
    let classes = java_classes("leak");
    let dir = tempdir("gc-jvm-leak");
    // The heap (96 MiB) is far under the memory cgroup's limit: the kernel never kills it.
    let cg = MemCgroup::new("leaktrace-test-gc-jvm-leak", 768 * MIB);
    // The whole heap committed and touched at start: RSS is flat from then on, the heap fills.
    let (mut jvm, pid, agent) = heap_leak_in(
        &cg,
        "-Xms96m -Xmx96m -XX:+AlwaysPreTouch -XX:+UseG1GC",
        &classes,
        "14000",
        Stdio::piped(),
        &dir,
    );
    let status = exited_within_240s(&mut jvm, "the JVM did not run out of heap in 240 s");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut jvm.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("java.lang.OutOfMemoryError"),
        "the JVM did not throw OutOfMemoryError: {status} {err}"
    );
    assert_eq!(status.code(), Some(1), "{status}: {err}");
    let oome = agent.wait_for("java_oom", Duration::from_secs(10), |v| {
        v["event"] == "java_oom" && v["pid"] == pid
    });
    let (_, ev) = agent.stop();
    let stderr_lines = ev.len();

    // Flagged on the heap's floor, while RSS said plateau / flat: not a mountain.
    let sus = events(&ev, "leak_suspected", pid);
    let first = sus
        .first()
        .unwrap_or_else(|| panic!("no leak_suspected; {stderr_lines} events: {ev:?}"));
    let evidence: Vec<&str> = first["signs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(evidence.contains(&"heap_floor"), "{first}");
    assert!(
        !evidence.contains(&"rss_floor"),
        "RSS should be flat behind a full heap: {first}"
    );
    assert_ne!(first["pattern"], "mountain", "{first}");
    let gc = &first["gc"];
    assert_eq!(gc["runtime"], "jvm");
    assert_eq!(gc["heap_floor"]["leak"], true, "{gc}");
    assert!(
        gc["heap_floor"]["growth_bytes_per_sec"].as_f64().unwrap() > 200_000.0,
        "{gc}"
    );
    assert_eq!(gc["old_gen"]["name"], "G1 Old Gen");
    assert_eq!(gc["old_gen"]["max_bytes"], 96 * MIB);
    let pos = |v: &Value| ev.iter().position(|x| x == v).unwrap();
    assert!(pos(first) < pos(&oome), "flagged only after the OutOfMemoryError");

    // Predicted against the heap, before it happened.
    let pred = events(&ev, "oom_predicted", pid);
    let pred = pred.first().unwrap_or_else(|| panic!("no oom_predicted: {ev:?}"));
    assert_eq!(pred["limit"], "java_heap");
    assert!(pos(pred) < pos(&oome));

    // The class histograms: what grew, the leaking class first.
    let hist: Vec<&Value> = events(&ev, "heap_histogram", pid)
        .into_iter()
        .filter(|v| v["diff"].is_object())
        .collect();
    let h = hist.first().unwrap_or_else(|| {
        panic!(
            "no histogram diff; histograms: {:?}",
            events(&ev, "heap_histogram", pid)
        )
    });
    assert_eq!(h["diff"]["classes"][0]["name"], "LeakedOrderDto", "{}", h["diff"]);
    assert_eq!(h["diff"]["suspect"], "LeakedOrderDto");
    assert!(
        h["diff"]["classes"][0]["growth_instances"].as_i64().unwrap() > 100_000,
        "{h}"
    );

    // Reported like a kernel kill, with the heap's history.
    assert!(matches!(oome["seen"].as_str(), Some("exit" | "gc")), "{oome}");
    assert_eq!(oome["predicted"], true);
    assert_eq!(oome["flagged"], true);
    let path = oome["report"].as_str().expect("a report path");
    let r: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    assert_eq!(r["kind"], "java_heap");
    assert_eq!(r["binding_limit"], "java_heap");
    assert_eq!(r["victim"]["pid"], pid);
    assert_eq!(r["predicted"], true);
    let rt = &r["runtime"];
    assert_eq!(rt["runtime"], "jvm");
    let olds: Vec<u64> = rt["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["old_after_gc_bytes"].as_u64())
        .collect();
    assert!(olds.len() > 30, "{} history points", olds.len());
    assert!(
        olds.last().unwrap() > &(olds[0] + 50 * MIB),
        "the old generation should fill: {:?}",
        olds
    );
    assert_eq!(rt["heap_snapshot"]["diff"]["classes"][0]["name"], "LeakedOrderDto");
    // The text form.
    let (code, text, _) = run_agent(&["report", "--report-dir", &dir, path]);
    assert_eq!(code, 0);
    assert!(
        text.contains("ran out of Java heap") && text.contains("LeakedOrderDto"),
        "{text}"
    );
    // The kernel killed nothing: the cgroup's limit was never the problem.
    let oom_kills = fs::read_to_string(cg.dir.join("memory.oom_control")).unwrap_or_default();
    assert!(oom_kills.contains("oom_kill 0") || cg.v2, "{oom_kills}");
}

#[test]
fn jvm_bounded_cache_under_heavy_garbage_is_not_flagged() {
    if !bpf_available("jvm_bounded_cache_under_heavy_garbage_is_not_flagged") {
        return;
    }
    let classes = java_classes("cache");
    // 40,000 entries of 1 KiB replaced at 4,000/s (so entries live ~10 s and are promoted before
    // they are evicted), plus 40 MiB/s of short-lived garbage, G1, watched for 200 s.
    let jvm = Command::new(java())
        .args(["-Xmx256m", "-XX:+UseG1GC", "-cp"])
        .arg(&classes)
        .args(["BoundedCache", "40000", "1024", "4000", "40000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let jvm = Reaper(jvm);
    let pid = jvm.0.id().to_string();
    let (code, ev, err) = watch(&["--duration", "200", "--pid", &pid]);
    drop(jvm);
    let v = ev.last().expect("a verdict");
    assert_eq!(v["event"], "verdict", "{err}");
    assert!(err.contains("GC probes attached to pid"), "{err}");
    assert_eq!(v["leak"], false, "{v}");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["signs"], serde_json::json!([]), "{v}");
    let gc = &v["gc"];
    assert_eq!(gc["runtime"], "jvm", "{v}");
    assert!(gc["collections_total"].as_u64().unwrap() > 100, "{gc}");
    assert!(
        gc["reclaimed_bytes_per_collection"].as_f64().unwrap() > 4.0 * MIB as f64,
        "{gc}"
    );
    assert_ne!(gc["heap_floor"]["leak"], true, "{gc}");
    assert_eq!(gc["gc_pressure"]["pressure"], false, "{gc}");
    // The cache (~40 MiB live) shows in the old generation after GC, well under its maximum.
    let old = gc["old_gen"]["used_after_gc_bytes"].as_u64().unwrap();
    assert!(old > 30 * MIB && old < 200 * MIB, "{gc}");
}

#[test]
fn cpython_cycles_kept_alive_are_flagged_cycles_freed_are_not() {
    if !bpf_available("cpython_cycles_kept_alive_are_flagged_cycles_freed_are_not") {
        return;
    }
    let py = python();
    let leak = testprogs("python/cycles_leak.py").display().to_string();
    let churn = testprogs("python/cycles_churn.py").display().to_string();
    // Both at once (two agents), 3000 pairs of cyclic objects a second for 60 s.
    let a = {
        let leak = leak.clone();
        thread::spawn(move || watch(&["--duration", "60", "--", py, &leak, "3000", "70"]))
    };
    let (cc, cev, cerr) = watch(&["--duration", "60", "--", py, &churn, "3000", "70"]);
    let (lc, lev, lerr) = a.join().unwrap();
    let lv = lev.last().unwrap();
    let cv = cev.last().unwrap();
    assert!(
        lerr.contains("GC probes attached to pid") && lerr.contains("python"),
        "{lerr}"
    );
    assert!(cerr.contains("GC probes attached to pid"), "{cerr}");

    // Kept alive: a leak, and the collector finds nothing to free.
    assert_eq!((lc, &lv["leak"]), (3, &Value::Bool(true)), "{lv}");
    let lpy = &lv["gc"]["python"];
    assert_eq!(lv["gc"]["runtime"], "python");
    assert!(lpy["collections_total"][0].as_u64().unwrap() > 100, "{lpy}");
    assert!(lpy["collected_per_collection"][0].as_f64().unwrap() < 5.0, "{lpy}");
    // Nothing, or next to nothing: the interpreter's own start-up leaves a few dozen cyclic
    // objects for its first collections (24 in one CI run), against hundreds per collection below.
    let collected = lpy["collected_total"][0].as_u64().unwrap() + lpy["collected_total"][1].as_u64().unwrap();
    assert!(collected < lpy["collections_total"][0].as_u64().unwrap(), "{lpy}");

    // Freed: no leak, and each young collection frees hundreds of objects.
    assert_eq!((cc, &cv["leak"]), (0, &Value::Bool(false)), "{cv}");
    let cpy = &cv["gc"]["python"];
    assert!(cpy["collections_total"][0].as_u64().unwrap() > 100, "{cpy}");
    assert!(cpy["collected_per_collection"][0].as_f64().unwrap() > 100.0, "{cpy}");
    assert!(cv["gc"]["gc_time_share"].as_f64().unwrap() > 0.0, "{}", cv["gc"]);
}

#[test]
fn jvm_in_its_own_mount_and_pid_namespace_probes_attach_and_histogram_works() {
    if !bpf_available("jvm_in_its_own_mount_and_pid_namespace_probes_attach_and_histogram_works") {
        return;
    }
    let classes = java_classes("ns");
    // Its own mount namespace with a /tmp of its own (the attach socket lives there) and its own
    // pid namespace (it is pid 1 there).
    let script = format!(
        "mount -t tmpfs leaktrace-gc-ns /tmp && exec {} -Xmx64m -cp {} HeapLeak 2000 4000",
        java(),
        classes.display()
    );
    let child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child);
    let unshare_pid = _reaper.0.id();
    // The JVM is unshare's child.
    let start = Instant::now();
    let pid = loop {
        let kids = fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children")).unwrap_or_default();
        if let Some(p) = kids.split_whitespace().next().and_then(|p| p.parse::<u32>().ok())
            && fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "java")
        {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no JVM under unshare");
        thread::sleep(Duration::from_millis(100));
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with("\t1"), "not pid 1 in its namespace: {nspid}");
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap()
    );
    thread::sleep(Duration::from_secs(2));
    let pid_s = pid.to_string();

    // The collector probes attach through /proc/PID/root and their events arrive.
    let (_, ev, err) = watch(&["--duration", "12", "--pid", &pid_s]);
    let v = ev.last().unwrap();
    assert!(err.contains(&format!("GC probes attached to pid {pid}")), "{err}");
    assert_eq!(v["gc"]["runtime"], "jvm", "{v}");
    assert!(v["gc"]["collections_total"].as_u64().unwrap() > 0, "{v}");

    // The class histogram, through the socket in the JVM's own /tmp.
    let (code, out, herr) = run_agent(&["heap", "--pid", &pid_s, "--json"]);
    assert_eq!(code, 0, "{herr}");
    let h: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(h["event"], "heap_histogram", "{h}");
    let classes_json = h["classes"].as_array().unwrap();
    assert!(classes_json.iter().any(|c| c["name"] == "LeakedOrderDto"), "{h}");
    assert!(
        Path::new(&format!("/proc/{pid}/root/tmp/.java_pid1")).exists(),
        "the socket should be in the JVM's own /tmp"
    );
    assert!(!Path::new("/tmp/.java_pid1").exists() || Path::new("/tmp/.java_pid1").is_dir());

    // And with --diff: the leaking class first by growth.
    let (code, out, herr) = run_agent(&["heap", "--pid", &pid_s, "--diff", "4", "--json"]);
    assert_eq!(code, 0, "{herr}");
    let d: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(d["diff"]["classes"][0]["name"], "LeakedOrderDto", "{d}");
}

#[test]
fn heap_refuses_what_is_not_a_jvm() {
    let me = std::process::id().to_string();
    let (code, out, err) = run_agent(&["heap", "--pid", &me]);
    assert_eq!(code, 2, "{out} {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a HotSpot JVM"), "{err}");
    let (code, _, err) = run_agent(&["heap", "--pid", "4000000"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_agent(&["heap", "--pid", "1", "--diff", "0"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn doctor_lists_the_runtimes_it_found_with_probes() {
    if !bpf_available("doctor_lists_the_runtimes_it_found_with_probes") {
        return;
    }
    let py = python();
    let child = Command::new(py)
        .args(["-c", "import time; time.sleep(30)"])
        .spawn()
        .unwrap();
    let child = Reaper(child);
    let pid = child.0.id();
    thread::sleep(Duration::from_millis(500));
    let (code, out, err) = run_agent(&["doctor", "--json"]);
    assert_eq!(code, 0, "{err}");
    let line: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["check"] == format!("runtime python pid {pid} (python3.11)"))
        .unwrap_or_else(|| panic!("no line for pid {pid}: {out}"));
    assert_eq!(line["status"], "ok", "{line}");
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(PYTHON) && detail.contains("gc__start,gc__done") && detail.contains("2 with semaphores"),
        "{detail}"
    );
    assert!(out.contains(r#""check":"usdt:hotspot,python""#), "{out}");
}

/// The shipped alert rules fire on the collector's series (promtool's rule unit tests: no agent).
#[test]
fn gc_alert_rules_fire_on_their_series() {
    ensure_package("/usr/bin/promtool", "prometheus");
    let dir = PathBuf::from(tempdir("gc-rules"));
    fs::create_dir_all(&dir).unwrap();
    // The shipped rules without their annotations (promtool would compare their text too).
    let shipped = fs::read_to_string(testprogs("../deploy/prometheus/leaktrace.rules.yml")).unwrap();
    let mut kept = Vec::new();
    let mut skip_deeper: Option<usize> = None;
    for line in shipped.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(d) = skip_deeper {
            if line.trim().is_empty() || indent > d {
                continue;
            }
            skip_deeper = None;
        }
        if line.trim() == "annotations:" {
            skip_deeper = Some(indent);
            continue;
        }
        kept.push(line);
    }
    let rules = dir.join("leaktrace.rules.yml");
    fs::write(&rules, kept.join("\n")).unwrap();
    let l = r#"pid="42",comm="java",cgroup="/svc""#;
    let test = format!(
        r#"rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'leaktrace_process_heap_leak_suspected{{{l},runtime="jvm"}}'
        values: '0 1x10'
      - series: 'leaktrace_process_gc_pressure{{{l},runtime="jvm"}}'
        values: '1x20'
      - series: 'leaktrace_process_heap_used_after_gc_bytes{{{l},pool="total"}}'
        values: '95x10'
      - series: 'leaktrace_process_heap_max_bytes{{{l},pool="total"}}'
        values: '100x10'
    alert_rule_test:
      - eval_time: 7m
        alertname: LeaktraceJavaHeapLeak
        exp_alerts:
          - exp_labels: {{severity: warning, pid: "42", comm: java, cgroup: /svc, runtime: jvm}}
      - eval_time: 3m
        alertname: LeaktraceJavaHeapLeak
        exp_alerts: []
      - eval_time: 12m
        alertname: LeaktraceGcPressure
        exp_alerts:
          - exp_labels: {{severity: warning, pid: "42", comm: java, cgroup: /svc, runtime: jvm}}
      - eval_time: 7m
        alertname: LeaktraceJavaHeapFull
        exp_alerts:
          - exp_labels: {{severity: critical, pid: "42", comm: java, cgroup: /svc, pool: total}}
"#,
        rules = rules.display()
    );
    let f = dir.join("gc-rules.test.yml");
    fs::write(&f, test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::remove_dir_all(&dir);
}

/// CAP_EFFECTIVE of a process, from /proc/PID/status.
fn cap_eff(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    u64::from_str_radix(eff, 16).unwrap()
}

#[test]
fn run_keeps_only_what_following_runtimes_needs_and_lowers_semaphores_when_done() {
    if !bpf_available("run_keeps_only_what_following_runtimes_needs_and_lowers_semaphores_when_done") {
        return;
    }
    ensure_package("/usr/bin/readelf", "binutils");
    let py = python();
    // Debian's python3.11 is not position-independent: its semaphores are at their link-time
    // addresses (`readelf -n`), 2 bytes each.
    let notes = Command::new("readelf").args(["-n", py]).output().unwrap();
    let notes = String::from_utf8_lossy(&notes.stdout).to_string();
    let sema = |name: &str| -> u64 {
        let block = notes.split("Name: ").find(|b| b.starts_with(name)).unwrap();
        let hex = block.split("Semaphore: 0x").nth(1).unwrap();
        u64::from_str_radix(&hex[..16], 16).unwrap()
    };
    let (start, done) = (sema("gc__start\n"), sema("gc__done\n"));
    let read = |pid: u32, addr: u64| -> u16 {
        use std::os::unix::fs::FileExt as _;
        let f = fs::File::open(format!("/proc/{pid}/mem")).unwrap();
        let mut b = [0u8; 2];
        f.read_exact_at(&mut b, addr).unwrap();
        u16::from_ne_bytes(b)
    };
    let child = Command::new(py)
        .args([
            "-c",
            "import gc,time\nwhile True:\n  [[] for _ in range(2000)]\n  gc.collect(0)\n  time.sleep(0.2)",
        ])
        .spawn()
        .unwrap();
    let child = Reaper(child);
    let pid = child.0.id();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (read(pid, start), read(pid, done)),
        (0, 0),
        "semaphores raised before any agent"
    );
    let dir = tempdir("gc-caps");
    let pid_s = pid.to_string();
    let agent = Agent::start(
        &["run", "--json", "--pid", &pid_s, "--report-dir", &dir],
        "leaktrace: running",
    );
    let start_t = Instant::now();
    while !agent
        .stderr()
        .iter()
        .any(|l| l.contains(&format!("GC probes attached to pid {pid}")))
    {
        assert!(start_t.elapsed() < Duration::from_secs(15), "{:?}", agent.stderr());
        thread::sleep(Duration::from_millis(100));
    }
    // Attached: both semaphores raised (the interpreter now runs its probe sites).
    assert_eq!((read(pid, start), read(pid, done)), (1, 1));
    // Capabilities: the minimal set plus CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN (attaching uprobes
    // to processes that start later), nothing else.
    let eff = cap_eff(agent.pid());
    let allowed: u64 = (1 << 2) | (1 << 19) | (1 << 34) | (1 << 38) | (1 << 39) | (1 << 21);
    assert_eq!(eff & !allowed, 0, "capabilities kept after attach: {eff:#x}");
    assert_eq!(eff & (1 << 21), 1 << 21, "{eff:#x}");
    let (st, _) = agent.stop();
    assert_eq!(st.code(), Some(0));
    // Stopped: the semaphores are back to 0 in the process, which lives on.
    assert_eq!((read(pid, start), read(pid, done)), (0, 0), "semaphores left raised");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn jvm_killed_by_the_kernel_has_its_collector_and_heap_growth_in_the_report() {
    if !bpf_available("jvm_killed_by_the_kernel_has_its_collector_and_heap_growth_in_the_report") {
        return;
    }
    let classes = java_classes("kernel-oom");
    let dir = tempdir("gc-jvm-kernel-oom");
    // A heap allowed to grow past the memory cgroup's limit: the kernel kills the JVM first.
    let cg = MemCgroup::new("leaktrace-test-gc-jvm-kernel-oom", 320 * MIB);
    let (mut jvm, pid, agent) = heap_leak_in(
        &cg,
        "-Xms16m -Xmx1g -XX:+UseG1GC",
        &classes,
        "40000",
        Stdio::null(),
        &dir,
    );
    let status = exited_within_240s(&mut jvm, "the JVM was not killed in 240 s");
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "the JVM should be OOM-killed: {status}");
    let kill = agent.wait_for("oom_kill", Duration::from_secs(10), |v| {
        v["event"] == "oom_kill" && v["pid"] == pid
    });
    let (_, ev) = agent.stop();
    assert!(
        events(&ev, "java_oom", pid).is_empty(),
        "a kernel kill is not a Java OOM"
    );
    let r: Value = serde_json::from_slice(&fs::read(kill["report"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(r["kind"], "kernel");
    assert_eq!(r["binding_limit"], "memcg");
    let rt = &r["runtime"];
    assert_eq!(rt["runtime"], "jvm", "{r}");
    assert!(rt["gc"]["collections_total"].as_u64().unwrap() > 5, "{}", rt["gc"]);
    assert!(rt["history"].as_array().unwrap().len() > 10);
    // The class histograms taken when it was flagged and when its kill was predicted.
    let snap = &rt["heap_snapshot"];
    // What led there, to tell a comparison never asked for from one that did not come back.
    let story: Vec<String> = ["leak_suspected", "oom_predicted", "heap_histogram", "oom_kill"]
        .iter()
        .flat_map(|k| events(&ev, k, pid))
        .map(|v| format!("{} at {} ({})", v["event"], v["t"], v["reason"]))
        .collect();
    assert_eq!(
        snap["diff"]["classes"][0]["name"], "LeakedOrderDto",
        "{snap}\nevents: {story:?}"
    );
    let (code, text, _) = run_agent(&["report", "--report-dir", &dir, kill["report"].as_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        text.contains("Collector (jvm)") && text.contains("LeakedOrderDto"),
        "{text}"
    );
}
