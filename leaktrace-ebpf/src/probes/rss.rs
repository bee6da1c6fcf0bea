//! RSS change detection and the lowest footprint of each interval, at near-zero cost.
//!
//! `kmem:rss_stat` fires on every RSS counter change (each page fault, unmap, ...). The program
//! compares the current tgid and the agent's scan epoch with a per-CPU one-entry cache
//! (`RSS_LAST`); only when they differ does it touch the shared `RSS_DIRTY` map. A fault storm of
//! one process therefore costs one shared-map update per CPU per agent interval. The agent reads
//! exact counters from /proc for dirty processes only.
//!
//! Two programs, one attached: `rss_stat` (a raw tracepoint: marks only) or, when the agent found
//! the footprint counters in BTF (`RSS_FLOOR_CONFIG.enabled`), `rss_stat_floor` (the same hook as
//! a BTF tracepoint: marks, and the floor). The tracepoint's arguments are
//! `(struct mm_struct *mm, int member[, long count before 6.2])`. For every event that can change
//! the footprint (not `MM_FILEPAGES`) of the current process's own mm, `rss_stat_floor` reads the
//! three footprint counters (anon, swap, shmem: the `count` of each `percpu_counter` from 6.2,
//! the `atomic_long_t` before) and keeps their lowest sum in the slot. Being typed, `mm` is read
//! with plain loads (the kernel catches faults) rather than `bpf_probe_read_kernel`, which cost
//! ~30 ns a call here: measured, the raw-tracepoint version of the floor added 44–80 ns per fault.
//! When the CPU moves to another process the slot's minimum is flushed to `RSS_FLOOR` under (tgid,
//! CPU, epoch parity): only this CPU writes that entry, and the next epoch never overwrites the
//! one that just ended. The agent merges slots and entries at each epoch bump. The mm is compared
//! with `current->mm`, read once per slot (and again on a mismatch: exec, exit, or another
//! process's mm touched from this context, e.g. by reclaim), so reclaim or remote access never
//! lends a process another one's footprint.
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_get_smp_processor_id, bpf_probe_read_kernel},
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, tracing::StackIdContext},
};
use leaktrace_common::{
    RssDirty,
    rss::{FLOOR_NONE, FloorKey, FloorVal, RssSlot},
};

use super::{sites, stackcopy::CopyJump};
use crate::{
    emit::pid_tgid,
    error::ProbeError,
    maps::{RSS_DIRTY, RSS_EPOCH, RSS_FLOOR, RSS_LAST, floor_cfg},
};

#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn rss_stat(ctx: RawTracePointContext) -> i32 {
    try_rss_stat(&ctx, None).unwrap_or(1)
}

#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat_floor(ctx: BtfTracePointContext) -> i32 {
    try_rss_stat(&ctx, Some(&ctx)).unwrap_or(1)
}

/// `floor`: this is `rss_stat_floor`, whose arguments are typed.
#[inline(always)]
fn try_rss_stat<C: StackIdContext + CopyJump>(ctx: &C, floor: Option<&BtfTracePointContext>) -> Result<i32, i64> {
    let (tgid, _) = pid_tgid();
    if tgid == 0 {
        return Ok(0);
    }
    let dirty = mark_dirty(ctx, tgid, floor);
    // Allocation sites: every Nth fault per CPU (stacks off: pruned by the verifier). Last: it may
    // end in a tail call to the stack copy.
    sites::fault_tick(ctx, tgid);
    dirty.map(|()| 0)
}

#[inline(always)]
fn mark_dirty<C: StackIdContext>(ctx: &C, tgid: u32, floor: Option<&BtfTracePointContext>) -> Result<(), i64> {
    let epoch = RSS_EPOCH.get(0).copied().unwrap_or(0);
    let Some(slot) = RSS_LAST.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: per-CPU slot, only this CPU touches it while we run.
    unsafe {
        if (*slot).tgid == tgid && (*slot).epoch == epoch {
            if let Some(f) = floor {
                observe(f, slot);
            }
            return Ok(());
        }
        if let Some(f) = floor {
            flush(ctx, &*slot);
            (*slot).mm = 0;
            (*slot).min = FLOOR_NONE;
            (*slot).tgid = tgid;
            (*slot).epoch = epoch;
            observe(f, slot);
        } else {
            (*slot).tgid = tgid;
            (*slot).epoch = epoch;
        }
    }
    RSS_DIRTY
        .insert(tgid, RssDirty { tgid, _pad: 0, epoch }, 0)
        .map_err(|errno| {
            ProbeError::MapUpdate {
                map: "RSS_DIRTY",
                errno,
            }
            .log(ctx)
        })?;
    Ok(())
}

