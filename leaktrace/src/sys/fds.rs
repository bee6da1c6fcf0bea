//! A process's open file descriptors: how many (cheap: one `stat`), of which kinds (costly: one
//! `readlink` per descriptor), and how many it may have (`RLIMIT_NOFILE`).
//!
//! Costs (Linux 6.18, 2 shared vCPUs; `monitor::resources` `read_costs`, figures in README.md
//! "What it costs"): `stat("/proc/PID/fd")` 1.6 µs whatever the number of descriptors (its size
//! is the count since Linux 6.2), 1/25 of a `/proc/PID/status` read; a kind scan 4.6–7.9 µs per
//! descriptor (the listing and one `readlinkat` each), a sixth of a status read per descriptor.
//! So the monitor stats often and scans only when the count moved.
use std::{
    ffi::CString,
    fs,
    io::{self, Read as _},
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
};

use serde::{Deserialize, Serialize};

/// Descriptors by what they point to. Serialised with only the non-zero kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdCounts {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub socket: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pipe: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eventfd: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoll: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timerfd: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inotify: u32,
    /// Other anonymous inodes: signalfd, pidfd, io_uring, bpf maps and programs, perf events, ...
    #[serde(default, skip_serializing_if = "is_zero")]
    pub anon_inode: u32,
    /// memfd_create() files (shared memory: their pages count as the host's Shmem).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memfd: u32,
    /// Files and directories with a path (devices included).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub file: u32,
    /// Anything else (namespaces, ...).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// One kind of descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FdKind {
    Socket,
    Pipe,
    Eventfd,
    Epoll,
    Timerfd,
    Inotify,
    AnonInode,
    Memfd,
    File,
    Other,
}

impl FdKind {
    pub const ALL: [FdKind; 10] = [
        FdKind::Socket,
        FdKind::Pipe,
        FdKind::Eventfd,
        FdKind::Epoll,
        FdKind::Timerfd,
        FdKind::Inotify,
        FdKind::AnonInode,
        FdKind::Memfd,
        FdKind::File,
        FdKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FdKind::Socket => "socket",
            FdKind::Pipe => "pipe",
            FdKind::Eventfd => "eventfd",
            FdKind::Epoll => "epoll",
            FdKind::Timerfd => "timerfd",
            FdKind::Inotify => "inotify",
            FdKind::AnonInode => "anon_inode",
            FdKind::Memfd => "memfd",
            FdKind::File => "file",
            FdKind::Other => "other",
        }
    }

    /// What a `/proc/PID/fd/N` link points to, from its target.
    pub fn of_link(target: &[u8]) -> FdKind {
        if target.starts_with(b"socket:[") {
            FdKind::Socket
        } else if target.starts_with(b"pipe:[") {
            FdKind::Pipe
        } else if let Some(rest) = target.strip_prefix(b"anon_inode:") {
            let rest = rest.strip_prefix(b"[").unwrap_or(rest);
            let rest = rest.strip_suffix(b"]").unwrap_or(rest);
            match rest {
                b"eventfd" => FdKind::Eventfd,
                b"eventpoll" => FdKind::Epoll,
                b"timerfd" => FdKind::Timerfd,
                b"inotify" => FdKind::Inotify,
                _ => FdKind::AnonInode,
            }
        } else if target.starts_with(b"/memfd:") {
            FdKind::Memfd
        } else if target.starts_with(b"/") {
            FdKind::File
        } else {
            FdKind::Other
        }
    }
}

impl FdCounts {
    pub fn get(&self, k: FdKind) -> u32 {
        match k {
            FdKind::Socket => self.socket,
            FdKind::Pipe => self.pipe,
            FdKind::Eventfd => self.eventfd,
            FdKind::Epoll => self.epoll,
            FdKind::Timerfd => self.timerfd,
            FdKind::Inotify => self.inotify,
            FdKind::AnonInode => self.anon_inode,
            FdKind::Memfd => self.memfd,
            FdKind::File => self.file,
            FdKind::Other => self.other,
        }
    }

    fn slot(&mut self, k: FdKind) -> &mut u32 {
        match k {
            FdKind::Socket => &mut self.socket,
            FdKind::Pipe => &mut self.pipe,
            FdKind::Eventfd => &mut self.eventfd,
            FdKind::Epoll => &mut self.epoll,
            FdKind::Timerfd => &mut self.timerfd,
            FdKind::Inotify => &mut self.inotify,
            FdKind::AnonInode => &mut self.anon_inode,
            FdKind::Memfd => &mut self.memfd,
            FdKind::File => &mut self.file,
            FdKind::Other => &mut self.other,
        }
    }

    pub fn add(&mut self, k: FdKind) {
        let s = self.slot(k);
        *s = s.saturating_add(1);
    }

    pub fn total(&self) -> u64 {
        FdKind::ALL.iter().map(|k| u64::from(self.get(*k))).sum()
    }
}

