//! An OOM report for a person: plain text (no colours) with an ASCII chart of the victim's
//! footprint before the kill, and a one-line summary for listings (`leaktrace oom`).
use std::fmt::{Debug, Write as _};

use serde::Serialize;

use super::{Grower, OomReport, Point, Snapshot};
use crate::{
    sys::{container::ContainerInfo, memcg_levels::MemcgLevel, proc::redact_cmdline},
    util::{bytes, signed_bytes},
};

/// Chart size: plot columns × rows (axes and labels come on top).
pub const CHART_WIDTH: usize = 60;
pub const CHART_HEIGHT: usize = 12;

/// Rows shown per table, so a report stays one screenful or two.
const MAX_GROWERS: usize = 5;
const MAX_SYSCALLS: usize = 8;
const MAX_MAPPINGS: usize = 5;

const KIB: f64 = 1024.0;
const MIB: f64 = KIB * 1024.0;
const GIB: f64 = MIB * 1024.0;

/// The whole report, ~40–80 lines.
pub fn render(r: &OomReport) -> String {
    let mut o = String::new();
    let v = &r.victim;
    let comm = v.comm.as_deref().map_or_else(|| "?".to_string(), clean);
    let title = format!("leaktrace OOM report {}", clean(&r.id));
    line(&mut o, &title);
    line(&mut o, &"=".repeat(title.chars().count().min(100)));
    if r.kind == super::KIND_JAVA_HEAP {
        line(
            &mut o,
            &format!(
                "Java OOM:  pid {} ({comm}) ran out of Java heap (OutOfMemoryError) at {} UTC",
                v.pid,
                utc(r.kill_unix_ms)
            ),
        );
    } else {
        line(
            &mut o,
            &format!("Killed:    pid {} ({comm}) at {} UTC", v.pid, utc(r.kill_unix_ms)),
        );
    }
    headline_limit(&mut o, r);

    blank(&mut o);
    line(&mut o, "Victim");
    let cmdline = if is_missing(r, "cmdline") {
        None
    } else {
        v.cmdline.as_ref().map(|c| {
            if c.is_empty() {
                "(empty: a kernel thread?)".to_string()
            } else {
                clean(&redact_cmdline(c))
            }
        })
    };
    field(&mut o, "command", cmdline);
    if let Some(c) = &v.container {
        field(&mut o, "container", Some(container(c)));
    }
    field(&mut o, "uid", known(r, "uid", v.uid).map(|u| u.to_string()));
    field(
        &mut o,
        "oom_score_adj",
        known(r, "oom_score_adj", v.oom_score_adj).map(|s| s.to_string()),
    );
    field(
        &mut o,
        "total VM",
        known(r, "total_vm_bytes", v.total_vm_bytes).map(bytes),
    );
    field(
        &mut o,
        "anon RSS",
        known(r, "anon_rss_bytes", v.anon_rss_bytes).map(bytes),
    );
    field(
        &mut o,
        "file RSS",
        known(r, "file_rss_bytes", v.file_rss_bytes).map(bytes),
    );
    field(
        &mut o,
        "shmem RSS",
        known(r, "shmem_rss_bytes", v.shmem_rss_bytes).map(bytes),
    );
    field(
        &mut o,
        "page tables",
        known(r, "pgtables_bytes", v.pgtables_bytes).map(bytes),
    );

    let t = &r.trigger;
    let who = if t.pid == v.pid {
        "(the victim itself)"
    } else {
        "(a bystander that was allocating)"
    };
    line(
        &mut o,
        &format!("Trigger:   pid {} tid {} ({}) {who}", t.pid, t.tid, clean(&t.comm)),
    );

    blank(&mut o);
    host_section(&mut o, r);

    blank(&mut o);
    analysis_section(&mut o, r);

    blank(&mut o);
    let limit = binding_level(r).and_then(|l| l.limit_bytes).or_else(|| {
        r.memcg
            .as_ref()
            .filter(|_| r.binding_limit == "memcg")
            .and_then(|m| m.limit_bytes)
    });
    line(
        &mut o,
        &format!(
            "Footprint of pid {} before the kill (anon + shmem + swap; {} samples, every {})",
            v.pid,
            r.timeline.len(),
            secs(r.interval_secs)
        ),
    );
    for l in chart(&r.timeline, CHART_WIDTH, CHART_HEIGHT, limit) {
        line(&mut o, &l);
    }

    levels_section(&mut o, r);
    growers(&mut o, "Top growers in the cgroup", &r.top_growers_cgroup);
    growers(&mut o, "Top growers on the host", &r.top_growers_host);
    syscalls(&mut o, r);
    if let Some(s) = &r.snapshot {
        snapshot(&mut o, r, s);
    }
    if let Some(rt) = &r.runtime {
        super::runtime::render(&mut o, rt);
    }
    o
}

