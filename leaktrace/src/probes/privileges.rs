//! Checking early that we may load BPF programs and naming what is missing; dropping what is not
//! needed once the programs are attached. Capabilities are read and set with the `caps` crate.
use caps::{CapSet, Capability, CapsHashSet};

/// What the agent keeps once its programs are attached: reading other processes' /proc files
/// (smaps needs ptrace-read access), and the kernel log. Map reads on already-open descriptors
/// need no capability.
pub const KEEP_AFTER_ATTACH: [Capability; 3] = [
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_SYSLOG,
];

/// What the agent keeps after attach: [`KEEP_AFTER_ATTACH`], plus, when it follows managed
/// runtimes, what attaching their collector probes to processes that start later needs — the
/// kernel's uprobe PMU wants CAP_SYS_ADMIN for `perf_event_open` (CAP_PERFMON is not enough,
/// measured on 6.18), linking the program CAP_BPF/CAP_PERFMON, and the semaphores CAP_SYS_PTRACE
/// (already kept) — and with heap snapshots what speaking to a JVM as its own user needs
/// (CAP_SETUID, CAP_SETGID). `--no-runtimes` keeps the minimal set.
pub fn keep_after_attach(runtimes: bool, heap_snapshots: bool) -> Vec<Capability> {
    let mut keep = KEEP_AFTER_ATTACH.to_vec();
    if runtimes {
        keep.extend([Capability::CAP_BPF, Capability::CAP_PERFMON, Capability::CAP_SYS_ADMIN]);
    }
    if heap_snapshots {
        keep.extend([Capability::CAP_SETUID, Capability::CAP_SETGID]);
    }
    keep
}

/// This thread's effective set (empty when it cannot be read).
fn effective() -> CapsHashSet {
    caps::read(None, CapSet::Effective).unwrap_or_default()
}

/// Reduce the effective and permitted sets to `keep` (those of them we have) and clear the
/// inheritable set. Irreversible for this process.
pub fn keep_only(keep: &[Capability]) -> Result<(), caps::errors::CapsError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = keep.iter().copied().filter(|c| permitted.contains(c)).collect();
    // The effective set must stay within the permitted one: shrink it first.
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    caps::clear(None, CapSet::Inheritable)
}

/// `Ok(description)` when tracing programs can be loaded and attached, else the missing pieces.
pub fn check() -> Result<String, String> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    check_caps(&effective(), unsafe { libc::geteuid() })
}

fn check_caps(caps: &CapsHashSet, euid: u32) -> Result<String, String> {
    if caps.contains(&Capability::CAP_SYS_ADMIN) {
        return Ok(if euid == 0 {
            "root".into()
        } else {
            "CAP_SYS_ADMIN".into()
        });
    }
    let missing: Vec<String> = [Capability::CAP_BPF, Capability::CAP_PERFMON]
        .into_iter()
        .filter(|c| !caps.contains(c))
        .map(|c| c.to_string())
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

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn names_what_is_missing() {
        use Capability::{CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
        assert_eq!(check_caps(&set(&[CAP_SYS_ADMIN]), 0).unwrap(), "root");
        assert_eq!(check_caps(&set(&[CAP_SYS_ADMIN]), 1000).unwrap(), "CAP_SYS_ADMIN");
        assert!(check_caps(&set(&[CAP_BPF, CAP_PERFMON]), 1000).is_ok());
        let e = check_caps(&set(&[CAP_BPF]), 1000).unwrap_err();
        assert!(e.contains("missing: CAP_PERFMON ("), "{e}");
        let e = check_caps(&set(&[]), 1000).unwrap_err();
        assert!(e.contains("missing: CAP_BPF, CAP_PERFMON"), "{e}");
    }

    /// In a thread of its own: capabilities are per thread, and dropping them is irreversible.
    #[test]
    fn keep_only_drops_the_rest() {
        std::thread::spawn(|| {
            let before = caps::read(None, CapSet::Permitted).unwrap();
            keep_only(&KEEP_AFTER_ATTACH).unwrap();
            let expected: CapsHashSet = KEEP_AFTER_ATTACH
                .iter()
                .copied()
                .filter(|c| before.contains(c))
                .collect();
            assert_eq!(caps::read(None, CapSet::Permitted).unwrap(), expected);
            assert_eq!(caps::read(None, CapSet::Effective).unwrap(), expected);
            assert!(caps::read(None, CapSet::Inheritable).unwrap().is_empty());
            assert!(!caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap());
        })
        .join()
        .unwrap();
    }
}
