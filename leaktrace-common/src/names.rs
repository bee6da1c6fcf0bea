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
/// Per-CPU one-entry cache so a fault storm of one process costs no shared-map update.
pub const RSS_LAST: &str = "RSS_LAST";
/// One-element array: the agent bumps the epoch after each scan of RSS_DIRTY.
pub const RSS_EPOCH: &str = "RSS_EPOCH";

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
    pub const TASK_NEWTASK: &str = "task_newtask";
    pub const PROCESS_FORK: &str = "process_fork";
    pub const PROCESS_EXEC: &str = "process_exec";
    pub const PROCESS_EXIT: &str = "process_exit";
    pub const MARK_VICTIM: &str = "mark_victim";
    pub const RSS_STAT: &str = "rss_stat";
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
}
