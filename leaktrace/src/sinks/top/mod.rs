//! `leaktrace top`: a live terminal view of the process table. `model` turns the table into rows,
//! `view` draws them; this module holds the interaction state and owns the terminal.
pub mod model;
pub mod view;

use std::{
    collections::HashSet,
    io::{self, Stdout},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use ratatui::{
    Frame, Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
        execute,
    },
};

use self::{
    model::{Header, HostSampler, Row, SortKey, spark_of},
    view::View,
};
use crate::{output::Event, state::ProcessTable};

/// The terminal is in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Put the terminal back (ratatui's restore: cooked mode, main screen; and the cursor shown).
/// Safe to call any number of times, from anywhere (Drop, error paths, after ratatui's panic
/// hook); only the first call after [`Tui::enter`] does anything.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = ratatui::try_restore();
        let _ = execute!(io::stdout(), cursor::Show);
    }
}

/// The terminal, owned for the view's lifetime; dropping it restores the terminal (on quit, on
/// error, and on panic unwinding; ratatui's panic hook restores it before the message is printed).
pub struct Tui {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Tui {
    /// ratatui's own set-up: raw mode, the alternate screen, a panic hook that restores.
    pub fn enter() -> io::Result<Tui> {
        ACTIVE.store(true, Ordering::SeqCst);
        match ratatui::try_init() {
            Ok(terminal) => Ok(Tui { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
    }
}

/// What the caller should do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    Redraw,
    /// Rebuild the rows from the table (`full`: every sparkline, for a frozen display).
    Refresh {
        full: bool,
    },
    Quit,
}

/// The view's state: what is shown, how, and the host readings behind the header.
pub struct App {
    pub sort: SortKey,
    pub filter: String,
    pub editing: Option<String>,
    pub paused: bool,
    pub interval: Duration,
    /// What is displayed (frozen while paused).
    pub rows: Vec<Row>,
    pub header: Header,
    host: HostSampler,
    last_host: Option<Instant>,
    oom_kills_seen: u64,
    /// The host's parts and leaks outside RSS, from the monitor ([`App::note_beyond`]).
    beyond: model::Beyond,
    /// Process rows that fit on screen at the last draw.
    fit: usize,
}

impl App {
    pub fn new(interval: Duration) -> App {
        App {
            sort: SortKey::Growth,
            filter: String::new(),
            editing: None,
            paused: false,
            interval,
            rows: Vec::new(),
            header: Header::default(),
            host: HostSampler::default(),
            last_host: None,
            oom_kills_seen: 0,
            beyond: model::Beyond::default(),
            fit: 100,
        }
    }

    /// Count what the header reports from the update stream (kept while paused).
    pub fn note(&mut self, events: &[Event]) {
        self.oom_kills_seen += events.iter().filter(|e| matches!(e, Event::OomKill { .. })).count() as u64;
    }

    /// What the monitor knows of the host's memory in parts and of leaks outside RSS.
    pub fn note_beyond(&mut self, b: model::Beyond) {
        self.beyond = b;
    }

    /// Read the host counters, at most once per interval (or per second for longer intervals).
    pub fn sample_host(&mut self, t: f64) {
        let every = self.interval.min(Duration::from_secs(1)).mul_f64(0.9);
        if self.last_host.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last_host = Some(Instant::now());
        self.host.sample(t);
    }

    /// Rebuild the displayed rows and header from the table, unless paused (`full` rebuilds even
    /// then, with every row's sparkline, for the frozen display). Otherwise only the rows on
    /// screen get a sparkline: a timeline copy each is not free for thousands of processes.
    pub fn refresh(&mut self, table: &ProcessTable, full: bool) {
        if self.paused && !full {
            return;
        }
        let rows: Vec<Row> = table.iter().map(Row::of).collect();
        let want: HashSet<u32> = if full {
            rows.iter().map(|r| r.pid).collect()
        } else {
            model::visible(&rows, self.sort, &self.filter)
                .iter()
                .take(self.fit)
                .map(|r| r.pid)
                .collect()
        };
        let mut rows = rows;
        for r in rows.iter_mut().filter(|r| want.contains(&r.pid)) {
            if let Some(p) = table.get(r.pid) {
                r.spark = spark_of(table, p);
            }
        }
        self.rows = rows;
        self.header = Header {
            oom_kills_seen: self.oom_kills_seen,
            tracked: table.len(),
            beyond: self.beyond.clone(),
            ..self.host.header.clone()
        };
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Effect {
        if k.kind == KeyEventKind::Release {
            return Effect::Nothing;
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && matches!(k.code, KeyCode::Char('c' | 'C')) {
            return Effect::Quit;
        }
        let live = Effect::Refresh { full: false };
        if let Some(buf) = self.editing.as_mut() {
            return match k.code {
                KeyCode::Enter => {
                    self.filter = self.editing.take().unwrap_or_default().trim().to_string();
                    if self.paused { Effect::Redraw } else { live }
                }
                KeyCode::Esc => {
                    self.editing = None;
                    self.filter.clear();
                    if self.paused { Effect::Redraw } else { live }
                }
                KeyCode::Backspace => {
                    buf.pop();
                    Effect::Redraw
                }
                KeyCode::Char(c) if !c.is_control() && buf.chars().count() < 64 => {
                    buf.push(c);
                    Effect::Redraw
                }
                _ => Effect::Nothing,
            };
        }
        match k.code {
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => Effect::Quit,
            KeyCode::Char('s' | 'S') => {
                self.sort = self.sort.next();
                if self.paused { Effect::Redraw } else { live }
            }
            KeyCode::Char('/') => {
                self.editing = Some(String::new());
                Effect::Redraw
            }
            KeyCode::Char('p' | 'P' | ' ') => {
                if self.paused {
                    self.paused = false;
                    live
                } else {
                    // Freeze what is current, with every sparkline, so re-sorting works.
                    self.paused = true;
                    Effect::Refresh { full: true }
                }
            }
            _ => Effect::Nothing,
        }
    }

    pub fn draw(&mut self, f: &mut Frame) {
        let v = View {
            header: &self.header,
            rows: model::visible(&self.rows, self.sort, &self.filter),
            sort: self.sort,
            filter: &self.filter,
            editing: self.editing.as_deref(),
            paused: self.paused,
            interval: self.interval,
        };
        let fit = view::render(f, &v);
        self.fit = fit.max(1);
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyEvent;

    use super::*;
    use crate::{
        input::{Identity, Obs},
        state::timeline::TimelineConfig,
    };

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn table() -> ProcessTable {
        let mut t = ProcessTable::new(100, TimelineConfig::default());
        for (pid, name, kb) in [(10, "lt-workload", 4096), (20, "bash", 1024)] {
            let id = Identity {
                pid,
                start: 1,
                ppid: 1,
                comm: name.into(),
                ..Identity::default()
            };
            t.start(&id, 0.0);
            for i in 0..5 {
                t.observe(&Obs(pid, 1, kb * 1024, 0, 0, 0, None), f64::from(i));
            }
        }
        t
    }

    #[test]
    fn keys() {
        let mut a = App::new(Duration::from_secs(1));
        let t = table();
        a.refresh(&t, false);
        assert_eq!(a.rows.len(), 2);
        assert!(a.rows.iter().all(|r| r.spark.len() == 5));
        assert_eq!(a.on_key(key(KeyCode::Char('s'))), Effect::Refresh { full: false });
        assert_eq!(a.sort, SortKey::Rss);
        // Filter: typed keys (even `q` and `s`) go to the filter until Enter.
        assert_eq!(a.on_key(key(KeyCode::Char('/'))), Effect::Redraw);
        for c in "lt-wq".chars() {
            a.on_key(key(KeyCode::Char(c)));
        }
        a.on_key(key(KeyCode::Backspace));
        assert_eq!(a.editing.as_deref(), Some("lt-w"));
        assert_eq!(a.sort, SortKey::Rss);
        assert_eq!(a.on_key(key(KeyCode::Enter)), Effect::Refresh { full: false });
        assert_eq!(a.filter, "lt-w");
        assert_eq!(model::visible(&a.rows, a.sort, &a.filter).len(), 1);
        a.on_key(key(KeyCode::Char('/')));
        a.on_key(key(KeyCode::Char('x')));
        a.on_key(key(KeyCode::Esc));
        assert_eq!((a.filter.as_str(), a.editing.is_none()), ("", true));
        // Pause freezes: refreshes are ignored until resumed.
        assert_eq!(a.on_key(key(KeyCode::Char('p'))), Effect::Refresh { full: true });
        a.refresh(&t, true);
        a.refresh(&ProcessTable::new(1, TimelineConfig::default()), false);
        assert_eq!(a.rows.len(), 2);
        assert_eq!(a.on_key(key(KeyCode::Char('s'))), Effect::Redraw);
        assert_eq!(a.on_key(key(KeyCode::Char('p'))), Effect::Refresh { full: false });
        a.refresh(&ProcessTable::new(1, TimelineConfig::default()), false);
        assert!(a.rows.is_empty());
        assert_eq!(a.on_key(key(KeyCode::Char('q'))), Effect::Quit);
        assert_eq!(a.on_key(key(KeyCode::Esc)), Effect::Quit);
        assert_eq!(
            a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Effect::Quit
        );
        a.on_key(key(KeyCode::Char('/')));
        assert_eq!(
            a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Effect::Quit
        );
    }

    #[test]
    fn only_rows_on_screen_get_sparklines() {
        let mut a = App::new(Duration::from_secs(1));
        a.fit = 1;
        a.refresh(&table(), false);
        assert_eq!(a.rows.iter().filter(|r| !r.spark.is_empty()).count(), 1);
        a.refresh(&table(), true);
        assert_eq!(a.rows.iter().filter(|r| !r.spark.is_empty()).count(), 2);
    }

    #[test]
    fn restore_is_idempotent_without_a_terminal() {
        restore();
        restore();
        assert!(!ACTIVE.load(Ordering::SeqCst));
    }
}
