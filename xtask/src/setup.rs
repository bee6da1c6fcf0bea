//! Idempotent set-up of everything the build needs beyond a stable toolchain:
//!
//! 1. a nightly toolchain (the eBPF crate is built with `-Z build-std`),
//! 2. its rust-src component,
//! 3. bpf-linker, built against the nightly's own libLLVM into `target/tools`.
//!
//! Each step prints one `setup: ...` line. A second run does no work.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use crate::util::{self, Project};

/// Version requirement for bpf-linker (passed to `cargo install --version`).
const BPF_LINKER_VERSION: &str = "^0.13";
/// Name of the nightly toolchain, as rustup knows it.
const NIGHTLY: &str = "nightly";

/// Environment the project's cargo (and the programs it builds) must run with.
pub struct Env {
    /// `PATH` with `target/tools/bin` (bpf-linker) in front.
    pub path: OsString,
    /// `LD_LIBRARY_PATH` with the nightly sysroot's `lib` (libLLVM) appended:
    /// bpf-linker links dynamically against the nightly's libLLVM.
    pub ld_library_path: OsString,
}

impl Env {
    /// Sets `PATH` and `LD_LIBRARY_PATH` on `cmd`; everything else is inherited.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("PATH", &self.path)
            .env("LD_LIBRARY_PATH", &self.ld_library_path)
    }
}

/// The nightly toolchain as `rustc -vV` describes it.
struct Nightly {
    /// `rustc 1.97.0-nightly (e50aa6fba 2026-05-19)`
    version_line: String,
    commit_hash: String,
    /// `22.1.4`
    llvm_version: String,
    llvm_major: u32,
    sysroot: PathBuf,
}

impl Nightly {
    /// `rustc 1.97.0-nightly e50aa6fba 2026-05-19, LLVM 22`
    fn describe(&self) -> String {
        format!(
            "{}, LLVM {}",
            self.version_line.replace(['(', ')'], ""),
            self.llvm_major
        )
    }

    fn lib_dir(&self) -> PathBuf {
        self.sysroot.join("lib")
    }
}

/// Runs all set-up steps and returns the environment for the project's commands.
pub fn ensure(project: &Project) -> Result<Env> {
    let nightly = nightly_toolchain()?;
    rust_src(&nightly)?;
    let env = build_env(project, &nightly);
    bpf_linker(project, &nightly, &env)?;
    Ok(env)
}

fn build_env(project: &Project, nightly: &Nightly) -> Env {
    let tools_bin = project.tools_dir.join("bin");
    let mut path = vec![tools_bin.clone()];
    if let Some(old) = std::env::var_os("PATH") {
        path.extend(util::split_paths(&old).into_iter().filter(|p| *p != tools_bin));
    }
    let llvm_lib = nightly.lib_dir();
    let mut ld = Vec::new();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        // `cargo run` added xtask's own `target/debug{,/deps}` here: not for the project.
        ld.extend(
            util::split_paths(&old)
                .into_iter()
                .filter(|p| *p != llvm_lib && !p.starts_with(&project.target_dir)),
        );
    }
    ld.push(llvm_lib);
    Env {
        path: util::join_paths(&path),
        ld_library_path: util::join_paths(&ld),
    }
}

/// Prints `setup: <what> ... ` (no newline yet) so a slow step shows what it is doing.
fn begin(what: &str) {
    print!("setup: {what} ... ");
    let _ = std::io::stdout().flush();
}

/// Ends the line started by [`begin`].
fn end(outcome: &str) {
    println!("{outcome}");
}

/// Runs `f` between [`begin`] and [`end`]; prints `failed` if it errs so the line is closed.
fn step<T>(what: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
    begin(what);
    match f() {
        Ok((value, outcome)) => {
            end(&outcome);
            Ok(value)
        }
        Err(err) => {
            end("failed");
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------
// 1. nightly toolchain
// ---------------------------------------------------------------------------

fn rustup() -> Command {
    Command::new("rustup")
}

fn nightly_toolchain() -> Result<Nightly> {
    step("nightly toolchain", || {
        match rustup().arg("--version").stdin(Stdio::null()).output() {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                "rustup is not installed (or not on PATH). This project needs rustup to get a \
                 nightly toolchain: install it from https://rustup.rs, then open a new shell \
                 (or `. \"$HOME/.cargo/env\"`) and run this command again"
            ),
            Err(err) => return Err(anyhow!(err).context("could not run `rustup --version`")),
        }

        let mut installed = "";
        let verbose = match nightly_rustc_vv() {
            Ok(v) => v,
            Err(_) => {
                let mut install = rustup();
                install.args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]);
                print!("not installed, running `{}` ... ", util::display(&install));
                let _ = std::io::stdout().flush();
                let out = util::capture(&mut install)?;
                if !out.status.success() {
                    bail!(
                        "no nightly toolchain, and `{}` failed ({}):\n{}\n\
                         rustup needs network access to its distribution server; fix that, or \
                         install a nightly by hand and make `rustup run nightly rustc -vV` work",
                        util::display(&install),
                        out.status,
                        tail(&combined(&out), 30)
                    );
                }
                installed = "installed, ";
                nightly_rustc_vv().context(
                    "`rustup toolchain install nightly` succeeded but \
                     `rustup run nightly rustc -vV` still fails",
                )?
            }
        };
        let nightly = parse_nightly(&verbose)?;
        let outcome = format!("ok ({installed}{})", nightly.describe());
        Ok((nightly, outcome))
    })
}

