//! Drawing `leaktrace top`: a header of host-level signs, a table of processes, a help footer.
//! Pure rendering of a [`View`]; ratatui diffs frames, so drawing every update is cheap.
use std::time::Duration;

use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row as TableRow, Table, Wrap},
};

use super::model::{
    Header, Row, SPARK_SAMPLES, SortKey, fmt_bytes, fmt_eta, fmt_rate, fmt_secs, fmt_signed, sparkline,
};
use crate::analysis::classify::Pattern;

/// Smallest terminal drawn; smaller ones get a one-line notice.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 10;
/// Swap use above this is highlighted.
const SWAP_ALERT_PCT: f64 = 50.0;
/// An OOM ETA under this is highlighted.
const ETA_ALERT_SECS: f64 = 300.0;

/// Everything one frame shows.
pub struct View<'a> {
    pub header: &'a Header,
    /// Filtered and sorted.
    pub rows: Vec<&'a Row>,
    pub sort: SortKey,
    /// The applied comm filter.
    pub filter: &'a str,
    /// The filter being typed (`/` … Enter).
    pub editing: Option<&'a str>,
    pub paused: bool,
    pub interval: Duration,
}

/// Column widths for a terminal `width` columns wide; 0 = column hidden. The fixed columns always
/// fit in [`MIN_WIDTH`]; the sparkline, then the cgroup, get what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub pid: u16,
    pub comm: u16,
    pub group: u16,
    pub rss: u16,
    pub growth: u16,
    pub pattern: u16,
    pub spark: u16,
    pub eta: u16,
    /// Collectors of JVM / CPython processes (`GC/s heap%`, `!` under GC pressure).
    pub gc: u16,
}

impl Columns {
    pub fn for_width(width: u16) -> Columns {
        let mut c = Columns {
            pid: 7,
            comm: 12,
            group: 0,
            rss: 6,
            growth: 8,
            pattern: 8,
            spark: 0,
            eta: 12,
            gc: 0,
        };
        let fixed = c.pid + c.comm + c.rss + c.growth + c.pattern + c.eta + 5;
        let mut rest = width.saturating_sub(fixed);
        // A column costs its width plus one space before it.
        let mut take = |want: u16, min: u16| -> u16 {
            if rest > want {
                rest -= want + 1;
                want
            } else if rest > min {
                let got = rest - 1;
                rest = 0;
                got
            } else {
                0
            }
        };
        c.spark = take(30, 10);
        c.gc = take(11, 9);
        c.group = take(24, 10);
        let max_spark = SPARK_SAMPLES as u16;
        if c.spark > 0 {
            let more = rest.min(max_spark - c.spark.min(max_spark));
            c.spark += more;
            rest -= more;
        }
        if c.group > 0 {
            let more = rest.min(24);
            c.group += more;
            rest -= more;
        }
        c.comm += rest.min(4);
        c
    }
}

/// Keep the end of `s` (the most specific part of a cgroup path) within `width` columns.
fn tail(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width || width == 0 {
        return s.to_string();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - (width - 1)));
    out
}

fn pattern_style(r: &Row) -> Style {
    match r.pattern {
        Some(Pattern::Mountain) if r.flagged => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Some(Pattern::Mountain) => Style::new().fg(Color::Red),
        Some(Pattern::Plateau) => Style::new().fg(Color::Yellow),
        Some(Pattern::Tidal) => Style::new().fg(Color::Cyan),
        _ => Style::new(),
    }
}

/// `12.0/s 87%`, with `!` under GC pressure; red when the heap floor leaks.
fn gc_cell(g: Option<&super::model::GcCell>) -> (String, Style) {
    let Some(g) = g else {
        return ("-".into(), Style::new().add_modifier(Modifier::DIM));
    };
    let rate = if g.collections_per_sec >= 10.0 {
        format!("{:.0}/s", g.collections_per_sec)
    } else {
        format!("{:.1}/s", g.collections_per_sec)
    };
    let fill = g
        .heap_fill
        .map_or(String::new(), |f| format!(" {:.0}%", (f * 100.0).min(999.0)));
    let text = format!("{rate}{fill}{}", if g.pressure { "!" } else { "" });
    let style = if g.heap_leak {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else if g.pressure {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new()
    };
    (text, style)
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).alignment(Alignment::Right))
}

