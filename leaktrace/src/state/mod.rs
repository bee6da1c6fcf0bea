//! The process table: one entry per live process, keyed so pid reuse cannot merge two lives,
//! each with a bounded timeline of its memory footprint.
pub mod memcg;
pub mod rss_watch;
pub mod timeline;

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use self::timeline::{Timeline, TimelineConfig};
use crate::{
    analysis::classify::{ClassifierConfig, Verdict, classify},
    sys::proc::ProcStatus,
};

/// A process life: pid plus its start time (clock ticks after boot, /proc/PID/stat field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ProcKey {
    pub pid: u32,
    pub start_ticks: u64,
}

/// Resident memory split, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rss {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
}

impl Rss {
    pub fn from_status(s: &ProcStatus) -> Rss {
        Rss {
            anon: s.rss_anon,
            file: s.rss_file,
            shmem: s.rss_shmem,
            swap: s.vm_swap,
        }
    }
    /// VmRSS: what is resident, file pages included.
    pub fn resident(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
    /// What a leak grows and the kernel cannot simply drop: anonymous + shmem, resident or swapped.
    /// File-backed pages are reclaimable cache and are left out of leak detection.
    pub fn footprint(&self) -> u64 {
        self.anon + self.shmem + self.swap
    }
}

/// A memory syscall remembered for OOM reports.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SyscallNote {
    pub ts_ns: u64,
    pub call: std::borrow::Cow<'static, str>,
    pub addr: u64,
    pub len: u64,
    /// Growth this call asked for (negative for releases), bytes.
    pub delta: i64,
    pub ok: bool,
}

pub const SYSCALL_HISTORY: usize = 32;

#[derive(Debug, Clone)]
pub struct Proc {
    pub key: ProcKey,
    pub comm: String,
    pub ppid: u32,
    pub timeline: Timeline,
    pub rss: Rss,
    pub start_resident: u64,
    pub peak_resident: u64,
    pub first_t: f64,
    pub last_t: f64,
    pub verdict: Option<Verdict>,
    /// Currently reported as a leak (`leak_suspected` sent, `leak_cleared` not yet).
    pub flagged: bool,
    pub flagged_at: Option<f64>,
    /// The footprint changed since the last classification.
    pub changed: bool,
    pub last_classified_t: f64,
    pub syscalls: VecDeque<SyscallNote>,
    /// Read once the process starts growing (for OOM reports and the binding limit).
    pub cmdline: Option<Vec<String>>,
    pub memcg: Option<crate::sys::cgroup::MemcgPath>,
    /// `oom_predicted` was sent at this time, with this ETA.
    pub predicted_at: Option<f64>,
    pub predicted_eta: Option<f64>,
    pub eta: Option<(f64, crate::analysis::predict::LimitKind, u64)>,
    pub snapshot: Option<crate::report::Snapshot>,
}

impl Proc {
    fn new(key: ProcKey, st: &ProcStatus, t: f64, tl: &TimelineConfig) -> Proc {
        let rss = Rss::from_status(st);
        let mut timeline = Timeline::new(tl.clone());
        timeline.push(t, rss.footprint());
        Proc {
            key,
            comm: st.name.clone(),
            ppid: st.ppid,
            timeline,
            rss,
            start_resident: rss.resident(),
            peak_resident: rss.resident(),
            first_t: t,
            last_t: t,
            verdict: None,
            flagged: false,
            flagged_at: None,
            changed: true,
            last_classified_t: f64::NEG_INFINITY,
            syscalls: VecDeque::new(),
            cmdline: None,
            memcg: None,
            predicted_at: None,
            predicted_eta: None,
            eta: None,
            snapshot: None,
        }
    }

    pub fn note_syscall(&mut self, n: SyscallNote) {
        if self.syscalls.len() == SYSCALL_HISTORY {
            self.syscalls.pop_front();
        }
        self.syscalls.push_back(n);
    }

    pub fn classify(&mut self, cfg: &ClassifierConfig, t: f64) -> Verdict {
        let v = classify(&self.timeline.samples(), cfg);
        self.verdict = Some(v);
        self.changed = false;
        self.last_classified_t = t;
        v
    }
}

