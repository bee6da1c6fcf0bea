//! Stack copies for unwinding by CFI in the agent (perf's `--call-graph dwarf`, done sparingly).
//!
//! The kernel's frame-pointer walk (`bpf_get_stackid`) is wrong or cut short wherever code has no
//! frame pointers — the distribution's glibc and libstdc++, most packaged binaries. So an event
//! that took a stack ([`super::sites`]) also hands itself over ([`request`]) to a small program
//! that copies the thread's user registers and a window of its stack (the stack pointer's page
//! and up to `copy_pages - 1` pages above it, stopping at the first unreadable one) into the
//! `STACK_COPIES` ring buffer. The agent unwinds the copy with each binary's `.eh_frame` and
//! splits the frame-pointer stack's bytes among the stacks its copies unwind to.
//!
//! Bounded cost: nothing is copied for a frame-pointer stack the agent has checked against the
//! CFI (`FP_TRUSTED`), and copies are rate-limited per process (GCRA on `COPY_BUDGET`: one per
//! `copy_interval_ns`, bursts up to `copy_burst_ns`) and for all processes together (the entry of
//! tgid 0, one per `copy_global_interval_ns`), so a fault storm costs at most that many copies a
//! second. The copy runs in a separate program reached by a tail call, one per program
//! type (tail calls stay within a type): on a kernel that cannot load it (it needs
//! `bpf_task_pt_regs`, Linux ≥ 5.15) its slot stays empty, the tail call falls through and the
//! event keeps its frame-pointer stack.
use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::{bpf_probe_read_user, bpf_task_pt_regs},
    },
    macros::{perf_event, raw_tracepoint, tracepoint, uretprobe},
    maps::ProgramArray,
    programs::{
        BtfTracePointContext, FExitContext, PerfEventContext, RawTracePointContext, RetProbeContext, TracePointContext,
    },
};
use leaktrace_common::sites::{COPY_MAX_PAGES, COPY_PAGE, CopyRequest, NO_STACK, StackCopy, site_counter};

use super::sites::{config, count};
use crate::maps::{
    COPY_BUDGET, COPY_JUMP_PERF, COPY_JUMP_RAW_TP, COPY_JUMP_TP, COPY_JUMP_URETPROBE, COPY_REQ, FP_TRUSTED,
    STACK_COPIES,
};

/// The jump table holding the copy program of this context's program type (None: this type
/// takes no copies).
pub trait CopyJump: EbpfContext {
    fn jump() -> Option<&'static ProgramArray>;
}

impl CopyJump for RawTracePointContext {
    fn jump() -> Option<&'static ProgramArray> {
        Some(&COPY_JUMP_RAW_TP)
    }
}

impl CopyJump for TracePointContext {
    fn jump() -> Option<&'static ProgramArray> {
        Some(&COPY_JUMP_TP)
    }
}

impl CopyJump for PerfEventContext {
    fn jump() -> Option<&'static ProgramArray> {
        Some(&COPY_JUMP_PERF)
    }
}

impl CopyJump for RetProbeContext {
    fn jump() -> Option<&'static ProgramArray> {
        Some(&COPY_JUMP_URETPROBE)
    }
}

/// The fexit path (kernels with BPF trampolines) keeps frame-pointer stacks only: a tail call
/// from a tracing program would need a copy program attached to the same function.
impl CopyJump for FExitContext {
    fn jump() -> Option<&'static ProgramArray> {
        None
    }
}

/// The floor's BTF tracepoint on `rss_stat` (a tracing program too): its fault samples keep
/// frame-pointer stacks only.
impl CopyJump for BtfTracePointContext {
    fn jump() -> Option<&'static ProgramArray> {
        None
    }
}

/// Ask for a copy of this thread's stack for an event whose frame-pointer stack is `stack_id`.
/// Must be the caller's last action: on success the tail call does not return.
#[inline(always)]
pub fn request<C: CopyJump>(ctx: &C, tgid: u32, stack_id: u32, grown: u64, fault: u64) {
    let Some(jump) = C::jump() else { return };
    if config().copy_pages == 0 {
        return;
    }
    // SAFETY: only the presence of the entry is used.
    if stack_id != NO_STACK && unsafe { FP_TRUSTED.get(stack_id) }.is_some() {
        return;
    }
    let Some(r) = COPY_REQ.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot; tracing programs do not nest on a CPU, and the tail call below runs
    // on this CPU before anything else can.
    unsafe {
        *r = CopyRequest {
            tgid,
            stack_id,
            grown_bytes: grown,
            fault_bytes: fault,
        };
        jump.tail_call(ctx, 0);
    }
}

