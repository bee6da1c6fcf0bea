//! The HotSpot attach mechanism, spoken by the agent itself (no JDK tools on the host).
//!
//! 1. The JVM listens on a UNIX socket `/tmp/.java_pid<PID>` — `<PID>` as the JVM sees itself
//!    (its pid namespace), `/tmp` as it sees it (its mount namespace): we reach both through
//!    `/proc/<host pid>/root/tmp`.
//! 2. If the socket is not there yet, the JVM starts its attach listener when it receives SIGQUIT
//!    *and* finds a file `.attach_pid<PID>` in its working directory (or in /tmp) owned by its
//!    own user or root. We create it through `/proc/<pid>/cwd` (falling back to its /tmp), send
//!    SIGQUIT, wait up to ~6 s for the socket, and remove the file. A JVM that does not catch
//!    SIGQUIT (`-Xrs`) would die of it: we check `SigCgt` first and refuse.
//! 3. We connect, send `1\0inspectheap\0-live\0\0\0` (protocol 1, command, three arguments), and
//!    read the status line (`0` = success) and the histogram text until EOF.
//!
//! The JVM accepts a peer only with its own effective uid or root (as its user namespace sees
//! them). So the whole exchange runs on a thread of its own that takes the JVM's effective uid and
//! gid (raw `setresuid`/`setresgid`, which change the calling thread only): files we create are
//! then the JVM's, the socket lets us in, and a container with its own user namespace recognises
//! us. The thread goes back to root before it ends.
//!
//! `-live` makes the JVM run a **full collection** before counting (so the histogram shows what
//! is retained, not garbage): a stop-the-world pause of the whole heap. Callers rate-limit it.
use std::{
    fs,
    io::{Read as _, Write as _},
    os::unix::{fs::FileTypeExt as _, net::UnixStream},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::histogram::{self, Histogram};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no process {0}")]
    NoProcess(u32),
    #[error("pid {0} is not a HotSpot JVM (no libjvm.so mapped)")]
    NotJvm(u32),
    #[error(
        "pid {0} does not handle SIGQUIT (started with -Xrs?): signalling it would kill it, so its attach listener cannot be started"
    )]
    NoSigquit(u32),
    #[error(
        "pid {pid}: the JVM did not open its attach socket {socket} within {secs} s (-XX:+DisableAttachMechanism?)"
    )]
    NoSocket { pid: u32, socket: String, secs: u64 },
    #[error("pid {pid}: {what}: {err}")]
    Io {
        pid: u32,
        what: String,
        #[source]
        err: std::io::Error,
    },
    #[error("pid {pid}: the JVM refused `{command}` (status {status}): {message}")]
    Refused {
        pid: u32,
        command: String,
        status: i32,
        message: String,
    },
    #[error("pid {0}: {1}")]
    Histogram(u32, histogram::HistogramError),
}

/// What we need to know of the target.
#[derive(Debug, Clone)]
struct Target {
    pid: u32,
    /// The pid as the JVM sees itself (innermost pid namespace).
    nspid: u32,
    euid: u32,
    egid: u32,
    /// /proc/PID/root/tmp
    tmp: PathBuf,
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

fn target(pid: u32) -> Result<Target, AttachError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| AttachError::NoProcess(pid))?;
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if !maps.contains("/libjvm.so") {
        return Err(AttachError::NotJvm(pid));
    }
    // SigCgt: a hex mask of caught signals, bit (signal − 1).
    let caught = status_field(&status, "SigCgt:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    if caught & (1 << (libc::SIGQUIT - 1)) == 0 {
        return Err(AttachError::NoSigquit(pid));
    }
    let nspid = status_field(&status, "NSpid:")
        .and_then(|v| v.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(pid);
    let second = |key: &str| {
        status_field(&status, key)
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    Ok(Target {
        pid,
        nspid,
        euid: second("Uid:"),
        egid: second("Gid:"),
        tmp: PathBuf::from(format!("/proc/{pid}/root/tmp")),
    })
}

fn socket_path(t: &Target) -> PathBuf {
    t.tmp.join(format!(".java_pid{}", t.nspid))
}

fn is_socket(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// SIGQUIT with the trigger file in place, then wait for the socket.
fn start_listener(t: &Target) -> Result<(), AttachError> {
    let sock = socket_path(t);
    let name = format!(".attach_pid{}", t.nspid);
    let candidates = [
        PathBuf::from(format!("/proc/{}/cwd", t.pid)).join(&name),
        t.tmp.join(&name),
    ];
    let mut created = None;
    let mut last_err = None;
    for c in candidates {
        match fs::File::create(&c) {
            // The JVM only trusts a trigger owned by its own user (or root): a file system that
            // gives files another owner makes it ignore this one.
            Ok(_)
                if fs::metadata(&c).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt as _;
                    m.uid() == t.euid || m.uid() == 0
                }) =>
            {
                created = Some(c);
                break;
            }
            Ok(_) => {
                let _ = fs::remove_file(&c);
            }
            Err(e) => last_err = Some(e),
        }
    }
    let Some(trigger) = created else {
        return Err(AttachError::Io {
            pid: t.pid,
            what: "creating the .attach_pid trigger file in its working directory or /tmp".into(),
            err: last_err.unwrap_or_else(|| std::io::Error::other("owner not accepted")),
        });
    };
    // SAFETY: signalling a process we checked catches SIGQUIT.
    let r = unsafe { libc::kill(t.pid as i32, libc::SIGQUIT) };
    let sent = if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    };
    let start = Instant::now();
    let mut wait = Duration::from_millis(20);
    let found = sent.is_ok()
        && loop {
            thread::sleep(wait);
            if is_socket(&sock) {
                break true;
            }
            if start.elapsed() > Duration::from_secs(6) {
                break false;
            }
            wait = (wait + Duration::from_millis(20)).min(Duration::from_millis(500));
        };
    let _ = fs::remove_file(&trigger);
    if let Err(err) = sent {
        return Err(AttachError::Io {
            pid: t.pid,
            what: "sending SIGQUIT".into(),
            err,
        });
    }
    if !found {
        return Err(AttachError::NoSocket {
            pid: t.pid,
            socket: sock.display().to_string(),
            secs: 6,
        });
    }
    Ok(())
}

