//! What the kernel tells at run time: ring-buffer records decoded into typed [`KernelEvent`]s
//! (`source.rs` reads the buffers, [`decode`] turns bytes into events, nothing else in the agent
//! touches raw records), `enrich.rs` fills what an older kernel's tracepoints lack, and
//! `rss_dirty.rs` reads the kernel's marks of processes whose RSS changed (and, through
//! `rss_floor.rs`, the lowest footprint each had during the interval).
pub mod enrich;
pub mod rss_dirty;
pub mod rss_floor;
pub mod source;

use std::mem::size_of;

use leaktrace_common as c;
use leaktrace_common::{EventKind, oom_field};

/// The envelope every event has. `pid` is the tgid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: EventKind,
    pub cpu: u32,
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    pub victim_pid: u32,
    pub victim_comm: Option<String>,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub uid: Option<u32>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
    /// Where fields the tracepoint lacked were filled from (`/proc`, `kernel log`); empty when
    /// the tracepoint carried everything.
    pub filled_from: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Mmap {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i64,
        off: u64,
        ret: i64,
    },
    Munmap {
        addr: u64,
        len: u64,
        ret: i64,
    },
    Brk {
        requested: u64,
        old_brk: Option<u64>,
        new_brk: u64,
    },
    Mremap {
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
        ret: i64,
    },
    Fork {
        child_pid: u32,
    },
    Exec {
        old_pid: u32,
        filename: String,
        /// The new program's argv as the kernel laid it out at exec (before any process-title
        /// rewrite); empty when it could not be read.
        args: Vec<String>,
        /// The argument area was longer than the event keeps: the last of `args` is cut.
        args_cut: bool,
    },
    Exit {
        exit_code: Option<i32>,
    },
    /// The header describes the trigger (the task that ran the OOM killer).
    OomKill(OomKill),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEvent {
    pub hdr: Header,
    pub payload: Payload,
}

impl KernelEvent {
    /// The process the event is about: the victim for an OOM kill, else the header's tgid.
    pub fn subject_pid(&self) -> u32 {
        match &self.payload {
            Payload::OomKill(k) => k.victim_pid,
            _ => self.hdr.pid,
        }
    }
    pub fn subject_comm(&self) -> &str {
        match &self.payload {
            Payload::OomKill(OomKill {
                victim_comm: Some(c), ..
            }) => c,
            _ => &self.hdr.comm,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind} record of {got} bytes, expected at least {want}")]
    Truncated {
        kind: &'static str,
        got: usize,
        want: usize,
    },
}

/// A syscall return value is an error when it is in [-4095, -1].
pub fn is_err_ret(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn read<T: Copy>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Truncated {
            kind: kind.name(),
            got: bytes.len(),
            want: size_of::<T>(),
        });
    }
    // SAFETY: length checked; T is a #[repr(C)] plain-data type from leaktrace-common for which
    // every bit pattern is valid; read_unaligned copes with any alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn header(h: &c::EventHeader, kind: EventKind) -> Header {
    Header {
        kind,
        cpu: h.cpu,
        ts_ns: h.ts_ns,
        pid: h.pid,
        tid: h.tid,
        comm: cstr(&h.comm),
    }
}

