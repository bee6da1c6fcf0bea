//! Probe diagnostics: what should never happen, logged with aya-log on the cold path where it is
//! detected, and shown and counted by the agent (`probes::diag`). A full ring buffer is not
//! logged: it is counted per kind in `DROPS` and reported as `dropped` events. Neither are the
//! conditions the allocation-site maps count themselves (`SITE_COUNTERS`: stack collisions,
//! sites or allocations full), which load can cause every few microseconds.
//!
//! Cost, measured on Linux 6.18 (bpftool, `kernel.bpf_stats_enabled=1`; the agent before and
//! after this module, runs interleaved before/after/after/before): each program with a log site
//! grew by about 510 instructions after verification (`rss_stat` 64 → 438, `mmap_enter`
//! 119 → 628, `mark_victim` 406 → 935), all behind the failure branch, which the verifier keeps
//! but the CPU does not run. `rss_stat`, the hottest program (every page fault), under a storm
//! of ~4 million faults (`lt-workload faults 64 40`, four rounds per run): 86.1 and 83.6 ns per
//! run before, 71.3 and 78.1 ns after — no cost beyond the noise of the shared machine.
use aya_ebpf::EbpfContext;
use aya_log_ebpf::error;

#[derive(Clone, Copy)]
pub enum ProbeError {
    /// A map update failed: a hash map is full (-E2BIG) or an entry could not be allocated.
    MapUpdate { map: &'static str, errno: i32 },
    /// A string field of a tracepoint record (`__data_loc` or inline) did not read: the record is
    /// not laid out as its format file said.
    Layout { field: &'static str, errno: i32 },
}

impl ProbeError {
    /// Log it, and give the errno back (for `?` in `try_*` functions). Inlined, so each call site
    /// carries only its own message, behind the branch of the failure it reports.
    #[inline(always)]
    pub fn log<C: EbpfContext>(self, ctx: &C) -> i64 {
        match self {
            ProbeError::MapUpdate { map, errno } => {
                error!(ctx, "update of map {} failed: error {}", map, errno);
                errno.into()
            }
            ProbeError::Layout { field, errno } => {
                error!(ctx, "tracepoint field {} did not read: error {}", field, errno);
                errno.into()
            }
        }
    }
}
