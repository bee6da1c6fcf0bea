//! Readers for `/proc/<pid>/…`: status, stat, cmdline, smaps_rollup, smaps, and `/proc/uptime`.
//! Host-wide memory (`/proc/meminfo`, PSI, `/proc/vmstat`) is in [`super::host`].
//!
//! The parsing is procfs-core's (`FromRead` over any reader, so the tests feed text); this module
//! reads the files and keeps what leaktrace uses, in bytes. One exception: `/proc/<pid>/status`,
//! which the monitor reads for every process whose RSS changed, every interval (thousands of
//! processes on a big host), keeps a hand-written parser of the ten fields it needs. The decision
//! was measured over every process's real status file on the test machine (Linux 6.18, 110
//! processes, 2 shared cores), reading and parsing as the monitor does, 40 rounds interleaved
//! (`status_reader_bench` below, release build; three runs agreed within 10 %):
//!
//! ```text
//! ns per /proc/<pid>/status     read only   read+parse   parse only
//! hand-written parser             14 769       16 443        1 613
//! procfs-core Status              (same)       30 635       14 613
//! ```
//!
//! procfs-core's `Status` builds a `HashMap<String, String>` of all ~55 lines and converts every
//! field: 9x the parsing time, 1.8x the whole read. At 5,000 changed processes per interval that
//! is 70 ms of CPU per interval saved, so the hand parser stays; every other file here is read
//! once per process life, per sweep or per report, where that difference does not matter.
//!
//! Memory sizes are returned in bytes (the kernel prints kB = KiB).

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read},
    path::PathBuf,
};

use procfs_core::{
    FromRead as _,
    process::{MMapPath, MemoryMaps, SmapsRollup, Stat},
};
use serde::{Deserialize, Serialize};

use super::ParseError;

/// Default procfs mount point.
pub const PROC_ROOT: &str = "/proc";

const STATUS: &str = "/proc/<pid>/status";

// ---------------------------------------------------------------------------
// /proc/<pid>/status
// ---------------------------------------------------------------------------

/// Selected fields of `/proc/<pid>/status`. Memory values are bytes.
///
/// The `vm_*`/`rss_*` fields are 0 when the kernel does not print them
/// (kernel threads and zombies have no `mm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// `Name:` (the comm, max 15 bytes; kernel escapes of `\n` and `\\` undone).
    pub name: String,
    pub tgid: u32,
    pub ppid: u32,
    /// Real uid (first column of `Uid:`).
    pub uid: u32,
    pub vm_rss: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub rss_shmem: u64,
    pub vm_swap: u64,
    pub vm_size: u64,
}

/// Parse the text of `/proc/<pid>/status`.
///
/// `Name`, `Tgid`, `PPid` and `Uid` are required.
pub fn parse_status(text: &str) -> Result<ProcStatus, ParseError> {
    let mut name = None;
    let mut tgid = None;
    let mut ppid = None;
    let mut uid = None;
    let mut st = ProcStatus {
        name: String::new(),
        tgid: 0,
        ppid: 0,
        uid: 0,
        vm_rss: 0,
        rss_anon: 0,
        rss_file: 0,
        rss_shmem: 0,
        vm_swap: 0,
        vm_size: 0,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let num = |field: &str| -> Result<u32, ParseError> {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| ParseError::invalid(STATUS, field, value.trim()))
        };
        let kb = |field: &str| -> Result<u64, ParseError> {
            parse_kb(value).ok_or_else(|| ParseError::invalid(STATUS, field, value.trim()))
        };
        match key {
            // Only strip the single tab separator: a comm may start with spaces.
            "Name" => name = Some(unescape_status_name(value.strip_prefix('\t').unwrap_or(value))),
            "Tgid" => tgid = Some(num(key)?),
            "PPid" => ppid = Some(num(key)?),
            "Uid" => {
                let first = value.split_whitespace().next().unwrap_or("");
                uid = Some(
                    first
                        .parse::<u32>()
                        .map_err(|_| ParseError::invalid(STATUS, key, value.trim()))?,
                );
            }
            "VmRSS" => st.vm_rss = kb(key)?,
            "RssAnon" => st.rss_anon = kb(key)?,
            "RssFile" => st.rss_file = kb(key)?,
            "RssShmem" => st.rss_shmem = kb(key)?,
            "VmSwap" => st.vm_swap = kb(key)?,
            "VmSize" => st.vm_size = kb(key)?,
            _ => {}
        }
    }
    st.name = name.ok_or(ParseError::missing(STATUS, "Name"))?;
    st.tgid = tgid.ok_or(ParseError::missing(STATUS, "Tgid"))?;
    st.ppid = ppid.ok_or(ParseError::missing(STATUS, "PPid"))?;
    st.uid = uid.ok_or(ParseError::missing(STATUS, "Uid"))?;
    Ok(st)
}