fn header_lines(v: &View) -> Vec<Line<'static>> {
    let h = v.header;
    let dim = Style::new().add_modifier(Modifier::DIM);
    let alert = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    let mut title = vec![
        Span::styled("leaktrace top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {} processes tracked · every {} · sort: {}",
            h.tracked,
            fmt_secs_interval(v.interval),
            v.sort.name()
        )),
    ];
    if !v.filter.is_empty() {
        title.push(Span::raw(format!(" · filter: {}", v.filter)));
    }
    if v.paused {
        title.push(Span::raw("  "));
        title.push(Span::styled(
            " PAUSED ",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }

    let mut mem = vec![Span::raw(format!(
        "MemAvailable {} of {} ({:.0}%)",
        fmt_bytes(h.mem_available),
        fmt_bytes(h.mem_total),
        if h.mem_total > 0 {
            h.mem_available as f64 * 100.0 / h.mem_total as f64
        } else {
            0.0
        }
    ))];
    match h.avail_change {
        Some((d, span)) => {
            // Less available memory is the bad direction.
            let (arrow, style) = if d < -(1 << 20) {
                ("↓", alert)
            } else if d > 1 << 20 {
                ("↑", Style::new().fg(Color::Green))
            } else {
                ("→", Style::new())
            };
            mem.push(Span::raw(" "));
            mem.push(Span::styled(
                format!("{arrow} {} in {}", fmt_signed(d), fmt_secs(span)),
                style,
            ));
        }
        None => mem.push(Span::styled(" (trend after 2 samples)", dim)),
    }
    mem.push(Span::raw("   "));
    match h.swap_used_pct() {
        Some(pct) => {
            let style = if pct > SWAP_ALERT_PCT { alert } else { Style::new() };
            mem.push(Span::styled(
                format!("Swap {pct:.0}% used of {}", fmt_bytes(h.swap_total)),
                style,
            ));
        }
        None => mem.push(Span::styled("Swap none", dim)),
    }

    let psi = match (h.psi_some_avg10, h.psi_full_avg10) {
        (Some(s), f) => Span::raw(format!(
            "PSI memory avg10 some {s:.2}% full {}",
            f.map_or("-".to_string(), |f| format!("{f:.2}%"))
        )),
        (None, _) => Span::styled("PSI memory n/a", dim),
    };
    let boot = h.oom_kills_boot.map_or("?".to_string(), |n| n.to_string());
    let oom_style = if h.oom_kills_seen > 0 { alert } else { Style::new() };
    let oom = Span::styled(
        format!("OOM kills {boot} since boot, {} since start", h.oom_kills_seen),
        oom_style,
    );
    let mut lines = vec![
        Line::from(title),
        Line::from(mem),
        Line::from(vec![psi, Span::raw("   "), oom]),
    ];
    lines.extend(beyond_lines(h, alert, dim));
    lines
}

/// Issue 14: where the memory is, the article's clues, and leaks outside processes' RSS.
fn beyond_lines(h: &Header, alert: Style, dim: Style) -> Vec<Line<'static>> {
    let b = &h.beyond;
    let mut where_ = vec![Span::raw("Memory: ")];
    if b.parts.is_empty() {
        where_.push(Span::styled("(parts after the first sample)", dim));
    }
    for (i, (part, bytes)) in b.parts.iter().enumerate() {
        if i > 0 {
            where_.push(Span::styled(" · ", dim));
        }
        where_.push(Span::raw(format!("{part} {}", fmt_bytes(*bytes))));
    }
    let mut clues = Vec::new();
    if h.swap_used_pct().is_some_and(|p| p > SWAP_ALERT_PCT) {
        clues.push("swap > 50% used".to_string());
    }
    if let Some(trend) = b.available_falling {
        clues.push(format!(
            "MemAvailable falling {}/s, not recovering",
            fmt_signed(trend.round() as i64)
        ));
    }
    if h.oom_kills_seen > 0 {
        clues.push(format!("{} OOM kills in the kernel log", h.oom_kills_seen));
    }
    where_.push(Span::raw("   clues: "));
    if clues.is_empty() {
        where_.push(Span::styled("none", dim));
    } else {
        where_.push(Span::styled(clues.join(" · "), alert));
    }
    let mut lines = vec![Line::from(where_)];
    if !b.host_leaks.is_empty() || !b.resource_leaks.is_empty() {
        let mut l = vec![Span::styled("LEAKING: ", alert)];
        let mut items: Vec<String> = b
            .host_leaks
            .iter()
            .map(|(what, bytes, g)| format!("{what} {} {}", fmt_bytes(*bytes), fmt_rate(Some(*g))))
            .collect();
        items.extend(
            b.resource_leaks
                .iter()
                .map(|(pid, comm, what)| format!("pid {pid} ({comm}) {what}")),
        );
        l.push(Span::styled(items.join(" · "), alert));
        lines.push(Line::from(l));
    }
    lines
}