/// All tracked processes, bounded in number.
pub struct ProcessTable {
    procs: HashMap<u32, Proc>,
    pub max: usize,
    pub timeline_cfg: TimelineConfig,
    /// Processes not tracked because the table was full.
    pub refused: u64,
}

pub enum Observed {
    /// A new life was added (a previous life with the same pid, if any, is returned).
    New(Option<Proc>),
    Updated,
    Refused,
}

impl ProcessTable {
    pub fn new(max: usize, timeline_cfg: TimelineConfig) -> Self {
        Self {
            procs: HashMap::new(),
            max,
            timeline_cfg,
            refused: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Proc> {
        self.procs.get_mut(&pid)
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        self.procs.values_mut()
    }

    pub fn remove(&mut self, pid: u32) -> Option<Proc> {
        self.procs.remove(&pid)
    }

    /// Record a reading of `/proc/PID/status` at time `t` for the life `key`.
    pub fn observe(&mut self, key: ProcKey, st: &ProcStatus, t: f64) -> Observed {
        if let Some(p) = self.procs.get_mut(&key.pid) {
            if p.key == key {
                let rss = Rss::from_status(st);
                if rss.footprint() != p.rss.footprint() {
                    p.changed = true;
                }
                p.rss = rss;
                p.comm.clone_from(&st.name);
                p.peak_resident = p.peak_resident.max(rss.resident());
                p.last_t = t;
                p.timeline.push(t, rss.footprint());
                return Observed::Updated;
            }
            // Same pid, another life: the old one ended without us seeing its exit.
            let old = self.procs.remove(&key.pid);
            self.procs.insert(key.pid, Proc::new(key, st, t, &self.timeline_cfg));
            return Observed::New(old);
        }
        if self.procs.len() >= self.max {
            self.refused += 1;
            return Observed::Refused;
        }
        self.procs.insert(key.pid, Proc::new(key, st, t, &self.timeline_cfg));
        Observed::New(None)
    }

    /// Carry the last value forward for a process whose memory did not change this interval.
    pub fn carry(&mut self, pid: u32, t: f64) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.last_t = t;
            p.timeline.push(t, p.rss.footprint());
        }
    }

    /// Approximate heap bytes held by timelines (for the agent's own memory budget).
    pub fn heap_bytes(&self) -> usize {
        self.procs
            .values()
            .map(|p| p.timeline.heap_bytes() + std::mem::size_of::<Proc>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, anon: u64) -> ProcStatus {
        crate::sys::proc::parse_status(&format!(
            "Name:\t{name}\nTgid:\t10\nPPid:\t1\nUid:\t0\t0\t0\t0\nVmRSS:\t{} kB\nRssAnon:\t{} kB\nRssFile:\t4 kB\nRssShmem:\t0 kB\nVmSwap:\t0 kB\nThreads:\t1\n",
            anon / 1024 + 4,
            anon / 1024
        ))
        .unwrap()
    }

    #[test]
    fn pid_reuse_starts_a_new_life() {
        let mut t = ProcessTable::new(10, TimelineConfig::default());
        let a = ProcKey {
            pid: 10,
            start_ticks: 100,
        };
        assert!(matches!(t.observe(a, &st("a", 1 << 20), 0.0), Observed::New(None)));
        assert!(matches!(t.observe(a, &st("a", 2 << 20), 1.0), Observed::Updated));
        assert_eq!(t.get(10).unwrap().timeline.len(), 2);
        let b = ProcKey {
            pid: 10,
            start_ticks: 200,
        };
        let Observed::New(Some(old)) = t.observe(b, &st("b", 1 << 20), 2.0) else {
            panic!("expected a new life")
        };
        assert_eq!(old.comm, "a");
        let p = t.get(10).unwrap();
        assert_eq!((p.comm.as_str(), p.timeline.len(), p.key), ("b", 1, b));
    }

    #[test]
    fn bounded() {
        let mut t = ProcessTable::new(2, TimelineConfig::default());
        for pid in 1..=3 {
            t.observe(ProcKey { pid, start_ticks: 1 }, &st("x", 4096), 0.0);
        }
        assert_eq!((t.len(), t.refused), (2, 1));
    }
}