/// The kernel escapes only `\n` and `\` in the status `Name:` field.
fn unescape_status_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

pub fn read_status(pid: u32) -> io::Result<ProcStatus> {
    Ok(parse_status(&read_lossy(&pid_file(pid, "status"))?)?)
}

// ---------------------------------------------------------------------------
// /proc/<pid>/stat
// ---------------------------------------------------------------------------

/// What leaktrace uses of `/proc/<pid>/stat`, in clock ticks (`sysconf(_SC_CLK_TCK)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 22: start time after boot. With the pid, it names one process life.
    pub starttime_ticks: u64,
    /// Fields 14 and 15: CPU time in user and kernel mode.
    pub utime_ticks: u64,
    pub stime_ticks: u64,
}

pub fn parse_stat(text: &[u8]) -> io::Result<ProcStat> {
    const WHAT: &str = "/proc/<pid>/stat";
    // procfs-core slices around the comm's parentheses without checking them (`pid (comm) S …`,
    // trimmed, lossily decoded): refuse what would make it panic.
    let lossy = String::from_utf8_lossy(text);
    let t = lossy.trim().as_bytes();
    let shape_ok = match (t.iter().position(|b| *b == b'('), t.iter().rposition(|b| *b == b')')) {
        (Some(o), Some(c)) => o >= 1 && t[o - 1] == b' ' && c > o && t.get(c + 1) == Some(&b' '),
        _ => false,
    };
    if !shape_ok {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{WHAT}: malformed")));
    }
    let s = Stat::from_read(text).map_err(|e| invalid(WHAT, e))?;
    Ok(ProcStat {
        starttime_ticks: s.starttime,
        utime_ticks: s.utime,
        stime_ticks: s.stime,
    })
}

pub fn read_stat(pid: u32) -> io::Result<ProcStat> {
    parse_stat(&read_small(&pid_file(pid, "stat"))?)
}

// ---------------------------------------------------------------------------
// /proc/<pid>/cmdline
// ---------------------------------------------------------------------------

/// Split a raw `/proc/<pid>/cmdline` (NUL-separated, usually NUL-terminated)
/// into arguments, decoding lossily. Kernel threads give an empty vector.
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

pub fn read_cmdline(pid: u32) -> io::Result<Vec<String>> {
    Ok(parse_cmdline(&read_small(&pid_file(pid, "cmdline"))?))
}

/// Replacement text for redacted values.
pub const REDACTED: &str = "<redacted>";

/// Substrings (lower-case) that make an option/variable name sensitive.
const SENSITIVE_WORDS: [&str; 7] = ["pass", "pwd", "token", "secret", "key", "credential", "auth"];

fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_WORDS.iter().any(|w| lower.contains(w))
}

/// Join a command line with spaces, keeping `argv[0]` verbatim and replacing
/// likely secrets with `<redacted>`:
///
/// * `name=value`, `-name=value`, `--name=value` where the name contains
///   pass/pwd/token/secret/key/credential/auth (case-insensitive) → `name=<redacted>`;
/// * `--name value` / `-name value` with such a name → the next argument is
///   redacted (unless it starts with `--`, i.e. is clearly another option);
/// * `-p value` and `-pVALUE` (mysql-style password) → value redacted;
/// * passwords in URLs (`scheme://user:password@host`) → `scheme://user:<redacted>@host`.
///
/// Over-redaction (e.g. `--keyfile /path`, `mkdir -p dir`) is accepted by design.
pub fn redact_cmdline(args: &[String]) -> String {
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut redact_next = false;
    for (i, arg) in args.iter().enumerate() {
        if i == 0 {
            out.push(arg.clone());
            continue;
        }
        if redact_next {
            redact_next = false;
            if !arg.starts_with("--") {
                out.push(REDACTED.to_string());
                continue;
            }
        }
        out.push(redact_arg(arg, &mut redact_next));
    }
    out.join(" ")
}

