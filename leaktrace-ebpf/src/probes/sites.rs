//! Allocation sites: a user stack at each event that grows a process, aggregated in the kernel.
//!
//! The sys_exit handlers of brk / mmap / mremap call [`record`] with the bytes grown. Page faults
//! are sampled once every N per CPU, each sample counting N × 4096 bytes: by [`fault_tick`],
//! called from the `rss_stat` raw tracepoint (which already runs at every fault: one per-CPU
//! increment more), or, when that tracepoint is missing, by the `fault_sample` perf_event
//! program attached to the software page-fault counter of every CPU with a sample period of N.
//! (Measured on the fault storm, merely having the perf event costs every fault far more than
//! the increment: README, "Where the memory grows".)
//! Both check first whether stacks are on and the process is watched, so other processes (and the
//! default mode) pay one lookup. Bytes go to `SITES[(tgid, stack id, cpu)]`: no ring buffer
//! record, no agent wakeup. Only this CPU writes its entries (tracing programs do not nest on a
//! CPU), so plain adds are exact without atomics. A stack that cannot be had (-EEXIST: its hash bucket holds
//! another stack; or an unreadable user stack) is counted in `SITE_COUNTERS` and its bytes go to
//! the `NO_STACK` entry, so nothing is dropped silently.
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::bpf_get_smp_processor_id,
    macros::perf_event,
    maps::HashMap,
    programs::{PerfEventContext, tracing::StackIdContext},
};
use leaktrace_common::sites::{NO_STACK, SiteKey, SiteValue, SitesConfig, site_counter};

use super::stackcopy::{self, CopyJump};
use crate::{
    emit::pid_tgid,
    maps::{FAULT_TICK, SITE_COUNTERS, SITES, SITES_CONFIG, SITES_WATCHED, STACKS},
};

const EEXIST: i32 = 17;

/// The settings the agent patched in before loading.
#[inline(always)]
pub fn config() -> SitesConfig {
    // SAFETY: plain data in .rodata, patched by the loader.
    unsafe { core::ptr::read_volatile(&raw const SITES_CONFIG) }
}

/// Stacks are on and `tgid` is one of the watched processes. Cheapest checks first.
#[inline(always)]
pub fn watched(tgid: u32) -> bool {
    let cfg = config();
    if cfg.enabled == 0 || tgid == 0 {
        return false;
    }
    // SAFETY: the reference is only tested for presence, never read, so a concurrent update or
    // delete of the entry cannot be observed half-done.
    cfg.all != 0 || unsafe { SITES_WATCHED.get(tgid) }.is_some()
}

#[inline(always)]
pub fn count(slot: u32) {
    if let Some(p) = SITE_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *p += 1 };
    }
}

/// `*p += v` (wrapping) on a value only this CPU updates.
#[inline(always)]
pub fn add(p: *mut u64, v: u64) {
    // SAFETY: `p` points into a map value that stays allocated while the program runs.
    unsafe { *p = (*p).wrapping_add(v) };
}

/// The `SITES` / `MALLOC_SITES` key of this CPU.
#[inline(always)]
pub fn site_key(tgid: u32, stack_id: u32) -> SiteKey {
    SiteKey {
        tgid,
        stack_id,
        // SAFETY: a BPF helper without arguments or preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        _pad: 0,
    }
}

/// This thread's user stack id; `NO_STACK` (counted) when it cannot be had.
#[inline(always)]
pub fn stack_id<C: StackIdContext>(ctx: &C) -> u32 {
    match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as u32,
        Err(e) => {
            count(if e == -EEXIST {
                site_counter::COLLISIONS
            } else {
                site_counter::STACK_ERRORS
            });
            NO_STACK
        }
    }
}

/// Add to `map[key]`, creating the entry on first use (a racing creator is retried).
#[inline(always)]
pub fn upsert<V: Copy + 'static>(map: &HashMap<SiteKey, V>, key: &SiteKey, init: &V, bump: impl Fn(*mut V)) {
    if let Some(v) = map.get_ptr_mut(key) {
        bump(v);
        return;
    }
    match map.insert(key, init, BPF_NOEXIST as u64) {
        Ok(()) => {}
        Err(e) if e == -EEXIST => {
            if let Some(v) = map.get_ptr_mut(key) {
                bump(v);
            }
        }
        Err(_) => count(site_counter::SITES_FULL),
    }
}

/// Add the event to its frame-pointer stack's entry, then ask for a stack copy (a tail call: this
/// must be the caller's last action).
#[inline(always)]
fn record_as<C: StackIdContext + CopyJump>(ctx: &C, tgid: u32, grown: u64, fault: u64) {
    let id = stack_id(ctx);
    let key = site_key(tgid, id);
    let init = SiteValue {
        grown_bytes: grown,
        fault_bytes: fault,
        events: 1,
    };
    upsert(&SITES, &key, &init, |v| {
        // SAFETY: `v` points at the map value.
        unsafe {
            if grown != 0 {
                add(&raw mut (*v).grown_bytes, grown);
            }
            if fault != 0 {
                add(&raw mut (*v).fault_bytes, fault);
            }
            add(&raw mut (*v).events, 1);
        }
    });
    stackcopy::request(ctx, tgid, id, grown, fault);
}

/// `bytes` grown by a brk / mmap / mremap of process `tgid`, called last at the syscall's exit.
#[inline(always)]
pub fn record<C: StackIdContext + CopyJump>(ctx: &C, tgid: u32, bytes: u64) {
    if bytes == 0 || !watched(tgid) {
        return;
    }
    record_as(ctx, tgid, bytes, 0);
}

/// Called last by `rss_stat` at every RSS change (each page fault is one): every Nth on this CPU,
/// a stack for a watched process. Before the check, one per-CPU increment.
#[inline(always)]
pub fn fault_tick<C: StackIdContext + CopyJump>(ctx: &C, tgid: u32) {
    let cfg = config();
    if cfg.enabled == 0 || cfg.rss_every == 0 {
        return;
    }
    let Some(t) = FAULT_TICK.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot, only this CPU touches it while we run.
    unsafe {
        *t += 1;
        if *t < cfg.rss_every {
            return;
        }
        *t = 0;
    }
    if watched(tgid) {
        count(site_counter::FAULT_SAMPLES);
        record_as(ctx, tgid, 0, cfg.fault_bytes);
    }
}

/// Every Nth page fault of a CPU (N = the sample period the agent attached with).
#[perf_event]
pub fn fault_sample(ctx: PerfEventContext) -> u32 {
    try_fault_sample(&ctx).unwrap_or(1)
}

fn try_fault_sample(ctx: &PerfEventContext) -> Result<u32, i64> {
    let (tgid, _) = pid_tgid();
    if !watched(tgid) {
        return Ok(0);
    }
    count(site_counter::FAULT_SAMPLES);
    record_as(ctx, tgid, 0, config().fault_bytes);
    Ok(0)
}
