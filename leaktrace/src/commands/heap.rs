//! `leaktrace heap --pid PID [--diff SECS] [--json]`: a JVM's live objects by class, or what grew.
use std::process::ExitCode;

use super::shutdown_signal;
use crate::{
    cli::{UsageError, settings},
    output::{Event, Subject},
    runtimes::{
        histogram::{self, Histogram},
        jvm_attach::{self, AttachError},
    },
    sinks::out::Out,
    util::{bytes, monotonic_ns},
};

async fn take(pid: u32, timeout: std::time::Duration) -> anyhow::Result<Histogram> {
    let r = tokio::task::spawn_blocking(move || jvm_attach::class_histogram(pid, timeout)).await?;
    r.map_err(|e| match e {
        AttachError::NoProcess(_) | AttachError::NotJvm(_) => UsageError(e.to_string()).into(),
        e => anyhow::Error::new(e).context("taking a class histogram"),
    })
}

fn subject(pid: u32) -> Subject {
    Subject {
        ts_ns: monotonic_ns(),
        pid,
        comm: std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        t: 0.0,
    }
}

pub async fn run(s: settings::Heap) -> anyhow::Result<ExitCode> {
    let pid = s.pid;
    let mut out = Out::new(s.json);
    let first = take(pid, s.timeout).await?;
    let Some(wait) = s.diff else {
        let n = if s.json { usize::MAX } else { s.top };
        out.emit(&Event::HeapHistogram {
            subject: subject(pid),
            reason: None,
            total_bytes: first.total_bytes,
            total_instances: first.total_instances,
            classes: first.classes.into_iter().take(n).collect(),
            diff: None,
            error: None,
        })?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    };
    if !s.json {
        eprintln!(
            "leaktrace: first histogram of pid {pid}: {} live; the second in {wait:?} (Ctrl-C to stop)",
            bytes(first.total_bytes)
        );
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
    }
    let second = take(pid, s.timeout).await?;
    let mut diff = histogram::diff(&first, &second);
    if !s.json {
        diff.classes.truncate(s.top);
    }
    out.emit(&Event::HeapDiff {
        subject: subject(pid),
        before_bytes: first.total_bytes,
        after_bytes: second.total_bytes,
        diff,
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
