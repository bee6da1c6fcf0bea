//! Small helpers used across the agent.

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, so agent and kernel times compare.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// Human size: 7.0 MiB, 512 KiB, 12 B.
pub fn bytes(v: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut f = v as f64;
    let mut i = 0;
    while f >= 1024.0 && i < U.len() - 1 {
        f /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v} B")
    } else {
        format!("{f:.1} {}", U[i])
    }
}

/// Signed human size with a sign.
pub fn signed_bytes(v: f64) -> String {
    let s = bytes(v.abs() as u64);
    if v < 0.0 { format!("-{s}") } else { format!("+{s}") }
}

/// A Prometheus series as PromQL writes it: `name{a="x", b="y"}`.
pub fn selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").map_or("", String::as_str);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if rest.is_empty() && !name.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", rest.join(", "))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::bytes(12), "12 B");
        assert_eq!(super::bytes(7 << 20), "7.0 MiB");
        assert_eq!(super::signed_bytes(-2048.0), "-2.0 KiB");
    }
}
