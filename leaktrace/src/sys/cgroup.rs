//! Memory cgroup discovery and statistics, for cgroup v1 and v2.
//!
//! Reads `/proc/<pid>/cgroup` (which cgroup a process is in),
//! `/proc/self/mountinfo` (where the hierarchies are mounted, including
//! bind/namespaced mounts whose root is not `/`), and the memory controller
//! files of one cgroup directory:
//!
//! * v1: `memory.limit_in_bytes`, `memory.usage_in_bytes`,
//!   `memory.max_usage_in_bytes`, `memory.failcnt`, `memory.oom_control`,
//!   `memory.memsw.limit_in_bytes`;
//! * v2: `memory.max`, `memory.current`, `memory.peak`, `memory.events`,
//!   `memory.swap.max`.
//!
//! Parsing of every file is a pure function; readers only read files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ParseError;
use super::proc::{PROC_ROOT, read_lossy};

const PROC_CGROUP: &str = "/proc/<pid>/cgroup";
const MOUNTINFO: &str = "/proc/<pid>/mountinfo";

/// v1 limits at or above this are "unlimited" (the kernel reports
/// `PAGE_COUNTER_MAX * PAGE_SIZE`, e.g. 9223372036854771712 on x86_64).
pub const V1_UNLIMITED_THRESHOLD: u64 = 1 << 62;

/// cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

// ---------------------------------------------------------------------------
// /proc/<pid>/cgroup
// ---------------------------------------------------------------------------

/// The memory-relevant entries of `/proc/<pid>/cgroup`. Paths are relative to
/// the hierarchy root as seen from the reader's cgroup namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ProcCgroups {
    /// Path in the v1 hierarchy that has the `memory` controller.
    pub v1_memory: Option<String>,
    /// Path in the unified (v2) hierarchy (`0::/path`).
    pub v2: Option<String>,
}

/// Parse `/proc/<pid>/cgroup` (`hierarchy-ID:controller-list:path` lines).
/// A trailing ` (deleted)` (v2 cgroup already removed) is stripped.
pub fn parse_proc_cgroup(text: &str) -> Result<ProcCgroups, ParseError> {
    let mut out = ProcCgroups::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::malformed(PROC_CGROUP, line));
        };
        if id.parse::<u32>().is_err() {
            return Err(ParseError::invalid(PROC_CGROUP, "hierarchy-ID", id));
        }
        let path = path.strip_suffix(" (deleted)").unwrap_or(path).to_string();
        if id == "0" && controllers.is_empty() {
            out.v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            out.v1_memory = Some(path);
        }
    }
    Ok(out)
}

pub fn read_proc_cgroups(pid: u32) -> io::Result<ProcCgroups> {
    read_proc_cgroups_in(Path::new(PROC_ROOT), pid)
}

pub fn read_proc_cgroups_in(proc_root: &Path, pid: u32) -> io::Result<ProcCgroups> {
    let text = read_lossy(&proc_root.join(pid.to_string()).join("cgroup"))?;
    Ok(parse_proc_cgroup(&text)?)
}

// ---------------------------------------------------------------------------
// /proc/self/mountinfo
// ---------------------------------------------------------------------------

/// A cgroup (v1) or cgroup2 mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CgroupMount {
    pub version: CgroupVersion,
    /// Path inside the hierarchy that is mounted (field 4), `/` normally,
    /// e.g. `/docker/<id>` inside a container without a cgroup namespace.
    pub root: String,
    pub mount_point: PathBuf,
    /// v1: controllers from the super options (`cpu`, `cpuacct`, `memory`,
    /// `name=systemd`…); v2: empty.
    pub controllers: Vec<String>,
}

impl CgroupMount {
    pub fn has_memory_v1(&self) -> bool {
        self.version == CgroupVersion::V1 && self.controllers.iter().any(|c| c == "memory")
    }
}

/// Super options that are mount flags, not controllers.
const V1_NON_CONTROLLER_OPTS: [&str; 7] = [
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
];

