//! Process lifecycle: task creation (to tell processes from threads), fork, exec, exit.
//!
//!   task:task_newtask          pid@8 comm[16]@12 clone_flags@32 oom_score_adj@40
//!   sched:sched_process_fork   parent_comm(data_loc)@8 parent_pid@12 child_comm(data_loc)@16 child_pid@20
//!   sched:sched_process_exec   filename(data_loc)@8 pid@12 old_pid@16
//!   sched:sched_process_exit   comm[16]@8 pid@24 prio@28 group_dead(bool)@32
//!   syscalls:sys_enter_exit_group error_code@16
//!
//! sched_process_exec runs in the new program, its argument area (`mm->arg_start..arg_end`) just
//! written by the kernel: the exec event keeps its first bytes, before the program can rewrite its
//! process title there (redis, nginx, postgres do), which /proc/PID/cmdline would show instead.
use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_user,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use leaktrace_common::{EXEC_ARGS_LEN, EventKind, ExecEvent, ExitEvent, ForkEvent};

use crate::{
    emit::{header, output, pid_tgid, read, reserve, submit},
    error::ProbeError,
    maps::{BRK_LAST, EXIT_CODES, NEW_TASKS, PENDING, RSS_DIRTY, SITES_WATCHED, exec_args_cfg, off},
};

const CLONE_THREAD: u64 = 0x0001_0000;

#[tracepoint]
pub fn exit_group_enter(ctx: TracePointContext) -> u32 {
    try_exit_group_enter(&ctx).unwrap_or(1)
}

fn try_exit_group_enter(ctx: &TracePointContext) -> Result<u32, i64> {
    let (tgid, _) = pid_tgid();
    let code = read(ctx, off!(exit_group_code)) as i32;
    EXIT_CODES.insert(tgid, code, 0).map_err(|errno| {
        ProbeError::MapUpdate {
            map: "EXIT_CODES",
            errno,
        }
        .log(ctx)
    })?;
    Ok(0)
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    try_task_newtask(&ctx).unwrap_or(1)
}

fn try_task_newtask(ctx: &TracePointContext) -> Result<u32, i64> {
    let pid = read(ctx, off!(newtask_pid)) as u32;
    let flags = read(ctx, off!(newtask_clone_flags));
    NEW_TASKS.insert(pid, flags, 0).map_err(|errno| {
        ProbeError::MapUpdate {
            map: "NEW_TASKS",
            errno,
        }
        .log(ctx)
    })?;
    Ok(0)
}

#[tracepoint]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    try_process_fork(&ctx).unwrap_or(1)
}

fn try_process_fork(ctx: &TracePointContext) -> Result<u32, i64> {
    let child = read(ctx, off!(fork_child_pid)) as u32;
    // SAFETY: the entry may be changed or deleted by another CPU while referenced; it is copied
    // at once (a plain `Copy` value), before this program removes it.
    let flags = unsafe { NEW_TASKS.get(child) }.copied();
    let _ = NEW_TASKS.remove(child);
    if flags.is_some_and(|f| f & CLONE_THREAD != 0) {
        return Ok(0); // a thread, not a process
    }
    output(
        EventKind::Fork,
        ForkEvent {
            hdr: header(EventKind::Fork),
            child_pid: child,
            _pad: 0,
        },
    );
    Ok(0)
}

#[tracepoint]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    try_process_exec(&ctx).unwrap_or(1)
}

fn try_process_exec(ctx: &TracePointContext) -> Result<u32, i64> {
    let Some(mut e) = reserve::<ExecEvent>(EventKind::Exec) else {
        return Ok(0);
    };
    let loc = read(ctx, off!(exec_filename)) as u32;
    let ptr = e.as_mut_ptr();
    // SAFETY: `ptr` points at the reserved record; every field is written before submit.
    unsafe {
        (*ptr).hdr = header(EventKind::Exec);
        (*ptr).old_pid = read(ctx, off!(exec_old_pid)) as u32;
        let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        (*ptr).filename_len = match bpf_probe_read_kernel_str_bytes(src, &mut (*ptr).filename) {
            Ok(s) => s.len() as u32,
            Err(errno) => {
                ProbeError::Layout {
                    field: "sched_process_exec.filename",
                    errno,
                }
                .log(ctx);
                0
            }
        };
        read_args(ptr);
    }
    submit(EventKind::Exec, e);
    Ok(0)
}

