//! Host-wide memory, read one way for everyone: the monitor's time to OOM, OOM reports,
//! `--metrics` and `top` all take a [`MemInfo`] (`/proc/meminfo`) or a whole [`HostMemory`]
//! (that plus memory pressure and the host's OOM-kill count). Parsing is procfs-core's.
use std::{fs, io, io::Read};

use procfs_core::{FromRead as _, Meminfo, MemoryPressure, VmStat};

use super::proc::invalid;

/// `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub mem_total: u64,
    /// `MemAvailable`: what can be allocated without swapping (free + reclaimable).
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemInfo {
    pub fn read() -> io::Result<MemInfo> {
        Self::parse(fs::File::open("/proc/meminfo")?)
    }

    pub fn parse(r: impl Read) -> io::Result<MemInfo> {
        const WHAT: &str = "/proc/meminfo";
        let m = Meminfo::from_read(r).map_err(|e| invalid(WHAT, e))?;
        let available = m
            .mem_available
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{WHAT}: no MemAvailable")))?;
        Ok(MemInfo {
            mem_total: m.mem_total,
            mem_available: available,
            swap_total: m.swap_total,
            swap_free: m.swap_free,
        })
    }

    pub fn swap_used(&self) -> u64 {
        self.swap_total.saturating_sub(self.swap_free)
    }
}

/// `/proc/meminfo` in full, the fields the host breakdown (`analysis::host::split`) uses, in
/// bytes (0 when the kernel lacks one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemParts {
    pub mem_total: u64,
    pub mem_free: u64,
    pub mem_available: u64,
    pub buffers: u64,
    pub cached: u64,
    pub swap_cached: u64,
    pub anon_pages: u64,
    pub mapped: u64,
    pub shmem: u64,
    pub s_reclaimable: u64,
    pub s_unreclaim: u64,
    pub kernel_stack: u64,
    pub page_tables: u64,
    pub vmalloc_used: u64,
    pub percpu: u64,
    pub hugetlb: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemParts {
    pub fn parse(r: impl Read) -> io::Result<MemParts> {
        let m = Meminfo::from_read(r).map_err(|e| invalid("/proc/meminfo", e))?;
        let hugetlb = m.hugetlb.unwrap_or_else(|| {
            m.hugepages_total
                .unwrap_or(0)
                .saturating_mul(m.hugepagesize.unwrap_or(0))
        });
        Ok(MemParts {
            mem_total: m.mem_total,
            mem_free: m.mem_free,
            mem_available: m.mem_available.unwrap_or(m.mem_free),
            buffers: m.buffers,
            cached: m.cached,
            swap_cached: m.swap_cached,
            anon_pages: m.anon_pages.unwrap_or(0),
            mapped: m.mapped,
            shmem: m.shmem.unwrap_or(0),
            s_reclaimable: m.s_reclaimable.unwrap_or(0),
            s_unreclaim: m.s_unreclaim.unwrap_or(0),
            kernel_stack: m.kernel_stack.unwrap_or(0),
            page_tables: m.page_tables.unwrap_or(0) + m.secondary_page_tables.unwrap_or(0),
            vmalloc_used: m.vmalloc_used,
            percpu: m.per_cpu.unwrap_or(0),
            hugetlb,
            swap_total: m.swap_total,
            swap_free: m.swap_free,
        })
    }

    pub fn read() -> io::Result<MemParts> {
        Self::parse(fs::File::open("/proc/meminfo")?)
    }
}

/// OOM kills since boot (`/proc/vmstat` `oom_kill`; each is in the kernel log).
pub fn read_oom_kills() -> io::Result<u64> {
    parse_vmstat_oom_kill(fs::File::open("/proc/vmstat")?)
}

/// The host's memory signs at one moment; each part is absent when unreadable (PSI needs
/// `CONFIG_PSI` and can be disabled at boot).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostMemory {
    pub mem: Option<MemInfo>,
    /// `/proc/pressure/memory`: share of the last 10 s in which some task (`some`) or every
    /// non-idle task (`full`) stalled on memory, in percent.
    pub psi_some_avg10: Option<f64>,
    pub psi_full_avg10: Option<f64>,
    /// `/proc/vmstat` `oom_kill`: OOM kills since boot.
    pub oom_kills: Option<u64>,
}

