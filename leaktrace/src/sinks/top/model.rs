//! What `leaktrace top` shows, as plain data: one `Row` per tracked process and a `Header` of
//! host-level signs of a leak. Built from the monitor's table; no terminal code here.
use std::{cmp::Ordering, collections::VecDeque};

use crate::{
    analysis::{classify::Pattern, predict::LimitKind},
    state::{Proc, ProcessTable},
    sys::{
        container::{self, Runtime},
        host::HostMemory,
    },
};

/// Samples drawn in a row's sparkline, at most.
pub const SPARK_SAMPLES: usize = 60;
/// The window of the MemAvailable trend.
pub const TREND_WINDOW_SECS: f64 = 60.0;

/// Row order, cycled with `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Fastest-growing first (the classifier's floor slope), then the largest footprint.
    Growth,
    Rss,
    /// Soonest OOM first; processes without an ETA last.
    Eta,
    Pid,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Growth => SortKey::Rss,
            SortKey::Rss => SortKey::Eta,
            SortKey::Eta => SortKey::Pid,
            SortKey::Pid => SortKey::Growth,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Growth => "growth",
            SortKey::Rss => "rss",
            SortKey::Eta => "eta",
            SortKey::Pid => "pid",
        }
    }
}

/// One process as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub pid: u32,
    pub comm: String,
    /// `runtime:shortid` for a container, else the memory cgroup path, else `-`.
    pub group: String,
    pub rss: u64,
    pub footprint: u64,
    /// None until the classifier has judged the process.
    pub growth: Option<f64>,
    pub pattern: Option<Pattern>,
    /// Reported as a leak (`leak_suspected`).
    pub flagged: bool,
    /// The last footprint samples (oldest first); empty when not computed (rows off screen).
    pub spark: Vec<u64>,
    pub eta: Option<(f64, LimitKind)>,
    /// A JVM / CPython with collector probes: its GC in one cell.
    pub gc: Option<GcCell>,
}

/// The GC column: collections per second, how full the heap is after GC, and the signs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcCell {
    pub collections_per_sec: f64,
    /// Heap (JVM) used after GC over its maximum, 0–1.
    pub heap_fill: Option<f64>,
    /// `gc_pressure`: collections more frequent, reclaiming less.
    pub pressure: bool,
    /// The heap floor leaks.
    pub heap_leak: bool,
}

impl GcCell {
    pub fn of(g: &crate::state::gc::GcFigures) -> GcCell {
        GcCell {
            collections_per_sec: g.collections_per_sec,
            heap_fill: g.old_gen.as_ref().and_then(|o| {
                let max = o.max_bytes.filter(|m| *m > 0)?;
                Some(g.heap_after_gc_bytes.unwrap_or(o.used_after_gc_bytes) as f64 / max as f64)
            }),
            pressure: g.gc_pressure.pressure,
            heap_leak: g.heap_floor.is_some_and(|h| h.leak),
        }
    }
}

impl Row {
    /// Everything but the sparkline, which costs a copy of the timeline (see [`spark_of`]).
    pub fn of(p: &Proc) -> Row {
        Row {
            pid: p.key.pid,
            comm: p.comm.clone(),
            group: group_label(p.memcg.as_deref()),
            rss: p.rss.resident(),
            footprint: p.rss.footprint(),
            growth: p.verdict.map(|v| v.growth_bytes_per_sec),
            pattern: p.verdict.map(|v| v.pattern),
            flagged: p.flagged,
            spark: Vec::new(),
            eta: p.eta.map(|e| (e.secs, e.limit)),
            gc: p.gc.as_deref().map(GcCell::of),
        }
    }
}

/// The last [`SPARK_SAMPLES`] footprint samples of a process.
pub fn spark_of(table: &ProcessTable, p: &Proc) -> Vec<u64> {
    let s = table.samples(p);
    s[s.len().saturating_sub(SPARK_SAMPLES)..]
        .iter()
        .map(|x| x.rss_bytes)
        .collect()
}