fn fmt_secs_interval(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        fmt_secs(d.as_secs_f64())
    }
}

fn footer(v: &View) -> Line<'static> {
    let key = Style::new().add_modifier(Modifier::REVERSED);
    match v.editing {
        Some(buf) => Line::from(vec![
            Span::styled(" filter by comm: ", key),
            Span::raw(format!(" {buf}")),
            Span::styled(
                " ",
                Style::new().add_modifier(Modifier::REVERSED | Modifier::SLOW_BLINK),
            ),
            Span::raw("   Enter apply · Esc clear"),
        ]),
        None => {
            let mut spans = Vec::new();
            for (k, what) in [
                ("s", "sort"),
                ("/", "filter"),
                ("p", if v.paused { "resume" } else { "pause" }),
                ("q", "quit"),
            ] {
                spans.push(Span::styled(format!(" {k} "), key));
                spans.push(Span::raw(format!(" {what}  ")));
            }
            Line::from(spans)
        }
    }
}

/// Draw one frame; returns how many process rows fit (for deciding which sparklines to compute).
pub fn render(f: &mut Frame, v: &View) -> usize {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: need {MIN_WIDTH}x{MIN_HEIGHT} (now {}x{})",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return 0;
    }
    let header = header_lines(v);
    let [head, table, foot] = Layout::vertical([
        Constraint::Length(header.len() as u16),
        Constraint::Min(2),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(header), head);
    render_table(f, v, table);
    f.render_widget(Paragraph::new(footer(v)), foot);
    table.height.saturating_sub(1) as usize
}

