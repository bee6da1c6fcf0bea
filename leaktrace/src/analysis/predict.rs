//! Time to OOM: how long until a growing process reaches the limit that binds it.
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    Memcg,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub kind: LimitKind,
    pub limit_bytes: u64,
    /// What is counted against the limit now (memcg usage; host: MemTotal − MemAvailable).
    pub usage_bytes: u64,
}

impl Limit {
    pub fn headroom(&self) -> u64 {
        self.limit_bytes.saturating_sub(self.usage_bytes)
    }
}

/// Seconds until `limit` is reached at `growth_bytes_per_sec`; None when not growing.
pub fn eta_secs(growth_bytes_per_sec: f64, limit: &Limit) -> Option<f64> {
    if !(growth_bytes_per_sec.is_finite() && growth_bytes_per_sec > 0.0) {
        return None;
    }
    Some(limit.headroom() as f64 / growth_bytes_per_sec)
}

/// The memcg limit when it leaves less headroom than the host, else the host.
pub fn binding_limit(memcg: Option<Limit>, host: Limit) -> Limit {
    match memcg {
        Some(m) if m.headroom() <= host.headroom() => m,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_binding() {
        let host = Limit { kind: LimitKind::Host, limit_bytes: 24 << 30, usage_bytes: 4 << 30 };
        let cg = Limit { kind: LimitKind::Memcg, limit_bytes: 160 << 20, usage_bytes: 80 << 20 };
        assert_eq!(binding_limit(Some(cg), host).kind, LimitKind::Memcg);
        assert_eq!(binding_limit(None, host).kind, LimitKind::Host);
        let big = Limit { kind: LimitKind::Memcg, limit_bytes: u64::MAX, usage_bytes: 0 };
        assert_eq!(binding_limit(Some(big), host).kind, LimitKind::Host);
        assert_eq!(eta_secs(8.0 * 1048576.0, &cg), Some(10.0));
        assert_eq!(eta_secs(0.0, &cg), None);
        assert_eq!(eta_secs(-1.0, &cg), None);
        assert_eq!(eta_secs(f64::NAN, &cg), None);
        let over = Limit { kind: LimitKind::Memcg, limit_bytes: 10, usage_bytes: 20 };
        assert_eq!(eta_secs(1.0, &over), Some(0.0));
    }
}
