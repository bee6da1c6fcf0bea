//! mmap / munmap / brk / mremap (and exit_group's code) seen from the kernel's syscall functions
//! through BPF trampolines: fexit on `__x64_sys_mmap`, `__x64_sys_munmap`, `__x64_sys_brk`,
//! `__x64_sys_mremap`, fentry on `__x64_sys_exit_group`. One program per call, with the
//! arguments and the result together (no enter/exit pairing), and no `syscalls:*` tracepoint, so
//! the other syscalls of every task keep the fast path. The events are the tracepoint path's.
//!
//! Each function takes one argument, the caller's `struct pt_regs *` (x86_64 syscall ABI:
//! arguments in di, si, dx, r10, r8, r9); an fexit program sees the return value after the
//! arguments, i.e. as argument 1. The agent attaches these only on x86_64 and when the kernel
//! has BTF and trampolines; otherwise the tracepoints run.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};

use super::mmap::{emit_brk, emit_mmap, emit_mremap, emit_munmap};
use crate::{emit::pid_tgid, error::ProbeError, maps::EXIT_CODES};

/// x86_64 `struct pt_regs` (arch/x86/include/asm/ptrace.h), the order the entry code pushes.
#[repr(C)]
#[derive(Clone, Copy)]
struct PtRegs {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    bp: u64,
    bx: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    ax: u64,
    cx: u64,
    dx: u64,
    si: u64,
    di: u64,
    orig_ax: u64,
    ip: u64,
    cs: u64,
    flags: u64,
    sp: u64,
    ss: u64,
}

/// The six syscall arguments from the `pt_regs` the syscall function was given.
#[inline(always)]
fn syscall_args(regs: *const PtRegs) -> Result<[u64; 6], i64> {
    // SAFETY: a kernel pointer read through the helper, which faults safely.
    let r = unsafe { bpf_probe_read_kernel(regs) }?;
    Ok([r.di, r.si, r.dx, r.r10, r.r8, r.r9])
}

#[inline(always)]
fn call(ctx: &FExitContext) -> Result<([u64; 6], i64), i64> {
    let regs: *const PtRegs = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    Ok((syscall_args(regs)?, ret))
}

#[fexit(function = "__x64_sys_mmap")]
pub fn mmap_fexit(ctx: FExitContext) -> u32 {
    try_mmap_fexit(&ctx).unwrap_or(1)
}

fn try_mmap_fexit(ctx: &FExitContext) -> Result<u32, i64> {
    let (a, ret) = call(ctx)?;
    emit_mmap(ctx, a, ret);
    Ok(0)
}

#[fexit(function = "__x64_sys_munmap")]
pub fn munmap_fexit(ctx: FExitContext) -> u32 {
    try_munmap_fexit(&ctx).unwrap_or(1)
}

fn try_munmap_fexit(ctx: &FExitContext) -> Result<u32, i64> {
    let (a, ret) = call(ctx)?;
    emit_munmap(a, ret);
    Ok(0)
}

#[fexit(function = "__x64_sys_brk")]
pub fn brk_fexit(ctx: FExitContext) -> u32 {
    try_brk_fexit(&ctx).unwrap_or(1)
}

fn try_brk_fexit(ctx: &FExitContext) -> Result<u32, i64> {
    let (a, ret) = call(ctx)?;
    emit_brk(ctx, a, ret);
    Ok(0)
}

#[fexit(function = "__x64_sys_mremap")]
pub fn mremap_fexit(ctx: FExitContext) -> u32 {
    try_mremap_fexit(&ctx).unwrap_or(1)
}

fn try_mremap_fexit(ctx: &FExitContext) -> Result<u32, i64> {
    let (a, ret) = call(ctx)?;
    emit_mremap(ctx, a, ret);
    Ok(0)
}

#[fentry(function = "__x64_sys_exit_group")]
pub fn exitgrp_fentry(ctx: FEntryContext) -> u32 {
    try_exitgrp_fentry(&ctx).unwrap_or(1)
}

fn try_exitgrp_fentry(ctx: &FEntryContext) -> Result<u32, i64> {
    let regs: *const PtRegs = ctx.arg(0);
    let code = syscall_args(regs)?[0] as i32;
    let (tgid, _) = pid_tgid();
    EXIT_CODES.insert(tgid, code, 0).map_err(|errno| {
        ProbeError::MapUpdate {
            map: "EXIT_CODES",
            errno,
        }
        .log(ctx)
    })?;
    Ok(0)
}