fn runtime_name(r: Runtime) -> &'static str {
    match r {
        Runtime::Docker => "docker",
        Runtime::Containerd => "containerd",
        Runtime::Crio => "crio",
        Runtime::Podman => "podman",
        Runtime::Unknown => "container",
    }
}

/// `docker:0123456789ab` when the cgroup is a container's, else the cgroup path.
pub fn group_label(memcg: Option<&str>) -> String {
    let Some(m) = memcg else { return "-".into() };
    match container::attribute(m) {
        Some(c) => format!("{}:{}", runtime_name(c.runtime), &c.id[..c.id.len().min(12)]),
        None => m.to_string(),
    }
}

fn growth_of(r: &Row) -> f64 {
    r.growth.filter(|g| g.is_finite()).unwrap_or(f64::NEG_INFINITY)
}

pub fn compare(a: &Row, b: &Row, key: SortKey) -> Ordering {
    let by_growth = || {
        growth_of(b)
            .total_cmp(&growth_of(a))
            .then(b.footprint.cmp(&a.footprint))
    };
    let ord = match key {
        SortKey::Growth => by_growth(),
        SortKey::Rss => b.rss.cmp(&a.rss).then_with(by_growth),
        SortKey::Eta => match (a.eta, b.eta) {
            (Some(x), Some(y)) => x.0.total_cmp(&y.0),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
        .then_with(by_growth),
        SortKey::Pid => Ordering::Equal,
    };
    ord.then(a.pid.cmp(&b.pid))
}

/// Case-insensitive comm substring; an empty filter matches everything.
pub fn matches(r: &Row, filter: &str) -> bool {
    filter.is_empty() || r.comm.to_lowercase().contains(&filter.to_lowercase())
}

/// The rows to show, in order.
pub fn visible<'a>(rows: &'a [Row], key: SortKey, filter: &str) -> Vec<&'a Row> {
    let mut v: Vec<&Row> = rows.iter().filter(|r| matches(r, filter)).collect();
    v.sort_by(|a, b| compare(a, b, key));
    v
}

/// Host-level signs of a leak.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub mem_total: u64,
    pub mem_available: u64,
    /// Change of MemAvailable over the trend window (or what is known of it), and that span.
    pub avail_change: Option<(i64, f64)>,
    pub swap_total: u64,
    pub swap_used: u64,
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
    /// `/proc/vmstat oom_kill` (None on kernels without it).
    pub oom_kills_boot: Option<u64>,
    /// OOM kills leaktrace saw since it started.
    pub oom_kills_seen: u64,
    pub tracked: usize,
    /// Issue 14: where the host's memory is, and leaks outside processes' RSS.
    pub beyond: Beyond,
}

/// What the header shows of the host's memory in parts and of leaks outside RSS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Beyond {
    /// The largest parts of MemTotal (free memory left out), largest first.
    pub parts: Vec<(&'static str, u64)>,
    /// Host parts suspected of leaking: `part name`, bytes, growth (B/s).
    pub host_leaks: Vec<(String, u64, f64)>,
    /// MemAvailable keeps falling without recovering: its trend (B/s, negative).
    pub available_falling: Option<f64>,
    /// Lives leaking descriptors or kernel memory: pid, comm, what (`fds +80/s`).
    pub resource_leaks: Vec<(u32, String, String)>,
}

/// How many parts the header names.
const HEADER_PARTS: usize = 5;

