//! Kernels for the VM matrix: Debian's cloud kernel images, fetched with `apt-get download` and
//! unpacked with `dpkg-deb -x` into `target/vm/kernels/<package>/`, so a fresh machine needs
//! only the Debian package registry and a second run needs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util;

/// A kernel the matrix can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSpec {
    /// What the user types: `6.1`, `6.12`.
    pub version: &'static str,
    /// The Debian meta-package that depends on the current image of that series.
    pub meta: &'static str,
}

pub const KERNELS: [KernelSpec; 2] = [
    KernelSpec {
        version: "6.1",
        meta: "linux-image-cloud-amd64",
    },
    KernelSpec {
        version: "6.12",
        meta: "linux-image-6.12-cloud-amd64",
    },
];

pub fn spec(version: &str) -> Option<KernelSpec> {
    KERNELS.iter().copied().find(|k| k.version == version)
}

/// An unpacked kernel image.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `linux-image-6.1.0-57-cloud-amd64`
    pub package: String,
    pub vmlinuz: PathBuf,
}

/// The image package a meta-package depends on, from `apt-cache depends` output.
pub fn image_from_depends(text: &str, version: &str) -> Option<String> {
    let prefix = format!("linux-image-{version}.");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with(&prefix) && !p.ends_with("-dbg"))
        .map(str::to_owned)
}

/// Finds the kernel of `spec`, downloading it on first use.
pub fn ensure(spec: KernelSpec, cache: &Path) -> Result<Kernel> {
    let kernels = cache.join("kernels");
    let package = match resolve(spec) {
        Ok(p) => p,
        Err(err) => {
            // No package index (offline, or apt not usable): a kernel cached earlier still works.
            if let Some(k) = cached_any(&kernels, spec.version) {
                println!("xtask: vm {}: {err:#}; using the cached {}", spec.version, k.package);
                return Ok(k);
            }
            return Err(err);
        }
    };
    let dir = kernels.join(&package);
    if let Some(vmlinuz) = find_vmlinuz(&dir) {
        return Ok(Kernel { package, vmlinuz });
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let mut download = Command::new("apt-get");
    download.args(["download", "-q", &package]).current_dir(&debs);
    util::stage(&format!("vm {}: download {package}", spec.version), &mut download)?;
    let deb = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| format!("apt-get download {package} left no .deb in {}", debs.display()))?;
    let tmp = kernels.join(format!(".{package}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("-x").arg(&deb).arg(&tmp);
    util::stdout_of(&mut unpack)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    let _ = std::fs::remove_file(&deb);
    let vmlinuz = find_vmlinuz(&dir).with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
    Ok(Kernel { package, vmlinuz })
}

/// The current image package of the series, asking apt (after `apt-get update` if apt does not
/// know the meta-package yet, as on a fresh machine).
fn resolve(spec: KernelSpec) -> Result<String> {
    for attempt in 0..2 {
        let out = util::capture(Command::new("apt-cache").args(["depends", spec.meta]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success()
            && let Some(p) = image_from_depends(&text, spec.version)
        {
            return Ok(p);
        }
        if attempt == 0 {
            util::stage("apt-get update", Command::new("apt-get").args(["update", "-q"]))?;
        }
    }
    bail!(
        "apt knows no image package for Linux {} (meta-package {}): is this a Debian 12 machine with its package registry?",
        spec.version,
        spec.meta
    )
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

fn cached_any(kernels: &Path, version: &str) -> Option<Kernel> {
    let prefix = format!("linux-image-{version}.");
    let mut found: Vec<Kernel> = std::fs::read_dir(kernels)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let package = e.file_name().to_str()?.to_owned();
            if !package.starts_with(&prefix) {
                return None;
            }
            let vmlinuz = find_vmlinuz(&e.path())?;
            Some(Kernel { package, vmlinuz })
        })
        .collect();
    found.sort_by(|a, b| a.package.cmp(&b.package));
    found.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_picks_the_series_image() {
        let text = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-57-cloud-amd64\n";
        assert_eq!(
            image_from_depends(text, "6.1").as_deref(),
            Some("linux-image-6.1.0-57-cloud-amd64")
        );
        let text = "linux-image-6.12-cloud-amd64\n  Depends: linux-image-6.12.117+deb12-cloud-amd64\n";
        assert_eq!(
            image_from_depends(text, "6.12").as_deref(),
            Some("linux-image-6.12.117+deb12-cloud-amd64")
        );
        // 6.1 must not match a 6.12 image.
        assert_eq!(image_from_depends(text, "6.1"), None);
        assert_eq!(image_from_depends("", "6.1"), None);
    }
}
