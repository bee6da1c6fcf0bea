//! Map and program names, used by both sides. The eBPF crate names its statics and functions
//! exactly like these constants (the `#[map]` macro only takes literals); the agent looks them up
//! through these constants, so a rename that misses one side fails at load time, loudly.

/// Ring buffer for bulk events (mmap, munmap, brk, mremap). May drop under floods; drops counted.
pub const EVENTS: &str = "EVENTS";
/// Ring buffer for lifecycle events (fork, exec, exit, oom_kill): its own space so a flood of bulk
/// events can never crowd out the one OOM kill that mattered.
pub const LIFECYCLE: &str = "LIFECYCLE";
/// Per-CPU array of u64, indexed by `EventKind as u32`: ring-buffer reservation failures.
pub const DROPS: &str = "DROPS";
/// Syscall arguments saved at `sys_enter_*`, keyed by pid_tgid, consumed at `sys_exit_*`.
pub const PENDING: &str = "PENDING";
/// Last known program break per tgid (to report brk old/new).
pub const BRK_LAST: &str = "BRK_LAST";
/// exit_group() status per tgid, reported with the process exit.
pub const EXIT_CODES: &str = "EXIT_CODES";
/// Clone flags of a task being created, keyed by its pid, read back at sched_process_fork.
pub const NEW_TASKS: &str = "NEW_TASKS";
/// Processes whose RSS changed since the agent last looked (tgid -> RssDirty).
pub const RSS_DIRTY: &str = "RSS_DIRTY";
/// Per-CPU one-entry cache (`rss::RssSlot`) so a fault storm of one process costs no shared-map
/// update; it also holds the lowest footprint seen for its process in the current epoch.
pub const RSS_LAST: &str = "RSS_LAST";
/// One-element array: the agent bumps the epoch after each scan of RSS_DIRTY.
pub const RSS_EPOCH: &str = "RSS_EPOCH";
/// Lowest footprint per (tgid, CPU, epoch parity), flushed from the per-CPU RSS_LAST slots
/// (`rss::FloorKey` -> `rss::FloorVal`).
pub const RSS_FLOOR: &str = "RSS_FLOOR";
/// Global holding where the footprint counters are (`rss::RssFloorConfig`), read from BTF.
pub const RSS_FLOOR_CONFIG_GLOBAL: &str = "RSS_FLOOR_CONFIG";
/// Global holding where a process's argument area is (`ExecArgsConfig`), read from BTF.
pub const EXEC_ARGS_CONFIG_GLOBAL: &str = "EXEC_ARGS_CONFIG";

/// User stacks (stack-trace map, `BPF_F_USER_STACK`), by stack id.
pub const STACKS: &str = "STACKS";
/// Growth per (tgid, stack id): brk / anonymous mmap / mremap growth and sampled page faults.
pub const SITES: &str = "SITES";
/// Tgids whose stacks are recorded (watch, sites, `run --stacks --pid`); probes check it first.
pub const SITES_WATCHED: &str = "SITES_WATCHED";
/// Per-CPU counters of the stack machinery (`sites::site_counter`).
pub const SITE_COUNTERS: &str = "SITE_COUNTERS";
/// Per-CPU count of RSS changes since the last page-fault sample.
pub const FAULT_TICK: &str = "FAULT_TICK";
/// `--malloc`: outstanding bytes per (tgid, stack id).
pub const MALLOC_SITES: &str = "MALLOC_SITES";
/// `--malloc`: live allocations, (tgid, address) → size and stack id.
pub const ALLOCS: &str = "ALLOCS";
/// `--malloc`: size saved at allocator entry, per thread.
pub const MALLOC_PENDING: &str = "MALLOC_PENDING";
/// `--malloc-sample`: per-CPU call counter.
pub const MALLOC_TICK: &str = "MALLOC_TICK";

