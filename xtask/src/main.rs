//! Project automation for leaktrace.
//!
//! On a fresh machine with only rustup and a stable toolchain:
//!
//! ```text
//! cargo xtask run [--release] [-- ARGS...]   # set up, build, run the agent as root
//! cargo xtask test [--unit] [-- FILTER...]    # set up, build, run the test suite
//! cargo xtask test --kernel 6.1|6.12|host     # the kernel-matrix tests on that kernel (QEMU)
//! cargo xtask test --matrix                   # ... on every kernel
//! cargo xtask bench [--quick] [--json]        # benchmarks: overhead against a baseline and a peer
//! ```
//!
//! Set-up (nightly toolchain, rust-src, a project-local bpf-linker) lives in
//! `setup.rs` and is idempotent: a second run does no work.

mod bench;
mod privilege;
mod run;
mod setup;
mod test;
mod util;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "leaktrace build, run and test helper"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up the toolchain, build the agent and run it as root.
    Run(run::RunArgs),
    /// Set up the toolchain, build the workspace and run all tests (as root, serially).
    Test(test::TestArgs),
    /// Run the benchmarks: every workload under every arm, interleaved, median of rounds.
    Bench(bench::BenchArgs),
    /// Only do the set-up steps (nightly, rust-src, bpf-linker) and print the environment.
    Setup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Test(args) => test::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Setup => setup::ensure(&util::Project::locate()).map(|env| {
            println!("xtask: PATH={}", env.path.to_string_lossy());
            println!("xtask: LD_LIBRARY_PATH={}", env.ld_library_path.to_string_lossy());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn run_args() {
        let Command::Run(a) = parse(&["run"]) else { panic!() };
        assert!(!a.release && a.args.is_empty());
        let Command::Run(a) = parse(&["run", "--release", "--", "trace", "--pid", "5"]) else {
            panic!()
        };
        assert!(a.release);
        assert_eq!(a.args, ["trace", "--pid", "5"]);
        // After `--`, even xtask's own flags belong to the agent.
        let Command::Run(a) = parse(&["run", "--", "--release"]) else {
            panic!()
        };
        assert!(!a.release);
        assert_eq!(a.args, ["--release"]);
    }

    #[test]
    fn test_args() {
        let Command::Test(a) = parse(&["test"]) else { panic!() };
        assert!(!a.unit && a.extra.is_empty());
        let Command::Test(a) = parse(&["test", "--", "oom"]) else {
            panic!()
        };
        assert_eq!(a.extra, ["oom"]);
        let Command::Test(a) = parse(&["test", "--unit", "--", "--exact", "x"]) else {
            panic!()
        };
        assert!(a.unit);
        assert_eq!(a.extra, ["--exact", "x"]);
    }

    #[test]
    fn bench_args() {
        let Command::Bench(a) = parse(&["bench", "--quick", "--json"]) else {
            panic!()
        };
        assert!(a.quick && a.json);
    }
}