/// One line for listings: when, who, where, how big, what leaktrace knew.
pub fn one_line(r: &OomReport) -> String {
    let v = &r.victim;
    let comm = v.comm.as_deref().map_or_else(|| "?".to_string(), clean);
    let place = match (&r.memcg, &r.binding_memcg) {
        _ if r.binding_limit == super::KIND_JAVA_HEAP => "java heap".to_string(),
        (Some(m), Some(b)) if r.binding_limit == "memcg" && *b != m.path => {
            format!("memcg {} (in {})", clean(b), clean(&m.path))
        }
        (_, Some(b)) if r.binding_limit == "memcg" => format!("memcg {}", clean(b)),
        _ => match &r.memcg {
            Some(m) if r.binding_limit == "memcg" => format!("memcg {}", clean(&m.path)),
            Some(m) => format!("host (in {})", clean(&m.path)),
            None => "host".to_string(),
        },
    };
    let anon = v.anon_rss_bytes.map_or_else(|| "?".to_string(), bytes);
    let mut s = format!(
        "{} UTC  pid {} ({comm})  {place}  anon-rss {anon}",
        utc(r.kill_unix_ms),
        v.pid
    );
    if let Some(a) = &r.analysis {
        let _ = write!(
            s,
            "  {}{} {}/s",
            name(&a.pattern),
            if a.leak { " leak" } else { "" },
            signed_bytes(a.growth_bytes_per_sec)
        );
    }
    match (r.predicted, r.lead_time_secs) {
        (true, Some(l)) => {
            let _ = write!(s, "  predicted {} ahead", secs(l));
        }
        (true, None) => s.push_str("  predicted"),
        (false, _) => s.push_str("  not predicted"),
    }
    let _ = write!(s, "  [{}]", clean(&r.id));
    s
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from milliseconds since the Unix epoch; `?` past 9999-12-30.
pub fn utc(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| "?".into(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
}

// ---------------------------------------------------------------------------
// sections
// ---------------------------------------------------------------------------

/// The level whose limit fired, from the report's levels.
fn binding_level(r: &OomReport) -> Option<&MemcgLevel> {
    let b = r.binding_memcg.as_deref()?;
    r.memcg_levels.iter().find(|l| l.path == b)
}

fn headline_limit(o: &mut String, r: &OomReport) {
    if r.binding_limit == super::KIND_JAVA_HEAP {
        let old = r.runtime.as_ref().and_then(|rt| rt.gc.old_gen.as_ref());
        line(
            o,
            &format!(
                "Limit:     the JVM's heap (-Xmx){}",
                old.and_then(|p| p.max_bytes)
                    .map_or(String::new(), |m| format!(", {} max old generation", bytes(m)))
            ),
        );
        return;
    }
    if let (Some(b), Some(m)) = (&r.binding_memcg, &r.memcg)
        && *b != m.path
        && r.binding_limit == "memcg"
    {
        let l = binding_level(r);
        line(
            o,
            &format!(
                "Limit:     memory cgroup {} ({}), an ancestor of the victim's {}",
                clean(b),
                name(&m.version),
                clean(&m.path)
            ),
        );
        line(
            o,
            &format!(
                "           limit {}, usage {}; the victim's own cgroup: limit {}",
                l.and_then(|l| l.limit_bytes)
                    .map_or_else(|| "unknown".to_string(), bytes),
                opt_bytes(l.and_then(|l| l.usage_bytes)),
                m.limit_bytes.map_or_else(|| "unlimited".to_string(), bytes),
            ),
        );
        return;
    }
    match (&r.memcg, r.binding_limit.as_str()) {
        (Some(m), "memcg") => {
            let version = name(&m.version);
            line(o, &format!("Limit:     memory cgroup {} ({version})", clean(&m.path)));
            let mut s = format!(
                "           limit {}, usage {}, max usage {}, failcnt {}",
                m.limit_bytes.map_or_else(|| "unlimited".to_string(), bytes),
                opt_bytes(m.usage_bytes),
                opt_bytes(m.max_usage_bytes),
                opt_num(m.failcnt)
            );
            if let Some(k) = m.oom_kills {
                let _ = write!(s, ", oom_kills {k}");
            }
            line(o, &s);
        }
        (m, _) => {
            line(o, "Limit:     host memory (no cgroup limit was reached)");
            if let Some(m) = m {
                line(
                    o,
                    &format!(
                        "           victim's cgroup {}: limit {}, usage {}",
                        clean(&m.path),
                        m.limit_bytes.map_or_else(|| "unlimited".to_string(), bytes),
                        opt_bytes(m.usage_bytes)
                    ),
                );
            }
        }
    }
}

/// The victim's cgroup and its ancestors (limits, memory.high, events, PSI), the pre-OOM
/// pressure evidence of the binding level, and the other victims of an oom.group kill.
fn levels_section(o: &mut String, r: &OomReport) {
    if r.memcg_levels.is_empty() && r.oom_group.is_none() {
        return;
    }
    if !r.memcg_levels.is_empty() {
        blank(o);
        let how = r.binding_source.as_ref().map(name).unwrap_or_default();
        line(
            o,
            &format!("Cgroup levels (victim's first; * = the limit that fired, by {how})"),
        );
        for l in &r.memcg_levels {
            let mark = if r.binding_memcg.as_deref() == Some(l.path.as_str()) {
                "*"
            } else {
                " "
            };
            let mut s = format!(
                "  {mark} {:<32} max {:>9}  high {:>9}  usage {:>9}",
                clip_left(&clean(&l.path), 32),
                l.limit_bytes.map_or_else(|| "-".to_string(), bytes),
                l.high_bytes.map_or_else(|| "-".to_string(), bytes),
                opt_bytes(l.usage_bytes)
            );
            if let Some(e) = &l.events {
                let _ = write!(
                    s,
                    "  events high {} max {} oom {} oom_kill {}",
                    opt_num(e.high),
                    opt_num(e.max),
                    opt_num(e.oom),
                    opt_num(e.oom_kill)
                );
            }
            if let Some(p) = &l.pressure {
                let _ = write!(s, "  PSI some {:.1}%", p.some_avg10);
            }
            if l.oom_group == Some(true) {
                s.push_str("  oom.group");
            }
            line(o, &s);
        }
    }
    if let (Some(first), Some(last)) = (r.memcg_timeline.first(), r.memcg_timeline.last()) {
        let rise = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0).saturating_sub(a.unwrap_or(0));
        let peak_psi = r
            .memcg_timeline
            .iter()
            .filter_map(|s| s.psi_some_avg10)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        line(
            o,
            &format!(
                "  before the kill ({} samples over {}): +{} high (throttled) and +{} max events, PSI some up to {}",
                r.memcg_timeline.len(),
                secs(-first.t_secs),
                rise(first.high_events, last.high_events),
                rise(first.max_events, last.max_events),
                peak_psi.map_or_else(|| "-".to_string(), |p| format!("{p:.1}%"))
            ),
        );
    }
    if let Some(g) = &r.oom_group {
        blank(o);
        line(
            o,
            &format!(
                "OOM group: {} has memory.oom.group set: {} processes killed together (group {})",
                clean(&g.memcg),
                g.victims.len(),
                g.group_id
            ),
        );
        for v in &g.victims {
            let comm = v.comm.as_deref().map_or_else(|| "?".to_string(), clean);
            line(o, &format!("  pid {:<8} {:<16} report {}", v.pid, comm, v.report));
        }
    }
}

fn host_section(o: &mut String, r: &OomReport) {
    let h = &r.host;
    line(o, "Host memory");
    line(
        o,
        &format!(
            "  MemTotal {}, MemAvailable {}",
            opt_bytes(h.mem_total_bytes),
            opt_bytes(h.mem_available_bytes)
        ),
    );
    let swap = match (h.swap_used_bytes, h.swap_total_bytes) {
        (_, Some(0)) => "none".to_string(),
        (u, t) => format!("{} used of {}", opt_bytes(u), opt_bytes(t)),
    };
    let psi = |v: Option<f64>| v.map_or_else(|| "unknown".to_string(), |x| format!("{}%", num(x, 2)));
    line(
        o,
        &format!(
            "  swap {swap}; memory pressure (PSI avg10) some {}, full {}",
            psi(h.psi_some_avg10),
            psi(h.psi_full_avg10)
        ),
    );
    if !h.parts.is_empty() {
        line(o, "  where the memory was at the kill:");
        for p in &h.parts {
            let what = match &p.name {
                Some(n) => format!("{} {n}", p.part),
                None => p.part.clone(),
            };
            let growing = if p.growth_bytes_per_sec.abs() >= 1024.0 {
                format!("  {}/s", signed_bytes(p.growth_bytes_per_sec))
            } else {
                String::new()
            };
            line(
                o,
                &format!(
                    "    {what:<32} {:>11}{growing}{}",
                    bytes(p.bytes),
                    if p.leak_suspected { "  LEAK SUSPECTED" } else { "" }
                ),
            );
        }
    }
}

fn analysis_section(o: &mut String, r: &OomReport) {
    line(o, "Analysis");
    match &r.analysis {
        Some(a) => line(
            o,
            &format!(
                "  pattern {}{}, growth {}/s, confidence {}%",
                name(&a.pattern),
                if a.leak { " (a leak)" } else { " (not a leak)" },
                signed_bytes(a.growth_bytes_per_sec),
                num(a.confidence * 100.0, 0)
            ),
        ),
        None => line(o, "  no verdict (too few samples of the victim)"),
    }
    match (r.flagged, r.flagged_secs_before) {
        (true, Some(s)) => line(o, &format!("  flagged as a leak {} before the kill", secs(s))),
        (true, None) => line(o, "  flagged as a leak before the kill"),
        (false, _) => line(o, "  not flagged as a leak before the kill"),
    }
    match (r.predicted, r.lead_time_secs) {
        (true, lead) => {
            let mut s = format!(
                "  OOM kill predicted, lead time {}",
                lead.map_or_else(|| "unknown".to_string(), secs)
            );
            if let Some(eta) = r.predicted_eta_secs {
                let _ = write!(s, " (time to OOM was estimated at {})", secs(eta));
            }
            line(o, &s);
        }
        (false, _) => line(o, "  OOM kill not predicted"),
    }
}

fn growers(o: &mut String, title: &str, g: &[Grower]) {
    if g.is_empty() {
        return;
    }
    blank(o);
    let more = g.len().saturating_sub(MAX_GROWERS);
    line(
        o,
        &format!(
            "{title} (* = the victim){}",
            if more > 0 {
                format!(", {more} more not shown")
            } else {
                String::new()
            }
        ),
    );
    line(
        o,
        &format!(
            "  {:>7}  {:<16} {:>12} {:>11}  PATTERN",
            "PID", "COMM", "GROWTH/S", "FOOTPRINT"
        ),
    );
    for x in g.iter().take(MAX_GROWERS) {
        line(
            o,
            &format!(
                "{} {:>7}  {:<16} {:>12} {:>11}  {}",
                if x.is_victim { '*' } else { ' ' },
                x.pid,
                clip(&clean(&x.comm), 16),
                signed_bytes(x.growth_bytes_per_sec),
                bytes(x.footprint_bytes),
                x.pattern.as_ref().map_or_else(|| "-".to_string(), name)
                    + &x.container
                        .as_ref()
                        .map_or_else(String::new, |c| format!("  {}", short_id(c)))
            ),
        );
    }
}

fn syscalls(o: &mut String, r: &OomReport) {
    if r.last_syscalls.is_empty() {
        return;
    }
    blank(o);
    let n = r.last_syscalls.len();
    let shown = &r.last_syscalls[n.saturating_sub(MAX_SYSCALLS)..];
    line(
        o,
        &format!(
            "Last memory syscalls of the victim ({} of {n}, newest last)",
            shown.len()
        ),
    );
    line(
        o,
        &format!(
            "  {:<10} {:>11} {:>12} {:>4} {:>9}",
            "CALL", "SIZE", "DELTA", "OK", "BEFORE"
        ),
    );
    for c in shown {
        let before = if r.kill_ts_ns > 0 && c.ts_ns > 0 && c.ts_ns <= r.kill_ts_ns {
            secs((r.kill_ts_ns - c.ts_ns) as f64 / 1e9)
        } else {
            "?".to_string()
        };
        line(
            o,
            &format!(
                "  {:<10} {:>11} {:>12} {:>4} {:>9}",
                clip(&clean(&c.call), 10),
                bytes(c.len),
                signed_bytes(c.delta as f64),
                if c.ok { "yes" } else { "no" },
                before
            ),
        );
    }
}

fn snapshot(o: &mut String, r: &OomReport, s: &Snapshot) {
    blank(o);
    let before = r.kill_unix_ms.saturating_sub(s.taken_unix_ms) as f64 / 1000.0;
    line(
        o,
        &format!(
            "Pre-OOM snapshot of pid {} ({}), taken {} before the kill",
            s.pid,
            clean(&s.comm),
            secs(before)
        ),
    );
    line(
        o,
        &format!(
            "  time to OOM was then estimated at {}; limit: {}",
            secs(s.eta_secs),
            clean(&s.limit)
        ),
    );
    let totals: Vec<String> = ["Rss", "Pss", "Anonymous", "Swap", "Shared_Clean", "Private_Dirty"]
        .iter()
        .filter_map(|k| s.smaps_rollup.get(*k).map(|v| format!("{k} {}", bytes(*v))))
        .collect();
    if !totals.is_empty() {
        line(o, &format!("  smaps_rollup: {}", totals.join(", ")));
    }
    let status: Vec<String> = ["VmPeak", "VmHWM", "Threads"]
        .iter()
        .filter_map(|k| s.status.get(*k).map(|v| format!("{k} {}", clean(v.trim()))))
        .collect();
    if !status.is_empty() {
        line(o, &format!("  status: {}", status.join(", ")));
    }
    if s.top_mappings.is_empty() {
        return;
    }
    line(
        o,
        &format!(
            "  {:>11} {:>11} {:>11} {:>11}  PERM  MAPPING",
            "RSS", "ANON", "SWAP", "SIZE"
        ),
    );
    for m in s.top_mappings.iter().take(MAX_MAPPINGS) {
        let path = if m.path.is_empty() {
            "[anonymous]".to_string()
        } else {
            clean(&m.path)
        };
        line(
            o,
            &format!(
                "  {:>11} {:>11} {:>11} {:>11}  {:<4}  {} @ {:#x}",
                bytes(m.rss_bytes),
                bytes(m.anon_bytes),
                bytes(m.swap_bytes),
                bytes(m.end.saturating_sub(m.start)),
                clean(&m.perms),
                clip_left(&path, 48),
                m.start
            ),
        );
    }
}

// ---------------------------------------------------------------------------
// chart
// ---------------------------------------------------------------------------

/// An ASCII chart of `points` (t_secs ≤ 0 relative to the kill): `height` plot rows of `width`
/// columns, each column the max of the samples that fall in it (held forward over empty columns),
/// y from 0 to the largest value (or to `limit` when it is close above it), x in seconds before
/// the kill, which is the right edge. Never panics; an empty series gives one explanatory line.
fn chart(points: &[Point], width: usize, height: usize, limit: Option<u64>) -> Vec<String> {
    let width = width.max(2);
    let height = height.max(1);
    let pts: Vec<(f64, u64)> = points
        .iter()
        .filter(|p| p.t_secs.is_finite())
        .map(|p| (p.t_secs.min(0.0), p.footprint_bytes))
        .collect();
    if pts.is_empty() {
        return vec!["  (no samples: leaktrace had not seen the victim grow before the kill)".into()];
    }
    let earliest = pts.iter().map(|p| p.0).fold(0.0_f64, f64::min);
    let span = if earliest < 0.0 { -earliest } else { 1.0 };
    let mut cols: Vec<Option<u64>> = vec![None; width];
    for &(t, v) in &pts {
        // `as` saturates (and maps NaN to 0), so the index is always in range.
        let c = (((t + span) / span) * (width - 1) as f64).round() as usize;
        let c = c.min(width - 1);
        cols[c] = Some(cols[c].map_or(v, |o| o.max(v)));
    }
    // The footprint holds between samples: carry the last value over empty columns.
    let mut last = None;
    for c in cols.iter_mut() {
        match c {
            Some(v) => last = Some(*v),
            None => *c = last,
        }
    }
    let max = cols.iter().flatten().copied().max().unwrap_or(0);
    let top = match limit {
        Some(l) if l >= max && (l as f64) <= 4.0 * max as f64 => l,
        _ => max,
    }
    .max(1);
    let (unit, div) = if top as f64 >= GIB { ("GiB", GIB) } else { ("MiB", MIB) };
    let top_u = top as f64 / div;
    let decimals = if top_u >= 100.0 {
        0
    } else if top_u >= 10.0 {
        1
    } else {
        2
    };
    let label = |frac: f64| format!("{} {unit}", num(top_u * frac, decimals));
    let label_w = label(1.0).len().max(label(0.0).len());

    let mut out = Vec::with_capacity(height + 3);
    if top == limit.unwrap_or(0) && top > max {
        out.push(format!("  top of the chart = the cgroup limit ({})", bytes(top)));
    } else if top == limit.unwrap_or(0) {
        out.push(format!("  the victim reached the cgroup limit ({})", bytes(top)));
    }
    let heights: Vec<Option<f64>> = cols
        .iter()
        .map(|c| c.map(|v| v as f64 / top as f64 * height as f64))
        .collect();
    for row in 0..height {
        let k = (height - 1 - row) as f64; // rows counted from the bottom
        let name = if row.is_multiple_of(3) {
            label((height - row) as f64 / height as f64)
        } else {
            String::new()
        };
        let mut s = format!("  {name:>label_w$} |");
        for h in &heights {
            s.push(match h {
                Some(h) if *h >= k + 0.75 => '#',
                Some(h) if *h > k + 0.25 => '.',
                Some(_) if row == height - 1 => '_',
                _ => ' ',
            });
        }
        s.push('|');
        if row == 0 {
            s.push_str("<- OOM kill");
        }
        out.push(s);
    }
    out.push(format!("  {:>label_w$} +{}+", label(0.0), "-".repeat(width)));

    // x axis: seconds before the kill at 0, ¼, ½, ¾ of the way, and the kill at the right edge.
    let origin = label_w + 3; // where column 0 is printed
    let mut axis: Vec<char> = vec![' '; origin + width + 2];
    let mut free_from = 0;
    for q in 0..4 {
        let frac = q as f64 / 4.0;
        let col = origin + (frac * (width - 1) as f64).round() as usize;
        let text = ago(-span * (1.0 - frac));
        if col < free_from || col + text.len() + 1 > origin + width - 4 {
            continue;
        }
        for (i, ch) in text.chars().enumerate() {
            axis[col + i] = ch;
        }
        free_from = col + text.len() + 1;
    }
    let end = "kill";
    let start = origin + width + 1 - end.len();
    if start >= free_from {
        for (i, ch) in end.chars().enumerate() {
            axis[start + i] = ch;
        }
    }
    out.push(axis.into_iter().collect::<String>().trim_end().to_string());
    out
}

/// A time before the kill for the x axis: `-45s`, `-2.5m`, `-3h`.
fn ago(t: f64) -> String {
    let a = -t;
    if a < 0.05 {
        "0s".into()
    } else if a < 10.0 {
        format!("-{a:.1}s")
    } else if a < 120.0 {
        format!("-{a:.0}s")
    } else if a < 7200.0 {
        format!("-{}m", num(a / 60.0, if a < 600.0 { 1 } else { 0 }))
    } else if a < 172_800.0 {
        format!("-{}h", num(a / 3600.0, if a < 36_000.0 { 1 } else { 0 }))
    } else {
        format!("-{}d", num(a / 86_400.0, 0))
    }
}

// ---------------------------------------------------------------------------
// small helpers
// ---------------------------------------------------------------------------

/// `containerd 0123456789ab, pod 1b0e8f7a-… (burstable)`.
fn container(c: &ContainerInfo) -> String {
    let mut s = format!("{} {}", name(&c.runtime), short_id(c));
    if let Some(pod) = &c.pod_uid {
        let _ = write!(s, ", pod {}", clean(pod));
    }
    if let Some(q) = &c.qos {
        let _ = write!(s, " ({})", clean(q));
    }
    s
}

/// The first 12 characters of the id, as `docker ps` shows it.
fn short_id(c: &ContainerInfo) -> String {
    clean(&c.id.chars().take(12).collect::<String>())
}

fn line(o: &mut String, s: &str) {
    o.push_str(s);
    o.push('\n');
}

fn blank(o: &mut String) {
    o.push('\n');
}

fn field(o: &mut String, label: &str, value: Option<String>) {
    line(
        o,
        &format!("  {label:<14}{}", value.unwrap_or_else(|| "unknown".into())),
    );
}

fn is_missing(r: &OomReport, field: &str) -> bool {
    r.victim.missing.iter().any(|m| m == field)
}

/// The value unless the report lists the field as missing.
fn known<T>(r: &OomReport, field: &str, v: Option<T>) -> Option<T> {
    if is_missing(r, field) { None } else { v }
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_string(), bytes)
}

