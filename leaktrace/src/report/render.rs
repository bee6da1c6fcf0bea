//! Rendering reports for people (being written; `one_line` is used by `run`).
use super::OomReport;

pub fn one_line(r: &OomReport) -> String {
    format!(
        "OOM KILL pid {} ({}) memcg {} anon-rss {} predicted {}",
        r.victim.pid,
        r.victim.comm.as_deref().unwrap_or("?"),
        r.memcg.as_ref().map_or("-", |m| m.path.as_str()),
        r.victim.anon_rss_bytes.map_or("?".into(), crate::util::bytes),
        r.predicted
    )
}
