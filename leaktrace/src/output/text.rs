//! The text form of every [`Event`]: one readable line (or a small table) per event.
use std::fmt::Write as _;

use super::{Event, SeriesSummary, SeriesVerdict, SitesTable, Task};
use crate::{
    analysis::predict::LimitKind,
    report::render,
    sites::short,
    util::{bytes, signed_bytes},
};

fn ret_str(ok: bool, errno: Option<i64>, addr: u64) -> String {
    match errno {
        Some(e) if !ok => format!("error {}", std::io::Error::from_raw_os_error(e as i32)),
        _ => format!("{addr:#x}"),
    }
}

fn who(t: &Task) -> String {
    format!("{:>7} {:<16}", t.pid, t.comm)
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), bytes)
}

impl Event {
    /// The text form: what `--json` is not given.
    pub fn text(&self) -> String {
        match self {
            Event::Mmap {
                task,
                len,
                prot,
                flags,
                fd,
                addr,
                ok,
                errno,
                ..
            } => format!(
                "{} mmap    {:>10} prot={prot:#x} flags={flags:#x} fd={fd} -> {}",
                who(task),
                bytes(*len),
                ret_str(*ok, *errno, *addr)
            ),
            Event::Munmap {
                task,
                addr,
                len,
                ok,
                errno,
            } => format!(
                "{} munmap  {:>10} at {addr:#x} -> {}",
                who(task),
                bytes(*len),
                ret_str(*ok, *errno, 0)
            ),
            Event::Brk {
                task, old_brk, new_brk, ..
            } => match old_brk {
                Some(o) => {
                    let d = i128::from(*new_brk) - i128::from(*o);
                    let delta = if d >= 0 {
                        format!("+{}", bytes(d as u64))
                    } else {
                        format!("-{}", bytes((-d) as u64))
                    };
                    format!("{} brk     {delta:>10} {o:#x} -> {new_brk:#x}", who(task))
                }
                None => format!("{} brk     {:>10} -> {new_brk:#x}", who(task), "?"),
            },
            Event::Mremap {
                task,
                old_len,
                new_len,
                addr,
                ok,
                errno,
                ..
            } => format!(
                "{} mremap  {:>10} -> {} -> {}",
                who(task),
                bytes(*old_len),
                bytes(*new_len),
                ret_str(*ok, *errno, *addr)
            ),
            Event::Fork { task, child_pid } => format!("{} fork    child {child_pid}", who(task)),
            Event::Exec { task, filename, .. } => format!("{} exec    {filename}", who(task)),
            Event::Exit { task, exit_code } => match exit_code {
                Some(c) => format!("{} exit    code {c}", who(task)),
                None => format!("{} exit    code unknown (killed by a signal?)", who(task)),
            },
            Event::OomKill {
                task,
                anon_rss_bytes,
                file_rss_bytes,
                shmem_rss_bytes,
                total_vm_bytes,
                oom_score_adj,
                trigger_pid,
                trigger_comm,
                context,
                ..
            } => match context {
                Some(c) => {
                    let mut s = render::one_line(&c.full);
                    if let Some(p) = &c.report {
                        let _ = write!(s, "\n           report: {}", p.display());
                    }
                    s
                }
                None => format!(
                    "{} OOM-KILLED anon-rss={} file-rss={} shmem-rss={} total-vm={} oom_score_adj={} (OOM killer ran in pid {trigger_pid} {trigger_comm})",
                    who(task),
                    opt_bytes(*anon_rss_bytes),
                    opt_bytes(*file_rss_bytes),
                    opt_bytes(*shmem_rss_bytes),
                    opt_bytes(*total_vm_bytes),
                    oom_score_adj.map_or("?".into(), |v| v.to_string()),
                ),
            },
            Event::Dropped { kind, count, .. } => {
                format!(
                    "{:>7} {:<16} DROPPED {count} {kind} events (ring buffer full)",
                    "-", "-"
                )
            }
            Event::LeakSuspected {
                subject: s,
                rss_bytes,
                footprint_bytes,
                verdict: v,
                signs,
                gc,
                ..
            } => {
                let mut t = format!(
                    "[{:>7.1}s] LEAK SUSPECTED pid {} ({}): footprint {} growing {}/s, rss {} ({}, confidence {:.2})",
                    s.t,
                    s.pid,
                    s.comm,
                    bytes(*footprint_bytes),
                    signed_bytes(v.growth_bytes_per_sec),
                    bytes(*rss_bytes),
                    v.pattern,
                    v.confidence
                );
                if let Some(g) = gc {
                    let _ = write!(t, "\n           signs: {}; {}", signs.join(", "), gc_text(g));
                }
                t
            }
            Event::LeakCleared {
                subject: s,
                reason,
                footprint_bytes,
                verdict,
                ..
            } => format!(
                "[{:>7.1}s] leak cleared   pid {} ({}): {reason}, now {}, footprint {}",
                s.t,
                s.pid,
                s.comm,
                verdict.map_or("unknown".to_string(), |v| v.pattern.to_string()),
                bytes(*footprint_bytes)
            ),
            Event::OomPredicted {
                subject: s,
                eta_secs,
                limit,
                limit_bytes,
                growth_bytes_per_sec,
                limit_memcg,
                ..
            } => format!(
                "[{:>7.1}s] OOM PREDICTED  pid {} ({}): {} limit {} reached in ~{eta_secs:.0}s at {}/s{}",
                s.t,
                s.pid,
                s.comm,
                match limit {
                    LimitKind::Memcg => "memcg",
                    LimitKind::Host => "host",
                    LimitKind::JavaHeap => "Java heap",
                },
                bytes(*limit_bytes),
                signed_bytes(*growth_bytes_per_sec),
                limit_memcg.as_ref().map_or(String::new(), |m| format!(" (cgroup {m})")),
            ),
            Event::OomSnapshot { subject: s, path, .. } => match path {
                Some(p) => format!(
                    "[{:>7.1}s] pre-OOM snapshot of pid {} ({}) written to {}",
                    s.t,
                    s.pid,
                    s.comm,
                    p.display()
                ),
                None => format!(
                    "[{:>7.1}s] pre-OOM snapshot of pid {} ({}) taken (not written)",
                    s.t, s.pid, s.comm
                ),
            },
            Event::Sample {
                subject: s,
                processes,
                footprint_bytes,
                verdict: v,
                ..
            } => format!(
                "[{:>6.1}s] {processes} processes, footprint {}, {} ({:+.0} B/s)",
                s.t,
                bytes(*footprint_bytes),
                v.pattern,
                v.growth_bytes_per_sec
            ),
            Event::Verdict {
                pid,
                comm,
                start_rss_bytes,
                end_rss_bytes,
                peak_rss_bytes,
                samples,
                duration_secs,
                verdict: v,
                sites,
                signs,
                gc_pid,
                gc,
                java_oom,
                ..
            } => {
                let what = if v.leak { "LEAK" } else { "no leak" };
                let mut s = format!(
                    "verdict: {what} — pid {pid} ({comm}) is {} (confidence {:.2}), floor growth {}/s; rss {} → {} (peak {}), {samples} samples over {duration_secs:.0}s",
                    v.pattern,
                    v.confidence,
                    signed_bytes(v.growth_bytes_per_sec),
                    bytes(*start_rss_bytes),
                    bytes(*end_rss_bytes),
                    bytes(*peak_rss_bytes),
                );
                if !signs.is_empty() {
                    let _ = write!(s, "\n  signs: {}", signs.join(", "));
                }
                if let (Some(p), Some(g)) = (gc_pid, gc) {
                    let _ = write!(s, "\n  pid {p} {}", gc_text(g));
                }
                if let Some(j) = java_oom {
                    let _ = write!(
                        s,
                        "\n  Java OutOfMemoryError (seen: {}){}",
                        seen_text(j.seen),
                        j.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
                    );
                }
                for site in sites.iter().flat_map(|x| &x.top_sites) {
                    let _ = write!(s, "\n  {:>10}  {}", bytes(site.bytes), short(&site.frames, 6));
                }
                s
            }
            Event::JavaOom {
                subject: s,
                seen,
                error,
                predicted,
                lead_time_secs,
                old_gen,
                report,
                ..
            } => {
                let mut t = format!(
                    "[{:>7.1}s] JAVA OOM       pid {} ({}): OutOfMemoryError, seen {}{}; {}",
                    s.t,
                    s.pid,
                    s.comm,
                    seen_text(*seen),
                    error.as_ref().map_or(String::new(), |e| format!(" ({e})")),
                    match (predicted, lead_time_secs) {
                        (true, Some(l)) => format!("predicted {l:.0}s ahead"),
                        (true, None) => "predicted".to_string(),
                        (false, _) => "not predicted".to_string(),
                    }
                );
                if let Some(o) = old_gen {
                    let _ = write!(
                        t,
                        ", {} {} of {}",
                        o.name,
                        bytes(o.used_after_gc_bytes),
                        o.max_bytes.map_or("?".to_string(), bytes)
                    );
                }
                if let Some(p) = report {
                    let _ = write!(t, "\n           report: {}", p.display());
                }
                t
            }
            Event::HeapHistogram {
                subject: s,
                reason,
                total_bytes,
                total_instances,
                classes,
                diff,
                error,
            } => heap_histogram(
                s,
                *reason,
                *total_bytes,
                *total_instances,
                classes,
                diff.as_ref(),
                error.as_deref(),
            ),
            Event::HeapDiff {
                subject: s,
                before_bytes,
                after_bytes,
                diff,
            } => {
                let mut t = format!(
                    "pid {} ({}): live heap {} → {} ({}{}) in {:.1} s (each after a full collection)\n{:>12} {:>12} {:>12}  CLASS",
                    s.pid,
                    s.comm,
                    bytes(*before_bytes),
                    bytes(*after_bytes),
                    if diff.growth_bytes >= 0 { "+" } else { "-" },
                    bytes(diff.growth_bytes.unsigned_abs()),
                    diff.secs,
                    "GROWTH",
                    "+INSTANCES",
                    "BYTES"
                );
                for c in &diff.classes {
                    let _ = write!(
                        t,
                        "\n{:>12} {:>12} {:>12}  {}",
                        format!("+{}", bytes(c.growth_bytes.unsigned_abs())),
                        format!("{:+}", c.growth_instances),
                        bytes(c.bytes),
                        class_name(&c.name, c.module.as_deref())
                    );
                }
                if diff.classes.is_empty() {
                    t.push_str("\n  (no class grew)");
                }
                if let Some(x) = &diff.suspect {
                    let _ = write!(t, "\nfirst application class by growth: {x}");
                }
                t
            }
            Event::Sites(t) => sites_table(t),
            Event::Scored(l) => format!(
                "{:<11} {:>7} {:<16} {:<5} {:>7.0}s  flagged {}  alarms {}  {}",
                l.outcome,
                l.pid,
                l.comm,
                if l.leak { "leak" } else { "-" },
                l.observed_secs,
                match (l.flag_secs, l.flag_within) {
                    (Some(f), Some(w)) => format!("after {f:.0}s (within {w:.0}s)"),
                    (Some(f), None) => format!("after {f:.0}s"),
                    (None, _) => "never".to_string(),
                },
                l.alarms,
                l.what
            ),
            Event::MemcgPressure {
                memcg,
                usage_bytes,
                high_bytes,
                limit_bytes,
                high_events,
                max_events,
                psi_some_avg10,
                psi_full_avg10,
                t,
                ..
            } => {
                let pct = |v: &Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}%"));
                format!(
                    "[{t:>7.1}s] MEMCG PRESSURE {memcg}: usage {} (high {}, max {}): +{high_events} high / +{max_events} max events, PSI some {} full {}",
                    usage_bytes.map_or("?".to_string(), bytes),
                    high_bytes.map_or("-".to_string(), bytes),
                    limit_bytes.map_or("-".to_string(), bytes),
                    pct(psi_some_avg10),
                    pct(psi_full_avg10),
                )
            }
            Event::ResourceLeakSuspected(e) => e.text(),
            Event::ResourceLeakCleared(e) => e.text(),
            Event::FdExhaustionPredicted(e) => e.text(),
            Event::HostLeakSuspected(e) => e.text(),
            Event::HostLeakCleared(e) => e.text(),
            Event::Runs(e) => e.text(),
            Event::Host(e) => e.text(),
            Event::Score(s) => format!(
                "{} lives ({} labelled): {} leaks — {} flagged in time, {} late, {} missed; {} false alarms on {} lives; {} re-alarms",
                s.lives,
                s.labelled,
                s.leaks,
                s.leaks_flagged_in_time,
                s.leaks_late,
                s.leaks_missed,
                s.false_alarms,
                s.false_alarm_lives,
                s.re_alarms
            ),
            Event::SeriesVerdict(v) => series_verdict(v),
            Event::SeriesSummary(s) => series_summary(s),
        }
    }
}

