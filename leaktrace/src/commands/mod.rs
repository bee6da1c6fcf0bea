//! One file per subcommand; each wires the stages (probes → events → monitor → sinks) for its
//! job, with no logic of its own beyond that. Settings come validated from `cli::settings`.
mod analyze;
mod doctor;
mod heap;
mod host;
mod oom;
mod report;
mod run;
mod sites;
mod top;
mod trace;
mod watch;

use std::process::ExitCode;

use crate::cli::{Cli, Command, UsageError, settings};

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let pm = &cli.pretend_missing;
    match cli.command {
        Command::Trace(a) => trace::run(settings::Trace::new(a, pm)?).await,
        Command::Run(a) if a.print_config => {
            print!("{}", crate::cli::config::to_toml(&a));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(a) => run::run(settings::Run::new(a, pm)?).await,
        Command::Watch(a) => watch::run(settings::Watch::new(a, pm)?).await,
        Command::Sites(a) => sites::run(settings::Sites::new(a, pm)?).await,
        Command::Top(a) => top::run(settings::Top::new(a, pm)?).await,
        Command::Doctor(a) => doctor::run(a.json, &settings::doctor_load(pm)),
        Command::Oom(a) => oom::run(a),
        Command::Report(a) => report::run(a),
        Command::Heap(a) => heap::run(settings::Heap::new(a)?).await,
        Command::Host(a) => host::run(a),
        Command::Analyze(a) => {
            let now_ms = i64::try_from(crate::util::unix_ms()).unwrap_or(i64::MAX);
            analyze::run(settings::Analyze::new(a, now_ms, |k| std::env::var(k).ok())?)
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

/// Resolves at the deadline, or never.
pub async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
