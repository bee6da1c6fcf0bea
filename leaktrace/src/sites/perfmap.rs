//! Names of JIT-compiled and interpreter code from `/tmp/perf-PID.map` (node
//! `--perf-basic-prof`, Java perf-map agents, CPython ≥ 3.12 `-X perf`, ...).
//!
//! Each line is `START SIZE NAME` (hex, with or without `0x`); later lines win where ranges
//! overlap (code is recompiled and its memory reused). The file is the process's own: it is read
//! through `/proc/PID/root` (the process's /tmp, e.g. in a container) and named with the pid the
//! process sees (the last `NSpid` of /proc/PID/status, in its own pid namespace). It grows while
//! the process runs, so it is read incrementally, from where the last read stopped.
use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{Read as _, Seek as _, SeekFrom},
    path::PathBuf,
};

/// Bounds: names kept, and bytes of map file read per process.
const MAX_ENTRIES: usize = 1 << 20;
const MAX_BYTES: u64 = 256 << 20;

#[derive(Debug, Default)]
pub struct PerfMap {
    path: Option<PathBuf>,
    /// start → (end, name)
    entries: BTreeMap<u64, (u64, String)>,
    read_to: u64,
    partial: String,
}

/// The pid `pid` has in its own pid namespace (last field of `NSpid:`).
pub fn ns_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// One map line: (start, end, name).
pub fn parse_line(line: &str) -> Option<(u64, u64, &str)> {
    let mut f = line.trim_end().splitn(3, ' ');
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let start = hex(f.next()?)?;
    let size = hex(f.next()?)?;
    let name = f.next()?.trim();
    if size == 0 || name.is_empty() {
        return None;
    }
    Some((start, start.checked_add(size)?, name))
}

impl PerfMap {
    /// The map of process `pid` (nothing is read yet).
    pub fn for_pid(pid: u32) -> PerfMap {
        let path = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| ns_pid(&s))
            .map(|ns| PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{ns}.map")));
        PerfMap {
            path,
            ..Default::default()
        }
    }

    #[cfg(test)]
    pub fn from_path(path: PathBuf) -> PerfMap {
        PerfMap {
            path: Some(path),
            ..Default::default()
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Read what was appended since the last call (from the start if the file was replaced).
    pub fn refresh(&mut self) {
        let Some(path) = &self.path else { return };
        let Ok(mut f) = File::open(path) else { return };
        let Ok(size) = f.metadata().map(|m| m.len()) else {
            return;
        };
        if size < self.read_to {
            self.entries.clear();
            self.read_to = 0;
            self.partial.clear();
        }
        if size == self.read_to || self.read_to >= MAX_BYTES {
            return;
        }
        let want = size.min(MAX_BYTES) - self.read_to;
        if f.seek(SeekFrom::Start(self.read_to)).is_err() {
            return;
        }
        let mut buf = Vec::with_capacity(want as usize);
        if f.take(want).read_to_end(&mut buf).is_err() {
            return;
        }
        self.read_to += buf.len() as u64;
        let text = std::mem::take(&mut self.partial) + &String::from_utf8_lossy(&buf);
        let (whole, rest) = match text.rfind('\n') {
            Some(i) => text.split_at(i + 1),
            None => ("", text.as_str()),
        };
        for line in whole.lines() {
            if let Some((s, e, name)) = parse_line(line) {
                self.insert(s, e, name);
            }
        }
        self.partial = rest.to_string();
    }

    fn insert(&mut self, start: u64, end: u64, name: &str) {
        // Older entries overlapping the new range are gone (that code was replaced).
        let overlapping: Vec<u64> = self
            .entries
            .range(..end)
            .rev()
            .take_while(|(_, (e, _))| *e > start)
            .map(|(s, _)| *s)
            .collect();
        for s in overlapping {
            self.entries.remove(&s);
        }
        if self.entries.len() < MAX_ENTRIES {
            self.entries.insert(start, (end, name.to_string()));
        }
    }

    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let (_, (end, name)) = self.entries.range(..=addr).next_back()?;
        (addr < *end).then_some(name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn lines_and_ns_pid() {
        assert_eq!(
            parse_line("7f00a000 40 LazyCompile:~leak /app/x.js:3\n"),
            Some((0x7f00a000, 0x7f00a040, "LazyCompile:~leak /app/x.js:3"))
        );
        assert_eq!(parse_line("0x10 0x8 py::f:/a.py"), Some((0x10, 0x18, "py::f:/a.py")));
        assert_eq!(parse_line("zz 10 x"), None);
        assert_eq!(parse_line("10 0 empty"), None);
        assert_eq!(parse_line("10 8"), None);
        assert_eq!(ns_pid("Name:\tx\nNSpid:\t4242\t7\nX: 1\n"), Some(7));
        assert_eq!(ns_pid("NSpid:\t4242\n"), Some(4242));
        assert_eq!(ns_pid("Name: x\n"), None);
    }

    #[test]
    fn incremental_reads_and_replacement() {
        let dir = std::env::temp_dir().join(format!("lt-unwind-perfmap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("perf-1.map");
        let mut f = File::create(&path).unwrap();
        write!(f, "1000 100 first\n2000 100 second\n30").unwrap();
        f.flush().unwrap();
        let mut m = PerfMap::from_path(path.clone());
        m.refresh();
        assert_eq!(m.lookup(0x1050), Some("first"));
        assert_eq!(m.lookup(0x2000), Some("second"));
        assert_eq!(m.lookup(0x2100), None);
        assert_eq!(m.lookup(0x3000), None, "a partial line waits for its end");
        // Appended: the partial line completes; new code replaces old code where they overlap.
        write!(f, "00 10 third\n1080 100 recompiled\n").unwrap();
        f.flush().unwrap();
        m.refresh();
        assert_eq!(m.lookup(0x3008), Some("third"));
        assert_eq!(m.lookup(0x1090), Some("recompiled"));
        assert_eq!(m.lookup(0x1010), None, "the old entry overlapping the new one is gone");
        assert_eq!(m.len(), 3);
        // Replaced by a shorter file: read again from the start.
        fs::write(&path, "5000 10 fresh\n").unwrap();
        m.refresh();
        assert_eq!((m.lookup(0x5000), m.lookup(0x2000)), (Some("fresh"), None));
        let mut none = PerfMap::from_path(dir.join("missing.map"));
        none.refresh();
        assert_eq!(none.lookup(1), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
