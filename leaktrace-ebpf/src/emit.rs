//! Helpers shared by the probes: event headers, field reads, ring-buffer output with counted drops
//! and batched wakeups.
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    maps::{RingBuf, ring_buf::RingBufEntry},
    programs::TracePointContext,
};
use leaktrace_common::{EventHeader, EventKind, Field};

use crate::maps::{DROPS, EVENTS, EVENTS_WAKE_BYTES, LIFECYCLE, LIFECYCLE_WAKE_BYTES};

#[inline(always)]
pub fn pid_tgid() -> (u32, u32) {
    let v = bpf_get_current_pid_tgid();
    ((v >> 32) as u32, v as u32)
}

#[inline(always)]
pub fn header(kind: EventKind) -> EventHeader {
    let (pid, tid) = pid_tgid();
    EventHeader {
        kind: kind as u32,
        // SAFETY: a BPF helper without arguments or preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        // SAFETY: a BPF helper without arguments or preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid,
        tid,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// Read a tracepoint field of any integer size, sign-extending signed ones. Absent → 0.
#[inline(always)]
pub fn read(ctx: &TracePointContext, f: Field) -> u64 {
    let off = f.offset as usize;
    let signed = f.signed != 0;
    // SAFETY: `read_at` copies with bpf_probe_read, which returns an error instead of faulting on
    // a bad address; the offsets and sizes come from this tracepoint's own format file.
    let r = unsafe {
        match f.size {
            1 => ctx
                .read_at::<u8>(off)
                .map(|v| if signed { v as i8 as i64 as u64 } else { v as u64 }),
            2 => ctx
                .read_at::<u16>(off)
                .map(|v| if signed { v as i16 as i64 as u64 } else { v as u64 }),
            4 => ctx
                .read_at::<u32>(off)
                .map(|v| if signed { v as i32 as i64 as u64 } else { v as u64 }),
            8 => ctx.read_at::<u64>(off),
            _ => Ok(0),
        }
    };
    r.unwrap_or(0)
}

#[inline(always)]
fn ring(kind: EventKind) -> (&'static RingBuf, u64) {
    if kind.is_lifecycle() {
        (&LIFECYCLE, LIFECYCLE_WAKE_BYTES)
    } else {
        (&EVENTS, EVENTS_WAKE_BYTES)
    }
}

#[inline(always)]
pub fn count_drop(kind: EventKind) {
    if let Some(p) = DROPS.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *p += 1 };
    }
}

/// Reserve a record of type `T` in the ring for `kind`; a failure is counted in `DROPS`.
#[inline(always)]
pub fn reserve<T: 'static>(kind: EventKind) -> Option<RingBufEntry<T>> {
    let (rb, _) = ring(kind);
    let e = rb.reserve::<T>(0);
    if e.is_none() {
        count_drop(kind);
    }
    e
}

/// Submit, waking the agent only once enough bytes wait (or at once for an OOM kill).
#[inline(always)]
pub fn submit<T>(kind: EventKind, entry: RingBufEntry<T>) {
    let (rb, wake_at) = ring(kind);
    let flags = if matches!(kind, EventKind::OomKill) || rb.query(0) >= wake_at {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
}

/// Write a whole value and submit it.
#[inline(always)]
pub fn output<T: 'static>(kind: EventKind, value: T) {
    if let Some(mut e) = reserve::<T>(kind) {
        e.write(value);
        submit(kind, e);
    }
}