/// Parse `/proc/<pid>/mountinfo`, keeping only `cgroup` and `cgroup2` mounts.
///
/// Line format: `id parent major:minor root mount-point options [optional…] -
/// fstype source super-options`; octal escapes (`\040`) are decoded.
pub fn parse_mountinfo(text: &str) -> Result<Vec<CgroupMount>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let toks: Vec<&str> = line.split(' ').filter(|t| !t.is_empty()).collect();
        let Some(sep) = toks.iter().skip(6).position(|t| *t == "-").map(|p| p + 6) else {
            return Err(ParseError::malformed(MOUNTINFO, line));
        };
        let Some(fstype) = toks.get(sep + 1) else {
            return Err(ParseError::malformed(MOUNTINFO, line));
        };
        let version = match *fstype {
            "cgroup" => CgroupVersion::V1,
            "cgroup2" => CgroupVersion::V2,
            _ => continue,
        };
        let controllers = match version {
            CgroupVersion::V1 => toks
                .get(sep + 3)
                .copied()
                .unwrap_or("")
                .split(',')
                .filter(|o| !o.is_empty() && !V1_NON_CONTROLLER_OPTS.contains(o))
                .filter(|o| !o.starts_with("release_agent="))
                .map(str::to_string)
                .collect(),
            CgroupVersion::V2 => Vec::new(),
        };
        out.push(CgroupMount {
            version,
            root: unescape_mountinfo(toks[3]),
            mount_point: PathBuf::from(unescape_mountinfo(toks[4])),
            controllers,
        });
    }
    Ok(out)
}

/// Decode the `\ooo` octal escapes the kernel uses for space, tab, newline, `\`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn read_cgroup_mounts() -> io::Result<Vec<CgroupMount>> {
    read_cgroup_mounts_in(Path::new(PROC_ROOT))
}

/// Mounts as seen by this process (`<proc_root>/self/mountinfo`).
pub fn read_cgroup_mounts_in(proc_root: &Path) -> io::Result<Vec<CgroupMount>> {
    Ok(parse_mountinfo(&read_lossy(&proc_root.join("self/mountinfo"))?)?)
}

// ---------------------------------------------------------------------------
// resolution
// ---------------------------------------------------------------------------

/// A process's memory cgroup and where its files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MemcgPath {
    pub version: CgroupVersion,
    /// Path as in `/proc/<pid>/cgroup`, e.g. `/leaktrace-test`.
    pub rel: String,
    /// Directory holding the `memory.*` files.
    pub fs_path: PathBuf,
}

/// Map a cgroup path (as found in `/proc/<pid>/cgroup` or a kernel OOM
/// message) to a directory, using the mount whose root is the longest prefix
/// of `rel`. For v1 only mounts with the `memory` controller are considered.
/// Returns `None` if no mount exposes that part of the hierarchy.
pub fn resolve_rel(version: CgroupVersion, rel: &str, mounts: &[CgroupMount]) -> Option<PathBuf> {
    let mut best: Option<(usize, &CgroupMount, &str)> = None;
    for m in mounts {
        let usable = match version {
            CgroupVersion::V1 => m.has_memory_v1(),
            CgroupVersion::V2 => m.version == CgroupVersion::V2,
        };
        if !usable {
            continue;
        }
        let root = m.root.trim_end_matches('/');
        let suffix = if root.is_empty() {
            rel
        } else if rel == root {
            ""
        } else if let Some(s) = rel.strip_prefix(root).filter(|s| s.starts_with('/')) {
            s
        } else {
            continue;
        };
        if best.is_none_or(|(len, _, _)| root.len() > len) {
            best = Some((root.len(), m, suffix));
        }
    }
    let (_, m, suffix) = best?;
    let suffix = suffix.trim_matches('/');
    if suffix.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if suffix.is_empty() {
        m.mount_point.clone()
    } else {
        m.mount_point.join(suffix)
    })
}