/// Ring buffer of USDT probe firings (`usdt::UsdtEvent`), apart from the others: a flood of
/// mmap events cannot crowd out a collector's events, and the reader lives in `runtimes`.
pub const USDT_EVENTS: &str = "USDT_EVENTS";
/// `usdt::UsdtSpec` by id; the id is the BPF cookie of every attached probe location.
pub const USDT_SPECS: &str = "USDT_SPECS";
/// Per-CPU counters of the USDT program (`usdt::usdt_counter`).
pub const USDT_COUNTERS: &str = "USDT_COUNTERS";
/// Stack copies for CFI unwinding in the agent (ring buffer of `sites::StackCopy`).
pub const STACK_COPIES: &str = "STACK_COPIES";
/// Per-process rate limit of stack copies: tgid → GCRA theoretical arrival time (ns).
pub const COPY_BUDGET: &str = "COPY_BUDGET";
/// Stack ids whose frame-pointer walk the agent checked against the binaries' CFI: no copy needed.
pub const FP_TRUSTED: &str = "FP_TRUSTED";
/// Per-CPU hand-over from a sampled event to the stack-copy program (`sites::CopyRequest`).
pub const COPY_REQ: &str = "COPY_REQ";
/// One-slot program arrays, one per program type (a tail call stays within its type), holding the
/// stack-copy program of that type. Empty when the kernel could not load it: copies are then off.
pub const COPY_JUMP_RAW_TP: &str = "COPY_JUMP_RAW_TP";
pub const COPY_JUMP_TP: &str = "COPY_JUMP_TP";
pub const COPY_JUMP_PERF: &str = "COPY_JUMP_PERF";
pub const COPY_JUMP_URETPROBE: &str = "COPY_JUMP_URETPROBE";

/// Global holding the stack settings (`sites::SitesConfig`), set at load.
pub const SITES_CONFIG_GLOBAL: &str = "SITES_CONFIG";

/// Global holding tracepoint field offsets read from tracefs at start.
pub const OFFSETS_GLOBAL: &str = "OFFSETS";

pub mod prog {
    pub const MMAP_ENTER: &str = "mmap_enter";
    pub const MMAP_EXIT: &str = "mmap_exit";
    pub const MUNMAP_ENTER: &str = "munmap_enter";
    pub const MUNMAP_EXIT: &str = "munmap_exit";
    pub const BRK_ENTER: &str = "brk_enter";
    pub const BRK_EXIT: &str = "brk_exit";
    pub const MREMAP_ENTER: &str = "mremap_enter";
    pub const MREMAP_EXIT: &str = "mremap_exit";
    pub const EXIT_GROUP_ENTER: &str = "exit_group_enter";
    /// The same calls seen with BPF trampolines (fexit/fentry on the x86_64 syscall functions),
    /// where the kernel has them; the `syscalls:*` tracepoints above are the fallback.
    pub const MMAP_FEXIT: &str = "mmap_fexit";
    pub const MUNMAP_FEXIT: &str = "munmap_fexit";
    pub const BRK_FEXIT: &str = "brk_fexit";
    pub const MREMAP_FEXIT: &str = "mremap_fexit";
    pub const EXIT_GROUP_FENTRY: &str = "exitgrp_fentry";
    pub const TASK_NEWTASK: &str = "task_newtask";
    pub const PROCESS_FORK: &str = "process_fork";
    pub const PROCESS_EXEC: &str = "process_exec";
    pub const PROCESS_EXIT: &str = "process_exit";
    pub const MARK_VICTIM: &str = "mark_victim";
    pub const RSS_STAT: &str = "rss_stat";
    /// The same hook as a BTF tracepoint (typed arguments), attached instead of `rss_stat` when
    /// the floor is on: it also keeps the lowest footprint of each interval.
    pub const RSS_STAT_FLOOR: &str = "rss_stat_floor";
    /// perf_event program on the software page-fault counter, every Nth fault per CPU: the
    /// fallback sampler when raw_tp:rss_stat (which samples at no extra per-fault cost) is missing.
    pub const FAULT_SAMPLE: &str = "fault_sample";
    /// `--malloc` uprobes on the target's C library.
    pub const MALLOC_ENTER: &str = "malloc_enter";
    pub const CALLOC_ENTER: &str = "calloc_enter";
    pub const REALLOC_ENTER: &str = "realloc_enter";
    pub const ALIGNED_ALLOC_ENTER: &str = "aligned_alloc_enter";
    pub const POSIX_MEMALIGN_ENTER: &str = "posix_memalign_enter";
    pub const FREE_ENTER: &str = "free_enter";
    /// uretprobe shared by malloc, calloc, realloc, aligned_alloc and posix_memalign.
    pub const ALLOC_RETURN: &str = "alloc_return";
    /// The one program attached at every USDT probe location of a tracked runtime (JVM, CPython);
    /// the BPF cookie says which spec to read the arguments with.
    pub const USDT_PROBE: &str = "usdt_probe";
    /// Stack copies (`probes/stackcopy.rs`), tail-called from the sampled events, one per
    /// program type; never attached themselves.
    pub const COPY_RAW_TP: &str = "copy_raw_tp";
    pub const COPY_TP: &str = "copy_tp";
    pub const COPY_PERF: &str = "copy_perf";
    pub const COPY_URETPROBE: &str = "copy_uretprobe";
}