/// A duration for people: `42s`, `17m`, `3h 12m`, `5d 4h`.
fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// RFC 3339 (`analyze --prometheus`'s JSON) as the other text lines show times.
fn when(rfc3339: &str) -> String {
    rfc3339.replacen('T', " ", 1).trim_end_matches('Z').to_string() + " UTC"
}

fn series_verdict(v: &SeriesVerdict) -> String {
    let mut s = format!(
        "{:<5} {:<8} {:.2} {:>11}/s  now {}, peak {}",
        if v.leak { "LEAK" } else { "-" },
        v.pattern.as_str(),
        v.confidence,
        signed_bytes(v.growth_bytes_per_sec),
        bytes(v.last_bytes),
        bytes(v.peak_bytes),
    );
    if let Some(f) = &v.flagged_at {
        let _ = write!(
            s,
            "  flagged {}{}",
            when(f),
            if v.still_flagged { " (still)" } else { " (cleared)" }
        );
        if v.alarms > 1 {
            let _ = write!(s, ", {} alarms", v.alarms);
        }
    }
    match (v.limit_bytes, v.eta_secs) {
        (Some(l), Some(eta)) => {
            let _ = write!(s, "  limit {} reached in ~{}", bytes(l), span(eta));
        }
        (Some(l), None) => {
            let _ = write!(s, "  limit {}", bytes(l));
        }
        _ => {}
    }
    let _ = write!(
        s,
        "  {} {}  {}",
        v.lives,
        if v.lives == 1 { "life" } else { "lives" },
        crate::util::selector(&v.labels)
    );
    s
}

