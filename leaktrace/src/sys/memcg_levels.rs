//! A memory cgroup and its ancestors ("levels"), each with its own limit, `memory.high`, usage,
//! `memory.events` counters, `memory.oom.group` and `memory.pressure` (PSI).
//!
//! A process is bound by every limit on the way up to the root, not only its own cgroup's:
//! on cgroup v2 a parent's `memory.max` binds a child that has none. The levels are listed
//! leaf first; the root cgroup (no limit files) is left out.
//!
//! v1 has the limits (`memory.limit_in_bytes`, hierarchical since 4.x) but no `memory.high`,
//! `memory.events`, `memory.oom.group` or per-cgroup PSI: those stay `None`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cgroup::{
    CgroupVersion, MemcgPath, MemoryEvents, parse_counter, parse_memory_events, parse_v1_limit, parse_v2_max,
};
use procfs_core::{FromRead as _, MemoryPressure};

use super::proc::read_lossy;

/// One cgroup on the way from a process's memory cgroup up to the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemcgLevel {
    /// Path inside the hierarchy, e.g. `/parent/child`.
    pub path: String,
    /// `memory.max` / `memory.limit_in_bytes`; None = unlimited.
    pub limit_bytes: Option<u64>,
    /// v2 `memory.high` (reclaim and throttling above it); None = unlimited or v1.
    pub high_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    /// `memory.events`: counts in this cgroup and its descendants.
    pub events: Option<MemoryEvents>,
    /// `memory.events.local`: counts of this cgroup alone (`oom` here = its own limit fired).
    pub events_local: Option<MemoryEvents>,
    /// `memory.oom.group`: an OOM kill here kills every process in the cgroup.
    pub oom_group: Option<bool>,
    /// `memory.pressure`: how much the cgroup's tasks stalled on memory.
    pub pressure: Option<Pressure>,
}

/// The PSI figures a report keeps: percent of time stalled over 10 s and the totals (µs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    pub some_avg10: f64,
    pub full_avg10: Option<f64>,
    pub some_total_usec: u64,
    pub full_total_usec: Option<u64>,
}

impl Pressure {
    /// A cgroup's `memory.pressure` (the `/proc/pressure/memory` format); None when malformed.
    pub fn parse(text: &str) -> Option<Pressure> {
        // procfs-core slices each line after its `some`/`full` word without checking the length.
        if !text
            .lines()
            .all(|l| l.is_empty() || l.starts_with("some ") || l.starts_with("full "))
        {
            return None;
        }
        let p = MemoryPressure::from_read(text.as_bytes()).ok()?;
        Some(Pressure {
            some_avg10: f64::from(p.some.avg10),
            full_avg10: Some(f64::from(p.full.avg10)),
            some_total_usec: p.some.total,
            full_total_usec: Some(p.full.total),
        })
    }
}

impl MemcgLevel {
    /// Bytes left under the limit (0 when at or over it); None without a limit.
    pub fn headroom_bytes(&self) -> Option<u64> {
        Some(self.limit_bytes?.saturating_sub(self.usage_bytes.unwrap_or(0)))
    }
}

/// One interval's reading of one cgroup level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemcgSample {
    /// Monitor clock (seconds since start); in reports, seconds relative to the kill (≤ 0).
    pub t_secs: f64,
    pub usage_bytes: Option<u64>,
    /// `memory.events` counts (hierarchical).
    pub high_events: Option<u64>,
    pub max_events: Option<u64>,
    pub oom_events: Option<u64>,
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
}

impl MemcgSample {
    pub fn of(t: f64, l: &MemcgLevel) -> MemcgSample {
        let ev = l.events.as_ref();
        MemcgSample {
            t_secs: t,
            usage_bytes: l.usage_bytes,
            high_events: ev.and_then(|e| e.high),
            max_events: ev.and_then(|e| e.max),
            oom_events: ev.and_then(|e| e.oom),
            psi_some_avg10: l.pressure.map(|p| p.some_avg10),
            psi_full_avg10: l.pressure.and_then(|p| p.full_avg10),
        }
    }
}

/// `/a/b/c` → `["/a/b/c", "/a/b", "/a"]` (the root `/` is not a level).
pub fn ancestor_paths(rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = rel.trim_end_matches('/');
    while !cur.is_empty() {
        out.push(cur.to_owned());
        match cur.rfind('/') {
            Some(i) => cur = &cur[..i],
            None => break,
        }
    }
    out
}

/// The directories of `memcg` and its ancestors, leaf first, as far up as the mounted
/// hierarchy goes (a container's namespaced mount ends at its own root).
pub fn level_dirs(memcg: &MemcgPath) -> Vec<(String, PathBuf)> {
    let paths = ancestor_paths(&memcg.rel);
    let mut out = Vec::with_capacity(paths.len());
    let mut dir = memcg.fs_path.clone();
    for p in paths {
        if !dir.join("cgroup.procs").exists() || !has_limit_file(memcg.version, &dir) {
            break;
        }
        out.push((p, dir.clone()));
        match dir.parent() {
            Some(parent) => dir = parent.to_path_buf(),
            None => break,
        }
    }
    out
}

fn has_limit_file(version: CgroupVersion, dir: &Path) -> bool {
    match version {
        CgroupVersion::V1 => dir.join("memory.limit_in_bytes").exists(),
        CgroupVersion::V2 => dir.join("memory.max").exists(),
    }
}

/// Reads every level of `memcg`, leaf first. Levels whose files vanished are left out.
pub fn read_levels(memcg: &MemcgPath) -> Vec<MemcgLevel> {
    level_dirs(memcg)
        .into_iter()
        .filter_map(|(path, dir)| read_level(memcg.version, path, &dir))
        .collect()
}