impl Beyond {
    pub fn of(
        host: &crate::state::host::HostState,
        clues: Option<crate::analysis::host::Clues>,
        res: &crate::state::resources::Resources,
        table: &crate::state::ProcessTable,
    ) -> Beyond {
        use crate::analysis::{host::Part, resources::fds_per_sec};
        let mut parts: Vec<(&'static str, u64)> = host
            .split
            .iter()
            .flat_map(|s| s.parts.iter())
            .filter(|(p, _)| *p != Part::Free)
            .map(|(p, b)| (p.name(), *b))
            .collect();
        parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        parts.truncate(HEADER_PARTS);
        let growth = |s: &crate::state::host::PartSeries| s.verdict.map_or(0.0, |v| v.growth_bytes_per_sec);
        let mut host_leaks: Vec<(String, u64, f64)> = host
            .parts
            .iter()
            .filter(|(_, s)| s.flag.is_some())
            .map(|(p, s)| (p.name().to_string(), s.last, growth(s)))
            .chain(
                host.mounts
                    .iter()
                    .filter(|(_, s)| s.flag.is_some())
                    .map(|(m, s)| (format!("tmpfs {m}"), s.last, growth(s))),
            )
            .collect();
        host_leaks.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        let mut resource_leaks: Vec<(u32, String, String)> = res
            .iter()
            .filter(|(_, r)| r.fds.flag.is_some() || r.kernel.flag.is_some())
            .filter_map(|(pid, r)| {
                let p = table.get(pid)?;
                let mut what = Vec::new();
                if let (Some(_), Some(v)) = (r.fds.flag, r.fds.verdict) {
                    what.push(format!("fds {} {:+.1}/s", r.fds.last.unwrap_or(0), fds_per_sec(&v)));
                }
                if let (Some(_), Some(v)) = (r.kernel.flag, r.kernel.verdict) {
                    what.push(format!(
                        "kernel {} {}",
                        fmt_bytes(r.kernel.last.unwrap_or(0)),
                        fmt_rate(Some(v.growth_bytes_per_sec))
                    ));
                }
                Some((pid, p.comm.clone(), what.join(", ")))
            })
            .collect();
        resource_leaks.sort();
        Beyond {
            parts,
            host_leaks,
            available_falling: clues
                .filter(|c| c.available_falling)
                .map(|c| c.available_trend_bytes_per_sec),
            resource_leaks,
        }
    }
}

impl Header {
    pub fn swap_used_pct(&self) -> Option<f64> {
        (self.swap_total > 0).then(|| self.swap_used as f64 * 100.0 / self.swap_total as f64)
    }
}

/// Reads the host counters and keeps the MemAvailable history for the trend.
#[derive(Debug, Default)]
pub struct HostSampler {
    avail: VecDeque<(f64, u64)>,
    pub header: Header,
}

impl HostSampler {
    pub fn sample(&mut self, t: f64) {
        let host = HostMemory::read();
        if let Some(mi) = host.mem {
            self.record(t, mi.mem_total, mi.mem_available, mi.swap_total, mi.swap_used());
        }
        self.header.psi_some_avg10 = host.psi_some_avg10;
        self.header.psi_full_avg10 = host.psi_full_avg10;
        self.header.oom_kills_boot = host.oom_kills;
    }

