//! leaktrace: finds memory leaks and explains OOM kills while they happen.
//!
//! ```text
//!  leaktrace-ebpf ──ring buffers──▶ events ──▶ monitor ─────────────────────────▶ output::Event ──▶ sinks
//!  (kernel probes,   RSS_DIRTY map   (decode)   (driver: reads /proc → input::Batch;                 (out: JSON/text,
//!   loaded by                                    core: state + analysis,                             reports, record,
//!   probes)                                      OOM reports)                                        metrics, top)
//! ```
//!
//! - `probes`: load, feature-probe, read tracepoint formats, attach; one line per probe in doctor.
//! - `events`: ring-buffer bytes → typed `KernelEvent`s; the kernel's RSS change marks.
//! - `input`: what the monitor observes, as plain data (recorded by `run --record`);
//!   `prometheus`: the same, built from series a Prometheus stores (`analyze --prometheus`).
//! - `monitor`: the driver (I/O) and `monitor::core` (state + analysis → events), which
//!   `analyze` also drives from a record.
//! - `state`: the process table and timelines; `analysis`: pure classification, prediction, scoring.
//! - `output`: the event contract (JSON via serde, text beside it); `report`: the OOM report document.
//! - `sinks`: everything that writes; `sites`: allocation sites (kernel maps + symbolization).
//! - `sys`: readers of /proc, cgroups and the kernel log; `cli`: flags → settings; `commands`: wiring.
mod analysis;
mod cli;
mod commands;
mod events;
mod input;
mod monitor;
mod output;
mod probes;
mod prometheus;
// The corpus seen life by life, for the tests that check it and replay it.
#[cfg(test)]
mod record;
mod report;
mod runtimes;
mod sinks;
mod sites;
mod state;
mod sys;
mod usdt;
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
            if let Err(e) = cli::config::apply_to(&mut c, &m) {
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
            // One line: clap's first line ("error: ...") and where to look; a first line that
            // ends in ':' ("required arguments were not provided:") with what it announces.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("error: bad arguments").to_string();
            if first.ends_with(':')
                && let Some(next) = lines.next()
            {
                first = format!("{first} {next}");
            }
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
            ExitCode::from(e.downcast_ref::<cli::UsageError>().map_or(exit::ERROR, |_| exit::USAGE))
        }
    }
}

/// The shape of the crate, checked: no module cycle, and data flows one way.
#[cfg(test)]
mod architecture {
    use std::{
        collections::{BTreeMap, BTreeSet},
        fs,
        path::Path,
    };

    /// Top-level modules each top-level module uses (`crate::x`), test code left out.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut mods = BTreeMap::new();
        for e in fs::read_dir(&src).unwrap().filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
            if name != "main" {
                mods.insert(name, e.path());
            }
        }
        let names: BTreeSet<String> = mods.keys().cloned().collect();
        let mut g = BTreeMap::new();
        for (m, path) in &mods {
            let mut text = String::new();
            let mut stack = vec![path.clone()];
            while let Some(p) = stack.pop() {
                if p.is_dir() {
                    stack.extend(fs::read_dir(&p).unwrap().filter_map(Result::ok).map(|e| e.path()));
                } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().is_some_and(|n| n != "tests.rs") {
                    let t = fs::read_to_string(&p).unwrap();
                    // Unit tests may reach anywhere; only the code counts.
                    text.push_str(t.split("#[cfg(test)]").next().unwrap_or(""));
                }
            }
            let mut deps = BTreeSet::new();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + 7..];
                if let Some(inner) = rest.strip_prefix('{') {
                    // `crate::{a::x, b, c::{..}}`: the top-level names at depth 0.
                    let mut depth = 0;
                    let mut cur = String::new();
                    for ch in inner.chars() {
                        match ch {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                deps.insert(cur.trim().split("::").next().unwrap_or("").to_string());
                                cur.clear();
                            }
                            c if depth == 0 => cur.push(c),
                            _ => {}
                        }
                    }
                    deps.insert(cur.trim().split("::").next().unwrap_or("").to_string());
                } else {
                    deps.insert(
                        rest.chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect(),
                    );
                }
            }
            deps.retain(|d| names.contains(d) && d != m);
            g.insert(m.clone(), deps);
        }
        g
    }

    #[test]
    fn no_module_cycle() {
        let g = graph();
        assert!(
            g.len() > 10 && g["monitor"].contains("state"),
            "the graph was read: {g:?}"
        );
        for start in g.keys() {
            // Depth-first from `start`: reaching it again is a cycle.
            let mut seen = BTreeSet::new();
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
            while let Some((m, path)) = stack.pop() {
                for d in &g[&m] {
                    assert!(d != start, "module cycle: {} -> {d}", path.join(" -> "));
                    if seen.insert(d.clone()) {
                        let mut p = path.clone();
                        p.push(d.clone());
                        stack.push((d.clone(), p));
                    }
                }
            }
        }
    }

    #[test]
    fn data_flows_one_way() {
        let g = graph();
        for (m, deps) in &g {
            if m != "commands" {
                assert!(
                    !deps.contains("cli") || m == "commands",
                    "{m} uses the CLI: only commands may"
                );
                assert!(!deps.contains("commands"), "{m} uses commands");
            }
            if m != "commands" && m != "cli" {
                assert!(
                    !deps.contains("sinks"),
                    "{m} uses a sink: outputs only read the monitor's events"
                );
            }
        }
        assert!(
            !g["sinks"].contains("monitor"),
            "sinks see the process table and events, not the monitor"
        );
        assert!(
            !g["sinks"].contains("probes") && !g["sinks"].contains("events"),
            "sinks never touch the kernel side"
        );
        for pure in ["analysis", "input", "state"] {
            for io in ["probes", "events", "monitor", "sinks"] {
                assert!(!g[pure].contains(io), "{pure} must stay free of {io}");
            }
        }
    }
}
