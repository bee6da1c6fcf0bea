//! OOM-killer messages from the kernel log (`/dev/kmsg`), for `leaktrace oom` and for filling the
//! fields an older `oom:mark_victim` tracepoint does not carry (`events::enrich`).
//!
//! A `/dev/kmsg` record is `prio,seq,ts_usec,flags[,…];text`, then optional ` KEY=value`
//! continuation lines (skipped). On the kernels leaktrace supports (≥ 5.8) an OOM kill logs two
//! lines, which [`OomKillCollector`] merges into one [`KernelOomKill`]:
//!
//! * `oom-kill:constraint=…,nodemask=…,cpuset=…,mems_allowed=…[,global_oom][,oom_memcg=…],task_memcg=…,task=…,pid=…,uid=…`
//! * `Memory cgroup out of memory: Killed process N (comm) total-vm:…kB, anon-rss:…kB,
//!   file-rss:…kB, shmem-rss:…kB, UID:… pgtables:…kB oom_score_adj:…`, or the host-wide
//!   `Out of memory[ (oom_kill_allocating_task)]: Killed process …`.

use std::io;

use serde::Serialize;

use super::ParseError;

const KMSG: &str = "/dev/kmsg record";
const OOM: &str = "kernel OOM line";

/// One kernel log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsgRecord {
    /// `/dev/kmsg` sequence number.
    pub seq: u64,
    /// Microseconds since boot (CLOCK_MONOTONIC).
    pub ts_usec: u64,
    /// Message text with the kernel's `\xNN` escapes decoded.
    pub text: String,
}

/// Parse one `/dev/kmsg` record (as returned by a single `read(2)`).
/// Continuation lines (` KEY=value`) after the first line are ignored.
pub fn parse_record(raw: &str) -> Result<KmsgRecord, ParseError> {
    let first = raw.split('\n').next().unwrap_or("");
    let Some((header, text)) = first.split_once(';') else {
        return Err(ParseError::malformed(KMSG, first));
    };
    let mut fields = header.split(',');
    let mut num = |name: &'static str| -> Result<u64, ParseError> {
        let tok = fields.next().ok_or(ParseError::missing(KMSG, name))?;
        tok.parse::<u64>().map_err(|_| ParseError::invalid(KMSG, name, tok))
    };
    let _prio = num("priority")?;
    let seq = num("seq")?;
    let ts_usec = num("timestamp")?;
    if fields.next().is_none() {
        return Err(ParseError::missing(KMSG, "flags"));
    }
    Ok(KmsgRecord {
        seq,
        ts_usec,
        text: unescape_kmsg(text),
    })
}

/// Decode the `\xNN` escapes /dev/kmsg uses for non-printable bytes and `\`.
fn unescape_kmsg(s: &str) -> String {
    if !s.contains("\\x") {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let (Some(h), Some(l)) = (
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 3).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether an OOM was confined to a memory cgroup or system wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OomScope {
    /// `Memory cgroup out of memory`, `CONSTRAINT_MEMCG`.
    Memcg,
    /// `Out of memory` (global, cpuset or mempolicy constrained).
    Global,
}

/// What leaktrace keeps of the `oom-kill:` one-line summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomSummary {
    /// e.g. `CONSTRAINT_MEMCG`, `CONSTRAINT_NONE`, `CONSTRAINT_CPUSET`.
    pub constraint: Option<String>,
    /// The cgroup whose limit was hit (memcg OOMs only).
    pub oom_memcg: Option<String>,
    pub task_memcg: Option<String>,
    /// `task=` (the victim's comm).
    pub comm: String,
    pub pid: u32,
    pub uid: Option<u32>,
}

/// A `Killed process N (comm) total-vm:…` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKilled {
    pub scope: OomScope,
    pub pid: u32,
    pub comm: String,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub uid: Option<u32>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

/// A recognised OOM-killer line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OomLine {
    Summary(OomSummary),
    Killed(OomKilled),
}

