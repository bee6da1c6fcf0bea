//! Allocation sites against real processes: a C program (built here with
//! `cc -O1 -fno-omit-frame-pointer -g` from testprogs/c/leaker.c) that leaks through
//! `leak_through_here_please` while other functions allocate and free, its stripped copy, and a
//! Rust program built with frame pointers forced. Every test name contains `sites`, so
//! `cargo xtask test -- sites` runs them all (serially: kernel state is shared).
mod common;

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use common::{
    sites::{frames, sites, top},
    *,
};
use serde_json::Value;

const LEAK_FN: &str = "leak_through_here_please";
const MIB: u64 = 1 << 20;

fn workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(tempdir("sites"));
        fs::create_dir_all(&d).unwrap();
        d
    })
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// testprogs/c/leaker.c, built once; `stripped` gives a `strip`ped copy named leaker-stripped.
fn leaker(stripped: bool) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let bin = BUILT.get_or_init(|| {
        let out = workdir().join("leaker");
        let src = repo().join("testprogs/c/leaker.c");
        let st = Command::new("cc")
            .args(["-O1", "-fno-omit-frame-pointer", "-g", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run cc (gcc installed?)");
        assert!(st.success(), "cc {} failed: {st}", src.display());
        out
    });
    if !stripped {
        return bin.clone();
    }
    let s = workdir().join("leaker-stripped");
    if !s.exists() {
        fs::copy(bin, &s).unwrap();
        let st = Command::new("strip").arg(&s).status().expect("run strip");
        assert!(st.success(), "strip failed");
        let syms = Command::new("nm").arg(&s).output().expect("run nm");
        assert!(
            !String::from_utf8_lossy(&syms.stdout).contains(LEAK_FN),
            "strip left the symbols in"
        );
    }
    s
}

/// testprogs/rust-leaker, built with the stable cargo and frame pointers forced, into a
/// temporary target directory (it is not a workspace member).
fn rust_leaker() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = workdir().join("rust-target");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = Command::new(cargo)
                .args(["build", "--release", "--quiet", "--manifest-path"])
                .arg(repo().join("testprogs/rust-leaker/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTC_WRAPPER")
                .env("RUSTFLAGS", "-C force-frame-pointers=yes")
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

/// A started leaker that has printed its ready line; killed on drop.
struct Leaker(Child);

impl Leaker {
    fn start(cmd: &mut Command) -> Leaker {
        let mut c = cmd.stdout(Stdio::piped()).spawn().expect("spawn leaker");
        let mut line = String::new();
        BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("\"ready\":true"), "leaker said {line:?}");
        Leaker(c)
    }
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Leaker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sites_default_mode_names_the_leaking_function() {
    if !bpf_available("sites_default_mode_names_the_leaking_function") {
        return;
    }
    let l = Leaker::start(Command::new(leaker(false)).args(["60"]));
    let folded = workdir().join("leaker.folded");
    let v = sites(&[
        "--pid",
        &l.pid(),
        "--duration",
        "6",
        "--folded",
        folded.to_str().unwrap(),
    ]);
    assert_eq!(v["mode"], "growth");
    let t = top(&v);
    let f = frames(t);
    assert_eq!(f[0], LEAK_FN, "top site {t}; table {v}");
    assert!(f.iter().any(|x| x == "main"), "{f:?}");
    // ~2 MiB/s for 6 s, seen through 1-in-N fault samples.
    let b = t["bytes"].as_u64().unwrap();
    assert!((3 * MIB..40 * MIB).contains(&b), "top site bytes {b}: {v}");
    assert_eq!(
        t["bytes"].as_u64(),
        Some(t["grown_bytes"].as_u64().unwrap() + t["fault_bytes"].as_u64().unwrap())
    );
    // The short-lived objects are recycled: they do not grow the process.
    for s in v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| frames(s).iter().any(|x| x == "make_and_free"))
    {
        assert!(
            s["bytes"].as_u64().unwrap() < b / 4,
            "make_and_free grew as much as the leak: {v}"
        );
    }
    assert!(
        v["stack_collisions"].is_u64() && v["fault_samples"].as_u64().unwrap() > 0,
        "{v}"
    );
    // Folded stacks: outermost first, bytes last, the leak's line among them.
    let text = fs::read_to_string(&folded).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(LEAK_FN))
        .unwrap_or_else(|| panic!("no {LEAK_FN} in folded:\n{text}"));
    let (stack, bytes) = line.rsplit_once(' ').unwrap();
    assert!(stack.ends_with(&format!("main;{LEAK_FN}")), "{line}");
    assert!(bytes.parse::<u64>().unwrap() > 0, "{line}");
}

