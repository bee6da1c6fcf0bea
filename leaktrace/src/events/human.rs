//! One readable line per event.
use super::{Event, Payload, is_err_ret};
use crate::util::bytes as b;

fn ret_str(ret: i64) -> String {
    if is_err_ret(ret) {
        format!("error {}", std::io::Error::from_raw_os_error(-ret as i32))
    } else {
        format!("{ret:#x}")
    }
}

pub fn event(e: &Event) -> String {
    let h = &e.hdr;
    let who = format!("{:>7} {:<16}", h.pid, h.comm);
    let what = match &e.payload {
        Payload::Mmap {
            len,
            prot,
            flags,
            fd,
            ret,
            ..
        } => {
            format!(
                "mmap    {:>10} prot={prot:#x} flags={flags:#x} fd={} -> {}",
                b(*len),
                *fd as i32,
                ret_str(*ret)
            )
        }
        Payload::Munmap { addr, len, ret } => format!("munmap  {:>10} at {addr:#x} -> {}", b(*len), ret_str(*ret)),
        Payload::Brk { old_brk, new_brk, .. } => match old_brk {
            Some(o) => {
                let d = *new_brk as i128 - *o as i128;
                format!(
                    "brk     {:>10} {o:#x} -> {new_brk:#x}",
                    if d >= 0 {
                        format!("+{}", b(d as u64))
                    } else {
                        format!("-{}", b((-d) as u64))
                    }
                )
            }
            None => format!("brk     {:>10} -> {new_brk:#x}", "?"),
        },
        Payload::Mremap {
            old_len, new_len, ret, ..
        } => {
            format!("mremap  {:>10} -> {} -> {}", b(*old_len), b(*new_len), ret_str(*ret))
        }
        Payload::Fork { child_pid } => format!("fork    child {child_pid}"),
        Payload::Exec { filename, .. } => format!("exec    {filename}"),
        Payload::Exit { exit_code } => match exit_code {
            Some(c) => format!("exit    code {c}"),
            None => "exit    code unknown (killed by a signal?)".to_string(),
        },
        Payload::OomKill(k) => {
            return format!(
                "{:>7} {:<16} OOM-KILLED anon-rss={} file-rss={} shmem-rss={} total-vm={} oom_score_adj={} (OOM killer ran in pid {} {})",
                k.victim_pid,
                e.subject_comm(),
                k.anon_rss_kb.map_or("?".into(), |v| b(v * 1024)),
                k.file_rss_kb.map_or("?".into(), |v| b(v * 1024)),
                k.shmem_rss_kb.map_or("?".into(), |v| b(v * 1024)),
                k.total_vm_kb.map_or("?".into(), |v| b(v * 1024)),
                k.oom_score_adj.map_or("?".into(), |v| v.to_string()),
                h.pid,
                h.comm
            );
        }
    };
    format!("{who} {what}")
}
