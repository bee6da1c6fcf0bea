//! Parsers and thin readers for `/proc`.
//!
//! Reads, per process: `/proc/<pid>/status`, `/proc/<pid>/statm`,
//! `/proc/<pid>/stat`, `/proc/<pid>/cmdline`, `/proc/<pid>/smaps_rollup` and
//! `/proc/<pid>/smaps`; system wide: `/proc/meminfo`, `/proc/pressure/memory`
//! (PSI, may be absent) and the `oom_kill` counter of `/proc/vmstat`.
//!
//! All `parse_*` functions are pure, take the file's text and never panic.
//! Every `read_*` function has a `read_*_in` twin taking the procfs root
//! (e.g. `/host/proc` when the host's procfs is bind-mounted into a container).
//! Memory sizes are always returned in bytes (the kernel prints kB = KiB).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ParseError;

/// Default procfs mount point.
pub const PROC_ROOT: &str = "/proc";

const STATUS: &str = "/proc/<pid>/status";
const STATM: &str = "/proc/<pid>/statm";
const STAT: &str = "/proc/<pid>/stat";
const MEMINFO: &str = "/proc/meminfo";
const PSI: &str = "/proc/pressure/memory";
const VMSTAT: &str = "/proc/vmstat";
const SMAPS_ROLLUP: &str = "/proc/<pid>/smaps_rollup";

// ---------------------------------------------------------------------------
// /proc/<pid>/status
// ---------------------------------------------------------------------------

/// Selected fields of `/proc/<pid>/status`. Memory values are bytes.
///
/// The `vm_*`/`rss_*` fields are 0 when the kernel does not print them
/// (kernel threads and zombies have no `mm`; kernels < 4.5 lack `RssAnon`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    pub vm_peak: u64,
    pub vm_hwm: u64,
    pub threads: u32,
}

/// Parse the text of `/proc/<pid>/status`.
///
/// `Name`, `Tgid`, `PPid`, `Uid` and `Threads` are required.
pub fn parse_status(text: &str) -> Result<ProcStatus, ParseError> {
    let mut name = None;
    let mut tgid = None;
    let mut ppid = None;
    let mut uid = None;
    let mut threads = None;
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
        vm_peak: 0,
        vm_hwm: 0,
        threads: 0,
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
            "Threads" => threads = Some(num(key)?),
            "VmRSS" => st.vm_rss = kb(key)?,
            "RssAnon" => st.rss_anon = kb(key)?,
            "RssFile" => st.rss_file = kb(key)?,
            "RssShmem" => st.rss_shmem = kb(key)?,
            "VmSwap" => st.vm_swap = kb(key)?,
            "VmSize" => st.vm_size = kb(key)?,
            "VmPeak" => st.vm_peak = kb(key)?,
            "VmHWM" => st.vm_hwm = kb(key)?,
            _ => {}
        }
    }
    st.name = name.ok_or(ParseError::missing(STATUS, "Name"))?;
    st.tgid = tgid.ok_or(ParseError::missing(STATUS, "Tgid"))?;
    st.ppid = ppid.ok_or(ParseError::missing(STATUS, "PPid"))?;
    st.uid = uid.ok_or(ParseError::missing(STATUS, "Uid"))?;
    st.threads = threads.ok_or(ParseError::missing(STATUS, "Threads"))?;
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
    read_status_in(Path::new(PROC_ROOT), pid)
}

pub fn read_status_in(proc_root: &Path, pid: u32) -> io::Result<ProcStatus> {
    Ok(parse_status(&read_lossy(&pid_file(proc_root, pid, "status"))?)?)
}

// ---------------------------------------------------------------------------
// /proc/<pid>/statm
// ---------------------------------------------------------------------------

/// `/proc/<pid>/statm`, converted from pages to bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Statm {
    pub size_bytes: u64,
    pub resident_bytes: u64,
    pub shared_bytes: u64,
    pub text_bytes: u64,
    pub data_bytes: u64,
}

