//! `leaktrace watch`: one process or a command's process tree, then a verdict; with `--runs N`
//! the command N times, each run's verdict, then whether its footprint grows across the runs.
//! Exit status 0 = no leak, 3 = leak, 127/126 = command not found / not executable.
use std::{io, process::ExitCode, process::Stdio};

use super::{shutdown_signal, until};
use crate::{
    analysis::runs::{self, RunStat},
    cli::{exit, settings},
    monitor::Monitor,
    output::{Event, VerdictSites, resources::Runs},
    sinks::out::Out,
};

/// Text mode shows the tree's progress on stderr this often (s).
const PROGRESS_EVERY: f64 = 5.0;

/// How one watched run ended.
enum Ended {
    /// The command exited (its code), or the watched pid went away (None).
    Exited(Option<i32>),
    /// Ctrl-C, SIGTERM or `--duration`.
    Stopped,
}

pub async fn run(s: settings::Watch) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal();
    let runtimes = s.monitor.runtimes;
    let mut mon = Monitor::start(s.monitor, &s.load)?;
    let mut out = Out::new(s.json);
    tokio::pin!(stop);
    let deadline = s.duration.map(|d| tokio::time::Instant::now() + d);
    let n_runs = s.runs.unwrap_or(1);
    let mut stats: Vec<RunStat> = Vec::new();
    let mut any_leak = false;
    for run in 1..=n_runs {
        let mut child = None;
        // Lines of the command's stderr that name a Java OutOfMemoryError (the stream itself is
        // passed through unchanged).
        let (oom_tx, mut oom_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut stderr_task = None;
        if !s.command.is_empty() {
            let mut cmd = tokio::process::Command::new(&s.command[0]);
            cmd.args(&s.command[1..]).stdin(Stdio::inherit());
            if runtimes {
                cmd.stderr(Stdio::piped());
            }
            if s.json {
                // Keep stdout pure JSON lines: the command's stdout goes to our stderr.
                cmd.stdout(io::stderr());
            }
            let mut c = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let (code, what) = match e.kind() {
                        io::ErrorKind::NotFound => (exit::NOT_FOUND, "command not found"),
                        io::ErrorKind::PermissionDenied => (126, "permission denied"),
                        _ => (exit::ERROR, "cannot start command"),
                    };
                    eprintln!("error: {what}: {}: {e}", s.command[0]);
                    return Ok(ExitCode::from(code));
                }
            };
            mon.set_root(c.id().unwrap_or(0));
            if let Some(err) = c.stderr.take() {
                stderr_task = Some(tokio::spawn(crate::runtimes::stderr::pass_through(err, oom_tx)));
            }
            child = Some(c);
        }
        let root = mon.core().group().map_or(0, |g| g.root);
        if run == 1 {
            eprintln!(
                "leaktrace: watching pid {root} every {:?}, {}",
                mon.core().cfg.interval_secs,
                mon.probes.summary()
            );
        } else {
            eprintln!("leaktrace: run {run} of {n_runs}: pid {root}");
        }
        let mut last_progress = -PROGRESS_EVERY;
        let ended = watch_one(
            &mut mon,
            &mut child,
            &mut oom_rx,
            &mut last_progress,
            root,
            &mut out,
            s.json,
            &mut stop,
            deadline,
            &mut any_leak,
        )
        .await?;
        let exit_code = match ended {
            Ended::Exited(c) => {
                if runtimes && child.is_some() {
                    // What the command's last moments left: its stderr to the end, its exit.
                    if let Some(t) = stderr_task.take() {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
                    }
                    let mut events = Vec::new();
                    while let Ok(line) = oom_rx.try_recv() {
                        events.extend(mon.java_error(&line));
                    }
                    let interval = std::time::Duration::from_secs_f64(mon.core().cfg.interval_secs);
                    let wait = interval + std::time::Duration::from_millis(500);
                    if let Ok(more) = tokio::time::timeout(wait, mon.next()).await {
                        events.extend(more);
                    }
                    show(&mon, &events, &mut out, s.json, &mut last_progress, &mut any_leak)?;
                    out.flush()?;
                }
                c
            }
            Ended::Stopped => {
                if let Some(c) = child.as_mut() {
                    let _ = c.start_kill();
                }
                None
            }
        };
        // Where the tree grew: its allocation sites, read one last time.
        let sites = mon.sites.as_mut().map(|sites| {
            sites.refresh(&mut mon.probes.ebpf, None);
            for n in &sites.notes {
                eprintln!("leaktrace: {n}");
            }
            VerdictSites {
                top_sites: sites.top(&[], crate::sites::TOP_SITES),
                unattributed_bytes: sites.unattributed_bytes(&[]),
                stack_collisions: sites.counters().stack_collisions,
            }
        });
        let Some((verdict, leak)) = mon.core().verdict_event(exit_code, sites) else {
            eprintln!(
                "error: pid {root} exited before any sample was taken{}",
                if s.runs.is_some() {
                    " (a shorter --interval samples shorter runs)"
                } else {
                    ""
                }
            );
            return Ok(ExitCode::from(exit::ERROR));
        };
        any_leak |= leak;
        out.emit(&verdict)?;
        out.flush()?;
        if let Some(g) = mon.core().group() {
            stats.push(RunStat {
                run,
                pid: g.root,
                peak_bytes: g.timeline.samples().iter().map(|x| x.rss_bytes).max().unwrap_or(0),
                retained_bytes: g.timeline.last().map_or(0, |x| x.rss_bytes),
                samples: g.timeline.len(),
                duration_secs: ((g.last_t - g.first_t.unwrap_or(g.last_t)) * 10.0).round() / 10.0,
                exit_code,
            });
        }
        if matches!(ended, Ended::Stopped) {
            break;
        }
    }
    if s.runs.is_some() {
        let verdict = runs::judge(&stats);
        any_leak |= verdict.growing;
        out.emit(&Event::Runs(Box::new(Runs {
            command: s.command.clone(),
            runs: stats,
            verdict,
        })))?;
        out.flush()?;
    }
    Ok(ExitCode::from(if any_leak { exit::LEAK } else { exit::OK }))
}

