//! `.note.stapsdt`: the SystemTap SDT notes a binary carries, one per probe site.
//!
//! Each note (owner `stapsdt`, type 3) holds three addresses — the probe's location, the link-time
//! address of `.stapsdt.base`, the probe's semaphore (0: none) — then three C strings: provider,
//! name, argument specs. When the binary was prelinked or otherwise moved after the notes were
//! written, the location is adjusted by the difference between `.stapsdt.base`'s real address and
//! the note's. The kernel attaches uprobes by file offset, so the location and the semaphore are
//! turned into file offsets through the program headers (the loadable segment that contains them).
use std::{fs::File, path::Path};

use object::{
    Endianness, ReadCache, ReadRef,
    elf::{self, FileHeader64},
    read::elf::{FileHeader as _, ProgramHeader as _, SectionHeader as _},
};

const NT_STAPSDT: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub provider: String,
    pub name: String,
    /// The probe's link-time address (after the `.stapsdt.base` adjustment).
    pub addr: u64,
    /// Where the uprobe goes: the file offset of `addr`.
    pub file_offset: u64,
    /// The probe's semaphore (a 2-byte counter the code checks before doing the probe's work),
    /// as its link-time address and file offset.
    pub semaphore: Option<Semaphore>,
    /// The argument specs, e.g. `8@%rbp 8@%r12 -4@%eax`.
    pub args: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Semaphore {
    pub addr: u64,
    pub file_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a 64-bit ELF file we can read: {0}")]
    Elf(String),
    #[error("malformed stapsdt note: {0}")]
    Malformed(&'static str),
}

impl From<object::read::Error> for NoteError {
    fn from(e: object::read::Error) -> Self {
        NoteError::Elf(e.to_string())
    }
}

/// The notes of the ELF file at `path` (empty when it has none). Only the headers and the note
/// section are read, not the whole file.
pub fn read(path: &Path) -> Result<Vec<Note>, NoteError> {
    let file = File::open(path)?;
    let cache = ReadCache::new(file);
    parse(&cache)
}

/// A loadable segment: [vaddr, vaddr + filesz) lives at file offset `offset`.
struct Segment {
    vaddr: u64,
    filesz: u64,
    offset: u64,
    exec: bool,
}

fn file_offset(segs: &[Segment], addr: u64, exec: bool) -> Option<u64> {
    segs.iter()
        .find(|s| (!exec || s.exec) && addr >= s.vaddr && addr < s.vaddr + s.filesz)
        .map(|s| addr - s.vaddr + s.offset)
}

/// The probe's address once the binary's `.stapsdt.base` (at `base_section`) is where it is,
/// not where the note was written (`note_base`): prelinked or otherwise moved binaries.
fn adjust(pc: u64, note_base: u64, base_section: Option<u64>) -> u64 {
    match base_section {
        Some(b) if note_base != 0 => pc.wrapping_add(b).wrapping_sub(note_base),
        _ => pc,
    }
}

/// The notes of an ELF file held by `data` (a byte slice or a [`ReadCache`]).
pub fn parse<'a, R: ReadRef<'a>>(data: R) -> Result<Vec<Note>, NoteError> {
    let header = FileHeader64::<Endianness>::parse(data)?;
    let endian = header.endian()?;
    let segs: Vec<Segment> = header
        .program_headers(endian, data)?
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| Segment {
            vaddr: p.p_vaddr(endian),
            filesz: p.p_filesz(endian),
            offset: p.p_offset(endian),
            exec: p.p_flags(endian) & elf::PF_X != 0,
        })
        .collect();
    let sections = header.sections(endian, data)?;
    let base_addr = sections
        .section_by_name(endian, b".stapsdt.base")
        .map(|(_, s)| s.sh_addr(endian));
    let Some((_, notes_section)) = sections.section_by_name(endian, b".note.stapsdt") else {
        return Ok(Vec::new());
    };
    let Some(mut it) = notes_section.notes(endian, data)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    while let Some(note) = it.next()? {
        if note.name() != b"stapsdt" || note.n_type(endian) != NT_STAPSDT {
            continue;
        }
        let desc = note.desc();
        if desc.len() < 24 {
            return Err(NoteError::Malformed("descriptor shorter than three addresses"));
        }
        let word = |i: usize| {
            let b: [u8; 8] = desc[i * 8..i * 8 + 8].try_into().expect("8 bytes");
            if endian == Endianness::Little {
                u64::from_le_bytes(b)
            } else {
                u64::from_be_bytes(b)
            }
        };
        let (pc, note_base, sema) = (word(0), word(1), word(2));
        let mut strings = desc[24..].split(|b| *b == 0);
        let mut next = || {
            strings
                .next()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .ok_or(NoteError::Malformed("missing provider, name or arguments"))
        };
        let (provider, name, args) = (next()?, next()?, next()?);
        let addr = adjust(pc, note_base, base_addr);
        let Some(off) = file_offset(&segs, addr, true) else {
            return Err(NoteError::Malformed("probe address outside every executable segment"));
        };
        let semaphore = if sema == 0 {
            None
        } else {
            Some(Semaphore {
                addr: sema,
                file_offset: file_offset(&segs, sema, false)
                    .ok_or(NoteError::Malformed("semaphore outside every loaded segment"))?,
            })
        };
        out.push(Note {
            provider,
            name,
            addr,
            file_offset: off,
            semaphore,
            args,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usdt::args::parse_args;

    const PYTHON: &str = "/usr/bin/python3.11";
    const LIBJVM: &str = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so";

    /// The real binaries of the Debian packages, when installed (CI installs them; the tests that
    /// need them say so rather than pass vacuously).
    fn real(path: &str) -> Option<Vec<Note>> {
        if !Path::new(path).exists() {
            assert!(
                std::env::var("CI").is_err(),
                "{path} missing under CI (install python3.11 / openjdk-17-jdk-headless)"
            );
            eprintln!("SKIP: {path} not installed");
            return None;
        }
        Some(read(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}")))
    }

    fn find<'a>(notes: &'a [Note], provider: &str, name: &str) -> &'a Note {
        notes
            .iter()
            .find(|n| n.provider == provider && n.name == name)
            .unwrap_or_else(|| panic!("no {provider}:{name}"))
    }

    #[test]
    fn python_gc_probes_with_semaphores() {
        let Some(notes) = real(PYTHON) else { return };
        let start = find(&notes, "python", "gc__start");
        let done = find(&notes, "python", "gc__done");
        // Debian's python3.11 is a non-PIE executable: its addresses are where it runs.
        assert_eq!(start.args, "-4@112(%rsp)");
        assert_eq!(done.args, "-8@%r12");
        for n in [start, done] {
            let s = n.semaphore.expect("CPython's probes have semaphores");
            assert!(s.addr > n.addr, "{n:?}");
            // The semaphore is in the writable .probes section; read it at its file offset: 0.
            let bytes = std::fs::read(PYTHON).unwrap();
            let off = s.file_offset as usize;
            assert_eq!(&bytes[off..off + 2], &[0, 0], "{n:?}");
            // The probe's file offset holds a nop (0x90), the SDT marker.
            assert_eq!(bytes[n.file_offset as usize], 0x90, "{n:?}");
            parse_args(&n.args).unwrap();
        }
    }

    #[test]
    fn hotspot_gc_probes_every_spec_parses() {
        let Some(notes) = real(LIBJVM) else { return };
        assert!(notes.len() > 400, "{} notes", notes.len());
        let bytes = std::fs::read(LIBJVM).unwrap();
        for name in [
            "gc__begin",
            "gc__end",
            "mem__pool__gc__begin",
            "mem__pool__gc__end",
            "vm__shutdown",
        ] {
            let n = find(&notes, "hotspot", name);
            assert_eq!(n.semaphore, None, "{n:?}");
            assert_eq!(bytes[n.file_offset as usize], 0x90, "{n:?}");
        }
        assert_eq!(find(&notes, "hotspot", "gc__begin").args, "1@%dil");
        assert_eq!(
            parse_args(&find(&notes, "hotspot", "mem__pool__gc__end").args)
                .unwrap()
                .len(),
            8
        );
        // Every argument spec of every HotSpot probe is one the kernel program can read.
        for n in &notes {
            parse_args(&n.args).unwrap_or_else(|e| panic!("{}:{} `{}`: {e}", n.provider, n.name, n.args));
        }
    }

    #[test]
    fn base_adjustment_and_errors() {
        assert_eq!(adjust(0x1234, 0x8000, Some(0x9000)), 0x2234);
        assert_eq!(adjust(0x1234, 0x8000, Some(0x7000)), 0x0234);
        assert_eq!(adjust(0x1234, 0x8000, None), 0x1234);
        assert_eq!(adjust(0x1234, 0, Some(0x9000)), 0x1234);
        // A file that is not ELF, and an ELF without notes (this test binary has none).
        let dir = std::env::temp_dir().join(format!("leaktrace-notes-{}", std::process::id()));
        std::fs::write(&dir, b"#!/bin/sh\n").unwrap();
        assert!(matches!(read(&dir), Err(NoteError::Elf(_))));
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(read(Path::new("/nonexistent/x")), Err(NoteError::Io(_))));
        let me = std::env::current_exe().unwrap();
        assert_eq!(read(&me).unwrap(), vec![]);
        let segs = [Segment {
            vaddr: 0x1000,
            filesz: 0x2000,
            offset: 0x800,
            exec: true,
        }];
        assert_eq!(file_offset(&segs, 0x1010, true), Some(0x810));
        assert_eq!(file_offset(&segs, 0x3000, true), None);
    }
}
