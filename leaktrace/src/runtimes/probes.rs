//! Finding a process's runtime and attaching its collector probes; decoding their events.
//!
//! A JVM is a process that has HotSpot's `libjvm.so` mapped; a CPython one has a `libpython3*`
//! library or a `python3*` executable with the `python` provider's notes (Debian's
//! `/usr/bin/python3.11` has them; builds without `--with-dtrace`, like pyenv's, do not, and are
//! said to have no probes). The binary is opened through `/proc/PID/root`, so containers work.
//! The java launcher maps `libjvm.so` some milliseconds after exec, so a process is looked at
//! again for its first seconds ([`RuntimeProbes::poll`]).
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{HashMap as KMap, MapData, PerCpuArray, RingBuf},
};
use leaktrace_common::{
    names,
    usdt::{USDT_MAX_ARGS, USDT_MAX_SPECS, USDT_MAX_STRS, UsdtEvent, UsdtSpec, usdt_counter},
};
use serde::Serialize;

use crate::input::{GcEvent, Runtime};
use crate::usdt::{
    args::parse_args,
    attach::{self, Attachment, Mapped},
    notes::{self, Note},
};

/// Tags of the probes we attach (the kernel copies them into each event).
pub mod tag {
    pub const JVM_GC_BEGIN: u32 = 1;
    pub const JVM_GC_END: u32 = 2;
    pub const JVM_POOL_BEGIN: u32 = 3;
    pub const JVM_POOL_END: u32 = 4;
    pub const JVM_SHUTDOWN: u32 = 5;
    pub const PY_GC_START: u32 = 6;
    pub const PY_GC_DONE: u32 = 7;
}

/// A probe we attach: its note's provider and name, our tag, and which arguments are strings.
struct Wanted {
    runtime: Runtime,
    provider: &'static str,
    name: &'static str,
    tag: u32,
    str_args: u8,
    /// Without it the runtime is not followed at all.
    required: bool,
}

static WANTED: [Wanted; 7] = [
    Wanted {
        runtime: Runtime::Jvm,
        provider: "hotspot",
        name: "gc__begin",
        tag: tag::JVM_GC_BEGIN,
        str_args: 0,
        required: true,
    },
    Wanted {
        runtime: Runtime::Jvm,
        provider: "hotspot",
        name: "gc__end",
        tag: tag::JVM_GC_END,
        str_args: 0,
        required: true,
    },
    // (manager name, its length, pool name, its length, initial, used, committed, max)
    Wanted {
        runtime: Runtime::Jvm,
        provider: "hotspot",
        name: "mem__pool__gc__begin",
        tag: tag::JVM_POOL_BEGIN,
        str_args: 0b101,
        required: true,
    },
    Wanted {
        runtime: Runtime::Jvm,
        provider: "hotspot",
        name: "mem__pool__gc__end",
        tag: tag::JVM_POOL_END,
        str_args: 0b101,
        required: true,
    },
    Wanted {
        runtime: Runtime::Jvm,
        provider: "hotspot",
        name: "vm__shutdown",
        tag: tag::JVM_SHUTDOWN,
        str_args: 0,
        required: false,
    },
    // gc__start(int generation), gc__done(Py_ssize_t collected)
    Wanted {
        runtime: Runtime::Python,
        provider: "python",
        name: "gc__start",
        tag: tag::PY_GC_START,
        str_args: 0,
        required: true,
    },
    Wanted {
        runtime: Runtime::Python,
        provider: "python",
        name: "gc__done",
        tag: tag::PY_GC_DONE,
        str_args: 0,
        required: true,
    },
];

/// A runtime found in a process: the binary with the probes, and the probes' notes we use.
#[derive(Debug, Clone)]
pub struct Found {
    pub runtime: Runtime,
    pub binary: Mapped,
    /// (tag, note) for every wanted probe the binary has.
    pub probes: Vec<(u32, Note)>,
}

impl Found {
    pub fn probe_names(&self) -> Vec<String> {
        self.probes.iter().map(|(_, n)| n.name.clone()).collect()
    }
}

/// A file: (device (major, minor), inode).
type FileId = ((u64, u64), u64);

/// Notes of the binaries looked at, by file; binaries without any are cached too.
#[derive(Default)]
pub struct NoteCache {
    by_file: HashMap<FileId, Arc<Vec<Note>>>,
}

impl NoteCache {
    fn get(&mut self, m: &Mapped) -> Arc<Vec<Note>> {
        self.by_file
            .entry((m.dev, m.inode))
            .or_insert_with(|| {
                Arc::new(notes::read(&m.open_path).unwrap_or_else(|e| {
                    log::debug!("{}: {e}", m.open_path.display());
                    Vec::new()
                }))
            })
            .clone()
    }
}

