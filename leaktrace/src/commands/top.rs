//! `leaktrace top`: the monitor drawn live in the terminal. One select loop drives both the
//! monitor (sampling never stops, paused or not) and the view (keys, redraws at most 20 a second).
use std::{
    io::IsTerminal as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{self, Event as Term};

use super::shutdown_signal;
use crate::{
    cli::{UsageError, settings},
    monitor::Monitor,
    output::Event,
    probes::privileges,
    sinks::top::{App, Effect, Tui, model::Beyond},
};

/// Keys are read and frames drawn on this tick.
const UI_TICK: Duration = Duration::from_millis(50);
/// Rows are rebuilt from the table at most this often (early updates come with every exit).
const MIN_REFRESH: Duration = Duration::from_millis(200);

pub async fn run(s: settings::Top) -> anyhow::Result<ExitCode> {
    // Before anything is loaded: there is nothing to draw on.
    if !std::io::stdout().is_terminal() {
        return Err(
            UsageError("`leaktrace top` needs a terminal on stdout (for a log, use `leaktrace run`)".into()).into(),
        );
    }
    let stop = shutdown_signal();
    let interval = s.monitor.interval;
    let keep = privileges::keep_after_attach(s.monitor.runtimes, false);
    let mut mon = Monitor::start(s.monitor, &s.load)?;
    if let Err(e) = privileges::keep_only(&keep) {
        eprintln!("leaktrace: warning: could not drop capabilities: {e}");
    }

    let mut tui = Tui::enter()?;
    let mut app = App::new(interval);
    app.sample_host(mon.now_secs());
    app.refresh(mon.table(), false);
    let mut last_refresh = Instant::now();
    let (mut stale, mut dirty) = (false, true);
    let mut ui = tokio::time::interval(UI_TICK);
    ui.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(stop);

    enum Next {
        Stop,
        Events(Vec<Event>),
        Ui,
    }
    'main: loop {
        // `Monitor::next` is cancel-safe: it only awaits with nothing drained and not returned.
        let next = tokio::select! {
            () = &mut stop => Next::Stop,
            events = mon.next() => Next::Events(events),
            _ = ui.tick() => Next::Ui,
        };
        match next {
            Next::Stop => break,
            Next::Events(events) => {
                app.note(&events);
                let core = mon.core();
                app.note_beyond(Beyond::of(
                    core.host_state(),
                    core.host_clues(),
                    core.resources(),
                    core.table(),
                ));
                app.sample_host(mon.now_secs());
                stale = true;
            }
            Next::Ui => {
                while event::poll(Duration::ZERO)? {
                    match event::read()? {
                        Term::Key(k) => match app.on_key(k) {
                            Effect::Quit => break 'main,
                            Effect::Refresh { full } => {
                                app.refresh(mon.table(), full);
                                last_refresh = Instant::now();
                                dirty = true;
                            }
                            Effect::Redraw => dirty = true,
                            Effect::Nothing => {}
                        },
                        Term::Resize(..) => dirty = true,
                        _ => {}
                    }
                }
                if stale && !app.paused && last_refresh.elapsed() >= MIN_REFRESH {
                    app.refresh(mon.table(), false);
                    last_refresh = Instant::now();
                    stale = false;
                    dirty = true;
                }
                if dirty {
                    tui.terminal.draw(|f| app.draw(f))?;
                    dirty = false;
                }
            }
        }
    }
    drop(tui);
    Ok(ExitCode::SUCCESS)
}
