//! OOM forensic reports: what leaktrace knew about a victim when the OOM killer struck (built by
//! `monitor::oom`), written as JSON (0600) in the report directory (0700) by the report sink, and
//! read back by `leaktrace oom` / `report`.
pub mod group;
pub mod render;
pub mod runtime;
pub mod store;

use serde::{Deserialize, Serialize};

pub use crate::state::Snapshot;
use crate::{
    analysis::{classify::Pattern, memcg_binding::BindingSource},
    state::SyscallNote,
    sys::{
        cgroup::CgroupVersion,
        memcg_levels::{MemcgLevel, MemcgSample},
    },
};

pub const REPORT_VERSION: u32 = 1;

/// [`OomReport::kind`]: the kernel's OOM killer.
pub const KIND_KERNEL: &str = "kernel";
/// [`OomReport::kind`] (and `binding_limit`): a JVM's `OutOfMemoryError`, its heap at `-Xmx`.
pub const KIND_JAVA_HEAP: &str = "java_heap";

fn kind_kernel() -> String {
    KIND_KERNEL.into()
}

/// The victim, from the tracepoint; cmdline/cgroup captured while it still existed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Victim {
    pub pid: u32,
    pub comm: Option<String>,
    /// argv, or None when the process was gone before it could be read.
    pub cmdline: Option<Vec<String>>,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub total_vm_bytes: Option<u64>,
    pub anon_rss_bytes: Option<u64>,
    pub file_rss_bytes: Option<u64>,
    pub shmem_rss_bytes: Option<u64>,
    pub pgtables_bytes: Option<u64>,
    /// Container and Kubernetes pod, from the victim's cgroup path.
    #[serde(default)]
    pub container: Option<crate::sys::container::ContainerInfo>,
    /// Names of the fields above that could not be had (old kernel, process gone).
    pub missing: Vec<String>,
}

/// The victims of one `memory.oom.group` kill, listed in each of their reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OomGroup {
    /// The cgroup with `memory.oom.group` = 1 whose processes were all killed.
    pub memcg: String,
    /// The same for every report of the kill: the first victim's report id.
    pub group_id: String,
    /// Every victim seen so far (each report is rewritten as more arrive).
    pub victims: Vec<GroupVictim>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupVictim {
    pub pid: u32,
    pub comm: Option<String>,
    /// The victim's report id (`oom-<unix_ms>-<pid>`).
    pub report: String,
}

/// The task that was running when the kill was decided (often a bystander that allocated).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trigger {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Memcg {
    /// Path inside the hierarchy, e.g. `/leak-test` (the victim's own cgroup).
    pub path: String,
    pub version: CgroupVersion,
    /// None = unlimited.
    pub limit_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    pub max_usage_bytes: Option<u64>,
    pub failcnt: Option<u64>,
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Host {
    pub mem_total_bytes: Option<u64>,
    pub mem_available_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
    pub swap_used_bytes: Option<u64>,
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
    /// Where the host's memory was at the kill (MemTotal in parts, the largest first; tmpfs
    /// mounts by name), with each part's growth and whether it was suspected of leaking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<HostPart>,
}

/// One part of the host's memory at the kill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostPart {
    /// `process_anon`, `page_cache`, `slab_unreclaimable`, `tmpfs`, ... (README.md "The host's memory").
    pub part: String,
    /// The tmpfs mount, or the slab cache that grew most.
    #[serde(default)]
    pub name: Option<String>,
    pub bytes: u64,
    /// The classifier's floor growth (0 until judged).
    pub growth_bytes_per_sec: f64,
    /// `host_leak_suspected` was in effect.
    pub leak_suspected: bool,
}

/// One point of the victim's footprint before the kill (`t_secs` ≤ 0, relative to the kill).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Point {
    pub t_secs: f64,
    pub footprint_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Analysis {
    pub pattern: Pattern,
    pub leak: bool,
    pub confidence: f64,
    pub growth_bytes_per_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grower {
    pub pid: u32,
    pub comm: String,
    pub growth_bytes_per_sec: f64,
    pub footprint_bytes: u64,
    pub rss_bytes: u64,
    pub pattern: Option<Pattern>,
    pub memcg: Option<String>,
    #[serde(default)]
    pub container: Option<crate::sys::container::ContainerInfo>,
    pub is_victim: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OomReport {
    pub version: u32,
    /// File stem, e.g. `oom-1764000000123-4242`.
    pub id: String,
    pub kill_unix_ms: u64,
    pub kill_ts_ns: u64,
    /// `kernel` (the OOM killer) or `java_heap` (a JVM's OutOfMemoryError).
    #[serde(default = "kind_kernel")]
    pub kind: String,
    pub victim: Victim,
    pub trigger: Trigger,
    pub memcg: Option<Memcg>,
    /// `memcg` when the victim's cgroup limit was what ran out, else `host`.
    pub binding_limit: String,
    /// The cgroup whose limit fired: the victim's own or an ancestor (`/parent` when the child
    /// has no limit of its own). None when the host ran out.
    #[serde(default)]
    pub binding_memcg: Option<String>,
    /// How `binding_memcg` was decided: `kernel_log`, `memory_events`, `headroom`, `no_limit`.
    #[serde(default)]
    pub binding_source: Option<BindingSource>,
    /// The victim's cgroup and its ancestors at the kill, leaf first: limits, `memory.high`,
    /// usage, `memory.events`, `memory.oom.group`, PSI.
    #[serde(default)]
    pub memcg_levels: Vec<MemcgLevel>,
    /// Pre-OOM evidence: the binding cgroup's (else the victim's) usage, `memory.events`
    /// high/max/oom counts and PSI, sampled each interval before the kill (t ≤ 0).
    #[serde(default)]
    pub memcg_timeline: Vec<MemcgSample>,
    /// A `memory.oom.group` kill: every process of the group is a victim, each with its report.
    #[serde(default)]
    pub oom_group: Option<OomGroup>,
    pub host: Host,
    pub interval_secs: f64,
    pub timeline: Vec<Point>,
    pub analysis: Option<Analysis>,
    /// leaktrace had flagged it as a leak before the kill; seconds before the kill.
    pub flagged: bool,
    pub flagged_secs_before: Option<f64>,
    /// leaktrace had predicted the kill (`oom_predicted`); the lead time in seconds.
    pub predicted: bool,
    pub lead_time_secs: Option<f64>,
    pub predicted_eta_secs: Option<f64>,
    pub top_growers_cgroup: Vec<Grower>,
    pub top_growers_host: Vec<Grower>,
    pub last_syscalls: Vec<SyscallNote>,
    pub snapshot: Option<Snapshot>,
    /// Where the victim grew: its top allocation sites by bytes (`run --stacks`), innermost
    /// frame first. Empty when stacks were off.
    #[serde(default)]
    pub top_sites: Vec<crate::sites::Site>,
    /// The victim's collector (a tracked JVM or CPython): figures, history, class histograms.
    #[serde(default)]
    pub runtime: Option<runtime::RuntimeReport>,
}