fn opt_num(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_string(), |x| x.to_string())
}

/// A float with `decimals`, or `?` when not finite (a corrupt or hand-edited report).
fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "?".to_string()
    }
}

/// A duration in seconds: `0.4 s`, `42 s`, `12.5 min`, `3.0 h`.
fn secs(v: f64) -> String {
    if !v.is_finite() {
        "?".to_string()
    } else if v.abs() < 10.0 {
        format!("{v:.1} s")
    } else if v.abs() < 600.0 {
        format!("{v:.0} s")
    } else if v.abs() < 36_000.0 {
        format!("{:.1} min", v / 60.0)
    } else {
        format!("{:.1} h", v / 3600.0)
    }
}

/// A serde enum's wire name (`mountain`, `v2`); Debug if it is not a plain string.
fn name<T: Serialize + Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{v:?}").to_lowercase(),
    }
}

/// Control characters (a terminal escape in a comm or path) shown as `?`.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

/// Keep the end of a long path (the file name matters most).
fn clip_left(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        s.to_string()
    } else {
        let mut t = String::from("...");
        t.extend(s.chars().skip(len - n.saturating_sub(3)));
        t
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{borrow::Cow, collections::BTreeMap};

    use super::*;
    use crate::{
        analysis::classify::Pattern,
        report::{Analysis, Host, Memcg, REPORT_VERSION, Trigger, Victim},
        state::SyscallNote,
        sys::{
            cgroup::CgroupVersion,
            container::{ContainerInfo, Runtime},
            proc::Mapping,
        },
    };

    const MB: u64 = 1 << 20;

    /// A full report (every Option set): a 256 MiB cgroup, a victim growing 4 MiB/s for 60 s.
    pub(crate) fn sample() -> OomReport {
        let kill_unix_ms = 1_764_000_000_000;
        let kill_ts_ns = 5_000_000_000_000;
        let timeline = (0..=60u32)
            .map(|i| Point {
                t_secs: f64::from(i) - 60.0,
                // a rising floor with a sawtooth on top: a mountain
                footprint_bytes: (16 * MB + 4 * MB * u64::from(i) + u64::from(i % 5) * 3 * MB).min(256 * MB),
            })
            .collect();
        let grower = |pid: u32, comm: &str, g: f64, fp: u64, victim: bool| Grower {
            pid,
            comm: comm.into(),
            growth_bytes_per_sec: g,
            footprint_bytes: fp,
            rss_bytes: fp,
            pattern: Some(Pattern::Mountain),
            memcg: Some("/leak-test".into()),
            container: None,
            is_victim: victim,
        };
        OomReport {
            version: REPORT_VERSION,
            id: "oom-1764000000000-4242".into(),
            kill_unix_ms,
            kill_ts_ns,
            kind: "kernel".into(),
            victim: Victim {
                pid: 4242,
                comm: Some("lt-workload".into()),
                cmdline: Some(vec![
                    "/usr/local/bin/lt-workload".into(),
                    "--leak".into(),
                    "4M".into(),
                    "--password=hunter2".into(),
                ]),
                uid: Some(1000),
                oom_score_adj: Some(200),
                total_vm_bytes: Some(300 * MB),
                anon_rss_bytes: Some(250 * MB),
                file_rss_bytes: Some(3 * MB),
                shmem_rss_bytes: Some(0),
                pgtables_bytes: Some(600 * 1024),
                container: Some(ContainerInfo {
                    runtime: Runtime::Containerd,
                    id: "0123456789abcdef".repeat(4),
                    pod_uid: Some("1b0e8f7a-3c2d-4e5f-8a9b-0c1d2e3f4a5b".into()),
                    qos: Some("burstable".into()),
                }),
                missing: vec![],
            },
            trigger: Trigger {
                pid: 4242,
                tid: 4243,
                comm: "lt-workload".into(),
            },
            memcg: Some(Memcg {
                path: "/leak-test".into(),
                version: CgroupVersion::V2,
                limit_bytes: Some(256 * MB),
                usage_bytes: Some(256 * MB - 4096),
                max_usage_bytes: Some(256 * MB),
                failcnt: Some(1234),
                oom_kills: Some(1),
            }),
            binding_limit: "memcg".into(),
            binding_memcg: None,
            binding_source: None,
            memcg_levels: Vec::new(),
            memcg_timeline: Vec::new(),
            oom_group: None,
            host: Host {
                mem_total_bytes: Some(8 << 30),
                mem_available_bytes: Some(6 << 30),
                swap_total_bytes: Some(2 << 30),
                swap_used_bytes: Some(0),
                psi_some_avg10: Some(1.25),
                psi_full_avg10: Some(0.5),
                parts: vec![
                    crate::report::HostPart {
                        part: "process_anon".into(),
                        name: None,
                        bytes: 5 << 30,
                        growth_bytes_per_sec: 0.0,
                        leak_suspected: false,
                    },
                    crate::report::HostPart {
                        part: "tmpfs".into(),
                        name: Some("/dev/shm".into()),
                        bytes: 1 << 30,
                        growth_bytes_per_sec: 2097152.0,
                        leak_suspected: true,
                    },
                ],
            },
            interval_secs: 1.0,
            timeline,
            analysis: Some(Analysis {
                pattern: Pattern::Mountain,
                leak: true,
                confidence: 0.97,
                growth_bytes_per_sec: 4.0 * MB as f64,
            }),
            flagged: true,
            flagged_secs_before: Some(42.0),
            predicted: true,
            lead_time_secs: Some(30.0),
            predicted_eta_secs: Some(28.5),
            top_growers_cgroup: vec![
                grower(4242, "lt-workload", 4.0 * MB as f64, 256 * MB, true),
                grower(4300, "helper", 1024.0, 2 * MB, false),
            ],
            top_growers_host: vec![
                grower(4242, "lt-workload", 4.0 * MB as f64, 256 * MB, true),
                grower(77, "postgres", -2048.0, 900 * MB, false),
            ],
            last_syscalls: vec![
                SyscallNote {
                    ts_ns: kill_ts_ns - 1_500_000_000,
                    call: Cow::Borrowed("mmap"),
                    addr: 0x7f00_0000_0000,
                    len: 4 * MB,
                    delta: 4 * MB as i64,
                    ok: true,
                },
                SyscallNote {
                    ts_ns: kill_ts_ns - 200_000_000,
                    call: Cow::Borrowed("brk"),
                    addr: 0x5555_0000,
                    len: 132 * 1024,
                    delta: -(132 * 1024),
                    ok: false,
                },
            ],
            snapshot: Some(Snapshot {
                pid: 4242,
                comm: "lt-workload".into(),
                taken_unix_ms: kill_unix_ms - 12_000,
                eta_secs: 11.0,
                limit: "memcg /leak-test 256.0 MiB".into(),
                smaps_rollup: BTreeMap::from([
                    ("Rss".to_string(), 200 * MB),
                    ("Anonymous".to_string(), 197 * MB),
                    ("Swap".to_string(), 0),
                ]),
                status: BTreeMap::from([("VmHWM".to_string(), "204800 kB".to_string())]),
                top_mappings: vec![
                    Mapping {
                        start: 0x7f00_0000_0000,
                        end: 0x7f00_0c80_0000,
                        perms: "rw-p".into(),
                        path: String::new(),
                        rss_bytes: 190 * MB,
                        anon_bytes: 190 * MB,
                        swap_bytes: 0,
                    },
                    Mapping {
                        start: 0x5555_0000,
                        end: 0x5565_0000,
                        perms: "rw-p".into(),
                        path: "[heap]".into(),
                        rss_bytes: MB,
                        anon_bytes: MB,
                        swap_bytes: 0,
                    },
                ],
            }),
            top_sites: Vec::new(),
            runtime: None,
        }
    }

    /// The same report with every Option None (and nothing learnt about the victim).
    fn bare() -> OomReport {
        let mut r = sample();
        r.victim = Victim {
            pid: 4242,
            comm: None,
            cmdline: None,
            uid: None,
            oom_score_adj: None,
            total_vm_bytes: None,
            anon_rss_bytes: None,
            file_rss_bytes: None,
            shmem_rss_bytes: None,
            pgtables_bytes: None,
            container: None,
            missing: vec!["comm".into(), "cmdline".into(), "uid".into()],
        };
        r.trigger = Trigger {
            pid: 1,
            tid: 1,
            comm: "systemd".into(),
        };
        r.memcg = None;
        r.binding_limit = "host".into();
        r.host = Host {
            mem_total_bytes: None,
            mem_available_bytes: None,
            swap_total_bytes: None,
            swap_used_bytes: None,
            psi_some_avg10: None,
            psi_full_avg10: None,
            parts: Vec::new(),
        };
        r.timeline.clear();
        r.analysis = None;
        r.flagged = false;
        r.flagged_secs_before = None;
        r.predicted = false;
        r.lead_time_secs = None;
        r.predicted_eta_secs = None;
        r.top_growers_cgroup.clear();
        r.top_growers_host.clear();
        r.last_syscalls.clear();
        r.snapshot = None;
        r
    }

    fn plot_rows(lines: &[String]) -> Vec<&String> {
        lines
            .iter()
            .filter(|l| l.contains(" |") && l.ends_with('|') || l.ends_with("<- OOM kill"))
            .collect()
    }

    #[test]
    fn full_report_has_the_facts() {
        let r = sample();
        let text = render(&r);
        for want in [
            "pid 4242 (lt-workload)",
            "2025-11-24 16:00:00 UTC",
            "memory cgroup /leak-test (v2)",
            "limit 256.0 MiB",
            "max usage 256.0 MiB",
            "failcnt 1234",
            "/usr/local/bin/lt-workload --leak 4M --password=<redacted>",
            "container     containerd 0123456789ab, pod 1b0e8f7a-3c2d-4e5f-8a9b-0c1d2e3f4a5b (burstable)",
            "uid           1000",
            "oom_score_adj 200",
            "anon RSS      250.0 MiB",
            "page tables   600.0 KiB",
            "(the victim itself)",
            "MemTotal 8.0 GiB, MemAvailable 6.0 GiB",
            "some 1.25%",
            "where the memory was at the kill:",
            "tmpfs /dev/shm",
            "+2.0 MiB/s  LEAK SUSPECTED",
            "pattern mountain (a leak), growth +4.0 MiB/s, confidence 97%",
            "flagged as a leak 42 s before the kill",
            "predicted, lead time 30 s",
            "Top growers in the cgroup",
            "Top growers on the host",
            "*    4242  lt-workload",
            "postgres",
            "mmap",
            "-132.0 KiB",
            "1.5 s",
            "Pre-OOM snapshot of pid 4242",
            "12 s before the kill",
            "Rss 200.0 MiB",
            "[anonymous]",
            "[heap]",
            "<- OOM kill",
            "-60s",
            "kill",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("hunter2"));
        let n = text.lines().count();
        assert!((40..=80).contains(&n), "{n} lines:\n{text}");
        assert!(text.lines().all(|l| l.len() <= 110), "{text}");
    }

    #[test]
    fn bare_report_says_unknown() {
        let r = bare();
        let text = render(&r);
        for want in [
            "pid 4242 (?)",
            "command       unknown",
            "uid           unknown",
            "anon RSS      unknown",
            "host memory",
            "(a bystander that was allocating)",
            "MemTotal unknown",
            "no verdict",
            "not flagged",
            "not predicted",
            "no samples",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("Top growers"));
        assert!(!text.contains("snapshot"));
        // A field present but listed as missing is still unknown.
        let mut r = sample();
        r.victim.missing = vec!["uid".into(), "cmdline".into()];
        let text = render(&r);
        assert!(text.contains("uid           unknown"), "{text}");
        assert!(text.contains("command       unknown"), "{text}");
        // Host binding with a (non-binding) cgroup, unlimited, and partial Options.
        let mut r = sample();
        r.binding_limit = "host".into();
        r.memcg.as_mut().unwrap().limit_bytes = None;
        r.predicted = true;
        r.lead_time_secs = None;
        r.flagged_secs_before = None;
        r.host.swap_total_bytes = Some(0);
        let text = render(&r);
        assert!(text.contains("host memory"), "{text}");
        assert!(text.contains("victim's cgroup /leak-test: limit unlimited"), "{text}");
        assert!(text.contains("lead time unknown"), "{text}");
        assert!(text.contains("swap none"), "{text}");
    }

    #[test]
    fn one_line_summary() {
        let s = one_line(&sample());
        assert_eq!(
            s,
            "2025-11-24 16:00:00 UTC  pid 4242 (lt-workload)  memcg /leak-test  anon-rss 250.0 MiB  \
             mountain leak +4.0 MiB/s  predicted 30 s ahead  [oom-1764000000000-4242]"
        );
        let s = one_line(&bare());
        assert!(s.contains("pid 4242 (?)  host  anon-rss ?  not predicted"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_764_000_000_000), "2025-11-24 16:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(4_107_542_399_999), "2100-02-28 23:59:59");
        assert_eq!(utc(4_107_542_400_000), "2100-03-01 00:00:00");
        // jiff's last instant (it keeps room for any UTC offset in year 9999).
        assert_eq!(utc(253_402_207_200_000), "9999-12-30 22:00:00");
        assert_eq!(utc(253_402_300_799_000), "?");
        assert_eq!(utc(u64::MAX), "?");
    }

    #[test]
    fn chart_dimensions() {
        let r = sample();
        let lines = chart(&r.timeline, CHART_WIDTH, CHART_HEIGHT, Some(256 * MB));
        let rows = plot_rows(&lines);
        assert_eq!(rows.len(), CHART_HEIGHT, "{}", lines.join("\n"));
        for row in &rows {
            let inner = row.split('|').nth(1).unwrap();
            assert_eq!(inner.chars().count(), CHART_WIDTH, "{row}");
        }
        assert!(rows[0].ends_with("|<- OOM kill"));
        assert!(rows[0].contains("256 MiB"), "{}", lines.join("\n"));
        // growing series: the right edge is full, the left edge low
        let col = |row: &str, c: usize| row.split('|').nth(1).unwrap().chars().nth(c).unwrap();
        assert_eq!(col(rows[0], CHART_WIDTH - 1), '#');
        assert_eq!(col(rows[0], 0), ' ');
        // 16 MiB of 256 MiB: three quarters of the bottom row, nothing above
        assert_eq!(col(rows[CHART_HEIGHT - 1], 0), '#');
        assert_eq!(col(rows[CHART_HEIGHT - 2], 0), ' ');
        let axis = lines.last().unwrap();
        assert!(
            axis.trim_start().starts_with("-60s") && axis.ends_with("kill"),
            "{axis}"
        );
        // gigabytes are labelled in GiB
        let big = [
            Point {
                t_secs: -10.0,
                footprint_bytes: 1 << 30,
            },
            Point {
                t_secs: 0.0,
                footprint_bytes: 3 << 30,
            },
        ];
        let lines = chart(&big, CHART_WIDTH, CHART_HEIGHT, None);
        assert!(lines.iter().any(|l| l.contains("3.00 GiB")), "{}", lines.join("\n"));
    }

    #[test]
    fn chart_edge_cases_do_not_panic() {
        let check = |pts: &[Point], limit: Option<u64>| {
            let lines = chart(pts, CHART_WIDTH, CHART_HEIGHT, limit);
            assert_eq!(plot_rows(&lines).len(), CHART_HEIGHT, "{}", lines.join("\n"));
            lines
        };
        // empty: one explanatory line
        let lines = chart(&[], CHART_WIDTH, CHART_HEIGHT, None);
        assert_eq!(lines.len(), 1);
        // one point, at the kill or before it
        check(
            &[Point {
                t_secs: 0.0,
                footprint_bytes: 5 * MB,
            }],
            None,
        );
        check(
            &[Point {
                t_secs: -3.0,
                footprint_bytes: 5 * MB,
            }],
            Some(6 * MB),
        );
        // constant, all zero, huge
        check(
            &[Point {
                t_secs: -1.0,
                footprint_bytes: 7 * MB,
            }; 10],
            None,
        );
        let constant: Vec<Point> = (0..50)
            .map(|i| Point {
                t_secs: -f64::from(i),
                footprint_bytes: 7 * MB,
            })
            .collect();
        let lines = check(&constant, None);
        let rows = plot_rows(&lines);
        assert!(
            rows.iter()
                .all(|r| r.split('|').nth(1).unwrap() == "#".repeat(CHART_WIDTH))
        );
        let zeros: Vec<Point> = (0..30)
            .map(|i| Point {
                t_secs: -f64::from(i),
                footprint_bytes: 0,
            })
            .collect();
        let lines = check(&zeros, None);
        assert!(lines.iter().any(|l| l.contains("____")));
        check(
            &[
                Point {
                    t_secs: -5.0,
                    footprint_bytes: u64::MAX,
                },
                Point {
                    t_secs: 0.0,
                    footprint_bytes: u64::MAX,
                },
            ],
            Some(u64::MAX),
        );
        check(
            &[
                Point {
                    t_secs: -5.0,
                    footprint_bytes: 0,
                },
                Point {
                    t_secs: 0.0,
                    footprint_bytes: u64::MAX,
                },
            ],
            Some(1),
        );
        // thousands of points over a day; odd times (positive, NaN, infinite) are tolerated
        let many: Vec<Point> = (0..100_000u64)
            .map(|i| Point {
                t_secs: -86_400.0 + i as f64 * 0.864,
                footprint_bytes: i * 1000,
            })
            .collect();
        let lines = check(&many, None);
        assert!(
            lines.last().unwrap().contains("-1.0d") || lines.last().unwrap().contains("-24h"),
            "{}",
            lines.join("\n")
        );
        check(
            &[
                Point {
                    t_secs: 5.0,
                    footprint_bytes: MB,
                },
                Point {
                    t_secs: f64::NAN,
                    footprint_bytes: MB,
                },
                Point {
                    t_secs: f64::NEG_INFINITY,
                    footprint_bytes: MB,
                },
                Point {
                    t_secs: -1e300,
                    footprint_bytes: MB,
                },
                Point {
                    t_secs: -1e-300,
                    footprint_bytes: MB,
                },
            ],
            None,
        );
        let only_nan = [Point {
            t_secs: f64::NAN,
            footprint_bytes: 1,
        }];
        assert_eq!(chart(&only_nan, CHART_WIDTH, CHART_HEIGHT, None).len(), 1);
        // tiny sizes
        let _ = chart(&zeros, 0, 0, None);
        let _ = chart(&zeros, 1, 1, Some(0));
    }

    #[test]
    fn odd_values_render() {
        let mut r = sample();
        r.kill_unix_ms = u64::MAX;
        r.kill_ts_ns = 0;
        r.interval_secs = f64::NAN;
        r.analysis.as_mut().unwrap().growth_bytes_per_sec = f64::INFINITY;
        r.analysis.as_mut().unwrap().confidence = f64::NAN;
        r.lead_time_secs = Some(f64::NEG_INFINITY);
        r.victim.comm = Some("evil\x1b[31m".into());
        r.victim.cmdline = Some(vec![]);
        r.snapshot.as_mut().unwrap().taken_unix_ms = u64::MAX;
        r.top_growers_host = (0..20).map(|i| r.top_growers_host[i % 2].clone()).collect();
        r.last_syscalls = (0..40).map(|i| r.last_syscalls[i % 2].clone()).collect();
        r.victim.total_vm_bytes = Some(u64::MAX);
        r.timeline.push(Point {
            t_secs: 0.0,
            footprint_bytes: u64::MAX,
        });
        let text = render(&r);
        assert!(!text.contains('\x1b'));
        assert!(text.contains("15 more not shown"), "{text}");
        assert!(text.contains("(8 of 40, newest last)"), "{text}");
        let _ = one_line(&r);
    }

    #[test]
    fn json_round_trip_renders_the_same() {
        let r = sample();
        let back: OomReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(render(&back), render(&r));
    }
}
