//! Finding (and if needed mounting) tracefs.
use std::{
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

pub const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Where tracefs is, and whether we mounted it.
#[derive(Debug, Clone)]
pub struct Tracefs {
    pub root: PathBuf,
    pub mounted_by_us: bool,
}

impl Tracefs {
    pub fn event_dir(&self, category: &str, name: &str) -> PathBuf {
        self.root.join("events").join(category).join(name)
    }
}

/// Use tracefs where it is; mount it at /sys/kernel/tracing when it is nowhere.
pub fn ensure() -> io::Result<Tracefs> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(root).join("events").is_dir() {
            return Ok(Tracefs {
                root: root.into(),
                mounted_by_us: false,
            });
        }
    }
    let target = CString::new(TRACEFS).expect("no NUL");
    let fstype = CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("tracefs is not mounted and mounting it at {TRACEFS} failed: {err}"),
        ));
    }
    Ok(Tracefs {
        root: TRACEFS.into(),
        mounted_by_us: true,
    })
}
