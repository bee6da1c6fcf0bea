//! What the monitor observes, as plain data: one [`Batch`] per interval (a tick) and, between
//! ticks, for lives that start or end. The live agent (`monitor`) reads these from /proc and the kernel;
//! `run --record` writes them (RECORD-FORMAT in README.md) and `analyze` reads them back, so both
//! go through the same `monitor::core::Core`.
use serde::{Deserialize, Serialize};

/// First line of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Format version (1).
    pub leaktrace_record: u32,
    pub interval_secs: f64,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub host: HostInfo,
    #[serde(default)]
    pub started_unix_ms: u64,
    /// The label of every life without a `label` line.
    #[serde(default)]
    pub default_leak: bool,
    #[serde(default)]
    pub note: String,
}

pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    #[serde(default)]
    pub mem_total: u64,
    #[serde(default)]
    pub swap_total: u64,
}

/// Host memory this tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HostObs {
    /// MemAvailable.
    pub avail: u64,
    #[serde(default)]
    pub swap_free: u64,
}

/// A life seen for the first time (or again, after exec): who it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub pid: u32,
    /// Start time in clock ticks after boot: (pid, start) names one life.
    pub start: u64,
    #[serde(default)]
    pub ppid: u32,
    #[serde(default)]
    pub comm: String,
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Memory cgroup, relative to the controller's root.
    #[serde(default)]
    pub memcg: Option<String>,
    /// The tightest memory limit on that cgroup or its ancestors.
    #[serde(default)]
    pub limit: Option<u64>,
    /// How long the process had been running when it was first seen, seconds (None: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<f64>,
}

/// One reading of a process's memory: `[pid, start, anon, file, shmem, swap, floor]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Obs(
    pub u32,
    pub u64,
    pub u64,
    pub u64,
    pub u64,
    pub u64,
    /// Lowest footprint (anon + shmem + swap) the kernel saw during the interval, if known.
    pub Option<u64>,
);

impl Obs {
    pub fn key(&self) -> (u32, u64) {
        (self.0, self.1)
    }
}

/// A memory cgroup read this tick: `[path, usage, limit]` (limit null = none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgObs(pub String, pub u64, pub Option<u64>);

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// What a life holds outside its RSS, read this tick (issue 14): its open descriptors (the count
/// whenever it moved, the kinds when they were scanned), its descriptor limit, the kernel memory
/// of its memory cgroup when the cgroup is its own (CPU time is `Batch::cpu`). Every field but the life
/// is optional: a record without them reads as "not read".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResObs {
    pub pid: u32,
    pub start: u64,
    /// Open file descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fds: Option<u64>,
    /// The descriptors by kind (when scanned this tick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<crate::sys::fds::FdCounts>,
    /// The soft RLIMIT_NOFILE (absent: not read this tick, or unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_limit: Option<u64>,
    /// Kernel memory charged to the life's memory cgroup, when no other process is in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<u64>,
    /// `kernel` counts reclaimable slab too (cgroup v1's `memory.kmem.usage_in_bytes`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kernel_reclaimable: bool,
    /// Socket buffer memory charged to that cgroup, when the kernel counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock: Option<u64>,
}

impl ResObs {
    pub fn new(pid: u32, start: u64) -> ResObs {
        ResObs {
            pid,
            start,
            ..ResObs::default()
        }
    }

    pub fn key(&self) -> (u32, u64) {
        (self.pid, self.start)
    }
}

/// `/proc/meminfo`, the fields the host breakdown uses, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemInfoObs {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    pub cached: u64,
    pub swap_cached: u64,
    pub anon: u64,
    pub mapped: u64,
    pub shmem: u64,
    pub slab_reclaimable: u64,
    pub slab_unreclaimable: u64,
    pub kernel_stack: u64,
    pub page_tables: u64,
    pub vmalloc: u64,
    pub percpu: u64,
    pub hugetlb: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// The host's memory in parts (issue 14), read at a tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMemObs {
    pub mem: MemInfoObs,
    /// Socket buffers and IP fragments (`/proc/net/sockstat`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock: Option<u64>,
    /// tmpfs mounts `[mount point, bytes used]`, the largest (one per superblock).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<(String, u64)>,
    /// Slab caches `[name, bytes, reclaimable]`, the largest and the fastest-growing, when
    /// `/proc/slabinfo` was read this tick (it is read less often, and only by root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slabs: Option<Vec<(String, u64, bool)>>,
    /// OOM kills since boot (`/proc/vmstat` `oom_kill`: each is in the kernel log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
}