fn series_summary(s: &SeriesSummary) -> String {
    format!(
        "{} series ({} {}, {} values at a {}s step, {} → {}, {} {}): {} {} flagged",
        s.series,
        s.lives,
        if s.lives == 1 { "life" } else { "lives" },
        s.points,
        s.step_secs,
        when(&s.from),
        when(&s.to),
        s.queries,
        if s.queries == 1 { "query" } else { "queries" },
        s.leaks,
        if s.leaks == 1 { "leak" } else { "leaks" },
    )
}

/// What the sites table counts, in words.
pub fn sites_what(mode: &str, fault_sample: u64) -> String {
    if mode == "malloc" {
        "outstanding malloc bytes (--malloc)".to_string()
    } else {
        format!("growth (brk/mmap/mremap and 1 page fault in {fault_sample})")
    }
}

fn sites_table(t: &SitesTable) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pid {} ({}): {}, {:.1}s",
        t.pid,
        t.comm,
        sites_what(&t.mode, t.fault_sample),
        t.duration_secs
    );
    let _ = write!(
        s,
        "{:>11} {:>8}  SITE (innermost frame first)",
        "BYTES",
        if t.mode == "malloc" { "ALLOCS" } else { "EVENTS" }
    );
    for r in t.sites.iter().filter(|r| !r.unattributed) {
        let _ = write!(s, "\n{:>11} {:>8}  {}", bytes(r.bytes), r.events, short(&r.frames, 8));
    }
    if t.unattributed_bytes > 0 {
        let events: u64 = t.sites.iter().filter(|r| r.unattributed).map(|r| r.events).sum();
        let _ = write!(
            s,
            "\n{:>11} {events:>8}  (unattributed: stacks that never leave the C library: no unwind information past it, or no stack copy)",
            bytes(t.unattributed_bytes)
        );
    }
    if t.sites.is_empty() {
        s.push_str("\n(no growth seen)");
    }
    let full = t.counters.sites_full + t.counters.allocs_full;
    let _ = write!(
        s,
        "\nstack-map collisions: {}, unreadable stacks: {}, fault samples: {}{}",
        t.counters.stack_collisions,
        t.counters.stack_errors,
        t.counters.fault_samples,
        if full > 0 {
            format!(", not aggregated (maps full): {full}")
        } else {
            String::new()
        }
    );
    if t.counters.stack_copies + t.counters.copies_limited + t.counters.copy_errors > 0 {
        let _ = write!(
            s,
            "\nstack copies unwound by CFI: {} (rate-limited: {}, lost: {}, failed: {}; {} ms of agent time)",
            t.counters.stack_copies,
            t.counters.copies_limited,
            t.counters.copies_dropped,
            t.counters.copy_errors,
            t.unwind.unwind_ns / 1_000_000
        );
    }
    if let Some(p) = &t.folded {
        let _ = write!(s, "\nfolded stacks written to {}", p.display());
    }
    s
}