/// Lower the slot's minimum with the footprint of the event's mm, if it is the current process's.
///
/// # Safety
/// `slot` is this CPU's `RSS_LAST` entry.
#[inline(always)]
unsafe fn observe(ctx: &BtfTracePointContext, slot: *mut RssSlot) {
    let member: u64 = ctx.arg(1);
    // Constants of the frozen .rodata: the verifier explores only the branch this kernel takes.
    let from_arg = floor_cfg!(from_arg) != 0;
    if from_arg {
        if member as u32 != floor_cfg!(anon_member) {
            return; // before 6.2: the minimum of anon alone
        }
    } else if member as u32 == floor_cfg!(file_member) {
        return; // file pages are not footprint
    }
    let mm: *const u8 = ctx.arg(0);
    // SAFETY: see above.
    unsafe {
        if mm as u64 != (*slot).mm {
            let cur = current_mm();
            (*slot).mm = cur;
            if cur != mm as u64 {
                return;
            }
        }
        let pages = if from_arg {
            let count: i64 = ctx.arg(2);
            count.max(0) as u64
        } else {
            footprint(mm)
        };
        if pages < (*slot).min {
            (*slot).min = pages;
        }
    }
}

/// `current->mm` (0 for a kernel thread or a task past `exit_mm`).
#[inline(always)]
fn current_mm() -> u64 {
    let off = floor_cfg!(task_mm) as usize;
    // SAFETY: helper without preconditions; the read is fault-checked by the kernel.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        bpf_probe_read_kernel(task.wrapping_add(off) as *const u64).unwrap_or(0)
    }
}

/// anon + swap + shmem of `mm`, in pages (each counter clamped at 0: a percpu_counter's `count`
/// lags the per-CPU deltas and may dip below zero).
///
/// # Safety
/// `mm` is the tracepoint's typed `struct mm_struct *`: the verifier checks each load against
/// the kernel's BTF (the offsets are constants of the frozen .rodata) and turns it into a load
/// whose fault the kernel catches.
#[inline(always)]
unsafe fn footprint(mm: *const u8) -> u64 {
    let first = floor_cfg!(first) as usize;
    let stride = floor_cfg!(stride) as usize;
    // SAFETY: see above.
    let (a, s, m) = unsafe {
        (
            core::ptr::read_volatile(mm.add(first) as *const i64),
            core::ptr::read_volatile(mm.add(first + stride) as *const i64),
            core::ptr::read_volatile(mm.add(first + 2 * stride) as *const i64),
        )
    };
    a.max(0) as u64 + s.max(0) as u64 + m.max(0) as u64
}

/// Move a slot's minimum into `RSS_FLOOR` (the CPU is moving to another process).
#[inline(always)]
fn flush<C: StackIdContext>(ctx: &C, s: &RssSlot) {
    if s.min == FLOOR_NONE || s.tgid == 0 {
        return;
    }
    // SAFETY: helper without preconditions.
    let key = FloorKey::new(s.tgid, unsafe { bpf_get_smp_processor_id() }, s.epoch);
    if let Some(v) = RSS_FLOOR.get_ptr_mut(key) {
        // SAFETY: only this CPU writes entries with its number in the key.
        unsafe {
            if (*v).epoch == s.epoch {
                if s.min < (*v).min {
                    (*v).min = s.min;
                }
                return;
            }
        }
    }
    // An LRU map evicts rather than fails when full: a failure is an allocation that failed.
    let _ = RSS_FLOOR
        .insert(
            key,
            FloorVal {
                epoch: s.epoch,
                min: s.min,
            },
            0,
        )
        .map_err(|errno| {
            ProbeError::MapUpdate {
                map: "RSS_FLOOR",
                errno,
            }
            .log(ctx)
        });
}

/// A thread of `tgid` exits on this CPU: after `exit_mm` its events are not its footprint, so the
/// slot's mm is checked again; when the whole process is gone its floor entries of this CPU go
/// too (the agent removes the other CPUs' once their epoch ended).
#[inline(always)]
pub fn exited(tgid: u32, last: bool) {
    if floor_cfg!(enabled) == 0 {
        return;
    }
    if let Some(slot) = RSS_LAST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU touches it while we run.
        unsafe {
            if (*slot).tgid == tgid {
                (*slot).mm = 0;
                if last {
                    (*slot).min = FLOOR_NONE;
                }
            }
        }
    }
    if last {
        // SAFETY: helper without preconditions.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        let _ = RSS_FLOOR.remove(FloorKey::new(tgid, cpu, 0));
        let _ = RSS_FLOOR.remove(FloorKey::new(tgid, cpu, 1));
    }
}
