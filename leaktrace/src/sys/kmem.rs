//! Kernel memory charged to a memory cgroup (slab objects, socket buffers, kernel stacks, page
//! tables, ...), and which processes the cgroup holds: when a process is alone in its cgroup,
//! that is the kernel memory it pins.
use std::{fs, io};

use super::cgroup::{CgroupVersion, MemcgPath};

/// Kernel memory of one memory cgroup, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelMem {
    /// Kernel memory charged: v1 `memory.kmem.usage_in_bytes` (reclaimable slab included: v1
    /// counts no finer); v2 `memory.stat` `kernel` (or the sum of its parts before 5.18) less
    /// `slab_reclaimable` — what the kernel cannot take back (dentries and inodes it can).
    pub kernel: u64,
    /// Socket buffers (v2 `sock`; v1 `memory.kmem.tcp.usage_in_bytes`, counted only once a TCP
    /// limit was set). None when not reported.
    pub sock: Option<u64>,
}

/// v2 `memory.stat` → kernel memory.
pub fn parse_v2_stat(text: &str) -> Option<KernelMem> {
    let mut kernel = None;
    let mut parts = 0u64;
    let mut any_part = false;
    let mut sock = None;
    let mut reclaimable = 0u64;
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next().and_then(|v| v.parse::<u64>().ok())) else {
            continue;
        };
        match k {
            "kernel" => kernel = Some(v),
            "slab" | "kernel_stack" | "pagetables" | "sec_pagetables" | "percpu" | "vmalloc" => {
                parts += v;
                any_part = true;
            }
            "sock" => sock = Some(v),
            "slab_reclaimable" => reclaimable = v,
            _ => {}
        }
    }
    let kernel = kernel.or(any_part.then_some(parts + sock.unwrap_or(0)))?;
    Some(KernelMem {
        kernel: kernel.saturating_sub(reclaimable),
        sock,
    })
}

fn read_u64(path: &std::path::Path) -> io::Result<u64> {
    fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a number", path.display())))
}

pub fn read_kernel_mem(m: &MemcgPath) -> io::Result<KernelMem> {
    match m.version {
        CgroupVersion::V1 => {
            let kernel = read_u64(&m.fs_path.join("memory.kmem.usage_in_bytes"))?;
            let sock = read_u64(&m.fs_path.join("memory.kmem.tcp.usage_in_bytes")).ok();
            Ok(KernelMem { kernel, sock })
        }
        CgroupVersion::V2 => parse_v2_stat(&fs::read_to_string(m.fs_path.join("memory.stat"))?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "memory.stat: no kernel memory")),
    }
}

/// The processes in the cgroup itself (not its children).
pub fn read_procs(m: &MemcgPath) -> io::Result<Vec<u32>> {
    Ok(fs::read_to_string(m.fs_path.join("cgroup.procs"))?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Whether the cgroup has child cgroups (whose memory it would also count).
pub fn has_children(m: &MemcgPath) -> bool {
    fs::read_dir(&m.fs_path).is_ok_and(|d| {
        d.filter_map(Result::ok)
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_stat() {
        let full = "anon 100\nfile 5\nkernel 4096\nkernel_stack 16\npagetables 8\nsock 12\nslab 2000\nslab_reclaimable 1500\nslab_unreclaimable 500\n";
        assert_eq!(
            parse_v2_stat(full),
            Some(KernelMem {
                kernel: 4096 - 1500,
                sock: Some(12)
            })
        );
        let old = "anon 100\nkernel_stack 16\npagetables 8\nsock 12\nslab 2000\npercpu 4\nslab_reclaimable 1000\n";
        assert_eq!(
            parse_v2_stat(old),
            Some(KernelMem {
                kernel: 16 + 8 + 2000 + 4 + 12 - 1000,
                sock: Some(12)
            })
        );
        assert_eq!(parse_v2_stat("anon 1\n"), None);
        assert_eq!(parse_v2_stat(""), None);
    }
}
