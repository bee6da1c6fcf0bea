//! OOM forensic reports: what leaktrace knew about a victim when the OOM killer struck, written
//! as JSON (0600) in the report directory (0700), and read back by `leaktrace oom` / `report`.
pub mod capture;
pub mod render;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    analysis::classify::Pattern,
    state::SyscallNote,
    sys::{cgroup::CgroupVersion, proc::Mapping},
};

pub const REPORT_VERSION: u32 = 1;

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

/// What an SRE would capture before restarting a leaking service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub pid: u32,
    pub comm: String,
    pub taken_unix_ms: u64,
    pub eta_secs: f64,
    pub limit: String,
    pub smaps_rollup: BTreeMap<String, u64>,
    pub status: BTreeMap<String, String>,
    pub top_mappings: Vec<Mapping>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OomReport {
    pub version: u32,
    /// File stem, e.g. `oom-1764000000123-4242`.
    pub id: String,
    pub kill_unix_ms: u64,
    pub kill_ts_ns: u64,
    pub victim: Victim,
    pub trigger: Trigger,
    pub memcg: Option<Memcg>,
    /// `memcg` when the victim's cgroup limit was what ran out, else `host`.
    pub binding_limit: String,
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
}