fn seen_text(s: crate::report::runtime::OomSeen) -> &'static str {
    use crate::report::runtime::OomSeen;
    match s {
        OomSeen::Gc => "in the collector",
        OomSeen::Exit => "at its exit",
        OomSeen::Stderr => "on its stderr",
    }
}

fn class_name(name: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("{name} ({m})"),
        None => name.to_string(),
    }
}

/// A process's collector in one line.
pub fn gc_text(g: &crate::state::gc::GcFigures) -> String {
    let mut s = format!(
        "{}: {:.1} GC/s, {:.1} % in pauses",
        g.runtime.as_str(),
        g.collections_per_sec,
        g.gc_time_share * 100.0
    );
    if let Some(r) = g.reclaimed_bytes_per_collection {
        let _ = write!(s, ", {} reclaimed/GC", bytes(r as u64));
    }
    if let Some(o) = &g.old_gen {
        let _ = write!(
            s,
            ", {} {}{} after GC",
            o.name,
            bytes(o.used_after_gc_bytes),
            o.max_bytes.map_or(String::new(), |m| format!(" of {}", bytes(m)))
        );
    }
    if let Some(h) = &g.heap_floor
        && h.leak
    {
        let _ = write!(s, ", heap floor {}/s", signed_bytes(h.growth_bytes_per_sec));
    }
    if let Some(py) = &g.python {
        let _ = write!(
            s,
            ", collected/GC by generation {:.0}/{:.0}/{:.0}",
            py.collected_per_collection[0], py.collected_per_collection[1], py.collected_per_collection[2]
        );
    }
    if g.gc_pressure.pressure {
        s.push_str(", GC PRESSURE");
    }
    s
}