/// Run one attach command; returns the JVM's output after the status line.
fn command(t: &Target, cmd: &str, args: [&str; 3], timeout: Duration) -> Result<String, AttachError> {
    let io = |what: &str| {
        let pid = t.pid;
        let what = what.to_string();
        move |err| AttachError::Io { pid, what, err }
    };
    let sock = socket_path(t);
    if !is_socket(&sock) {
        start_listener(t)?;
    }
    let mut s = UnixStream::connect(&sock).map_err(io(&format!("connecting to {}", sock.display())))?;
    s.set_read_timeout(Some(timeout)).map_err(io("socket timeout"))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io("socket timeout"))?;
    let mut req = Vec::new();
    for part in ["1", cmd, args[0], args[1], args[2]] {
        req.extend_from_slice(part.as_bytes());
        req.push(0);
    }
    s.write_all(&req).map_err(io("sending the command"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(io(&format!(
        "reading the answer to `{cmd}` (a full collection can take a while)"
    )))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (status, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let status: i32 = status.trim().parse().unwrap_or(-1);
    if status != 0 {
        return Err(AttachError::Refused {
            pid: t.pid,
            command: cmd.into(),
            status,
            message: rest.lines().next().unwrap_or(status.to_string().as_str()).to_string(),
        });
    }
    Ok(rest.to_string())
}

/// Run `f` on a thread of its own whose effective uid/gid are the target's (the rest of the
/// process keeps its credentials).
fn as_target<T: Send + 'static>(
    euid: u32,
    egid: u32,
    f: impl FnOnce() -> Result<T, AttachError> + Send + 'static,
) -> Result<T, AttachError> {
    let h = thread::Builder::new()
        .name("leaktrace-attach".into())
        .spawn(move || {
            // SAFETY: raw syscalls changing this thread's credentials only (glibc's wrappers
            // would change every thread's); -1 leaves a field unchanged.
            let me = unsafe { libc::geteuid() };
            let switch = me == 0 && euid != 0;
            if switch {
                // SAFETY: see above.
                unsafe {
                    libc::syscall(libc::SYS_setresgid, -1i32, egid as i32, -1i32);
                    libc::syscall(libc::SYS_setresuid, -1i32, euid as i32, -1i32);
                }
            }
            let r = f();
            if switch {
                // SAFETY: back to root (our saved uid is 0).
                unsafe {
                    libc::syscall(libc::SYS_setresuid, -1i32, 0i32, -1i32);
                    libc::syscall(libc::SYS_setresgid, -1i32, 0i32, -1i32);
                }
            }
            r
        })
        .map_err(|err| AttachError::Io {
            pid: 0,
            what: "starting the attach thread".into(),
            err,
        })?;
    h.join().unwrap_or_else(|_| {
        Err(AttachError::Io {
            pid: 0,
            what: "attach thread".into(),
            err: std::io::Error::other("panicked"),
        })
    })
}

/// A class histogram of live objects of JVM `pid` (forces a full collection in it).
pub fn class_histogram(pid: u32, timeout: Duration) -> Result<Histogram, AttachError> {
    let t = target(pid)?;
    let (euid, egid) = (t.euid, t.egid);
    let text = as_target(euid, egid, move || {
        command(&t, "inspectheap", ["-live", "", ""], timeout)
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    histogram::parse(&text, true, now).map_err(|e| AttachError::Histogram(pid, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_jvm() {
        assert!(matches!(target(u32::MAX - 1), Err(AttachError::NoProcess(_))));
        assert!(matches!(target(std::process::id()), Err(AttachError::NotJvm(_))));
        let s = "Name:\tjava\nSigCgt:\t0000000101005ccf\nNSpid:\t4242\t7\nUid:\t1000\t1001\t1000\t1000\n";
        assert_eq!(status_field(s, "NSpid:"), Some("4242\t7"));
        let caught = u64::from_str_radix(status_field(s, "SigCgt:").unwrap(), 16).unwrap();
        assert!(caught & (1 << (libc::SIGQUIT - 1)) != 0);
    }
}