/// Recognise an OOM line anywhere in `text` (a syslog/journal prefix is tolerated). `Ok(None)`:
/// not an OOM line; `Err`: it looked like one but could not be parsed.
pub fn parse_oom_line(text: &str) -> Result<Option<OomLine>, ParseError> {
    if let Some(pos) = text.find("oom-kill:") {
        return parse_summary(&text[pos + "oom-kill:".len()..]).map(|s| Some(OomLine::Summary(s)));
    }
    if let Some(pos) = text.find("Killed process ") {
        let prefix = &text[..pos];
        let scope = if prefix.contains("Memory cgroup out of memory") {
            OomScope::Memcg
        } else if prefix.contains("Out of memory") {
            OomScope::Global
        } else {
            return Ok(None);
        };
        return parse_killed(scope, &text[pos + "Killed process ".len()..]).map(|k| Some(OomLine::Killed(k)));
    }
    Ok(None)
}

/// Body after `oom-kill:`. task/pid/uid are taken from the end so that commas inside bitmap lists
/// (`mems_allowed=0-1,4`) and cgroup paths are tolerated.
fn parse_summary(body: &str) -> Result<OomSummary, ParseError> {
    let body = body.trim_end();
    let (body, uid) = match body.rfind(",uid=") {
        Some(p) => {
            let v = &body[p + 5..];
            let uid = v.parse::<u32>().map_err(|_| ParseError::invalid(OOM, "uid", v))?;
            (&body[..p], Some(uid))
        }
        None => (body, None),
    };
    let p = body.rfind(",pid=").ok_or(ParseError::missing(OOM, "pid"))?;
    let v = &body[p + 5..];
    let pid = v.parse::<u32>().map_err(|_| ParseError::invalid(OOM, "pid", v))?;
    let body = &body[..p];
    let (body, comm) = match body.rfind(",task=") {
        Some(p) => (&body[..p], body[p + 6..].to_string()),
        None => match body.strip_prefix("task=") {
            Some(c) => ("", c.to_string()),
            None => return Err(ParseError::missing(OOM, "task")),
        },
    };
    const KEYS: [&str; 3] = ["constraint", "oom_memcg", "task_memcg"];
    let mut vals: [Option<String>; 3] = Default::default();
    // The key the previous token set, so a value's own commas continue it.
    let mut last: Option<usize> = None;
    for tok in body.split(',') {
        match tok.split_once('=') {
            Some((k, v)) => {
                last = KEYS.iter().position(|key| *key == k);
                if let Some(i) = last {
                    vals[i] = Some(v.to_string());
                }
            }
            None if tok == "global_oom" => last = None,
            None => {
                if let Some(prev) = last.and_then(|i| vals[i].as_mut()) {
                    prev.push(',');
                    prev.push_str(tok);
                }
            }
        }
    }
    let [constraint, oom_memcg, task_memcg] = vals;
    Ok(OomSummary {
        constraint,
        oom_memcg,
        task_memcg,
        comm,
        pid,
        uid,
    })
}