fn nightly_rustc_vv() -> Result<(String, PathBuf)> {
    let vv = util::stdout_of(rustup().args(["run", NIGHTLY, "rustc", "-vV"]))?;
    let sysroot = util::stdout_of(rustup().args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    Ok((vv, PathBuf::from(sysroot.trim())))
}

fn parse_nightly((vv, sysroot): &(String, PathBuf)) -> Result<Nightly> {
    let field = |name: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .ok_or_else(|| anyhow!("`rustc +nightly -vV` printed no `{name}` line:\n{vv}"))
    };
    let version_line = vv.lines().next().unwrap_or_default().trim().to_owned();
    let commit_hash = field("commit-hash:")?;
    let llvm_version = field("LLVM version:")?;
    let llvm_major = llvm_version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| anyhow!("cannot parse LLVM version `{llvm_version}`"))?;
    if !sysroot.is_dir() {
        bail!(
            "`rustc +nightly --print sysroot` gave `{}`, which is not a directory",
            sysroot.display()
        );
    }
    Ok(Nightly {
        version_line,
        commit_hash,
        llvm_version,
        llvm_major,
        sysroot: sysroot.clone(),
    })
}

// ---------------------------------------------------------------------------
// 2. rust-src
// ---------------------------------------------------------------------------

fn rust_src(nightly: &Nightly) -> Result<()> {
    step("rust-src", || {
        let rustlib = nightly.sysroot.join("lib").join("rustlib");
        let core = rustlib.join("src/rust/library/core");
        if core.is_dir() {
            return Ok(((), "ok".to_owned()));
        }
        let mut add = rustup();
        add.args(["component", "add", "rust-src", "--toolchain", NIGHTLY]);
        print!("missing, running `{}` ... ", util::display(&add));
        let _ = std::io::stdout().flush();
        let out = util::capture(&mut add)?;
        if out.status.success() && core.is_dir() {
            return Ok(((), "ok (installed)".to_owned()));
        }
        let date = nightly
            .version_line
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .trim_end_matches(')');
        bail!(
            "rust-src for the nightly toolchain ({}) is missing: {} does not exist, and \
             `{}` {}.\n\
             Fix it with one of:\n  \
             - `rustup component add rust-src --toolchain nightly` (needs network access), or\n  \
             - unpack the rust-src tarball of the same nightly ({date}, rust-src-nightly.tar.xz) \
             and copy its `rust-src/lib/rustlib/src` into {} (so that \
             {}/src/rust/library/core exists)",
            nightly.describe(),
            core.display(),
            util::display(&add),
            if out.status.success() {
                "succeeded but did not create it".to_owned()
            } else {
                format!("failed ({}):\n{}", out.status, tail(&combined(&out), 20))
            },
            rustlib.display(),
            rustlib.display(),
        )
    })
}

// ---------------------------------------------------------------------------
// 3. bpf-linker
// ---------------------------------------------------------------------------