#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn copy_raw_tp(_ctx: RawTracePointContext) -> i32 {
    try_copy().unwrap_or(1) as i32
}

#[tracepoint]
pub fn copy_tp(_ctx: TracePointContext) -> u32 {
    try_copy().unwrap_or(1)
}

#[perf_event]
pub fn copy_perf(_ctx: PerfEventContext) -> u32 {
    try_copy().unwrap_or(1)
}

#[uretprobe]
pub fn copy_uretprobe(_ctx: RetProbeContext) -> u32 {
    try_copy().unwrap_or(1)
}

/// Within the process's rate limit? (GCRA: the theoretical arrival time may run ahead of now by
/// at most the burst.) Racing CPUs may each take one copy more: the bound stays per CPU.
#[inline(always)]
fn allowed(tgid: u32, interval: u64, burst: u64) -> bool {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match COPY_BUDGET.get_ptr_mut(tgid) {
        Some(tat) => {
            // SAFETY: `tat` points at the map value.
            unsafe {
                if *tat > now + burst {
                    return false;
                }
                *tat = if *tat > now { *tat } else { now } + interval;
            }
            true
        }
        None => COPY_BUDGET.insert(tgid, now + interval, 0).is_ok(),
    }
}

fn try_copy() -> Result<u32, i64> {
    let Some(req) = COPY_REQ.get(0).copied() else {
        return Ok(0);
    };
    let cfg = config();
    if !allowed(req.tgid, cfg.copy_interval_ns, cfg.copy_burst_ns)
        || !allowed(0, cfg.copy_global_interval_ns, cfg.copy_burst_ns)
    {
        count(site_counter::COPY_LIMITED);
        return Ok(0);
    }
    // SAFETY: helpers without preconditions; the registers are read with probe reads.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
    if regs.is_null() {
        count(site_counter::COPY_ERRORS);
        return Ok(0);
    }
    // SAFETY: `regs` is the current task's saved user register frame; a bad read is an error.
    let (ip, sp, bp) = unsafe {
        match (
            bpf_probe_read_kernel(&raw const (*regs).rip),
            bpf_probe_read_kernel(&raw const (*regs).rsp),
            bpf_probe_read_kernel(&raw const (*regs).rbp),
        ) {
            (Ok(ip), Ok(sp), Ok(bp)) => (ip, sp, bp),
            _ => {
                count(site_counter::COPY_ERRORS);
                return Ok(0);
            }
        }
    };
    let Some(mut entry) = STACK_COPIES.reserve::<StackCopy>(0) else {
        count(site_counter::COPY_DROPS);
        return Ok(0);
    };
    let rec = entry.as_mut_ptr();
    let base = sp & !(COPY_PAGE as u64 - 1);
    let mut pages: u32 = 0;
    // SAFETY: `rec` is the reserved record; each read writes one page inside `data`.
    unsafe {
        let data = (&raw mut (*rec).data).cast::<u8>();
        for i in 0..COPY_MAX_PAGES {
            if i as u32 >= cfg.copy_pages {
                break;
            }
            let src = base + (i * COPY_PAGE) as u64;
            let rc = bpf_probe_read_user(
                data.add(i * COPY_PAGE).cast(),
                COPY_PAGE as u32,
                src as *const core::ffi::c_void,
            );
            if rc != 0 {
                break;
            }
            pages += 1;
        }
    }
    if pages == 0 {
        entry.discard(0);
        count(site_counter::COPY_ERRORS);
        return Ok(0);
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the header lies inside the reserved record.
    unsafe {
        let h = &raw mut (*rec).hdr;
        (*h).tgid = req.tgid;
        (*h).tid = tid;
        (*h).stack_id = req.stack_id;
        (*h).pages = pages;
        (*h).grown_bytes = req.grown_bytes;
        (*h).fault_bytes = req.fault_bytes;
        (*h).ip = ip;
        (*h).sp = sp;
        (*h).bp = bp;
        (*h).base = base;
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    count(site_counter::COPIES);
    Ok(0)
}
