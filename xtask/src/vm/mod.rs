//! `cargo xtask test --kernel VERSION` / `--matrix`: the privileged integration tests on other
//! kernels, each booted under QEMU.
//!
//! For each Debian kernel (see [`kernel::KERNELS`]): fetch the image package (cached under
//! `target/vm/`), pack an initramfs with busybox, the agent, lt-workload and the test binaries
//! (at their host paths, with the shared libraries they link), boot it (KVM when a probe boot
//! works, else TCG), and let the guest's init run each test file of [`VM_TESTS`] as root with
//! `CI=true`, writing `@@lt-vm` markers around libtest's output on the serial console. The host
//! streams that console, and the command fails when a test fails, a test skips or is ignored,
//! a file ran no test, or the guest does not power off in time. `host` runs [`HOST_TESTS`] on the
//! machine's own kernel, without a VM.

mod initramfs;
mod kernel;
mod qemu;
mod results;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::privilege;
use crate::setup::Env;
use crate::util::{self, Project};

use self::qemu::Accel;

/// Test files (leaktrace/tests/NAME.rs) run in every VM kernel. `vm_*` files are declared
/// `test = false` in leaktrace/Cargo.toml: the host's `cargo xtask test` leaves them out
/// (they expect cgroup v2 and BPF trampolines, which the host lacks) and they fail, never skip,
/// on a machine that is not what they expect.
pub const VM_TESTS: &[&str] = &["spine", "oom", "reliability", "floor", "vm_cgroup2", "vm_kernel_paths"];

/// Test files run for `--kernel host` (the machine's own kernel, no VM).
pub const HOST_TESTS: &[&str] = &["spine", "oom", "leaks", "reliability", "floor", "sites"];

/// Every kernel `--matrix` runs, in order.
pub const MATRIX: &[&str] = &["6.1", "6.12", "host"];

/// Memory and CPUs of each guest. One vCPU: two guests side by side then take the two cores of
/// a CI machine, and a guest kernel patching its own text (static keys, ftrace trampolines) under
/// multi-threaded TCG once hit a stale `int3` on another vCPU (an oops in `sched_clock_cpu` while
/// the clocksource watchdog flipped a static key on a loaded host).
const GUEST_MEMORY_MIB: u32 = 2048;
const GUEST_CPUS: u32 = 1;
/// A probe boot that takes longer than this means KVM does not work here.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub struct VmOptions {
    pub kernels: Vec<String>,
    /// Arguments for each test binary (a filter).
    pub extra: Vec<String>,
    pub timeout: Duration,
    /// `auto` | `kvm` | `tcg`.
    pub accel: String,
}

/// Checks the kernel names before anything is built.
pub fn validate(kernels: &[String]) -> Result<()> {
    for k in kernels {
        if k != "host" && kernel::spec(k).is_none() {
            let known: Vec<&str> = kernel::KERNELS.iter().map(|k| k.version).chain(["host"]).collect();
            bail!("unknown kernel `{k}`: expected one of {}", known.join(", "));
        }
    }
    Ok(())
}

pub fn run(project: &Project, env: &Env, opts: &VmOptions) -> Result<()> {
    validate(&opts.kernels)?;
    let vms: Vec<&str> = opts
        .kernels
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "host")
        .collect();

    let mut build = cargo(project, env, &["build", "--workspace", "--exclude", "leaktrace-ebpf"]);
    util::stage("build", &mut build)?;

    let mut summary = Vec::new();
    let mut failed = false;
    let mut record = |k: &str, took: Duration, outcome: Result<String>| match outcome {
        Ok(line) => summary.push(format!("kernel {k}: ok, {line} ({:.0}s)", took.as_secs_f64())),
        Err(err) => {
            failed = true;
            summary.push(format!("kernel {k}: FAILED ({:.0}s)\n    {err:#}", took.as_secs_f64()));
        }
    };
    // The guests boot side by side: most of a test's time is waiting for wall-clock behaviour
    // (leak detection, OOM growth), which overlaps; their consoles are told apart by `[VERSION]`.
    if !vms.is_empty() {
        let prepared = prepare(project, env, opts, &vms)?;
        let outcomes: Vec<(&str, Duration, Result<String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = vms
                .iter()
                .map(|k| {
                    let prepared = &prepared;
                    s.spawn(move || {
                        let start = Instant::now();
                        let r = run_vm(prepared, k, opts);
                        (*k, start.elapsed(), r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| ("?", Duration::ZERO, Err(anyhow::anyhow!("panicked"))))
                })
                .collect()
        });
        for (k, took, r) in outcomes {
            record(k, took, r);
        }
    }
    if opts.kernels.iter().any(|k| k == "host") {
        let start = Instant::now();
        let r = run_host(project, env, &opts.extra);
        record("host", start.elapsed(), r);
    }
    println!("xtask: kernel matrix:");
    for line in &summary {
        println!("  {line}");
    }
    if failed {
        bail!("the kernel matrix failed");
    }
    Ok(())
}