impl HostMemory {
    pub fn read() -> HostMemory {
        let psi = fs::File::open("/proc/pressure/memory")
            .ok()
            .and_then(|f| parse_psi(f).ok());
        HostMemory {
            mem: MemInfo::read().ok(),
            psi_some_avg10: psi.map(|p| p.0),
            psi_full_avg10: psi.map(|p| p.1),
            oom_kills: fs::File::open("/proc/vmstat").and_then(parse_vmstat_oom_kill).ok(),
        }
    }
}

/// Whether this kernel reports memory pressure (PSI).
pub fn psi_available() -> bool {
    fs::File::open("/proc/pressure/memory")
        .ok()
        .is_some_and(|f| parse_psi(f).is_ok())
}

/// `/proc/pressure/memory` (or a cgroup v2 `memory.pressure`): the `some` and `full` avg10.
pub fn parse_psi(mut r: impl Read) -> io::Result<(f64, f64)> {
    const WHAT: &str = "/proc/pressure/memory";
    let mut text = String::new();
    r.read_to_string(&mut text)?;
    // procfs-core slices each line after its `some`/`full` word without checking the length.
    if !text
        .lines()
        .all(|l| l.is_empty() || l.starts_with("some ") || l.starts_with("full "))
    {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{WHAT}: malformed")));
    }
    let p = MemoryPressure::from_read(text.as_bytes()).map_err(|e| invalid(WHAT, e))?;
    Ok((f64::from(p.some.avg10), f64::from(p.full.avg10)))
}

/// The `oom_kill` counter of `/proc/vmstat`.
pub fn parse_vmstat_oom_kill(r: impl Read) -> io::Result<u64> {
    const WHAT: &str = "/proc/vmstat";
    let v = VmStat::from_read(r).map_err(|e| invalid(WHAT, e))?;
    v.0.get("oom_kill")
        .and_then(|n| u64::try_from(*n).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{WHAT}: no oom_kill")))
}

/// Pages the host swapped out or discarded as lazily freed since boot (the sum of `/proc/vmstat`
/// `pswpout` and `pglazyfreed`): the reclaim that can lower a process's footprint (anon, shmem
/// and swap) outside the process's own context. None when the kernel prints neither. A scan for two keys,
/// not a parse of all ~180: the monitor reads it every interval.
pub fn parse_vmstat_reclaim(text: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        if key == "pswpout" || key == "pglazyfreed" {
            let v: u64 = value.trim().parse().ok()?;
            sum = Some(sum.unwrap_or(0u64).saturating_add(v));
        }
    }
    sum
}

