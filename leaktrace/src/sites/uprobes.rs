//! `--malloc`: attach the allocator uprobes to one process's C library.
//!
//! The library is found in /proc/PID/maps (opened through /proc/PID/root, so a process in another
//! mount namespace works) and each probe is attached with the process as perf_event target: the
//! kernel installs the breakpoints in that process only, other users of the same libc do not trap.
use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    programs::{
        UProbe,
        uprobe::{UProbeLinkId, UProbeScope},
    },
};
use leaktrace_common::names::prog;

use super::symbolize::ProcMaps;

/// Entry probes: (libc function, program).
pub const ENTRIES: [(&str, &str); 6] = [
    ("malloc", prog::MALLOC_ENTER),
    ("calloc", prog::CALLOC_ENTER),
    ("realloc", prog::REALLOC_ENTER),
    ("aligned_alloc", prog::ALIGNED_ALLOC_ENTER),
    ("posix_memalign", prog::POSIX_MEMALIGN_ENTER),
    ("free", prog::FREE_ENTER),
];
/// Functions whose return `alloc_return` records.
pub const RETURNS: [&str; 5] = ["malloc", "calloc", "realloc", "aligned_alloc", "posix_memalign"];

fn is_libc(module: &str) -> bool {
    module.starts_with("libc.so") || (module.starts_with("libc-") && module.ends_with(".so"))
}

/// The C library `pid` has mapped, as a path this process can open.
pub fn find_libc(pid: u32) -> Option<PathBuf> {
    let maps = ProcMaps::read(pid)?;
    let m = maps.maps.iter().find(|m| is_libc(m.module()))?;
    let path = m.path.strip_suffix(" (deleted)").unwrap_or(&m.path);
    let via_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    Some(if via_root.exists() {
        via_root
    } else {
        PathBuf::from(path)
    })
}

/// Attach every allocator probe for `pid`. A process that was just started may not have mapped
/// its C library yet: wait for it up to a second.
pub fn attach(ebpf: &mut Ebpf, pid: u32) -> anyhow::Result<Vec<(&'static str, UProbeLinkId)>> {
    let start = Instant::now();
    let libc = loop {
        if let Some(l) = find_libc(pid) {
            break l;
        }
        if start.elapsed() > Duration::from_secs(1) || !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no C library (libc.so) mapped in pid {pid} (a static binary?)");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let pid_nz = std::num::NonZeroU32::new(pid).ok_or_else(|| anyhow!("pid 0"))?;
    let mut links = Vec::new();
    let mut one = |program: &'static str, func: &str| -> anyhow::Result<()> {
        let p: &mut UProbe = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} not in the eBPF object"))?
            .try_into()?;
        let id = p
            .attach(func, &libc, UProbeScope::OneProcess(pid_nz))
            .with_context(|| format!("attaching {program} to {func} in {}", libc.display()))?;
        links.push((program, id));
        Ok(())
    };
    let res = (|| {
        for (func, program) in ENTRIES {
            one(program, func)?;
        }
        for func in RETURNS {
            one(prog::ALLOC_RETURN, func)?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        detach(ebpf, links);
        return Err(e);
    }
    Ok(links)
}

pub fn detach(ebpf: &mut Ebpf, links: Vec<(&'static str, UProbeLinkId)>) {
    for (program, id) in links {
        if let Some(p) = ebpf.program_mut(program)
            && let Ok(p) = <&mut UProbe>::try_from(p)
        {
            let _ = p.detach(id);
        }
    }
}
