//! mmap / munmap / brk / mremap: arguments saved at `sys_enter_*`, one event at `sys_exit_*`.
//!
//! Layouts (6.18; offsets are read from these format files at start, never assumed):
//!   syscalls:sys_enter_mmap   addr@16 len@24 prot@32 flags@40 fd@48 off@56 (8 bytes each)
//!   syscalls:sys_enter_munmap addr@16 len@24
//!   syscalls:sys_enter_brk    brk@16
//!   syscalls:sys_enter_mremap addr@16 old_len@24 new_len@32 flags@40 new_addr@48
//!   syscalls:sys_exit_*       ret@16 (long)
use aya_ebpf::{
    macros::tracepoint,
    programs::{TracePointContext, tracing::StackIdContext},
};
use leaktrace_common::{BrkEvent, EventKind, MmapEvent, MremapEvent, MunmapEvent, PendingCall};

use super::{sites, stackcopy::CopyJump};
use crate::{
    emit::{header, output, pid_tgid, read},
    error::ProbeError,
    maps::{BRK_LAST, PENDING, off},
};

const MAP_ANONYMOUS: u64 = 0x20;

/// A syscall's return value that is an address (not `-errno`).
#[inline(always)]
fn ok_addr(ret: i64) -> bool {
    !(-4095..0).contains(&ret)
}

#[inline(always)]
fn save(ctx: &TracePointContext, kind: EventKind, args: [u64; 6]) -> Result<u32, i64> {
    let key = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let call = PendingCall {
        kind: kind as u32,
        _pad: 0,
        args,
    };
    PENDING
        .insert(key, call, 0)
        .map_err(|errno| ProbeError::MapUpdate { map: "PENDING", errno }.log(ctx))?;
    Ok(0)
}

/// The saved arguments of this thread's call of `kind`, removed from the map, and the return value.
#[inline(always)]
fn take(ctx: &TracePointContext, kind: EventKind) -> Option<([u64; 6], i64)> {
    let key = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    // SAFETY: the entry may be changed or deleted by another CPU while referenced; it is copied
    // at once (a plain `Copy` struct), before this program removes it.
    let call = unsafe { PENDING.get(key) }.copied();
    let _ = PENDING.remove(key);
    let call = call?;
    if call.kind != kind as u32 {
        return None;
    }
    Some((call.args, read(ctx, off!(sys_exit_ret)) as i64))
}

#[tracepoint]
pub fn mmap_enter(ctx: TracePointContext) -> u32 {
    try_mmap_enter(&ctx).unwrap_or(1)
}

fn try_mmap_enter(ctx: &TracePointContext) -> Result<u32, i64> {
    save(
        ctx,
        EventKind::Mmap,
        [
            read(ctx, off!(mmap_addr)),
            read(ctx, off!(mmap_len)),
            read(ctx, off!(mmap_prot)),
            read(ctx, off!(mmap_flags)),
            read(ctx, off!(mmap_fd)),
            read(ctx, off!(mmap_off)),
        ],
    )
}

#[tracepoint]
pub fn mmap_exit(ctx: TracePointContext) -> u32 {
    try_mmap_exit(&ctx).unwrap_or(1)
}

fn try_mmap_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    let Some((a, ret)) = take(ctx, EventKind::Mmap) else {
        return Ok(0);
    };
    emit_mmap(ctx, a, ret);
    Ok(0)
}

/// One `mmap` event from the call's arguments (`addr len prot flags fd off`) and its result;
/// shared by the tracepoint and the fexit path.
#[inline(always)]
pub fn emit_mmap<C: StackIdContext + CopyJump>(ctx: &C, a: [u64; 6], ret: i64) {
    output(
        EventKind::Mmap,
        MmapEvent {
            hdr: header(EventKind::Mmap),
            addr: a[0],
            len: a[1],
            prot: a[2],
            flags: a[3],
            fd: a[4] as i64,
            off: a[5],
            ret,
        },
    );
    // Growth for allocation sites: anonymous, accessible mappings (not PROT_NONE reservations).
    // Last: it may end in a tail call to the stack copy.
    if ok_addr(ret) && a[3] & MAP_ANONYMOUS != 0 && a[2] != 0 {
        sites::record(ctx, pid_tgid().0, a[1]);
    }
}

#[tracepoint]
pub fn munmap_enter(ctx: TracePointContext) -> u32 {
    try_munmap_enter(&ctx).unwrap_or(1)
}

