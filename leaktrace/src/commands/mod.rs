//! One file per subcommand; each wires probes → events → state → analysis → sinks.
mod doctor;
mod oom;
mod report;
mod run;
mod sites;
mod top;
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
    // Syscall probes cost every syscall on the host something: on for the commands that look at
    // one process or at the raw stream, off for the host agent unless asked.
    let opts = LoadOptions {
        pretend_missing: cli.pretend_missing,
        syscalls: true,
        sites: None,
    };
    match cli.command {
        Command::Trace(a) => trace::run(a, &opts).await,
        Command::Run(a) => {
            let sites = a
                .stacks
                .options(a.pids.is_empty() && a.comms.is_empty())
                .map_err(UsageError)?;
            let opts = LoadOptions {
                syscalls: a.syscalls,
                sites,
                ..opts
            };
            run::run(a, &opts).await
        }
        Command::Watch(a) => {
            let opts = LoadOptions {
                sites: Some(a.malloc.options(&a.faults)),
                ..opts
            };
            watch::run(a, &opts).await
        }
        Command::Sites(a) => {
            let opts = LoadOptions {
                sites: Some(a.malloc.options(&a.faults)),
                ..opts
            };
            sites::run(a, &opts).await
        }
        Command::Doctor(a) => doctor::run(a, &opts),
        Command::Oom(a) => oom::run(a),
        Command::Report(a) => report::run(a),
        Command::Top(a) => {
            top::run(
                a,
                &LoadOptions {
                    syscalls: false,
                    ..opts
                },
            )
            .await
        }
        Command::Completions(a) => crate::cli::completions(a.shell)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Man(a) => match crate::cli::man(a.subcommand.as_deref())? {
            true => Ok(ExitCode::SUCCESS),
            false => Err(UsageError(format!("no subcommand `{}`", a.subcommand.unwrap_or_default())).into()),
        },
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

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal right after start-up is never fatal.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = recv(int.as_mut()) => {}
            () = recv(term.as_mut()) => {}
        }
    }
}

async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
