//! `leaktrace trace`: the decoded event stream, text or JSON lines.
use std::{process::ExitCode, time::Duration};

use leaktrace_common::{EventKind, names::prog};

use super::{shutdown_signal, until};
use crate::{
    cli::settings,
    events::{KernelEvent, Payload, enrich, source::EventSource},
    output::Event,
    probes,
    sinks::out::Out,
    util::monotonic_ns,
};

struct Filter {
    pids: Vec<u32>,
    comms: Vec<String>,
}

impl Filter {
    fn keep(&self, e: &KernelEvent) -> bool {
        (self.pids.is_empty() || self.pids.contains(&e.subject_pid()) || self.pids.contains(&e.hdr.pid))
            && (self.comms.is_empty() || self.comms.iter().any(|c| c == e.subject_comm() || *c == e.hdr.comm))
    }
}

pub async fn run(args: settings::Trace) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal();
    let mut probes = probes::start(&args.load)?;
    let mut source = EventSource::new(&mut probes.ebpf)?;
    eprintln!("leaktrace: tracing, {} (Ctrl-C to stop)", probes.summary());
    let threads_unknown = !probes.is_attached(prog::TASK_NEWTASK);

    let filter = Filter {
        pids: args.pids,
        comms: args.comms,
    };
    let mut out = Out::new(args.json);
    tokio::pin!(stop);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut batch = Vec::new();
    let mut last_drop_check = tokio::time::Instant::now();
    loop {
        let finished = tokio::select! {
            () = &mut stop => true,
            () = until(deadline) => true,
            () = source.wait(Duration::from_millis(100)) => false,
        };
        batch.clear();
        source.drain(&mut batch);
        fix_up(&mut batch, threads_unknown);
        for e in batch.iter().filter(|e| filter.keep(e)) {
            out.emit(&Event::from_kernel(e))?;
        }
        if finished || last_drop_check.elapsed() >= Duration::from_secs(1) {
            last_drop_check = tokio::time::Instant::now();
            report_drops(&mut source, &mut out)?;
        }
        out.flush()?;
        if finished || !out.is_open() {
            break;
        }
    }
    if source.decode_errors > 0 {
        eprintln!("leaktrace: {} records could not be decoded", source.decode_errors);
    }
    drop(probes); // detaches every program
    Ok(ExitCode::SUCCESS)
}

/// Fallbacks for what this kernel's probes lack: threads reported as forks (no task_newtask),
/// OOM victims without their details (oom:mark_victim before ~6.9).
fn fix_up(batch: &mut Vec<KernelEvent>, threads_unknown: bool) {
    if threads_unknown {
        batch.retain(|e| !matches!(e.payload, Payload::Fork { child_pid } if enrich::is_thread(child_pid)));
    }
    for e in batch.iter_mut() {
        if let Payload::OomKill(k) = &mut e.payload {
            enrich::fill_oom(k);
        }
    }
}

/// Drops are never silent: a `dropped` line per kind, and a note on stderr.
fn report_drops(source: &mut EventSource, out: &mut Out) -> std::io::Result<()> {
    for (kind, count) in source.new_drops() {
        let kind: EventKind = kind;
        out.emit(&Event::dropped(monotonic_ns(), kind.name(), count))?;
        eprintln!("leaktrace: dropped {count} {} events (ring buffer full)", kind.name());
    }
    Ok(())
}