fn render_table(f: &mut Frame, v: &View, area: Rect) {
    let c = Columns::for_width(area.width);
    let mut widths = vec![c.pid, c.comm];
    let mut titles = vec![right("PID".into()), Cell::from("COMM")];
    if c.group > 0 {
        widths.push(c.group);
        titles.push(Cell::from("CGROUP/CONTAINER"));
    }
    widths.extend([c.rss, c.growth, c.pattern]);
    titles.extend([right("RSS".into()), right("GROWTH".into()), Cell::from("PATTERN")]);
    if c.spark > 0 {
        widths.push(c.spark);
        titles.push(Cell::from(format!("FOOTPRINT, last {} samples", c.spark)));
    }
    if c.gc > 0 {
        widths.push(c.gc);
        titles.push(right("GC/s HEAP".into()));
    }
    widths.push(c.eta);
    titles.push(Cell::from("OOM ETA"));

    let shown = area.height.saturating_sub(1) as usize;
    let rows: Vec<TableRow> = v
        .rows
        .iter()
        .take(shown)
        .map(|r| {
            let style = pattern_style(r);
            let mut cells = vec![right(r.pid.to_string()), Cell::from(r.comm.clone())];
            if c.group > 0 {
                cells.push(Cell::from(tail(&r.group, c.group as usize)));
            }
            cells.extend([
                right(fmt_bytes(r.rss)),
                right(fmt_rate(r.growth)),
                Cell::from(Span::styled(r.pattern.map_or("-", Pattern::as_str), style)),
            ]);
            if c.spark > 0 {
                cells.push(Cell::from(Span::styled(sparkline(&r.spark, c.spark as usize), style)));
            }
            if c.gc > 0 {
                let (text, st) = gc_cell(r.gc.as_ref());
                cells.push(Cell::from(
                    Line::from(Span::styled(text, st)).alignment(Alignment::Right),
                ));
            }
            let eta_style = match r.eta {
                Some((s, _)) if s < ETA_ALERT_SECS => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                _ => Style::new(),
            };
            cells.push(Cell::from(Span::styled(fmt_eta(r.eta), eta_style)));
            TableRow::new(cells)
        })
        .collect();
    let empty = rows.is_empty();
    let table = Table::new(rows, widths.into_iter().map(Constraint::Length))
        .header(TableRow::new(titles).style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)))
        .column_spacing(1);
    f.render_widget(table, area);
    if empty && area.height > 1 {
        let msg = if v.filter.is_empty() {
            "no processes tracked yet".to_string()
        } else {
            format!("no process matches `{}`", v.filter)
        };
        let below = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        f.render_widget(
            Paragraph::new(Span::styled(msg, Style::new().add_modifier(Modifier::DIM))),
            below,
        );
    }
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::analysis::predict::LimitKind;

    fn screen(w: u16, h: u16, v: &View) -> (String, usize) {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        let mut fit = 0;
        t.draw(|f| fit = render(f, v)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..h {
            for x in 0..w {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        (s, fit)
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                pid: 4242,
                comm: "lt-workload".into(),
                group: "docker:0123456789ab".into(),
                rss: 80 << 20,
                footprint: 80 << 20,
                growth: Some(4.0 * 1048576.0),
                pattern: Some(Pattern::Mountain),
                flagged: true,
                spark: (0..40).map(|i| i << 22).collect(),
                eta: Some((95.0, LimitKind::Host)),
                gc: Some(crate::sinks::top::model::GcCell {
                    collections_per_sec: 4.0,
                    heap_fill: Some(0.87),
                    pressure: true,
                    heap_leak: true,
                }),
            },
            Row {
                pid: 7,
                comm: "postgres".into(),
                group: "/system.slice/a/very/long/path/postgresql.service".into(),
                rss: 300 << 20,
                footprint: 200 << 20,
                growth: Some(0.0),
                pattern: Some(Pattern::Tidal),
                flagged: false,
                spark: (0..40).map(|i| if i % 4 < 2 { 100 << 20 } else { 160 << 20 }).collect(),
                eta: None,
                gc: None,
            },
        ]
    }

    fn header() -> Header {
        Header {
            mem_total: 8 << 30,
            mem_available: 2 << 30,
            avail_change: Some((-(240 << 20), 60.0)),
            swap_total: 1 << 30,
            swap_used: 700 << 20,
            psi_some_avg10: Some(1.25),
            psi_full_avg10: Some(0.5),
            oom_kills_boot: Some(3),
            oom_kills_seen: 1,
            tracked: 2,
            beyond: crate::sinks::top::model::Beyond {
                parts: vec![("page_cache", 3 << 30), ("process_anon", 2 << 30)],
                host_leaks: vec![("tmpfs /dev/shm".into(), 300 << 20, 2e6)],
                available_falling: Some(-2e6),
                resource_leaks: vec![(77, "py".into(), "fds 3600 +80.0/s".into())],
            },
        }
    }

    #[test]
    fn full_screen() {
        let (h, rows) = (header(), rows());
        let v = View {
            header: &h,
            rows: rows.iter().collect(),
            sort: SortKey::Growth,
            filter: "",
            editing: None,
            paused: true,
            interval: Duration::from_secs(1),
        };
        let (s, fit) = screen(200, 20, &v);
        assert_eq!(fit, 13, "{s}");
        assert!(s.contains("Memory: page_cache 3.0G · process_anon 2.0G"), "{s}");
        assert!(
            s.contains(
                "clues: swap > 50% used · MemAvailable falling -1.9M/s, not recovering · 1 OOM kills in the kernel log"
            ),
            "{s}"
        );
        assert!(
            s.contains("LEAKING: tmpfs /dev/shm 300M +1.9M/s · pid 77 (py) fds 3600 +80.0/s"),
            "{s}"
        );
        assert!(s.contains("2 processes tracked · every 1s · sort: growth"), "{s}");
        assert!(s.contains("PAUSED"));
        assert!(s.contains("MemAvailable 2.0G of 8.0G (25%) ↓ -240M in 1m00s"), "{s}");
        assert!(s.contains("Swap 68% used of 1.0G"), "{s}");
        assert!(s.contains("PSI memory avg10 some 1.25% full 0.50%"));
        assert!(s.contains("OOM kills 3 since boot, 1 since start"));
        let line = s.lines().find(|l| l.contains("4242")).unwrap();
        for want in [
            "lt-workload",
            "docker:0123456789ab",
            "80M",
            "+4.0M/s",
            "mountain",
            "▁",
            "█",
            "1m35s host",
            "4.0/s 87%!",
        ] {
            assert!(line.contains(want), "{want} missing from {line}");
        }
        let line = s.lines().find(|l| l.contains("postgres")).unwrap();
        assert!(
            line.contains("tidal") && line.contains("…") && line.contains("postgresql.service"),
            "{line}"
        );
        assert!(s.contains(" q  quit"), "{s}");
    }

    #[test]
    fn narrow_and_editing() {
        let (h, rows) = (header(), rows());
        let v = View {
            header: &h,
            rows: rows.iter().collect(),
            sort: SortKey::Rss,
            filter: "",
            editing: Some("lt-w"),
            paused: false,
            interval: Duration::from_millis(500),
        };
        let (s, _) = screen(MIN_WIDTH, MIN_HEIGHT, &v);
        assert!(s.contains("filter by comm:") && s.contains("lt-w"), "{s}");
        assert!(s.contains("every 500ms"), "{s}");
        let line = s.lines().find(|l| l.contains("4242")).unwrap();
        assert!(line.contains("mountain") && line.contains("1m35s host"), "{line}");
    }

    #[test]
    fn too_small_and_empty() {
        let h = header();
        let v = View {
            header: &h,
            rows: Vec::new(),
            sort: SortKey::Pid,
            filter: "zzz",
            editing: None,
            paused: false,
            interval: Duration::from_secs(2),
        };
        let (s, fit) = screen(59, 30, &v);
        assert_eq!(fit, 0);
        assert!(s.starts_with("terminal too small: need 60x10"), "{s}");
        let (s, _) = screen(80, 9, &v);
        assert!(s.contains("terminal too small"));
        // Degenerate sizes must not panic.
        for (w, h2) in [(1, 1), (0, 0), (5, 1), (60, 10), (400, 200)] {
            screen(w, h2, &v);
        }
        let (s, _) = screen(100, 12, &v);
        assert!(s.contains("no process matches `zzz`"), "{s}");
    }

    #[test]
    fn columns_fit() {
        for w in MIN_WIDTH..=300 {
            let c = Columns::for_width(w);
            let used = [c.pid, c.comm, c.group, c.rss, c.growth, c.pattern, c.spark, c.eta, c.gc]
                .iter()
                .filter(|x| **x > 0)
                .map(|x| x + 1)
                .sum::<u16>()
                - 1;
            assert!(used <= w, "{w}: {c:?}");
            assert!(c.spark <= SPARK_SAMPLES as u16);
        }
        assert_eq!(Columns::for_width(200).spark, 60);
        assert_eq!(Columns::for_width(200).gc, 11);
        assert!(Columns::for_width(100).spark >= 30);
    }
}
