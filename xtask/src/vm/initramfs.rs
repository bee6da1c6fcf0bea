//! The guest's root file system: an uncompressed `newc` cpio archive that the kernel unpacks into
//! its initial tmpfs. Programs keep their host paths (the test binaries find the agent and
//! lt-workload by the absolute paths cargo compiled into them) and bring the shared libraries
//! `ldd` names; the rest is busybox.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util;

enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// Files to put in the archive, by absolute guest path (parents are added as directories).
#[derive(Default)]
pub struct Initramfs {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Initramfs {
    pub fn dir(&mut self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        for p in path.ancestors().collect::<Vec<_>>().into_iter().rev() {
            if p == Path::new("/") || p.as_os_str().is_empty() {
                continue;
            }
            self.entries.entry(p.to_path_buf()).or_insert(Entry::Dir);
        }
    }

    pub fn data(&mut self, path: impl AsRef<Path>, data: Vec<u8>, mode: u32) {
        let path = path.as_ref();
        if let Some(parent) = path.parent() {
            self.dir(parent);
        }
        self.entries.insert(path.to_path_buf(), Entry::File { data, mode });
    }

    pub fn symlink(&mut self, path: impl AsRef<Path>, target: &str) {
        let path = path.as_ref();
        if let Some(parent) = path.parent() {
            self.dir(parent);
        }
        self.entries
            .insert(path.to_path_buf(), Entry::Symlink(target.to_owned()));
    }

    /// A host file at `guest`; with `strip_debug`, a copy without debug sections (debug
    /// builds of the tests are ~100 MB each, stripped a few MB).
    pub fn host_file(&mut self, host: &Path, guest: &Path, strip_debug: bool, scratch: &Path) -> Result<()> {
        let meta = std::fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let mut data = None;
        if strip_debug {
            std::fs::create_dir_all(scratch)?;
            let out = scratch.join(host.file_name().unwrap_or_default());
            let ok = util::capture(Command::new("objcopy").arg("--strip-debug").arg(host).arg(&out))
                .is_ok_and(|o| o.status.success());
            if ok {
                data = Some(std::fs::read(&out)?);
                let _ = std::fs::remove_file(&out);
            }
        }
        let data = match data {
            Some(d) => d,
            None => std::fs::read(host).with_context(|| format!("reading {}", host.display()))?,
        };
        self.data(guest, data, mode);
        Ok(())
    }

    /// A host program at its own (canonical) path, with the shared libraries it links.
    pub fn program(&mut self, host: &Path, strip_debug: bool, scratch: &Path) -> Result<()> {
        let canon = std::fs::canonicalize(host).with_context(|| format!("{} not found", host.display()))?;
        self.host_file(&canon, &canon, strip_debug, scratch)?;
        let named = guest_path_for(host);
        if named != canon {
            self.symlink(&named, &canon.to_string_lossy());
        }
        for lib in shared_libraries(&canon)? {
            self.library(&lib)?;
        }
        Ok(())
    }

    /// A shared library at its canonical path, plus the (symlink) path it was named by.
    fn library(&mut self, path: &Path) -> Result<()> {
        let canon = std::fs::canonicalize(path).with_context(|| format!("{} not found", path.display()))?;
        if !self.entries.contains_key(&canon) {
            self.host_file(&canon, &canon, false, Path::new("/nonexistent"))?;
        }
        let named = guest_path_for(path);
        if named != canon && !self.entries.contains_key(&named) {
            self.symlink(&named, &canon.to_string_lossy());
        }
        Ok(())
    }

    /// The host's top-level symlinks (`/lib -> usr/lib` on merged-/usr systems), so paths
    /// through them resolve in the guest as on the host. Call before adding files.
    pub fn mirror_top_level_symlinks(&mut self) {
        for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let p = Path::new("/").join(name);
            if let Ok(target) = std::fs::read_link(&p) {
                self.symlink(&p, &target.to_string_lossy());
            }
        }
    }

    /// Writes the archive (SVR4 `newc`, no CRC).
    pub fn write(&self, out: &Path) -> Result<u64> {
        let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let mut ino = 1u32;
        let mut n = 0u64;
        for (path, entry) in &self.entries {
            let name = path.strip_prefix("/").unwrap_or(path).to_string_lossy().into_owned();
            if name.is_empty() {
                continue;
            }
            // Skip entries under a path that is a symlink (e.g. /lib/x when /lib -> usr/lib):
            // the canonical copy is what the archive holds.
            if path
                .ancestors()
                .skip(1)
                .any(|a| matches!(self.entries.get(a), Some(Entry::Symlink(_))))
            {
                continue;
            }
            let (mode, data): (u32, &[u8]) = match entry {
                Entry::Dir => (0o040755, &[]),
                Entry::File { data, mode } => (0o100000 | mode, data),
                Entry::Symlink(t) => (0o120777, t.as_bytes()),
            };
            n += write_entry(&mut w, ino, mode, &name, data)?;
            ino += 1;
        }
        n += write_entry(&mut w, ino, 0, "TRAILER!!!", &[])?;
        w.flush()?;
        Ok(n)
    }
}

/// `path` with its directory resolved (`/lib64/ld-linux-x86-64.so.2` becomes
/// `/usr/lib64/ld-linux-x86-64.so.2` when `/lib64 -> usr/lib64`): where a symlink to the
/// canonical file must be, since entries under symlinked directories are not archived.
fn guest_path_for(path: &Path) -> PathBuf {
    match (
        path.parent().and_then(|d| std::fs::canonicalize(d).ok()),
        path.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

fn write_entry(w: &mut impl Write, ino: u32, mode: u32, name: &str, data: &[u8]) -> Result<u64> {
    let namesize = name.len() + 1;
    let fields = [ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, namesize as u32, 0];
    let mut header = String::from("070701");
    for f in fields {
        header.push_str(&format!("{f:08X}"));
    }
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    let head = header.len() + namesize;
    w.write_all(&[0; 3][..(4 - head % 4) % 4])?;
    w.write_all(data)?;
    w.write_all(&[0; 3][..(4 - data.len() % 4) % 4])?;
    Ok((head + (4 - head % 4) % 4 + data.len() + (4 - data.len() % 4) % 4) as u64)
}

/// The shared libraries (and the dynamic loader) that `ldd` says `bin` loads; empty for a
/// static binary.
pub fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = util::capture(Command::new("ldd").arg(bin))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // `ldd` on a static binary says "not a dynamic executable" and exits 1.
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", bin.display(), err.trim());
    }
    parse_ldd(&text)
}

pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("a shared library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn newc_entries_are_aligned() {
        let mut v = Vec::new();
        let n = write_entry(&mut v, 1, 0o100644, "a/b", b"hello").unwrap();
        assert_eq!(n as usize, v.len());
        assert_eq!(v.len() % 4, 0);
        assert!(v.starts_with(b"070701"));
        let name_at = 110;
        assert_eq!(&v[name_at..name_at + 4], b"a/b\0");
    }
}