fn redact_arg(arg: &str, redact_next: &mut bool) -> String {
    if arg == "-p" {
        *redact_next = true;
        return arg.to_string();
    }
    if let Some(rest) = arg.strip_prefix("-p")
        && !rest.starts_with('-')
        && !rest.contains('=')
    {
        return format!("-p{REDACTED}");
    }
    if let Some((name, _value)) = arg.split_once('=') {
        let bare = name.trim_start_matches('-');
        if !bare.is_empty() && !bare.contains(['/', ' ', '\t']) && (is_sensitive_name(bare) || name == "-p") {
            return format!("{name}={REDACTED}");
        }
        return redact_url_password(arg);
    }
    if arg.starts_with('-') {
        let bare = arg.trim_start_matches('-');
        if !bare.is_empty() && is_sensitive_name(bare) {
            *redact_next = true;
        }
        return arg.to_string();
    }
    redact_url_password(arg)
}

/// `scheme://user:pass@host/...` → `scheme://user:<redacted>@host/...`.
fn redact_url_password(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else {
        return arg.to_string();
    };
    let auth_start = scheme_end + 3;
    let after = &arg[auth_start..];
    let auth_len = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..auth_len];
    let Some(at) = authority.rfind('@') else {
        return arg.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return arg.to_string();
    };
    format!(
        "{}{}:{}{}",
        &arg[..auth_start],
        &userinfo[..colon],
        REDACTED,
        &arg[auth_start + at..]
    )
}

// ---------------------------------------------------------------------------
// /proc/<pid>/smaps_rollup and /proc/<pid>/smaps
// ---------------------------------------------------------------------------

/// `/proc/<pid>/smaps_rollup` as `key → value` (`Rss`, `Pss`, `Anonymous`, `Swap`, …; sizes in
/// bytes). A kernel thread gives an empty map.
pub fn parse_smaps_rollup(r: impl Read) -> io::Result<BTreeMap<String, u64>> {
    let rollup = SmapsRollup::from_read(r).map_err(|e| invalid("/proc/<pid>/smaps_rollup", e))?;
    Ok(rollup
        .memory_map_rollup
        .into_iter()
        .next()
        .map(|m| m.extension.map.into_iter().collect())
        .unwrap_or_default())
}

/// Note: kernel threads give `ESRCH` ("No such process") rather than an empty file, and
/// processes that are not dumpable may give `EACCES` even to root.
pub fn read_smaps_rollup(pid: u32) -> io::Result<BTreeMap<String, u64>> {
    parse_smaps_rollup(fs::read(pid_file(pid, "smaps_rollup"))?.as_slice())
}

/// One VMA from `/proc/<pid>/smaps` (as stored in reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// e.g. `rw-p`
    pub perms: String,
    /// File path, `[heap]`, `[stack]`, `[anon:name]`…; empty for anonymous.
    pub path: String,
    pub rss_bytes: u64,
    /// `Anonymous:`
    pub anon_bytes: u64,
    /// `Swap:`
    pub swap_bytes: u64,
}

/// The name the kernel printed for a mapping.
fn path_name(p: &MMapPath) -> String {
    match p {
        MMapPath::Path(p) => p.to_string_lossy().into_owned(),
        MMapPath::Heap => "[heap]".into(),
        MMapPath::Stack => "[stack]".into(),
        MMapPath::TStack(tid) => format!("[stack:{tid}]"),
        MMapPath::Vdso => "[vdso]".into(),
        MMapPath::Vvar => "[vvar]".into(),
        MMapPath::Vsyscall => "[vsyscall]".into(),
        MMapPath::Rollup => "[rollup]".into(),
        MMapPath::Anonymous => String::new(),
        MMapPath::Vsys(key) => format!("/SYSV{key:08x}"),
        MMapPath::Other(name) => format!("[{name}]"),
    }
}

