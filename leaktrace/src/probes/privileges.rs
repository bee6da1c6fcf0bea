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

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYSLOG: u32 = 34;

/// What the agent keeps once its programs are attached: reading other processes' /proc files
/// (smaps needs ptrace-read access), and the kernel log. Map reads on already-open descriptors
/// need no capability.
pub const KEEP_AFTER_ATTACH: [u32; 3] = [CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYSLOG];

/// Reduce the effective and permitted sets to `keep` (irreversible for this process).
pub fn keep_only(keep: &[u32]) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let have = effective_caps();
    let mask: u64 = keep.iter().filter(|c| has(have, **c)).fold(0, |m, c| m | (1u64 << c));
    let hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: mask as u32,
            permitted: mask as u32,
            inheritable: 0,
        },
        Data {
            effective: (mask >> 32) as u32,
            permitted: (mask >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset(2) with a v3 header and two data structs, as the ABI requires.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `Ok(description)` when tracing programs can be loaded and attached, else the missing pieces.
pub fn check() -> Result<String, String> {
    check_caps(effective_caps(), unsafe { libc::geteuid() })
}

fn check_caps(caps: u64, euid: u32) -> Result<String, String> {
    if has(caps, CAP_SYS_ADMIN) {
        return Ok(if euid == 0 {
            "root".into()
        } else {
            "CAP_SYS_ADMIN".into()
        });
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
