//! `leaktrace analyze FILE`: a record replayed through the agent's own logic (monitor core), then
//! scored against the record's labels. `analyze --prometheus`: series read from Prometheus,
//! replayed the same way, one verdict per series.
use std::{path::Path, process::ExitCode};

use crate::{
    cli::{exit, settings::Analyze},
    input::read_record,
    monitor::{
        CoreConfig,
        replay::{replay, score_replay},
    },
    output::Event,
    prometheus::{self, Source, judge::judge, lives},
    sinks::out::Out,
};

pub fn run(a: Analyze) -> anyhow::Result<ExitCode> {
    match a {
        Analyze::Record {
            path,
            json,
            events,
            explain,
        } => record(&path, json, events, explain),
        Analyze::Prometheus { source, json, events } => from_prometheus(&source, json, events),
    }
}

/// Prometheus → lives → one record per host → replay → a verdict per series.
fn from_prometheus(src: &Source, json: bool, with_events: bool) -> anyhow::Result<ExitCode> {
    let fetched = prometheus::fetch(src)?;
    for w in &fetched.warnings {
        eprintln!("leaktrace: Prometheus warns: {}", prometheus::api::one_line(w, 300));
    }
    let logical = lives::logical(&fetched.series, &fetched.limits, &src.life_labels, &src.grid);
    let hosts = lives::hosts(&logical, &src.grid);
    let judged = judge(
        &logical,
        &hosts,
        &src.grid,
        &CoreConfig::new(src.grid.step_ms as f64 / 1000.0),
        fetched.queries,
    );
    let mut out = Out::new(json);
    if with_events {
        for e in &judged.events {
            out.emit(e)?;
        }
    }
    for v in judged.verdicts {
        out.emit(&Event::SeriesVerdict(Box::new(v)))?;
    }
    out.emit(&Event::SeriesSummary(judged.summary))?;
    out.flush()?;
    Ok(ExitCode::from(exit::OK))
}

fn record(path: &Path, json: bool, with_events: bool, explain: Option<u32>) -> anyhow::Result<ExitCode> {
    let rec = read_record(path)?;
    let (events, lives) = replay(&rec, CoreConfig::new(rec.header.interval_secs), explain);
    let mut out = Out::new(json);
    if with_events {
        for r in &events {
            out.emit(&r.event)?;
        }
    }
    let (scored, summary) = score_replay(&rec, &events, &lives);
    for l in scored {
        // Every labelled life, and every life the agent said something about.
        let labelled = rec.labels.iter().any(|x| (x.pid, x.start) == (l.pid, l.start));
        if labelled || l.alarms > 0 || l.oom_predictions > 0 {
            out.emit(&Event::Scored(Box::new(l)))?;
        }
    }
    out.emit(&Event::Score(summary))?;
    out.flush()?;
    Ok(ExitCode::from(exit::OK))
}
