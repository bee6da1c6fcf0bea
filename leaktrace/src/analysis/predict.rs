//! Time until a growing process hits a memory limit.
//!
//! Two limits can stop a process: its memory cgroup's `memory.max` (v2) /
//! `memory.limit_in_bytes` (v1), and the host's memory. Both are described by
//! a [`Limit`] (the limit and the usage currently charged against it); the
//! binding one is the one with less headroom, because with one growth rate
//! less headroom means an earlier hit.

use serde::Serialize;

/// Which limit a [`Limit`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// The memory cgroup of the process.
    Memcg,
    /// The whole host.
    Host,
    /// A JVM's heap (`-Xmx`): it throws OutOfMemoryError when that is full (no kernel involved).
    #[serde(rename = "java_heap")]
    JavaHeap,
}

/// A memory limit and the usage counted against it.
///
/// * memcg: `limit_bytes` = `memory.max` (v2) or `memory.limit_in_bytes`
///   (v1), `usage_bytes` = `memory.current` / `memory.usage_in_bytes`;
///   an unlimited cgroup ("max", or v1's huge page-aligned value) is best
///   passed as `None` to [`binding_limit`], but any `limit_bytes >=`
///   [`UNLIMITED_BYTES`] is treated as unlimited too.
/// * host: `limit_bytes` = `MemTotal`, `usage_bytes` = `MemTotal -
///   MemAvailable` (so the headroom is `MemAvailable`).
///
/// `limit_bytes == 0` means "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub kind: LimitKind,
    pub limit_bytes: u64,
    pub usage_bytes: u64,
}

/// Limits at or above this (1 EiB) mean "no limit": cgroup v1 reports an
/// unlimited group as `0x7FFF_FFFF_FFFF_F000`, v2 as "max".
pub const UNLIMITED_BYTES: u64 = 1 << 60;

impl Limit {
    /// A limit is known: not 0 (unknown) and not unlimited.
    pub fn is_set(&self) -> bool {
        self.limit_bytes > 0 && self.limit_bytes < UNLIMITED_BYTES
    }

    /// Bytes left before the limit: `limit - usage`, 0 if at or over.
    pub fn headroom_bytes(&self) -> u64 {
        self.limit_bytes.saturating_sub(self.usage_bytes)
    }
}

/// Seconds until the limit is hit if the process keeps growing at
/// `growth_bytes_per_sec`; `None` if not growing (≤ 0, or not finite) or no
/// limit information (`limit_bytes` 0 or unlimited). `Some(0.0)` if usage is
/// already at or over the limit.
pub fn eta_secs(growth_bytes_per_sec: f64, limit: &Limit) -> Option<f64> {
    if !growth_bytes_per_sec.is_finite() || growth_bytes_per_sec <= 0.0 || !limit.is_set() {
        return None;
    }
    let eta = limit.headroom_bytes() as f64 / growth_bytes_per_sec;
    eta.is_finite().then_some(eta)
}