/// Pick the memory cgroup: v1 when the process has a v1 memory path and the
/// v1 memory controller is mounted; otherwise v2 if `v2_has_memory(dir)`
/// says the memory controller is active there.
pub fn resolve_memcg(
    cgroups: &ProcCgroups,
    mounts: &[CgroupMount],
    v2_has_memory: impl Fn(&Path) -> bool,
) -> Option<MemcgPath> {
    if let Some(rel) = &cgroups.v1_memory
        && let Some(fs_path) = resolve_rel(CgroupVersion::V1, rel, mounts)
    {
        return Some(MemcgPath {
            version: CgroupVersion::V1,
            rel: rel.clone(),
            fs_path,
        });
    }
    let rel = cgroups.v2.as_ref()?;
    let fs_path = resolve_rel(CgroupVersion::V2, rel, mounts)?;
    v2_has_memory(&fs_path).then(|| MemcgPath {
        version: CgroupVersion::V2,
        rel: rel.clone(),
        fs_path,
    })
}

/// Whether a v2 directory has the memory controller: `memory.max` exists
/// (non-root cgroups) or `memory.stat` exists (the root cgroup has no `memory.max`).
pub fn v2_dir_has_memory(dir: &Path) -> bool {
    dir.join("memory.max").exists() || dir.join("memory.stat").exists()
}

// ---------------------------------------------------------------------------
// memory controller files
// ---------------------------------------------------------------------------

/// Memory statistics of one cgroup, normalised across v1 and v2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MemcgStats {
    /// `None` = unlimited. v1 `memory.limit_in_bytes`, v2 `memory.max`.
    pub limit_bytes: Option<u64>,
    /// v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub usage_bytes: u64,
    /// v1 `memory.max_usage_in_bytes`, v2 `memory.peak` (kernel ≥ 5.19).
    pub max_usage_bytes: Option<u64>,
    /// v1 `memory.failcnt`; v2 the `max` counter of `memory.events`
    /// (times usage was about to exceed the limit).
    pub failcnt: Option<u64>,
    /// v1 `oom_kill` of `memory.oom_control` (kernel ≥ 4.13);
    /// v2 `oom_kill` of `memory.events`.
    pub oom_kills: Option<u64>,
    /// Swap allowed in addition to `limit_bytes`; `None` = unlimited or not
    /// accounted. v2 `memory.swap.max`; v1 `memory.memsw.limit_in_bytes -
    /// memory.limit_in_bytes` when both are limited.
    pub swap_limit: Option<u64>,
}

/// v1 limit file (`memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`):
/// `None` when at or above [`V1_UNLIMITED_THRESHOLD`].
pub fn parse_v1_limit(text: &str) -> Result<Option<u64>, ParseError> {
    let v = parse_single_u64(text, "memory.limit_in_bytes")?;
    Ok((v < V1_UNLIMITED_THRESHOLD).then_some(v))
}

/// v2 `memory.max` / `memory.swap.max` / `memory.high`: `max` → `None`.
pub fn parse_v2_max(text: &str) -> Result<Option<u64>, ParseError> {
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    t.parse::<u64>()
        .map(Some)
        .map_err(|_| ParseError::invalid("memory.max", "value", t))
}

/// A file holding one unsigned number (`memory.usage_in_bytes`,
/// `memory.current`, `memory.failcnt`, `memory.peak`, …).
pub fn parse_counter(text: &str) -> Result<u64, ParseError> {
    parse_single_u64(text, "memcg counter")
}

fn parse_single_u64(text: &str, source_name: &'static str) -> Result<u64, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ParseError::missing(source_name, "value"));
    }
    t.parse::<u64>()
        .map_err(|_| ParseError::invalid(source_name, "value", t))
}

/// v1 `memory.oom_control`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OomControl {
    pub oom_kill_disable: bool,
    pub under_oom: bool,
    /// Absent before Linux 4.13.
    pub oom_kill: Option<u64>,
}

