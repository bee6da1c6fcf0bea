//! Every map, named exactly as `leaktrace_common::names` says.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
};
use leaktrace_common::{
    EVENT_KIND_SLOTS, PendingCall, RssDirty, TpOffsets,
    sites::{AllocInfo, AllocKey, MallocSite, PendingAlloc, SiteKey, SiteValue, SitesConfig, site_counter},
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
pub static RSS_LAST: PerCpuArray<RssDirty> = PerCpuArray::with_max_entries(1, 0);

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

/// Stack settings, set by the agent before loading.
#[unsafe(no_mangle)]
pub static SITES_CONFIG: SitesConfig = SitesConfig::OFF;

/// Field offsets, set by the agent from the kernel's tracepoint format files before loading.
#[unsafe(no_mangle)]
pub static OFFSETS: TpOffsets = TpOffsets::ZERO;

/// One field of the offsets global, read volatile so the loader-patched value is used rather
/// than the zero initialiser the compiler sees.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: `OFFSETS` is plain data in .rodata, patched by the loader.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::OFFSETS.$field) }
    };
}
pub(crate) use off;
