//! Allocation sites in programs without frame pointers: stack copies in the kernel, unwound by
//! the binaries' CFI in the agent. Real programs built here with default flags (C and C++ with
//! plain `-O2`, Rust without forced frame pointers, against the distribution's glibc and
//! libstdc++), a binary deleted after start in a private mount namespace, node with
//! `--perf-basic-prof`, and a page-fault storm for the copies' rate limit. Every test name
//! contains `sites_unwind`, so `cargo xtask test -- unwind` runs them all (serially).
mod common;

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::{
    sites::{frames, sites, top},
    *,
};
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(tempdir("unwind"));
        fs::create_dir_all(&d).unwrap();
        d
    })
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Compile `src` (under testprogs/) with `compiler -O2` and nothing else, once.
fn build(compiler: &str, src: &str, out: &str) -> PathBuf {
    let bin = workdir().join(out);
    if !bin.exists() {
        let st = Command::new(compiler)
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(repo().join("testprogs").join(src))
            .status()
            .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
        assert!(st.success(), "{compiler} -O2 {src} failed: {st}");
    }
    bin
}

fn service() -> PathBuf {
    build("cc", "c/service.c", "service")
}

/// testprogs/rust-leaker as cargo builds it by default (release: no frame pointers).
fn rust_leaker_default() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = workdir().join("rust-target-default");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = Command::new(cargo)
                .args(["build", "--release", "--quiet", "--manifest-path"])
                .arg(repo().join("testprogs/rust-leaker/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTFLAGS")
                .env_remove("RUSTC_WRAPPER")
                .output()
                .expect("run cargo");
            assert!(
                out.status.success(),
                "building rust-leaker: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            target.join("release/rust-leaker")
        })
        .clone()
}

/// A started program that has printed its `{"pid":N,"ready":true}` line; killed on drop.
struct Prog {
    child: Child,
    pid: u32,
}