/// The `n` mappings of `/proc/<pid>/smaps` with the largest RSS (ties: lower address first).
pub fn parse_top_mappings(r: impl Read, n: usize) -> io::Result<Vec<Mapping>> {
    let maps = MemoryMaps::from_read(r).map_err(|e| invalid("/proc/<pid>/smaps", e))?;
    let mut maps: Vec<Mapping> = maps
        .into_iter()
        .map(|m| {
            let get = |k: &str| m.extension.map.get(k).copied().unwrap_or(0);
            Mapping {
                start: m.address.0,
                end: m.address.1,
                perms: m.perms.as_str(),
                path: path_name(&m.pathname),
                rss_bytes: get("Rss"),
                anon_bytes: get("Anonymous"),
                swap_bytes: get("Swap"),
            }
        })
        .collect();
    maps.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.start.cmp(&b.start)));
    maps.truncate(n);
    Ok(maps)
}

pub fn read_top_mappings(pid: u32, n: usize) -> io::Result<Vec<Mapping>> {
    parse_top_mappings(fs::read(pid_file(pid, "smaps"))?.as_slice(), n)
}

/// Every `Key: value` line of `/proc/<pid>/status`, verbatim (for pre-OOM snapshots).
pub fn read_status_fields(pid: u32) -> io::Result<BTreeMap<String, String>> {
    Ok(read_lossy(&pid_file(pid, "status"))?
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect())
}

// ---------------------------------------------------------------------------
// /proc/uptime
// ---------------------------------------------------------------------------

