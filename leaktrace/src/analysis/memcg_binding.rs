//! Which level of a cgroup hierarchy binds a process: the one that fired at an OOM kill, and the
//! tightest one for time-to-OOM. Pure functions over [`MemcgLevel`]s (leaf first).
//!
//! At a kill the kernel itself says which cgroup ran out (its `oom-kill:` log line carries
//! `constraint=` and `oom_memcg=`): that is believed first. Without it, the level whose own
//! `memory.events.local` `oom` count rose since it was last seen fired (the kernel counts a
//! limit's OOM only at the cgroup whose limit it was). Failing both, the limited level with the
//! least headroom is named, and the host when no level has a limit.

use serde::{Deserialize, Serialize};

use crate::sys::memcg_levels::MemcgLevel;

/// How the binding level was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingSource {
    /// The kernel's `oom-kill:` line (`constraint`, `oom_memcg`).
    KernelLog,
    /// A level's `memory.events.local` `oom` count rose.
    MemoryEvents,
    /// The limited level with the least headroom at the kill.
    Headroom,
    /// No level has a limit.
    NoLimit,
}

/// The limit that fired: a cgroup (`memcg` = its path) or the host (`memcg` = None).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub memcg: Option<String>,
    pub limit_bytes: Option<u64>,
    pub source: BindingSource,
}

impl Binding {
    /// `memcg` or `host`, as in `binding_limit`.
    pub fn kind(&self) -> &'static str {
        if self.memcg.is_some() { "memcg" } else { "host" }
    }
}

/// What the kernel's log said about this kill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelHint {
    /// `CONSTRAINT_MEMCG`, `CONSTRAINT_NONE`, ...
    pub constraint: Option<String>,
    pub oom_memcg: Option<String>,
}

/// The level that fired. `oom_before(path)`: that level's `memory.events.local` `oom` count as
/// last seen before the kill, if known. `host_total`: MemTotal (a memcg limit above it cannot
/// bind).
pub fn fired(
    levels: &[MemcgLevel],
    kernel: Option<&KernelHint>,
    oom_before: impl Fn(&str) -> Option<u64>,
    host_total: Option<u64>,
) -> Binding {
    let limit_of = |path: &str| levels.iter().find(|l| l.path == path).and_then(|l| l.limit_bytes);
    if let Some(k) = kernel
        && let Some(c) = k.constraint.as_deref()
    {
        if c == "CONSTRAINT_MEMCG"
            && let Some(m) = k.oom_memcg.as_deref()
        {
            return Binding {
                memcg: Some(m.to_owned()),
                limit_bytes: limit_of(m),
                source: BindingSource::KernelLog,
            };
        }
        if c != "CONSTRAINT_MEMCG" {
            return Binding {
                memcg: None,
                limit_bytes: host_total,
                source: BindingSource::KernelLog,
            };
        }
    }
    for l in levels {
        let now = l.events_local.as_ref().and_then(|e| e.oom);
        if let (Some(now), Some(before)) = (now, oom_before(&l.path))
            && now > before
        {
            return Binding {
                memcg: Some(l.path.clone()),
                limit_bytes: l.limit_bytes,
                source: BindingSource::MemoryEvents,
            };
        }
    }
    let below_host = |l: &&MemcgLevel| l.limit_bytes.is_some_and(|b| host_total.is_none_or(|t| b < t));
    // Least headroom; on a tie the lower level (it is reached first).
    let tight = levels
        .iter()
        .filter(below_host)
        .min_by_key(|l| l.headroom_bytes().unwrap_or(u64::MAX));
    match tight {
        Some(l) => Binding {
            memcg: Some(l.path.clone()),
            limit_bytes: l.limit_bytes,
            source: BindingSource::Headroom,
        },
        None => Binding {
            memcg: None,
            limit_bytes: host_total,
            source: BindingSource::NoLimit,
        },
    }
}

