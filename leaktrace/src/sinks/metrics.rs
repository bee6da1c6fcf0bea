//! Prometheus metrics for `leaktrace run --metrics [ADDR]`: a registry (prometheus-client) updated
//! after every batch of monitor updates, and a minimal HTTP/1.x server on tokio serving
//! `GET /metrics` in the text exposition format (OpenMetrics when the scraper asks for it).
//!
//! Label cardinality is bounded: only the top N processes (leak suspected first, then by floor
//! growth, then by footprint) get per-process series, and the per-process families are rebuilt at
//! every update, so processes that left the top N or exited disappear. Command lines are never
//! put in labels (argv can carry secrets).
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Duration,
};

use anyhow::Context as _;
use leaktrace_common::{EVENT_KIND_SLOTS, EventKind};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use crate::{
    analysis::predict::LimitKind,
    output::Event,
    state::{Proc, ProcessTable},
    sys::{
        host::{self, HostMemory},
        proc::{read_stat, read_status},
    },
};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Largest request head accepted.
const MAX_REQUEST: usize = 8192;
/// Scrapes served at once; more connections are closed at once.
const MAX_CONNECTIONS: usize = 16;
/// A connection that has not sent its request and read the answer by then is dropped.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcLabels {
    pid: String,
    comm: String,
    cgroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RssLabels {
    pid: String,
    comm: String,
    cgroup: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EtaLabels {
    pid: String,
    comm: String,
    cgroup: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CgroupLabels {
    cgroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

type GaugeF = Gauge<f64, AtomicU64>;

/// The agent's own usage.
#[derive(Debug, Default, Clone, Copy)]
pub struct SelfReading {
    pub cpu_secs: f64,
    pub resident_bytes: u64,
}

impl SelfReading {
    pub fn read() -> SelfReading {
        let pid = std::process::id();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        SelfReading {
            cpu_secs: read_stat(pid).map_or(0.0, |s| (s.utime_ticks + s.stime_ticks) as f64 / hz),
            resident_bytes: read_status(pid).map_or(0, |s| s.vm_rss),
        }
    }
}

/// Every metric leaktrace exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    top: usize,
    rss: Family<RssLabels, Gauge>,
    growth: Family<ProcLabels, GaugeF>,
    leak: Family<ProcLabels, Gauge>,
    eta: Family<EtaLabels, GaugeF>,
    oom_kills: Family<CgroupLabels, Counter>,
    events: Family<KindLabels, Counter>,
    dropped: Family<KindLabels, Counter>,
    mem_available: Gauge,
    mem_total: Gauge,
    swap_used: Gauge,
    swap_total: Gauge,
    psi_some: GaugeF,
    psi_full: GaugeF,
    host_oom_kills: Counter,
    cpu: Counter<f64, AtomicU64>,
    resident: Gauge,
    tracked: Gauge,
    /// JVM / CPython collectors.
    gc: super::gc_metrics::GcMetrics,
    probe_diagnostics: Counter,
    /// Totals already added to the counters that mirror totals kept elsewhere.
    seen_events: [u64; EVENT_KIND_SLOTS as usize],
    seen_host_oom: u64,
    /// Issue 14: descriptors, kernel memory, the host's parts and clues.
    res: super::resmetrics::ResourceMetrics,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Order for the per-process series: leak suspected first, then floor growth, then footprint.
fn rank(a: &Proc, b: &Proc) -> std::cmp::Ordering {
    let growth = |p: &Proc| p.verdict.map_or(0.0, |v| v.growth_bytes_per_sec.max(0.0));
    b.flagged
        .cmp(&a.flagged)
        .then_with(|| growth(b).total_cmp(&growth(a)))
        .then_with(|| b.rss.footprint().cmp(&a.rss.footprint()))
        .then_with(|| a.key.pid.cmp(&b.key.pid))
}

impl Metrics {
    /// `top`: how many processes get per-process series. `psi`: register the PSI gauges
    /// (only when the kernel exposes /proc/pressure/memory).
    pub fn new(top: usize, psi: bool) -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            top,
            rss: Family::default(),
            growth: Family::default(),
            leak: Family::default(),
            eta: Family::default(),
            oom_kills: Family::default(),
            events: Family::default(),
            dropped: Family::default(),
            mem_available: Gauge::default(),
            mem_total: Gauge::default(),
            swap_used: Gauge::default(),
            swap_total: Gauge::default(),
            psi_some: GaugeF::default(),
            psi_full: GaugeF::default(),
            host_oom_kills: Counter::default(),
            cpu: Counter::default(),
            resident: Gauge::default(),
            tracked: Gauge::default(),
            gc: super::gc_metrics::GcMetrics::default(),
            probe_diagnostics: Counter::default(),
            seen_events: [0; EVENT_KIND_SLOTS as usize],
            seen_host_oom: 0,
            res: super::resmetrics::ResourceMetrics::default(),
        };
        let bytes = || Unit::Bytes;
        r.register_with_unit(
            "leaktrace_process_rss",
            "Resident memory of a process by kind (anon, file, shmem; swap is swapped-out anonymous memory); top processes only",
            bytes(),
            m.rss.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_growth",
            "Growth of the process's memory floor (anon + shmem + swap) found by the leak classifier; top processes only",
            Unit::Other("bytes_per_second".into()),
            m.growth.clone(),
        );
        r.register(
            "leaktrace_process_leak_suspected",
            "1 while leaktrace suspects the process of leaking (leak_suspected sent, not cleared); top processes only",
            m.leak.clone(),
        );
        r.register_with_unit(
            "leaktrace_process_oom_eta",
            "Projected time until the process's growth reaches its binding limit (memcg or host); only for growing processes",
            Unit::Seconds,
            m.eta.clone(),
        );
        r.register(
            "leaktrace_oom_kills",
            "OOM kills seen by leaktrace, by the victim's memory cgroup",
            m.oom_kills.clone(),
        );
        r.register("leaktrace_events", "Kernel events decoded, by kind", m.events.clone());
        r.register(
            "leaktrace_events_dropped",
            "Kernel events lost because a ring buffer was full, by kind",
            m.dropped.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_memory_available",
            "MemAvailable from /proc/meminfo",
            bytes(),
            m.mem_available.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_memory_total",
            "MemTotal from /proc/meminfo",
            bytes(),
            m.mem_total.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_swap_used",
            "SwapTotal - SwapFree from /proc/meminfo",
            bytes(),
            m.swap_used.clone(),
        );
        r.register_with_unit(
            "leaktrace_host_swap_total",
            "SwapTotal from /proc/meminfo",
            bytes(),
            m.swap_total.clone(),
        );
        if psi {
            r.register(
                "leaktrace_host_psi_memory_some_avg10",
                "Share of the last 10 s in which some task stalled on memory (ratio 0-1, /proc/pressure/memory)",
                m.psi_some.clone(),
            );
            r.register(
                "leaktrace_host_psi_memory_full_avg10",
                "Share of the last 10 s in which all non-idle tasks stalled on memory (ratio 0-1, /proc/pressure/memory)",
                m.psi_full.clone(),
            );
        }
        r.register(
            "leaktrace_host_oom_kills",
            "OOM kills on the host since boot (/proc/vmstat oom_kill)",
            m.host_oom_kills.clone(),
        );
        r.register_with_unit(
            "leaktrace_agent_cpu",
            "CPU time used by the leaktrace agent (user + system)",
            Unit::Seconds,
            m.cpu.clone(),
        );
        r.register_with_unit(
            "leaktrace_agent_resident_memory",
            "Resident memory of the leaktrace agent",
            bytes(),
            m.resident.clone(),
        );
        r.register(
            "leaktrace_tracked_processes",
            "Processes in leaktrace's process table",
            m.tracked.clone(),
        );
        m.gc.register(&mut r);
        r.register(
            "leaktrace_probe_diagnostics",
            "Lines the eBPF probes logged on a cold path (a map update failed, a record not laid out as its format file said); each is also on stderr",
            m.probe_diagnostics.clone(),
        );
        // Every kind is present from the start, at 0.
        for kind in EventKind::ALL {
            let l = KindLabels {
                kind: kind.name().into(),
            };
            let _ = m.events.get_or_create(&l);
            let _ = m.dropped.get_or_create(&l);
        }
        let res = super::resmetrics::ResourceMetrics::register(&mut r, top);
        Metrics { registry: r, res, ..m }
    }

    /// Count what an event says (OOM kills, drops).
    pub fn note(&self, e: &Event) {
        match e {
            Event::OomKill { context, .. } => {
                let cgroup = context.as_ref().and_then(|c| c.memcg.clone()).unwrap_or_default();
                self.oom_kills.get_or_create(&CgroupLabels { cgroup }).inc();
            }
            Event::Dropped { kind, count, .. } => {
                self.dropped
                    .get_or_create(&KindLabels { kind: kind.clone() })
                    .inc_by(*count);
            }
            _ => {}
        }
    }

    /// Rebuild the per-process families from the table (top N only).
    pub fn set_processes(&self, table: &ProcessTable) {
        self.tracked.set(to_i64(table.len() as u64));
        let mut procs: Vec<&Proc> = table.iter().collect();
        procs.sort_unstable_by(|a, b| rank(a, b));
        procs.truncate(self.top);
        self.gc.set(&procs);
        self.rss.clear();
        self.growth.clear();
        self.leak.clear();
        self.eta.clear();
        for p in procs {
            let pid = p.key.pid.to_string();
            let cgroup = p.memcg.clone().unwrap_or_default();
            let l = ProcLabels {
                pid,
                comm: p.comm.clone(),
                cgroup,
            };
            for (kind, v) in [
                ("anon", p.rss.anon),
                ("file", p.rss.file),
                ("shmem", p.rss.shmem),
                ("swap", p.rss.swap),
            ] {
                let rl = RssLabels {
                    pid: l.pid.clone(),
                    comm: l.comm.clone(),
                    cgroup: l.cgroup.clone(),
                    kind: kind.into(),
                };
                self.rss.get_or_create(&rl).set(to_i64(v));
            }
            self.growth
                .get_or_create(&l)
                .set(p.verdict.map_or(0.0, |v| v.growth_bytes_per_sec));
            self.leak.get_or_create(&l).set(i64::from(p.flagged));
            if let Some(eta) = p.eta {
                let limit = if eta.limit == LimitKind::Memcg { "memcg" } else { "host" };
                let el = EtaLabels {
                    pid: l.pid.clone(),
                    comm: l.comm.clone(),
                    cgroup: l.cgroup.clone(),
                    limit: limit.into(),
                };
                self.eta.get_or_create(&el).set(eta.secs);
            }
        }
    }

    /// Decoded events per kind since start (`EventSource::counts`).
    pub fn set_event_counts(&mut self, counts: &[u64; EVENT_KIND_SLOTS as usize]) {
        for kind in EventKind::ALL {
            let i = kind as usize;
            let new = counts[i].saturating_sub(self.seen_events[i]);
            if new > 0 {
                self.events
                    .get_or_create(&KindLabels {
                        kind: kind.name().into(),
                    })
                    .inc_by(new);
                self.seen_events[i] = counts[i];
            }
        }
    }

    pub fn set_host(&mut self, h: &HostMemory) {
        if let Some(mi) = &h.mem {
            self.mem_available.set(to_i64(mi.mem_available));
            self.mem_total.set(to_i64(mi.mem_total));
            self.swap_total.set(to_i64(mi.swap_total));
            self.swap_used.set(to_i64(mi.swap_used()));
        }
        // The kernel prints percent; exported as a ratio.
        if let Some(some) = h.psi_some_avg10 {
            self.psi_some.set(some / 100.0);
        }
        if let Some(full) = h.psi_full_avg10 {
            self.psi_full.set(full / 100.0);
        }
        if let Some(n) = h.oom_kills
            && n > self.seen_host_oom
        {
            self.host_oom_kills.inc_by(n - self.seen_host_oom);
            self.seen_host_oom = n;
        }
    }

    /// The probes' diagnostic lines so far (a total kept by `probes::diag`).
    pub fn set_probe_diagnostics(&self, total: u64) {
        let seen = self.probe_diagnostics.get();
        if total > seen {
            self.probe_diagnostics.inc_by(total - seen);
        }
    }

    pub fn set_self(&self, s: SelfReading) {
        let add = s.cpu_secs - self.cpu.get();
        if add > 0.0 {
            self.cpu.inc_by(add);
        }
        self.resident.set(to_i64(s.resident_bytes));
    }

    /// The exposition (OpenMetrics text, which ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// The running exporter: the metrics behind a lock, shared with the HTTP server task.
pub struct Exporter {
    metrics: Arc<Mutex<Metrics>>,
    pub addr: SocketAddr,
}

impl Exporter {
    /// Bind `addr` (an error names the address and the reason) and serve in the background.
    pub async fn start(addr: SocketAddr, top: usize) -> anyhow::Result<Exporter> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let mut m = Metrics::new(top, host::psi_available());
        m.set_host(&HostMemory::read());
        m.set_self(SelfReading::read());
        let metrics = Arc::new(Mutex::new(m));
        tokio::spawn(serve(listener, Arc::clone(&metrics)));
        Ok(Exporter { metrics, addr })
    }

    /// After each batch of monitor events: the events, the process table and the pipeline's counters.
    /// `counts`: kernel events decoded per kind since start (`EventKind as usize`);
    /// `probe_diagnostics`: lines the probes have logged since start (`Probes::diagnostics_logged`).
    pub fn update(
        &self,
        events: &[Event],
        table: &ProcessTable,
        counts: &[u64; EVENT_KIND_SLOTS as usize],
        probe_diagnostics: u64,
    ) {
        let host = HostMemory::read();
        let me = SelfReading::read();
        let mut m = self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in events {
            m.note(e);
        }
        m.set_processes(table);
        m.set_event_counts(counts);
        m.set_host(&host);
        m.set_self(me);
        m.set_probe_diagnostics(probe_diagnostics);
    }
}

impl Exporter {
    /// Issue 14's metrics, from the monitor's state after each batch.
    pub fn update_resources(&self, v: &super::resmetrics::View) {
        let m = self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.res.set(v);
    }
}

async fn serve(listener: TcpListener, metrics: Arc<Mutex<Metrics>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let sock = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // E.g. out of file descriptors: back off rather than spin.
                log::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection(sock, &metrics)).await;
            drop(permit);
        });
    }
}

