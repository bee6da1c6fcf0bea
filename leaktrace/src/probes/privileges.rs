//! Checking early that we may load BPF programs, and naming what is missing.
use std::fs;

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Effective capability set of this process, from /proc/self/status.
pub fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// `Ok(description)` when tracing programs can be loaded and attached, else the missing pieces.
pub fn check() -> Result<String, String> {
    check_caps(effective_caps(), unsafe { libc::geteuid() })
}

fn check_caps(caps: u64, euid: u32) -> Result<String, String> {
    if has(caps, CAP_SYS_ADMIN) {
        return Ok(if euid == 0 { "root".into() } else { "CAP_SYS_ADMIN".into() });
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(c, _)| !has(caps, *c))
        .map(|(_, n)| n)
        .collect();
    if missing.is_empty() {
        Ok("CAP_BPF, CAP_PERFMON".into())
    } else {
        Err(format!(
            "leaktrace must run as root or with CAP_BPF and CAP_PERFMON; missing: {} (try: sudo leaktrace ...)",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        assert_eq!(check_caps(1 << CAP_SYS_ADMIN, 0).unwrap(), "root");
        assert!(check_caps((1 << CAP_BPF) | (1 << CAP_PERFMON), 1000).is_ok());
        let e = check_caps(1 << CAP_BPF, 1000).unwrap_err();
        assert!(e.contains("CAP_PERFMON") && !e.contains("CAP_BPF,"), "{e}");
        let e = check_caps(0, 1000).unwrap_err();
        assert!(e.contains("CAP_BPF, CAP_PERFMON"), "{e}");
    }
}