fn candidate(module: &str) -> Option<Runtime> {
    if module == "libjvm.so" {
        Some(Runtime::Jvm)
    } else if module.starts_with("libpython3") || module.starts_with("python3") || module == "python" {
        Some(Runtime::Python)
    } else {
        None
    }
}

/// The runtime of `pid`, if it has one with usable probes. `Err` says why a runtime binary was
/// found but cannot be followed (no probes: built without USDT).
pub fn detect(pid: u32, cache: &mut NoteCache) -> Option<Result<Found, String>> {
    // Cheap test first: most processes are neither.
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    if !(text.contains("libjvm.so") || text.contains("python")) {
        return None;
    }
    let maps = crate::sites::symbolize::parse_maps(pid, &text);
    let mut seen = Vec::new();
    let mut without = None;
    for m in &maps.maps {
        let Some(rt) = candidate(m.module()) else { continue };
        if m.inode == 0 || seen.contains(&(m.dev, m.inode)) {
            continue;
        }
        seen.push((m.dev, m.inode));
        let mapped = Mapped {
            map_path: m.path.clone(),
            open_path: attach::via_root(pid, &m.path),
            dev: m.dev,
            inode: m.inode,
        };
        let notes = cache.get(&mapped);
        let probes: Vec<(u32, Note)> = WANTED
            .iter()
            .filter(|w| w.runtime == rt)
            .filter_map(|w| {
                notes
                    .iter()
                    .find(|n| n.provider == w.provider && n.name == w.name)
                    .map(|n| (w.tag, n.clone()))
            })
            .collect();
        let complete = WANTED
            .iter()
            .filter(|w| w.runtime == rt && w.required)
            .all(|w| probes.iter().any(|(t, _)| *t == w.tag));
        if complete {
            return Some(Ok(Found {
                runtime: rt,
                binary: mapped,
                probes,
            }));
        }
        without.get_or_insert(format!(
            "{} {} has no {} USDT probes (built without them)",
            rt.as_str(),
            m.path,
            if rt == Runtime::Jvm { "hotspot" } else { "python" }
        ));
    }
    without.map(Err)
}

/// One process's attached probes.
struct Tracked {
    found: Found,
    att: Attachment,
}

/// What `poll` saw happen, for logs and events.
#[derive(Debug, Clone, Serialize)]
pub struct AttachNote {
    pub pid: u32,
    pub runtime: Option<Runtime>,
    pub binary: String,
    pub probes: Vec<String>,
    /// Why it could not be attached; None when it was.
    pub error: Option<String>,
}

/// The runtime probes of every tracked process, and the ring their events arrive in.
pub struct RuntimeProbes {
    ring: RingBuf<MapData>,
    specs: KMap<MapData, u32, UsdtSpec>,
    counters: PerCpuArray<MapData, u64>,
    /// (binary, tag) → spec id.
    spec_ids: HashMap<((u64, u64), u64, u32), u32>,
    next_id: u32,
    cache: NoteCache,
    tracked: HashMap<u32, Tracked>,
    /// Processes to look at, in order: (pid, first seen, look again until `DETECT_FOR_SECS`).
    /// An entry whose pid is no longer in `queued` with the same number is stale (the process
    /// was considered again, or forgotten): skipped when reached, so that neither costs a pass
    /// over the queue (a fork churn on a host with a long backlog would).
    pending: VecDeque<(u32, f64, bool, u64)>,
    queued: HashMap<u32, u64>,
    next_entry: u64,
    /// Binaries already said to have no probes (said once, not once per process).
    said: HashSet<String>,
    pub decode_errors: u64,
}

/// How long a process that just exec'd is looked at for a runtime (the java launcher loads
/// libjvm.so some time after exec).
pub const DETECT_FOR_SECS: f64 = 5.0;
/// Processes looked at per interval at most (each costs a read of its /proc/PID/maps, ~40 µs
/// for a small process and more for a large one) …
pub const DETECT_PER_POLL: usize = 128;
/// … of which at most this many not just exec'd: the processes found running at start (or
/// forked without exec) are the backlog, covered over many intervals (5,000 in ~2.5 min) at a
/// low steady cost, while a fresh exec — a JVM or Python starting — is looked at first.
pub const DETECT_BACKLOG_PER_POLL: usize = 32;

