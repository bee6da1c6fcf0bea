//! OOM-killer messages from the kernel log.
//!
//! Reads `/dev/kmsg` records (`prio,seq,ts_usec,flags[,…];text` followed by
//! optional ` KEY=value` continuation lines, which are skipped) and also plain
//! `dmesg` text (`[12345.678901] text`, `<3>[…] text`, or `dmesg -t` lines).
//!
//! Recognised OOM lines, for kernels from 2.6 to 6.x:
//!
//! * `oom-kill:constraint=…,oom_memcg=…,task_memcg=…,task=…,pid=…,uid=…` (≥ 4.19);
//! * `Memory cgroup out of memory: Killed process N (comm) total-vm:…kB, anon-rss:…kB,
//!   file-rss:…kB, shmem-rss:…kB, UID:… pgtables:…kB oom_score_adj:…` and the
//!   `Out of memory: Killed process …` host variant, plus the older forms without
//!   the trailing fields, without a prefix (4.x) or with `vsz:` (2.6);
//! * the old `[Memory cgroup ]Out of memory: Kill process N (comm) score S or
//!   sacrifice child` selection line and `Task in /a killed as a result of limit
//!   of /b` (< 4.19), used to fill in scope and memcg of the following kill.
//!
//! [`collect_kills`] / [`OomKillCollector`] merge these into one
//! [`KernelOomKill`] per killed process.

use std::io;

use serde::Serialize;

use super::ParseError;

const KMSG: &str = "/dev/kmsg record";

// ---------------------------------------------------------------------------
// records
// ---------------------------------------------------------------------------

/// One kernel log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KmsgRecord {
    /// `/dev/kmsg` sequence number; for `dmesg` text, the 0-based line index.
    pub seq: u64,
    /// Microseconds since boot (monotonic); 0 if unknown.
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

/// Parse one line of `dmesg` output: `[  123.456789] text`, `<6>[ 1.0] text`
/// (`dmesg -r`) or plain text (`dmesg -t`, ts 0). Never fails.
pub fn parse_dmesg_line(line: &str, seq: u64) -> KmsgRecord {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    if let Some(after) = rest.strip_prefix('<')
        && let Some((prio, tail)) = after.split_once('>')
        && !prio.is_empty()
        && prio.bytes().all(|b| b.is_ascii_digit())
    {
        rest = tail;
    }
    let mut ts_usec = 0;
    if let Some(after) = rest.strip_prefix('[')
        && let Some((stamp, tail)) = after.split_once(']')
        && let Some(ts) = parse_seconds_usec(stamp.trim())
    {
        ts_usec = ts;
        rest = tail.strip_prefix(' ').unwrap_or(tail);
    }
    KmsgRecord {
        seq,
        ts_usec,
        text: rest.to_string(),
    }
}

/// Split a log dump into records. Each line is taken as a `/dev/kmsg` record
/// if it parses as one, otherwise as a `dmesg` line (seq = line index). Lines
/// starting with a space (kmsg dictionary continuations) and empty lines are
/// skipped.
pub fn parse_log(text: &str) -> Vec<KmsgRecord> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with(' '))
        .map(|(i, l)| parse_record(l).unwrap_or_else(|_| parse_dmesg_line(l, i as u64)))
        .collect()
}

/// `12345.678901` → 12345678901 µs.
fn parse_seconds_usec(s: &str) -> Option<u64> {
    let (secs, frac) = s.split_once('.')?;
    if secs.is_empty()
        || frac.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut usec: u64 = 0;
    for i in 0..6 {
        usec = usec * 10 + frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
    }
    secs.checked_mul(1_000_000)?.checked_add(usec)
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

// ---------------------------------------------------------------------------
// OOM lines
// ---------------------------------------------------------------------------

/// Whether an OOM was confined to a memory cgroup or system wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OomScope {
    /// `Memory cgroup out of memory`, `CONSTRAINT_MEMCG`.
    Memcg,
    /// `Out of memory` (global, cpuset or mempolicy constrained).
    Global,
    /// Not stated on the line (old kernels print a bare `Killed process`).
    Unknown,
}

