//! Allocation sites: user stacks aggregated in the kernel per (process, stack).
//!
//! Default mode records a user stack (BPF stack-trace map, `BPF_F_USER_STACK`) at the events that
//! grow a process — brk, anonymous mmap, mremap growth — and at every Nth page fault per CPU (in
//! the `rss_stat` raw tracepoint, which runs at every fault anyway; the `fault_sample` perf_event
//! program when that one is missing), and adds the bytes to [`SiteKey`] → [`SiteValue`] in the
//! kernel. `--malloc` adds uprobes on the
//! C allocator and keeps outstanding (not freed) bytes per stack.

/// Stack id used when no stack could be had (stack-map collision or unreadable user stack): the
/// bytes are still counted, under "no stack".
pub const NO_STACK: u32 = u32::MAX;

/// Key of `SITES` and `MALLOC_SITES`. The CPU is part of the key so that a value is only ever
/// updated by one CPU: plain adds, no atomics (the BPF target has no fetch-add in Rust), no
/// per-CPU map (whose memory grows with the number of CPUs, not with use). The agent sums CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SiteKey {
    pub tgid: u32,
    /// Id in the `STACKS` map, or [`NO_STACK`].
    pub stack_id: u32,
    pub cpu: u32,
    pub _pad: u32,
}

/// Value of `SITES`: growth attributed to one stack of one process, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SiteValue {
    /// Bytes grown by brk / anonymous mmap / mremap from this stack.
    pub grown_bytes: u64,
    /// Sampled page faults: each sample counts `fault_bytes` (N × 4096) bytes.
    pub fault_bytes: u64,
    /// Growth syscalls plus fault samples.
    pub events: u64,
}

/// Value of `MALLOC_SITES`: outstanding allocations of one stack. Frees subtract, so the fields
/// are two's-complement counters: read them as `i64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MallocSite {
    pub bytes: u64,
    pub allocs: u64,
}

/// Key of `ALLOCS`: a live allocation of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AllocKey {
    pub addr: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// Value of `ALLOCS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocInfo {
    pub size: u64,
    pub stack_id: u32,
    pub _pad: u32,
}

/// Saved at allocator entry, per thread, consumed at its return (`MALLOC_PENDING`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingAlloc {
    pub size: u64,
    /// posix_memalign's out-pointer (the address is read from it at return); 0 otherwise.
    pub memptr: u64,
}

/// Global set by the agent at load (`SITES_CONFIG`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SitesConfig {
    /// Stacks are recorded at all (`run --stacks`, `watch`, `sites`).
    pub enabled: u32,
    /// Every process, not only the tgids in `SITES_WATCHED` (`run --stacks` without filters).
    pub all: u32,
    /// Bytes one page-fault sample stands for (N × 4096).
    pub fault_bytes: u64,
    /// `--malloc-sample N`: record one allocation in N (1 = all).
    pub malloc_sample: u32,
    /// Sample page faults in `rss_stat`: one RSS change in this many per CPU (N). 0: rss_stat is
    /// not attached and the perf_event program samples instead.
    pub rss_every: u32,
    /// Stack copies for CFI unwinding in the agent: pages of user stack copied from the stack
    /// pointer's page upwards (at most [`COPY_MAX_PAGES`]); 0 = no copies (frame pointers only).
    pub copy_pages: u32,
    pub _pad: u32,
    /// Per-process rate limit on copies (GCRA): one copy per `copy_interval_ns` on average...
    pub copy_interval_ns: u64,
    /// ... with bursts of up to `copy_burst_ns / copy_interval_ns` copies.
    pub copy_burst_ns: u64,
    /// The same for all processes together (their sum), with the same burst time.
    pub copy_global_interval_ns: u64,
}

impl SitesConfig {
    pub const OFF: SitesConfig = SitesConfig {
        enabled: 0,
        all: 0,
        fault_bytes: 0,
        malloc_sample: 1,
        rss_every: 0,
        copy_pages: 0,
        _pad: 0,
        copy_interval_ns: 0,
        copy_burst_ns: 0,
        copy_global_interval_ns: 0,
    };
}

/// Largest stack window the kernel copies, in pages (the stack pointer's page and the ones above
/// it). The default window ([`SitesConfig::copy_pages`]) is chosen by measurement: README, "Where
/// the memory grows".
pub const COPY_MAX_PAGES: usize = 8;
pub const COPY_PAGE: usize = 4096;

/// Per-CPU hand-over from a sampled event to the stack-copy program it tail-calls (`COPY_REQ`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyRequest {
    pub tgid: u32,
    /// The frame-pointer stack taken for the same event (its `SITES` key), or [`NO_STACK`].
    pub stack_id: u32,
    pub grown_bytes: u64,
    pub fault_bytes: u64,
}

/// Fixed part of a `STACK_COPIES` record: the event, the thread's user registers and where the
/// copied window starts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StackCopyHeader {
    pub tgid: u32,
    pub tid: u32,
    /// The frame-pointer stack of the same event: the agent splits that stack's bytes among the
    /// stacks its copies unwind to.
    pub stack_id: u32,
    /// Pages copied (the copy stops at the first unreadable page, e.g. the end of the stack).
    pub pages: u32,
    pub grown_bytes: u64,
    pub fault_bytes: u64,
    /// User registers at the event: instruction, stack and frame pointer.
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// User address of `data[0]`: the stack pointer rounded down to its page.
    pub base: u64,
}

/// A `STACK_COPIES` record: header, then `pages` pages of the user stack from `base`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackCopy {
    pub hdr: StackCopyHeader,
    pub data: [u8; COPY_MAX_PAGES * COPY_PAGE],
}

/// Slots of the per-CPU `SITE_COUNTERS` array.
pub mod site_counter {
    /// `bpf_get_stackid` returned -EEXIST: the stack's hash bucket holds another stack.
    pub const COLLISIONS: u32 = 0;
    /// `bpf_get_stackid` failed otherwise (no user stack, fault reading it).
    pub const STACK_ERRORS: u32 = 1;
    /// `SITES` / `MALLOC_SITES` full: the event was not aggregated.
    pub const SITES_FULL: u32 = 2;
    /// Page-fault samples taken for watched processes.
    pub const FAULT_SAMPLES: u32 = 3;
    /// `ALLOCS` full: an allocation could not be tracked.
    pub const ALLOCS_FULL: u32 = 4;
    /// Stack copies sent to the agent.
    pub const COPIES: u32 = 5;
    /// Copies not taken: the process's rate limit.
    pub const COPY_LIMITED: u32 = 6;
    /// Copies lost: `STACK_COPIES` full (the agent is behind).
    pub const COPY_DROPS: u32 = 7;
    /// Copies that failed: no user registers, or the stack pointer's page unreadable.
    pub const COPY_ERRORS: u32 = 8;
    pub const SLOTS: u32 = 16;
}