/// `heap` (all classes) and `run --heap-snapshots` (the ten largest, and what grew).
fn heap_histogram(
    s: &super::Subject,
    reason: Option<crate::runtimes::snapshots::SnapshotReason>,
    total_bytes: u64,
    total_instances: u64,
    classes: &[crate::runtimes::histogram::ClassEntry],
    diff: Option<&crate::runtimes::histogram::HistogramDiff>,
    error: Option<&str>,
) -> String {
    if let Some(e) = error {
        return format!(
            "[{:>7.1}s] heap histogram of pid {} ({}) failed: {e}",
            s.t, s.pid, s.comm
        );
    }
    if reason.is_some() {
        let mut t = format!(
            "[{:>7.1}s] heap histogram of pid {} ({}): {} live in {total_instances} objects",
            s.t,
            s.pid,
            s.comm,
            bytes(total_bytes)
        );
        if let Some(d) = diff {
            let top: Vec<String> = d
                .classes
                .iter()
                .take(3)
                .map(|c| format!("{} +{}", c.name, bytes(c.growth_bytes.unsigned_abs())))
                .collect();
            let _ = write!(t, "; grew over {:.0}s: {}", d.secs, top.join(", "));
        }
        return t;
    }
    let mut t = format!(
        "pid {} ({}): {total_instances} objects, {} live (the JVM ran a full collection first)\n{:>12} {:>12}  CLASS",
        s.pid,
        s.comm,
        bytes(total_bytes),
        "BYTES",
        "INSTANCES"
    );
    for c in classes {
        let _ = write!(
            t,
            "\n{:>12} {:>12}  {}",
            bytes(c.bytes),
            c.instances,
            class_name(&c.name, c.module.as_deref())
        );
    }
    t
}