/// The first [`EXEC_ARGS_LEN`] bytes of the current program's argument area into the record;
/// `args_len` 0 when they cannot be read (the event goes out all the same).
///
/// # Safety
/// `e` points at the reserved exec record.
#[inline(always)]
unsafe fn read_args(e: *mut ExecEvent) {
    // SAFETY: `e` is the reserved record (see above).
    unsafe {
        (*e).args_len = 0;
        (*e).args_total = 0;
    }
    // A constant of the frozen .rodata: with the reading off, the verifier drops what follows.
    if exec_args_cfg!(enabled) == 0 {
        return;
    }
    let (task_mm, arg_start, arg_end) = (
        exec_args_cfg!(task_mm) as usize,
        exec_args_cfg!(mm_arg_start) as usize,
        exec_args_cfg!(mm_arg_end) as usize,
    );
    // SAFETY: helpers without preconditions; every kernel read is fault-checked by the kernel.
    let area = unsafe {
        let task = bpf_get_current_task() as *const u8;
        bpf_probe_read_kernel(task.wrapping_add(task_mm) as *const u64)
            .ok()
            .filter(|&mm| mm != 0)
            .and_then(|mm| {
                let mm = mm as *const u8;
                let start = bpf_probe_read_kernel(mm.wrapping_add(arg_start) as *const u64).ok()?;
                let end = bpf_probe_read_kernel(mm.wrapping_add(arg_end) as *const u64).ok()?;
                Some((start, end))
            })
    };
    let Some((start, end)) = area.filter(|&(s, e)| s != 0 && e > s) else {
        return;
    };
    let total = end - start;
    // Bounded for the verifier: at most the record's buffer.
    let n = if total > EXEC_ARGS_LEN as u64 {
        EXEC_ARGS_LEN as u32
    } else {
        total as u32
    };
    // SAFETY: `e` is the reserved record, whose `args` has room for `n <= EXEC_ARGS_LEN` bytes;
    // the user read is fault-checked by the kernel.
    unsafe {
        if bpf_probe_read_user((*e).args.as_mut_ptr() as *mut c_void, n, start as *const c_void) == 0 {
            (*e).args_len = n;
            (*e).args_total = total.min(u64::from(u32::MAX)) as u32;
        }
    }
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    try_process_exit(&ctx).unwrap_or(1)
}

fn try_process_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    // A thread that dies inside mmap/brk/... never reaches sys_exit: forget its saved arguments.
    let _ = PENDING.remove(aya_ebpf::helpers::bpf_get_current_pid_tgid());
    let (tgid, tid) = pid_tgid();
    let group_dead = off!(exit_group_dead);
    let last = if group_dead.present() {
        read(ctx, group_dead) != 0
    } else {
        tgid == tid
    };
    super::rss::exited(tgid, last);
    if !last {
        return Ok(0);
    }
    // SAFETY: the entry may be changed or deleted by another CPU while referenced; it is copied
    // at once (a plain `Copy` value), before this program removes it.
    let code = unsafe { EXIT_CODES.get(tgid) }.copied();
    let _ = EXIT_CODES.remove(tgid);
    let _ = BRK_LAST.remove(tgid);
    let _ = RSS_DIRTY.remove(tgid);
    let _ = SITES_WATCHED.remove(tgid);
    output(
        EventKind::Exit,
        ExitEvent {
            hdr: header(EventKind::Exit),
            exit_code: code.unwrap_or(0),
            code_known: code.is_some() as u32,
        },
    );
    Ok(0)
}