/// Everything observed at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Seconds since the monitor started.
    pub t: f64,
    /// An interval tick (the timelines advance and are judged); `false` for lives that started or
    /// ended between ticks.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub tick: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostObs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new: Vec<Identity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obs: Vec<Obs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit: Vec<(u32, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cg: Vec<CgObs>,
    /// Lives whose collector probes were attached: `[pid, start, "jvm" | "python"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<(u32, u64, Runtime)>,
    /// Collector events since the last batch (JVM: heap pools only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gc: Vec<GcEvent>,
    /// Lines of a watched command's stderr that name a Java `OutOfMemoryError`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub java_errors: Vec<String>,
    /// CPU time (user + system, ms) of lives read this tick: `[pid, start, cpu_ms]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<(u32, u64, u64)>,
    /// Resources outside RSS of the lives read this tick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub res: Vec<ResObs>,
    /// The host's memory in parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostmem: Option<Box<HostMemObs>>,
    /// The value of the `--work-metric` counter (work done so far, e.g. requests served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<f64>,
}

impl Batch {
    pub fn at(t: f64, tick: bool) -> Batch {
        Batch {
            t,
            tick,
            ..Batch::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.new.is_empty()
            && self.obs.is_empty()
            && self.exit.is_empty()
            && self.cg.is_empty()
            && self.runtimes.is_empty()
            && self.gc.is_empty()
            && self.java_errors.is_empty()
            && self.cpu.is_empty()
            && self.res.is_empty()
            && self.hostmem.is_none()
            && self.work.is_none()
    }
}

/// The truth about one life in a record (corpus labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub pid: u32,
    pub start: u64,
    pub leak: bool,
    #[serde(default)]
    pub what: String,
    /// Leak rate, bytes/s (leaks only).
    #[serde(default)]
    pub rate: Option<f64>,
    /// It must be flagged within this many seconds of the leak's start (leaks only).
    #[serde(default)]
    pub flag_within: Option<f64>,
    /// When the leak starts, seconds since the recording started (default: the life's start).
    #[serde(default)]
    pub leak_starts: Option<f64>,
    /// Not a leak, but growth that stops at this time (seconds since the recording started):
    /// while it grows it cannot be told from a leak of the same rate, so an alarm raised before
    /// it stops is not counted against the agent (one raised after it is).
    #[serde(default)]
    pub growth_stops: Option<f64>,
    /// A leak inside a managed heap below the heap cap the process declares (`-Xmx`): its
    /// resident memory cannot show it (the heap was committed up front or grows towards the cap
    /// by design); only the collector's figures can. Records without them do not judge it.
    #[serde(default)]
    pub heap_leak: bool,
}

/// One line of a record after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Line {
    Label { label: Label },
    Batch(Batch),
}

/// A whole record: its header, the batches in time order, and the labels.
#[derive(Debug, Clone)]
pub struct Record {
    pub header: Header,
    pub batches: Vec<Batch>,
    pub labels: Vec<Label>,
}

impl Record {
    /// Whether the record carries the collectors' figures of managed heaps (GC probes).
    /// A record made with the collectors followed names the lives they were attached to.
    pub fn has_heap_figures(&self) -> bool {
        self.batches.iter().any(|b| !b.runtimes.is_empty())
    }
}

/// Read a record (JSON lines, gzip-compressed when the file starts with gzip's magic bytes).
/// Errors name the file and the line.
pub fn read_record(path: &std::path::Path) -> anyhow::Result<Record> {
    use std::io::{BufRead as _, BufReader, Read as _};

    use anyhow::Context as _;

    let shown = path.display();
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open record {shown}"))?;
    let mut magic = [0u8; 2];
    let n = f
        .read(&mut magic)
        .with_context(|| format!("cannot read record {shown}"))?;
    let f = std::fs::File::open(path).with_context(|| format!("cannot open record {shown}"))?;
    let reader: Box<dyn std::io::BufRead> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    };
    let mut header = None;
    let mut batches = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            // A recording cut short (the agent was killed) ends in a partial gzip block: keep
            // what was read, and say so.
            Err(e) if header.is_some() && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                eprintln!("leaktrace: {shown} ends early after line {i} (recording cut short?): {e}");
                break;
            }
            Err(e) => return Err(e).with_context(|| format!("{shown} line {}: cannot read it", i + 1)),
        };
        if line.trim().is_empty() {
            continue;
        }
        if header.is_none() {
            let h: Header = serde_json::from_str(&line)
                .with_context(|| format!("{shown} line {}: not a leaktrace record header", i + 1))?;
            if h.leaktrace_record != RECORD_VERSION {
                anyhow::bail!(
                    "{shown}: record format version {} (this leaktrace reads {RECORD_VERSION})",
                    h.leaktrace_record
                );
            }
            if !(h.interval_secs.is_finite() && h.interval_secs > 0.0) {
                anyhow::bail!("{shown} line 1: interval_secs must be a positive number");
            }
            header = Some(h);
            continue;
        }
        match serde_json::from_str::<Line>(&line)
            .with_context(|| format!("{shown} line {}: not a record line", i + 1))?
        {
            Line::Label { label } => labels.push(label),
            Line::Batch(b) => {
                if !b.t.is_finite() || batches.last().is_some_and(|p: &Batch| b.t < p.t) {
                    anyhow::bail!("{shown} line {}: time {} goes backwards", i + 1, b.t);
                }
                batches.push(b);
            }
        }
    }
    let header = header.with_context(|| format!("{shown} is empty: not a leaktrace record"))?;
    Ok(Record {
        header,
        batches,
        labels,
    })
}

