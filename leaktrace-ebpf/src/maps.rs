//! Every map, named exactly as `leaktrace_common::names` says.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf, StackTrace},
};
use leaktrace_common::{
    EVENT_KIND_SLOTS, ExecArgsConfig, Field, PendingCall, RssDirty, TpOffsets,
    rss::{FloorKey, FloorVal, RSS_FLOOR_ENTRIES, RssFloorConfig, RssSlot},
    sites::{
        AllocInfo, AllocKey, CopyRequest, MallocSite, PendingAlloc, SiteKey, SiteValue, SitesConfig, site_counter,
    },
    usdt::{USDT_MAX_SPECS, UsdtSpec, usdt_counter},
};

/// Bulk events. Wakes the agent once `EVENTS_WAKE_BYTES` are waiting (batched wakeups).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);
pub const EVENTS_WAKE_BYTES: u64 = 256 << 10;

/// Lifecycle events (fork/exec/exit/oom_kill), kept apart so bulk floods cannot crowd them out.
#[map]
pub static LIFECYCLE: RingBuf = RingBuf::with_byte_size(1 << 20, 0);
pub const LIFECYCLE_WAKE_BYTES: u64 = 16 << 10;

#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_KIND_SLOTS, 0);

#[map]
pub static PENDING: HashMap<u64, PendingCall> = HashMap::with_max_entries(16384, 0);

#[map]
pub static BRK_LAST: LruHashMap<u32, u64> = LruHashMap::with_max_entries(32768, 0);

#[map]
pub static EXIT_CODES: LruHashMap<u32, i32> = LruHashMap::with_max_entries(16384, 0);

#[map]
pub static NEW_TASKS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(8192, 0);

#[map]
pub static RSS_DIRTY: LruHashMap<u32, RssDirty> = LruHashMap::with_max_entries(32768, 0);

#[map]
pub static RSS_LAST: PerCpuArray<RssSlot> = PerCpuArray::with_max_entries(1, 0);

/// Lowest footprint per (tgid, CPU, epoch parity), flushed from `RSS_LAST` (probes/rss.rs). One
/// entry per process and CPU it faulted on within an interval; the agent deletes each entry once
/// its epoch has ended, the exit probe those of its own CPU.
#[map]
pub static RSS_FLOOR: LruHashMap<FloorKey, FloorVal> = LruHashMap::with_max_entries(RSS_FLOOR_ENTRIES, 0);

#[map]
pub static RSS_EPOCH: Array<u64> = Array::with_max_entries(1, 0);

// Allocation sites (probes/sites.rs, probes/malloc.rs). The agent shrinks these to one entry when
// stacks are off, so the default mode pays no memory for them.

/// User stacks, 127 frames max.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

#[map]
pub static SITES: HashMap<SiteKey, SiteValue> = HashMap::with_max_entries(16384, 0);

#[map]
pub static SITES_WATCHED: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

#[map]
pub static SITE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(site_counter::SLOTS, 0);

#[map]
pub static FAULT_TICK: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static MALLOC_SITES: HashMap<SiteKey, MallocSite> = HashMap::with_max_entries(16384, 0);

#[map]
pub static ALLOCS: HashMap<AllocKey, AllocInfo> = HashMap::with_max_entries(262144, 0);

#[map]
pub static MALLOC_PENDING: LruHashMap<u64, PendingAlloc> = LruHashMap::with_max_entries(16384, 0);

#[map]
pub static MALLOC_TICK: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

// USDT probes of managed runtimes (probes/usdt.rs).

/// Collector events (a few per collection): their own small ring, so bulk floods cannot drop them.
#[map]
pub static USDT_EVENTS: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

#[map]
pub static USDT_SPECS: HashMap<u32, UsdtSpec> = HashMap::with_max_entries(USDT_MAX_SPECS, 0);

#[map]
pub static USDT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(usdt_counter::SLOTS, 0);
// Stack copies for CFI unwinding in the agent (probes/stackcopy.rs).

/// Copied user stacks (`StackCopy`, ~32 KiB each: 63 fit). Never wakes the agent: it drains every
/// 50 ms, and the rate limits' bursts fit.
#[map]
pub static STACK_COPIES: RingBuf = RingBuf::with_byte_size(2 << 20, 0);

#[map]
pub static COPY_BUDGET: LruHashMap<u32, u64> = LruHashMap::with_max_entries(8192, 0);

#[map]
pub static FP_TRUSTED: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

#[map]
pub static COPY_REQ: PerCpuArray<CopyRequest> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static COPY_JUMP_RAW_TP: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static COPY_JUMP_TP: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static COPY_JUMP_PERF: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static COPY_JUMP_URETPROBE: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Stack settings, set by the agent before loading.
#[unsafe(no_mangle)]
pub static SITES_CONFIG: SitesConfig = SitesConfig::OFF;

/// Field offsets, set by the agent from the kernel's tracepoint format files before loading.
#[unsafe(no_mangle)]
pub static OFFSETS: TpOffsets = TpOffsets::ZERO;

/// Where the footprint counters are, set by the agent from BTF before loading (`enabled == 0`:
/// no floor).
#[unsafe(no_mangle)]
pub static RSS_FLOOR_CONFIG: RssFloorConfig = RssFloorConfig::OFF;

/// Where a process's argument area is, set by the agent from BTF before loading (`enabled == 0`:
/// exec events carry no arguments).
#[unsafe(no_mangle)]
pub static EXEC_ARGS_CONFIG: ExecArgsConfig = ExecArgsConfig::OFF;

/// One field of the offsets global (`off!(mmap_len)`).
macro_rules! off {
    ($field:ident) => {
        $crate::maps::offset(&$crate::maps::OFFSETS.$field)
    };
}
pub(crate) use off;

/// Read a field of [`OFFSETS`] volatile, so the value the loader patched in is used rather than
/// the zero initialiser the compiler sees.
#[inline(always)]
pub fn offset(field: &Field) -> Field {
    // SAFETY: `field` is a reference, so the pointer is valid, aligned and points at an
    // initialised `Field` (plain integers) in `.rodata`, which nothing writes after loading.
    unsafe { core::ptr::read_volatile(field) }
}

/// One field of the floor configuration global (`floor_cfg!(stride)`), read like [`off!`].
macro_rules! floor_cfg {
    ($field:ident) => {
        $crate::maps::config_u32(&$crate::maps::RSS_FLOOR_CONFIG.$field)
    };
}
pub(crate) use floor_cfg;

/// One field of the exec arguments configuration global (`exec_args_cfg!(task_mm)`), read like
/// [`off!`].
macro_rules! exec_args_cfg {
    ($field:ident) => {
        $crate::maps::config_u32(&$crate::maps::EXEC_ARGS_CONFIG.$field)
    };
}
pub(crate) use exec_args_cfg;

/// Read a `u32` of a loader-patched global volatile (see [`offset`]).
#[inline(always)]
pub fn config_u32(field: &u32) -> u32 {
    // SAFETY: `field` is a reference, so the pointer is valid, aligned and points at an
    // initialised `u32` in `.rodata`, which nothing writes after loading.
    unsafe { core::ptr::read_volatile(field) }
}
