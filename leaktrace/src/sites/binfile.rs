//! The file behind a mapping, reached the way the process itself reaches it, and what the
//! unwinder needs from it.
//!
//! A path in /proc/PID/maps is the process's view: in a container it names a file of another
//! mount namespace, and a binary deleted after start has no path at all. So a mapped file is
//! opened, in this order, by its path when that is the same inode here (the cheap, shared case),
//! through `/proc/PID/root` (the process's own root: containers), through `/proc/PID/exe` (the
//! main binary, even deleted) and through `/proc/PID/map_files/START-END` (any mapping, even
//! deleted; needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE). Binaries are identified by their GNU
//! build id, so two copies of one library (two containers) share one cache entry.
//!
//! The CFI sections are used where they lie, in a read-only mapping of the file (as blazesym maps
//! the files it symbolizes): only the pages the unwinder touches become resident, and they are
//! page cache, shared and reclaimable — node's `.eh_frame` alone is 2.7 MB, a Rust compiler's 6 MB.
//! The mapping is marked random-access (no read-ahead) and its pages are let go from time to time
//! ([`Mapped::release`]), so what stays resident is what the last minutes of unwinding touched.
use std::{
    fs::{self, File},
    ops::{Deref, Range},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use memmap2::{Advice, Mmap, UncheckedAdvice};

use object::{
    elf,
    read::elf::{FileHeader, ProgramHeader as _, SectionHeader as _},
};

use super::symbolize::Mapping;

/// Where to open `m`'s file (mapped by process `pid`), if it can be reached at all.
pub fn locate(pid: u32, m: &Mapping) -> Option<PathBuf> {
    if m.path.starts_with('[') || m.path.is_empty() {
        return None;
    }
    let path = m.path.strip_suffix(" (deleted)").unwrap_or(&m.path);
    let same = |p: &Path| fs::metadata(p).is_ok_and(|md| md.ino() == m.inode);
    let plain = Path::new(path);
    if path.starts_with('/') && same(plain) {
        return Some(plain.to_path_buf());
    }
    if pid == 0 {
        return None;
    }
    let rooted = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if path.starts_with('/') && same(&rooted) {
        return Some(rooted);
    }
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    if same(&exe) {
        return Some(exe);
    }
    let handle = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
    File::open(&handle).is_ok().then_some(handle)
}

/// A loadable segment of an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub exec: bool,
}

impl Load {
    /// Does a mapping at file offset `off` (page-aligned, as mmap needs) map this segment?
    fn maps(&self, off: u64, exec: bool) -> bool {
        self.exec == exec && (self.offset & !0xfff) <= off && off < self.offset + self.filesz.max(1)
    }
}

/// The virtual address (as the file states it) that file offset `off` of a mapping has, given the
/// file's load segments; `exec`: the mapping is executable (it maps an executable segment).
pub fn svma_of(loads: &[Load], off: u64, exec: bool) -> Option<u64> {
    let l = loads.iter().find(|l| l.maps(off, exec))?;
    (off + l.vaddr).checked_sub(l.offset)
}

/// A read-only mapping of a binary.
#[derive(Debug)]
pub struct Mapped(Mmap);

impl Mapped {
    /// Let the resident pages go (they stay in the page cache; the next access maps them again).
    pub fn release(&self) {
        // SAFETY: a read-only, never written private file mapping: dropping its pages cannot
        // change what it reads.
        let _ = unsafe { self.0.unchecked_advise(UncheckedAdvice::DontNeed) };
    }
}

/// Bytes of a mapped file (one section), shared.
#[derive(Clone)]
pub struct Section {
    map: Arc<Mapped>,
    range: Range<usize>,
}

impl Deref for Section {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map.0[self.range.clone()]
    }
}

impl std::fmt::Debug for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Section({:?})", self.range)
    }
}

/// What the unwinder takes from one ELF file: its identity, its load segments (to place it in a
/// process) and its call-frame information (with the sections' addresses).
#[derive(Debug, Default)]
pub struct ElfCfi {
    /// The mapping the sections lie in.
    pub map: Option<Arc<Mapped>>,
    /// GNU build id, when the file has one.
    pub build_id: Option<Vec<u8>>,
    pub loads: Vec<Load>,
    pub text: Option<Range<u64>>,
    pub got: Option<Range<u64>>,
    pub eh_frame: Option<(Range<u64>, Section)>,
    pub eh_frame_hdr: Option<(Range<u64>, Section)>,
    /// Only used when there is no `.eh_frame` (framehop prefers `.eh_frame`).
    pub debug_frame: Option<Section>,
}

impl ElfCfi {
    /// Bytes of CFI sections (mapped, resident only where used).
    pub fn size(&self) -> usize {
        self.eh_frame.as_ref().map_or(0, |(_, d)| d.len())
            + self.eh_frame_hdr.as_ref().map_or(0, |(_, d)| d.len())
            + self.debug_frame.as_ref().map_or(0, |d| d.len())
    }
}