impl Prog {
    fn start(cmd: &mut Command) -> Prog {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn test program");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("program said {line:?}"));
        assert_eq!(v["ready"], true, "{line}");
        let pid = v["pid"].as_u64().expect("pid") as u32;
        Prog { child, pid }
    }
    fn pid(&self) -> String {
        self.pid.to_string()
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the program we started (it may be a grandchild: sh, unshare).
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn total_bytes(v: &Value) -> u64 {
    v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap())
        .sum()
}

/// One line with what the unwinding did, for the test log (and README's figures).
fn report(name: &str, v: &Value) {
    let total = total_bytes(v).max(1);
    let un = v["unattributed_bytes"].as_u64().unwrap();
    eprintln!(
        "{name}: {} MiB total, unattributed {} KiB ({:.1} %); copies {} (limited {}, dropped {}, errors {}); unwind {}",
        total / MIB,
        un >> 10,
        100.0 * un as f64 / total as f64,
        v["stack_copies"],
        v["copies_limited"],
        v["copies_dropped"],
        v["copy_errors"],
        v["unwind"]
    );
}

/// The copies really were taken and unwound (the path this file is about).
fn assert_unwound(v: &Value) {
    let u = &v["unwind"];
    assert!(
        v["stack_copies"].as_u64().unwrap() > 0 && u["copies"].as_u64().unwrap() > 0,
        "no stack copies were unwound: {v}"
    );
    assert!(
        u["complete"].as_u64().unwrap() * 10 >= u["copies"].as_u64().unwrap() * 9,
        "most copies should unwind to the outermost frame: {u}"
    );
}

#[test]
fn sites_unwind_c_without_frame_pointers() {
    if !bpf_available("sites_unwind_c_without_frame_pointers") {
        return;
    }
    let p = Prog::start(Command::new(service()).args(["60"]));
    let v = sites(&["--pid", &p.pid(), "--duration", "6"]);
    report("C -O2", &v);
    assert_unwound(&v);
    let t = top(&v);
    let f = frames(t);
    assert_eq!(f[0], "handle_login", "top site {t}; table {v}");
    assert!(f.iter().any(|x| x == "main"), "{f:?}");
    // ~2 MiB/s for 6 s, brk growth and 1-in-64 fault samples of the same memory.
    let b = t["bytes"].as_u64().unwrap();
    assert!((6 * MIB..60 * MIB).contains(&b), "top site bytes {b}: {v}");
    assert_eq!(
        t["bytes"].as_u64(),
        Some(t["grown_bytes"].as_u64().unwrap() + t["fault_bytes"].as_u64().unwrap())
    );
    // What the others allocate is recycled by glibc; what is left unattributed is small.
    for s in v["sites"].as_array().unwrap().iter().skip(1) {
        assert!(s["bytes"].as_u64().unwrap() < b / 4, "another site grew as much: {v}");
    }
    assert!(
        v["unattributed_bytes"].as_u64().unwrap() * 10 <= total_bytes(&v),
        "more than 10 % unattributed: {v}"
    );
    // The control: with frame pointers only, the same program's growth is not attributed to
    // handle_login (its frame is skipped or the walk ends in glibc).
    let fp = sites(&["--pid", &p.pid(), "--duration", "4", "--stack-copies", "0"]);
    report("C -O2, frame pointers only", &fp);
    assert_eq!(fp["stack_copies"], 0, "{fp}");
    let named: u64 = fp["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| frames(s).first().is_some_and(|x| x == "handle_login"))
        .map(|s| s["bytes"].as_u64().unwrap())
        .sum();
    assert!(
        named * 2 < total_bytes(&fp),
        "frame pointers alone found handle_login: the test program no longer needs CFI: {fp}"
    );
}

#[test]
fn sites_unwind_cpp_member_function() {
    if !bpf_available("sites_unwind_cpp_member_function") {
        return;
    }
    let bin = build("g++", "cpp/registry.cpp", "registry");
    let p = Prog::start(Command::new(bin).args(["60"]));
    let v = sites(&["--pid", &p.pid(), "--duration", "6"]);
    report("C++ -O2", &v);
    assert_unwound(&v);
    let f = frames(top(&v));
    let record = "EventLog::record(unsigned int)";
    assert!(f.iter().any(|x| x == record), "top site {f:?}; table {v}");
    assert!(f.iter().any(|x| x == "main"), "{f:?}");
    // The growth path through operator new / std::vector is what it is: record's callees.
    let i = f.iter().position(|x| x == record).unwrap();
    assert!(
        f[..i].iter().all(|x| x.contains("std::") || x.contains("operator new")),
        "frames above record should be the library's: {f:?}"
    );
    // Other handlers allocate and free; they are not where the memory grows.
    for s in v["sites"].as_array().unwrap() {
        let fs = frames(s);
        if fs.iter().any(|x| x.starts_with("Cache::") || x.starts_with("Parser::")) {
            assert!(
                s["bytes"].as_u64().unwrap() * 4 < top(&v)["bytes"].as_u64().unwrap(),
                "{v}"
            );
        }
    }
}

#[test]
fn sites_unwind_in_the_watch_verdict() {
    if !bpf_available("sites_unwind_in_the_watch_verdict") {
        return;
    }
    // `watch -- CMD` names the leaking member function of a C++ -O2 program in its verdict.
    let bin = build("g++", "cpp/registry.cpp", "registry");
    let (code, out, err) = run_agent(&["watch", "--json", "--duration", "7", "--", bin.to_str().unwrap(), "8"]);
    assert!(code == 0 || code == 3, "watch: {code} {err}");
    let verdict: Value = serde_json::from_str(out.lines().last().expect("a verdict")).unwrap();
    assert_eq!(verdict["event"], "verdict", "{verdict}");
    let sites = verdict["top_sites"]
        .as_array()
        .unwrap_or_else(|| panic!("no top_sites: {verdict}"));
    let f = frames(&sites[0]);
    assert!(
        f.iter().any(|x| x == "EventLog::record(unsigned int)"),
        "top site {f:?}; verdict {verdict}"
    );
    assert!(sites[0]["bytes"].as_u64().unwrap() >= 4 * MIB, "{verdict}");
}

#[test]
fn sites_unwind_rust_without_frame_pointers() {
    if !bpf_available("sites_unwind_rust_without_frame_pointers") {
        return;
    }
    let p = Prog::start(Command::new(rust_leaker_default()).args(["60", "2048", "std"]));
    let v = sites(&["--pid", &p.pid(), "--duration", "6"]);
    report("Rust release", &v);
    assert_unwound(&v);
    let f = frames(top(&v));
    assert_eq!(f[0], "rust_leaker::remember_forever", "top site {f:?}; table {v}");
    assert!(f.iter().any(|x| x == "rust_leaker::main"), "{f:?}");
    for x in &f {
        let last = x.rsplit("::").next().unwrap_or(x);
        let hash = last.len() == 17 && last.starts_with('h') && last[1..].chars().all(|c| c.is_ascii_hexdigit());
        assert!(
            !x.contains("_ZN") && !x.starts_with("_R") && !hash,
            "mangled frame {x:?} in {f:?}"
        );
    }
}

#[test]
fn sites_unwind_deleted_binary_in_a_private_mount_namespace() {
    if !bpf_available("sites_unwind_deleted_binary_in_a_private_mount_namespace") {
        return;
    }
    // A tmpfs that only the program's mount namespace sees; the binary is deleted once running.
    let dir = workdir().join("private-mnt");
    fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let script = format!(
        "mount -t tmpfs leaktrace-test-unwind {d} && cp {} {d}/service && \
         {{ {d}/service 60 & }} && sleep 0.3 && rm {d}/service && wait",
        service().display()
    );
    let p = Prog::start(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]));
    // Once deleted, the binary is reachable through /proc only.
    let t0 = Instant::now();
    let deleted =
        || fs::read_link(format!("/proc/{}/exe", p.pid)).is_ok_and(|e| e.to_string_lossy().ends_with("(deleted)"));
    while !deleted() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the binary was not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !dir.join("service").exists(),
        "the binary must not be visible in our namespace"
    );
    let v = sites(&["--pid", &p.pid(), "--duration", "6"]);
    report("C -O2, deleted, private mount namespace", &v);
    assert_unwound(&v);
    let f = frames(top(&v));
    assert_eq!(f[0], "handle_login", "top site {f:?}; table {v}");
    assert!(f.iter().any(|x| x == "main"), "{f:?}");
    drop(p);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn sites_unwind_node_jit_frames_are_named() {
    if !bpf_available("sites_unwind_node_jit_frames_are_named")
        || !prom::installed("sites_unwind_node_jit_frames_are_named", &["nodejs"], &["node"])
    {
        return;
    }
    let p = Prog::start(
        Command::new("node")
            .arg("--perf-basic-prof")
            .arg(repo().join("testprogs/js/leaker.js"))
            .arg("60"),
    );
    let map = PathBuf::from(format!("/tmp/perf-{}.map", p.pid));
    let v = sites(&["--pid", &p.pid(), "--duration", "8"]);
    report("node --perf-basic-prof", &v);
    let f = frames(top(&v));
    assert!(
        f.iter().any(|x| x.starts_with("JS:") && x.contains("rememberRequest")),
        "top site {f:?}; table {v}"
    );
    assert!(top(&v)["bytes"].as_u64().unwrap() >= 4 * MIB, "{v}");
    drop(p);
    let _ = fs::remove_file(map);
}

