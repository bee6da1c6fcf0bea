//! Unwinding copied user stacks by DWARF CFI (`.eh_frame`, `.debug_frame`), with framehop.
//!
//! The kernel copies the registers and a window of the stack at sampled events whose
//! frame-pointer stack is not known to be right (`probes/stackcopy.rs`). Here each copy is
//! unwound with the call-frame information of the binaries the process maps: one framehop
//! unwinder per process (its modules placed where the process mapped them), sharing each
//! binary's CFI, read once per build id and kept in a bounded cache. Code without CFI (JIT code
//! in anonymous memory) is walked by its frame pointers, as framehop does by default.
//!
//! The same CFI tells whether a frame-pointer stack can be trusted ([`Unwinding::fp_trusted`]):
//! a frame-pointer walk is right exactly where each function's CFI says "the caller's frame is
//! at rbp" (CFA = rbp + 16). Stacks that pass need no copy; the kernel is told so.
use std::{collections::HashMap, sync::Arc, time::Instant};

use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use leaktrace_common::sites::{COPY_MAX_PAGES, COPY_PAGE, StackCopyHeader};
use serde::Serialize;

use super::{
    binfile::{self, ElfCfi},
    symbolize::{Mapping, ProcMaps},
};

/// Frames kept per stack (the kernel's stack map keeps as many).
pub const MAX_FRAMES: usize = 127;
/// Bounds on the binaries whose CFI is kept mapped: their number, and their CFI sections' bytes
/// (mapped, not read: resident only where the unwinder looks).
pub const CFI_CACHE_FILES: usize = 1024;
pub const CFI_CACHE_BYTES: usize = 1 << 30;

type Data = binfile::Section;

/// One binary's CFI, shared by every process that maps it.
struct Cfi {
    map: Option<Arc<binfile::Mapped>>,
    loads: Vec<binfile::Load>,
    text: Option<std::ops::Range<u64>>,
    got: Option<std::ops::Range<u64>>,
    eh_frame: Option<(std::ops::Range<u64>, Data)>,
    eh_frame_hdr: Option<(std::ops::Range<u64>, Data)>,
    debug_frame: Option<Data>,
    size: usize,
}

impl From<ElfCfi> for Cfi {
    fn from(e: ElfCfi) -> Cfi {
        let size = e.size();
        Cfi {
            map: e.map,
            loads: e.loads,
            text: e.text,
            got: e.got,
            eh_frame: e.eh_frame,
            eh_frame_hdr: e.eh_frame_hdr,
            debug_frame: e.debug_frame,
            size,
        }
    }
}

impl Cfi {
    fn module(&self, m: &Mapping) -> Option<Module<Data>> {
        let bias = m.start.checked_sub(binfile::svma_of(&self.loads, m.offset, m.exec)?)?;
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, d)| d.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
            debug_frame: self.debug_frame.clone(),
            text: None,
            stubs_svma: None,
            stub_helper_svma: None,
            unwind_info: None,
            text_segment_svma: None,
            text_segment: None,
        };
        Some(Module::new(m.path.clone(), m.start..m.end, bias, info))
    }
}

/// Key of a mapped file: (device, inode) as /proc/PID/maps shows them, the same in every process.
type FileKey = ((u64, u64), u64);

/// Binaries' CFI by build id, bounded by bytes (least recently used out first).
#[derive(Default)]
struct CfiCache {
    /// File → build id (or a stand-in for files without one), `None` when it is no readable ELF.
    files: HashMap<FileKey, Option<Vec<u8>>>,
    by_id: HashMap<Vec<u8>, (Arc<Cfi>, u64)>,
    bytes: usize,
    clock: u64,
}