/// The `oom-kill:` one-line summary (Linux ≥ 4.19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OomSummary {
    /// e.g. `CONSTRAINT_MEMCG`, `CONSTRAINT_NONE`, `CONSTRAINT_CPUSET`.
    pub constraint: Option<String>,
    pub nodemask: Option<String>,
    pub cpuset: Option<String>,
    pub mems_allowed: Option<String>,
    /// Present for memcg OOMs.
    pub oom_memcg: Option<String>,
    pub task_memcg: Option<String>,
    /// `global_oom` marker (5.x+ for non-memcg OOMs).
    pub global_oom: bool,
    /// `task=` (the victim's comm).
    pub comm: String,
    pub pid: u32,
    pub uid: Option<u32>,
}

/// A `Killed process N (comm) total-vm:…` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OomKilled {
    pub scope: OomScope,
    pub pid: u32,
    pub comm: String,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    /// Linux ≥ 4.4
    pub shmem_rss_kb: Option<u64>,
    /// Linux ≥ 5.x
    pub uid: Option<u32>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

/// A recognised OOM-killer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OomLine {
    Summary(OomSummary),
    Killed(OomKilled),
    /// Old kernels: `…: Kill process N (comm) score S or sacrifice child`
    /// (victim selection; the actual kill follows) or `Kill process N (comm)
    /// sharing same memory` (score `None`).
    KillProcess {
        scope: OomScope,
        pid: u32,
        comm: String,
        score: Option<u64>,
    },
    /// Old kernels (< 4.19): `Task in /a killed as a result of limit of /b`.
    TaskIn {
        task_memcg: String,
        oom_memcg: String,
    },
}

const OOM: &str = "kernel OOM line";

/// Recognise an OOM line anywhere in `text` (any syslog/journal prefix is
/// tolerated). `None` if the text is not one of the supported OOM lines.
pub fn parse_oom_line(text: &str) -> Option<OomLine> {
    try_parse_oom_line(text).ok().flatten()
}

/// Like [`parse_oom_line`] but reports why a line that looked like an OOM
/// line could not be parsed. `Ok(None)` = not an OOM line at all.
pub fn try_parse_oom_line(text: &str) -> Result<Option<OomLine>, ParseError> {
    if let Some(pos) = text.find("oom-kill:") {
        return parse_summary(&text[pos + "oom-kill:".len()..]).map(|s| Some(OomLine::Summary(s)));
    }
    if let Some(pos) = text.find("Killed process ") {
        let scope = scope_of_prefix(&text[..pos]);
        return parse_killed(scope, &text[pos + "Killed process ".len()..]).map(|k| Some(OomLine::Killed(k)));
    }
    if let Some(pos) = text.find("Kill process ") {
        let scope = scope_of_prefix(&text[..pos]);
        let (pid, comm, rest) = parse_pid_comm(&text[pos + "Kill process ".len()..], &[" score ", " sharing "])?;
        let score = rest
            .strip_prefix(" score ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|s| s.parse::<u64>().ok());
        return Ok(Some(OomLine::KillProcess {
            scope,
            pid,
            comm,
            score,
        }));
    }
    if let Some(pos) = text.find("Task in ") {
        const MID: &str = " killed as a result of limit of ";
        let rest = &text[pos + "Task in ".len()..];
        let Some((task, oom)) = rest.split_once(MID) else {
            return Ok(None);
        };
        return Ok(Some(OomLine::TaskIn {
            task_memcg: task.to_string(),
            oom_memcg: oom.trim_end().to_string(),
        }));
    }
    Ok(None)
}

fn scope_of_prefix(prefix: &str) -> OomScope {
    if prefix.contains("Memory cgroup out of memory") {
        OomScope::Memcg
    } else if prefix.contains("Out of memory") {
        OomScope::Global
    } else {
        OomScope::Unknown
    }
}

/// Body after `oom-kill:`. task/pid/uid are taken from the end so that
/// commas inside bitmap lists (`mems_allowed=0-1,4`) and paths are tolerated.
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
    const KEYS: [&str; 6] = [
        "constraint",
        "nodemask",
        "cpuset",
        "mems_allowed",
        "oom_memcg",
        "task_memcg",
    ];
    let mut vals: [Option<String>; 6] = Default::default();
    let mut global_oom = false;
    let mut last: Option<usize> = None;
    for tok in body.split(',') {
        if tok == "global_oom" {
            global_oom = true;
            last = None;
            continue;
        }
        match tok.split_once('=') {
            Some((k, v)) => {
                last = KEYS.iter().position(|key| *key == k);
                if let Some(i) = last {
                    vals[i] = Some(v.to_string());
                }
            }
            // continuation of a value that contained a comma
            None => {
                if let Some(prev) = last.and_then(|i| vals[i].as_mut()) {
                    prev.push(',');
                    prev.push_str(tok);
                }
            }
        }
    }
    let [constraint, nodemask, cpuset, mems_allowed, oom_memcg, task_memcg] = vals;
    let s = OomSummary {
        constraint,
        nodemask,
        cpuset,
        mems_allowed,
        oom_memcg,
        task_memcg,
        global_oom,
        comm,
        pid,
        uid,
    };
    Ok(s)
}

