//! `cargo xtask bench [--quick] [--json]`: benchmarks. Hook only, for now.
//!
//! When implemented it will most likely: `setup::ensure`, build in release, then run the
//! benchmark binary as root through `privilege::command_as_root` (see `run.rs`).

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Short run (fewer iterations), e.g. for CI.
    #[arg(long)]
    pub quick: bool,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Extra arguments for the benchmark runner. Put them after `--`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs { quick, json, args } = args;
    bail!("`cargo xtask bench` is not implemented yet (quick={quick}, json={json}, args={args:?})")
}