fn cargo(project: &Project, env: &Env, args: &[&str]) -> Command {
    let mut cmd = Command::new(util::cargo());
    cmd.args(args).current_dir(&project.root);
    env.apply(&mut cmd);
    cmd
}

/// `--kernel host`: the host set on this machine's kernel, through cargo as usual.
fn run_host(project: &Project, env: &Env, extra: &[String]) -> Result<String> {
    let mut test = cargo(project, env, &["test", "-p", "leaktrace", "--no-fail-fast"]);
    for t in HOST_TESTS {
        test.args(["--test", t]);
    }
    let prefix = privilege::root_prefix(env)?;
    if !prefix.is_empty() {
        bail!("--kernel host needs root (the tests load BPF programs): run it as root");
    }
    test.env("CI", std::env::var("CI").unwrap_or_else(|_| "true".into()));
    test.args(["--", "--test-threads=1"]).args(extra);
    util::stage("host kernel tests", &mut test)?;
    Ok(format!("{} test files", HOST_TESTS.len()))
}

/// Everything the guests share: the initramfs and the accelerator.
struct Prepared {
    initrd: PathBuf,
    accel: Accel,
    cache: PathBuf,
}

/// How much slower the guest is: the tests' timeouts are multiplied by it
/// (`LEAKTRACE_TEST_TIMEOUT_SCALE`, read by tests/common).
fn timeout_scale(accel: Accel) -> u32 {
    match accel {
        Accel::Kvm => 1,
        Accel::Tcg => 4,
    }
}

fn prepare(project: &Project, env: &Env, opts: &VmOptions, vms: &[&str]) -> Result<Prepared> {
    ensure_host_packages()?;
    let cache = project.target_dir.join("vm");
    std::fs::create_dir_all(&cache)?;
    let busybox = util::find_in_path("busybox").unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    // Fetch kernels first: a missing registry fails before the test build.
    let mut first = None;
    for v in vms {
        let k = kernel::ensure(kernel::spec(v).expect("validated"), &cache)?;
        first.get_or_insert(k);
    }
    let first = first.context("no VM kernel")?;
    let accel = choose_accel(&opts.accel, &first.vmlinuz, &cache, &busybox)?;
    let tests = test_binaries(project, env, VM_TESTS)?;
    let debug = project.target_dir.join("debug");
    let agent = debug.join("leaktrace");
    let workload = debug.join("lt-workload");

    let start = Instant::now();
    let scratch = cache.join("strip");
    let mut fs = initramfs::Initramfs::default();
    fs.mirror_top_level_symlinks();
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/run",
        "/root",
        "/var/lib",
        "/etc",
        "/usr/bin",
        "/usr/sbin",
    ] {
        fs.dir(d);
    }
    fs.data("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n".to_vec(), 0o644);
    fs.data("/etc/group", b"root:x:0:\n".to_vec(), 0o644);
    fs.program(&busybox, false, &scratch)?;
    fs.program(&agent, true, &scratch)?;
    fs.program(&workload, true, &scratch)?;
    for (_, bin) in &tests {
        fs.program(bin, true, &scratch)?;
    }
    let pkg_dir = project.root.join("leaktrace");
    fs.dir(&pkg_dir);
    let script = init_script(&busybox, &agent, &pkg_dir, &tests, &opts.extra, timeout_scale(accel));
    fs.data("/init", script.into_bytes(), 0o755);
    let initrd = cache.join("initramfs.cpio");
    let size = fs.write(&initrd)?;
    println!(
        "xtask: vm: initramfs {} ({} MiB, {} test files) ({})",
        initrd.display(),
        size >> 20,
        tests.len(),
        util::secs(start)
    );
    Ok(Prepared { initrd, accel, cache })
}

