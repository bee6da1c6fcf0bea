//! Lines for the live analysis events of `run` and `watch`, as JSON and as text.
use serde_json::{Value, json};

use crate::{
    analysis::classify::Verdict,
    monitor::Group,
    state::Proc,
    util::{bytes, monotonic_ns, signed_bytes},
};

fn verdict_fields(v: &Verdict) -> Value {
    json!({
        "pattern": v.pattern,
        "leak": v.leak,
        "confidence": (v.confidence * 1000.0).round() / 1000.0,
        "growth_bytes_per_sec": v.growth_bytes_per_sec.round(),
    })
}

/// `memcg` and `container` of a process (null when unknown / not in a container).
fn placement(p: &Proc) -> Value {
    let rel = p.memcg.as_ref().map(|m| m.rel.clone());
    json!({
        "memcg": rel,
        "container": rel.as_deref().and_then(crate::sys::container::attribute),
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

pub fn leak_suspected(p: &Proc, t: f64) -> Value {
    let v = p.verdict.expect("classified");
    merge(
        json!({
            "event": "leak_suspected",
            "ts_ns": monotonic_ns(),
            "pid": p.key.pid,
            "comm": p.comm,
            "rss_bytes": p.rss.resident(),
            "footprint_bytes": p.rss.footprint(),
            "anon_bytes": p.rss.anon,
            "swap_bytes": p.rss.swap,
            "samples": v.samples,
            "observed_secs": (t - p.first_t).round(),
        }),
        merge(verdict_fields(&v), placement(p)),
    )
}

pub fn leak_cleared(p: &Proc, t: f64, reason: &str) -> Value {
    let mut out = json!({
        "event": "leak_cleared",
        "ts_ns": monotonic_ns(),
        "pid": p.key.pid,
        "comm": p.comm,
        "reason": reason,
        "rss_bytes": p.rss.resident(),
        "footprint_bytes": p.rss.footprint(),
        "flagged_secs": p.flagged_at.map(|f| (t - f).round()),
    });
    if let Some(v) = &p.verdict {
        out = merge(out, verdict_fields(v));
    }
    out
}

pub fn human_leak(p: &Proc, t: f64) -> String {
    let v = p.verdict.expect("classified");
    format!(
        "[{t:>7.1}s] LEAK SUSPECTED pid {} ({}): footprint {} growing {}/s, rss {} ({}, confidence {:.2})",
        p.key.pid,
        p.comm,
        bytes(p.rss.footprint()),
        signed_bytes(v.growth_bytes_per_sec),
        bytes(p.rss.resident()),
        v.pattern,
        v.confidence
    )
}

pub fn human_cleared(p: &Proc, t: f64, reason: &str) -> String {
    let pattern = p.verdict.map_or("unknown".to_string(), |v| v.pattern.to_string());
    format!(
        "[{t:>7.1}s] leak cleared   pid {} ({}): {reason}, now {pattern}, footprint {}",
        p.key.pid,
        p.comm,
        bytes(p.rss.footprint())
    )
}

pub fn sample(g: &Group, v: &Verdict) -> Value {
    merge(
        json!({
            "event": "sample",
            "ts_ns": monotonic_ns(),
            "pid": g.root,
            "comm": g.comm,
            "t_secs": (g.last_t * 10.0).round() / 10.0,
            "processes": g.members.len(),
            "rss_bytes": g.last_resident,
            "footprint_bytes": g.timeline.last().map_or(0, |s| s.rss_bytes),
        }),
        verdict_fields(v),
    )
}

pub fn verdict(g: &Group, v: &Verdict, exit_code: Option<i32>) -> Value {
    merge(
        json!({
            "event": "verdict",
            "pid": g.root,
            "comm": g.comm,
            "start_rss_bytes": g.start_resident.unwrap_or(0),
            "end_rss_bytes": g.last_resident,
            "peak_rss_bytes": g.peak_resident,
            "samples": v.samples,
            "duration_secs": ((g.last_t - g.first_t.unwrap_or(g.last_t)) * 10.0).round() / 10.0,
            "command_exit_code": exit_code,
        }),
        verdict_fields(v),
    )
}

pub fn human_verdict(g: &Group, v: &Verdict) -> String {
    let what = if v.leak { "LEAK" } else { "no leak" };
    format!(
        "verdict: {what} — pid {} ({}) is {} (confidence {:.2}), floor growth {}/s; rss {} → {} (peak {}), {} samples over {:.0}s",
        g.root,
        g.comm,
        v.pattern,
        v.confidence,
        signed_bytes(v.growth_bytes_per_sec),
        bytes(g.start_resident.unwrap_or(0)),
        bytes(g.last_resident),
        bytes(g.peak_resident),
        v.samples,
        g.last_t - g.first_t.unwrap_or(g.last_t)
    )
}

pub fn oom_predicted(p: &Proc) -> Value {
    let (eta, kind, limit) = p
        .eta
        .unwrap_or((f64::INFINITY, crate::analysis::predict::LimitKind::Host, 0));
    json!({
        "event": "oom_predicted",
        "ts_ns": monotonic_ns(),
        "pid": p.key.pid,
        "comm": p.comm,
        "eta_secs": (eta * 10.0).round() / 10.0,
        "limit": kind,
        "limit_bytes": limit,
        "memcg": p.memcg.as_ref().map(|m| &m.rel),
        "growth_bytes_per_sec": p.verdict.map_or(0.0, |v| v.growth_bytes_per_sec.round()),
        "footprint_bytes": p.rss.footprint(),
        "rss_bytes": p.rss.resident(),
        "container": p.memcg.as_ref().and_then(|m| crate::sys::container::attribute(&m.rel)),
    })
}

pub fn human_predicted(p: &Proc, t: f64) -> String {
    let (eta, kind, limit) = p
        .eta
        .unwrap_or((f64::INFINITY, crate::analysis::predict::LimitKind::Host, 0));
    format!(
        "[{t:>7.1}s] OOM PREDICTED  pid {} ({}): {} limit {} reached in ~{:.0}s at {}/s",
        p.key.pid,
        p.comm,
        match kind {
            crate::analysis::predict::LimitKind::Memcg => "memcg",
            crate::analysis::predict::LimitKind::Host => "host",
        },
        bytes(limit),
        eta,
        signed_bytes(p.verdict.map_or(0.0, |v| v.growth_bytes_per_sec))
    )
}