/// Parse `/proc/<pid>/statm` (`size resident shared text lib data dt`, in pages).
pub fn parse_statm(text: &str, page_size: u64) -> Result<Statm, ParseError> {
    const NAMES: [&str; 6] = ["size", "resident", "shared", "text", "lib", "data"];
    let mut vals = [0u64; 6];
    let mut it = text.split_whitespace();
    for (i, name) in NAMES.iter().enumerate() {
        let tok = it.next().ok_or(ParseError::missing(STATM, name))?;
        vals[i] = tok
            .parse::<u64>()
            .map_err(|_| ParseError::invalid(STATM, name, tok))?
            .saturating_mul(page_size);
    }
    Ok(Statm {
        size_bytes: vals[0],
        resident_bytes: vals[1],
        shared_bytes: vals[2],
        text_bytes: vals[3],
        data_bytes: vals[5],
    })
}

pub fn read_statm(pid: u32, page_size: u64) -> io::Result<Statm> {
    read_statm_in(Path::new(PROC_ROOT), pid, page_size)
}

pub fn read_statm_in(proc_root: &Path, pid: u32, page_size: u64) -> io::Result<Statm> {
    Ok(parse_statm(
        &read_lossy(&pid_file(proc_root, pid, "statm"))?,
        page_size,
    )?)
}

// ---------------------------------------------------------------------------
// /proc/<pid>/stat
// ---------------------------------------------------------------------------

/// Selected fields of `/proc/<pid>/stat` (field numbers as in proc(5)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProcStat {
    /// (1)
    pub pid: u32,
    /// (2) without the parentheses; may itself contain spaces and `)`.
    pub comm: String,
    /// (3) R, S, D, Z, T, t, X, I, …
    pub state: char,
    /// (4)
    pub ppid: u32,
    /// (10)
    pub minflt: u64,
    /// (12)
    pub majflt: u64,
    /// (14) clock ticks
    pub utime_ticks: u64,
    /// (15) clock ticks
    pub stime_ticks: u64,
    /// (20)
    pub num_threads: u32,
    /// (22) start time after boot, in clock ticks (`sysconf(_SC_CLK_TCK)`, usually 100).
    pub starttime_ticks: u64,
    /// (23) bytes
    pub vsize_bytes: u64,
    /// (24) pages
    pub rss_pages: u64,
}

/// Parse `/proc/<pid>/stat`. The comm is delimited by the first `(` and the
/// *last* `)`, so names like `a) (b` are handled.
pub fn parse_stat(text: &str) -> Result<ProcStat, ParseError> {
    let text = text.trim_end_matches(['\n', '\0']);
    let open = text.find('(').ok_or(ParseError::malformed(STAT, text))?;
    let close = text.rfind(')').ok_or(ParseError::malformed(STAT, text))?;
    if close < open {
        return Err(ParseError::malformed(STAT, text));
    }
    let pid_s = text[..open].trim();
    let pid = pid_s
        .parse::<u32>()
        .map_err(|_| ParseError::invalid(STAT, "pid", pid_s))?;
    let comm = text[open + 1..close].to_string();
    // rest[i] is field number i + 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    fn field<T: std::str::FromStr>(rest: &[&str], num: usize, name: &'static str) -> Result<T, ParseError> {
        let tok = rest.get(num - 3).ok_or(ParseError::missing(STAT, name))?;
        tok.parse::<T>().map_err(|_| ParseError::invalid(STAT, name, tok))
    }
    let state_s = rest.first().ok_or(ParseError::missing(STAT, "state"))?;
    let mut state_chars = state_s.chars();
    let state = match (state_chars.next(), state_chars.next()) {
        (Some(c), None) => c,
        _ => return Err(ParseError::invalid(STAT, "state", state_s)),
    };
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid: field(&rest, 4, "ppid")?,
        minflt: field(&rest, 10, "minflt")?,
        majflt: field(&rest, 12, "majflt")?,
        utime_ticks: field(&rest, 14, "utime")?,
        stime_ticks: field(&rest, 15, "stime")?,
        num_threads: field(&rest, 20, "num_threads")?,
        starttime_ticks: field(&rest, 22, "starttime")?,
        vsize_bytes: field(&rest, 23, "vsize")?,
        rss_pages: field(&rest, 24, "rss")?,
    })
}

