//! Every map, named exactly as `leaktrace_common::names` says.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use leaktrace_common::{EVENT_KIND_SLOTS, PendingCall, RssDirty, TpOffsets};

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