/// Watch until the command (or the watched pid) ends, or a stop.
#[allow(clippy::too_many_arguments)]
async fn watch_one(
    mon: &mut Monitor,
    child: &mut Option<tokio::process::Child>,
    java_errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    last_progress: &mut f64,
    root: u32,
    out: &mut Out,
    json: bool,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    deadline: Option<tokio::time::Instant>,
    resource_leak: &mut bool,
) -> anyhow::Result<Ended> {
    loop {
        let events = tokio::select! {
            () = stop.as_mut() => return Ok(Ended::Stopped),
            () = until(deadline) => return Ok(Ended::Stopped),
            st = async { match child.as_mut() { Some(c) => c.wait().await, None => std::future::pending().await } } => {
                return Ok(Ended::Exited(st.ok().and_then(|s| s.code())));
            }
            Some(line) = java_errors.recv() => mon.java_error(&line),
            events = mon.next() => events,
        };
        show(mon, &events, out, json, last_progress, resource_leak)?;
        out.flush()?;
        if child.is_none() && !mon.table().contains(root) {
            return Ok(Ended::Exited(None));
        }
    }
}

/// What `watch` shows while it runs: the tree's samples (JSON every one, text every few seconds on
/// stderr), its leaks outside RSS as they are found, and what a JVM of the tree went through
/// (`oom_predicted` of its heap, `java_oom`).
fn show(
    mon: &Monitor,
    events: &[Event],
    out: &mut Out,
    json: bool,
    last_progress: &mut f64,
    resource_leak: &mut bool,
) -> io::Result<()> {
    for e in events {
        match e {
            Event::Sample { subject, .. } => {
                if json {
                    out.emit(e)?;
                } else if subject.t - *last_progress >= PROGRESS_EVERY {
                    *last_progress = subject.t;
                    eprintln!("{}", e.text());
                }
            }
            Event::ResourceLeakSuspected(_) | Event::ResourceLeakCleared(_) | Event::FdExhaustionPredicted(_)
                if mon.core().in_group(e.pid()) =>
            {
                *resource_leak |= matches!(e, Event::ResourceLeakSuspected(_));
                out.emit(e)?;
            }
            Event::JavaOom { .. }
            | Event::OomPredicted {
                limit: crate::analysis::predict::LimitKind::JavaHeap,
                ..
            } => {
                if json {
                    out.emit(e)?;
                } else {
                    eprintln!("{}", e.text());
                }
            }
            _ => {}
        }
    }
    Ok(())
}