impl CfiCache {
    fn get(&mut self, pid: u32, m: &Mapping) -> Option<Arc<Cfi>> {
        let key = (m.dev, m.inode);
        self.clock += 1;
        let clock = self.clock;
        if let Some(id) = self.files.get(&key) {
            let id = id.as_ref()?;
            if let Some((cfi, used)) = self.by_id.get_mut(id) {
                *used = clock;
                return Some(cfi.clone());
            }
        }
        let Some(path) = binfile::locate(pid, m) else {
            // Not reachable now (process gone, no privilege): try again another time.
            return None;
        };
        let t0 = Instant::now();
        let read = binfile::read_cfi(&path);
        log::debug!("CFI of {} read in {:?}", path.display(), t0.elapsed());
        let Some(elf) = read else {
            self.files.insert(key, None);
            return None;
        };
        let id = elf.build_id.clone().unwrap_or_else(|| {
            let mut v = b"file:".to_vec();
            v.extend_from_slice(format!("{:?}", key).as_bytes());
            v
        });
        self.files.insert(key, Some(id.clone()));
        if let Some((cfi, used)) = self.by_id.get_mut(&id) {
            *used = clock;
            return Some(cfi.clone());
        }
        let cfi = Arc::new(Cfi::from(elf));
        self.bytes += cfi.size;
        self.by_id.insert(id, (cfi.clone(), clock));
        while (self.bytes > CFI_CACHE_BYTES || self.by_id.len() > CFI_CACHE_FILES) && self.by_id.len() > 1 {
            let oldest = self
                .by_id
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            if let Some((c, _)) = self.by_id.remove(&oldest) {
                self.bytes -= c.size;
            }
        }
        if self.files.len() > 65536 {
            self.files.clear();
        }
        Some(cfi)
    }
}

impl CfiCache {
    /// Let every binary's resident CFI pages go.
    fn release(&self) {
        for (c, _) in self.by_id.values() {
            if let Some(m) = &c.map {
                m.release();
            }
        }
    }
}

/// A process's unwinder: its executable file mappings, each with its binary's CFI.
struct ProcUnwinder {
    unwinder: UnwinderX86_64<Data>,
    /// The mappings it was built from (start, end, inode), to notice new ones.
    layout: Vec<(u64, u64, u64)>,
    /// Code bytes at return addresses outside any file (JIT code), read from /proc/PID/mem.
    code: HashMap<u64, Option<[u8; 8]>>,
}

/// Bound on the code bytes kept per process.
const MAX_CODE_ENTRIES: usize = 4096;

/// Eight bytes of process `pid`'s code at `addr` (needs ptrace access, as root has).
fn read_code(pid: u32, addr: u64) -> Option<[u8; 8]> {
    use std::os::unix::fs::FileExt as _;
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, addr).ok()?;
    Some(b)
}

/// How a frame of code without CFI returns, read from the instructions at its return address
/// when they return at once: `ret`, `add $N, %rsp; ret` (CPython 3.12's perf trampolines),
/// `pop %rbp; ret`, `leave; ret`. (sp offset of the return address, restore bp from [sp]?, or
/// bp-based for `leave`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Epilogue {
    /// The return address is at sp + n; bp unchanged.
    Ret(u64),
    /// bp = [sp], return address at sp + 8.
    PopBpRet,
    /// sp = bp, then as `PopBpRet`.
    LeaveRet,
}

fn epilogue(code: &[u8; 8]) -> Option<Epilogue> {
    match code {
        [0xc3, ..] => Some(Epilogue::Ret(0)),
        [0x48, 0x83, 0xc4, n, 0xc3, ..] if *n < 0x80 && n % 8 == 0 => Some(Epilogue::Ret(u64::from(*n))),
        [0x5d, 0xc3, ..] => Some(Epilogue::PopBpRet),
        [0xc9, 0xc3, ..] => Some(Epilogue::LeaveRet),
        _ => None,
    }
}

fn layout(maps: &ProcMaps) -> Vec<(u64, u64, u64)> {
    maps.maps
        .iter()
        .filter(|m| m.exec && !m.path.starts_with('['))
        .map(|m| (m.start, m.end, m.inode))
        .collect()
}

/// How one copied stack unwound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwound {
    /// Instruction pointer, then return addresses (as the kernel's stack map holds them).
    pub addrs: Vec<u64>,
    /// The unwinder reached the outermost frame.
    pub complete: bool,
    /// It stopped because it needed the stack above the copied window.
    pub truncated: bool,
    /// Stack bytes (above the stack pointer) the unwinder read.
    pub bytes_read: u64,
    /// Stack bytes above the stack pointer up to the first frame outside the C/C++ runtime
    /// (`None`: no such frame).
    pub bytes_to_own_frame: Option<u64>,
}