/// Decode one ring-buffer record: tag first, then the one decoder for that kind.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    if bytes.len() < size_of::<c::EventHeader>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    let tag = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"));
    let kind = EventKind::from_u32(tag).ok_or(DecodeError::UnknownKind(tag))?;
    Ok(match kind {
        EventKind::Mmap => {
            let e: c::MmapEvent = read(bytes, kind)?;
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::Mmap {
                    addr: e.addr,
                    len: e.len,
                    prot: e.prot,
                    flags: e.flags,
                    fd: e.fd,
                    off: e.off,
                    ret: e.ret,
                },
            }
        }
        EventKind::Munmap => {
            let e: c::MunmapEvent = read(bytes, kind)?;
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::Munmap {
                    addr: e.addr,
                    len: e.len,
                    ret: e.ret,
                },
            }
        }
        EventKind::Brk => {
            let e: c::BrkEvent = read(bytes, kind)?;
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::Brk {
                    requested: e.requested,
                    old_brk: (e.old_known != 0).then_some(e.old_brk),
                    new_brk: e.new_brk,
                },
            }
        }
        EventKind::Mremap => {
            let e: c::MremapEvent = read(bytes, kind)?;
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::Mremap {
                    old_addr: e.old_addr,
                    old_len: e.old_len,
                    new_len: e.new_len,
                    flags: e.flags,
                    new_addr: e.new_addr,
                    ret: e.ret,
                },
            }
        }
        EventKind::Fork => {
            let e: c::ForkEvent = read(bytes, kind)?;
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::Fork { child_pid: e.child_pid },
            }
        }
        EventKind::Exec => {
            let e: c::ExecEvent = read(bytes, kind)?;
            let n = (e.filename_len as usize).min(e.filename.len());
            let a = (e.args_len as usize).min(e.args.len());
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::Exec {
                    old_pid: e.old_pid,
                    filename: cstr(&e.filename[..n]),
                    args: crate::sys::proc::parse_cmdline(&e.args[..a]),
                    args_cut: e.args_total as usize > a,
                },
            }
        }
        EventKind::Exit => {
            let e: c::ExitEvent = read(bytes, kind)?;
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::Exit {
                    exit_code: (e.code_known != 0).then_some(e.exit_code),
                },
            }
        }
        EventKind::OomKill => {
            let e: c::OomKillEvent = read(bytes, kind)?;
            let has = |bit: u32| e.present & bit != 0;
            KernelEvent {
                hdr: header(&e.hdr, kind),
                payload: Payload::OomKill(OomKill {
                    victim_pid: e.victim_pid,
                    victim_comm: has(oom_field::COMM).then(|| cstr(&e.victim_comm)),
                    total_vm_kb: has(oom_field::TOTAL_VM).then_some(e.total_vm_kb),
                    anon_rss_kb: has(oom_field::ANON_RSS).then_some(e.anon_rss_kb),
                    file_rss_kb: has(oom_field::FILE_RSS).then_some(e.file_rss_kb),
                    shmem_rss_kb: has(oom_field::SHMEM_RSS).then_some(e.shmem_rss_kb),
                    uid: has(oom_field::UID).then_some(e.uid),
                    pgtables_kb: has(oom_field::PGTABLES).then_some(e.pgtables_kb),
                    oom_score_adj: has(oom_field::OOM_SCORE_ADJ).then_some(e.oom_score_adj),
                    filled_from: Vec::new(),
                }),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a repr(C) plain-data record.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn hdr(kind: EventKind) -> c::EventHeader {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"workers");
        c::EventHeader {
            kind: kind as u32,
            cpu: 1,
            ts_ns: 42,
            pid: 100,
            tid: 101,
            comm,
        }
    }

    fn expect_hdr(kind: EventKind) -> Header {
        Header {
            kind,
            cpu: 1,
            ts_ns: 42,
            pid: 100,
            tid: 101,
            comm: "workers".into(),
        }
    }

    #[test]
    fn round_trips_every_kind() {
        for kind in EventKind::ALL {
            let (raw, payload) = match kind {
                EventKind::Mmap => (
                    bytes_of(&c::MmapEvent {
                        hdr: hdr(kind),
                        addr: 0,
                        len: 7 << 20,
                        prot: 3,
                        flags: 0x22,
                        fd: -1,
                        off: 0,
                        ret: 0x7f00_0000_0000,
                    }),
                    Payload::Mmap {
                        addr: 0,
                        len: 7 << 20,
                        prot: 3,
                        flags: 0x22,
                        fd: -1,
                        off: 0,
                        ret: 0x7f00_0000_0000,
                    },
                ),
                EventKind::Munmap => (
                    bytes_of(&c::MunmapEvent {
                        hdr: hdr(kind),
                        addr: 0x1000,
                        len: 4096,
                        ret: -22,
                    }),
                    Payload::Munmap {
                        addr: 0x1000,
                        len: 4096,
                        ret: -22,
                    },
                ),
                EventKind::Brk => (
                    bytes_of(&c::BrkEvent {
                        hdr: hdr(kind),
                        requested: 0x2000,
                        old_brk: 0x1000,
                        new_brk: 0x2000,
                        old_known: 1,
                        _pad: 0,
                    }),
                    Payload::Brk {
                        requested: 0x2000,
                        old_brk: Some(0x1000),
                        new_brk: 0x2000,
                    },
                ),
                EventKind::Mremap => (
                    bytes_of(&c::MremapEvent {
                        hdr: hdr(kind),
                        old_addr: 1,
                        old_len: 2,
                        new_len: 3,
                        flags: 1,
                        new_addr: 0,
                        ret: 9,
                    }),
                    Payload::Mremap {
                        old_addr: 1,
                        old_len: 2,
                        new_len: 3,
                        flags: 1,
                        new_addr: 0,
                        ret: 9,
                    },
                ),
                EventKind::Fork => (
                    bytes_of(&c::ForkEvent {
                        hdr: hdr(kind),
                        child_pid: 7,
                        _pad: 0,
                    }),
                    Payload::Fork { child_pid: 7 },
                ),
                EventKind::Exec => {
                    let mut filename = [0u8; c::FILENAME_LEN];
                    filename[..7].copy_from_slice(b"/bin/sh");
                    let mut args = [0u8; c::EXEC_ARGS_LEN];
                    args[..9].copy_from_slice(b"sh\0-c\0\0x\0");
                    (
                        bytes_of(&c::ExecEvent {
                            hdr: hdr(kind),
                            old_pid: 100,
                            filename_len: 7,
                            filename,
                            args_len: 9,
                            args_total: 9,
                            args,
                        }),
                        Payload::Exec {
                            old_pid: 100,
                            filename: "/bin/sh".into(),
                            args: vec!["sh".into(), "-c".into(), "".into(), "x".into()],
                            args_cut: false,
                        },
                    )
                }
                EventKind::Exit => (
                    bytes_of(&c::ExitEvent {
                        hdr: hdr(kind),
                        exit_code: 3,
                        code_known: 1,
                    }),
                    Payload::Exit { exit_code: Some(3) },
                ),
                EventKind::OomKill => {
                    let mut victim_comm = [0u8; 16];
                    victim_comm[..4].copy_from_slice(b"leak");
                    (
                        bytes_of(&c::OomKillEvent {
                            hdr: hdr(kind),
                            victim_pid: 555,
                            uid: 1000,
                            total_vm_kb: 1,
                            anon_rss_kb: 2,
                            file_rss_kb: 3,
                            shmem_rss_kb: 4,
                            pgtables_kb: 5,
                            oom_score_adj: -17,
                            present: 0xff,
                            victim_comm,
                        }),
                        Payload::OomKill(OomKill {
                            victim_pid: 555,
                            victim_comm: Some("leak".into()),
                            total_vm_kb: Some(1),
                            anon_rss_kb: Some(2),
                            file_rss_kb: Some(3),
                            shmem_rss_kb: Some(4),
                            uid: Some(1000),
                            pgtables_kb: Some(5),
                            oom_score_adj: Some(-17),
                            filled_from: Vec::new(),
                        }),
                    )
                }
            };
            assert_eq!(raw.len(), c::record_size(kind));
            let ev = decode(&raw).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(
                ev,
                KernelEvent {
                    hdr: expect_hdr(kind),
                    payload
                },
                "{kind:?}"
            );
            // One byte short of the record is an error, never a panic.
            assert!(decode(&raw[..raw.len() - 1]).is_err());
        }
    }

    #[test]
    fn old_kernel_oom_has_only_pid() {
        let e = c::OomKillEvent {
            hdr: hdr(EventKind::OomKill),
            victim_pid: 9,
            uid: 0,
            total_vm_kb: 0,
            anon_rss_kb: 0,
            file_rss_kb: 0,
            shmem_rss_kb: 0,
            pgtables_kb: 0,
            oom_score_adj: 0,
            present: 0,
            victim_comm: [0; 16],
        };
        let Payload::OomKill(k) = decode(&bytes_of(&e)).unwrap().payload else {
            panic!()
        };
        assert_eq!(k.victim_pid, 9);
        assert_eq!((k.anon_rss_kb, k.victim_comm, k.uid), (None, None, None));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(decode(&[]), Err(DecodeError::Short(0)));
        let mut raw = bytes_of(&c::ForkEvent {
            hdr: hdr(EventKind::Fork),
            child_pid: 1,
            _pad: 0,
        });
        raw[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(decode(&raw), Err(DecodeError::UnknownKind(99)));
        // Arbitrary bytes of every length never panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&buf);
            for k in 0..10u32 {
                let mut b = buf.clone();
                if b.len() >= 4 {
                    b[..4].copy_from_slice(&k.to_ne_bytes());
                }
                let _ = decode(&b);
            }
        }
    }

    #[test]
    fn errno_range() {
        assert!(is_err_ret(-12));
        assert!(!is_err_ret(0x7f00_0000_0000));
        assert!(!is_err_ret(0));
    }
}