pub fn read_stat(pid: u32) -> io::Result<ProcStat> {
    read_stat_in(Path::new(PROC_ROOT), pid)
}

pub fn read_stat_in(proc_root: &Path, pid: u32) -> io::Result<ProcStat> {
    Ok(parse_stat(&read_lossy(&pid_file(proc_root, pid, "stat"))?)?)
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
    read_cmdline_in(Path::new(PROC_ROOT), pid)
}

pub fn read_cmdline_in(proc_root: &Path, pid: u32) -> io::Result<Vec<String>> {
    Ok(parse_cmdline(&fs::read(pid_file(proc_root, pid, "cmdline"))?))
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
// /proc/meminfo
// ---------------------------------------------------------------------------

/// Selected fields of `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MemInfo {
    pub mem_total: u64,
    /// `MemAvailable`; estimated as `MemFree + Buffers + Cached` on kernels
    /// older than 3.14 that lack it.
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// Parse `/proc/meminfo`; `MemTotal` is required.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, ParseError> {
    let mut map: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "MemTotal" | "MemAvailable" | "MemFree" | "Buffers" | "Cached" | "SwapTotal" | "SwapFree" => {
                let v = parse_kb(value).ok_or_else(|| ParseError::invalid(MEMINFO, key, value.trim()))?;
                map.insert(key, v);
            }
            _ => {}
        }
    }
    let get = |k: &str| map.get(k).copied();
    let mem_total = get("MemTotal").ok_or(ParseError::missing(MEMINFO, "MemTotal"))?;
    let mem_available = match get("MemAvailable") {
        Some(v) => v,
        None => get("MemFree")
            .unwrap_or(0)
            .saturating_add(get("Buffers").unwrap_or(0))
            .saturating_add(get("Cached").unwrap_or(0)),
    };
    Ok(MemInfo {
        mem_total,
        mem_available,
        swap_total: get("SwapTotal").unwrap_or(0),
        swap_free: get("SwapFree").unwrap_or(0),
    })
}

pub fn read_meminfo() -> io::Result<MemInfo> {
    read_meminfo_in(Path::new(PROC_ROOT))
}

pub fn read_meminfo_in(proc_root: &Path) -> io::Result<MemInfo> {
    Ok(parse_meminfo(&read_lossy(&proc_root.join("meminfo"))?)?)
}

// ---------------------------------------------------------------------------
// /proc/pressure/memory (also the format of cgroup v2 memory.pressure)
// ---------------------------------------------------------------------------

/// One line of a PSI file.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PsiLine {
    /// Percent of wall time stalled, averaged over 10 s.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Cumulative stall time in microseconds.
    pub total_usec: u64,
}

/// Pressure stall information for memory.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Psi {
    pub some: PsiLine,
    /// Always present for memory; `None` only if the kernel omitted the line.
    pub full: Option<PsiLine>,
}