impl RuntimeProbes {
    /// Take the USDT maps from the loaded object. Fails when the program could not be loaded.
    pub fn new(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let take = |ebpf: &mut Ebpf, n: &str| {
            ebpf.take_map(n)
                .with_context(|| format!("map {n} not in the eBPF object"))
        };
        let ring = RingBuf::try_from(take(ebpf, names::USDT_EVENTS)?).context("USDT_EVENTS")?;
        let specs = KMap::try_from(take(ebpf, names::USDT_SPECS)?).context("USDT_SPECS")?;
        let counters = PerCpuArray::try_from(take(ebpf, names::USDT_COUNTERS)?).context("USDT_COUNTERS")?;
        Ok(Self {
            ring,
            specs,
            counters,
            spec_ids: HashMap::new(),
            next_id: 1,
            cache: NoteCache::default(),
            tracked: HashMap::new(),
            pending: VecDeque::new(),
            queued: HashMap::new(),
            next_entry: 0,
            said: HashSet::new(),
            decode_errors: 0,
        })
    }

    /// Processes with probes attached.
    pub fn attached(&self) -> impl Iterator<Item = (u32, Runtime)> + '_ {
        self.tracked.iter().map(|(pid, t)| (*pid, t.found.runtime))
    }

    pub fn runtime_of(&self, pid: u32) -> Option<Runtime> {
        self.tracked.get(&pid).map(|t| t.found.runtime)
    }

    /// A process to look at: once, or (`exec`: it just exec'd) again for its first seconds.
    pub fn consider(&mut self, pid: u32, t: f64, exec: bool) {
        if self.tracked.contains_key(&pid) {
            return;
        }
        self.next_entry += 1;
        let n = self.next_entry;
        self.queued.insert(pid, n);
        // Stale entries are skipped when reached; a queue mostly stale is compacted.
        if self.pending.len() > 2 * self.queued.len() + 1024 {
            let queued = &self.queued;
            self.pending.retain(|(p, .., e)| queued.get(p) == Some(e));
        }
        if exec {
            self.pending.push_front((pid, t, exec, n));
        } else {
            self.pending.push_back((pid, t, exec, n));
        }
    }

    fn spec_id(&mut self, m: &Mapped, tag: u32, note: &Note) -> anyhow::Result<u32> {
        let key = (m.dev, m.inode, tag);
        if let Some(id) = self.spec_ids.get(&key) {
            return Ok(*id);
        }
        if self.next_id >= USDT_MAX_SPECS {
            bail!("too many distinct runtime binaries ({} probe specs)", USDT_MAX_SPECS);
        }
        let args = parse_args(&note.args).with_context(|| format!("{}:{} arguments", note.provider, note.name))?;
        let w = WANTED.iter().find(|w| w.tag == tag).expect("wanted tag");
        let mut spec = UsdtSpec {
            probe: tag,
            arg_cnt: args.len().min(USDT_MAX_ARGS) as u16,
            ..UsdtSpec::default()
        };
        let mut slot = 0;
        for (i, a) in args.iter().take(USDT_MAX_ARGS).enumerate() {
            spec.args[i] = a.spec();
            if w.str_args & (1 << i) != 0 && slot < USDT_MAX_STRS {
                slot += 1;
                spec.args[i].str_slot = slot as u8;
            }
        }
        let id = self.next_id;
        self.specs.insert(id, spec, 0).context("writing the USDT spec map")?;
        self.next_id += 1;
        self.spec_ids.insert(key, id);
        Ok(id)
    }

    /// Attach to `pid` if it is a runtime with probes. `None`: not a runtime (yet).
    pub fn try_attach(&mut self, ebpf: &mut Ebpf, pid: u32) -> Option<AttachNote> {
        let found = match detect(pid, &mut self.cache)? {
            Ok(f) => f,
            Err(why) => {
                return Some(AttachNote {
                    pid,
                    runtime: None,
                    binary: String::new(),
                    probes: Vec::new(),
                    error: Some(why),
                });
            }
        };
        let mut note = AttachNote {
            pid,
            runtime: Some(found.runtime),
            binary: found.binary.map_path.clone(),
            probes: found.probe_names(),
            error: None,
        };
        let res = (|| -> anyhow::Result<Attachment> {
            let mut list = Vec::new();
            for (tag, n) in &found.probes {
                list.push((n, self.spec_id(&found.binary, *tag, n)?));
            }
            attach::attach(ebpf, pid, &found.binary, &list)
        })();
        match res {
            Ok(att) => {
                self.tracked.insert(pid, Tracked { found, att });
            }
            Err(e) => note.error = Some(format!("{e:#}")),
        }
        Some(note)
    }

    /// Look at (up to [`DETECT_PER_POLL`]) pending processes; returns what was attached, or why
    /// a runtime binary could not be followed (once per binary).
    pub fn poll(&mut self, ebpf: &mut Ebpf, t: f64) -> Vec<AttachNote> {
        let mut out = Vec::new();
        let mut again = Vec::new();
        let mut backlog = 0;
        let mut looked = 0;
        while looked < DETECT_PER_POLL {
            let Some(&(pid, t0, exec, entry)) = self.pending.front() else {
                break;
            };
            if self.queued.get(&pid) != Some(&entry) {
                self.pending.pop_front();
                continue;
            }
            // Exec'd processes are at the front; the backlog behind them has its own quota.
            if !exec {
                if backlog == DETECT_BACKLOG_PER_POLL {
                    break;
                }
                backlog += 1;
            }
            looked += 1;
            self.pending.pop_front();
            self.queued.remove(&pid);
            match self.try_attach(ebpf, pid) {
                Some(n) => {
                    let first = n.error.as_ref().is_none_or(|e| self.said.insert(e.clone()));
                    if first {
                        out.push(n);
                    }
                }
                None if exec && t - t0 < DETECT_FOR_SECS && std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                    again.push((pid, t0, exec, entry));
                }
                None => {}
            }
        }
        for p in again.into_iter().rev() {
            self.queued.insert(p.0, p.3);
            self.pending.push_front(p);
        }
        out
    }

    /// The process ended (or is no longer tracked): detach.
    pub fn forget(&mut self, ebpf: &mut Ebpf, pid: u32) {
        self.queued.remove(&pid);
        if let Some(t) = self.tracked.remove(&pid) {
            attach::detach(ebpf, t.att);
        }
    }

    /// Every event waiting in the ring, decoded.
    pub fn drain(&mut self, out: &mut Vec<GcEvent>) {
        while let Some(item) = self.ring.next() {
            match decode(&item) {
                Some(e) => out.push(e),
                None => self.decode_errors += 1,
            }
        }
    }

    /// Events lost to a full ring since start.
    pub fn drops(&self) -> u64 {
        self.counters
            .get(&usdt_counter::DROPS, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }
}

