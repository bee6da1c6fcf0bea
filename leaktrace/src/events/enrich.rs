//! Filling what an older kernel's tracepoints do not carry, from /proc and the kernel log.
use std::{path::Path, thread, time::Duration};

use super::OomKill;
use crate::sys::{kmsg, proc::read_status};

/// True when any victim field is missing (oom:mark_victim before ~6.9 carries only the pid).
pub fn oom_incomplete(k: &OomKill) -> bool {
    k.victim_comm.is_none()
        || k.anon_rss_kb.is_none()
        || k.file_rss_kb.is_none()
        || k.shmem_rss_kb.is_none()
        || k.total_vm_kb.is_none()
        || k.uid.is_none()
        || k.pgtables_kb.is_none()
        || k.oom_score_adj.is_none()
}

/// Fill missing victim fields: first from the kernel's own `Killed process` log line (the values
/// at the kill), then from /proc while the victim still exists. Waits at most ~300 ms for the
/// log line, which the kernel prints just after choosing the victim.
pub fn fill_oom(k: &mut OomKill) {
    if !oom_incomplete(k) {
        return;
    }
    let pid = k.victim_pid;
    // /proc first, at once: the victim is being torn down.
    if let Ok(st) = read_status(pid)
        && st.vm_size > 0
    {
        k.filled_from.push("/proc");
        k.victim_comm.get_or_insert(st.name.clone());
        k.uid.get_or_insert(st.uid);
        k.total_vm_kb.get_or_insert(st.vm_size / 1024);
        k.anon_rss_kb.get_or_insert(st.rss_anon / 1024);
        k.file_rss_kb.get_or_insert(st.rss_file / 1024);
        k.shmem_rss_kb.get_or_insert(st.rss_shmem / 1024);
    }
    if k.oom_score_adj.is_none()
        && let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
    {
        k.oom_score_adj = s.trim().parse().ok();
    }
    if !Path::new("/dev/kmsg").exists() {
        return;
    }
    for attempt in 0..4 {
        if attempt > 0 {
            thread::sleep(Duration::from_millis(100));
        }
        let Ok(records) = kmsg::read_kmsg_snapshot() else {
            return;
        };
        if let Some(kk) = kmsg::collect_kills(&records).into_iter().rev().find(|x| x.pid == pid) {
            // The kernel's values at the kill win over /proc's, which may already be shrinking.
            k.filled_from.push("kernel log");
            if !kk.comm.is_empty() {
                k.victim_comm = Some(kk.comm);
            }
            k.uid = kk.uid.or(k.uid);
            k.total_vm_kb = kk.total_vm_kb.or(k.total_vm_kb);
            k.anon_rss_kb = kk.anon_rss_kb.or(k.anon_rss_kb);
            k.file_rss_kb = kk.file_rss_kb.or(k.file_rss_kb);
            k.shmem_rss_kb = kk.shmem_rss_kb.or(k.shmem_rss_kb);
            k.pgtables_kb = kk.pgtables_kb.or(k.pgtables_kb);
            k.oom_score_adj = kk.oom_score_adj.or(k.oom_score_adj);
            return;
        }
    }
}

/// Without `task:task_newtask`, a fork event may be a new thread: tell by the child's Tgid.
pub fn is_thread(child: u32) -> bool {
    read_status(child).is_ok_and(|st| st.tgid != 0 && st.tgid != child)
}