fn try_munmap_enter(ctx: &TracePointContext) -> Result<u32, i64> {
    save(
        ctx,
        EventKind::Munmap,
        [read(ctx, off!(munmap_addr)), read(ctx, off!(munmap_len)), 0, 0, 0, 0],
    )
}

#[tracepoint]
pub fn munmap_exit(ctx: TracePointContext) -> u32 {
    try_munmap_exit(&ctx).unwrap_or(1)
}

fn try_munmap_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    let Some((a, ret)) = take(ctx, EventKind::Munmap) else {
        return Ok(0);
    };
    emit_munmap(a, ret);
    Ok(0)
}

/// One `munmap` event (`addr len`).
#[inline(always)]
pub fn emit_munmap(a: [u64; 6], ret: i64) {
    output(
        EventKind::Munmap,
        MunmapEvent {
            hdr: header(EventKind::Munmap),
            addr: a[0],
            len: a[1],
            ret,
        },
    );
}

#[tracepoint]
pub fn brk_enter(ctx: TracePointContext) -> u32 {
    try_brk_enter(&ctx).unwrap_or(1)
}

fn try_brk_enter(ctx: &TracePointContext) -> Result<u32, i64> {
    save(ctx, EventKind::Brk, [read(ctx, off!(brk_brk)), 0, 0, 0, 0, 0])
}

#[tracepoint]
pub fn brk_exit(ctx: TracePointContext) -> u32 {
    try_brk_exit(&ctx).unwrap_or(1)
}

fn try_brk_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    let Some((a, ret)) = take(ctx, EventKind::Brk) else {
        return Ok(0);
    };
    emit_brk(ctx, a, ret);
    Ok(0)
}

/// One `brk` event (`brk` requested), with the break before it as last seen for the process.
#[inline(always)]
pub fn emit_brk<C: StackIdContext + CopyJump>(ctx: &C, a: [u64; 6], ret: i64) {
    let hdr = header(EventKind::Brk);
    // SAFETY: the entry may be changed or deleted by another CPU while referenced; it is copied
    // at once (a `u64`).
    let old = unsafe { BRK_LAST.get(hdr.pid) }.copied();
    let new_brk = ret as u64;
    if let Err(errno) = BRK_LAST.insert(hdr.pid, new_brk, 0) {
        ProbeError::MapUpdate { map: "BRK_LAST", errno }.log(ctx);
    }
    let tgid = hdr.pid;
    output(
        EventKind::Brk,
        BrkEvent {
            hdr,
            requested: a[0],
            old_brk: old.unwrap_or(0),
            new_brk,
            old_known: old.is_some() as u32,
            _pad: 0,
        },
    );
    // Last: it may end in a tail call to the stack copy.
    if let Some(o) = old
        && new_brk > o
    {
        sites::record(ctx, tgid, new_brk - o);
    }
}

#[tracepoint]
pub fn mremap_enter(ctx: TracePointContext) -> u32 {
    try_mremap_enter(&ctx).unwrap_or(1)
}

fn try_mremap_enter(ctx: &TracePointContext) -> Result<u32, i64> {
    save(
        ctx,
        EventKind::Mremap,
        [
            read(ctx, off!(mremap_addr)),
            read(ctx, off!(mremap_old_len)),
            read(ctx, off!(mremap_new_len)),
            read(ctx, off!(mremap_flags)),
            read(ctx, off!(mremap_new_addr)),
            0,
        ],
    )
}

#[tracepoint]
pub fn mremap_exit(ctx: TracePointContext) -> u32 {
    try_mremap_exit(&ctx).unwrap_or(1)
}

fn try_mremap_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    let Some((a, ret)) = take(ctx, EventKind::Mremap) else {
        return Ok(0);
    };
    emit_mremap(ctx, a, ret);
    Ok(0)
}

/// One `mremap` event (`addr old_len new_len flags new_addr`).
#[inline(always)]
pub fn emit_mremap<C: StackIdContext + CopyJump>(ctx: &C, a: [u64; 6], ret: i64) {
    output(
        EventKind::Mremap,
        MremapEvent {
            hdr: header(EventKind::Mremap),
            old_addr: a[0],
            old_len: a[1],
            new_len: a[2],
            flags: a[3],
            new_addr: a[4],
            ret,
        },
    );
    // Last: it may end in a tail call to the stack copy.
    if ok_addr(ret) && a[2] > a[1] {
        sites::record(ctx, pid_tgid().0, a[2] - a[1]);
    }
}
