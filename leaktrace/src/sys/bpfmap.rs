//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH` (Linux 5.6+), which aya 0.14 does not expose: a hash map
//! emptied in one or a few `bpf()` calls instead of three per entry (next key, lookup, delete).
//! The agent drains the RSS change marks this way every interval (`events::rss_dirty`).
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// `enum bpf_cmd`: BPF_MAP_LOOKUP_AND_DELETE_BATCH.
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h), all of it: the kernel
/// checks that the bytes past a command's last field are zero, and these are its fields.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries asked for per call: a hash map's batch stops at a bucket boundary, and a bucket with
/// more entries than the room left fails with ENOSPC (then the room is doubled).
const CHUNK: usize = 1024;

/// Remove every entry of the hash map `fd` (keys `K`, values `V`, both exactly the map's sizes)
/// and return them. `Err` when the kernel cannot (before 5.6: EINVAL), with nothing removed
/// only if the first call failed.
pub fn take_all<K: Copy + Default, V: Copy + Default>(fd: BorrowedFd<'_>) -> io::Result<Vec<(K, V)>> {
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    // The hash map's cursor is a bucket index (u32).
    let mut cursor_in: u32 = 0;
    let mut cursor_out: u32 = 0;
    let mut first = true;
    let mut room = CHUNK;
    loop {
        let have = keys.len();
        keys.resize(have + room, K::default());
        values.resize(have + room, V::default());
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_mut(&mut cursor_in) as u64
            },
            out_batch: std::ptr::from_mut(&mut cursor_out) as u64,
            keys: keys[have..].as_mut_ptr() as u64,
            values: values[have..].as_mut_ptr() as u64,
            count: u32::try_from(room).unwrap_or(u32::MAX),
            map_fd: u32::try_from(fd.as_raw_fd()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid, fully initialised `bpf_attr.batch` of the size passed; the
        // kernel writes at most `count` keys and values into the buffers behind `keys` and
        // `values` (each has `room` elements of the map's key and value sizes, which the caller
        // guarantees `K` and `V` are), one u32 into `cursor_out`, and the count into `attr`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                std::ptr::from_mut(&mut attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let got = (attr.count as usize).min(room);
        keys.truncate(have + got);
        values.truncate(have + got);
        match err {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && room < (1 << 20) => {
                room *= 2;
                continue;
            }
            Some(e) if first => return Err(e),
            // Some entries were removed already: return them rather than lose them.
            Some(e) => {
                log::warn!("bpf map batch drain stopped early: {e}");
                break;
            }
        }
        first = false;
        cursor_in = cursor_out;
    }
    Ok(keys.into_iter().zip(values).collect())
}

/// A map drained with [`take_all`] until the kernel refuses it once; then the caller's own
/// per-entry path (next key, lookup, delete) for the rest of the run.
pub struct Drain {
    on: bool,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain { on: true }
    }
}

impl Drain {
    /// The batch drain is (still) used.
    pub fn on(&self) -> bool {
        self.on
    }

    /// Every entry of map `what` (`fd`), removed from it; `None` when batches are off (or
    /// just turned off: the kernel refused, said once in the log).
    pub fn take<K: Copy + Default, V: Copy + Default>(
        &mut self,
        what: &str,
        fd: BorrowedFd<'_>,
    ) -> Option<Vec<(K, V)>> {
        if !self.on {
            return None;
        }
        match take_all(fd) {
            Ok(all) => Some(all),
            Err(e) => {
                log::info!("{what}: no batch drain ({e}): three map calls per entry");
                self.on = false;
                None
            }
        }
    }
}
