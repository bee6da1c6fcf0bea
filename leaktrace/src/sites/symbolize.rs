//! From user addresses to frame names: the process's mappings (captured from /proc/PID/maps while
//! it lives) give the file and file offset of each address; blazesym resolves that offset in the
//! file (ELF symbols, DWARF when present, Rust/C++ demangled). One `Symbolizer` lives as long as
//! the agent, so each binary is parsed once. Files are opened the way the process sees them
//! (`binfile::locate`: containers, deleted binaries). Addresses outside any file (JIT code) are
//! named from the process's perf map when it has one (`perfmap`). An address that cannot be named
//! is shown as `module+0xoffset` (file offset), or as the bare address outside any file mapping —
//! never dropped.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};

use super::{binfile, perfmap::PerfMap};

/// Module name of frames named from a perf map.
pub const JIT_MODULE: &str = "[jit]";

/// One line of /proc/PID/maps that maps a file (or a named region such as `[vdso]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub dev: (u64, u64),
    pub inode: u64,
    /// Mapped executable.
    pub exec: bool,
    /// As the process sees it (its mount namespace); `[vdso]` & co. for named regions.
    pub path: String,
}

impl Mapping {
    /// The file name shown in `module+0xoffset`.
    pub fn module(&self) -> &str {
        let p = self.path.strip_suffix(" (deleted)").unwrap_or(&self.path);
        p.rsplit('/').next().unwrap_or(p)
    }
}

/// A process's file mappings, sorted by start address.
#[derive(Debug, Clone, Default)]
pub struct ProcMaps {
    pub pid: u32,
    pub maps: Vec<Mapping>,
}

/// Parse /proc/PID/maps text, keeping the lines that name a file or region.
pub fn parse_maps(pid: u32, text: &str) -> ProcMaps {
    let mut maps = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(off), Some(dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path = f.next().unwrap_or("").trim_start();
        if path.is_empty() {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else { continue };
        let hex = |v: &str| u64::from_str_radix(v, 16).ok();
        let (Some(start), Some(end), Some(offset)) = (hex(s), hex(e), hex(off)) else {
            continue;
        };
        let dev = dev
            .split_once(':')
            .and_then(|(a, b)| Some((hex(a)?, hex(b)?)))
            .unwrap_or((0, 0));
        maps.push(Mapping {
            start,
            end,
            offset,
            dev,
            inode: inode.parse().unwrap_or(0),
            exec: perms.as_bytes().get(2) == Some(&b'x'),
            path: path.to_string(),
        });
    }
    maps.sort_by_key(|m| m.start);
    ProcMaps { pid, maps }
}

impl ProcMaps {
    pub fn read(pid: u32) -> Option<ProcMaps> {
        let text = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let m = parse_maps(pid, &text);
        (!m.maps.is_empty()).then_some(m)
    }

    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let i = self.maps.partition_point(|m| m.start <= addr);
        let m = self.maps.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }
}

/// One resolved frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Function name, `module+0xoffset`, or `0xaddress`.
    pub text: String,
    /// File name of the mapping the address is in.
    pub module: Option<String>,
}

/// C runtime modules: a stack that never leaves them says nothing about where the program
/// allocated (the C library is usually built without frame pointers, so the walk stops there).
pub fn is_c_runtime(module: &str) -> bool {
    module.starts_with("libc.so")
        || module.starts_with("libc-")
        || module.starts_with("ld-linux")
        || module.starts_with("ld-musl")
        || module.starts_with("libpthread")
}

/// Bound on the (file, offset) → name cache; it is emptied when it grows past this.
const MAX_NAMES: usize = 1 << 20;
/// Bound on the files blazesym keeps parsed; the symbolizer is renewed past this.
const MAX_FILES: usize = 512;

pub struct Resolver {
    sym: Symbolizer,
    /// (file, file offset) → name; None = the file has no symbol there.
    names: HashMap<(PathBuf, u64), Option<String>>,
    files: std::collections::HashSet<PathBuf>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    pub fn new() -> Self {
        Resolver {
            sym: Self::symbolizer(),
            names: HashMap::new(),
            files: Default::default(),
        }
    }

