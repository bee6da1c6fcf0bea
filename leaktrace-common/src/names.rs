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
}
