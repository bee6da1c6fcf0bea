//! Reading what the monitor observes from /proc, as `input` values.
use std::fs;

use super::exec_args::ExecArgv;
use crate::{
    input::{HostObs, Identity, Obs},
    sys::{
        cgroup::MemcgPath,
        host::MemInfo,
        proc::{ProcStatus, read_cmdline, read_stat, read_status},
    },
};

/// A process's start time (its life) and status; `Ok(None)` for a kernel thread (or a zombie),
/// an error for a pid that is gone.
pub fn read_key(pid: u32) -> std::io::Result<Option<(u64, ProcStatus)>> {
    let stat = read_stat(pid)?;
    let st = read_status(pid)?;
    // Kernel threads have no memory of their own.
    if st.vm_size == 0 {
        return Ok(None);
    }
    Ok(Some((stat.starttime_ticks, st)))
}

/// The memory reading of one life.
pub fn obs(pid: u32, start: u64, st: &ProcStatus) -> Obs {
    Obs(pid, start, st.rss_anon, st.rss_file, st.rss_shmem, st.vm_swap, None)
}

/// Who a new life is: comm, parent, argv and memory cgroup, read while it runs. `exec`: the argv
/// the exec probe saw, which /proc may have lost to a rewritten process title.
pub fn identity(pid: u32, start: u64, st: &ProcStatus, memcg: Option<&MemcgPath>, exec: Option<ExecArgv>) -> Identity {
    let from_proc = || read_cmdline(pid).unwrap_or_default();
    Identity {
        cmdline: exec.map_or_else(from_proc, |a| a.cmdline(from_proc)),
        memcg: memcg.map(|m| m.rel.clone()),
        ..bare_identity(pid, start, st)
    }
}

/// Identity without anything that needs another read.
pub fn bare_identity(pid: u32, start: u64, st: &ProcStatus) -> Identity {
    Identity {
        pid,
        start,
        ppid: st.ppid,
        comm: st.name.clone(),
        cmdline: Vec::new(),
        memcg: None,
        limit: None,
        age: age_secs(start),
    }
}

/// Seconds since a process started (`start`: clock ticks after boot, /proc/PID/stat field 22).
fn age_secs(start: u64) -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let now = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    Some((now - start as f64 / hz as f64).max(0.0))
}

/// CPU time a process has used, all its threads, ms (`/proc/PID/stat` utime + stime: the
/// thread group's; `/proc/PID/schedstat` would be the main thread's alone).
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let st = read_stat(pid).ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| (st.utime_ticks + st.stime_ticks) * 1000 / hz as u64)
}

pub fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The host's swap-out + lazy-free page count (see `sys::host::parse_vmstat_reclaim`).
pub fn reclaim_counter() -> Option<u64> {
    crate::sys::host::read_vmstat_reclaim()
}

/// Host memory now.
pub fn host() -> Option<HostObs> {
    MemInfo::read().ok().map(|m| HostObs {
        avail: m.mem_available,
        swap_free: m.swap_free,
    })
}
