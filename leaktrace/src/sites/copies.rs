//! The kernel side of stack copies, seen from the agent: the copy programs put in their jump
//! tables, the `STACK_COPIES` ring buffer drained, and `FP_TRUSTED` (frame-pointer stacks that
//! need no copy) kept in step with the stack map.
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap as KMap, MapData, ProgramArray, RingBuf},
    programs::{PerfEvent, ProgramError, RawTracePoint, TracePoint, UProbe},
};
use leaktrace_common::{
    names::{self, prog},
    sites::{COPY_PAGE, StackCopyHeader},
};

pub struct Copies {
    ring: RingBuf<MapData>,
    trusted: KMap<MapData, u32, u32>,
    /// Held open: a program array is emptied when its last user-space descriptor closes.
    _jumps: Vec<ProgramArray<MapData>>,
    /// Program types whose copy program could not be loaded (their events keep frame-pointer
    /// stacks only), with the reason.
    pub unavailable: Vec<String>,
}

/// Load `program` (of a type that `$ty` names) and put it in the one-slot jump table `map`.
fn install(ebpf: &mut Ebpf, program: &str, map: &str) -> anyhow::Result<ProgramArray<MapData>> {
    let p = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} not in the eBPF object"))?;
    macro_rules! load {
        ($ty:ty) => {{
            let p: &mut $ty = p.try_into()?;
            p.load()?;
            p.fd().map(|fd| fd.try_clone())
        }};
    }
    let fd = match program {
        prog::COPY_RAW_TP => load!(RawTracePoint),
        prog::COPY_TP => load!(TracePoint),
        prog::COPY_PERF => load!(PerfEvent),
        _ => load!(UProbe),
    }
    .map_err(|e: ProgramError| anyhow::anyhow!(e))
    .with_context(|| format!("loading {program}"))??;
    let mut jump = ProgramArray::try_from(
        ebpf.take_map(map)
            .with_context(|| format!("map {map} not in the eBPF object"))?,
    )?;
    jump.set(0, &fd, 0).with_context(|| format!("filling {map}"))?;
    Ok(jump)
}

impl Copies {
    /// Install the copy programs. Err only when the maps themselves are missing; a program the
    /// kernel refuses is listed in `unavailable`.
    pub fn new(ebpf: &mut Ebpf) -> anyhow::Result<Copies> {
        let mut jumps = Vec::new();
        let mut unavailable = Vec::new();
        for (program, map) in [
            (prog::COPY_RAW_TP, names::COPY_JUMP_RAW_TP),
            (prog::COPY_TP, names::COPY_JUMP_TP),
            (prog::COPY_PERF, names::COPY_JUMP_PERF),
            (prog::COPY_URETPROBE, names::COPY_JUMP_URETPROBE),
        ] {
            match install(ebpf, program, map) {
                Ok(j) => jumps.push(j),
                Err(e) => unavailable.push(format!("{program}: {e:#}")),
            }
        }
        let ring = RingBuf::try_from(
            ebpf.take_map(names::STACK_COPIES)
                .context("map STACK_COPIES not in the eBPF object")?,
        )?;
        let trusted = KMap::try_from(
            ebpf.take_map(names::FP_TRUSTED)
                .context("map FP_TRUSTED not in the eBPF object")?,
        )?;
        Ok(Copies {
            ring,
            trusted,
            _jumps: jumps,
            unavailable,
        })
    }

    /// Hand at most `max` waiting copies to `f` (header, stack pages); returns how many.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&StackCopyHeader, &[u8])) -> usize {
        let hdr_len = size_of::<StackCopyHeader>();
        let mut n = 0;
        while n < max {
            let Some(item) = self.ring.next() else { break };
            n += 1;
            if item.len() < hdr_len {
                continue;
            }
            // SAFETY: the record starts with a StackCopyHeader (plain integers), read unaligned.
            let hdr: StackCopyHeader = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let data = &item[hdr_len..];
            let len = (hdr.pages as usize * COPY_PAGE).min(data.len());
            f(&hdr, &data[..len]);
        }
        n
    }

    /// The kernel needs no copy for frame-pointer stack `id` any more.
    pub fn trust(&mut self, id: u32) {
        let _ = self.trusted.insert(id, 1, 0);
    }

    /// Stack `id` left the stack map (its id may come back for another stack).
    pub fn forget(&mut self, id: u32) {
        let _ = self.trusted.remove(&id);
    }
}