/// `N (comm)<rest>`: comm ends at the last `)` followed by one of `enders`
/// (or at the last `)` at all).
fn parse_pid_comm<'a>(s: &'a str, enders: &[&str]) -> Result<(u32, String, &'a str), ParseError> {
    let (pid_s, rest) = s.split_once(' ').ok_or(ParseError::malformed(OOM, s))?;
    let pid = pid_s
        .parse::<u32>()
        .map_err(|_| ParseError::invalid(OOM, "pid", pid_s))?;
    let inner = rest.strip_prefix('(').ok_or(ParseError::malformed(OOM, s))?;
    let close = enders
        .iter()
        .filter_map(|e| inner.rfind(&format!("){e}")))
        .max()
        .or_else(|| inner.rfind(')'))
        .ok_or(ParseError::malformed(OOM, s))?;
    Ok((pid, inner[..close].to_string(), &inner[close + 1..]))
}

/// After `Killed process `.
fn parse_killed(scope: OomScope, s: &str) -> Result<OomKilled, ParseError> {
    let (pid, comm, rest) = parse_pid_comm(s, &[" total-vm:", " vsz:"])?;
    let mut k = OomKilled {
        scope,
        pid,
        comm,
        total_vm_kb: None,
        anon_rss_kb: None,
        file_rss_kb: None,
        shmem_rss_kb: None,
        uid: None,
        pgtables_kb: None,
        oom_score_adj: None,
    };
    for tok in rest.split([' ', ',']).filter(|t| !t.is_empty()) {
        let Some((key, val)) = tok.split_once(':') else {
            continue;
        };
        let kb = || -> Result<Option<u64>, ParseError> {
            let n = val.strip_suffix("kB").unwrap_or(val);
            n.parse::<u64>()
                .map(Some)
                .map_err(|_| ParseError::invalid(OOM, key, val))
        };
        match key {
            "total-vm" | "vsz" => k.total_vm_kb = kb()?,
            "anon-rss" => k.anon_rss_kb = kb()?,
            "file-rss" => k.file_rss_kb = kb()?,
            "shmem-rss" => k.shmem_rss_kb = kb()?,
            "pgtables" => k.pgtables_kb = kb()?,
            "UID" => k.uid = Some(val.parse::<u32>().map_err(|_| ParseError::invalid(OOM, key, val))?),
            "oom_score_adj" => {
                k.oom_score_adj = Some(val.parse::<i32>().map_err(|_| ParseError::invalid(OOM, key, val))?)
            }
            _ => {}
        }
    }
    Ok(k)
}

// ---------------------------------------------------------------------------
// merging
// ---------------------------------------------------------------------------

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

/// Streaming merger: feed records in order, get a kill for each
/// `Killed process` line. Context lines (`oom-kill:` summary, old-kernel
/// `Kill process`/`Task in`) are remembered until the next `Killed process`
/// line and applied to it (the summary only if its pid matches). A summary
/// never followed by a `Killed process` line yields nothing.
#[derive(Debug, Default, Clone)]
pub struct OomKillCollector {
    summary: Option<OomSummary>,
    task_in: Option<(String, String)>,
    kill_scope: Option<OomScope>,
}