/// A runtime whose collector leaktrace can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Jvm,
    Python,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Jvm => "jvm",
            Runtime::Python => "python",
        }
    }
}

/// One collector event (USDT probe firing), decoded. `ts_ns` counts from the monitor's start
/// (CLOCK_MONOTONIC), so a record replays the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum GcEvent {
    /// `hotspot:gc__begin`: a stop-the-world collection starts (`full`: a full collection).
    JvmGcBegin { pid: u32, ts_ns: u64, full: bool },
    /// `hotspot:gc__end`.
    JvmGcEnd { pid: u32, ts_ns: u64 },
    /// `hotspot:mem__pool__gc__begin` / `__end`: one memory pool's usage before / after a
    /// collection by `manager` (bytes; `max` is `None` when undefined).
    JvmPool {
        pid: u32,
        ts_ns: u64,
        end: bool,
        manager: String,
        pool: String,
        used: u64,
        committed: u64,
        max: Option<u64>,
    },
    /// `hotspot:vm__shutdown`: the JVM is shutting down.
    JvmShutdown { pid: u32, ts_ns: u64 },
    /// `python:gc__start`: a collection of `generation` (0, 1, 2) starts.
    PyGcStart { pid: u32, ts_ns: u64, generation: i32 },
    /// `python:gc__done`: it ended, `collected` objects found unreachable.
    PyGcDone { pid: u32, ts_ns: u64, collected: i64 },
}

impl GcEvent {
    pub fn pid(&self) -> u32 {
        match *self {
            GcEvent::JvmGcBegin { pid, .. }
            | GcEvent::JvmGcEnd { pid, .. }
            | GcEvent::JvmPool { pid, .. }
            | GcEvent::JvmShutdown { pid, .. }
            | GcEvent::PyGcStart { pid, .. }
            | GcEvent::PyGcDone { pid, .. } => pid,
        }
    }
    pub fn ts_ns(&self) -> u64 {
        match *self {
            GcEvent::JvmGcBegin { ts_ns, .. }
            | GcEvent::JvmGcEnd { ts_ns, .. }
            | GcEvent::JvmPool { ts_ns, .. }
            | GcEvent::JvmShutdown { ts_ns, .. }
            | GcEvent::PyGcStart { ts_ns, .. }
            | GcEvent::PyGcDone { ts_ns, .. } => ts_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_in_the_documented_shape() {
        let text = r#"{"t":12.004,"host":{"avail":20123456512,"swap_free":0},"new":[{"pid":4242,"start":183745,"ppid":1,"comm":"java","cmdline":["java","-Xmx256m","Main"],"memcg":"/system.slice/x.service","limit":268435456}],"obs":[[4242,183745,104857600,2097152,0,0,101711872]],"exit":[[4100,183001]]}"#;
        let Line::Batch(b) = serde_json::from_str::<Line>(text).unwrap() else {
            panic!("not a batch")
        };
        assert!(b.tick, "a line without `tick` is a tick");
        assert_eq!(b.obs[0], Obs(4242, 183745, 104857600, 2097152, 0, 0, Some(101711872)));
        assert_eq!(b.new[0].limit, Some(268435456));
        assert_eq!(b.exit, vec![(4100, 183001)]);
        let again: Batch = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(again, b);
        assert!(!serde_json::to_string(&b).unwrap().contains("tick"));
        let between = Batch::at(3.5, false);
        assert!(serde_json::to_string(&between).unwrap().contains(r#""tick":false"#));
    }

    #[test]
    fn labels_are_lines_too() {
        let l: Line = serde_json::from_str(
            r#"{"label":{"pid":1,"start":2,"leak":true,"what":"x","rate":81920,"flag_within":180}}"#,
        )
        .unwrap();
        let Line::Label { label } = l else {
            panic!("not a label")
        };
        assert_eq!((label.pid, label.leak, label.flag_within), (1, true, Some(180.0)));
        let obs_null_floor: Obs = serde_json::from_str("[1,2,3,4,5,6,null]").unwrap();
        assert_eq!(obs_null_floor.6, None);
    }
}