/// Figures for the README's choice of window and for `sites --json` (`unwind`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnwindStats {
    pub copies: u64,
    pub complete: u64,
    pub truncated: u64,
    pub frames: u64,
    /// Copies by pages of stack needed to reach the first frame outside the C/C++ runtime
    /// (index 0 = within the stack pointer's page; the last slot: more than the window or never).
    pub own_frame_pages: Vec<u64>,
    /// Copies by pages read for the whole unwind (same slots).
    pub full_pages: Vec<u64>,
    /// Frame-pointer stacks checked against the CFI, and how many were right.
    pub fp_checked: u64,
    pub fp_trusted: u64,
    /// Agent time spent unwinding and checking (wall time of those calls, ns), reading the
    /// binaries' CFI left out.
    pub unwind_ns: u64,
    /// Agent time spent mapping binaries' CFI and placing them in processes (ns), and the CFI
    /// bytes mapped (resident only where the unwinder looked).
    pub cfi_load_ns: u64,
    pub cfi_bytes: u64,
    /// Unwound stacks not kept (a process's bound reached).
    pub unwound_dropped: u64,
}

fn pages_slot(bytes: Option<u64>, sp: u64) -> usize {
    match bytes {
        Some(b) => (((sp % COPY_PAGE as u64) + b).div_ceil(COPY_PAGE as u64) as usize)
            .saturating_sub(1)
            .min(COPY_MAX_PAGES),
        None => COPY_MAX_PAGES,
    }
}

/// Libraries that say nothing about where a program allocates (for the measurement only).
fn is_runtime(module: &str) -> bool {
    super::symbolize::is_c_runtime(module)
        || module.starts_with("libstdc++")
        || module.starts_with("libgcc_s")
        || module.starts_with("libm.so")
}

#[derive(Default)]
pub struct Unwinding {
    cfi: CfiCache,
    procs: HashMap<u32, ProcUnwinder>,
    cache: Option<CacheX86_64>,
    pub stats: UnwindStats,
}

