//! leaktrace: finds memory leaks and explains OOM kills while they happen.
//!
//! kernel probes ──ring buffers──▶ events ──▶ state ──▶ analysis ──▶ sinks; `commands` wires them.
mod analysis;
mod cli;
mod commands;
mod config;
mod events;
mod monitor;
mod probes;
mod report;
mod sinks;
mod sites;
mod state;
// The parsers cover each file whole (and are tested so); not every reader is used yet.
#[allow(dead_code)]
mod sys;
mod util;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use crate::cli::{Cli, exit};

fn main() -> ExitCode {
    // `Cli::try_parse()`, keeping the matches: `run --config` needs to know which flags were given.
    let parsed = Cli::command().try_get_matches().and_then(|m| {
        Cli::from_arg_matches(&m)
            .map(|c| (c, m))
            .map_err(|e| e.format(&mut Cli::command()))
    });
    let cli = match parsed {
        Ok((mut c, m)) => {
            // `run --config FILE`: the file's options, under the flags given on the command line.
            if let Err(e) = config::apply_to(&mut c, &m) {
                eprintln!("{e}");
                return ExitCode::from(exit::USAGE);
            }
            c
        }
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::from(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    exit::USAGE
                } else {
                    exit::OK
                });
            }
            // One line: clap's first line ("error: ...") and where to look.
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad arguments");
            eprintln!("{first} (see `leaktrace --help`)");
            return ExitCode::from(exit::USAGE);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the event loop: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match rt.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(
                e.downcast_ref::<commands::UsageError>()
                    .map_or(exit::ERROR, |_| exit::USAGE),
            )
        }
    }
}
