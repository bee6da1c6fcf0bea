//! `cargo xtask test [--unit] [-- EXTRA...]`
//!
//! Full run: set up, `cargo build --workspace`, then
//! `cargo test --workspace --no-fail-fast -- --test-threads=1 EXTRA...` (both without the
//! eBPF crate, see [`HOST_EXCLUDE`]), the test binaries running as root (integration tests
//! load BPF programs into the one shared kernel, hence serially). `EXTRA` goes to the test
//! harness: `cargo xtask test -- oom` runs only tests whose name contains `oom`.
//!
//! `--unit`: only `cargo test --workspace --lib --bins -- EXTRA...`, as the invoking user.

use std::ffi::OsString;
use std::process::Command;

use anyhow::{Result, bail};
use clap::Args;

use crate::util::{self, Project};
use crate::{privilege, setup, vm};

/// Left out of host builds: the eBPF crate is `no_std`/`no_main` for the `bpf` target and is
/// built (with the nightly, `-Z build-std`) by the agent's build script; it has no host tests
/// and cannot link as a host binary.
const HOST_EXCLUDE: [&str; 2] = ["--exclude", "leaktrace-ebpf"];

#[derive(Args)]
pub struct TestArgs {
    /// Only the pure-logic tests (`--lib --bins`), without root.
    #[arg(long)]
    pub unit: bool,
    /// Run the kernel-matrix test files on this kernel instead: `6.1` or `6.12` (Debian's cloud
    /// kernels, booted under QEMU) or `host` (this machine's own). Repeatable.
    #[arg(long = "kernel", value_name = "VERSION", conflicts_with = "unit")]
    pub kernels: Vec<String>,
    /// Run the kernel matrix: every kernel `--kernel` knows.
    #[arg(long, conflicts_with_all = ["unit", "kernels"])]
    pub matrix: bool,
    /// Per-VM deadline in seconds (boot, all tests, power-off).
    #[arg(long, value_name = "SECS", default_value_t = 1500)]
    pub vm_timeout: u64,
    /// How QEMU runs the guests: `auto` (KVM if a probe boot works, else TCG), `kvm` or `tcg`.
    #[arg(long, value_name = "ACCEL", default_value = "auto")]
    pub accel: String,
    /// Extra arguments for the test harness, e.g. a test-name filter. Put them after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "EXTRA")]
    pub extra: Vec<String>,
}

pub fn run(args: TestArgs) -> Result<()> {
    let project = Project::locate();
    let kernels: Vec<String> = if args.matrix {
        vm::MATRIX.iter().map(|k| k.to_string()).collect()
    } else {
        args.kernels.clone()
    };
    vm::validate(&kernels)?;
    let env = setup::ensure(&project)?;
    if !kernels.is_empty() {
        let opts = vm::VmOptions {
            kernels,
            extra: args.extra,
            timeout: std::time::Duration::from_secs(args.vm_timeout),
            accel: args.accel,
        };
        return vm::run(&project, &env, &opts);
    }

    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(util::cargo());
        cmd.args(args).current_dir(&project.root);
        env.apply(&mut cmd);
        cmd
    };

    if args.unit {
        let mut test = cargo(&["test", "--workspace", "--lib", "--bins"]);
        test.args(HOST_EXCLUDE);
        if !args.extra.is_empty() {
            test.arg("--").args(&args.extra);
        }
        return util::stage("unit tests", &mut test);
    }

    let mut build = cargo(&["build", "--workspace"]);
    build.args(HOST_EXCLUDE);
    util::stage("build", &mut build)?;

    let mut test = cargo(&["test", "--workspace", "--no-fail-fast"]);
    test.args(HOST_EXCLUDE);
    let prefix = privilege::root_prefix(&env)?;
    if !prefix.is_empty() {
        // Build as the invoking user; only the test binaries run through sudo, via a
        // cargo target runner (so target/ never gets root-owned files).
        println!("xtask: not root, test binaries will run through sudo");
        test.arg("--config").arg(runner_config(&host_triple()?, &prefix));
    }
    test.args(["--", "--test-threads=1"]).args(&args.extra);
    util::stage("tests", &mut test)
}

/// Host triple of the (stable) compiler that builds the tests.
fn host_triple() -> Result<String> {
    let vv = util::stdout_of(Command::new("rustc").arg("-vV"))?;
    match vv.lines().find_map(|l| l.strip_prefix("host:")) {
        Some(host) => Ok(host.trim().to_owned()),
        None => bail!("`rustc -vV` printed no `host:` line:\n{vv}"),
    }
}

/// `target.<host>.runner = ["sudo", "-E", "env", ...]` for `cargo --config`.
fn runner_config(host: &str, prefix: &[OsString]) -> String {
    let items: Vec<String> = prefix.iter().map(|p| toml_string(&p.to_string_lossy())).collect();
    format!("target.{host}.runner = [{}]", items.join(", "))
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_config_is_toml() {
        let prefix: Vec<OsString> = ["/usr/bin/sudo", "-E", "env", "PATH=/a b:/c\"d"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            runner_config("x86_64-unknown-linux-gnu", &prefix),
            r#"target.x86_64-unknown-linux-gnu.runner = ["/usr/bin/sudo", "-E", "env", "PATH=/a b:/c\"d"]"#
        );
    }
}