impl OomKillCollector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, rec: &KmsgRecord) -> Option<KernelOomKill> {
        match parse_oom_line(&rec.text)? {
            OomLine::Summary(s) => {
                self.summary = Some(s);
                None
            }
            OomLine::TaskIn { task_memcg, oom_memcg } => {
                self.task_in = Some((task_memcg, oom_memcg));
                None
            }
            OomLine::KillProcess { scope, .. } => {
                self.kill_scope = Some(scope);
                None
            }
            OomLine::Killed(k) => Some(self.finish(rec, k)),
        }
    }

    fn finish(&mut self, rec: &KmsgRecord, k: OomKilled) -> KernelOomKill {
        let mut kill = KernelOomKill {
            seq: rec.seq,
            ts_usec: rec.ts_usec,
            scope: k.scope,
            pid: k.pid,
            comm: k.comm,
            constraint: None,
            oom_memcg: None,
            task_memcg: None,
            uid: k.uid,
            total_vm_kb: k.total_vm_kb,
            anon_rss_kb: k.anon_rss_kb,
            file_rss_kb: k.file_rss_kb,
            shmem_rss_kb: k.shmem_rss_kb,
            pgtables_kb: k.pgtables_kb,
            oom_score_adj: k.oom_score_adj,
        };
        if let Some(s) = self.summary.take().filter(|s| s.pid == kill.pid) {
            if kill.scope == OomScope::Unknown {
                kill.scope = if s.constraint.as_deref() == Some("CONSTRAINT_MEMCG") {
                    OomScope::Memcg
                } else {
                    OomScope::Global
                };
            }
            kill.constraint = s.constraint;
            kill.oom_memcg = s.oom_memcg;
            kill.task_memcg = s.task_memcg;
            kill.uid = kill.uid.or(s.uid);
        }
        if let Some((task_memcg, oom_memcg)) = self.task_in.take() {
            if kill.task_memcg.is_none() {
                kill.task_memcg = Some(task_memcg);
                kill.oom_memcg = Some(oom_memcg);
            }
            if kill.scope == OomScope::Unknown {
                kill.scope = OomScope::Memcg;
            }
        }
        if let Some(scope) = self.kill_scope.take()
            && kill.scope == OomScope::Unknown
        {
            kill.scope = scope;
        }
        kill
    }
}

/// Merge a batch of records into kills (see [`OomKillCollector`]).
pub fn collect_kills(records: &[KmsgRecord]) -> Vec<KernelOomKill> {
    let mut c = OomKillCollector::new();
    records.iter().filter_map(|r| c.push(r)).collect()
}

// ---------------------------------------------------------------------------
// reader
// ---------------------------------------------------------------------------