/// Parse `/proc/pressure/memory` (or a cgroup v2 `memory.pressure`).
pub fn parse_psi(text: &str) -> Result<Psi, ParseError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut toks = line.split_whitespace();
        let kind = toks.next();
        let slot = match kind {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let (mut a10, mut a60, mut a300, mut total) = (None, None, None, None);
        for tok in toks {
            let Some((k, v)) = tok.split_once('=') else {
                return Err(ParseError::malformed(PSI, line));
            };
            let badf = || ParseError::invalid(PSI, k, v);
            match k {
                "avg10" => a10 = Some(parse_f64(v).ok_or_else(badf)?),
                "avg60" => a60 = Some(parse_f64(v).ok_or_else(badf)?),
                "avg300" => a300 = Some(parse_f64(v).ok_or_else(badf)?),
                "total" => total = Some(v.parse::<u64>().map_err(|_| badf())?),
                _ => {}
            }
        }
        *slot = Some(PsiLine {
            avg10: a10.ok_or(ParseError::missing(PSI, "avg10"))?,
            avg60: a60.ok_or(ParseError::missing(PSI, "avg60"))?,
            avg300: a300.ok_or(ParseError::missing(PSI, "avg300"))?,
            total_usec: total.ok_or(ParseError::missing(PSI, "total"))?,
        });
    }
    Ok(Psi {
        some: some.ok_or(ParseError::missing(PSI, "some"))?,
        full,
    })
}

fn parse_f64(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `/proc/pressure/memory`; `None` if PSI is absent/disabled or unparsable.
pub fn read_psi_memory() -> Option<Psi> {
    read_psi_memory_in(Path::new(PROC_ROOT))
}

pub fn read_psi_memory_in(proc_root: &Path) -> Option<Psi> {
    read_psi_file(&proc_root.join("pressure/memory"))
}

/// Any PSI-format file (e.g. a cgroup v2 `memory.pressure`); `None` if it is
/// absent, unreadable (PSI disabled gives `EOPNOTSUPP`) or unparsable.
pub fn read_psi_file(path: &Path) -> Option<Psi> {
    parse_psi(&read_lossy(path).ok()?).ok()
}

// ---------------------------------------------------------------------------
// /proc/vmstat
// ---------------------------------------------------------------------------

/// The system-wide `oom_kill` counter from `/proc/vmstat` (kernel ≥ 4.13).
pub fn parse_vmstat_oom_kill(text: &str) -> Result<u64, ParseError> {
    for line in text.lines() {
        let mut toks = line.split_whitespace();
        if toks.next() == Some("oom_kill") {
            let v = toks.next().unwrap_or("");
            return v.parse::<u64>().map_err(|_| ParseError::invalid(VMSTAT, "oom_kill", v));
        }
    }
    Err(ParseError::missing(VMSTAT, "oom_kill"))
}

pub fn read_vmstat_oom_kill() -> io::Result<u64> {
    read_vmstat_oom_kill_in(Path::new(PROC_ROOT))
}

pub fn read_vmstat_oom_kill_in(proc_root: &Path) -> io::Result<u64> {
    Ok(parse_vmstat_oom_kill(&read_lossy(&proc_root.join("vmstat"))?)?)
}

// ---------------------------------------------------------------------------
// /proc/<pid>/smaps_rollup and /proc/<pid>/smaps
// ---------------------------------------------------------------------------

/// Parse `/proc/<pid>/smaps_rollup` into `key → bytes` for every `Key: N kB`
/// line (`Rss`, `Pss`, `Anonymous`, `Swap`, …). The `[rollup]` header and
/// lines without a kB value are skipped; a kernel thread gives an empty map.
pub fn parse_smaps_rollup(text: &str) -> Result<BTreeMap<String, u64>, ParseError> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        if value.trim_end().ends_with(" kB") {
            let v = parse_kb(value).ok_or_else(|| ParseError::invalid(SMAPS_ROLLUP, key, value.trim()))?;
            map.insert(key.to_string(), v);
        }
    }
    Ok(map)
}

/// Note: kernel threads give `ESRCH` ("No such process") rather than an empty
/// file, and processes that are not dumpable may give `EACCES` even to root.
pub fn read_smaps_rollup(pid: u32) -> io::Result<BTreeMap<String, u64>> {
    read_smaps_rollup_in(Path::new(PROC_ROOT), pid)
}

