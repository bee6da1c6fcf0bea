//! One file per subcommand; each wires probes → events → state → analysis → sinks.
mod doctor;
mod run;
mod trace;
mod watch;

use std::{path::Path, process::ExitCode};

use crate::{
    cli::{Cli, Command},
    probes::{self, LoadOptions, Probes},
};

/// A bad argument found after parsing (e.g. a pid that does not exist): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions { pretend_missing: cli.pretend_missing };
    match cli.command {
        Command::Trace(a) => trace::run(a, &opts).await,
        Command::Run(a) => run::run(a, &opts).await,
        Command::Watch(a) => watch::run(a, &opts).await,
        Command::Doctor(a) => doctor::run(a, &opts),
    }
}

/// Every pid must name a live process.
pub fn check_pids(pids: &[u32]) -> Result<(), UsageError> {
    for pid in pids {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(UsageError(format!("no process with pid {pid}")));
        }
    }
    Ok(())
}

/// Privileges first (with a message naming what is missing), then load and attach everything.
pub fn start_probes(opts: &LoadOptions) -> anyhow::Result<Probes> {
    probes::privileges::check().map_err(anyhow::Error::msg)?;
    probes::load(opts, true)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