/// The build id, load segments and CFI sections of an ELF file, from a read-only mapping of it.
pub fn read_cfi(path: &Path) -> Option<ElfCfi> {
    let f = File::open(path).ok()?;
    // SAFETY: a read-only private mapping of a binary that is in use; like blazesym's mappings
    // of the same files, it assumes nobody truncates a binary in place while it runs.
    let mmap = unsafe { Mmap::map(&f) }.ok()?;
    let _ = mmap.advise(Advice::Random);
    let map = Arc::new(Mapped(mmap));
    let data: &[u8] = &map.0;
    let header = <elf::FileHeader64<object::Endianness> as FileHeader>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    if header.e_machine(endian) != elf::EM_X86_64 {
        return None;
    }
    let loads = header
        .program_headers(endian, data)
        .ok()?
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| Load {
            vaddr: ph.p_vaddr(endian),
            offset: ph.p_offset(endian),
            filesz: ph.p_filesz(endian),
            exec: ph.p_flags(endian) & elf::PF_X != 0,
        })
        .collect();
    let sections = header.sections(endian, data).ok()?;
    let range = |name: &str| {
        sections
            .section_by_name(endian, name.as_bytes())
            .map(|(_, s)| s.sh_addr(endian)..s.sh_addr(endian) + s.sh_size(endian))
    };
    // Sections stored in the file, uncompressed (.eh_frame never is compressed; a compressed
    // .debug_frame is skipped).
    let section = |name: &str| {
        let (_, s) = sections.section_by_name(endian, name.as_bytes())?;
        if s.sh_flags(endian) & u64::from(elf::SHF_COMPRESSED) != 0 {
            return None;
        }
        let (off, size) = s.file_range(endian)?;
        let range = usize::try_from(off).ok()?..usize::try_from(off.checked_add(size)?).ok()?;
        (range.end <= data.len()).then(|| {
            (
                s.sh_addr(endian)..s.sh_addr(endian) + s.sh_size(endian),
                Section {
                    map: map.clone(),
                    range,
                },
            )
        })
    };
    let mut build_id = None;
    for s in sections.iter() {
        if let Ok(Some(mut notes)) = s.notes(endian, data) {
            while let Ok(Some(note)) = notes.next() {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                    build_id = Some(note.desc().to_vec());
                }
            }
        }
        if build_id.is_some() {
            break;
        }
    }
    let eh_frame = section(".eh_frame");
    let debug_frame = if eh_frame.is_none() {
        section(".debug_frame").map(|(_, d)| d)
    } else {
        None
    };
    Some(ElfCfi {
        map: Some(map.clone()),
        build_id,
        loads,
        text: range(".text"),
        got: range(".got"),
        eh_frame_hdr: section(".eh_frame_hdr"),
        eh_frame,
        debug_frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_of_a_page_aligned_mapping() {
        // lld's layout: the text segment starts mid-page in the file and one page later in memory.
        let loads = [
            Load {
                vaddr: 0,
                offset: 0,
                filesz: 0x17228,
                exec: false,
            },
            Load {
                vaddr: 0x18230,
                offset: 0x17230,
                filesz: 0x40690,
                exec: true,
            },
        ];
        assert_eq!(svma_of(&loads, 0x17000, true), Some(0x18000));
        assert_eq!(svma_of(&loads, 0x0, false), Some(0));
        assert_eq!(svma_of(&loads, 0x60000, true), None);
    }

    #[test]
    fn our_own_binary_has_cfi() {
        let exe = std::env::current_exe().unwrap();
        let cfi = read_cfi(&exe).expect("an ELF file");
        assert!(cfi.eh_frame.as_ref().is_some_and(|(_, d)| !d.is_empty()));
        assert!(cfi.eh_frame_hdr.is_some());
        assert!(!cfi.loads.is_empty());
        let text = cfi.text.clone().unwrap();
        // .text is mapped from the file at the matching offset.
        let l = cfi
            .loads
            .iter()
            .find(|l| (l.vaddr..l.vaddr + l.filesz).contains(&text.start))
            .unwrap();
        let text_off = text.start - l.vaddr + l.offset;
        let page_off = text_off & !0xfff;
        assert_eq!(
            svma_of(&cfi.loads, page_off, true).map(|v| v + (text_off - page_off)),
            Some(text.start)
        );
        assert!(read_cfi(Path::new("/nonexistent")).is_none());
        assert!(read_cfi(Path::new("/proc/self/status")).is_none(), "not an ELF file");
        assert!(cfi.size() > 0);
    }

    #[test]
    fn locate_prefers_the_plain_path_then_proc() {
        let exe = std::env::current_exe().unwrap();
        let ino = fs::metadata(&exe).unwrap().ino();
        let m = Mapping {
            start: 0x1000,
            end: 0x2000,
            offset: 0,
            dev: (0, 0),
            inode: ino,
            exec: true,
            path: exe.to_string_lossy().into_owned(),
        };
        assert_eq!(locate(std::process::id(), &m), Some(exe.clone()));
        // A path that does not exist here (another mount namespace): our own /proc/PID/exe.
        let elsewhere = Mapping {
            path: "/no/such/dir/binary (deleted)".into(),
            ..m.clone()
        };
        let got = locate(std::process::id(), &elsewhere).unwrap();
        assert_eq!(got, PathBuf::from(format!("/proc/{}/exe", std::process::id())));
        let vdso = Mapping {
            path: "[vdso]".into(),
            ..m
        };
        assert_eq!(locate(std::process::id(), &vdso), None);
    }
}
