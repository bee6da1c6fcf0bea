//! `--malloc`: precise mode, uprobes on the target process's C allocator (like bcc's memleak).
//!
//! Entry probes save the requested size per thread (`MALLOC_PENDING`); `alloc_return` (one
//! uretprobe program attached to every allocator) takes the stack — the uretprobe runs in the
//! caller, with the caller's frame pointer restored, so the innermost frame is the code that
//! allocated — and records `ALLOCS[(tgid, address)]`, adding to `MALLOC_SITES[(tgid, stack)]`.
//! `free` (and realloc of an old pointer) removes the allocation and subtracts it: what is left in
//! `MALLOC_SITES` is outstanding, not freed, memory. With `--malloc-sample N` only one call in N
//! per CPU is recorded (frees of unrecorded addresses find nothing and cost one lookup).
//! The uprobes are attached for the watched processes only (perf_event pid filter), so other
//! processes that use the same libc do not trap. Like the growth events, an allocation whose
//! frame-pointer stack is not known to be right asks for a stack copy (rate-limited), so callers
//! without frame pointers are found by CFI.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use leaktrace_common::sites::{AllocInfo, AllocKey, MallocSite, PendingAlloc, site_counter};

use super::{
    sites::{add, config, count, site_key, stack_id, upsert, watched},
    stackcopy,
};
use crate::{
    error::ProbeError,
    maps::{ALLOCS, MALLOC_PENDING, MALLOC_SITES, MALLOC_TICK},
};

/// Save `size` for this thread's return probe, one call in `malloc_sample`.
#[inline(always)]
fn pending(ctx: &ProbeContext, size: u64, memptr: u64) -> Result<u32, i64> {
    let id = bpf_get_current_pid_tgid();
    if !watched((id >> 32) as u32) {
        return Ok(0);
    }
    let n = config().malloc_sample;
    if n > 1 {
        let Some(t) = MALLOC_TICK.get_ptr_mut(0) else {
            return Ok(0);
        };
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        let tick = unsafe {
            *t = (*t).wrapping_add(1);
            *t
        };
        if tick % n != 0 {
            return Ok(0);
        }
    }
    MALLOC_PENDING
        .insert(id, PendingAlloc { size, memptr }, 0)
        .map_err(|errno| {
            ProbeError::MapUpdate {
                map: "MALLOC_PENDING",
                errno,
            }
            .log(ctx)
        })?;
    Ok(0)
}

/// Forget a live allocation and subtract it from its site.
#[inline(always)]
fn release(tgid: u32, addr: u64) {
    if addr == 0 {
        return;
    }
    let key = AllocKey { addr, tgid, _pad: 0 };
    // SAFETY: the entry may be changed or deleted by another CPU while referenced; it is copied
    // at once (a plain `Copy` value), before this program removes it.
    let Some(info) = (unsafe { ALLOCS.get(key) }).copied() else {
        return;
    };
    let _ = ALLOCS.remove(key);
    // Freed on this CPU: subtract here (the entry may go negative; the agent sums CPUs).
    let neg = info.size.wrapping_neg();
    upsert(
        &MALLOC_SITES,
        &site_key(tgid, info.stack_id),
        &MallocSite {
            bytes: neg,
            allocs: u64::MAX,
        },
        |v| {
            // SAFETY: `v` points at the map value; two's-complement subtraction.
            unsafe {
                add(&raw mut (*v).bytes, neg);
                add(&raw mut (*v).allocs, u64::MAX);
            }
        },
    );
}

#[uprobe]
pub fn malloc_enter(ctx: ProbeContext) -> u32 {
    pending(&ctx, ctx.arg::<u64>(0).unwrap_or(0), 0).unwrap_or(1)
}

#[uprobe]
pub fn calloc_enter(ctx: ProbeContext) -> u32 {
    let n = ctx.arg::<u64>(0).unwrap_or(0);
    let size = ctx.arg::<u64>(1).unwrap_or(0);
    pending(&ctx, n.wrapping_mul(size), 0).unwrap_or(1)
}

/// realloc(ptr, size): the old block is released now, the new one recorded at return.
#[uprobe]
pub fn realloc_enter(ctx: ProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if !watched(tgid) {
        return 0;
    }
    release(tgid, ctx.arg::<u64>(0).unwrap_or(0));
    pending(&ctx, ctx.arg::<u64>(1).unwrap_or(0), 0).unwrap_or(1)
}

/// aligned_alloc(align, size) (also fits memalign).
#[uprobe]
pub fn aligned_alloc_enter(ctx: ProbeContext) -> u32 {
    pending(&ctx, ctx.arg::<u64>(1).unwrap_or(0), 0).unwrap_or(1)
}

/// posix_memalign(void **memptr, size_t align, size_t size): the address is read from *memptr.
#[uprobe]
pub fn posix_memalign_enter(ctx: ProbeContext) -> u32 {
    let memptr = ctx.arg::<u64>(0).unwrap_or(0);
    pending(&ctx, ctx.arg::<u64>(2).unwrap_or(0), memptr.max(1)).unwrap_or(1)
}

#[uprobe]
pub fn free_enter(ctx: ProbeContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if watched(tgid) {
        release(tgid, ctx.arg::<u64>(0).unwrap_or(0));
    }
    0
}

#[uretprobe]
pub fn alloc_return(ctx: RetProbeContext) -> u32 {
    try_alloc_return(&ctx).unwrap_or(1)
}

fn try_alloc_return(ctx: &RetProbeContext) -> Result<u32, i64> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: the entry may be changed or deleted by another CPU while referenced; it is copied
    // at once (a plain `Copy` value), before this program removes it.
    let Some(p) = (unsafe { MALLOC_PENDING.get(id) }).copied() else {
        return Ok(0);
    };
    let _ = MALLOC_PENDING.remove(id);
    let ret: u64 = ctx.ret();
    let addr = if p.memptr != 0 {
        // posix_memalign: 0 = success, the block is in *memptr.
        if ret != 0 || p.memptr == 1 {
            return Ok(0);
        }
        // SAFETY: reading the process's own out-pointer; a fault is an error, not a crash.
        unsafe { bpf_probe_read_user(p.memptr as *const u64) }.unwrap_or(0)
    } else {
        ret
    };
    if addr == 0 {
        return Ok(0);
    }
    let tgid = (id >> 32) as u32;
    // An address handed out again without a free we saw (an unsampled or earlier free).
    release(tgid, addr);
    let stack = stack_id(ctx);
    let key = AllocKey { addr, tgid, _pad: 0 };
    if ALLOCS
        .insert(
            key,
            AllocInfo {
                size: p.size,
                stack_id: stack,
                _pad: 0,
            },
            0,
        )
        .is_err()
    {
        count(site_counter::ALLOCS_FULL);
        return Ok(0);
    }
    let size = p.size;
    upsert(
        &MALLOC_SITES,
        &site_key(tgid, stack),
        &MallocSite { bytes: size, allocs: 1 },
        |v| {
            // SAFETY: `v` points at the map value.
            unsafe {
                add(&raw mut (*v).bytes, size);
                add(&raw mut (*v).allocs, 1);
            }
        },
    );
    // Last: it may end in a tail call to the stack copy.
    stackcopy::request(ctx, tgid, stack, size, 0);
    Ok(0)
}
