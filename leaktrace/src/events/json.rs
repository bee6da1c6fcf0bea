//! The JSON lines contract (README.md, "JSON lines"). Sizes are bytes; the kernel's kB are converted.
use serde_json::{Map, Value, json};

use super::{Event, OomKill, Payload, is_err_ret};

fn base(event: &str, ts_ns: u64, pid: u32, tid: u32, comm: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event".into(), event.into());
    m.insert("ts_ns".into(), ts_ns.into());
    m.insert("pid".into(), pid.into());
    m.insert("tid".into(), tid.into());
    m.insert("comm".into(), comm.into());
    m
}

fn kb(v: Option<u64>) -> Value {
    v.map_or(Value::Null, |k| Value::from(k.saturating_mul(1024)))
}

fn errno(ret: i64) -> Value {
    if is_err_ret(ret) {
        Value::from(-ret)
    } else {
        Value::Null
    }
}

pub fn event(e: &Event) -> Value {
    let h = &e.hdr;
    let mut m = base(h.kind.name(), h.ts_ns, h.pid, h.tid, &h.comm);
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match &e.payload {
        Payload::Mmap {
            addr,
            len,
            prot,
            flags,
            fd,
            off,
            ret,
        } => {
            let ok = !is_err_ret(*ret);
            // addr: where it was mapped on success, else the hint that was asked for.
            put("addr", Value::from(if ok { *ret as u64 } else { *addr }));
            put("len", (*len).into());
            put("prot", (*prot).into());
            put("flags", (*flags).into());
            put("fd", (*fd as i32).into());
            put("offset", (*off).into());
            put("hint_addr", (*addr).into());
            put("ok", ok.into());
            put("errno", errno(*ret));
        }
        Payload::Munmap { addr, len, ret } => {
            put("addr", (*addr).into());
            put("len", (*len).into());
            put("ok", (!is_err_ret(*ret)).into());
            put("errno", errno(*ret));
        }
        Payload::Brk {
            requested,
            old_brk,
            new_brk,
        } => {
            put("requested", (*requested).into());
            put("old_brk", old_brk.map_or(Value::Null, Value::from));
            put("new_brk", (*new_brk).into());
            // brk() returns the unchanged break when it cannot move it.
            put("ok", (*requested == 0 || new_brk == requested).into());
        }
        Payload::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            new_addr,
            ret,
        } => {
            let ok = !is_err_ret(*ret);
            put("old_addr", (*old_addr).into());
            put("old_len", (*old_len).into());
            put("new_len", (*new_len).into());
            put("flags", (*flags).into());
            put("addr", Value::from(if ok { *ret as u64 } else { *new_addr }));
            put("ok", ok.into());
            put("errno", errno(*ret));
        }
        Payload::Fork { child_pid } => put("child_pid", (*child_pid).into()),
        Payload::Exec { old_pid, filename } => {
            put("filename", filename.as_str().into());
            put("old_pid", (*old_pid).into());
        }
        Payload::Exit { exit_code } => put("exit_code", exit_code.map_or(Value::Null, Value::from)),
        Payload::OomKill(k) => return oom_kill(e, k),
    }
    Value::Object(m)
}

/// `pid`/`tid`/`comm` are the victim's; the trigger is named separately.
fn oom_kill(e: &Event, k: &OomKill) -> Value {
    let mut m = base("oom_kill", e.hdr.ts_ns, k.victim_pid, k.victim_pid, e.subject_comm());
    let extra = json!({
        "anon_rss_bytes": kb(k.anon_rss_kb),
        "file_rss_bytes": kb(k.file_rss_kb),
        "shmem_rss_bytes": kb(k.shmem_rss_kb),
        "total_vm_bytes": kb(k.total_vm_kb),
        "pgtables_bytes": kb(k.pgtables_kb),
        "uid": k.uid,
        "oom_score_adj": k.oom_score_adj,
        "trigger_pid": e.hdr.pid,
        "trigger_tid": e.hdr.tid,
        "trigger_comm": e.hdr.comm,
    });
    if let Value::Object(x) = extra {
        m.extend(x);
    }
    Value::Object(m)
}

/// `{"event":"dropped","kind":..,"count":..}`: ring-buffer reservations that failed since the last report.
pub fn dropped(ts_ns: u64, kind: &str, count: u64) -> Value {
    let mut m = base("dropped", ts_ns, 0, 0, "");
    m.insert("kind".into(), kind.into());
    m.insert("count".into(), count.into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use leaktrace_common::EventKind;

    use super::*;
    use crate::events::Header;

    fn ev(kind: EventKind, payload: Payload) -> Event {
        Event {
            hdr: Header {
                kind,
                cpu: 0,
                ts_ns: 5,
                pid: 10,
                tid: 11,
                comm: "a".into(),
            },
            payload,
        }
    }

    #[test]
    fn contract_fields() {
        let v = event(&ev(
            EventKind::Mmap,
            Payload::Mmap {
                addr: 0,
                len: 7 << 20,
                prot: 3,
                flags: 0x22,
                fd: -1,
                off: 0,
                ret: 0x1000,
            },
        ));
        assert_eq!(v["event"], "mmap");
        assert_eq!(
            (v["pid"].as_u64(), v["tid"].as_u64(), v["ts_ns"].as_u64()),
            (Some(10), Some(11), Some(5))
        );
        assert_eq!(v["addr"], 0x1000);
        assert_eq!(v["len"], 7 << 20);
        assert_eq!(v["ok"], true);
        let v = event(&ev(
            EventKind::Mmap,
            Payload::Mmap {
                addr: 0,
                len: 1,
                prot: 3,
                flags: 0x22,
                fd: -1,
                off: 0,
                ret: -12,
            },
        ));
        assert_eq!(
            (v["ok"].clone(), v["errno"].clone()),
            (Value::Bool(false), Value::from(12))
        );
        let v = event(&ev(
            EventKind::Brk,
            Payload::Brk {
                requested: 0,
                old_brk: None,
                new_brk: 0x5000,
            },
        ));
        assert_eq!(
            (v["old_brk"].clone(), v["new_brk"].clone()),
            (Value::Null, Value::from(0x5000))
        );
        let v = event(&ev(EventKind::Exit, Payload::Exit { exit_code: Some(3) }));
        assert_eq!(v["exit_code"], 3);
        let k = OomKill {
            victim_pid: 77,
            victim_comm: Some("hog".into()),
            total_vm_kb: Some(10),
            anon_rss_kb: Some(65536),
            file_rss_kb: None,
            shmem_rss_kb: Some(0),
            uid: Some(0),
            pgtables_kb: Some(4),
            oom_score_adj: Some(0),
        };
        let v = event(&ev(EventKind::OomKill, Payload::OomKill(k)));
        assert_eq!((v["pid"].as_u64(), v["comm"].as_str()), (Some(77), Some("hog")));
        assert_eq!(v["anon_rss_bytes"], 64 << 20);
        assert_eq!(v["file_rss_bytes"], Value::Null);
        assert_eq!(v["trigger_pid"], 10);
        let v = dropped(1, "mmap", 3);
        assert_eq!(
            (v["event"].as_str(), v["kind"].as_str(), v["count"].as_u64()),
            (Some("dropped"), Some("mmap"), Some(3))
        );
    }
}