/// Read every record currently in the kernel ring buffer from `/dev/kmsg`
/// without blocking (needs CAP_SYSLOG when `dmesg_restrict=1`). Records
/// overwritten while reading (`EPIPE`) are skipped.
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
))]
pub fn read_kmsg_snapshot() -> io::Result<Vec<KmsgRecord>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK on the architectures above.
    const O_NONBLOCK: i32 = 0o4000;
    const EPIPE: i32 = 32;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open("/dev/kmsg")?;
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
            Err(e) if e.raw_os_error() == Some(EPIPE) => continue,
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

    // A global OOM in dmesg form (5.x), mems_allowed with commas.
    const DMESG_GLOBAL_5X: &str = "\
[ 5123.456789] stress invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0
[ 5123.470001] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/user.slice/user-1000.slice/session-2.scope,task=stress,pid=4242,uid=1000
[ 5123.470012] Out of memory: Killed process 4242 (stress) total-vm:8400396kB, anon-rss:7999872kB, file-rss:4kB, shmem-rss:0kB, UID:1000 pgtables:15700kB oom_score_adj:0
";

    // 4.x: selection line with prefix, then a bare Killed line.
    const DMESG_MEMCG_4X: &str = "\
[  100.000001] Task in /leak killed as a result of limit of /leak
[  100.000002] memory: usage 51200kB, limit 51200kB, failcnt 77
[  100.000100] Memory cgroup out of memory: Kill process 1234 (foo) score 900 or sacrifice child
[  100.000101] Killed process 1234 (foo) total-vm:1000kB, anon-rss:500kB, file-rss:0kB, shmem-rss:0kB
";

    // 2.6/3.x global.
    const DMESG_GLOBAL_OLD: &str = "\
[   50.1] Out of memory: Kill process 1234 (foo) score 900 or sacrifice child
[   50.2] Killed process 1235 (foo-child) total-vm:1000kB, anon-rss:500kB, file-rss:0kB
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

    // The same two kills as `dmesg` printed them.
    const DMESG_THIS_MACHINE: &str = "\
[ 1041.487279] lt-workload invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
[ 1041.490354]  oom_kill_process.cold+0x8/0x8a
[ 1041.496476] memory: usage 65536kB, limit 65536kB, failcnt 0
[ 1041.500103] [  13157]     0 13157    17153    16795    16352      443         0   176128        0             0 lt-workload
[ 1041.500107] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/leaktrace-test-spine-oom,task_memcg=/leaktrace-test-spine-oom,task=lt-workload,pid=13157,uid=0
[ 1041.500215] Memory cgroup out of memory: Killed process 13157 (lt-workload) total-vm:68612kB, anon-rss:65408kB, file-rss:1772kB, shmem-rss:0kB, UID:0 pgtables:172kB oom_score_adj:0
[ 1118.885016] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/leaktrace-test-spine-oom,task_memcg=/leaktrace-test-spine-oom,task=lt-workload,pid=17652,uid=0
[ 1118.885070] Memory cgroup out of memory: Killed process 17652 (lt-workload) total-vm:68612kB, anon-rss:65408kB, file-rss:1652kB, shmem-rss:0kB, UID:0 pgtables:168kB oom_score_adj:0
";

    #[test]
    fn collect_this_machine_kmsg_and_dmesg() {
        let recs = parse_log(KMSG_THIS_MACHINE);
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
            (kills[1].seq, kills[1].pid, kills[1].pgtables_kb),
            (494, 17652, Some(168))
        );

        let dkills = collect_kills(&parse_log(DMESG_THIS_MACHINE));
        assert_eq!(dkills.len(), 2);
        assert_eq!(dkills[0], KernelOomKill { seq: 5, ..expected });
        assert_eq!(dkills[1].ts_usec, 1118885070);
    }

    fn kmsg_records(text: &str) -> Vec<KmsgRecord> {
        // Split like successive read(2)s: a record plus its continuation lines.
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
        assert_eq!(parse_oom_line(&r.text), None);
    }

    #[test]
    fn dmesg_lines() {
        assert_eq!(
            parse_dmesg_line("[12345.678901] Memory cgroup out of memory: x", 3),
            KmsgRecord {
                seq: 3,
                ts_usec: 12345678901,
                text: "Memory cgroup out of memory: x".into(),
            }
        );
        assert_eq!(parse_dmesg_line("[    0.001400] ACPI: x", 0).ts_usec, 1400);
        assert_eq!(parse_dmesg_line("<3>[   50.1] a", 0).ts_usec, 50_100_000);
        assert_eq!(parse_dmesg_line("<3>[   50.1] a", 0).text, "a");
        let r = parse_dmesg_line("[Firmware Bug]: TSC", 1);
        assert_eq!((r.ts_usec, r.text.as_str()), (0, "[Firmware Bug]: TSC"));
        assert_eq!(parse_dmesg_line("plain", 1).text, "plain");
    }

    #[test]
    fn summary_line_6x() {
        let l = parse_oom_line("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/leak-test,task_memcg=/leak-test,task=python3,pid=12345,uid=0").unwrap();
        assert_eq!(
            l,
            OomLine::Summary(OomSummary {
                constraint: Some("CONSTRAINT_MEMCG".into()),
                nodemask: Some("(null)".into()),
                cpuset: Some("/".into()),
                mems_allowed: Some("0".into()),
                oom_memcg: Some("/leak-test".into()),
                task_memcg: Some("/leak-test".into()),
                global_oom: false,
                comm: "python3".into(),
                pid: 12345,
                uid: Some(0),
            })
        );
    }

    #[test]
    fn summary_line_global_with_comma_lists() {
        let l = parse_oom_line("oom-kill:constraint=CONSTRAINT_NONE,nodemask=0-1,3,cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/system.slice/a,b.service,task=my,task,pid=7,uid=1000").unwrap();
        let OomLine::Summary(s) = l else { panic!() };
        assert_eq!(s.nodemask.as_deref(), Some("0-1,3"));
        assert_eq!(s.mems_allowed.as_deref(), Some("0-1,3"));
        assert!(s.global_oom);
        assert_eq!(s.oom_memcg, None);
        assert_eq!(s.task_memcg.as_deref(), Some("/system.slice/a,b.service"));
        assert_eq!(s.comm, "my,task");
        assert_eq!(s.pid, 7);
        assert_eq!(s.uid, Some(1000));
    }

    #[test]
    fn summary_errors() {
        assert!(
            try_parse_oom_line("oom-kill:constraint=X,task=a")
                .unwrap_err()
                .to_string()
                .contains("pid")
        );
        assert!(try_parse_oom_line("oom-kill:constraint=X,task=a,pid=1,uid=x").is_err());
        assert!(
            try_parse_oom_line("oom-kill:constraint=X,pid=1")
                .unwrap_err()
                .to_string()
                .contains("task")
        );
        assert_eq!(parse_oom_line("oom-kill:constraint=X,pid=1"), None);
    }

    #[test]
    fn killed_line_6x_memcg() {
        let l = parse_oom_line("Memory cgroup out of memory: Killed process 12345 (python3) total-vm:123456kB, anon-rss:65432kB, file-rss:1234kB, shmem-rss:0kB, UID:0 pgtables:256kB oom_score_adj:0").unwrap();
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
        let l = parse_oom_line("Out of memory: Killed process 99 (my prog) (x)) total-vm:10kB, anon-rss:5kB, file-rss:1kB, shmem-rss:2kB, UID:1000 pgtables:4kB oom_score_adj:-1000").unwrap();
        let OomLine::Killed(k) = l else { panic!() };
        assert_eq!(k.scope, OomScope::Global);
        assert_eq!(k.comm, "my prog) (x)");
        assert_eq!(k.oom_score_adj, Some(-1000));
        assert_eq!(k.shmem_rss_kb, Some(2));
        let l = parse_oom_line("Out of memory (oom_kill_allocating_task): Killed process 5 (a) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB").unwrap();
        let OomLine::Killed(k) = l else { panic!() };
        assert_eq!((k.scope, k.uid, k.pgtables_kb), (OomScope::Global, None, None));
    }

    #[test]
    fn killed_line_old_formats() {
        let OomLine::Killed(k) =
            parse_oom_line("Killed process 1234 (foo) total-vm:1000kB, anon-rss:500kB, file-rss:0kB, shmem-rss:0kB")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(k.scope, OomScope::Unknown);
        assert_eq!(
            (k.total_vm_kb, k.anon_rss_kb, k.file_rss_kb, k.shmem_rss_kb),
            (Some(1000), Some(500), Some(0), Some(0))
        );
        let OomLine::Killed(k) =
            parse_oom_line("Killed process 1234 (foo) total-vm:1000kB, anon-rss:500kB, file-rss:0kB").unwrap()
        else {
            panic!()
        };
        assert_eq!(k.shmem_rss_kb, None);
        let OomLine::Killed(k) =
            parse_oom_line("Killed process 77 (bar) vsz:2048kB, anon-rss:1024kB, file-rss:8kB").unwrap()
        else {
            panic!()
        };
        assert_eq!(k.total_vm_kb, Some(2048));
        // reaper lines are not kills
        assert_eq!(
            parse_oom_line("oom_reaper: reaped process 12345 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"),
            None
        );
        assert!(try_parse_oom_line("Killed process x (a) total-vm:1kB").is_err());
        assert!(try_parse_oom_line("Killed process 1 (a) total-vm:lotskB").is_err());
        assert!(try_parse_oom_line("Killed process 1 a").is_err());
    }

    #[test]
    fn kill_process_and_task_in() {
        assert_eq!(
            parse_oom_line("Out of memory: Kill process 1234 (foo) score 900 or sacrifice child"),
            Some(OomLine::KillProcess {
                scope: OomScope::Global,
                pid: 1234,
                comm: "foo".into(),
                score: Some(900),
            })
        );
        assert_eq!(
            parse_oom_line("Kill process 1236 (foo) sharing same memory"),
            Some(OomLine::KillProcess {
                scope: OomScope::Unknown,
                pid: 1236,
                comm: "foo".into(),
                score: None,
            })
        );
        assert_eq!(
            parse_oom_line("Task in /docker/abc killed as a result of limit of /docker"),
            Some(OomLine::TaskIn {
                task_memcg: "/docker/abc".into(),
                oom_memcg: "/docker".into(),
            })
        );
        assert_eq!(parse_oom_line("Task in progress"), None);
        assert_eq!(
            parse_oom_line("python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL)"),
            None
        );
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
        // same result when the dump is parsed as text
        assert_eq!(collect_kills(&parse_log(KMSG_MEMCG_6X)), kills);
        let json = serde_json::to_value(&kills[0]).unwrap();
        assert_eq!(json["scope"], "memcg");
        assert_eq!(json["anon_rss_kb"], 102400);
    }

    #[test]
    fn collect_dmesg_global_5x() {
        let kills = collect_kills(&parse_log(DMESG_GLOBAL_5X));
        assert_eq!(kills.len(), 1);
        let k = &kills[0];
        assert_eq!((k.seq, k.ts_usec), (2, 5123470012));
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
    fn collect_old_kernels() {
        let kills = collect_kills(&parse_log(DMESG_MEMCG_4X));
        assert_eq!(kills.len(), 1);
        let k = &kills[0];
        assert_eq!(k.scope, OomScope::Memcg);
        assert_eq!(k.task_memcg.as_deref(), Some("/leak"));
        assert_eq!(k.oom_memcg.as_deref(), Some("/leak"));
        assert_eq!(k.shmem_rss_kb, Some(0));
        assert_eq!(k.uid, None);

        let kills = collect_kills(&parse_log(DMESG_GLOBAL_OLD));
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].pid, 1235);
        assert_eq!(kills[0].comm, "foo-child");
        assert_eq!(kills[0].scope, OomScope::Global);
        assert_eq!(kills[0].ts_usec, 50_200_000);
    }

    #[test]
    fn summary_only_applies_to_matching_pid() {
        let log = "\
[1.0] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=x,pid=1,uid=0
[2.0] Killed process 2 (y) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB
[3.0] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/b,task_memcg=/b/c,task=z,pid=3,uid=5
[3.5] some unrelated line
[4.0] Memory cgroup out of memory: Killed process 3 (z) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:5 pgtables:4kB oom_score_adj:0
[5.0] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/d,task_memcg=/d,task=w,pid=9,uid=0
";
        let kills = collect_kills(&parse_log(log));
        assert_eq!(kills.len(), 2);
        assert_eq!(
            (kills[0].pid, kills[0].task_memcg.as_deref(), kills[0].scope),
            (2, None, OomScope::Unknown)
        );
        assert_eq!(kills[1].pid, 3);
        assert_eq!(kills[1].oom_memcg.as_deref(), Some("/b"));
        assert_eq!(kills[1].task_memcg.as_deref(), Some("/b/c"));

        // streaming: the summary carries over between pushes
        let recs = parse_log(log);
        let mut c = OomKillCollector::new();
        let mut out = Vec::new();
        for r in &recs {
            out.extend(c.push(r));
        }
        assert_eq!(out, kills);
    }

    #[test]
    fn journal_prefixes_tolerated() {
        let line = "Jun 01 12:00:00 host kernel: Memory cgroup out of memory: Killed process 12345 (python3) total-vm:123456kB, anon-rss:65432kB, file-rss:1234kB, shmem-rss:0kB, UID:0 pgtables:256kB oom_score_adj:0";
        let kills = collect_kills(&parse_log(line));
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].scope, OomScope::Memcg);
    }

    #[test]
    fn never_panics() {
        let samples = [
            KMSG_MEMCG_6X,
            DMESG_GLOBAL_5X,
            DMESG_MEMCG_4X,
            DMESG_GLOBAL_OLD,
            KMSG_THIS_MACHINE,
            DMESG_THIS_MACHINE,
        ];
        let run = |s: &str| {
            let _ = parse_record(s);
            let _ = parse_dmesg_line(s, 0);
            let _ = try_parse_oom_line(s);
            let recs = parse_log(s);
            let _ = collect_kills(&recs);
        };
        for s in samples {
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
            "[",
            "[]",
            "[.]",
            "[1.]",
            "<>",
            "<3",
            "[99999999999999999999.1] x",
            "oom-kill:",
            "oom-kill:,pid=,uid=",
            "oom-kill:pid=1",
            "Killed process ",
            "Killed process 1 (",
            "Killed process 1 ()",
            "Kill process 1 (a",
            "Task in ",
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