/// A CPython ≥ 3.12 whose `-X perf` trampolines work, if one is installed (on PATH, or
/// installed by pyenv).
fn python_with_perf_trampolines() -> Option<String> {
    let mut candidates: Vec<String> = ["python3", "python3.14", "python3.13", "python3.12"]
        .map(String::from)
        .to_vec();
    let pyenv = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Ok(Ok(dirs)) = pyenv.map(|p| fs::read_dir(p.join("versions"))) {
        let mut found: Vec<String> = dirs
            .filter_map(Result::ok)
            .map(|d| d.path().join("bin/python3").display().to_string())
            .collect();
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args([
                "-X",
                "perf",
                "-c",
                "import sys; assert sys.is_stack_trampoline_active()",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn sites_unwind_python_perf_trampolines_are_named() {
    if !bpf_available("sites_unwind_python_perf_trampolines_are_named") {
        return;
    }
    let Some(py) = python_with_perf_trampolines() else {
        eprintln!("SKIP sites_unwind_python_perf_trampolines_are_named: no CPython >= 3.12 with -X perf here");
        return;
    };
    let p = Prog::start(
        Command::new(&py)
            .args(["-X", "perf"])
            .arg(repo().join("testprogs/py/leaker.py"))
            .arg("60"),
    );
    let map = PathBuf::from(format!("/tmp/perf-{}.map", p.pid));
    let v = sites(&["--pid", &p.pid(), "--duration", "6"]);
    report(&format!("{py} -X perf"), &v);
    assert_unwound(&v);
    let f = frames(top(&v));
    // Interpreter frames in C (CFI), then the trampoline of the Python function (no CFI, named
    // by the perf map), then the interpreter again, down to main.
    let i = f
        .iter()
        .position(|x| x.starts_with("py::remember_request:"))
        .unwrap_or_else(|| panic!("top site {f:?}; table {v}"));
    assert!(f[i + 1..].iter().any(|x| x.starts_with("py::<module>:")), "{f:?}");
    drop(p);
    let _ = fs::remove_file(map);
}

/// CPU time (user + system) of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn sites_unwind_copies_are_rate_limited_under_a_fault_storm() {
    if !bpf_available("sites_unwind_copies_are_rate_limited_under_a_fault_storm") {
        return;
    }
    // A page-fault storm in code without frame pointers: every fault sample wants a copy.
    let storm = build("cc", "c/faultstorm.c", "faultstorm");
    let mut child = Command::new(storm)
        .args(["64", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (secs, rate) = (6.0, 20u64);
    let cpu0 = children_cpu();
    let t0 = Instant::now();
    let v = sites(&[
        "--pid",
        &child.id().to_string(),
        "--duration",
        &secs.to_string(),
        "--fault-sample",
        "4",
        "--stack-copies",
        &rate.to_string(),
    ]);
    let (cpu, wall) = (children_cpu() - cpu0, t0.elapsed());
    let _ = child.kill();
    let _ = child.wait();
    let copies = v["stack_copies"].as_u64().unwrap();
    let limited = v["copies_limited"].as_u64().unwrap();
    let dropped = v["copies_dropped"].as_u64().unwrap();
    let samples = v["fault_samples"].as_u64().unwrap();
    let unwind_ms = v["unwind"]["unwind_ns"].as_u64().unwrap() as f64 / 1e6;
    eprintln!(
        "fault storm {secs} s: {samples} fault samples, {copies} copies, {limited} rate-limited, {dropped} dropped; \
         agent CPU {:.0} ms over {:.1} s ({:.1} % of a core, unwinding {unwind_ms:.1} ms)",
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    assert!(
        samples > 20 * copies,
        "the storm should want far more copies than allowed: {v}"
    );
    assert!(copies > 0, "no copies at all: {v}");
    // Per process: `rate` a second plus one second of burst; racing CPUs may each take one more.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let bound = (rate as f64 * (secs + 1.0)) as u64 * cpus.min(2) + 10;
    assert!(
        copies <= bound,
        "{copies} copies > {bound}: the rate limit does not hold: {v}"
    );
    assert!(limited >= 10 * copies, "{v}");
    assert!(
        dropped * 20 <= copies,
        "more than 5 % of copies lost in the ring buffer: {v}"
    );
    // The agent's CPU (start-up and BPF loading included) stays a fraction of a core.
    assert!(
        cpu.as_secs_f64() < 0.25 * wall.as_secs_f64(),
        "agent CPU {cpu:?} over {wall:?}: {v}"
    );
    assert!(unwind_ms < 0.05 * secs * 1e3, "unwinding took {unwind_ms} ms: {v}");
}