/// A process's descriptors by kind, and the inodes of its sockets (for socket memory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FdScan {
    pub counts: FdCounts,
    pub socket_inodes: Vec<u64>,
}

/// The inode of a `socket:[N]` link target.
fn socket_inode(target: &[u8]) -> Option<u64> {
    let n = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// Read every descriptor of `pid` (one `readlinkat` each). Descriptors closed while reading are
/// skipped; a process that is gone or not readable is an error.
pub fn scan(pid: u32) -> io::Result<FdScan> {
    let path = format!("/proc/{pid}/fd");
    let dir = fs::File::open(&path)?;
    let mut out = FdScan::default();
    let mut buf = [0u8; 256];
    for e in fs::read_dir(&path)? {
        let Ok(e) = e else { continue };
        let Ok(name) = CString::new(e.file_name().as_bytes()) else {
            continue;
        };
        // SAFETY: `dir` is an open directory, `name` a NUL-terminated relative name, and `buf`
        // is writable for its length; readlinkat writes at most that many bytes.
        let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            continue;
        }
        let target = &buf[..n as usize];
        let kind = FdKind::of_link(target);
        out.counts.add(kind);
        if kind == FdKind::Socket
            && let Some(ino) = socket_inode(target)
        {
            out.socket_inodes.push(ino);
        }
    }
    Ok(out)
}

/// The number of open descriptors from one `stat` of `/proc/PID/fd` (its size, Linux ≥ 6.2);
/// None when the kernel does not report it (size 0) or the process is gone.
pub fn count(pid: u32) -> Option<u64> {
    let m = fs::metadata(format!("/proc/{pid}/fd")).ok()?;
    (m.len() > 0).then_some(m.len())
}

/// The soft `RLIMIT_NOFILE` of `pid` ("Max open files" in `/proc/PID/limits`); None when
/// unlimited or unreadable.
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let mut text = String::new();
    fs::File::open(format!("/proc/{pid}/limits"))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    parse_nofile_limit(&text)
}

/// "Max open files            1024                 1048576              files" → 1024.
pub fn parse_nofile_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_kinds() {
        let cases: &[(&[u8], FdKind)] = &[
            (b"socket:[123]", FdKind::Socket),
            (b"pipe:[99]", FdKind::Pipe),
            (b"anon_inode:[eventfd]", FdKind::Eventfd),
            (b"anon_inode:[eventpoll]", FdKind::Epoll),
            (b"anon_inode:[timerfd]", FdKind::Timerfd),
            (b"anon_inode:inotify", FdKind::Inotify),
            (b"anon_inode:[signalfd]", FdKind::AnonInode),
            (b"anon_inode:bpf-map", FdKind::AnonInode),
            (b"/memfd:jit (deleted)", FdKind::Memfd),
            (b"/dev/null", FdKind::File),
            (b"/tmp/x (deleted)", FdKind::File),
            (b"net:[4026531840]", FdKind::Other),
            (b"", FdKind::Other),
        ];
        for (t, k) in cases {
            assert_eq!(FdKind::of_link(t), *k, "{}", String::from_utf8_lossy(t));
        }
        assert_eq!(socket_inode(b"socket:[4242]"), Some(4242));
        assert_eq!(socket_inode(b"socket:[x]"), None);
        assert_eq!(socket_inode(b"pipe:[1]"), None);
    }

    #[test]
    fn counts_serialise_only_what_is_there() {
        let mut c = FdCounts::default();
        c.add(FdKind::Pipe);
        c.add(FdKind::Pipe);
        c.add(FdKind::Socket);
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"socket":1,"pipe":2}"#);
        assert_eq!(c.total(), 3);
        let back: FdCounts = serde_json::from_str(r#"{"pipe":2,"socket":1}"#).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95034                95034                processes \n\
                    Max open files            1024                 1048576              files     \n";
        assert_eq!(parse_nofile_limit(text), Some(1024));
        assert_eq!(
            parse_nofile_limit("Max open files            unlimited            unlimited            files\n"),
            None
        );
        assert_eq!(parse_nofile_limit(""), None);
        assert_eq!(parse_nofile_limit("Max open files"), None);
    }

    #[test]
    fn this_process() {
        let pid = std::process::id();
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: a valid two-int array for pipe(2).
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        let s = scan(pid).unwrap();
        assert!(s.counts.pipe >= 2, "{s:?}");
        if let Some(n) = count(pid) {
            // Other test threads open and close files meanwhile: only roughly equal.
            assert!(n.abs_diff(s.counts.total()) < 64, "{n} vs {s:?}");
        }
        assert!(nofile_limit(pid).is_some_and(|l| l > 0));
        // SAFETY: closing the pipe opened above.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
        assert!(scan(4_000_000_000).is_err());
        assert_eq!(count(4_000_000_000), None);
    }
}