/// Time since boot (CLOCK_BOOTTIME), from `/proc/uptime`.
pub fn read_uptime() -> io::Result<std::time::Duration> {
    let u = procfs_core::Uptime::from_read(fs::File::open("/proc/uptime")?).map_err(|e| invalid("/proc/uptime", e))?;
    std::time::Duration::try_from_secs_f64(u.uptime)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/uptime: {e}")))
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn pid_file(pid: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// A procfs-core parse error as an `io::Error` naming the file.
pub(crate) fn invalid(what: &str, e: procfs_core::ProcError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// Read a small kernel-generated file (procfs, cgroupfs) whole: open, read into a 4 KiB buffer
/// (doubled when full) until end of file, close — four system calls. `fs::read` and
/// `File::read_to_end` first ask the file's size and position (`statx`, `lseek`), which procfs
/// reports as 0, then start with a 32-byte probe read: three calls more per file on the
/// monitor's hot path, where thousands of such files are read.
pub(crate) fn read_small(path: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Read a file as text, replacing invalid UTF-8 (comms and paths may hold any bytes).
pub(crate) fn read_lossy(path: &std::path::Path) -> io::Result<String> {
    let bytes = read_small(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// `"   1664 kB"` → 1664 * 1024. A bare number is taken as kB as well.
fn parse_kb(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_suffix("kB").unwrap_or(v).trim_end();
    v.parse::<u64>().ok().map(|kb| kb.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_are_read_whole() {
        // Larger than the first buffer, and an exact multiple of it.
        let dir = std::env::temp_dir().join(format!("leaktrace-read-small-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for len in [0usize, 1, 4095, 4096, 8192, 10_000] {
            let p = dir.join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            fs::write(&p, &data).unwrap();
            assert_eq!(read_small(&p).unwrap(), data, "{len} bytes");
        }
        let _ = fs::remove_dir_all(&dir);
        let st = read_small(std::path::Path::new("/proc/self/status")).unwrap();
        assert!(st.starts_with(b"Name:") && st.ends_with(b"\n"));
        assert!(read_small(std::path::Path::new("/proc/self/no-such-file")).is_err());
    }

    // Captured on this machine (Linux 6.18) from `cat /proc/self/status`.
    const STATUS_6_18: &str = "Name:\tcat
Umask:\t0022
State:\tR (running)
Tgid:\t2882
Ngid:\t0
Pid:\t2882
PPid:\t2880
TracerPid:\t0
Uid:\t1000\t1001\t1002\t1003
Gid:\t0\t0\t0\t0
FDSize:\t256
Groups:\t 
NStgid:\t2882
NSpid:\t2882
NSpgid:\t2880
NSsid:\t2278
Kthread:\t0
VmPeak:\t    3060 kB
VmSize:\t    3060 kB
VmLck:\t       0 kB
VmPin:\t       0 kB
VmHWM:\t    1664 kB
VmRSS:\t    1664 kB
RssAnon:\t     112 kB
RssFile:\t    1552 kB
RssShmem:\t       0 kB
VmData:\t     360 kB
VmStk:\t     132 kB
VmExe:\t      20 kB
VmLib:\t    1528 kB
VmPTE:\t      52 kB
VmSwap:\t       8 kB
HugetlbPages:\t       0 kB
CoreDumping:\t0
THP_enabled:\t1
untag_mask:\t0xffffffffffffffff
Threads:\t1
SigQ:\t0/96365
SigPnd:\t0000000000000000
Cpus_allowed_list:\t0-1
voluntary_ctxt_switches:\t0
nonvoluntary_ctxt_switches:\t0
";

    const KTHREAD_STATUS: &str = "Name:\tkworker/0:1-events
Umask:\t0000
State:\tI (idle)
Tgid:\t9
Ngid:\t0
Pid:\t9
PPid:\t2
TracerPid:\t0
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
FDSize:\t64
Kthread:\t1
Threads:\t1
";

    const STAT_SAMPLE: &str = "2884 (cat) R 2880 2880 2278 0 -1 4194304 99 0 3 0 7 5 0 0 20 0 1 0 46747 3133440 382 18446744073709551615 94430701858816 94430701878697 140720444952416 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94430701894704 94430701896320 94431720423424 140720444959456 140720444959476 140720444959476 140720444960747 0\n";

    const SMAPS_ROLLUP_SAMPLE: &str =
        "55f945f20000-7ffcb93cc000 ---p 00000000 00:00 0                          [rollup]
Rss:                1700 kB
Pss:                 539 kB
Pss_Dirty:           108 kB
Anonymous:           108 kB
Swap:                  4 kB
SwapPss:               0 kB
Locked:                0 kB
";

    const SMAPS_SAMPLE: &str = "5556faed5000-5556faed7000 r--p 00000000 fe:00 247282                     /usr/bin/head
Size:                  8 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   8 kB
Pss:                   8 kB
Anonymous:             0 kB
Swap:                  0 kB
SwapPss:               0 kB
THPeligible:           0
VmFlags: rd mr mw me 
5556fbd00000-5556fdd21000 rw-p 00000000 00:00 0                          [heap]
Size:              32900 kB
Rss:               32772 kB
Anonymous:         32772 kB
Swap:                 16 kB
SwapPss:              16 kB
VmFlags: rd wr mr mw me ac 
7f1c2a000000-7f1c2e000000 rw-p 00000000 00:00 0 
Size:              65536 kB
Rss:               40000 kB
Anonymous:         40000 kB
Swap:                  0 kB
VmFlags: rd wr mr mw me nr 
7f1c30000000-7f1c30001000 rw-s 00000000 00:05 1234                       /memfd:my buf (deleted)
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
Swap:                  0 kB
ProtectionKey:         0
VmFlags: rd wr sh mr mw me ms 
";

    fn every_prefix(s: &str, mut f: impl FnMut(&str)) {
        for (i, _) in s.char_indices() {
            f(&s[..i]);
        }
        f(s);
    }

    const GARBAGE: [&str; 8] = [
        "",
        "\0\0\0",
        ":::::",
        "((((())))) ) ( )",
        "Name:\nTgid:\nUid:\n",
        "\u{fffd}\u{fffd} kB kB kB",
        "-  -  - 99999999999999999999999999 kB",
        "ffffffffffffffffffff-0 rwxp 0 0:0 0 x\nRss: 18446744073709551615 kB",
    ];

    #[test]
    fn status_parses_real_sample() {
        let st = parse_status(STATUS_6_18).unwrap();
        assert_eq!(
            st,
            ProcStatus {
                name: "cat".into(),
                tgid: 2882,
                ppid: 2880,
                uid: 1000,
                vm_rss: 1664 * 1024,
                rss_anon: 112 * 1024,
                rss_file: 1552 * 1024,
                rss_shmem: 0,
                vm_swap: 8 * 1024,
                vm_size: 3060 * 1024,
            }
        );
    }

    #[test]
    fn status_kernel_thread_has_zero_memory() {
        let st = parse_status(KTHREAD_STATUS).unwrap();
        assert_eq!(st.name, "kworker/0:1-events");
        assert_eq!(st.ppid, 2);
        assert_eq!(st.vm_rss, 0);
        assert_eq!(st.vm_size, 0);
    }

    #[test]
    fn status_name_with_spaces_and_escapes() {
        let text = STATUS_6_18.replace("Name:\tcat", "Name:\t my\\nweird\\\\ name");
        assert_eq!(parse_status(&text).unwrap().name, " my\nweird\\ name");
    }

    #[test]
    fn status_errors_name_the_field() {
        let text = STATUS_6_18.replace("Tgid:\t2882\n", "");
        let err = parse_status(&text).unwrap_err();
        assert_eq!(err, ParseError::missing(STATUS, "Tgid"));
        let text = STATUS_6_18.replace("VmRSS:\t    1664 kB", "VmRSS:\t  lots kB");
        let err = parse_status(&text).unwrap_err();
        assert!(err.to_string().contains("VmRSS"), "{err}");
    }

    #[test]
    fn stat_parses_real_sample() {
        let s = parse_stat(STAT_SAMPLE.as_bytes()).unwrap();
        assert_eq!(
            s,
            ProcStat {
                starttime_ticks: 46747,
                utime_ticks: 7,
                stime_ticks: 5,
            }
        );
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        for comm in ["(a) b (c) d)", "(R 1 2 3)", "( )"] {
            let text = STAT_SAMPLE.replace("(cat)", comm);
            assert_eq!(parse_stat(text.as_bytes()).unwrap().starttime_ticks, 46747, "{comm}");
        }
    }

    #[test]
    fn stat_short_line_is_error() {
        let e = parse_stat("1 (x) S 0 1 1 0 -1".as_bytes()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().starts_with("/proc/<pid>/stat"), "{e}");
        assert!(parse_stat(") 1 (".as_bytes()).is_err());
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(
            parse_cmdline(b"python3\0-c\0print(1)\0"),
            vec!["python3", "-c", "print(1)"]
        );
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"\0"), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"a\0\0b"), vec!["a", "", "b"]);
        assert_eq!(parse_cmdline(b"nginx: master process"), vec!["nginx: master process"]);
        assert_eq!(parse_cmdline(b"a\xff\0"), vec!["a\u{fffd}"]);
    }

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn redact_equals_forms() {
        let args = v(&[
            "/usr/bin/app",
            "--password=hunter2",
            "--db-token=abc",
            "--client_secret=s3",
            "--api-key=k",
            "AWS_SECRET_ACCESS_KEY=xyz",
            "PGPASSWORD=pw",
            "-Dapp.secret=javaprop",
            "--name=visible",
            "KEY=value",
        ]);
        assert_eq!(
            redact_cmdline(&args),
            "/usr/bin/app --password=<redacted> --db-token=<redacted> --client_secret=<redacted> \
             --api-key=<redacted> AWS_SECRET_ACCESS_KEY=<redacted> PGPASSWORD=<redacted> \
             -Dapp.secret=<redacted> --name=visible KEY=<redacted>"
        );
    }

    #[test]
    fn redact_separate_value_forms() {
        let args = v(&[
            "mysql",
            "-u",
            "root",
            "-p",
            "hunter2",
            "--token",
            "t0k",
            "--secret",
            "s",
            "--key",
            "k",
            "--verbose",
            "file.txt",
        ]);
        assert_eq!(
            redact_cmdline(&args),
            "mysql -u root -p <redacted> --token <redacted> --secret <redacted> --key <redacted> --verbose file.txt"
        );
        assert_eq!(redact_cmdline(&v(&["app", "-p=hunter2"])), "app -p=<redacted>");
        // mysql-style glued password
        assert_eq!(
            redact_cmdline(&v(&["mysql", "-phunter2", "db"])),
            "mysql -p<redacted> db"
        );
        // a flag after a sensitive flag is not swallowed
        assert_eq!(
            redact_cmdline(&v(&["app", "--no-password", "--verbose"])),
            "app --no-password --verbose"
        );
        // trailing sensitive flag with no value
        assert_eq!(redact_cmdline(&v(&["app", "--token"])), "app --token");
    }

    #[test]
    fn redact_keeps_argv0_and_harmless_args() {
        assert_eq!(
            redact_cmdline(&v(&["PASSWORD=x", "run", "/data/file", "--port=80"])),
            "PASSWORD=x run /data/file --port=80"
        );
        assert_eq!(redact_cmdline(&[]), "");
        assert_eq!(redact_cmdline(&v(&["python3", "-c", "a=1"])), "python3 -c a=1");
        // a path containing '=' is not a name=value pair
        assert_eq!(redact_cmdline(&v(&["ls", "/tmp/key=1"])), "ls /tmp/key=1");
    }

    #[test]
    fn redact_url_passwords() {
        assert_eq!(
            redact_cmdline(&v(&["psql", "postgres://bob:s3cr3t@db:5432/app?x=1"])),
            "psql postgres://bob:<redacted>@db:5432/app?x=1"
        );
        assert_eq!(
            redact_cmdline(&v(&["app", "--db=mysql://u:p@h/x"])),
            "app --db=mysql://u:<redacted>@h/x"
        );
        assert_eq!(
            redact_cmdline(&v(&["curl", "https://example.com/a@b:c"])),
            "curl https://example.com/a@b:c"
        );
        assert_eq!(
            redact_cmdline(&v(&["git", "https://user@host/r"])),
            "git https://user@host/r"
        );
    }

    #[test]
    fn smaps_rollup_parses() {
        let m = parse_smaps_rollup(SMAPS_ROLLUP_SAMPLE.as_bytes()).unwrap();
        assert_eq!(m["Rss"], 1700 * 1024);
        assert_eq!(m["Anonymous"], 108 * 1024);
        assert_eq!(m["Swap"], 4 * 1024);
        assert_eq!(m.len(), 7);
        assert!(parse_smaps_rollup("".as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn smaps_top_mappings() {
        let top = parse_top_mappings(SMAPS_SAMPLE.as_bytes(), 2).unwrap();
        assert_eq!(
            top,
            vec![
                Mapping {
                    start: 0x7f1c2a000000,
                    end: 0x7f1c2e000000,
                    perms: "rw-p".into(),
                    path: "".into(),
                    rss_bytes: 40000 * 1024,
                    anon_bytes: 40000 * 1024,
                    swap_bytes: 0,
                },
                Mapping {
                    start: 0x5556fbd00000,
                    end: 0x5556fdd21000,
                    perms: "rw-p".into(),
                    path: "[heap]".into(),
                    rss_bytes: 32772 * 1024,
                    anon_bytes: 32772 * 1024,
                    swap_bytes: 16 * 1024,
                },
            ]
        );
        let all = parse_top_mappings(SMAPS_SAMPLE.as_bytes(), 99).unwrap();
        assert_eq!(all.len(), 4);
        let paths: Vec<&str> = all.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["", "[heap]", "/usr/bin/head", "/memfd:my buf (deleted)"]);
        assert_eq!(all[3].perms, "rw-s");
        assert!(parse_top_mappings(SMAPS_SAMPLE.as_bytes(), 0).unwrap().is_empty());
        let named = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0    [anon:jemalloc]\nRss: 4 kB\n";
        assert_eq!(
            parse_top_mappings(named.as_bytes(), 1).unwrap()[0].path,
            "[anon:jemalloc]"
        );
    }

    #[test]
    fn parsers_never_panic_on_prefixes_or_garbage() {
        let samples = [
            STATUS_6_18,
            KTHREAD_STATUS,
            STAT_SAMPLE,
            SMAPS_ROLLUP_SAMPLE,
            SMAPS_SAMPLE,
        ];
        let run = |s: &str| {
            let _ = parse_status(s);
            let _ = parse_stat(s.as_bytes());
            let _ = parse_cmdline(s.as_bytes());
            let _ = redact_cmdline(&s.split(' ').map(String::from).collect::<Vec<_>>());
            let _ = parse_smaps_rollup(s.as_bytes());
            let _ = parse_top_mappings(s.as_bytes(), 3);
        };
        for sample in samples {
            every_prefix(sample, run);
        }
        for g in GARBAGE {
            run(g);
        }
        let bytes: Vec<u8> = (0u8..=255).cycle().take(2048).collect();
        let _ = parse_cmdline(&bytes);
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn readers_work_on_live_proc() {
        // Only assert on things that hold everywhere Linux tests run.
        let pid = std::process::id();
        let st = read_status(pid).unwrap();
        assert_eq!(st.tgid, pid);
        assert!(st.vm_rss > 0);
        assert!(read_stat(pid).unwrap().starttime_ticks > 0);
        assert!(!read_cmdline(pid).unwrap().is_empty());
        assert!(read_smaps_rollup(pid).unwrap().contains_key("Rss"));
        assert!(!read_top_mappings(pid, 5).unwrap().is_empty());
        assert_eq!(read_status_fields(pid).unwrap()["Tgid"], pid.to_string());
        assert!(read_uptime().unwrap().as_secs_f64() > 0.0);
        assert!(read_status(u32::MAX).is_err());
    }

    /// Which `/proc/<pid>/status` reader the monitor should use: the hand-written parser against
    /// procfs-core's, each reading and parsing every process's real file as the monitor does,
    /// then each parsing the same texts already in memory; rounds interleaved (ABBA), all figures
    /// from the same run. `cargo test --release -p leaktrace --bin leaktrace status_reader_bench
    /// -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark: prints figures"]
    fn status_reader_bench() {
        use std::{hint::black_box, time::Instant};

        use procfs_core::process::Status;

        const ROUNDS: usize = 40;
        let pids: Vec<u32> = fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let texts: Vec<String> = pids
            .iter()
            .filter_map(|p| fs::read_to_string(pid_file(*p, "status")).ok())
            .collect();
        let hand = |pid: u32| read_status(pid).is_ok();
        let crate_ = |pid: u32| {
            fs::read(pid_file(pid, "status"))
                .ok()
                .and_then(|b| Status::from_read(b.as_slice()).ok())
                .is_some()
        };
        let read_only = |pid: u32| fs::read(pid_file(pid, "status")).is_ok();
        // [read+parse hand, read+parse procfs-core, read only, parse hand, parse procfs-core]
        let mut ns = [0u128; 5];
        let mut ok = [0usize; 5];
        for round in 0..ROUNDS {
            let mut order = [0usize, 1, 2, 3, 4];
            if round % 2 == 1 {
                order.reverse();
            }
            for which in order {
                let start = Instant::now();
                let n = match which {
                    0 => pids.iter().filter(|p| hand(black_box(**p))).count(),
                    1 => pids.iter().filter(|p| crate_(black_box(**p))).count(),
                    2 => pids.iter().filter(|p| read_only(black_box(**p))).count(),
                    3 => texts.iter().filter(|t| parse_status(black_box(t)).is_ok()).count(),
                    _ => texts
                        .iter()
                        .filter(|t| Status::from_read(black_box(t.as_bytes())).is_ok())
                        .count(),
                };
                ns[which] += start.elapsed().as_nanos();
                ok[which] += n;
            }
        }
        let per = |i: usize| ns[i] as f64 / ok[i].max(1) as f64;
        println!(
            "{} processes, {ROUNDS} rounds interleaved; ns per status file (successful reads)",
            pids.len()
        );
        println!("  read only (fs::read)                  {:>8.0}", per(2));
        println!("  read + parse, hand-written            {:>8.0}", per(0));
        println!("  read + parse, procfs-core Status      {:>8.0}", per(1));
        println!("  parse only, hand-written              {:>8.0}", per(3));
        println!("  parse only, procfs-core Status        {:>8.0}", per(4));
        println!(
            "  procfs-core / hand: read+parse {:.2}x, parse {:.2}x",
            per(1) / per(0),
            per(4) / per(3)
        );
        assert!(ok[0] > 0 && ok[1] > 0);
    }
}