/// After `Killed process `: `N (comm) total-vm:…`. The comm ends at the last `) total-vm:`.
fn parse_killed(scope: OomScope, s: &str) -> Result<OomKilled, ParseError> {
    let (pid_s, rest) = s.split_once(' ').ok_or(ParseError::malformed(OOM, s))?;
    let pid = pid_s
        .parse::<u32>()
        .map_err(|_| ParseError::invalid(OOM, "pid", pid_s))?;
    let inner = rest.strip_prefix('(').ok_or(ParseError::malformed(OOM, s))?;
    let close = inner
        .rfind(") total-vm:")
        .or_else(|| inner.rfind(')'))
        .ok_or(ParseError::malformed(OOM, s))?;
    let mut k = OomKilled {
        scope,
        pid,
        comm: inner[..close].to_string(),
        total_vm_kb: None,
        anon_rss_kb: None,
        file_rss_kb: None,
        shmem_rss_kb: None,
        uid: None,
        pgtables_kb: None,
        oom_score_adj: None,
    };
    for tok in inner[close + 1..].split([' ', ',']).filter(|t| !t.is_empty()) {
        let Some((key, val)) = tok.split_once(':') else {
            continue;
        };
        let bad = || ParseError::invalid(OOM, key, val);
        let kb = || {
            val.strip_suffix("kB")
                .unwrap_or(val)
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad())
        };
        match key {
            "total-vm" => k.total_vm_kb = kb()?,
            "anon-rss" => k.anon_rss_kb = kb()?,
            "file-rss" => k.file_rss_kb = kb()?,
            "shmem-rss" => k.shmem_rss_kb = kb()?,
            "pgtables" => k.pgtables_kb = kb()?,
            "UID" => k.uid = Some(val.parse().map_err(|_| bad())?),
            "oom_score_adj" => k.oom_score_adj = Some(val.parse().map_err(|_| bad())?),
            _ => {}
        }
    }
    Ok(k)
}

/// One OOM kill, merged from the summary and the `Killed process` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelOomKill {
    /// seq of the `Killed process` record.
    pub seq: u64,
    /// Timestamp (µs since boot) of the `Killed process` record.
    pub ts_usec: u64,
    pub scope: OomScope,
    pub pid: u32,
    pub comm: String,
    pub constraint: Option<String>,
    pub oom_memcg: Option<String>,
    pub task_memcg: Option<String>,
    pub uid: Option<u32>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

/// The kernel's `oom-kill:` summary for a kill: the last one naming `pid`, else (the other
/// victims of a `memory.oom.group` kill get no summary of their own) the last one logged within
/// `window_usec` of `near_usec` (the kill's monotonic time, µs).
pub fn oom_summary_for(records: &[KmsgRecord], pid: u32, near_usec: u64, window_usec: u64) -> Option<OomSummary> {
    let summaries = || {
        records
            .iter()
            .rev()
            .filter_map(|r| match parse_oom_line(&r.text).ok()?? {
                OomLine::Summary(s) => Some((r.ts_usec, s)),
                _ => None,
            })
    };
    summaries()
        .find(|(_, s)| s.pid == pid)
        .or_else(|| summaries().find(|(ts, _)| ts.abs_diff(near_usec) <= window_usec))
        .map(|(_, s)| s)
}

/// Streaming merger: feed records in order, get a kill for each `Killed process` line. The
/// `oom-kill:` summary before it is applied when its pid matches; a summary never followed by a
/// `Killed process` line yields nothing.
#[derive(Debug, Default, Clone)]
pub struct OomKillCollector {
    summary: Option<OomSummary>,
}

impl OomKillCollector {
    pub fn push(&mut self, rec: &KmsgRecord) -> Option<KernelOomKill> {
        match parse_oom_line(&rec.text).ok().flatten()? {
            OomLine::Summary(s) => {
                self.summary = Some(s);
                None
            }
            OomLine::Killed(k) => {
                let s = self.summary.take().filter(|s| s.pid == k.pid);
                let (constraint, oom_memcg, task_memcg, summary_uid) = s.map_or((None, None, None, None), |s| {
                    (s.constraint, s.oom_memcg, s.task_memcg, s.uid)
                });
                Some(KernelOomKill {
                    seq: rec.seq,
                    ts_usec: rec.ts_usec,
                    scope: k.scope,
                    pid: k.pid,
                    comm: k.comm,
                    constraint,
                    oom_memcg,
                    task_memcg,
                    uid: k.uid.or(summary_uid),
                    total_vm_kb: k.total_vm_kb,
                    anon_rss_kb: k.anon_rss_kb,
                    file_rss_kb: k.file_rss_kb,
                    shmem_rss_kb: k.shmem_rss_kb,
                    pgtables_kb: k.pgtables_kb,
                    oom_score_adj: k.oom_score_adj,
                })
            }
        }
    }
}

