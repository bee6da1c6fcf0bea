//! `leaktrace run`: the host agent.
use std::process::ExitCode;

use serde_json::{Value, json};

use super::{check_pids, shutdown_signal};
use crate::{
    cli::RunArgs,
    events::{self, Payload},
    monitor::{Monitor, MonitorConfig, Scope, Update},
    probes::LoadOptions,
    report::{capture, render, store::ReportStore},
    sinks::{live, metrics::Exporter, out::Out},
    util::monotonic_ns,
};

pub async fn run(args: RunArgs, opts: &LoadOptions) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal();
    check_pids(&args.pids)?;
    // An unwritable report directory is an error now, not at the first kill.
    let store = ReportStore::open(&args.report_dir)?;
    // Likewise a port in use: bound before the probes are loaded.
    let metrics = match args.metrics {
        Some(addr) => Some(Exporter::start(addr, args.metrics_top as usize).await?),
        None => None,
    };
    let scope = Scope::from_filters(&args.pids, &args.comms);
    let mut cfg = MonitorConfig::new(args.interval, scope);
    cfg.max_processes = args.max_processes as usize;
    cfg.predict_within = args.predict_within.as_secs_f64();
    cfg.snapshot_within = args.snapshot_within.as_secs_f64();
    let mut mon = Monitor::start(cfg, opts)?;
    // Attached: give up what is no longer needed (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, ...).
    if let Err(e) = crate::probes::privileges::keep_only(&crate::probes::privileges::KEEP_AFTER_ATTACH) {
        eprintln!("leaktrace: warning: could not drop capabilities: {e}");
    }
    eprintln!(
        "leaktrace: running, {}; tracking {} processes every {:?}; reports in {} (Ctrl-C to stop)",
        mon.probes.summary(),
        mon.table.len(),
        args.interval,
        store.dir.display()
    );
    if let Some(m) = &metrics {
        eprintln!("leaktrace: metrics on http://{}/metrics", m.addr);
    }
    let mut out = Out::new();
    tokio::pin!(stop);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        let ups = tokio::select! {
            () = &mut stop => break,
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            ups = mon.next() => ups,
        };
        if let Some(m) = &metrics {
            m.update(&mon, &ups);
        }
        for u in ups {
            handle(&mut mon, &store, &mut out, args.json, u)?;
        }
        out.flush()?;
        if !out.is_open() {
            break;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn emit(out: &mut Out, json: bool, v: Value, human: impl FnOnce() -> String) -> std::io::Result<()> {
    if json { out.json(&v) } else { out.line(&human()) }
}

fn handle(mon: &mut Monitor, store: &ReportStore, out: &mut Out, json: bool, u: Update) -> anyhow::Result<()> {
    let t = mon.now_secs();
    match u {
        Update::LeakSuspected { pid } => {
            if let Some(p) = mon.table.get(pid) {
                emit(out, json, live::leak_suspected(p, t), || live::human_leak(p, t))?;
            }
        }
        Update::LeakCleared { pid } => {
            if let Some(p) = mon.table.get(pid) {
                emit(out, json, live::leak_cleared(p, t, "no longer growing"), || {
                    live::human_cleared(p, t, "no longer growing")
                })?;
            }
        }
        Update::Exited { proc, .. } => {
            if proc.flagged {
                emit(out, json, live::leak_cleared(&proc, t, "exited"), || {
                    live::human_cleared(&proc, t, "exited")
                })?;
            }
        }
        Update::OomPredicted { pid } => {
            if let Some(p) = mon.table.get(pid) {
                emit(out, json, live::oom_predicted(p), || live::human_predicted(p, t))?;
            }
        }
        Update::Snapshot { pid } => {
            if let Some(s) = mon.table.get(pid).and_then(|p| p.snapshot.as_ref()) {
                match store.write_snapshot(s) {
                    Ok(path) => emit(
                        out,
                        json,
                        json!({"event": "oom_snapshot", "ts_ns": monotonic_ns(), "pid": s.pid, "comm": s.comm, "eta_secs": s.eta_secs, "limit": s.limit, "path": path}),
                        || {
                            format!(
                                "[{t:>7.1}s] pre-OOM snapshot of pid {} ({}) written to {}",
                                s.pid,
                                s.comm,
                                path.display()
                            )
                        },
                    )?,
                    Err(e) => eprintln!("leaktrace: snapshot of pid {}: {e:#}", s.pid),
                }
            }
        }
        Update::OomKill { event, victim, live } => {
            let Payload::OomKill(kill) = &event.payload else {
                return Ok(());
            };
            let report = capture::build(capture::KillInput {
                event: &event,
                kill,
                victim: victim.as_deref(),
                live: &live,
                table: &mon.table,
                memcgs: &mon.memcgs,
                now_t: t,
                interval_secs: mon.cfg.interval.as_secs_f64(),
            });
            let path = match store.write(&report) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("leaktrace: writing the OOM report for pid {}: {e:#}", kill.victim_pid);
                    None
                }
            };
            let mut v = events::json::event(&event);
            if let Value::Object(m) = &mut v {
                m.insert("memcg".into(), json!(report.memcg.as_ref().map(|m| &m.path)));
                m.insert("container".into(), json!(report.victim.container));
                m.insert("binding_limit".into(), json!(report.binding_limit));
                m.insert("predicted".into(), json!(report.predicted));
                m.insert("lead_time_secs".into(), json!(report.lead_time_secs));
                m.insert("flagged".into(), json!(report.flagged));
                m.insert("report".into(), json!(path));
            }
            emit(out, json, v, || {
                let mut s = render::one_line(&report);
                if let Some(p) = &path {
                    s.push_str(&format!("\n           report: {}", p.display()));
                }
                s
            })?;
        }
        Update::Dropped { kind, count } => {
            emit(
                out,
                json,
                events::json::dropped(monotonic_ns(), kind.name(), count),
                || format!("[{t:>7.1}s] dropped {count} {} events (ring buffer full)", kind.name()),
            )?;
        }
    }
    Ok(())
}
