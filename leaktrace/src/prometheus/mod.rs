//! `analyze --prometheus`: fleet history judged by the agent's own logic. Memory series a
//! Prometheus already stores (process-exporter groups, cAdvisor containers, leaktrace's own
//! `leaktrace_process_rss_bytes`) are read with `query_range` ([`client`], [`api`], on the
//! grid of [`plan`]), cut into lives and laid out as one record per host ([`lives`]), replayed
//! through `monitor::core` exactly as `analyze FILE` replays a record, and summed up as one
//! verdict per series ([`judge`]).
pub mod api;
pub mod client;
pub mod judge;
pub mod lives;
pub mod plan;

use std::collections::BTreeMap;

use self::{
    api::Series,
    client::{Auth, Client},
    plan::Grid,
};

/// What to read, validated (`cli::settings`).
#[derive(Debug, Clone)]
pub struct Source {
    /// Base URL (`http://host:9090`, or with the path prefix of a proxy).
    pub url: String,
    pub auth: Option<Auth>,
    /// PromQL giving the memory series, in bytes.
    pub query: String,
    /// PromQL giving memory limits, matched to the series on the labels they share.
    pub limit_query: Option<String>,
    pub grid: Grid,
    /// Labels naming one life of a series rather than the series.
    pub life_labels: Vec<String>,
}

/// What Prometheus answered over the whole grid.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub series: Vec<Series>,
    pub limits: Vec<Series>,
    /// `query_range` calls made.
    pub queries: usize,
    /// Warnings Prometheus attached, each once.
    pub warnings: Vec<String>,
}

/// `query` over the whole grid, chunk by chunk, each series' points joined in time order.
fn range(c: &Client, query: &str, grid: &Grid, f: &mut Fetched) -> Result<Vec<Series>, String> {
    let mut by_labels: BTreeMap<BTreeMap<String, String>, Vec<(i64, u64)>> = BTreeMap::new();
    for chunk in grid.chunks() {
        let a = c.query_range(query, &chunk)?;
        f.queries += 1;
        for w in a.warnings {
            if !f.warnings.contains(&w) {
                f.warnings.push(w);
            }
        }
        for s in a.series {
            by_labels.entry(s.labels).or_default().extend(s.points);
        }
    }
    Ok(by_labels
        .into_iter()
        .map(|(labels, mut points)| {
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            Series { labels, points }
        })
        .collect())
}

/// Read the series (and limits) `src` names. An empty answer is an error: nothing to judge.
pub fn fetch(src: &Source) -> anyhow::Result<Fetched> {
    let c = Client::new(&src.url, src.auth.clone());
    let mut f = Fetched::default();
    f.series = range(&c, &src.query, &src.grid, &mut f).map_err(anyhow::Error::msg)?;
    if f.series.iter().all(|s| s.points.is_empty()) {
        anyhow::bail!(
            "the query returned no series between {} and {}: check the metric name and labels (e.g. in Prometheus's /graph)",
            judge::rfc3339(src.grid.start_ms),
            judge::rfc3339(src.grid.end_ms)
        );
    }
    if let Some(q) = &src.limit_query {
        f.limits = range(&c, q, &src.grid, &mut f).map_err(|e| anyhow::anyhow!("--limit-query: {e}"))?;
    }
    Ok(f)
}
