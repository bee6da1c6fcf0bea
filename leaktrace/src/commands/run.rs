//! `leaktrace run`: the host agent. Monitor → report sink → (record, metrics) → stdout.
use std::process::ExitCode;

use super::{shutdown_signal, until};
use crate::{
    cli::settings,
    input::{Header, HostInfo, RECORD_VERSION},
    monitor::Monitor,
    probes::privileges,
    report::store::ReportStore,
    sinks::{metrics::Exporter, out::Out, record::Recorder, reports::ReportSink},
};

pub async fn run(s: settings::Run) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal();
    // An unwritable report directory is an error now, not at the first kill.
    let reports = ReportSink::new(ReportStore::open(&s.report_dir)?);
    // Likewise a port in use: bound before the probes are loaded.
    let metrics = match s.metrics {
        Some((addr, top)) => Some(Exporter::start(addr, top).await?),
        None => None,
    };
    let mut recorder = match &s.record {
        Some(path) => Some(Recorder::create(path, &record_header(&s))?),
        None => None,
    };
    let interval = s.monitor.interval;
    let mut mon = Monitor::start(s.monitor, &s.load)?;
    // Attached: give up what is no longer needed (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, ...; what
    // following managed runtimes needs stays unless --no-runtimes).
    if let Err(e) = privileges::keep_only(&s.keep_caps) {
        eprintln!("leaktrace: warning: could not drop capabilities: {e}");
    }
    eprintln!(
        "leaktrace: running, {}; tracking {} processes every {interval:?}; reports in {} (Ctrl-C to stop)",
        mon.probes.summary(),
        mon.table().len(),
        s.report_dir.display()
    );
    if let Some(m) = &metrics {
        eprintln!("leaktrace: metrics on http://{}/metrics", m.addr);
    }
    if let Some(p) = &s.record {
        eprintln!("leaktrace: recording to {}", p.display());
    }
    let mut out = Out::new(s.json);
    tokio::pin!(stop);
    let deadline = s.duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        let mut events = tokio::select! {
            () = &mut stop => break,
            () = until(deadline) => break,
            events = mon.next() => events,
        };
        for e in &mut events {
            reports.handle(e);
        }
        if let Some(r) = recorder.as_mut() {
            r.write(&mon.take_batches())?;
            r.flush()?;
        }
        if let Some(m) = &metrics {
            m.update(&events, mon.table(), &mon.counts(), mon.probes.diagnostics_logged());
            let core = mon.core();
            m.update_resources(&crate::sinks::resmetrics::View {
                table: core.table(),
                res: core.resources(),
                host: core.host_state(),
                clues: core.host_clues(),
            });
        }
        for e in &events {
            out.emit(e)?;
        }
        out.flush()?;
        if !out.is_open() {
            break;
        }
    }
    if let Some(mut r) = recorder {
        r.write(&mon.take_batches())?;
        r.finish()?;
    }
    out.flush()?;
    if mon.decode_errors() > 0 {
        eprintln!("leaktrace: {} records could not be decoded", mon.decode_errors());
    }
    Ok(ExitCode::SUCCESS)
}

fn record_header(s: &settings::Run) -> Header {
    let mi = crate::sys::host::MemInfo::read().ok();
    Header {
        leaktrace_record: RECORD_VERSION,
        interval_secs: s.monitor.interval.as_secs_f64(),
        source: format!("leaktrace run {}", env!("CARGO_PKG_VERSION")),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default(),
        host: HostInfo {
            mem_total: mi.as_ref().map_or(0, |m| m.mem_total),
            swap_total: mi.as_ref().map_or(0, |m| m.swap_total),
        },
        started_unix_ms: crate::util::unix_ms(),
        default_leak: false,
        note: String::new(),
    }
}