    fn symbolizer() -> Symbolizer {
        Symbolizer::builder()
            .enable_code_info(false)
            .enable_inlined_fns(false)
            .enable_demangling(true)
            .build()
    }

    /// Names for user addresses (innermost first), using `maps` captured from the process and
    /// its perf map `jit` for code outside any file.
    pub fn resolve(&mut self, maps: Option<&ProcMaps>, jit: Option<&PerfMap>, addrs: &[u64]) -> Vec<Frame> {
        let mut out: Vec<Option<Frame>> = vec![None; addrs.len()];
        // Group by file: one blazesym call per file.
        let mut by_file: HashMap<PathBuf, Vec<(usize, u64)>> = HashMap::new();
        for (i, &addr) in addrs.iter().enumerate() {
            // Return addresses point after the call: look up the call itself (all but the first).
            let look = if i == 0 { addr } else { addr.saturating_sub(1) };
            let Some(m) = maps.and_then(|p| p.find(addr)) else {
                out[i] = Some(match jit.and_then(|j| j.lookup(look)) {
                    Some(name) => Frame {
                        text: name.to_string(),
                        module: Some(JIT_MODULE.into()),
                    },
                    None => Frame {
                        text: format!("{addr:#x}"),
                        module: None,
                    },
                });
                continue;
            };
            // (A return address may be a mapping's first byte: a uretprobe's trampoline.)
            let file_off = look.saturating_sub(m.start) + m.offset;
            let pid = maps.map_or(0, |p| p.pid);
            let module = m.module().to_string();
            let fallback = Frame {
                text: format!("{module}+{:#x}", addr - m.start + m.offset),
                module: Some(module.clone()),
            };
            match binfile::locate(pid, m) {
                Some(f) => {
                    if let Some(name) = self.names.get(&(f.clone(), file_off)) {
                        out[i] = Some(match name {
                            Some(n) => Frame {
                                text: n.clone(),
                                module: Some(module),
                            },
                            None => fallback,
                        });
                    } else {
                        out[i] = Some(fallback);
                        by_file.entry(f).or_default().push((i, file_off));
                    }
                }
                None => out[i] = Some(fallback),
            }
        }
        if self.names.len() > MAX_NAMES {
            self.names.clear();
        }
        for (file, items) in by_file {
            if self.files.insert(file.clone()) && self.files.len() > MAX_FILES {
                // blazesym keeps every file it parsed: start afresh past the bound.
                self.sym = Self::symbolizer();
                self.files.clear();
                self.files.insert(file.clone());
            }
            let offs: Vec<u64> = items.iter().map(|(_, o)| *o).collect();
            let names = self.names_in(&file, &offs);
            for ((i, off), name) in items.iter().zip(names) {
                if let (Some(n), Some(Some(f))) = (&name, out.get_mut(*i)) {
                    f.text.clone_from(n);
                }
                self.names.insert((file.clone(), *off), name);
            }
        }
        out.into_iter().map(|f| f.expect("every frame filled")).collect()
    }

    /// Names at file offsets of one file: DWARF when the file has it, else its ELF symbols
    /// (a file whose debug information is elsewhere, e.g. a distribution's stripped libc with a
    /// `.gnu_debuglink`, is read again for its `.dynsym`).
    fn names_in(&self, file: &Path, offs: &[u64]) -> Vec<Option<String>> {
        let lookup = |debug_syms: bool| -> Vec<Option<String>> {
            let mut elf = Elf::new(file);
            elf.debug_syms = debug_syms;
            let res = self
                .sym
                .symbolize(&Source::Elf(elf), Input::FileOffset(offs))
                .unwrap_or_default();
            (0..offs.len())
                .map(|k| match res.get(k) {
                    Some(Symbolized::Sym(s)) if !s.name.is_empty() => Some(s.name.to_string()),
                    _ => None,
                })
                .collect()
        };
        let mut names = lookup(true);
        if names.iter().any(Option::is_none) {
            for (n, plain) in names.iter_mut().zip(lookup(false)) {
                if n.is_none() {
                    *n = plain;
                }
            }
        }
        names
    }
}