#[test]
fn sites_fault_sampling_falls_back_to_the_perf_event() {
    if !bpf_available("sites_fault_sampling_falls_back_to_the_perf_event") {
        return;
    }
    // Without raw_tp:rss_stat, the perf_event program on the page-fault counter samples.
    let l = Leaker::start(Command::new(leaker(false)).args(["60"]));
    let v = sites(&[
        "--pid",
        &l.pid(),
        "--duration",
        "5",
        "--fault-sample",
        "32",
        "--pretend-missing",
        "rss_stat",
    ]);
    assert_eq!(v["fault_sample"], 32);
    let t = top(&v);
    assert_eq!(frames(t)[0], LEAK_FN, "top site {t}; table {v}");
    assert!(
        t["fault_bytes"].as_u64().unwrap() > 0 && t["fault_bytes"].as_u64().unwrap().is_multiple_of(32 * 4096),
        "{t}"
    );
}

#[test]
fn sites_malloc_mode_names_the_leaking_function() {
    if !bpf_available("sites_malloc_mode_names_the_leaking_function") {
        return;
    }
    let l = Leaker::start(Command::new(leaker(false)).args(["60"]));
    let v = sites(&["--pid", &l.pid(), "--duration", "5", "--malloc"]);
    assert_eq!(v["mode"], "malloc");
    let t = top(&v);
    let f = frames(t);
    // The uretprobe runs in the caller: the innermost frame is the code that called malloc.
    assert_eq!(f[0], LEAK_FN, "top site {t}; table {v}");
    // Outstanding bytes: 20 KiB every 10 ms for ~5 s, nothing freed; each allocation counted.
    let (b, n) = (t["bytes"].as_u64().unwrap(), t["events"].as_u64().unwrap());
    assert!((4 * MIB..16 * MIB).contains(&b), "outstanding {b}: {v}");
    assert_eq!(b, n * (2048 * 1024 / 100), "bytes are whole 20 KiB allocations: {t}");
    // What is allocated and freed leaves (almost) nothing outstanding; the cache is bounded.
    for s in v["sites"].as_array().unwrap().iter().skip(1) {
        assert!(
            s["bytes"].as_u64().unwrap() <= 2 * MIB,
            "another site holds as much: {v}"
        );
    }
}

