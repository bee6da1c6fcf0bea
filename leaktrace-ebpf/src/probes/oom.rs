//! The OOM killer's choice. On 6.18:
//!
//!   oom:mark_victim  pid@8 comm(data_loc)@12 total_vm@16 anon_rss@24 file_rss@32 shmem_rss@40
//!                    uid@48 pgtables@56 oom_score_adj(short)@64      (all sizes in kB)
//!
//! Kernels before ~6.9 give only `pid`; absent fields are flagged in `present` and the agent fills
//! them from /proc and the kernel log. The current task is the trigger, not the victim.
use aya_ebpf::{
    EbpfContext, helpers::bpf_probe_read_kernel_str_bytes, macros::tracepoint, programs::TracePointContext,
};
use leaktrace_common::{EventKind, Field, OomKillEvent, oom_field};

use crate::{
    emit::{header, read, reserve, submit},
    error::ProbeError,
    maps::off,
};

#[tracepoint]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    try_mark_victim(&ctx).unwrap_or(1)
}

#[inline(always)]
fn field(ctx: &TracePointContext, f: Field, bit: u32, present: &mut u32) -> u64 {
    if f.present() {
        *present |= bit;
    }
    read(ctx, f)
}

fn try_mark_victim(ctx: &TracePointContext) -> Result<u32, i64> {
    let Some(mut e) = reserve::<OomKillEvent>(EventKind::OomKill) else {
        return Ok(0);
    };
    let mut present = 0u32;
    let ptr = e.as_mut_ptr();
    // SAFETY: `ptr` points at the reserved record; every field is written before submit.
    unsafe {
        (*ptr).hdr = header(EventKind::OomKill);
        (*ptr).victim_pid = read(ctx, off!(oom_pid)) as u32;
        (*ptr).total_vm_kb = field(ctx, off!(oom_total_vm), oom_field::TOTAL_VM, &mut present);
        (*ptr).anon_rss_kb = field(ctx, off!(oom_anon_rss), oom_field::ANON_RSS, &mut present);
        (*ptr).file_rss_kb = field(ctx, off!(oom_file_rss), oom_field::FILE_RSS, &mut present);
        (*ptr).shmem_rss_kb = field(ctx, off!(oom_shmem_rss), oom_field::SHMEM_RSS, &mut present);
        (*ptr).uid = field(ctx, off!(oom_uid), oom_field::UID, &mut present) as u32;
        (*ptr).pgtables_kb = field(ctx, off!(oom_pgtables), oom_field::PGTABLES, &mut present);
        (*ptr).oom_score_adj = field(ctx, off!(oom_score_adj), oom_field::OOM_SCORE_ADJ, &mut present) as i32;
        (*ptr).victim_comm = [0; 16];
        let comm = off!(oom_comm);
        if comm.present() {
            // data_loc (size 4): low 16 bits offset of the string in the record; else an inline char[].
            let at = if comm.size == 4 {
                read(ctx, comm) as u32 & 0xffff
            } else {
                comm.offset as u32
            };
            let src = (ctx.as_ptr() as *const u8).add(at as usize);
            match bpf_probe_read_kernel_str_bytes(src, &mut (*ptr).victim_comm) {
                Ok(_) => present |= oom_field::COMM,
                Err(errno) => {
                    ProbeError::Layout {
                        field: "mark_victim.comm",
                        errno,
                    }
                    .log(ctx);
                }
            }
        }
        (*ptr).present = present;
    }
    submit(EventKind::OomKill, e);
    Ok(0)
}