impl Unwinding {
    pub fn new() -> Self {
        Unwinding {
            cache: Some(CacheX86_64::new()),
            stats: UnwindStats {
                own_frame_pages: vec![0; COPY_MAX_PAGES + 1],
                full_pages: vec![0; COPY_MAX_PAGES + 1],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The process's unwinder, (re)built when its executable mappings changed.
    fn proc(&mut self, maps: &ProcMaps) -> &mut ProcUnwinder {
        let lay = layout(maps);
        let stale = self.procs.get(&maps.pid).is_none_or(|p| p.layout != lay);
        if stale {
            let t0 = Instant::now();
            let mut unwinder = UnwinderX86_64::new();
            for m in maps.maps.iter().filter(|m| m.exec && !m.path.starts_with('[')) {
                if let Some(module) = self.cfi.get(maps.pid, m).and_then(|c| c.module(m)) {
                    unwinder.add_module(module);
                }
            }
            self.stats.cfi_load_ns += t0.elapsed().as_nanos() as u64;
            self.stats.cfi_bytes = self.cfi.bytes as u64;
            let code = self.procs.remove(&maps.pid).map(|p| p.code).unwrap_or_default();
            self.procs.insert(
                maps.pid,
                ProcUnwinder {
                    unwinder,
                    layout: lay,
                    code,
                },
            );
        }
        self.procs.get_mut(&maps.pid).expect("inserted above")
    }

    /// Let the binaries' resident CFI pages go (call every few seconds: RSS then holds what the
    /// unwinder touched since).
    pub fn release_pages(&mut self) {
        self.cfi.release();
    }

    /// Forget a process's unwinder (it exited).
    pub fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    /// Unwind one copy (`data`: its pages, from `hdr.base`).
    pub fn unwind(&mut self, maps: &ProcMaps, hdr: &StackCopyHeader, data: &[u8]) -> Unwound {
        let mut cache = self.cache.take().unwrap_or_default();
        let pid = maps.pid;
        let p = self.proc(maps);
        let t0 = Instant::now();
        let env = Env {
            runtime: &|a| maps.find(a).is_some_and(|m| is_runtime(m.module())),
            jit: &|a| maps.find(a).is_none(),
            code: &mut |a| {
                if p.code.len() >= MAX_CODE_ENTRIES {
                    p.code.clear();
                }
                *p.code.entry(a).or_insert_with(|| read_code(pid, a))
            },
        };
        let u = unwind_copy(&p.unwinder, &mut cache, hdr, data, env);
        self.cache = Some(cache);
        let s = &mut self.stats;
        s.copies += 1;
        s.complete += u.complete as u64;
        s.truncated += u.truncated as u64;
        s.frames += u.addrs.len() as u64;
        s.own_frame_pages[pages_slot(u.bytes_to_own_frame, hdr.sp)] += 1;
        let full = if u.complete { Some(u.bytes_read) } else { None };
        s.full_pages[pages_slot(full, hdr.sp)] += 1;
        s.unwind_ns += t0.elapsed().as_nanos() as u64;
        u
    }

    /// Is the frame-pointer stack `addrs` (innermost first) what unwinding by CFI would give?
    /// Each frame must be in code whose CFI puts the caller's frame at rbp (or, for the last one,
    /// says the stack ends there). Past the first frame that is not, only C-runtime frames may
    /// follow, after at least one frame of the program (its own frames end in glibc's start-up
    /// code, which has no frame pointer): the walk was right where it matters.
    pub fn fp_trusted(&mut self, maps: &ProcMaps, addrs: &[u64]) -> bool {
        let mut cache = self.cache.take().unwrap_or_default();
        let unwinder = &self.proc(maps).unwinder;
        let t0 = Instant::now();
        let runtime = |a: u64| maps.find(a).is_none_or(|m| super::symbolize::is_c_runtime(m.module()));
        let mut ok = true;
        for (i, &a) in addrs.iter().enumerate() {
            let fa = if i == 0 {
                FrameAddress::from_instruction_pointer(a)
            } else {
                match FrameAddress::from_return_address(a) {
                    Some(f) => f,
                    None => break,
                }
            };
            let rule = frame_pointer_rule(unwinder, &mut cache, fa);
            if rule == FpRule::Follows || (rule == FpRule::End && i + 1 == addrs.len()) {
                continue;
            }
            ok = i > 0 && addrs[i..].iter().all(|&x| runtime(x)) && addrs[..i].iter().any(|&x| !runtime(x));
            break;
        }
        self.cache = Some(cache);
        self.stats.fp_checked += 1;
        self.stats.fp_trusted += ok as u64;
        self.stats.unwind_ns += t0.elapsed().as_nanos() as u64;
        ok
    }
}

/// Step over a frame whose code returns at once (see [`epilogue`]).
fn exec_epilogue(
    e: Epilogue,
    regs: &mut UnwindRegsX86_64,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Option<u64>, framehop::Error> {
    let sp = match e {
        Epilogue::LeaveRet => regs.bp(),
        _ => regs.sp(),
    };
    let (ra_at, bp) = match e {
        Epilogue::Ret(n) => (sp + n, regs.bp()),
        Epilogue::PopBpRet | Epilogue::LeaveRet => {
            (sp + 8, read(sp).map_err(|_| framehop::Error::CouldNotReadStack(sp))?)
        }
    };
    if ra_at < regs.sp() {
        return Err(framehop::Error::FramepointerUnwindingMovedBackwards);
    }
    let ra = read(ra_at).map_err(|_| framehop::Error::CouldNotReadStack(ra_at))?;
    regs.set_sp(ra_at + 8);
    regs.set_bp(bp);
    regs.set_ip(ra);
    Ok(Some(ra))
}

/// What the unwind rule at one address does, compared with a frame-pointer walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FpRule {
    /// It finds the caller exactly as a frame-pointer walk does.
    Follows,
    /// The stack ends here.
    End,
    Differs,
}

/// Tested on a synthetic stack where every word holds a value derived from its address.
fn frame_pointer_rule(u: &UnwinderX86_64<Data>, cache: &mut CacheX86_64, fa: FrameAddress) -> FpRule {
    const SP: u64 = 0x0000_1000_0000_0000;
    const BP: u64 = 0x0000_2000_0000_0000;
    let word = |a: u64| a ^ 0x5a5a_0000_0000_5a5a;
    let mut regs = UnwindRegsX86_64::new(fa.address(), SP, BP);
    let mut read = |a: u64| Ok(word(a));
    match u.unwind_frame(fa, &mut regs, cache, &mut read) {
        Ok(Some(ra)) if ra == word(BP + 8) && regs.sp() == BP + 16 && regs.bp() == word(BP) => FpRule::Follows,
        Ok(None) => FpRule::End,
        _ => FpRule::Differs,
    }
}

/// What unwinding a copy needs to know about the process.
struct Env<'a> {
    /// The address is in the C/C++ runtime (for the measurement only).
    runtime: &'a dyn Fn(u64) -> bool,
    /// The address is outside any file mapping (JIT code, no CFI).
    jit: &'a dyn Fn(u64) -> bool,
    /// Code bytes at an address.
    code: &'a mut dyn FnMut(u64) -> Option<[u8; 8]>,
}

/// Unwind a copied stack with `u`. Frames in code without CFI (JIT) are walked by the frame
/// pointer (framehop's fallback), unless the code at the return address returns at once: then
/// that epilogue says exactly where the caller is.
fn unwind_copy(
    u: &UnwinderX86_64<Data>,
    cache: &mut CacheX86_64,
    hdr: &StackCopyHeader,
    data: &[u8],
    env: Env<'_>,
) -> Unwound {
    let runtime = env.runtime;
    let base = hdr.base;
    let len = data.len().min(hdr.pages as usize * COPY_PAGE) as u64;
    let end = base + len;
    let mut hi = hdr.sp;
    let mut beyond = false;
    let mut read = |a: u64| -> Result<u64, ()> {
        if a >= base && a.checked_add(8).is_some_and(|e| e <= end) {
            let off = (a - base) as usize;
            hi = hi.max(a + 8);
            Ok(u64::from_le_bytes(data[off..off + 8].try_into().expect("8 bytes")))
        } else {
            beyond |= a >= end;
            Err(())
        }
    };
    let mut regs = UnwindRegsX86_64::new(hdr.ip, hdr.sp, hdr.bp);
    let mut addrs = vec![hdr.ip];
    let mut own = (!runtime(hdr.ip)).then_some(0);
    let mut fa = FrameAddress::from_instruction_pointer(hdr.ip);
    let mut complete = false;
    while addrs.len() < MAX_FRAMES {
        let jit_rule = if fa.is_return_address() && (env.jit)(fa.address()) {
            (env.code)(fa.address()).as_ref().and_then(epilogue)
        } else {
            None
        };
        let step = match jit_rule {
            Some(e) => exec_epilogue(e, &mut regs, &mut read),
            None => u.unwind_frame(fa, &mut regs, cache, &mut read),
        };
        match step {
            Ok(Some(ra)) => {
                let Some(next) = FrameAddress::from_return_address(ra) else {
                    complete = true;
                    break;
                };
                addrs.push(ra);
                if own.is_none() && !runtime(ra) {
                    own = Some(regs.sp().saturating_sub(hdr.sp));
                }
                fa = next;
            }
            Ok(None) => {
                complete = true;
                break;
            }
            Err(e) => {
                log::debug!(
                    "unwind stopped after {} frames at {:#x}: {e}",
                    addrs.len(),
                    fa.address()
                );
                break;
            }
        }
    }
    Unwound {
        addrs,
        complete,
        truncated: !complete && beyond,
        bytes_read: hi - hdr.sp,
        bytes_to_own_frame: own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epilogues() {
        assert_eq!(epilogue(&[0xc3, 0, 0, 0, 0, 0, 0, 0]), Some(Epilogue::Ret(0)));
        // CPython 3.12's trampoline after its call: add $8, %rsp; ret.
        assert_eq!(
            epilogue(&[0x48, 0x83, 0xc4, 0x08, 0xc3, 0, 0, 0]),
            Some(Epilogue::Ret(8))
        );
        assert_eq!(epilogue(&[0x48, 0x83, 0xc4, 0x09, 0xc3, 0, 0, 0]), None);
        assert_eq!(epilogue(&[0x5d, 0xc3, 0, 0, 0, 0, 0, 0]), Some(Epilogue::PopBpRet));
        assert_eq!(epilogue(&[0xc9, 0xc3, 0, 0, 0, 0, 0, 0]), Some(Epilogue::LeaveRet));
        assert_eq!(epilogue(&[0x48, 0x89, 0xc7, 0, 0, 0, 0, 0]), None);
        // add $8, %rsp; ret with the return address at sp + 8.
        let stack = [0u64, 0x1234];
        let mut read = |a: u64| stack.get(((a - 0x1000) / 8) as usize).copied().ok_or(());
        let mut regs = UnwindRegsX86_64::new(0x10, 0x1000, 0x77);
        assert_eq!(
            exec_epilogue(Epilogue::Ret(8), &mut regs, &mut read).unwrap(),
            Some(0x1234)
        );
        assert_eq!((regs.sp(), regs.bp(), regs.ip()), (0x1010, 0x77, 0x1234));
    }

    #[test]
    fn page_slots() {
        // Within the stack pointer's page, one page up, beyond the window, never.
        assert_eq!(pages_slot(Some(8), 0x7ff0), 0);
        assert_eq!(pages_slot(Some(0x20), 0x7ff0), 1);
        assert_eq!(pages_slot(Some(1 << 30), 0x7ff0), COPY_MAX_PAGES);
        assert_eq!(pages_slot(None, 0), COPY_MAX_PAGES);
    }

    /// Copy this thread's stack from inside a few nested functions and unwind it: the frames of
    /// those functions must come out, in order (this test binary has CFI, maybe no frame pointers).
    #[test]
    fn unwinds_our_own_stack() {
        #[inline(never)]
        fn level3(out: &mut Option<(StackCopyHeader, Vec<u8>)>) {
            let (ip, sp, bp): (u64, u64, u64);
            // SAFETY: reads three registers, no memory access.
            unsafe {
                std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
                    ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp);
            }
            let base = sp & !(COPY_PAGE as u64 - 1);
            // Copy up to 8 pages of our stack, as the kernel does (stop where it ends).
            let mut data = Vec::new();
            for i in 0..COPY_MAX_PAGES as u64 {
                let p = base + i * COPY_PAGE as u64;
                let mut page = vec![0u8; COPY_PAGE];
                let local = [libc::iovec {
                    iov_base: page.as_mut_ptr().cast(),
                    iov_len: COPY_PAGE,
                }];
                let remote = [libc::iovec {
                    iov_base: p as *mut libc::c_void,
                    iov_len: COPY_PAGE,
                }];
                // SAFETY: reads our own memory into `page`; failure is reported, not a fault.
                let n = unsafe { libc::process_vm_readv(libc::getpid(), local.as_ptr(), 1, remote.as_ptr(), 1, 0) };
                if n != COPY_PAGE as isize {
                    break;
                }
                data.extend_from_slice(&page);
            }
            let hdr = StackCopyHeader {
                tgid: std::process::id(),
                pages: (data.len() / COPY_PAGE) as u32,
                ip,
                sp,
                bp,
                base,
                ..Default::default()
            };
            *out = Some((hdr, data));
        }
        #[inline(never)]
        fn level2(out: &mut Option<(StackCopyHeader, Vec<u8>)>) {
            level3(out);
            std::hint::black_box(&out);
        }
        #[inline(never)]
        fn level1(out: &mut Option<(StackCopyHeader, Vec<u8>)>) {
            level2(out);
            std::hint::black_box(&out);
        }
        let mut out = None;
        level1(&mut out);
        let (hdr, data) = out.unwrap();
        let maps = ProcMaps::read(std::process::id()).unwrap();
        let mut u = Unwinding::new();
        let got = u.unwind(&maps, &hdr, &data);
        assert!(got.addrs.len() >= 3, "{got:?}");
        let mut r = super::super::symbolize::Resolver::new();
        let names: Vec<String> = r
            .resolve(Some(&maps), None, &got.addrs)
            .into_iter()
            .map(|f| f.text)
            .collect();
        let pos = |n: &str| names.iter().position(|x| x.ends_with(n));
        let (a, b, c) = (pos("level3"), pos("level2"), pos("level1"));
        assert!(
            a.is_some() && a < b && b < c,
            "level3 ← level2 ← level1 expected in {names:?}"
        );
        assert_eq!(u.stats.copies, 1);
        assert!(u.stats.unwind_ns > 0);
    }
}
