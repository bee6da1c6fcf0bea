//! `cargo xtask run [--release] [-- ARGS...]`: set up, build the agent, run it as root.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Result, bail};
use clap::Args;

use crate::util::{self, Project};
use crate::{privilege, setup};

#[derive(Args)]
pub struct RunArgs {
    /// Build and run the release profile.
    #[arg(long)]
    pub release: bool,
    /// Arguments for the agent (default: `run`). Put them after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<()> {
    let project = Project::locate();
    let env = setup::ensure(&project)?;

    let profile = if args.release { "release" } else { "debug" };
    let mut build = Command::new(util::cargo());
    build.args(["build", "-p", "leaktrace"]);
    if args.release {
        build.arg("--release");
    }
    build.current_dir(&project.root);
    env.apply(&mut build);
    util::stage("build", &mut build)?;

    let binary = project.target_dir.join(profile).join("leaktrace");
    if !binary.is_file() {
        bail!("the build succeeded but {} does not exist", binary.display());
    }
    let agent_args = if args.args.is_empty() {
        vec!["run".to_owned()]
    } else {
        args.args
    };

    let mut cmd = privilege::command_as_root(&binary, &env)?;
    cmd.args(&agent_args);
    println!("xtask: run: {}", util::display(&cmd));
    // Replace xtask with the agent: Ctrl-C, other signals and the exit status all belong
    // to the agent alone (a shell reports death by signal N as 128+N).
    let err = cmd.exec();
    bail!("could not run `{}`: {err}", util::display(&cmd))
}