/// What to answer to one request head.
fn respond(head: &str, metrics: &Mutex<Metrics>) -> (&'static str, &'static str, String, bool) {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into(), false);
    }
    match path {
        "/metrics" => {
            let openmetrics = lines.any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
                })
            });
            let body = metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .encode();
            ("200 OK", if openmetrics { OPENMETRICS } else { TEXT }, body, head_only)
        }
        "/" => ("200 OK", TEXT, "leaktrace: metrics at /metrics\n".into(), head_only),
        _ => (
            "404 Not Found",
            TEXT,
            "not found; metrics at /metrics\n".into(),
            head_only,
        ),
    }
}

async fn connection(mut sock: TcpStream, metrics: &Mutex<Metrics>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&buf[..end]).into_owned();
        }
        if buf.len() > MAX_REQUEST {
            let msg = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            sock.write_all(msg.as_bytes()).await?;
            return Ok(());
        }
    };
    let (status, ctype, body, head_only) = respond(&head, metrics);
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    sock.write_all(out.as_bytes()).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        input::{Identity, Obs},
        state::{Eta, timeline::TimelineConfig},
        sys::host::MemInfo,
    };

    fn table(n: u32) -> ProcessTable {
        let mut t = ProcessTable::new(100, TimelineConfig::default());
        for pid in 1..=n {
            let id = Identity {
                pid,
                start: 1,
                ppid: 1,
                comm: format!("proc{pid}"),
                ..Identity::default()
            };
            t.start(&id, 0.0);
            let kb = u64::from(pid) * 100 * 1024;
            t.observe(&Obs(pid, 1, kb, 4096, 0, 8192, None), 0.0);
        }
        t
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .collect()
    }

    #[test]
    fn metrics_text_encoding() {
        let mut m = Metrics::new(2, true);
        let mut t = table(3);
        let p = t.get_mut(1).unwrap();
        p.flagged = true;
        p.eta = Some(Eta {
            secs: 120.5,
            limit: LimitKind::Memcg,
            limit_bytes: 1 << 30,
        });
        m.set_processes(&t);
        let mut counts = [0u64; EVENT_KIND_SLOTS as usize];
        counts[EventKind::Mmap as usize] = 7;
        m.set_event_counts(&counts);
        counts[EventKind::Mmap as usize] = 9;
        m.set_event_counts(&counts);
        m.note(&Event::dropped(1, "brk", 3));
        m.set_host(&HostMemory {
            mem: Some(MemInfo {
                mem_total: 8 << 30,
                mem_available: 6 << 30,
                swap_total: 2 << 30,
                swap_free: 1 << 30,
            }),
            psi_some_avg10: Some(12.5),
            psi_full_avg10: Some(2.0),
            oom_kills: Some(4),
        });
        m.set_host(&HostMemory {
            oom_kills: Some(5),
            ..Default::default()
        });
        m.set_self(SelfReading {
            cpu_secs: 1.5,
            resident_bytes: 12345,
        });
        m.set_probe_diagnostics(2);
        m.set_probe_diagnostics(5);
        let s = m.encode();

        assert!(s.ends_with("# EOF\n"), "{s}");
        assert!(s.contains("# TYPE leaktrace_process_rss_bytes gauge"), "{s}");
        assert!(s.contains("# UNIT leaktrace_process_rss_bytes bytes"), "{s}");
        // Top 2: the flagged pid 1 first, then the largest footprint (pid 3); pid 2 is left out.
        let rss = lines_of(&s, "leaktrace_process_rss_bytes");
        assert_eq!(rss.len(), 8, "{rss:?}");
        assert!(
            rss.contains(&r#"leaktrace_process_rss_bytes{pid="1",comm="proc1",cgroup="",kind="anon"} 102400"#),
            "{rss:?}"
        );
        assert!(
            rss.contains(&r#"leaktrace_process_rss_bytes{pid="3",comm="proc3",cgroup="",kind="swap"} 8192"#),
            "{rss:?}"
        );
        assert!(!s.contains(r#"pid="2""#), "{s}");
        assert!(
            s.contains(r#"leaktrace_process_leak_suspected{pid="1",comm="proc1",cgroup=""} 1"#),
            "{s}"
        );
        assert!(
            s.contains(r#"leaktrace_process_leak_suspected{pid="3",comm="proc3",cgroup=""} 0"#),
            "{s}"
        );
        assert_eq!(
            lines_of(&s, "leaktrace_process_growth_bytes_per_second").len(),
            2,
            "{s}"
        );
        assert_eq!(
            lines_of(&s, "leaktrace_process_oom_eta_seconds"),
            [r#"leaktrace_process_oom_eta_seconds{pid="1",comm="proc1",cgroup="",limit="memcg"} 120.5"#]
        );
        // Counters: `_total` added by the encoder; every kind present.
        assert!(s.contains("# TYPE leaktrace_events counter"), "{s}");
        assert!(s.contains(r#"leaktrace_events_total{kind="mmap"} 9"#), "{s}");
        assert!(s.contains(r#"leaktrace_events_total{kind="oom_kill"} 0"#), "{s}");
        assert!(s.contains(r#"leaktrace_events_dropped_total{kind="brk"} 3"#), "{s}");
        assert_eq!(lines_of(&s, "leaktrace_events_dropped_total").len(), 8, "{s}");
        assert!(s.contains("leaktrace_host_oom_kills_total 5\n"), "{s}");
        assert!(s.contains("leaktrace_agent_cpu_seconds_total 1.5\n"), "{s}");
        assert!(s.contains("leaktrace_agent_resident_memory_bytes 12345\n"), "{s}");
        assert!(s.contains("leaktrace_tracked_processes 3\n"), "{s}");
        assert!(s.contains("leaktrace_probe_diagnostics_total 5\n"), "{s}");
        assert!(s.contains("leaktrace_host_memory_total_bytes 8589934592\n"), "{s}");
        assert!(s.contains("leaktrace_host_swap_used_bytes 1073741824\n"), "{s}");
        assert!(s.contains("leaktrace_host_psi_memory_some_avg10 0.125\n"), "{s}");
        assert!(s.contains("leaktrace_host_psi_memory_full_avg10 0.02\n"), "{s}");
        // No OOM kill yet: the family has no series.
        assert!(lines_of(&s, "leaktrace_oom_kills_total").is_empty(), "{s}");

        // A process that exits (or leaves the top N) loses its series.
        t.remove_life((1, 1));
        m.set_processes(&t);
        let s = m.encode();
        assert!(!s.contains(r#"pid="1""#), "{s}");
        assert!(s.contains(r#"pid="2""#) && s.contains(r#"pid="3""#), "{s}");
        assert!(lines_of(&s, "leaktrace_process_oom_eta_seconds").is_empty(), "{s}");
    }

    #[test]
    fn metrics_http_answers() {
        let m = Mutex::new(Metrics::new(5, false));
        let (status, ctype, body, _) = respond(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0",
            &m,
        );
        assert_eq!((status, ctype), ("200 OK", OPENMETRICS));
        assert!(
            body.contains("leaktrace_tracked_processes 0") && !body.contains("psi"),
            "{body}"
        );
        assert_eq!(respond("GET /metrics?x=1 HTTP/1.0", &m).1, TEXT);
        assert_eq!(respond("GET /nope HTTP/1.1", &m).0, "404 Not Found");
        assert_eq!(respond("POST /metrics HTTP/1.1", &m).0, "405 Method Not Allowed");
        assert!(respond("HEAD /metrics HTTP/1.1", &m).3);
    }
}