/// qemu-system-x86_64 and busybox from Debian when they are missing.
fn ensure_host_packages() -> Result<()> {
    let mut missing = Vec::new();
    if util::find_in_path("qemu-system-x86_64").is_none() {
        missing.push("qemu-system-x86");
    }
    if util::find_in_path("busybox").is_none() && !Path::new("/bin/busybox").exists() {
        missing.push("busybox-static");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !privilege::is_root()? {
        bail!(
            "the VM tests need {}: install them (apt-get install {0}) or run as root",
            missing.join(" ")
        );
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    util::stage("apt-get update", &mut update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    util::stage(&format!("install {}", missing.join(" ")), &mut install)
}

/// Builds the named test files and returns (name, executable), from cargo's JSON messages.
fn test_binaries(project: &Project, env: &Env, names: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = cargo(
        project,
        env,
        &[
            "test",
            "-p",
            "leaktrace",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ],
    );
    for t in names {
        cmd.args(["--test", t]);
    }
    println!("xtask: build tests: {}", util::display(&cmd));
    let start = Instant::now();
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", util::display(&cmd)))?;
    if !out.status.success() {
        bail!("building the test binaries failed ({})", out.status);
    }
    let found = executables_from_messages(&String::from_utf8_lossy(&out.stdout));
    let mut bins = Vec::new();
    for t in names {
        match found.iter().find(|(n, _)| n == t) {
            Some((n, p)) => bins.push((n.clone(), p.clone())),
            None => bail!("cargo built no test binary for `{t}`"),
        }
    }
    println!("xtask: build tests ok ({})", util::secs(start));
    Ok(bins)
}

/// `compiler-artifact` messages of test targets: (target name, executable).
pub fn executables_from_messages(text: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let is_test = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, Some(name), Some(exe)) = (is_test, v["target"]["name"].as_str(), v["executable"].as_str()) {
            out.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    out
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The guest's `/init`: mount what the agent needs (cgroup2, tracefs, bpffs), then run each test
/// binary as cargo would (cwd = the package directory) between `@@lt-vm` markers, and power off.
pub fn init_script(
    busybox: &Path,
    agent: &Path,
    pkg_dir: &Path,
    tests: &[(String, PathBuf)],
    extra: &[String],
    timeout_scale: u32,
) -> String {
    let bb = busybox.display();
    let mut s = format!(
        r#"#!{bb} sh
{bb} --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
hostname leaktrace-vm
echo "{MARK} info uname=$(uname -r)"
echo "{MARK} info cgroup_controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
echo "{MARK} info memory_mib=$(( $(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024 ))"
export CI=true HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1 LEAKTRACE_TEST_TIMEOUT_SCALE={timeout_scale}
# Which path each probe takes on this kernel.
{agent} doctor 2>&1 | sed 's/^/doctor: /'
cd {pkg}
"#,
        agent = shell_quote(&agent.to_string_lossy()),
        MARK = results::MARK,
        pkg = shell_quote(&pkg_dir.to_string_lossy()),
    );
    let extra: Vec<String> = extra.iter().map(|a| shell_quote(a)).collect();
    for (name, bin) in tests {
        s.push_str(&format!(
            "echo \"{MARK} begin {name}\"\nt0=$(date +%s)\n{bin} --test-threads=1 {extra} </dev/null 2>&1\nrc=$?\necho \"{MARK} end {name} rc=$rc secs=$(( $(date +%s) - t0 ))\"\n",
            MARK = results::MARK,
            bin = shell_quote(&bin.to_string_lossy()),
            extra = extra.join(" "),
        ));
    }
    s.push_str(&format!(
        "echo \"{}\"\nsync\npoweroff -f\n",
        results::MARK.to_owned() + " done"
    ));
    s
}

/// Kernel command line: the console on the first serial port, only errors from the kernel on it
/// (OOM-killer reports would interleave with the test output; the agent reads /dev/kmsg), PSI on,
/// and the TSC trusted (an emulated guest on a busy host otherwise has its clocksource watchdog
/// declare it unstable mid-run and switch clocks, patching kernel text as it goes).
const APPEND: &str = "console=ttyS0 loglevel=3 panic=-1 psi=1 tsc=reliable rdinit=/init";

fn run_vm(p: &Prepared, version: &str, opts: &VmOptions) -> Result<String> {
    let spec = kernel::spec(version).expect("validated");
    let k = kernel::ensure(spec, &p.cache)?;
    let accel = p.accel;
    let boot = qemu::Boot {
        kernel: &k.vmlinuz,
        initrd: &p.initrd,
        accel,
        memory_mib: GUEST_MEMORY_MIB,
        cpus: GUEST_CPUS,
        append: APPEND.to_owned(),
        timeout: opts.timeout,
    };
    println!(
        "xtask: vm {version}: booting {} ({}), timeout {}s",
        k.package,
        accel.name(),
        opts.timeout.as_secs()
    );
    let mut report = results::Report::default();
    let tag = format!("[{version}] ");
    let outcome = qemu::run(&boot, |line| {
        println!("{tag}{line}");
        report.feed(line);
    })?;
    let filtered = !opts.extra.is_empty();
    let mut problems = report.problems(VM_TESTS, filtered);
    if !outcome.finished {
        problems.insert(
            0,
            format!("no power-off within {}s: QEMU killed", opts.timeout.as_secs()),
        );
    }
    if !outcome.stderr.trim().is_empty() && !report.done {
        problems.push(format!("qemu: {}", outcome.stderr.trim()));
    }
    let (passed, failed) = report.totals();
    let per_file: Vec<String> = report
        .files
        .iter()
        .map(|f| format!("{} {}s", f.name, f.secs.map_or("?".into(), |s| s.to_string())))
        .collect();
    println!(
        "xtask: vm {version}: {passed} passed, {failed} failed in {:.0}s [{}]",
        outcome.elapsed.as_secs_f64(),
        per_file.join(", ")
    );
    if !problems.is_empty() {
        bail!("{}", problems.join("\n    "));
    }
    Ok(format!(
        "{} on {} ({}), {passed} passed",
        k.package,
        accel.name(),
        per_file.join(", ")
    ))
}

/// KVM when asked, or (auto) when a probe boot of a tiny initramfs powers off in time; else TCG.
fn choose_accel(wanted: &str, vmlinuz: &Path, cache: &Path, busybox: &Path) -> Result<Accel> {
    match wanted {
        "tcg" => return Ok(Accel::Tcg),
        "kvm" => return Ok(Accel::Kvm),
        "auto" => {}
        other => bail!("unknown accelerator `{other}`: expected auto, kvm or tcg"),
    }
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        println!("xtask: vm: /dev/kvm is not usable: TCG (software emulation)");
        return Ok(Accel::Tcg);
    }
    let mut fs = initramfs::Initramfs::default();
    fs.mirror_top_level_symlinks();
    fs.program(busybox, false, &cache.join("strip"))?;
    let bb = busybox.display();
    fs.data(
        "/init",
        format!("#!{bb} sh\n{bb} echo {} probe-ok\n{bb} poweroff -f\n", results::MARK).into_bytes(),
        0o755,
    );
    let initrd = cache.join("probe.cpio");
    fs.write(&initrd)?;
    let boot = qemu::Boot {
        kernel: vmlinuz,
        initrd: &initrd,
        accel: Accel::Kvm,
        memory_mib: 256,
        cpus: 1,
        append: "console=ttyS0 loglevel=0 panic=-1".to_owned(),
        timeout: KVM_PROBE_TIMEOUT,
    };
    let mut ok = false;
    let out = qemu::run(&boot, |l| ok |= l.contains("probe-ok"))?;
    if ok && out.finished {
        println!("xtask: vm: KVM probe boot ok ({:.1}s): KVM", out.elapsed.as_secs_f64());
        Ok(Accel::Kvm)
    } else {
        let why = out
            .stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no power-off in time");
        println!("xtask: vm: KVM probe boot failed ({why}): TCG (software emulation)");
        Ok(Accel::Tcg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_of_test_targets_only() {
        let text = r#"{"reason":"compiler-artifact","profile":{"test":true},"target":{"kind":["test"],"name":"spine"},"executable":"/t/debug/deps/spine-abc"}
{"reason":"compiler-artifact","profile":{"test":false},"target":{"kind":["bin"],"name":"leaktrace"},"executable":"/t/debug/leaktrace"}
{"reason":"compiler-artifact","profile":{"test":true},"target":{"kind":["bin"],"name":"leaktrace"},"executable":"/t/debug/deps/leaktrace-1"}
{"reason":"build-finished","success":true}
not json"#;
        assert_eq!(
            executables_from_messages(text),
            [("spine".to_owned(), PathBuf::from("/t/debug/deps/spine-abc"))]
        );
    }

    #[test]
    fn kernel_names_are_checked() {
        assert!(validate(&["6.1".into(), "6.12".into(), "host".into()]).is_ok());
        let err = validate(&["5.10".into()]).unwrap_err().to_string();
        assert!(
            err.contains("unknown kernel `5.10`") && err.contains("6.1, 6.12, host"),
            "{err}"
        );
    }

    #[test]
    fn init_runs_each_file_between_markers() {
        let s = init_script(
            Path::new("/usr/bin/busybox"),
            Path::new("/w/target/debug/leaktrace"),
            Path::new("/w/leaktrace"),
            &[("spine".into(), PathBuf::from("/w/target/debug/deps/spine-1"))],
            &["oom kill".into()],
            4,
        );
        assert!(s.starts_with("#!/usr/bin/busybox sh\n"));
        assert!(s.contains("cd /w/leaktrace\n"));
        assert!(s.contains("/w/target/debug/leaktrace doctor"));
        assert!(s.contains("echo \"@@lt-vm begin spine\""));
        assert!(s.contains("/w/target/debug/deps/spine-1 --test-threads=1 'oom kill'"));
        assert!(s.contains("export CI=true"));
        assert!(s.contains("LEAKTRACE_TEST_TIMEOUT_SCALE=4"));
        assert!(s.trim_end().ends_with("poweroff -f"));
    }
}
