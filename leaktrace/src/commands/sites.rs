//! `leaktrace sites --pid PID`: where one process's memory grows, by allocation site.
//!
//! Observes the process until `--duration`, Ctrl-C or its exit, then prints the table sorted by
//! bytes (attributable sites first), or one JSON object; `--folded FILE` also writes folded stacks.
use std::{fs, process::ExitCode, time::Instant};

use super::{shutdown_signal, until};
use crate::{
    cli::settings,
    monitor::Monitor,
    output::{Event, SitesTable, text::sites_what},
    sinks::out::Out,
    sites::folded,
    util::monotonic_ns,
};

pub async fn run(s: settings::Sites) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal();
    let pid = s.pid;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default();
    let mut mon = Monitor::start(s.monitor, &s.load)?;
    let started = Instant::now();
    let (mode, sample) = {
        let t = mon.sites.as_ref().expect("stacks are on for `sites`");
        (t.mode().name(), t.options().fault_sample)
    };
    eprintln!(
        "leaktrace: allocation sites of pid {pid} ({comm}): {}; {} (Ctrl-C to stop)",
        sites_what(mode, sample),
        mon.probes.summary()
    );
    tokio::pin!(stop);
    let deadline = s.duration.map(|d| tokio::time::Instant::now() + d);
    let mut noted = 0;
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = until(deadline) => break,
            _ = mon.next() => {},
        };
        if let Some(t) = mon.sites.as_ref() {
            for n in &t.notes[noted..] {
                eprintln!("leaktrace: {n}");
            }
            noted = t.notes.len();
        }
        if !mon.table().contains(pid) {
            eprintln!("leaktrace: pid {pid} exited");
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let Some(t) = mon.sites.as_mut() else { unreachable!() };
    t.refresh(&mut mon.probes.ebpf, None);
    let rows = t.rows(&[pid]);
    let c = t.counters();
    if let Some(path) = &s.folded {
        fs::write(path, folded(&rows)).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    let table = SitesTable {
        ts_ns: monotonic_ns(),
        pid,
        comm,
        mode: mode.to_string(),
        fault_sample: sample,
        duration_secs: (secs * 10.0).round() / 10.0,
        unattributed_bytes: rows.iter().filter(|r| r.unattributed).map(|r| r.bytes).sum(),
        sites: rows,
        counters: c,
        unwind: t.unwind_stats(),
        folded: s.folded,
    };
    let mut out = Out::new(s.json);
    out.emit(&Event::Sites(Box::new(table)))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
