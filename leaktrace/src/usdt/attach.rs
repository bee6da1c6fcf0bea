//! Attaching USDT probes to one process: a uprobe at each probe's file offset in the binary the
//! process has mapped (opened through `/proc/PID/root`, so a process in its own mount namespace
//! works), for that process only, with the probe's spec id as BPF cookie; and the probe's
//! semaphore, if it has one, incremented in the process's memory (`/proc/PID/mem`) while attached
//! and decremented on detach. (The kernel can count semaphores itself since 4.20, but aya does
//! not expose `ref_ctr_offset`.)
use std::{fs::OpenOptions, num::NonZeroU32, os::unix::fs::FileExt as _, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use leaktrace_common::names::prog;

use super::notes::{Note, Semaphore};
use crate::sites::symbolize::ProcMaps;

/// A binary as one process has it mapped.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// As the process sees it (its /proc/PID/maps).
    pub map_path: String,
    /// A path this agent can open: through /proc/PID/root when that works.
    pub open_path: PathBuf,
    pub dev: (u64, u64),
    pub inode: u64,
}

/// The path under which `pid`'s file `path` can be opened from here.
pub fn via_root(pid: u32, path: &str) -> PathBuf {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let via = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if via.exists() { via } else { PathBuf::from(path) }
}

/// Probes attached to one process. [`Attachment::detach`] undoes the links and the semaphores;
/// dropping it without detaching leaves the semaphores raised (harmless: the probe sites run their
/// argument set-up for nothing) but the links go with the program.
#[derive(Debug)]
pub struct Attachment {
    pub pid: u32,
    /// Start time of the process (clock ticks): a semaphore is only decremented in the same life.
    pub start_ticks: u64,
    pub links: Vec<UProbeLinkId>,
    /// Runtime addresses of the semaphores we raised.
    pub semaphores: Vec<u64>,
}

fn start_ticks(pid: u32) -> Option<u64> {
    crate::sys::proc::read_stat(pid).ok().map(|s| s.starttime_ticks)
}

/// The runtime address of a semaphore: the mapping of `m` that covers its file offset.
fn semaphore_addr(pid: u32, m: &Mapped, s: &Semaphore) -> anyhow::Result<u64> {
    let maps = ProcMaps::read(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/maps"))?;
    maps.maps
        .iter()
        .find(|x| {
            x.dev == m.dev
                && x.inode == m.inode
                && s.file_offset >= x.offset
                && s.file_offset < x.offset + (x.end - x.start)
        })
        .map(|x| x.start + (s.file_offset - x.offset))
        .ok_or_else(|| {
            anyhow!(
                "semaphore at file offset {:#x} is not mapped in pid {pid}",
                s.file_offset
            )
        })
}

/// Add `delta` to the 2-byte semaphore at `addr` in `pid`'s memory; returns the new value.
fn bump(pid: u32, addr: u64, delta: i32) -> std::io::Result<u16> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))?;
    let mut b = [0u8; 2];
    f.read_exact_at(&mut b, addr)?;
    let v = u16::from_ne_bytes(b);
    let nv = if delta < 0 {
        v.saturating_sub(delta.unsigned_abs() as u16)
    } else {
        v.saturating_add(delta as u16)
    };
    f.write_all_at(&nv.to_ne_bytes(), addr)?;
    Ok(nv)
}

/// Attach `probes` (note, spec id) of binary `m` to `pid`. On error nothing stays attached.
pub fn attach(ebpf: &mut Ebpf, pid: u32, m: &Mapped, probes: &[(&Note, u32)]) -> anyhow::Result<Attachment> {
    let pid_nz = NonZeroU32::new(pid).ok_or_else(|| anyhow!("pid 0"))?;
    let mut att = Attachment {
        pid,
        start_ticks: start_ticks(pid).ok_or_else(|| anyhow!("pid {pid} is gone"))?,
        links: Vec::new(),
        semaphores: Vec::new(),
    };
    let res = (|| -> anyhow::Result<()> {
        let p: &mut UProbe = ebpf
            .program_mut(prog::USDT_PROBE)
            .with_context(|| format!("program {} not in the eBPF object", prog::USDT_PROBE))?
            .try_into()?;
        for (note, id) in probes {
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(note.file_offset),
                cookie: Some(u64::from(*id)),
            };
            let link = p
                .attach(point, &m.open_path, UProbeScope::OneProcess(pid_nz))
                .with_context(|| {
                    format!(
                        "attaching {}:{} at {:#x} in {}",
                        note.provider,
                        note.name,
                        note.file_offset,
                        m.open_path.display()
                    )
                })?;
            att.links.push(link);
        }
        for (note, _) in probes {
            if let Some(s) = &note.semaphore {
                let addr = semaphore_addr(pid, m, s)?;
                bump(pid, addr, 1).with_context(|| {
                    format!("raising the semaphore of {}:{} in pid {pid}", note.provider, note.name)
                })?;
                att.semaphores.push(addr);
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        detach(ebpf, att);
        return Err(e);
    }
    Ok(att)
}

/// Detach the links and lower the semaphores (if the same process still lives).
pub fn detach(ebpf: &mut Ebpf, mut att: Attachment) {
    if let Some(p) = ebpf.program_mut(prog::USDT_PROBE)
        && let Ok(p) = <&mut UProbe>::try_from(p)
    {
        for id in std::mem::take(&mut att.links) {
            let _ = p.detach(id);
        }
    }
    lower_semaphores(&att);
}

/// Lower the semaphores we raised, if the same process still lives (also at shutdown, when the
/// links go with the programs).
pub fn lower_semaphores(att: &Attachment) {
    if !att.semaphores.is_empty() && start_ticks(att.pid) == Some(att.start_ticks) {
        for addr in &att.semaphores {
            let _ = bump(att.pid, *addr, -1);
        }
    }
}
