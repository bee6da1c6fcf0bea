//! Where the host's memory is, beyond `/proc/meminfo` (read in full by `sys::host::MemParts`):
//! the slab caches (`/proc/slabinfo`, root only), tmpfs mounts (`statvfs` of each, one per
//! superblock) and socket buffers (`/proc/net/sockstat`). Readers return plain values; what they
//! mean is `analysis::host`'s business.
//!
//! Read costs (`monitor::resources` `read_costs`, figures in README.md "What it costs"):
//! `/proc/slabinfo` is by far the dearest (1.4 ms here for 237 caches, 37 status reads: the
//! kernel walks every cache), so the monitor reads it every 5 intervals; mountinfo and the
//! `statvfs` of every tmpfs mount cost about two status reads each, sockstat under half of one.
use std::{collections::HashMap, ffi::CString, fs, io, os::unix::ffi::OsStrExt as _, path::Path};

/// One slab cache: its name and the memory its slabs hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlabCache {
    pub name: String,
    /// `num_slabs × pagesperslab × page size`: what the cache takes from the page allocator.
    pub bytes: u64,
    pub active_objs: u64,
    pub objsize: u64,
}

/// `/proc/slabinfo` (version 2.x); lines that do not parse are skipped.
pub fn parse_slabinfo(text: &str, page_size: u64) -> io::Result<Vec<SlabCache>> {
    let mut lines = text.lines();
    let head = lines.next().unwrap_or("");
    if !head.starts_with("slabinfo - version: 2") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/slabinfo: unknown format {head:?}"),
        ));
    }
    let mut out = Vec::new();
    for l in lines.filter(|l| !l.starts_with('#')) {
        // name active_objs num_objs objsize objperslab pagesperslab : tunables ... : slabdata active_slabs num_slabs sharedavail
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 16 || f[6] != ":" {
            continue;
        }
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        let Some(sd) = f.iter().position(|x| *x == "slabdata") else {
            continue;
        };
        let (Some(active), Some(objsize), Some(pps), Some(slabs)) = (num(1), num(3), num(5), num(sd + 2)) else {
            continue;
        };
        out.push(SlabCache {
            name: f[0].to_string(),
            bytes: slabs.saturating_mul(pps).saturating_mul(page_size),
            active_objs: active,
            objsize,
        });
    }
    Ok(out)
}

/// `/proc/slabinfo`; PermissionDenied when not root.
pub fn read_slabinfo() -> io::Result<Vec<SlabCache>> {
    parse_slabinfo(&fs::read_to_string("/proc/slabinfo")?, page_size())
}

/// Whether the slab cache `name` is reclaimable (SLUB's `reclaim_account`; `kmalloc-rcl-*`
/// are). None when sysfs does not say (another allocator, a merged alias not listed).
pub fn slab_reclaimable(name: &str) -> Option<bool> {
    if name.starts_with("kmalloc-rcl-") {
        return Some(true);
    }
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let v = fs::read_to_string(Path::new("/sys/kernel/slab").join(name).join("reclaim_account")).ok()?;
    Some(v.trim() == "1")
}

/// A tmpfs mount (one per superblock: bind mounts of the same tmpfs are one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    pub mount_point: String,
    /// `major:minor`, the superblock.
    pub dev: String,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The tmpfs mounts of a mountinfo text, the first mount point of each superblock.
pub fn parse_tmpfs_mounts(text: &str) -> Vec<TmpfsMount> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for l in text.lines() {
        let Some((left, right)) = l.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("tmpfs") {
            continue;
        }
        let f: Vec<&str> = left.split(' ').collect();
        let (Some(dev), Some(mp)) = (f.get(2), f.get(4)) else {
            continue;
        };
        if seen.insert(dev.to_string()) {
            out.push(TmpfsMount {
                mount_point: unescape(mp),
                dev: dev.to_string(),
            });
        }
    }
    out
}

pub fn read_tmpfs_mounts() -> io::Result<Vec<TmpfsMount>> {
    Ok(parse_tmpfs_mounts(&fs::read_to_string("/proc/self/mountinfo")?))
}