/// The limit that will be hit first: the memcg limit if one is set (known,
/// not unlimited) and its headroom is not larger than the host's; otherwise
/// the host. With a common growth rate, smaller headroom means a smaller ETA.
/// On equal headroom the memcg wins (it is the one that OOM-kills the
/// process). A host with unknown limit (0) loses to any set memcg.
pub fn binding_limit(memcg: Option<Limit>, host: Limit) -> Limit {
    match memcg {
        Some(m) if m.is_set() => {
            if !host.is_set() || m.headroom_bytes() <= host.headroom_bytes() {
                m
            } else {
                host
            }
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn memcg(limit: u64, usage: u64) -> Limit {
        Limit {
            kind: LimitKind::Memcg,
            limit_bytes: limit,
            usage_bytes: usage,
        }
    }
    fn host(total: u64, available: u64) -> Limit {
        Limit {
            kind: LimitKind::Host,
            limit_bytes: total,
            usage_bytes: total - available,
        }
    }

    #[test]
    fn eta_basic() {
        let l = memcg(512 * MIB, 256 * MIB);
        let eta = eta_secs(2.0 * MIB as f64, &l).unwrap();
        assert!((eta - 128.0).abs() < 1e-9);
    }

    #[test]
    fn eta_not_growing_or_unknown() {
        let l = memcg(512 * MIB, 256 * MIB);
        assert_eq!(eta_secs(0.0, &l), None);
        assert_eq!(eta_secs(-5.0, &l), None);
        assert_eq!(eta_secs(f64::NAN, &l), None);
        assert_eq!(eta_secs(f64::INFINITY, &l), None);
        assert_eq!(eta_secs(1.0, &memcg(0, 10)), None);
        assert_eq!(eta_secs(1.0, &memcg(u64::MAX, 10)), None);
        assert_eq!(eta_secs(1.0, &memcg(0x7FFF_FFFF_FFFF_F000, 10)), None);
    }

    #[test]
    fn eta_at_or_over_limit_is_zero() {
        assert_eq!(eta_secs(1.0, &memcg(100 * MIB, 100 * MIB)), Some(0.0));
        assert_eq!(eta_secs(1.0, &memcg(100 * MIB, 200 * MIB)), Some(0.0));
        assert_eq!(eta_secs(1e-300, &memcg(100 * MIB, 200 * MIB)), Some(0.0));
    }

    #[test]
    fn eta_extremes_are_finite_or_none() {
        let l = memcg(UNLIMITED_BYTES - 1, 0);
        assert!(eta_secs(f64::MIN_POSITIVE, &l).is_none());
        assert!(eta_secs(1.0, &l).unwrap().is_finite());
        let h = host(u64::MAX, u64::MAX);
        assert_eq!(eta_secs(1.0, &h), None);
    }

    #[test]
    fn binding_prefers_tighter_memcg() {
        let h = host(16 * GIB, 8 * GIB);
        let m = memcg(GIB, 900 * MIB);
        assert_eq!(binding_limit(Some(m), h), m);
        assert_eq!(binding_limit(Some(m), h).kind, LimitKind::Memcg);
    }

    #[test]
    fn binding_host_when_memcg_looser_or_unset() {
        let h = host(16 * GIB, 2 * GIB);
        // memcg larger than what the host has left: the host binds.
        let m = memcg(8 * GIB, GIB);
        assert_eq!(binding_limit(Some(m), h), h);
        assert_eq!(binding_limit(None, h), h);
        assert_eq!(binding_limit(Some(memcg(u64::MAX, 5)), h), h);
        assert_eq!(binding_limit(Some(memcg(0x7FFF_FFFF_FFFF_F000, 5)), h), h);
        assert_eq!(binding_limit(Some(memcg(0, 5)), h), h);
    }

    #[test]
    fn binding_ties_and_unknown_host() {
        let h = host(4 * GIB, GIB);
        let m = memcg(2 * GIB, GIB);
        assert_eq!(binding_limit(Some(m), h), m);
        let unknown = Limit {
            kind: LimitKind::Host,
            limit_bytes: 0,
            usage_bytes: 0,
        };
        assert_eq!(binding_limit(Some(m), unknown), m);
        assert_eq!(binding_limit(None, unknown), unknown);
        assert_eq!(eta_secs(1.0, &binding_limit(None, unknown)), None);
    }

    #[test]
    fn binding_then_eta() {
        let h = host(16 * GIB, 8 * GIB);
        let m = memcg(GIB, GIB - 64 * MIB);
        let b = binding_limit(Some(m), h);
        let eta = eta_secs(MIB as f64, &b).unwrap();
        assert!((eta - 64.0).abs() < 1e-9);
    }

    #[test]
    fn serializes_lowercase_kind() {
        let j = serde_json::to_value(memcg(1, 0)).unwrap();
        assert_eq!(j["kind"], "memcg");
        assert_eq!(serde_json::to_value(LimitKind::Host).unwrap(), "host");
    }
}