/// Merge a batch of records into kills (see [`OomKillCollector`]).
pub fn collect_kills(records: &[KmsgRecord]) -> Vec<KernelOomKill> {
    let mut c = OomKillCollector::default();
    records.iter().filter_map(|r| c.push(r)).collect()
}

/// Read every record currently in the kernel ring buffer from `/dev/kmsg` without blocking (needs
/// CAP_SYSLOG when `dmesg_restrict=1`). Records overwritten while reading (`EPIPE`) are skipped.
pub fn read_kmsg_snapshot() -> io::Result<Vec<KmsgRecord>> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")?;
    // One record per read(2); the kernel formats each into at most 8 KiB (CONSOLE_EXT_LOG_MAX).
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Ok(r) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                    out.push(r);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A complete memcg OOM report as /dev/kmsg records on a 6.x kernel
    // (dictionary continuation lines included).
    const KMSG_MEMCG_6X: &str = "\
4,2104,1748300000000,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
 SUBSYSTEM=memory
6,2105,1748300000010,-;CPU: 1 UID: 0 PID: 12345 Comm: python3 Not tainted 6.18.44-fc-v595 #1 PREEMPT(voluntary)
6,2106,1748300000020,c;Call Trace:
6,2120,1748300000100,-;memory: usage 102400kB, limit 102400kB, failcnt 1234
6,2121,1748300000101,-;swap: usage 0kB, limit 9007199254740988kB, failcnt 0
6,2122,1748300000102,-;Memory cgroup stats for /leak-test:
6,2130,1748300000110,-;Tasks state (memory values in pages):
6,2131,1748300000111,-;[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
6,2132,1748300000112,-;[  12345]     0 12345    30864    25734    25600      134         0   262144        0             0 python3
6,2133,1748300000120,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/leak-test,task_memcg=/leak-test,task=python3,pid=12345,uid=0
3,2134,1748300000130,-;Memory cgroup out of memory: Killed process 12345 (python3) total-vm:123456kB, anon-rss:102400kB, file-rss:536kB, shmem-rss:0kB, UID:0 pgtables:256kB oom_score_adj:0
6,2135,1748300000200,-;oom_reaper: reaped process 12345 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB
";

    // A global OOM (5.x), mems_allowed with commas.
    const KMSG_GLOBAL_5X: &str = "\
4,880,5123456789,-;stress invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0
6,881,5123470001,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/user.slice/user-1000.slice/session-2.scope,task=stress,pid=4242,uid=1000
3,882,5123470012,-;Out of memory: Killed process 4242 (stress) total-vm:8400396kB, anon-rss:7999872kB, file-rss:4kB, shmem-rss:0kB, UID:1000 pgtables:15700kB oom_score_adj:0
";

    // Captured from /dev/kmsg on this machine (Linux 6.18, cgroup v1 memcg OOM),
    // abridged: the call trace, registers and memcg stats are mostly cut.
    const KMSG_THIS_MACHINE: &str = "\
4,337,1041487279,-;lt-workload invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
4,338,1041487308,-;CPU: 1 UID: 0 PID: 13157 Comm: lt-workload Not tainted 6.18.44-fc-v595 #1 PREEMPT(none) 
4,339,1041487320,-;Call Trace:
4,340,1041489437,-; <TASK>
4,343,1041490354,-; oom_kill_process.cold+0x8/0x8a
4,345,1041493122,-; mem_cgroup_out_of_memory+0xc0/0x110
4,364,1041496435,-; </TASK>
6,365,1041496476,-;memory: usage 65536kB, limit 65536kB, failcnt 0
6,366,1041496489,-;memory+swap: usage 65536kB, limit 65536kB, failcnt 0
6,367,1041496491,-;kmem: usage 128kB, limit 9007199254740988kB, failcnt 0
6,368,1041496493,-;Memory cgroup stats for /leaktrace-test-spine-oom:
6,369,1041500041,-;cache 0
6,370,1041500046,-;rss 66977792
6,411,1041500098,-;Tasks state (memory values in pages):
6,412,1041500100,-;[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
6,413,1041500103,-;[  13157]     0 13157    17153    16795    16352      443         0   176128        0             0 lt-workload
6,414,1041500107,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/leaktrace-test-spine-oom,task_memcg=/leaktrace-test-spine-oom,task=lt-workload,pid=13157,uid=0
3,415,1041500215,-;Memory cgroup out of memory: Killed process 13157 (lt-workload) total-vm:68612kB, anon-rss:65408kB, file-rss:1772kB, shmem-rss:0kB, UID:0 pgtables:172kB oom_score_adj:0
4,416,1118884395,-;lt-workload invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
6,493,1118885016,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/leaktrace-test-spine-oom,task_memcg=/leaktrace-test-spine-oom,task=lt-workload,pid=17652,uid=0
3,494,1118885070,-;Memory cgroup out of memory: Killed process 17652 (lt-workload) total-vm:68612kB, anon-rss:65408kB, file-rss:1652kB, shmem-rss:0kB, UID:0 pgtables:168kB oom_score_adj:0
";

    /// Split a dump like successive read(2)s: a record plus its continuation lines.
    fn kmsg_records(text: &str) -> Vec<KmsgRecord> {
        let mut recs: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with(' ') {
                if let Some(last) = recs.last_mut() {
                    last.push('\n');
                    last.push_str(line);
                }
            } else {
                recs.push(line.to_string());
            }
        }
        recs.iter().map(|r| parse_record(&format!("{r}\n")).unwrap()).collect()
    }

    fn oom_line(text: &str) -> Option<OomLine> {
        parse_oom_line(text).unwrap()
    }

    #[test]
    fn collect_this_machine_kmsg() {
        let recs = kmsg_records(KMSG_THIS_MACHINE);
        assert_eq!(recs.len(), 21);
        assert_eq!(recs[3].text, " <TASK>");
        let kills = collect_kills(&recs);
        assert_eq!(kills.len(), 2);
        let expected = KernelOomKill {
            seq: 415,
            ts_usec: 1041500215,
            scope: OomScope::Memcg,
            pid: 13157,
            comm: "lt-workload".into(),
            constraint: Some("CONSTRAINT_MEMCG".into()),
            oom_memcg: Some("/leaktrace-test-spine-oom".into()),
            task_memcg: Some("/leaktrace-test-spine-oom".into()),
            uid: Some(0),
            total_vm_kb: Some(68612),
            anon_rss_kb: Some(65408),
            file_rss_kb: Some(1772),
            shmem_rss_kb: Some(0),
            pgtables_kb: Some(172),
            oom_score_adj: Some(0),
        };
        assert_eq!(kills[0], expected);
        assert_eq!(
            (kills[1].seq, kills[1].pid, kills[1].pgtables_kb, kills[1].ts_usec),
            (494, 17652, Some(168), 1118885070)
        );
    }

    #[test]
    fn record_basic_and_continuation() {
        let r = parse_record("6,1234,5678901234,-;hello world\n SUBSYSTEM=memory\n DEVICE=+x\n").unwrap();
        assert_eq!(
            r,
            KmsgRecord {
                seq: 1234,
                ts_usec: 5678901234,
                text: "hello world".into(),
            }
        );
        // extra header fields (caller=) and escapes
        let r = parse_record("12,7,0,c,caller=T1;a\\x5cb\\x0ac \\xe2\\x9c\\x93\n").unwrap();
        assert_eq!(r.text, "a\\b\nc ✓");
        assert_eq!(r.seq, 7);
    }

    #[test]
    fn record_errors() {
        assert!(parse_record("hello").unwrap_err().to_string().contains("malformed"));
        assert!(parse_record("6,x,0,-;t").unwrap_err().to_string().contains("seq"));
        assert!(parse_record("6,1,0;t").unwrap_err().to_string().contains("flags"));
        assert!(parse_record("6,1;t").unwrap_err().to_string().contains("timestamp"));
    }

    #[test]
    fn this_machine_first_record() {
        // Captured from /dev/kmsg on this machine.
        let r = parse_record("5,0,0,-;Linux version 6.18.44-fc-v595 (builder@sandboxing) (gcc (GCC) 15.3.0, GNU ld (GNU Binutils) 2.46) #1 SMP PREEMPT_DYNAMIC @0\n").unwrap();
        assert_eq!(r.seq, 0);
        assert!(r.text.starts_with("Linux version 6.18"));
        assert_eq!(oom_line(&r.text), None);
    }

    #[test]
    fn summary_line_6x() {
        let l = oom_line("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/leak-test,task_memcg=/leak-test,task=python3,pid=12345,uid=0").unwrap();
        assert_eq!(
            l,
            OomLine::Summary(OomSummary {
                constraint: Some("CONSTRAINT_MEMCG".into()),
                oom_memcg: Some("/leak-test".into()),
                task_memcg: Some("/leak-test".into()),
                comm: "python3".into(),
                pid: 12345,
                uid: Some(0),
            })
        );
    }

    #[test]
    fn summary_line_global_with_comma_lists() {
        let l = oom_line("oom-kill:constraint=CONSTRAINT_NONE,nodemask=0-1,3,cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/system.slice/a,b.service,task=my,task,pid=7,uid=1000").unwrap();
        let OomLine::Summary(s) = l else { panic!() };
        assert_eq!(s.constraint.as_deref(), Some("CONSTRAINT_NONE"));
        assert_eq!(s.oom_memcg, None);
        assert_eq!(s.task_memcg.as_deref(), Some("/system.slice/a,b.service"));
        assert_eq!(s.comm, "my,task");
        assert_eq!(s.pid, 7);
        assert_eq!(s.uid, Some(1000));
    }

    #[test]
    fn summary_for_a_victim_or_a_group_member() {
        let rec = |seq: u64, ts: u64, text: &str| KmsgRecord {
            seq,
            ts_usec: ts,
            text: text.into(),
        };
        let records = [
            rec(
                1,
                1_000_000,
                "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/old,task_memcg=/old,task=a,pid=5,uid=0",
            ),
            rec(
                2,
                9_000_000,
                "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/p,task_memcg=/p/c,task=w,pid=42,uid=0",
            ),
            rec(
                3,
                9_000_100,
                "Memory cgroup out of memory: Killed process 42 (w) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
            ),
            rec(
                4,
                9_000_200,
                "Memory cgroup out of memory: Killed process 43 (w) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
            ),
        ];
        let s = oom_summary_for(&records, 42, 0, 0).unwrap();
        assert_eq!(
            (s.oom_memcg.as_deref(), s.task_memcg.as_deref()),
            (Some("/p"), Some("/p/c"))
        );
        // pid 43 (killed with the group) has no summary of its own: the one near its kill.
        let s = oom_summary_for(&records, 43, 9_000_300, 2_000_000).unwrap();
        assert_eq!(s.oom_memcg.as_deref(), Some("/p"));
        assert_eq!(oom_summary_for(&records, 43, 50_000_000, 2_000_000), None);
        assert_eq!(
            oom_summary_for(&records, 5, 0, 0).unwrap().oom_memcg.as_deref(),
            Some("/old")
        );
    }

    #[test]
    fn summary_errors() {
        let e = parse_oom_line("oom-kill:constraint=X,task=a").unwrap_err();
        assert!(e.to_string().contains("pid"), "{e}");
        assert!(parse_oom_line("oom-kill:constraint=X,task=a,pid=1,uid=x").is_err());
        let e = parse_oom_line("oom-kill:constraint=X,pid=1").unwrap_err();
        assert!(e.to_string().contains("task"), "{e}");
    }

    #[test]
    fn killed_line_6x_memcg() {
        let l = oom_line("Memory cgroup out of memory: Killed process 12345 (python3) total-vm:123456kB, anon-rss:65432kB, file-rss:1234kB, shmem-rss:0kB, UID:0 pgtables:256kB oom_score_adj:0").unwrap();
        assert_eq!(
            l,
            OomLine::Killed(OomKilled {
                scope: OomScope::Memcg,
                pid: 12345,
                comm: "python3".into(),
                total_vm_kb: Some(123456),
                anon_rss_kb: Some(65432),
                file_rss_kb: Some(1234),
                shmem_rss_kb: Some(0),
                uid: Some(0),
                pgtables_kb: Some(256),
                oom_score_adj: Some(0),
            })
        );
    }

    #[test]
    fn killed_line_host_and_odd_comm() {
        let l = oom_line("Out of memory: Killed process 99 (my prog) (x)) total-vm:10kB, anon-rss:5kB, file-rss:1kB, shmem-rss:2kB, UID:1000 pgtables:4kB oom_score_adj:-1000").unwrap();
        let OomLine::Killed(k) = l else { panic!() };
        assert_eq!(k.scope, OomScope::Global);
        assert_eq!(k.comm, "my prog) (x)");
        assert_eq!(k.oom_score_adj, Some(-1000));
        assert_eq!(k.shmem_rss_kb, Some(2));
        let l = oom_line("Out of memory (oom_kill_allocating_task): Killed process 5 (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0").unwrap();
        let OomLine::Killed(k) = l else { panic!() };
        assert_eq!((k.scope, k.pid, k.uid), (OomScope::Global, 5, Some(0)));
    }

    #[test]
    fn other_lines_are_not_kills() {
        for line in [
            "oom_reaper: reaped process 12345 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
            "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL)",
            // Not printed by the OOM killer on the supported kernels (no `…out of memory:` prefix).
            "Killed process 1234 (foo) total-vm:1000kB, anon-rss:500kB, file-rss:0kB, shmem-rss:0kB",
        ] {
            assert_eq!(oom_line(line), None, "{line}");
        }
        assert!(parse_oom_line("Out of memory: Killed process x (a) total-vm:1kB").is_err());
        assert!(parse_oom_line("Out of memory: Killed process 1 (a) total-vm:lotskB").is_err());
        assert!(parse_oom_line("Out of memory: Killed process 1 a").is_err());
    }

    #[test]
    fn collect_kmsg_memcg_6x() {
        let recs = kmsg_records(KMSG_MEMCG_6X);
        assert_eq!(recs.len(), 12);
        let kills = collect_kills(&recs);
        assert_eq!(
            kills,
            vec![KernelOomKill {
                seq: 2134,
                ts_usec: 1748300000130,
                scope: OomScope::Memcg,
                pid: 12345,
                comm: "python3".into(),
                constraint: Some("CONSTRAINT_MEMCG".into()),
                oom_memcg: Some("/leak-test".into()),
                task_memcg: Some("/leak-test".into()),
                uid: Some(0),
                total_vm_kb: Some(123456),
                anon_rss_kb: Some(102400),
                file_rss_kb: Some(536),
                shmem_rss_kb: Some(0),
                pgtables_kb: Some(256),
                oom_score_adj: Some(0),
            }]
        );
        let json = serde_json::to_value(&kills[0]).unwrap();
        assert_eq!(json["scope"], "memcg");
        assert_eq!(json["anon_rss_kb"], 102400);
    }

    #[test]
    fn collect_global_5x() {
        let kills = collect_kills(&kmsg_records(KMSG_GLOBAL_5X));
        assert_eq!(kills.len(), 1);
        let k = &kills[0];
        assert_eq!((k.seq, k.ts_usec), (882, 5123470012));
        assert_eq!(k.scope, OomScope::Global);
        assert_eq!(k.pid, 4242);
        assert_eq!(k.constraint.as_deref(), Some("CONSTRAINT_NONE"));
        assert_eq!(k.oom_memcg, None);
        assert_eq!(
            k.task_memcg.as_deref(),
            Some("/user.slice/user-1000.slice/session-2.scope")
        );
        assert_eq!(k.uid, Some(1000));
        assert_eq!(k.anon_rss_kb, Some(7999872));
    }

    #[test]
    fn summary_only_applies_to_matching_pid() {
        let log = "\
6,1,1000000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=x,pid=1,uid=0
3,2,2000000,-;Out of memory: Killed process 2 (y) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0
6,3,3000000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/b,task_memcg=/b/c,task=z,pid=3,uid=5
6,4,3500000,-;some unrelated line
3,5,4000000,-;Memory cgroup out of memory: Killed process 3 (z) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:5 pgtables:4kB oom_score_adj:0
6,6,5000000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/d,task_memcg=/d,task=w,pid=9,uid=0
";
        let recs = kmsg_records(log);
        let kills = collect_kills(&recs);
        assert_eq!(kills.len(), 2);
        assert_eq!(
            (kills[0].pid, kills[0].task_memcg.as_deref(), kills[0].scope),
            (2, None, OomScope::Global)
        );
        assert_eq!(kills[1].pid, 3);
        assert_eq!(kills[1].oom_memcg.as_deref(), Some("/b"));
        assert_eq!(kills[1].task_memcg.as_deref(), Some("/b/c"));

        // streaming: the summary carries over between pushes
        let mut c = OomKillCollector::default();
        let mut out = Vec::new();
        for r in &recs {
            out.extend(c.push(r));
        }
        assert_eq!(out, kills);
    }

    #[test]
    fn journal_prefixes_tolerated() {
        let line = "Jun 01 12:00:00 host kernel: Memory cgroup out of memory: Killed process 12345 (python3) total-vm:123456kB, anon-rss:65432kB, file-rss:1234kB, shmem-rss:0kB, UID:0 pgtables:256kB oom_score_adj:0";
        let Some(OomLine::Killed(k)) = oom_line(line) else {
            panic!()
        };
        assert_eq!((k.scope, k.pid), (OomScope::Memcg, 12345));
    }

    #[test]
    fn never_panics() {
        let run = |s: &str| {
            let _ = parse_record(s);
            let _ = parse_oom_line(s);
            if let Ok(r) = parse_record(s) {
                let _ = collect_kills(&[r]);
            }
        };
        for s in [KMSG_MEMCG_6X, KMSG_GLOBAL_5X, KMSG_THIS_MACHINE] {
            for (i, _) in s.char_indices() {
                run(&s[..i]);
            }
            for line in s.lines() {
                for (i, _) in line.char_indices() {
                    run(&line[..i]);
                    run(&line[i..]);
                }
            }
        }
        for g in [
            "",
            ";",
            ",,,;",
            "\\x",
            "\\xZ",
            "\\x4",
            "oom-kill:",
            "oom-kill:,pid=,uid=",
            "oom-kill:pid=1",
            "Out of memory: Killed process ",
            "Out of memory: Killed process 1 (",
            "Out of memory: Killed process 1 ()",
            "6,1,2,-;\\xff\\xfe",
        ] {
            run(g);
        }
        let bytes: Vec<u8> = (0u8..=255).cycle().take(2048).collect();
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn live_kmsg_snapshot() {
        // Root on the test machine; tolerate permission errors elsewhere.
        match read_kmsg_snapshot() {
            Ok(recs) => {
                assert!(!recs.is_empty());
                assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq));
                let _ = collect_kills(&recs);
            }
            Err(e) => assert!(
                matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound),
                "{e}"
            ),
        }
    }
}
