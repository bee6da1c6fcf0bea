//! `leaktrace sites --pid PID`: where one process's memory grows, by allocation site.
//!
//! Observes the process until `--duration`, Ctrl-C or its exit, then prints the table sorted by
//! bytes (attributable sites first), or one JSON object; `--folded FILE` also writes folded stacks.
use std::{fs, process::ExitCode, time::Instant};

use serde_json::json;

use super::{check_pids, shutdown_signal};
use crate::{
    monitor::{Monitor, MonitorConfig, Scope, Update},
    probes::LoadOptions,
    sinks::out::Out,
    sites::{Mode, Row, args::SitesArgs, folded, short},
    util::{bytes, monotonic_ns},
};

pub async fn run(args: SitesArgs, opts: &LoadOptions) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal();
    let pid = args.pid;
    check_pids(&[pid])?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default();
    let mut mon = Monitor::start(
        MonitorConfig::new(
            args.interval,
            Scope::Filter {
                pids: vec![pid],
                comms: vec![],
            },
        ),
        opts,
    )?;
    let started = Instant::now();
    let (mode, sample) = {
        let s = mon.sites.as_ref().expect("stacks are on for `sites`");
        (s.mode(), s.options().fault_sample)
    };
    let what = match mode {
        Mode::Growth => format!("growth (brk/mmap/mremap and 1 page fault in {sample})"),
        Mode::Malloc => "outstanding malloc bytes (--malloc)".to_string(),
    };
    eprintln!(
        "leaktrace: allocation sites of pid {pid} ({comm}): {what}; {} (Ctrl-C to stop)",
        mon.probes.summary()
    );
    tokio::pin!(stop);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut noted = 0;
    loop {
        let ups = tokio::select! {
            () = &mut stop => break,
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            ups = mon.next() => ups,
        };
        if let Some(s) = mon.sites.as_ref() {
            for n in &s.notes[noted..] {
                eprintln!("leaktrace: {n}");
            }
            noted = s.notes.len();
        }
        if ups
            .iter()
            .any(|u| matches!(u, Update::Exited { proc, .. } if proc.key.pid == pid))
        {
            eprintln!("leaktrace: pid {pid} exited");
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let Some(s) = mon.sites.as_mut() else { unreachable!() };
    s.refresh(&mut mon.probes.ebpf, None);
    let rows = s.rows(&[pid]);
    let c = s.counters();
    if let Some(path) = &args.folded {
        fs::write(path, folded(&rows)).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    let mut out = Out::new();
    let unattributed: u64 = rows.iter().filter(|r| r.unattributed).map(|r| r.bytes).sum();
    if args.json {
        out.json(&json!({
            "event": "sites",
            "ts_ns": monotonic_ns(),
            "pid": pid,
            "comm": comm,
            "mode": mode.name(),
            "fault_sample": sample,
            "duration_secs": (secs * 10.0).round() / 10.0,
            "sites": rows,
            "unattributed_bytes": unattributed,
            "stack_collisions": c.stack_collisions,
            "stack_errors": c.stack_errors,
            "sites_full": c.sites_full,
            "fault_samples": c.fault_samples,
            "allocs_full": c.allocs_full,
        }))?;
    } else {
        out.line(&format!("pid {pid} ({comm}): {what}, {secs:.1}s"))?;
        out.line(&format!(
            "{:>11} {:>8}  SITE (innermost frame first)",
            "BYTES",
            if mode == Mode::Malloc { "ALLOCS" } else { "EVENTS" }
        ))?;
        for r in rows.iter().filter(|r| !r.unattributed) {
            out.line(&human_row(r))?;
        }
        if unattributed > 0 {
            let events: u64 = rows.iter().filter(|r| r.unattributed).map(|r| r.events).sum();
            out.line(&format!(
                "{:>11} {events:>8}  (unattributed: stacks that end inside the C library, built without frame pointers; --malloc sees past it)",
                bytes(unattributed)
            ))?;
        }
        if rows.is_empty() {
            out.line("(no growth seen)")?;
        }
        out.line(&format!(
            "stack-map collisions: {}, unreadable stacks: {}, fault samples: {}{}",
            c.stack_collisions,
            c.stack_errors,
            c.fault_samples,
            if c.sites_full + c.allocs_full > 0 {
                format!(", not aggregated (maps full): {}", c.sites_full + c.allocs_full)
            } else {
                String::new()
            }
        ))?;
        if let Some(p) = &args.folded {
            out.line(&format!("folded stacks written to {}", p.display()))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn human_row(r: &Row) -> String {
    format!("{:>11} {:>8}  {}", bytes(r.bytes), r.events, short(&r.frames, 8))
}