pub fn read_vmstat_reclaim() -> Option<u64> {
    parse_vmstat_reclaim(&fs::read_to_string("/proc/vmstat").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parts() {
        let m = MemParts::parse(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 500 kB\nBuffers: 10 kB\nCached: 300 kB\nSwapCached: 0 kB\nActive: 0 kB\nInactive: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\nDirty: 0 kB\nWriteback: 0 kB\nAnonPages: 200 kB\nMapped: 50 kB\nShmem: 40 kB\nSlab: 80 kB\nSReclaimable: 60 kB\nSUnreclaim: 20 kB\nKernelStack: 8 kB\nPageTables: 12 kB\nCommitted_AS: 0 kB\nVmallocTotal: 0 kB\nVmallocUsed: 16 kB\nVmallocChunk: 0 kB\nPercpu: 4 kB\nHugePages_Total: 2\nHugepagesize: 2048 kB\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.mem_total, 1000 * 1024);
        assert_eq!(m.s_unreclaim, 20 * 1024);
        assert_eq!(m.hugetlb, 2 * 2048 * 1024);
        assert_eq!(m.percpu, 4096);
        assert!(MemParts::parse("x".as_bytes()).is_err());
    }

    #[test]
    fn vmstat_reclaim() {
        let text = "nr_free_pages 1\npswpin 4\npswpout 10\npgsteal_anon 99\npglazyfreed 5\n";
        assert_eq!(parse_vmstat_reclaim(text), Some(15));
        assert_eq!(parse_vmstat_reclaim("pswpout 3\n"), Some(3));
        assert_eq!(parse_vmstat_reclaim("nr_free_pages 1\n"), None);
        assert_eq!(parse_vmstat_reclaim("pswpout x\n"), None);
        assert_eq!(parse_vmstat_reclaim(""), None);
        assert!(read_vmstat_reclaim().is_some(), "/proc/vmstat has pswpout");
    }

    // Captured on this machine (Linux 6.18).
    const MEMINFO_SAMPLE: &str = "MemTotal:       24684084 kB
MemFree:        12155772 kB
MemAvailable:   20062080 kB
Buffers:           26504 kB
Cached:          7901624 kB
SwapCached:            0 kB
Active:          3255256 kB
Inactive:        8794772 kB
Active(anon):       1752 kB
Inactive(anon):  4129132 kB
Active(file):    3253504 kB
Inactive(file):  4665640 kB
Unevictable:       17904 kB
Mlocked:           17040 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:            350992 kB
Writeback:             0 kB
AnonPages:       4139996 kB
Mapped:           667464 kB
Shmem:              8872 kB
KReclaimable:     322644 kB
Slab:             372308 kB
SReclaimable:     322644 kB
SUnreclaim:        49664 kB
KernelStack:        3904 kB
PageTables:        21480 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    12342040 kB
Committed_AS:    5319940 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       16716 kB
VmallocChunk:          0 kB
Percpu:              736 kB
AnonHugePages:   1630208 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:    180224 kB
FilePmdMapped:     28672 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:       28672 kB
DirectMap2M:     2068480 kB
DirectMap1G:    25165824 kB
";

    const PSI_SAMPLE: &str = "some avg10=1.25 avg60=0.50 avg300=0.10 total=123456
full avg10=0.75 avg60=0.25 avg300=0.05 total=65432
";

    #[test]
    fn meminfo_parses() {
        let m = MemInfo::parse(MEMINFO_SAMPLE.as_bytes()).unwrap();
        assert_eq!(
            m,
            MemInfo {
                mem_total: 24684084 * 1024,
                mem_available: 20062080 * 1024,
                swap_total: 0,
                swap_free: 0,
            }
        );
        let with_swap = MEMINFO_SAMPLE
            .replace("SwapTotal:             0 kB", "SwapTotal:       2097148 kB")
            .replace("SwapFree:              0 kB", "SwapFree:        2000000 kB");
        assert_eq!(MemInfo::parse(with_swap.as_bytes()).unwrap().swap_used(), 97148 * 1024);
    }

    #[test]
    fn meminfo_errors_name_the_file() {
        let no_available = MEMINFO_SAMPLE.replace("MemAvailable:   20062080 kB\n", "");
        let e = MemInfo::parse(no_available.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("MemAvailable"), "{e}");
        let e = MemInfo::parse("MemFree: 1 kB\n".as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("/proc/meminfo"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn psi_parses() {
        assert_eq!(parse_psi(PSI_SAMPLE.as_bytes()).unwrap(), (1.25, 0.75));
        assert!(parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n".as_bytes()).is_err());
        assert!(
            parse_psi(
                "some avg10=x avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                    .as_bytes()
            )
            .is_err()
        );
    }

    #[test]
    fn vmstat_oom_kill() {
        let text = "nr_free_pages 6125869\noom_kill_other 9\noom_kill 3\nnuma_hit 1\n";
        assert_eq!(parse_vmstat_oom_kill(text.as_bytes()).unwrap(), 3);
        assert!(parse_vmstat_oom_kill("nr_free_pages 1\n".as_bytes()).is_err());
        assert!(parse_vmstat_oom_kill("oom_kill x\n".as_bytes()).is_err());
    }

    #[test]
    fn parsers_never_panic_on_prefixes_or_garbage() {
        let run = |s: &str| {
            let _ = MemInfo::parse(s.as_bytes());
            let _ = parse_psi(s.as_bytes());
            let _ = parse_vmstat_oom_kill(s.as_bytes());
        };
        for s in [MEMINFO_SAMPLE, PSI_SAMPLE, "oom_kill 3\n"] {
            for (i, _) in s.char_indices() {
                run(&s[..i]);
            }
        }
        for g in [
            "",
            "\0\0",
            ":::",
            "MemTotal:",
            "MemTotal: 99999999999999999999999 kB",
            "some avg10=",
        ] {
            run(g);
        }
    }

    #[test]
    fn reads_this_host() {
        let h = HostMemory::read();
        let m = h.mem.expect("/proc/meminfo");
        assert!(m.mem_total > 0 && m.mem_available <= m.mem_total, "{m:?}");
        assert!(h.oom_kills.is_some(), "/proc/vmstat has oom_kill since 4.13");
        assert_eq!(h.psi_some_avg10.is_some(), psi_available());
    }
}