pub fn parse_oom_control(text: &str) -> Result<OomControl, ParseError> {
    let map = parse_flat_keyed(text, "memory.oom_control")?;
    Ok(OomControl {
        oom_kill_disable: map.get("oom_kill_disable").copied().unwrap_or(0) != 0,
        under_oom: *map
            .get("under_oom")
            .ok_or(ParseError::missing("memory.oom_control", "under_oom"))?
            != 0,
        oom_kill: map.get("oom_kill").copied(),
    })
}

/// v2 `memory.events` (or `memory.events.local`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MemoryEvents {
    pub low: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    /// Linux ≥ 6.1.
    pub oom_group_kill: Option<u64>,
}

pub fn parse_memory_events(text: &str) -> Result<MemoryEvents, ParseError> {
    let map = parse_flat_keyed(text, "memory.events")?;
    if map.is_empty() {
        return Err(ParseError::missing("memory.events", "max"));
    }
    let g = |k: &str| map.get(k).copied();
    Ok(MemoryEvents {
        low: g("low"),
        high: g("high"),
        max: g("max"),
        oom: g("oom"),
        oom_kill: g("oom_kill"),
        oom_group_kill: g("oom_group_kill"),
    })
}

/// `key value` per line.
fn parse_flat_keyed(text: &str, source_name: &'static str) -> Result<BTreeMap<String, u64>, ParseError> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let mut toks = line.split_whitespace();
        let (Some(k), Some(v), None) = (toks.next(), toks.next(), toks.next()) else {
            return Err(ParseError::malformed(source_name, line));
        };
        let v = v.parse::<u64>().map_err(|_| ParseError::invalid(source_name, k, v))?;
        map.insert(k.to_string(), v);
    }
    Ok(map)
}

/// Read the stats of the cgroup at `memcg.fs_path`.
pub fn read_memcg_stats(memcg: &MemcgPath) -> io::Result<MemcgStats> {
    read_memcg_stats_dir(memcg.version, &memcg.fs_path)
}

/// Read the stats of a cgroup directory. The usage file is required; every
/// other file is optional (`None` when absent, e.g. v2 root or old kernels).
pub fn read_memcg_stats_dir(version: CgroupVersion, dir: &Path) -> io::Result<MemcgStats> {
    match version {
        CgroupVersion::V1 => {
            let usage = parse_counter(&read_lossy(&dir.join("memory.usage_in_bytes"))?)?;
            let limit = read_opt(dir, "memory.limit_in_bytes", parse_v1_limit)?.flatten();
            let memsw = read_opt(dir, "memory.memsw.limit_in_bytes", parse_v1_limit)?.flatten();
            let oom = read_opt(dir, "memory.oom_control", parse_oom_control)?;
            Ok(MemcgStats {
                limit_bytes: limit,
                usage_bytes: usage,
                max_usage_bytes: read_opt(dir, "memory.max_usage_in_bytes", parse_counter)?,
                failcnt: read_opt(dir, "memory.failcnt", parse_counter)?,
                oom_kills: oom.and_then(|o| o.oom_kill),
                swap_limit: match (limit, memsw) {
                    (Some(l), Some(m)) => Some(m.saturating_sub(l)),
                    _ => None,
                },
            })
        }
        CgroupVersion::V2 => {
            let usage = parse_counter(&read_lossy(&dir.join("memory.current"))?)?;
            let events = read_opt(dir, "memory.events", parse_memory_events)?;
            Ok(MemcgStats {
                limit_bytes: read_opt(dir, "memory.max", parse_v2_max)?.flatten(),
                usage_bytes: usage,
                max_usage_bytes: read_opt(dir, "memory.peak", parse_counter)?,
                failcnt: events.as_ref().and_then(|e| e.max),
                oom_kills: events.as_ref().and_then(|e| e.oom_kill),
                swap_limit: read_opt(dir, "memory.swap.max", parse_v2_max)?.flatten(),
            })
        }
    }
}