/// Like [`read_levels`], only each level's limit and usage (two files a level, not seven): what
/// the monitor needs every interval for the time to OOM of each growing process.
pub fn read_limits(memcg: &MemcgPath) -> Vec<MemcgLevel> {
    let (limit_file, usage_file, parse_limit): (_, _, fn(&str) -> _) = match memcg.version {
        CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes", parse_v1_limit),
        CgroupVersion::V2 => ("memory.max", "memory.current", parse_v2_max),
    };
    level_dirs(memcg)
        .into_iter()
        .filter_map(|(path, dir)| {
            let read = |name: &str| read_lossy(&dir.join(name)).ok();
            Some(MemcgLevel {
                path,
                limit_bytes: parse_limit(&read(limit_file)?).ok().flatten(),
                high_bytes: None,
                usage_bytes: read(usage_file).and_then(|t| parse_counter(&t).ok()),
                events: None,
                events_local: None,
                oom_group: None,
                pressure: None,
            })
        })
        .collect()
}

pub fn read_level(version: CgroupVersion, path: String, dir: &Path) -> Option<MemcgLevel> {
    let read = |name: &str| read_lossy(&dir.join(name)).ok();
    match version {
        CgroupVersion::V1 => Some(MemcgLevel {
            path,
            limit_bytes: parse_v1_limit(&read("memory.limit_in_bytes")?).ok().flatten(),
            high_bytes: None,
            usage_bytes: read("memory.usage_in_bytes").and_then(|t| parse_counter(&t).ok()),
            events: None,
            events_local: None,
            oom_group: None,
            pressure: None,
        }),
        CgroupVersion::V2 => Some(MemcgLevel {
            path,
            limit_bytes: parse_v2_max(&read("memory.max")?).ok().flatten(),
            high_bytes: read("memory.high").and_then(|t| parse_v2_max(&t).ok().flatten()),
            usage_bytes: read("memory.current").and_then(|t| parse_counter(&t).ok()),
            events: read("memory.events").and_then(|t| parse_memory_events(&t).ok()),
            events_local: read("memory.events.local").and_then(|t| parse_memory_events(&t).ok()),
            oom_group: read("memory.oom.group")
                .and_then(|t| parse_counter(&t).ok())
                .map(|v| v != 0),
            pressure: read("memory.pressure").and_then(|t| Pressure::parse(&t)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn ancestors_leaf_first_without_root() {
        assert_eq!(ancestor_paths("/a/b/c"), ["/a/b/c", "/a/b", "/a"]);
        assert_eq!(ancestor_paths("/a"), ["/a"]);
        assert!(ancestor_paths("/").is_empty());
        assert!(ancestor_paths("").is_empty());
        assert_eq!(ancestor_paths("/a/b/"), ["/a/b", "/a"]);
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (n, t) in files {
            fs::write(dir.join(n), t).unwrap();
        }
    }

    #[test]
    fn v2_levels_from_a_fake_hierarchy() {
        let root = std::env::temp_dir().join(format!("lt-levels-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        // The mount point: a root cgroup (cgroup.procs but no memory.max) stops the walk.
        write(&root, &[("cgroup.procs", "")]);
        let parent = root.join("p");
        write(
            &parent,
            &[
                ("cgroup.procs", ""),
                ("memory.max", "67108864\n"),
                ("memory.high", "max\n"),
                ("memory.current", "66000000\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
                ),
                (
                    "memory.events.local",
                    "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n",
                ),
                ("memory.oom.group", "0\n"),
                (
                    "memory.pressure",
                    "some avg10=12.50 avg60=3.00 avg300=1.00 total=123456\nfull avg10=10.00 avg60=2.00 avg300=0.50 total=99999\n",
                ),
            ],
        );
        let child = parent.join("c");
        write(
            &child,
            &[
                ("cgroup.procs", "42\n"),
                ("memory.max", "max\n"),
                ("memory.high", "33554432\n"),
                ("memory.current", "65000000\n"),
                ("memory.oom.group", "1\n"),
            ],
        );
        let m = MemcgPath {
            version: CgroupVersion::V2,
            rel: "/p/c".into(),
            fs_path: child.clone(),
        };
        let levels = read_levels(&m);
        assert_eq!(levels.len(), 2, "{levels:?}");
        assert_eq!(levels[0].path, "/p/c");
        assert_eq!(levels[0].limit_bytes, None);
        assert_eq!(levels[0].high_bytes, Some(32 << 20));
        assert_eq!(levels[0].oom_group, Some(true));
        assert_eq!(levels[0].headroom_bytes(), None);
        assert_eq!(levels[1].path, "/p");
        assert_eq!(levels[1].limit_bytes, Some(64 << 20));
        assert_eq!(levels[1].headroom_bytes(), Some(67108864 - 66000000));
        assert_eq!(levels[1].events_local.as_ref().unwrap().oom, Some(1));
        let p = levels[1].pressure.unwrap();
        assert_eq!(p.some_avg10, 12.5);
        assert_eq!(p.full_total_usec, Some(99999));
        // The light reading agrees on what it reads.
        let light: Vec<_> = read_limits(&m)
            .into_iter()
            .map(|l| (l.path, l.limit_bytes, l.usage_bytes))
            .collect();
        let full: Vec<_> = levels
            .into_iter()
            .map(|l| (l.path, l.limit_bytes, l.usage_bytes))
            .collect();
        assert_eq!(light, full);
        let _ = fs::remove_dir_all(&root);
    }
}