    /// One meminfo reading at `t` seconds.
    pub fn record(&mut self, t: f64, total: u64, available: u64, swap_total: u64, swap_used: u64) {
        let h = &mut self.header;
        (h.mem_total, h.mem_available, h.swap_total, h.swap_used) = (total, available, swap_total, swap_used);
        self.avail.push_back((t, available));
        // Keep one reading at or before the window start, so the change covers the full window.
        while self.avail.len() > 2 && self.avail[1].0 <= t - TREND_WINDOW_SECS {
            self.avail.pop_front();
        }
        h.avail_change = match self.avail.front() {
            Some(&(t0, a0)) if t > t0 => Some((available as i64 - a0 as i64, t - t0)),
            _ => None,
        };
    }
}

/// Bytes in binary units, short: `512B`, `4.0K`, `12M`, `1.5G`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if b < 1024 {
        return format!("{b}B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v < 9.95 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

/// A signed byte count: `+12M`, `-4.0K`, `0`.
pub fn fmt_signed(b: i64) -> String {
    match b.cmp(&0) {
        Ordering::Equal => "0".into(),
        Ordering::Greater => format!("+{}", fmt_bytes(b as u64)),
        Ordering::Less => format!("-{}", fmt_bytes(b.unsigned_abs())),
    }
}

/// A growth rate: `+2.0M/s`; `0/s` under 1 B/s; `-` when unknown.
pub fn fmt_rate(g: Option<f64>) -> String {
    match g {
        Some(g) if g.is_finite() => {
            if g.abs() < 1.0 {
                "0/s".into()
            } else {
                format!("{}/s", fmt_signed(g.round() as i64))
            }
        }
        _ => "-".into(),
    }
}

/// A duration: `45s`, `3m05s`, `2h10m`, `3d04h`.
pub fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        return "-".into();
    }
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Time to OOM and the limit that binds: `4m10s host`, `-`.
pub fn fmt_eta(eta: Option<(f64, LimitKind)>) -> String {
    match eta {
        Some((s, k)) => format!(
            "{} {}",
            fmt_secs(s),
            if k == LimitKind::Memcg { "memcg" } else { "host" }
        ),
        None => "-".into(),
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Smallest range a sparkline is stretched over, so page-sized jitter of a flat process stays
/// flat instead of looking like tides.
const SPARK_MIN_RANGE: u64 = 1 << 20;

/// The last `width` samples as bars, right-aligned (newest at the right edge), scaled between the
/// window's minimum and maximum (at least [`SPARK_MIN_RANGE`] apart).
pub fn sparkline(samples: &[u64], width: usize) -> String {
    let s = &samples[samples.len().saturating_sub(width)..];
    let (Some(&lo), Some(&hi)) = (s.iter().min(), s.iter().max()) else {
        return " ".repeat(width);
    };
    let range = (hi - lo).max(SPARK_MIN_RANGE) as f64;
    let mut out = " ".repeat(width - s.len());
    out.extend(
        s.iter()
            .map(|&v| BARS[(((v - lo) as f64 / range) * 7.0).round().clamp(0.0, 7.0) as usize]),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: u32, comm: &str, rss: u64, growth: Option<f64>, eta: Option<f64>) -> Row {
        Row {
            pid,
            comm: comm.into(),
            group: "-".into(),
            rss,
            footprint: rss,
            growth,
            pattern: growth.map(|_| Pattern::Flat),
            flagged: false,
            spark: Vec::new(),
            eta: eta.map(|e| (e, LimitKind::Host)),
            gc: None,
        }
    }

    #[test]
    fn sort_orders() {
        let rows = vec![
            row(30, "big", 900 << 20, Some(0.0), None),
            row(10, "leaky", 10 << 20, Some(2e6), Some(100.0)),
            row(20, "new", 50 << 20, None, None),
            row(40, "slow", 20 << 20, Some(1e4), Some(5000.0)),
        ];
        let pids = |k| visible(&rows, k, "").iter().map(|r| r.pid).collect::<Vec<_>>();
        assert_eq!(pids(SortKey::Growth), [10, 40, 30, 20]);
        assert_eq!(pids(SortKey::Rss), [30, 20, 40, 10]);
        assert_eq!(pids(SortKey::Eta), [10, 40, 30, 20]);
        assert_eq!(pids(SortKey::Pid), [10, 20, 30, 40]);
        let mut k = SortKey::Growth;
        let names: Vec<_> = (0..4)
            .map(|_| {
                k = k.next();
                k.name()
            })
            .collect();
        assert_eq!(names, ["rss", "eta", "pid", "growth"]);
    }

    #[test]
    fn growth_ties_break_on_footprint() {
        let rows = vec![
            row(1, "a", 1 << 20, Some(0.0), None),
            row(2, "b", 8 << 20, Some(0.0), None),
        ];
        assert_eq!(visible(&rows, SortKey::Growth, "")[0].pid, 2);
    }

    #[test]
    fn filter_is_a_case_insensitive_substring() {
        let rows = vec![row(1, "lt-workload", 0, None, None), row(2, "bash", 0, None, None)];
        assert_eq!(visible(&rows, SortKey::Pid, "lt-work").len(), 1);
        assert_eq!(visible(&rows, SortKey::Pid, "WORK")[0].pid, 1);
        assert!(visible(&rows, SortKey::Pid, "zzz").is_empty());
        assert_eq!(visible(&rows, SortKey::Pid, "").len(), 2);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_bytes(512), "512B");
        assert_eq!(fmt_bytes(4096), "4.0K");
        assert_eq!(fmt_bytes(12 << 20), "12M");
        assert_eq!(fmt_bytes(3 << 29), "1.5G");
        assert_eq!(fmt_rate(Some(2.0 * 1048576.0)), "+2.0M/s");
        assert_eq!(fmt_rate(Some(-4096.0)), "-4.0K/s");
        assert_eq!(fmt_rate(Some(0.3)), "0/s");
        assert_eq!(fmt_rate(None), "-");
        assert_eq!(fmt_rate(Some(f64::NAN)), "-");
        assert_eq!(fmt_secs(45.2), "45s");
        assert_eq!(fmt_secs(185.0), "3m05s");
        assert_eq!(fmt_secs(7800.0), "2h10m");
        assert_eq!(fmt_secs(3.0 * 86400.0 + 4.0 * 3600.0), "3d04h");
        assert_eq!(fmt_eta(Some((30.0, LimitKind::Memcg))), "30s memcg");
        assert_eq!(fmt_eta(None), "-");
    }

    #[test]
    fn sparklines_show_shape_not_jitter() {
        let mountain: Vec<u64> = (0..10).map(|i| i << 22).collect();
        let m = sparkline(&mountain, 10);
        assert_eq!(m.chars().next(), Some('▁'));
        assert_eq!(m.chars().last(), Some('█'));
        let bars: Vec<usize> = m.chars().map(|c| BARS.iter().position(|b| *b == c).unwrap()).collect();
        assert!(bars.windows(2).all(|w| w[0] <= w[1]), "{m}");
        let tide: Vec<u64> = (0..8).map(|i| if i % 2 == 0 { 100 << 20 } else { 140 << 20 }).collect();
        assert_eq!(sparkline(&tide, 8), "▁█▁█▁█▁█");
        let jitter: Vec<u64> = (0..6).map(|i| (50 << 20) + (i % 2) * 4096).collect();
        assert_eq!(sparkline(&jitter, 6), "▁▁▁▁▁▁");
        // Fewer samples than columns: right-aligned; more: the newest ones.
        assert_eq!(sparkline(&[1 << 20], 4), "   ▁");
        assert_eq!(sparkline(&mountain, 3).chars().count(), 3);
        assert_eq!(sparkline(&[], 3), "   ");
    }

    #[test]
    fn avail_trend_covers_the_last_minute() {
        let mut h = HostSampler::default();
        h.record(0.0, 8 << 30, 4 << 30, 0, 0);
        assert_eq!(h.header.avail_change, None);
        for t in 1..=90 {
            h.record(t as f64, 8 << 30, (4 << 30) - t * (1 << 20), 0, 0);
        }
        let (d, span) = h.header.avail_change.unwrap();
        assert_eq!(d, -(60 << 20));
        assert_eq!(span, 60.0);
        assert!(h.avail.len() <= 62);
        assert_eq!(h.header.swap_used_pct(), None);
        h.record(91.0, 8 << 30, 1 << 30, 100, 60);
        assert_eq!(h.header.swap_used_pct(), Some(60.0));
    }

    #[test]
    fn container_labels() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            group_label(Some(&format!("/system.slice/docker-{id}.scope"))),
            "docker:0123456789ab"
        );
        assert_eq!(
            group_label(Some("/user.slice/session-1.scope")),
            "/user.slice/session-1.scope"
        );
        assert_eq!(group_label(None), "-");
    }
}