/// The limited level with the least headroom (on a tie the lower one); None when no level has
/// a limit.
pub fn tightest_level(levels: &[MemcgLevel]) -> Option<&MemcgLevel> {
    let mut best: Option<&MemcgLevel> = None;
    for l in levels.iter().filter(|l| l.limit_bytes.is_some()) {
        if best.is_none_or(|b| l.headroom_bytes() < b.headroom_bytes()) {
            best = Some(l);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cgroup::MemoryEvents;

    const MIB: u64 = 1 << 20;

    fn level(path: &str, limit: Option<u64>, usage: u64, local_oom: Option<u64>) -> MemcgLevel {
        MemcgLevel {
            path: path.into(),
            limit_bytes: limit,
            high_bytes: None,
            usage_bytes: Some(usage),
            events: None,
            events_local: local_oom.map(|o| MemoryEvents {
                low: Some(0),
                high: Some(0),
                max: Some(0),
                oom: Some(o),
                oom_kill: Some(0),
                oom_group_kill: Some(0),
            }),
            oom_group: None,
            pressure: None,
        }
    }

    /// parent 64 MiB, child unlimited: the case `run` used to call `host`.
    fn parent_binds() -> Vec<MemcgLevel> {
        vec![
            level("/p/c", None, 60 * MIB, Some(0)),
            level("/p", Some(64 * MIB), 63 * MIB, Some(1)),
            level("/", None, 0, None),
        ]
    }

    #[test]
    fn the_kernel_log_names_the_level() {
        let hint = KernelHint {
            constraint: Some("CONSTRAINT_MEMCG".into()),
            oom_memcg: Some("/p".into()),
        };
        let b = fired(&parent_binds(), Some(&hint), |_| None, Some(2048 * MIB));
        assert_eq!(b.memcg.as_deref(), Some("/p"));
        assert_eq!(b.limit_bytes, Some(64 * MIB));
        assert_eq!(b.source, BindingSource::KernelLog);
        assert_eq!(b.kind(), "memcg");
        let global = KernelHint {
            constraint: Some("CONSTRAINT_NONE".into()),
            oom_memcg: None,
        };
        let b = fired(&parent_binds(), Some(&global), |_| None, Some(2048 * MIB));
        assert_eq!((b.memcg.as_deref(), b.kind()), (None, "host"));
    }

    #[test]
    fn a_rising_local_oom_count_names_the_level() {
        let b = fired(
            &parent_binds(),
            None,
            |p| Some(if p == "/p" { 0 } else { 5 }),
            Some(2048 * MIB),
        );
        assert_eq!(b.memcg.as_deref(), Some("/p"));
        assert_eq!(b.source, BindingSource::MemoryEvents);
        // The same count as before: not evidence.
        let b = fired(&parent_binds(), None, |_| Some(1), Some(2048 * MIB));
        assert_eq!(b.source, BindingSource::Headroom);
        assert_eq!(b.memcg.as_deref(), Some("/p"));
    }

    #[test]
    fn headroom_then_host() {
        let levels = vec![
            level("/a/b/c", Some(512 * MIB), 100 * MIB, None),
            level("/a/b", Some(128 * MIB), 120 * MIB, None),
            level("/a", Some(64 * 1024 * MIB), 120 * MIB, None),
        ];
        let b = fired(&levels, None, |_| None, Some(2048 * MIB));
        assert_eq!(b.memcg.as_deref(), Some("/a/b"));
        // Limits above the host's memory cannot bind.
        let b = fired(&levels[2..], None, |_| None, Some(2048 * MIB));
        assert_eq!((b.memcg.as_deref(), b.source), (None, BindingSource::NoLimit));
        let b = fired(&[], None, |_| None, None);
        assert_eq!(b.kind(), "host");
    }

    #[test]
    fn tightest_ancestor_for_time_to_oom() {
        let levels = vec![
            level("/gp/p/c", None, 10 * MIB, None),
            level("/gp/p", Some(64 * MIB), 10 * MIB, None),
            level("/gp", Some(512 * MIB), 10 * MIB, None),
        ];
        assert_eq!(tightest_level(&levels).map(|l| l.path.as_str()), Some("/gp/p"));
        // A looser child limit does not hide the parent's.
        let levels = vec![
            level("/p/c", Some(512 * MIB), 10 * MIB, None),
            level("/p", Some(96 * MIB), 10 * MIB, None),
        ];
        assert_eq!(tightest_level(&levels).map(|l| l.path.as_str()), Some("/p"));
        assert!(tightest_level(&levels[..0]).is_none());
        assert!(tightest_level(&[level("/x", None, 1, None)]).is_none());
    }
}