fn bpf_linker(project: &Project, nightly: &Nightly, env: &Env) -> Result<()> {
    let tools = &project.tools_dir;
    let bin = tools.join("bin").join("bpf-linker");
    let stamp_path = tools.join("bpf-linker.stamp");
    let stamp = format!(
        "rustc-commit-hash: {}\nllvm-version: {}\nbpf-linker: {}\nsysroot: {}\n",
        nightly.commit_hash,
        nightly.llvm_version,
        BPF_LINKER_VERSION,
        nightly.sysroot.display()
    );

    if bin.is_file() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        // Cached: the stamp says it was built for exactly this nightly. A `--version` run
        // costs milliseconds and catches a binary that can no longer load its libLLVM.
        if let Ok(version) = linker_version(&bin, env) {
            begin("bpf-linker");
            end(&format!("ok (cached, {version})"));
            return Ok(());
        }
    }

    step(
        &format!("bpf-linker (building with cargo install, LLVM {})", nightly.llvm_major),
        || {
            let start = Instant::now();
            build_bpf_linker(project, nightly, &bin, &stamp_path)?;
            let version = linker_version(&bin, env).with_context(|| {
                format!(
                    "bpf-linker was built but `{} --version` fails; it is linked against the \
                     nightly's libLLVM in {} (check with `ldd {}`)",
                    bin.display(),
                    nightly.lib_dir().display(),
                    bin.display()
                )
            })?;
            fs::write(&stamp_path, &stamp).with_context(|| format!("cannot write {}", stamp_path.display()))?;
            Ok(((), format!("ok (built in {}, {version})", util::secs(start))))
        },
    )
}

/// `bpf-linker 0.13.0`, run with the project's environment (it needs the nightly's libLLVM).
fn linker_version(bin: &Path, env: &Env) -> Result<String> {
    let out = util::stdout_of(env.apply(&mut Command::new(bin)).arg("--version"))?;
    Ok(out.trim().to_owned())
}

fn build_bpf_linker(project: &Project, nightly: &Nightly, bin: &Path, stamp_path: &Path) -> Result<()> {
    let tools = &project.tools_dir;
    fs::create_dir_all(tools).with_context(|| format!("cannot create {}", tools.display()))?;
    // A half-finished rebuild must never look cached.
    let _ = fs::remove_file(stamp_path);

    // LLVM_PREFIX/lib/libLLVM.so -> the nightly's own libLLVM, so bpf-linker uses the very
    // LLVM that rustc emits bitcode with.
    let libllvm = find_libllvm(&nightly.lib_dir())?;
    let prefix = tools.join("llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib).with_context(|| format!("cannot create {}", prefix_lib.display()))?;
    let link = prefix_lib.join("libLLVM.so");
    if link.symlink_metadata().is_ok() {
        fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("cannot symlink {} -> {}", link.display(), libllvm.display()))?;

    if util::find_in_path("cc").is_none() {
        bail!(
            "no C compiler: `cc` is not on PATH. Building bpf-linker (llvm-sys compiles a C \
             file, and Rust links through `cc`) needs one: install it, e.g. \
             `apt-get install gcc` (Debian/Ubuntu) or `dnf install gcc` (Fedora)"
        );
    }

    let log_path = tools.join("bpf-linker-build.log");
    let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut install = Command::new(util::cargo());
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{}", nightly.llvm_major))
        .arg("--root")
        .arg(tools)
        .arg("--force")
        .env("LLVM_PREFIX", &prefix)
        // Build in cargo's own temporary directory, not the project's target dir, and away
        // from the project's .cargo/config.toml.
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let status = install
        .status()
        .with_context(|| format!("could not start `{}`", util::display(&install)))?;
    if status.success() && bin.is_file() {
        return Ok(());
    }

    let mut text = String::new();
    let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut text));
    bail!(
        "building bpf-linker failed ({status}): `LLVM_PREFIX={} {}`\n\
         ---- last lines of {} ----\n{}\n----\n{}\nfull log: {}",
        prefix.display(),
        util::display(&install),
        log_path.display(),
        tail(&text, 30),
        diagnose(&text, nightly),
        log_path.display()
    )
}

/// The nightly's libLLVM shared library: `libLLVM.so.<ver>` (preferred) or `libLLVM-<ver>.so`.
/// Only real ELF files count (`libLLVM-*.so` is sometimes a tiny linker script).
fn find_libllvm(lib_dir: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(lib_dir).with_context(|| format!("cannot list {}", lib_dir.display()))?;
    let mut candidates: Vec<(u8, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| {
            let rank = if name.starts_with("libLLVM.so.") {
                0
            } else if name.starts_with("libLLVM-") && name.ends_with(".so") {
                1
            } else {
                return None;
            };
            Some((rank, name))
        })
        .filter(|(_, name)| is_elf(&lib_dir.join(name)))
        .collect();
    candidates.sort();
    match candidates.into_iter().next() {
        Some((_, name)) => Ok(lib_dir.join(name)),
        None => bail!(
            "the nightly toolchain has no libLLVM shared library in {} (looked for \
             libLLVM.so.* / libLLVM-*.so); bpf-linker must link against it. Reinstall the \
             nightly: `rustup toolchain uninstall nightly && rustup toolchain install nightly \
             --profile minimal`",
            lib_dir.display()
        ),
    }
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|()| magic == *b"\x7fELF")
        .unwrap_or(false)
}