#[test]
fn sites_of_a_stripped_binary_are_module_offsets() {
    if !bpf_available("sites_of_a_stripped_binary_are_module_offsets") {
        return;
    }
    let l = Leaker::start(Command::new(leaker(true)).args(["60"]));
    let v = sites(&["--pid", &l.pid(), "--duration", "5"]);
    let f = frames(top(&v));
    let is_offset = |s: &str| {
        s.strip_prefix("leaker-stripped+0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
    };
    assert!(
        is_offset(&f[0]),
        "top frame {:?} is not leaker-stripped+0x...: {v}",
        f[0]
    );
    assert!(is_offset(&f[1]), "caller frame {:?}: {f:?}", f[1]);
    assert!(
        !f.iter().any(|x| x.contains(LEAK_FN)),
        "a stripped binary cannot name it: {f:?}"
    );
}

#[test]
fn sites_rust_frames_are_demangled() {
    if !bpf_available("sites_rust_frames_are_demangled") {
        return;
    }
    let l = Leaker::start(Command::new(rust_leaker()).args(["60"]));
    let v = sites(&["--pid", &l.pid(), "--duration", "5"]);
    let f = frames(top(&v));
    assert_eq!(
        f[0], "rust_leaker::leak_vec_forever",
        "top site frames {f:?}; table {v}"
    );
    assert!(f.iter().any(|x| x == "rust_leaker::main"), "{f:?}");
    for x in &f {
        // Legacy mangling `_ZN...17h<16 hex>E`, v0 `_R...`, or a demangled name keeping its hash.
        let last = x.rsplit("::").next().unwrap_or(x);
        let hash = last.len() == 17 && last.starts_with('h') && last[1..].chars().all(|c| c.is_ascii_hexdigit());
        assert!(
            !x.contains("_ZN") && !x.starts_with("_R") && !hash,
            "mangled frame {x:?} in {f:?}"
        );
    }
}

#[test]
fn sites_in_the_watch_verdict() {
    if !bpf_available("sites_in_the_watch_verdict") {
        return;
    }
    for extra in [&[][..], &["--malloc"][..]] {
        let bin = leaker(false);
        let mut args = vec!["watch", "--json", "--duration", "6"];
        args.extend_from_slice(extra);
        args.extend(["--", bin.to_str().unwrap(), "7"]);
        let (code, out, err) = run_agent(&args);
        assert!(code == 0 || code == 3, "watch {extra:?}: {code} {err}");
        let verdict: Value = serde_json::from_str(out.lines().last().expect("a verdict")).unwrap();
        assert_eq!(verdict["event"], "verdict");
        let sites = verdict["top_sites"]
            .as_array()
            .unwrap_or_else(|| panic!("no top_sites: {verdict}"));
        assert!(!sites.is_empty() && sites.len() <= 5, "{verdict}");
        assert_eq!(frames(&sites[0])[0], LEAK_FN, "watch {extra:?}: {verdict}");
        assert!(sites[0]["bytes"].as_u64().unwrap() >= 2 * MIB, "{verdict}");
        assert!(verdict["stack_collisions"].is_u64(), "{verdict}");
    }
}

#[test]
fn sites_in_the_oom_report_with_run_stacks() {
    if !bpf_available("sites_in_the_oom_report_with_run_stacks") {
        return;
    }
    let dir = tempdir("sites-oom");
    let cg = MemCgroup::new("leaktrace-test-sites-oom", 96 * MIB);
    let agent = Agent::start(
        &["run", "--json", "--stacks", "--comm", "leaker", "--report-dir", &dir],
        "leaktrace: running",
    );
    // 16 MiB/s in a 96 MiB cgroup: killed after ~5 s.
    let script = format!(
        "echo $$ > {} && exec {} 60 16384",
        cg.procs_file(),
        leaker(false).display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let st = child.wait().unwrap();
    assert!(!st.success(), "the leaker should be OOM-killed, got {st}");
    let kill = agent.wait_for("oom_kill", Duration::from_secs(10), |v| {
        v["event"] == "oom_kill" && v["pid"] == pid
    });
    let _ = agent.stop();
    let r: Value = serde_json::from_slice(&fs::read(kill["report"].as_str().expect("report path")).unwrap()).unwrap();
    let sites = r["top_sites"]
        .as_array()
        .unwrap_or_else(|| panic!("no top_sites in report {r}"));
    assert!(!sites.is_empty(), "empty top_sites: {r}");
    assert_eq!(frames(&sites[0])[0], LEAK_FN, "victim's top site: {}", r["top_sites"]);
    assert!(sites[0]["bytes"].as_u64().unwrap() >= 16 * MIB, "{}", r["top_sites"]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn sites_bad_input() {
    for (args, code) in [
        (&["sites"][..], 2),
        (&["sites", "--pid", "0"][..], 2),
        (&["sites", "--pid", "4000000"][..], 2),
        (&["sites", "--pid", "1", "--malloc-sample", "2"][..], 2),
        (&["sites", "--pid", "1", "--fault-sample", "0"][..], 2),
        (&["run", "--fault-sample", "8"][..], 2),
    ] {
        let (c, _, err) = run_agent(args);
        assert_eq!(c, code, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
