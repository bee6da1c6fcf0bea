//! Small helpers shared by the subcommands: project paths, running commands.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Where things are in the checkout.
pub struct Project {
    /// Workspace root (the directory holding the top-level Cargo.toml).
    pub root: PathBuf,
    /// Cargo's target directory for the project (`CARGO_TARGET_DIR` or `<root>/target`).
    pub target_dir: PathBuf,
    /// Project-local tools (`<root>/target/tools`): bpf-linker lives in `bin/` here.
    pub tools_dir: PathBuf,
}

impl Project {
    pub fn locate() -> Self {
        // xtask is always built from `<root>/xtask`, so its manifest dir locates the root
        // no matter which directory `cargo xtask` was started from.
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    // cargo resolves a relative CARGO_TARGET_DIR against its cwd,
                    // which is the caller's cwd (we inherit it).
                    std::env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir)
                }
            }
            _ => root.join("target"),
        };
        let tools_dir = root.join("target").join("tools");
        Project {
            root,
            target_dir,
            tools_dir,
        }
    }
}

/// The cargo that runs xtask (the stable one): cargo sets `CARGO` for the programs it runs.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// `a:b:c` joined, skipping empty entries.
pub fn join_paths<I, P>(parts: I) -> OsString
where
    I: IntoIterator<Item = P>,
    P: AsRef<OsStr>,
{
    let mut out = OsString::new();
    for part in parts {
        let part = part.as_ref();
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(":");
        }
        out.push(part);
    }
    out
}

/// Splits a `PATH`-like variable, skipping empty entries.
pub fn split_paths(value: &OsStr) -> Vec<PathBuf> {
    std::env::split_paths(value)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// Looks a program up in `PATH` (like `command -v`).
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    split_paths(&path)
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A command rendered the way a person would type it (for messages only).
/// The toolchain's cargo (the `CARGO` path) is shown as plain `cargo`.
pub fn display(cmd: &Command) -> String {
    let program = if cmd.get_program() == cargo() {
        "cargo".to_owned()
    } else {
        cmd.get_program().to_string_lossy().into_owned()
    };
    let mut parts = vec![program];
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            format!("'{a}'")
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}

/// Runs a command with its output captured; `Err` only if it could not be started.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// Runs a command, captures stdout, and fails (with its stderr) unless it succeeds.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = capture(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Seconds since `start`, for `... (12.3s)` messages.
pub fn secs(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}

/// Prints one line before a stage and one after it, with its duration.
pub fn stage(name: &str, cmd: &mut Command) -> Result<()> {
    println!("xtask: {name}: {}", display(cmd));
    let start = Instant::now();
    let status = match cmd.status() {
        Ok(status) => status,
        Err(err) => bail!("could not start `{}`: {err}", display(cmd)),
    };
    if !status.success() {
        bail!("{name} failed after {} ({status}): `{}`", secs(start), display(cmd));
    }
    println!("xtask: {name} ok ({})", secs(start));
    Ok(())
}