/// Turns a failed `cargo install` log into a sentence saying what is missing.
fn diagnose(log: &str, nightly: &Nightly) -> String {
    let has = |needles: &[&str]| needles.iter().any(|n| log.contains(n));
    if has(&[
        "Couldn't resolve host",
        "Could not resolve host",
        "failed to download",
        "failed to query replaced source",
        "failed to fetch",
        "spurious network error",
        "failed to update registry",
        "failed to get successful HTTP response",
        "SSL connect error",
        "Connection refused",
        "Could not connect",
        "timed out",
    ]) {
        return "cause: cargo could not download bpf-linker or its dependencies from crates.io. \
                This needs network access to crates.io (check the connection, or HTTPS_PROXY / \
                CARGO_HTTP_PROXY if behind a proxy); run `cargo xtask` again once it works"
            .to_owned();
    }
    if has(&[
        "linker `cc` not found",
        "failed to find tool",
        "is `cc` not installed",
        "command not found: cc",
    ]) {
        return "cause: no working C compiler/linker (`cc`). Install one, e.g. \
                `apt-get install gcc`"
            .to_owned();
    }
    if has(&["could not find `bpf-linker`", "could not find bpf-linker"]) {
        return format!(
            "cause: crates.io has no bpf-linker matching `{BPF_LINKER_VERSION}` (or the \
             registry index is stale: try `cargo search bpf-linker`)"
        );
    }
    if has(&["does not have the feature", "does not contain this feature"]) {
        return format!(
            "cause: bpf-linker {BPF_LINKER_VERSION} has no `llvm-{}` feature: the nightly's LLVM \
             ({}) is newer or older than this bpf-linker supports. Bump BPF_LINKER_VERSION in \
             xtask/src/setup.rs, or pin an older nightly",
            nightly.llvm_major, nightly.llvm_version
        );
    }
    if has(&[
        "llvm-config",
        "LLVM_PREFIX",
        "-lLLVM",
        "libLLVM",
        "No suitable version of LLVM",
    ]) {
        return format!(
            "cause: bpf-linker could not find or link the nightly's libLLVM through \
             LLVM_PREFIX (target/tools/llvm/lib/libLLVM.so -> {}/libLLVM*)",
            nightly.lib_dir().display()
        );
    }
    "cause: see the log above".to_owned()
}

fn combined(out: &std::process::Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VV: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\n\
                      commit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a\n\
                      commit-date: 2026-05-19\nhost: x86_64-unknown-linux-gnu\n\
                      release: 1.97.0-nightly\nLLVM version: 22.1.4\n";

    fn nightly() -> Nightly {
        parse_nightly(&(VV.to_owned(), std::env::temp_dir())).unwrap()
    }

    #[test]
    fn parses_rustc_vv() {
        let n = nightly();
        assert_eq!(n.commit_hash, "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a");
        assert_eq!(n.llvm_version, "22.1.4");
        assert_eq!(n.llvm_major, 22);
        assert_eq!(n.describe(), "rustc 1.97.0-nightly e50aa6fba 2026-05-19, LLVM 22");
    }

    #[test]
    fn finds_real_libllvm_not_linker_script() {
        let dir = std::env::temp_dir().join(format!("xtask-libllvm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert!(find_libllvm(&dir).is_err());
        // rustup ships `libLLVM-22-*.so` as a linker script next to the real library.
        fs::write(
            dir.join("libLLVM-22-rust-1.97.0-nightly.so"),
            "INPUT(libLLVM.so.22.1-rust-1.97.0-nightly)\n",
        )
        .unwrap();
        fs::write(dir.join("librustc_driver-x.so"), b"\x7fELF....").unwrap();
        assert!(find_libllvm(&dir).is_err());
        fs::write(dir.join("libLLVM.so.22.1-rust-1.97.0-nightly"), b"\x7fELF....").unwrap();
        assert_eq!(
            find_libllvm(&dir).unwrap(),
            dir.join("libLLVM.so.22.1-rust-1.97.0-nightly")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn diagnoses_common_failures() {
        let n = nightly();
        assert!(diagnose("warning: spurious network error (3 tries remaining)", &n).contains("crates.io"));
        assert!(diagnose("error: linker `cc` not found", &n).contains("C compiler"));
        assert!(diagnose("something else", &n).contains("see the log"));
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
