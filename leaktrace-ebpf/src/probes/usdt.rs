//! USDT probes of managed runtimes (HotSpot's `hotspot:gc__begin`, `mem__pool__gc__end`, ...,
//! CPython's `python:gc__start` / `gc__done`).
//!
//! One program, attached by the agent at every probe location of a tracked process (uprobe at the
//! location's file offset, that process only) with the id of the probe's [`UsdtSpec`] as BPF
//! cookie. It reads each argument the way the binary's own note says (a register of the saved
//! `pt_regs`, a constant, or memory at register + offset) and sends one [`UsdtEvent`]. Collectors
//! fire these probes once per collection, so the cost is a trap per collection: nothing that
//! matters.
//!
//! Values go straight into the reserved ring-buffer record, never through the stack: the verifier
//! tracks stack slots precisely, and eight arguments of three kinds each, kept on the stack, make
//! more paths than it will explore.
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes, generated::bpf_get_attach_cookie,
    },
    macros::uprobe,
    programs::ProbeContext,
};
use leaktrace_common::usdt::{
    USDT_ARG_CONST, USDT_ARG_REG, USDT_ARG_REG_DEREF, USDT_MAX_ARGS, USDT_STR_LEN, UsdtArgSpec, UsdtEvent, usdt_counter,
};

use crate::maps::{USDT_COUNTERS, USDT_EVENTS, USDT_SPECS};

#[inline(always)]
fn count(slot: u32) {
    if let Some(p) = USDT_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *p += 1 };
    }
}

/// One argument's value, or `None` when the memory could not be read.
#[inline(always)]
fn read_arg(ctx: &ProbeContext, a: &UsdtArgSpec) -> Option<u64> {
    let kind = a.kind;
    if kind == USDT_ARG_CONST {
        return Some(a.val_off);
    }
    if kind != USDT_ARG_REG && kind != USDT_ARG_REG_DEREF {
        return None;
    }
    let off = a.reg_off as usize;
    if off > core::mem::size_of::<pt_regs>() - 8 {
        return None;
    }
    // SAFETY: `off` is inside the saved registers (checked above); the read goes through the
    // helper because the verifier refuses variable offsets into the context.
    let mut raw = unsafe { bpf_probe_read_kernel((ctx.regs as *const u8).add(off) as *const u64) }.ok()?;
    if kind == USDT_ARG_REG_DEREF {
        // SAFETY: reading the process's own memory; a fault is an error, not a crash.
        raw = unsafe { bpf_probe_read_user(raw.wrapping_add(a.val_off) as *const u64) }.ok()?;
    }
    // Keep the low `size` bytes (x86-64 and arm64 are little-endian), sign-extended if asked.
    let shift = match a.size {
        1 => 56,
        2 => 48,
        4 => 32,
        _ => 0,
    };
    Some(if a.signed != 0 {
        (((raw << shift) as i64) >> shift) as u64
    } else {
        (raw << shift) >> shift
    })
}

#[uprobe]
pub fn usdt_probe(ctx: ProbeContext) -> u32 {
    try_usdt_probe(&ctx).unwrap_or(1)
}

fn try_usdt_probe(ctx: &ProbeContext) -> Result<u32, i64> {
    // SAFETY: the helper only reads the cookie of the link that ran us.
    let id = unsafe { bpf_get_attach_cookie(ctx.regs.cast()) } as u32;
    // SAFETY: read-only use of the map value while we run.
    let Some(spec) = (unsafe { USDT_SPECS.get(id) }) else {
        count(usdt_counter::NO_SPEC);
        return Ok(0);
    };
    let Some(mut entry) = USDT_EVENTS.reserve::<UsdtEvent>(0) else {
        count(usdt_counter::DROPS);
        return Ok(0);
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let n = spec.arg_cnt as usize;
    // SAFETY: `ev` points at the reserved record, which we own until submit; every field is
    // written before it is sent.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).probe = spec.probe;
        (*ev).nargs = n as u16;
        (*ev).bad_args = 0;
        (*ev)._pad = 0;
        (*ev).args = [0; USDT_MAX_ARGS];
        (*ev).strs[0] = [0; USDT_STR_LEN];
        (*ev).strs[1] = [0; USDT_STR_LEN];
        for i in 0..USDT_MAX_ARGS {
            if i >= n {
                break;
            }
            let a = &spec.args[i];
            match read_arg(ctx, a) {
                Some(v) => {
                    (*ev).args[i] = v;
                    let slot = a.str_slot;
                    let dst = if slot == 1 {
                        Some(&mut (*ev).strs[0])
                    } else if slot == 2 {
                        Some(&mut (*ev).strs[1])
                    } else {
                        None
                    };
                    if let Some(dst) = dst
                        && bpf_probe_read_user_str_bytes(v as *const u8, dst).is_err()
                    {
                        (*ev).bad_args |= 1 << i;
                    }
                }
                None => (*ev).bad_args |= 1 << i,
            }
        }
    }
    // Collections are rare: wake the reader at once.
    entry.submit(0);
    Ok(0)
}