/// Frames shared between sites (cheap clones).
pub type Frames = Arc<Vec<Frame>>;

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /tmp/leaker
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 1234 /tmp/leaker
55d0c0c00000-55d0c0c21000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
7f1000000000-7f1000028000 r--p 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1000028000-7f100019d000 r-xp 00028000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
";

    #[test]
    fn maps_parse_and_find() {
        let m = parse_maps(7, MAPS);
        assert_eq!(m.maps.len(), 6, "anonymous lines without a name are left out");
        let text = m.find(0x55d0c0a01139).unwrap();
        assert_eq!(
            (text.module(), text.offset, text.inode, text.dev),
            ("leaker", 0x1000, 1234, (8, 1))
        );
        assert_eq!(m.find(0x7f1000028010).unwrap().module(), "libc.so.6");
        assert!(m.find(0x7f0000000010).is_none());
        assert!(m.find(0x10).is_none());
        assert_eq!(m.find(0x7ffd00000010).unwrap().path, "[vdso]");
        assert!(text.exec && !m.find(0x55d0c0a00010).unwrap().exec);
    }

    #[test]
    fn jit_frames_from_the_perf_map() {
        let dir = std::env::temp_dir().join(format!("lt-unwind-jit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("perf-9.map");
        fs::write(&path, "7f0000000000 100 JS:*leakyCache /app/leak.js:3\n").unwrap();
        let mut jit = PerfMap::from_path(path);
        jit.refresh();
        let m = parse_maps(u32::MAX, MAPS);
        let mut r = Resolver::new();
        // Innermost frame at the map's start; a return address just past it is looked up at -1.
        let f = r.resolve(Some(&m), Some(&jit), &[0x7f0000000000, 0x7f0000000100, 0x7f0000000101]);
        assert_eq!(f[0].text, "JS:*leakyCache /app/leak.js:3");
        assert_eq!(f[0].module.as_deref(), Some(JIT_MODULE));
        assert_eq!(f[1].text, "JS:*leakyCache /app/leak.js:3");
        assert_eq!(f[2].text, "0x7f0000000101");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_addresses_become_module_offsets() {
        let m = parse_maps(
            u32::MAX,
            MAPS.replace("/tmp/leaker", "/nonexistent/leaker-stripped").as_str(),
        );
        let mut r = Resolver::new();
        let f = r.resolve(
            Some(&m),
            None,
            &[0x55d0c0a01139, 0x55d0c0a0113a, 0x7f0000000010, 0x7ffd00000010],
        );
        assert_eq!(f[0].text, "leaker-stripped+0x1139");
        assert_eq!(f[1].text, "leaker-stripped+0x113a");
        assert_eq!(f[2].text, "0x7f0000000010");
        assert_eq!(f[3].text, "[vdso]+0x10");
        assert_eq!(f[0].module.as_deref(), Some("leaker-stripped"));
        let none = r.resolve(None, None, &[0x1234]);
        assert_eq!(none[0].text, "0x1234");
    }

    #[test]
    fn names_from_our_own_process() {
        // A function of the C library (only in .dynsym on distributions that strip libc) and one
        // of this test binary.
        let pid = std::process::id();
        let maps = ProcMaps::read(pid).expect("own maps");
        let mut r = Resolver::new();
        let f = r.resolve(
            Some(&maps),
            None,
            &[
                libc::malloc as *const () as u64,
                unknown_addresses_become_module_offsets as *const () as u64 + 1,
            ],
        );
        assert!(f[0].text == "malloc" || f[0].text.ends_with("malloc"), "{:?}", f[0]);
        assert!(
            f[0].module.as_deref().is_some_and(|m| m.starts_with("libc")),
            "{:?}",
            f[0]
        );
        assert!(
            f[1].text.contains("unknown_addresses_become_module_offsets"),
            "{:?}",
            f[1]
        );
    }

    #[test]
    fn c_runtime_modules() {
        for m in [
            "libc.so.6",
            "ld-linux-x86-64.so.2",
            "libc-2.31.so",
            "ld-musl-x86_64.so.1",
        ] {
            assert!(is_c_runtime(m), "{m}");
        }
        for m in ["leaker", "libstdc++.so.6", "libcrypto.so.3", "lt-workload"] {
            assert!(!is_c_runtime(m), "{m}");
        }
    }
}