/// Read and parse an optional file: `Ok(None)` if it does not exist.
fn read_opt<T>(dir: &Path, name: &str, parse: impl FnOnce(&str) -> Result<T, ParseError>) -> io::Result<Option<T>> {
    match read_lossy(&dir.join(name)) {
        Ok(text) => Ok(Some(parse(&text)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    // This machine: cgroup v1 controllers plus an (empty) unified hierarchy.
    const PROC_CGROUP_HYBRID: &str = "9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/1359b2770d99e82227476ef6ac18d14b
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    const PROC_CGROUP_SYSTEMD_V1: &str = "12:cpu,cpuacct:/system.slice/docker.service
11:memory:/docker/58e2d5978244ab31f8988c378e6743cb4dd96062d28548032edcebe07f17790f
10:net_cls,net_prio:/
1:name=systemd:/system.slice/docker.service
0::/system.slice/docker.service
";

    const MOUNTINFO_HOST: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    // systemd-style host with combined controllers and optional fields.
    const MOUNTINFO_SYSTEMD: &str = "25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
38 33 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
40 33 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,memory
";

    const MOUNTINFO_V2_ONLY: &str = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    // Inside a docker container without a cgroup namespace (v1): the memory
    // hierarchy is bind-mounted from /docker/<id>.
    const MOUNTINFO_CONTAINER_V1: &str = "700 690 0:32 /docker/58e2d5978244ab31f8988c378e6743cb4dd96062d28548032edcebe07f17790f /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,memory
";

    #[test]
    fn proc_cgroup_hybrid_this_machine() {
        let c = parse_proc_cgroup(PROC_CGROUP_HYBRID).unwrap();
        assert_eq!(
            c,
            ProcCgroups {
                v1_memory: Some("/process_api/1359b2770d99e82227476ef6ac18d14b".into()),
                v2: Some("/".into()),
            }
        );
    }

    #[test]
    fn proc_cgroup_controller_lists_and_v2_only() {
        let c = parse_proc_cgroup(PROC_CGROUP_SYSTEMD_V1).unwrap();
        assert_eq!(
            c.v1_memory.as_deref(),
            Some("/docker/58e2d5978244ab31f8988c378e6743cb4dd96062d28548032edcebe07f17790f")
        );
        assert_eq!(c.v2.as_deref(), Some("/system.slice/docker.service"));

        let c = parse_proc_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n").unwrap();
        assert_eq!(c.v1_memory, None);
        assert_eq!(c.v2.as_deref(), Some("/user.slice/user-1000.slice/session-2.scope"));

        let c = parse_proc_cgroup("0::/leak:test (deleted)\n").unwrap();
        assert_eq!(c.v2.as_deref(), Some("/leak:test"));

        let c = parse_proc_cgroup("5:memory,hugetlb:/a\n").unwrap();
        assert_eq!(c.v1_memory.as_deref(), Some("/a"));
        // "memory" must be a whole controller name
        let c = parse_proc_cgroup("5:name=memoryish:/a\n").unwrap();
        assert_eq!(c.v1_memory, None);
    }

    #[test]
    fn proc_cgroup_errors() {
        assert!(parse_proc_cgroup("garbage\n").is_err());
        assert!(
            parse_proc_cgroup("x:memory:/\n")
                .unwrap_err()
                .to_string()
                .contains("hierarchy-ID")
        );
        assert_eq!(parse_proc_cgroup("").unwrap(), ProcCgroups::default());
    }

    #[test]
    fn mountinfo_host() {
        let m = parse_mountinfo(MOUNTINFO_HOST).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[2],
            CgroupMount {
                version: CgroupVersion::V1,
                root: "/".into(),
                mount_point: "/sys/fs/cgroup/memory".into(),
                controllers: vec!["memory".into()],
            }
        );
        assert!(m[2].has_memory_v1());
        assert_eq!(m[4].version, CgroupVersion::V2);
        assert_eq!(m[4].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m[3].controllers, vec!["name=systemd"]);
    }

    #[test]
    fn mountinfo_systemd_optional_fields_and_combined_controllers() {
        let m = parse_mountinfo(MOUNTINFO_SYSTEMD).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[2].mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(m[3].has_memory_v1());
        assert_eq!(m[1].controllers, vec!["name=systemd"]);
    }

    #[test]
    fn mountinfo_escapes_and_errors() {
        let m = parse_mountinfo("50 1 0:40 /a\\040b /mnt/my\\040cg rw - cgroup2 none rw\n").unwrap();
        assert_eq!(m[0].root, "/a b");
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/my cg"));
        assert!(parse_mountinfo("1 2 3\n").is_err());
        assert!(parse_mountinfo("1 2 0:1 / /x rw shared:1 -\n").is_err());
        assert_eq!(unescape_mountinfo("\\0"), "\\0");
        assert_eq!(unescape_mountinfo("\\777x"), "\\777x");
        assert_eq!(unescape_mountinfo("a\\134b"), "a\\b");
    }

    #[test]
    fn resolve_v1_on_this_machine_shape() {
        let mounts = parse_mountinfo(MOUNTINFO_HOST).unwrap();
        let cg = parse_proc_cgroup(PROC_CGROUP_HYBRID).unwrap();
        let r = resolve_memcg(&cg, &mounts, |_| panic!("v2 must not be consulted")).unwrap();
        assert_eq!(
            r,
            MemcgPath {
                version: CgroupVersion::V1,
                rel: "/process_api/1359b2770d99e82227476ef6ac18d14b".into(),
                fs_path: "/sys/fs/cgroup/memory/process_api/1359b2770d99e82227476ef6ac18d14b".into(),
            }
        );
        assert_eq!(
            resolve_rel(CgroupVersion::V1, "/", &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
    }

    #[test]
    fn resolve_v2_requires_memory_controller() {
        let mounts = parse_mountinfo(MOUNTINFO_V2_ONLY).unwrap();
        let cg = ProcCgroups {
            v1_memory: None,
            v2: Some("/leaktrace-test".into()),
        };
        let r = resolve_memcg(&cg, &mounts, |p| p == Path::new("/sys/fs/cgroup/leaktrace-test")).unwrap();
        assert_eq!(r.version, CgroupVersion::V2);
        assert_eq!(r.fs_path, PathBuf::from("/sys/fs/cgroup/leaktrace-test"));
        assert_eq!(resolve_memcg(&cg, &mounts, |_| false), None);

        // Hybrid host where the v1 memory controller is not mounted: fall back to v2.
        let mounts = parse_mountinfo("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n").unwrap();
        let cg = ProcCgroups {
            v1_memory: Some("/a".into()),
            v2: Some("/a".into()),
        };
        let r = resolve_memcg(&cg, &mounts, |_| true).unwrap();
        assert_eq!(r.version, CgroupVersion::V2);
        assert_eq!(r.fs_path, PathBuf::from("/sys/fs/cgroup/unified/a"));
    }

    #[test]
    fn resolve_with_non_root_mount() {
        let id = "58e2d5978244ab31f8988c378e6743cb4dd96062d28548032edcebe07f17790f";
        let mounts = parse_mountinfo(MOUNTINFO_CONTAINER_V1).unwrap();
        let rel = format!("/docker/{id}");
        assert_eq!(
            resolve_rel(CgroupVersion::V1, &rel, &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            resolve_rel(CgroupVersion::V1, &format!("{rel}/child"), &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/memory/child"))
        );
        // outside the mounted subtree, or a mere string prefix
        assert_eq!(resolve_rel(CgroupVersion::V1, "/other", &mounts), None);
        assert_eq!(resolve_rel(CgroupVersion::V1, &format!("{rel}x"), &mounts), None);
        // cgroup-namespace escapes are not followed
        assert_eq!(
            resolve_rel(CgroupVersion::V1, "/../x", &parse_mountinfo(MOUNTINFO_HOST).unwrap()),
            None
        );
    }

    #[test]
    fn resolve_prefers_longest_root() {
        let mounts =
            parse_mountinfo("1 0 0:1 / /cg rw - cgroup2 cgroup2 rw\n2 0 0:1 /kubepods /pods rw - cgroup2 cgroup2 rw\n")
                .unwrap();
        assert_eq!(
            resolve_rel(CgroupVersion::V2, "/kubepods/x", &mounts),
            Some(PathBuf::from("/pods/x"))
        );
        assert_eq!(
            resolve_rel(CgroupVersion::V2, "/system.slice", &mounts),
            Some(PathBuf::from("/cg/system.slice"))
        );
        assert_eq!(resolve_rel(CgroupVersion::V1, "/x", &mounts), None);
    }

    #[test]
    fn v1_limits() {
        assert_eq!(parse_v1_limit("9223372036854771712\n").unwrap(), None);
        assert_eq!(parse_v1_limit("4611686018427387904\n").unwrap(), None);
        assert_eq!(parse_v1_limit("104857600\n").unwrap(), Some(104857600));
        assert!(parse_v1_limit("-1\n").is_err());
        assert!(parse_v1_limit("").unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn v2_max() {
        assert_eq!(parse_v2_max("max\n").unwrap(), None);
        assert_eq!(parse_v2_max("104857600\n").unwrap(), Some(104857600));
        assert!(parse_v2_max("lots\n").is_err());
        assert_eq!(parse_counter("54595584\n").unwrap(), 54595584);
    }

    #[test]
    fn oom_control() {
        let o = parse_oom_control("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(
            o,
            OomControl {
                oom_kill_disable: false,
                under_oom: false,
                oom_kill: Some(3),
            }
        );
        let o = parse_oom_control("oom_kill_disable 1\nunder_oom 1\n").unwrap();
        assert!(o.oom_kill_disable && o.under_oom);
        assert_eq!(o.oom_kill, None);
        assert!(parse_oom_control("oom_kill_disable 0\n").is_err());
        assert!(parse_oom_control("under_oom zero\n").is_err());
    }

    #[test]
    fn memory_events() {
        let e = parse_memory_events("low 0\nhigh 12\nmax 345\noom 2\noom_kill 1\noom_group_kill 0\n").unwrap();
        assert_eq!(
            e,
            MemoryEvents {
                low: Some(0),
                high: Some(12),
                max: Some(345),
                oom: Some(2),
                oom_kill: Some(1),
                oom_group_kill: Some(0),
            }
        );
        let e = parse_memory_events("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n").unwrap();
        assert_eq!(e.oom_group_kill, None);
        assert!(parse_memory_events("").is_err());
        assert!(parse_memory_events("max\n").is_err());
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lt-cg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn read_stats_v1_dir() {
        let d = tmpdir("v1");
        fs::write(d.join("memory.usage_in_bytes"), "54595584\n").unwrap();
        fs::write(d.join("memory.limit_in_bytes"), "104857600\n").unwrap();
        fs::write(d.join("memory.memsw.limit_in_bytes"), "209715200\n").unwrap();
        fs::write(d.join("memory.max_usage_in_bytes"), "58933248\n").unwrap();
        fs::write(d.join("memory.failcnt"), "17\n").unwrap();
        fs::write(
            d.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let s = read_memcg_stats_dir(CgroupVersion::V1, &d).unwrap();
        assert_eq!(
            s,
            MemcgStats {
                limit_bytes: Some(104857600),
                usage_bytes: 54595584,
                max_usage_bytes: Some(58933248),
                failcnt: Some(17),
                oom_kills: Some(2),
                swap_limit: Some(104857600),
            }
        );
        fs::write(d.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::remove_file(d.join("memory.memsw.limit_in_bytes")).unwrap();
        let s = read_memcg_stats_dir(CgroupVersion::V1, &d).unwrap();
        assert_eq!(s.limit_bytes, None);
        assert_eq!(s.swap_limit, None);
        fs::write(d.join("memory.failcnt"), "bogus\n").unwrap();
        let e = read_memcg_stats_dir(CgroupVersion::V1, &d).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_stats_v2_dir() {
        let d = tmpdir("v2");
        fs::write(d.join("memory.current"), "1048576\n").unwrap();
        fs::write(d.join("memory.max"), "max\n").unwrap();
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(d.join("memory.swap.max"), "0\n").unwrap();
        let s = read_memcg_stats_dir(CgroupVersion::V2, &d).unwrap();
        assert_eq!(
            s,
            MemcgStats {
                limit_bytes: None,
                usage_bytes: 1048576,
                max_usage_bytes: None,
                failcnt: Some(5),
                oom_kills: Some(1),
                swap_limit: Some(0),
            }
        );
        fs::write(d.join("memory.peak"), "2097152\n").unwrap();
        fs::write(d.join("memory.max"), "67108864\n").unwrap();
        let s = read_memcg_stats(&MemcgPath {
            version: CgroupVersion::V2,
            rel: "/x".into(),
            fs_path: d.clone(),
        })
        .unwrap();
        assert_eq!(s.max_usage_bytes, Some(2097152));
        assert_eq!(s.limit_bytes, Some(67108864));
        fs::remove_file(d.join("memory.current")).unwrap();
        assert_eq!(
            read_memcg_stats_dir(CgroupVersion::V2, &d).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn live_self_discovery() {
        // Works on whatever this runs on; only checks consistency.
        let pid = std::process::id();
        let found = resolve_memcg(
            &read_proc_cgroups(pid).unwrap(),
            &read_cgroup_mounts().unwrap(),
            v2_dir_has_memory,
        );
        if let Some(m) = found {
            assert!(m.fs_path.is_dir(), "{m:?}");
            let s = read_memcg_stats(&m).unwrap();
            assert!(s.usage_bytes > 0);
        }
    }

    #[test]
    fn serde_names() {
        let v = serde_json::to_value(MemcgPath {
            version: CgroupVersion::V2,
            rel: "/a".into(),
            fs_path: "/sys/fs/cgroup/a".into(),
        })
        .unwrap();
        assert_eq!(v["version"], "v2");
        assert_eq!(v["fs_path"], "/sys/fs/cgroup/a");
    }

    #[test]
    fn parsers_never_panic_on_prefixes_or_garbage() {
        let samples = [
            PROC_CGROUP_HYBRID,
            PROC_CGROUP_SYSTEMD_V1,
            MOUNTINFO_HOST,
            MOUNTINFO_SYSTEMD,
            MOUNTINFO_CONTAINER_V1,
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            "9223372036854771712\n",
            "max\n",
        ];
        let garbage = [
            "",
            "\0",
            ":::",
            "- - - - - - - -",
            "\\",
            "\\0",
            "\\07",
            "a\\",
            "0::",
            "1 2 3 4 5 6 - cgroup",
            "99999999999999999999999",
        ];
        let run = |s: &str| {
            let _ = parse_proc_cgroup(s);
            if let Ok(m) = parse_mountinfo(s) {
                let _ = resolve_rel(CgroupVersion::V1, s, &m);
                let _ = resolve_rel(CgroupVersion::V2, "/", &m);
            }
            let _ = parse_v1_limit(s);
            let _ = parse_v2_max(s);
            let _ = parse_counter(s);
            let _ = parse_oom_control(s);
            let _ = parse_memory_events(s);
        };
        for s in samples {
            for (i, _) in s.char_indices() {
                run(&s[..i]);
            }
            run(s);
        }
        for g in garbage {
            run(g);
        }
        let bytes: Vec<u8> = (0u8..=255).cycle().take(1024).collect();
        run(&String::from_utf8_lossy(&bytes));
    }
}