pub fn read_smaps_rollup_in(proc_root: &Path, pid: u32) -> io::Result<BTreeMap<String, u64>> {
    Ok(parse_smaps_rollup(&read_lossy(&pid_file(
        proc_root,
        pid,
        "smaps_rollup",
    ))?)?)
}

/// One VMA from `/proc/<pid>/smaps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
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

/// Parse every mapping of `/proc/<pid>/smaps`. Lenient: unrecognised lines
/// (and key lines before the first header) are skipped.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if let Some(m) = parse_smaps_header(line) {
            maps.push(m);
            continue;
        }
        let Some(cur) = maps.last_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "Rss" => &mut cur.rss_bytes,
            "Anonymous" => &mut cur.anon_bytes,
            "Swap" => &mut cur.swap_bytes,
            _ => continue,
        };
        if let Some(v) = parse_kb(value) {
            *slot = v;
        }
    }
    maps
}

/// `start-end perms offset dev inode [path]`
fn parse_smaps_header(line: &str) -> Option<Mapping> {
    let (range, rest) = next_token(line)?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let (perms, rest) = next_token(rest)?;
    if perms.len() != 4 || !perms.bytes().all(|b| b"rwxps-".contains(&b)) {
        return None;
    }
    let (_offset, rest) = next_token(rest)?;
    let (dev, rest) = next_token(rest)?;
    if !dev.contains(':') {
        return None;
    }
    let (_inode, rest) = next_token(rest)?;
    Some(Mapping {
        start,
        end,
        perms: perms.to_string(),
        path: rest.trim().to_string(),
        rss_bytes: 0,
        anon_bytes: 0,
        swap_bytes: 0,
    })
}

/// The `n` mappings with the largest RSS (ties: lower address first).
pub fn top_mappings_by_rss(smaps_text: &str, n: usize) -> Vec<Mapping> {
    let mut maps = parse_smaps(smaps_text);
    maps.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.start.cmp(&b.start)));
    maps.truncate(n);
    maps
}

pub fn read_top_mappings(pid: u32, n: usize) -> io::Result<Vec<Mapping>> {
    read_top_mappings_in(Path::new(PROC_ROOT), pid, n)
}

