//! The lowest footprint of each interval (`kmem:rss_stat`, see leaktrace-ebpf `probes/rss.rs`).
//!
//! The program keeps, per CPU, one [`RssSlot`]: the process it last saw, the agent's epoch and the
//! lowest footprint seen for them. When the CPU moves to another process the slot is flushed to
//! `RSS_FLOOR` under a [`FloorKey`] of (tgid, CPU, epoch parity), so no two CPUs ever write the same
//! entry and the epoch that just ended is never overwritten by the next one. At each epoch bump
//! the agent merges the slots and the map entries of the epoch that ended.

/// Entries of `RSS_FLOOR`.
pub const RSS_FLOOR_ENTRIES: u32 = 32768;

/// "No footprint seen" in [`RssSlot::min`] / [`FloorVal::min`].
pub const FLOOR_NONE: u64 = u64::MAX;

/// Value of the per-CPU `RSS_LAST`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RssSlot {
    pub tgid: u32,
    pub _pad: u32,
    pub epoch: u64,
    /// `current->mm` when last checked: an event for another mm (reclaim, remote access, exit)
    /// is not this process's footprint. 0 = check again.
    pub mm: u64,
    /// Lowest footprint (anon alone with `from_arg`) seen for (tgid, epoch) on this CPU, in
    /// pages; [`FLOOR_NONE`] if none.
    pub min: u64,
}

impl RssSlot {
    pub const EMPTY: RssSlot = RssSlot {
        tgid: 0,
        _pad: 0,
        epoch: 0,
        mm: 0,
        min: FLOOR_NONE,
    };
}

/// Key of `RSS_FLOOR`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FloorKey {
    pub tgid: u32,
    /// `cpu << 1 | (epoch & 1)`.
    pub cpu_parity: u32,
}

impl FloorKey {
    pub const fn new(tgid: u32, cpu: u32, epoch: u64) -> FloorKey {
        FloorKey {
            tgid,
            cpu_parity: (cpu << 1) | (epoch & 1) as u32,
        }
    }
}

/// Value of `RSS_FLOOR`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloorVal {
    pub epoch: u64,
    /// Lowest footprint, pages.
    pub min: u64,
}

/// Where the footprint counters live in the running kernel, read by the agent from BTF and handed
/// to the program as the `RSS_FLOOR_CONFIG` global. `enabled == 0`: no floor (the verifier then
/// drops that code, and `rss_stat` costs what it did before).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssFloorConfig {
    pub enabled: u32,
    /// `offsetof(struct task_struct, mm)`.
    pub task_mm: u32,
    /// Offset in `struct mm_struct` of the first of the three footprint counters (anon, swap,
    /// shmem: consecutive `MM_*` indices), at the 64-bit count itself.
    pub first: u32,
    /// Bytes from one counter to the next (`sizeof(struct percpu_counter)` from 6.2, 8 before).
    pub stride: u32,
    /// `MM_FILEPAGES`: events for it leave the footprint unchanged and are not read.
    pub file_member: u32,
    /// 1 before 6.2: the tracepoint's third argument is the changed counter's new value, and the
    /// minimum kept is of `MM_ANONPAGES` alone, from that argument (no memory read: that kernel's
    /// verifier cannot follow typed loads into its `atomic_long_t` array). 0: the footprint.
    pub from_arg: u32,
    /// `MM_ANONPAGES`.
    pub anon_member: u32,
    pub _pad: u32,
}

impl RssFloorConfig {
    pub const OFF: RssFloorConfig = RssFloorConfig {
        enabled: 0,
        task_mm: 0,
        first: 0,
        stride: 0,
        file_member: 0,
        from_arg: 0,
        anon_member: 0,
        _pad: 0,
    };
}