impl Drop for RuntimeProbes {
    /// Shutdown: the uprobes go with the programs; the semaphores we raised are lowered here.
    fn drop(&mut self) {
        for t in self.tracked.values() {
            attach::lower_semaphores(&t.att);
        }
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One ring record → event. `None` for a short record or an unknown tag.
pub fn decode(bytes: &[u8]) -> Option<GcEvent> {
    if bytes.len() < size_of::<UsdtEvent>() {
        return None;
    }
    // SAFETY: length checked; `UsdtEvent` is plain data, read unaligned.
    let e: UsdtEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let (pid, ts_ns, a) = (e.pid, e.ts_ns, e.args);
    Some(match e.probe {
        tag::JVM_GC_BEGIN => GcEvent::JvmGcBegin {
            pid,
            ts_ns,
            full: a[0] & 0xff != 0,
        },
        tag::JVM_GC_END => GcEvent::JvmGcEnd { pid, ts_ns },
        tag::JVM_POOL_BEGIN | tag::JVM_POOL_END => {
            if e.nargs < 8 {
                return None;
            }
            let mut manager = cstr(&e.strs[0]);
            manager.truncate(a[1] as usize);
            let mut pool = cstr(&e.strs[1]);
            pool.truncate(a[3] as usize);
            GcEvent::JvmPool {
                pid,
                ts_ns,
                end: e.probe == tag::JVM_POOL_END,
                manager,
                pool,
                used: a[5],
                committed: a[6],
                // HotSpot passes (size_t)-1 for "undefined".
                max: (a[7] != u64::MAX && a[7] != 0).then_some(a[7]),
            }
        }
        tag::JVM_SHUTDOWN => GcEvent::JvmShutdown { pid, ts_ns },
        tag::PY_GC_START => GcEvent::PyGcStart {
            pid,
            ts_ns,
            generation: a[0] as i32,
        },
        tag::PY_GC_DONE => GcEvent::PyGcDone {
            pid,
            ts_ns,
            collected: a[0] as i64,
        },
        _ => return None,
    })
}

/// Whether the USDT program was loaded (for callers deciding to construct [`RuntimeProbes`]).
pub fn available(probes: &crate::probes::Probes) -> bool {
    probes
        .checks
        .iter()
        .any(|c| c.what.starts_with("usdt:") && c.status == crate::probes::Status::Ok)
}

/// Every process on the host with a runtime (for `doctor`): pid, comm, and what was found.
pub fn scan_host() -> Vec<(u32, Result<Found, String>)> {
    let mut cache = NoteCache::default();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Some(r) = detect(pid, &mut cache) {
            out.push((pid, r));
        }
    }
    out.sort_by_key(|(p, _)| *p);
    out
}

/// `doctor`'s lines: every runtime process on the host and whether its probes can be followed.
pub fn doctor_checks(usdt_loaded: bool) -> Vec<crate::probes::Check> {
    use crate::probes::{Check, Status};
    let found = scan_host();
    if found.is_empty() {
        return vec![Check {
            what: "runtimes".into(),
            status: Status::Ok,
            detail: "no JVM (libjvm.so) or CPython running; their collector probes are attached when they start".into(),
        }];
    }
    found
        .into_iter()
        .map(|(pid, r)| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            match r {
                Ok(f) => {
                    let sems = f.probes.iter().filter(|(_, n)| n.semaphore.is_some()).count();
                    let mut detail = format!("{}: probes {}", f.binary.map_path, f.probe_names().join(","));
                    if sems > 0 {
                        detail.push_str(&format!(" ({sems} with semaphores)"));
                    }
                    if !usdt_loaded {
                        detail.push_str("; but the USDT program did not load");
                    }
                    Check {
                        what: format!("runtime {} pid {pid} ({comm})", f.runtime.as_str()),
                        status: if usdt_loaded { Status::Ok } else { Status::Missing },
                        detail,
                    }
                }
                Err(why) => Check {
                    what: format!("runtime pid {pid} ({comm})"),
                    status: Status::Fallback,
                    detail: format!("{why}: RSS only, no GC figures"),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace_common::usdt::USDT_STR_LEN;

    fn rec(probe: u32, nargs: u16, args: [u64; 8], s0: &str, s1: &str) -> Vec<u8> {
        let mut strs = [[0u8; USDT_STR_LEN]; USDT_MAX_STRS];
        strs[0][..s0.len()].copy_from_slice(s0.as_bytes());
        strs[1][..s1.len()].copy_from_slice(s1.as_bytes());
        let e = UsdtEvent {
            ts_ns: 5,
            pid: 42,
            tid: 43,
            probe,
            nargs,
            bad_args: 0,
            _pad: 0,
            args,
            strs,
        };
        // SAFETY: plain data viewed as bytes.
        unsafe { std::slice::from_raw_parts((&raw const e).cast::<u8>(), size_of::<UsdtEvent>()) }.to_vec()
    }

    #[test]
    fn decodes_every_tag() {
        let pool = rec(
            tag::JVM_POOL_END,
            8,
            [1, 19, 2, 10, 0, 1000, 2000, u64::MAX],
            "G1 Young Generation",
            "G1 Old Gen",
        );
        assert_eq!(
            decode(&pool),
            Some(GcEvent::JvmPool {
                pid: 42,
                ts_ns: 5,
                end: true,
                manager: "G1 Young Generation".into(),
                pool: "G1 Old Gen".into(),
                used: 1000,
                committed: 2000,
                max: None
            })
        );
        assert_eq!(
            decode(&rec(tag::JVM_GC_BEGIN, 1, [0x101, 0, 0, 0, 0, 0, 0, 0], "", "")),
            Some(GcEvent::JvmGcBegin {
                pid: 42,
                ts_ns: 5,
                full: true
            })
        );
        assert_eq!(
            decode(&rec(tag::PY_GC_DONE, 1, [(-1i64) as u64, 0, 0, 0, 0, 0, 0, 0], "", "")),
            Some(GcEvent::PyGcDone {
                pid: 42,
                ts_ns: 5,
                collected: -1
            })
        );
        assert_eq!(
            decode(&rec(tag::PY_GC_START, 1, [2, 0, 0, 0, 0, 0, 0, 0], "", "")),
            Some(GcEvent::PyGcStart {
                pid: 42,
                ts_ns: 5,
                generation: 2
            })
        );
        assert_eq!(decode(&rec(99, 0, [0; 8], "", "")), None);
        assert_eq!(decode(&rec(tag::JVM_POOL_END, 3, [0; 8], "", "")), None);
        assert_eq!(decode(&pool[..10]), None);
    }

    #[test]
    fn candidates() {
        assert_eq!(candidate("libjvm.so"), Some(Runtime::Jvm));
        assert_eq!(candidate("python3.11"), Some(Runtime::Python));
        assert_eq!(candidate("libpython3.11.so.1.0"), Some(Runtime::Python));
        assert_eq!(candidate("libc.so.6"), None);
    }
}