pub fn read_top_mappings_in(proc_root: &Path, pid: u32, n: usize) -> io::Result<Vec<Mapping>> {
    Ok(top_mappings_by_rss(&read_lossy(&pid_file(proc_root, pid, "smaps"))?, n))
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn pid_file(proc_root: &Path, pid: u32, name: &str) -> PathBuf {
    proc_root.join(pid.to_string()).join(name)
}

/// Read a file as text, replacing invalid UTF-8 (comms and paths may hold any bytes).
pub(crate) fn read_lossy(path: &Path) -> io::Result<String> {
    let bytes = fs::read(path)?;
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

/// Split off the first whitespace-delimited token.
fn next_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const MEMINFO_SAMPLE: &str = "MemTotal:       24684096 kB
MemFree:        24503476 kB
MemAvailable:   24435232 kB
Buffers:             928 kB
Cached:            84956 kB
SwapCached:            0 kB
SwapTotal:       2097148 kB
SwapFree:        2000000 kB
Zswap:                 0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    const PSI_SAMPLE: &str = "some avg10=1.25 avg60=0.50 avg300=0.10 total=123456
full avg10=0.75 avg60=0.25 avg300=0.05 total=65432
";

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
                vm_peak: 3060 * 1024,
                vm_hwm: 1664 * 1024,
                threads: 1,
            }
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["vm_rss"], 1664 * 1024);
        assert_eq!(json["rss_anon"], 112 * 1024);
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
    fn statm_pages_to_bytes() {
        let s = parse_statm("765 410 382 5 0 123 0\n", 4096).unwrap();
        assert_eq!(
            s,
            Statm {
                size_bytes: 765 * 4096,
                resident_bytes: 410 * 4096,
                shared_bytes: 382 * 4096,
                text_bytes: 5 * 4096,
                data_bytes: 123 * 4096,
            }
        );
        assert!(parse_statm("1 2 3", 4096).is_err());
        assert!(
            parse_statm("1 2 x 4 5 6 7", 4096)
                .unwrap_err()
                .to_string()
                .contains("shared")
        );
    }

    #[test]
    fn stat_parses_real_sample() {
        let s = parse_stat(STAT_SAMPLE).unwrap();
        assert_eq!(s.pid, 2884);
        assert_eq!(s.comm, "cat");
        assert_eq!(s.state, 'R');
        assert_eq!(s.ppid, 2880);
        assert_eq!(s.minflt, 99);
        assert_eq!(s.majflt, 3);
        assert_eq!(s.utime_ticks, 7);
        assert_eq!(s.stime_ticks, 5);
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.starttime_ticks, 46747);
        assert_eq!(s.vsize_bytes, 3133440);
        assert_eq!(s.rss_pages, 382);
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let text = STAT_SAMPLE.replace("(cat)", "(a) b (c) d)");
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.comm, "a) b (c) d");
        assert_eq!(s.state, 'R');
        assert_eq!(s.starttime_ticks, 46747);
        let text = STAT_SAMPLE.replace("(cat)", "(R 1 2 3)");
        assert_eq!(parse_stat(&text).unwrap().starttime_ticks, 46747);
    }

    #[test]
    fn stat_short_line_is_error() {
        let err = parse_stat("1 (x) S 0 1 1 0 -1").unwrap_err();
        assert!(err.to_string().contains("minflt"), "{err}");
        assert!(parse_stat(") 1 (").is_err());
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
    fn meminfo_parses() {
        let m = parse_meminfo(MEMINFO_SAMPLE).unwrap();
        assert_eq!(
            m,
            MemInfo {
                mem_total: 24684096 * 1024,
                mem_available: 24435232 * 1024,
                swap_total: 2097148 * 1024,
                swap_free: 2000000 * 1024,
            }
        );
    }

    #[test]
    fn meminfo_estimates_available_on_old_kernels() {
        let text =
            "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 50 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
        assert_eq!(parse_meminfo(text).unwrap().mem_available, 160 * 1024);
        assert_eq!(
            parse_meminfo("MemFree: 1 kB\n").unwrap_err(),
            ParseError::missing(MEMINFO, "MemTotal")
        );
    }

    #[test]
    fn psi_parses() {
        let p = parse_psi(PSI_SAMPLE).unwrap();
        assert_eq!(p.some.avg10, 1.25);
        assert_eq!(p.some.avg300, 0.10);
        assert_eq!(p.some.total_usec, 123456);
        let full = p.full.unwrap();
        assert_eq!(full.avg60, 0.25);
        assert_eq!(full.total_usec, 65432);
        let p = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        assert!(p.full.is_none());
        assert!(parse_psi("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").is_err());
        assert!(parse_psi("some avg10=NaN avg60=0.00 avg300=0.00 total=0\n").is_err());
    }

    #[test]
    fn vmstat_oom_kill() {
        let text = "nr_free_pages 6125869\noom_kill_other 9\noom_kill 3\nnuma_hit 1\n";
        assert_eq!(parse_vmstat_oom_kill(text).unwrap(), 3);
        assert_eq!(
            parse_vmstat_oom_kill("nr_free_pages 1\n").unwrap_err(),
            ParseError::missing(VMSTAT, "oom_kill")
        );
        assert!(parse_vmstat_oom_kill("oom_kill x\n").is_err());
    }

    #[test]
    fn smaps_rollup_parses() {
        let m = parse_smaps_rollup(SMAPS_ROLLUP_SAMPLE).unwrap();
        assert_eq!(m["Rss"], 1700 * 1024);
        assert_eq!(m["Anonymous"], 108 * 1024);
        assert_eq!(m["Swap"], 4 * 1024);
        assert_eq!(m.len(), 7);
        assert!(parse_smaps_rollup("").unwrap().is_empty());
    }

    #[test]
    fn smaps_top_mappings() {
        let all = parse_smaps(SMAPS_SAMPLE);
        assert_eq!(all.len(), 4);
        let top = top_mappings_by_rss(SMAPS_SAMPLE, 2);
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
        assert_eq!(all[3].path, "/memfd:my buf (deleted)");
        assert_eq!(all[0].path, "/usr/bin/head");
        assert_eq!(top_mappings_by_rss(SMAPS_SAMPLE, 0), vec![]);
        assert_eq!(top_mappings_by_rss(SMAPS_SAMPLE, 99).len(), 4);
    }

    #[test]
    fn parsers_never_panic_on_prefixes_or_garbage() {
        let samples = [
            STATUS_6_18,
            KTHREAD_STATUS,
            STAT_SAMPLE,
            MEMINFO_SAMPLE,
            PSI_SAMPLE,
            SMAPS_ROLLUP_SAMPLE,
            SMAPS_SAMPLE,
            "765 410 382 5 0 123 0\n",
            "oom_kill 3\n",
        ];
        let run = |s: &str| {
            let _ = parse_status(s);
            let _ = parse_statm(s, 4096);
            let _ = parse_statm(s, u64::MAX);
            let _ = parse_stat(s);
            let _ = parse_cmdline(s.as_bytes());
            let _ = redact_cmdline(&s.split(' ').map(String::from).collect::<Vec<_>>());
            let _ = parse_meminfo(s);
            let _ = parse_psi(s);
            let _ = parse_vmstat_oom_kill(s);
            let _ = parse_smaps_rollup(s);
            let _ = top_mappings_by_rss(s, 3);
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
        let stat = read_stat(pid).unwrap();
        assert_eq!(stat.pid, pid);
        assert!(read_statm(pid, 4096).unwrap().resident_bytes > 0);
        assert!(!read_cmdline(pid).unwrap().is_empty());
        assert!(read_meminfo().unwrap().mem_total > 0);
        assert!(read_smaps_rollup(pid).unwrap().contains_key("Rss"));
        assert!(!read_top_mappings(pid, 5).unwrap().is_empty());
        let _ = read_psi_memory();
        let _ = read_vmstat_oom_kill();
        assert!(read_status(u32::MAX).is_err());
    }

    #[test]
    fn readers_take_a_proc_root() {
        let dir = std::env::temp_dir().join(format!("lt-proc-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("42")).unwrap();
        fs::create_dir_all(dir.join("pressure")).unwrap();
        fs::write(dir.join("42/status"), STATUS_6_18).unwrap();
        fs::write(dir.join("42/cmdline"), b"app\0--token=x\0").unwrap();
        fs::write(dir.join("meminfo"), MEMINFO_SAMPLE).unwrap();
        fs::write(dir.join("pressure/memory"), PSI_SAMPLE).unwrap();
        fs::write(dir.join("vmstat"), "oom_kill 7\n").unwrap();
        assert_eq!(read_status_in(&dir, 42).unwrap().tgid, 2882);
        assert_eq!(read_cmdline_in(&dir, 42).unwrap(), vec!["app", "--token=x"]);
        assert_eq!(read_meminfo_in(&dir).unwrap().mem_total, 24684096 * 1024);
        assert_eq!(read_psi_memory_in(&dir).unwrap().some.total_usec, 123456);
        assert_eq!(read_vmstat_oom_kill_in(&dir).unwrap(), 7);
        fs::write(dir.join("vmstat"), "nothing 1\n").unwrap();
        assert_eq!(
            read_vmstat_oom_kill_in(&dir).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        fs::remove_file(dir.join("pressure/memory")).unwrap();
        assert!(read_psi_memory_in(&dir).is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