/// Bytes used in the filesystem mounted at `mount_point` (`statvfs`: blocks − free blocks).
pub fn used_bytes(mount_point: &str) -> io::Result<u64> {
    let c = CString::new(Path::new(mount_point).as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a mount point"))?;
    // SAFETY: statvfs is plain data; zeroed is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
    Ok((st.f_blocks.saturating_sub(st.f_bfree) as u64).saturating_mul(frsize as u64))
}

/// `/proc/net/sockstat`: memory charged to TCP and UDP socket buffers, and IP fragments (bytes),
/// in this network namespace.
pub fn parse_sockstat(text: &str, page_size: u64) -> Option<u64> {
    let mut total = None::<u64>;
    for l in text.lines() {
        let (proto, rest) = l.split_once(':')?;
        let kv: HashMap<&str, u64> = {
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.chunks(2)
                .filter_map(|c| Some((*c.first()?, c.get(1)?.parse().ok()?)))
                .collect()
        };
        let bytes = match proto {
            // Pages.
            "TCP" | "UDP" => kv.get("mem").map(|p| p * page_size),
            // Bytes.
            "FRAG" => kv.get("memory").copied(),
            _ => None,
        };
        if let Some(b) = bytes {
            total = Some(total.unwrap_or(0) + b);
        }
    }
    total
}

pub fn read_sockstat() -> Option<u64> {
    parse_sockstat(&fs::read_to_string("/proc/net/sockstat").ok()?, page_size())
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// A file in a tmpfs mount, for `leaktrace host --files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigFile {
    pub path: String,
    /// Memory it holds (allocated blocks, not its apparent size).
    pub bytes: u64,
}

/// The largest files under `root`, staying on its filesystem; at most `n`, largest first. Visits
/// at most `max_entries` directory entries (a huge tree is cut short, not walked for minutes).
pub fn largest_files(root: &str, n: usize, max_entries: usize) -> Vec<BigFile> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(dev) = fs::symlink_metadata(root).map(|m| m.dev()) else {
        return Vec::new();
    };
    let mut stack = vec![std::path::PathBuf::from(root)];
    let mut files = Vec::new();
    let mut visited = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(Result::ok) {
            visited += 1;
            if visited > max_entries {
                break;
            }
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                files.push(BigFile {
                    path: e.path().display().to_string(),
                    bytes: m.blocks() * 512,
                });
            }
        }
    }
    files.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    files.truncate(n);
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLABINFO: &str = "slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
kmalloc-1k          1024   1056   1024   32    8 : tunables    0    0    0 : slabdata     33     33      0
dentry             93450  94437    192   21    1 : tunables    0    0    0 : slabdata   4497   4497      0
bad line
";

    #[test]
    fn slabinfo() {
        let s = parse_slabinfo(SLABINFO, 4096).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            SlabCache {
                name: "kmalloc-1k".into(),
                bytes: 33 * 8 * 4096,
                active_objs: 1024,
                objsize: 1024
            }
        );
        assert_eq!(s[1].bytes, 4497 * 4096);
        assert!(parse_slabinfo("slabinfo - version: 1.1\n", 4096).is_err());
        assert!(parse_slabinfo("", 4096).is_err());
    }

    #[test]
    fn tmpfs_mounts() {
        let text = "22 1 0:21 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw\n\
                    23 1 0:21 / /var/x rw shared:2 - tmpfs tmpfs rw\n\
                    24 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    25 1 0:30 / /mnt/with\\040space rw - tmpfs none rw,size=10m\n\
                    garbage\n";
        let m = parse_tmpfs_mounts(text);
        assert_eq!(
            m,
            vec![
                TmpfsMount {
                    mount_point: "/dev/shm".into(),
                    dev: "0:21".into()
                },
                TmpfsMount {
                    mount_point: "/mnt/with space".into(),
                    dev: "0:30".into()
                },
            ]
        );
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("tail\\04"), "tail\\04");
    }

    #[test]
    fn sockstat() {
        let t = "sockets: used 56\nTCP: inuse 8 orphan 0 tw 2972 alloc 8 mem 269\nUDP: inuse 0 mem 2\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 100\n";
        assert_eq!(parse_sockstat(t, 4096), Some(271 * 4096 + 100));
        assert_eq!(parse_sockstat("", 4096), None);
        assert_eq!(parse_sockstat("nonsense", 4096), None);
    }

    #[test]
    fn this_host() {
        let mounts = read_tmpfs_mounts().unwrap();
        for t in &mounts {
            let _ = used_bytes(&t.mount_point);
        }
        assert!(used_bytes("/no/such/dir").is_err());
    }
}
