//! USDT probes (SystemTap SDT notes) of managed runtimes: how the kernel program reads a probe's
//! arguments, and the record it sends.
//!
//! The agent parses each binary's `.note.stapsdt` argument specs (`-4@%eax`, `8@-16(%rbp)`,
//! `8@$5`, ...) into [`UsdtArgSpec`]s and stores one [`UsdtSpec`] per (binary, probe) in the
//! `USDT_SPECS` map under a small id. Every probe location is attached with that id as the BPF
//! cookie; the one program (`usdt_probe`) looks the spec up, reads each argument from the saved
//! registers or the process's memory, and sends a [`UsdtEvent`] through the `USDT_EVENTS` ring
//! buffer. The kernel side knows nothing about what a probe means: `probe` is the agent's tag.

/// Most arguments read per probe (HotSpot's `mem__pool__gc__end` has 8).
pub const USDT_MAX_ARGS: usize = 8;
/// Arguments read as C strings (pool and collector names), at most this many per probe.
pub const USDT_MAX_STRS: usize = 2;
/// Bytes kept of each string argument (NUL included).
pub const USDT_STR_LEN: usize = 32;
/// Entries of `USDT_SPECS`.
pub const USDT_MAX_SPECS: u32 = 512;

/// [`UsdtArgSpec::kind`]: a constant (`$N`): `val_off` is the value.
pub const USDT_ARG_CONST: u8 = 0;
/// The value of a register (`%rax`): `reg_off` is its offset in `pt_regs`.
pub const USDT_ARG_REG: u8 = 1;
/// Memory at register + offset (`-16(%rbp)`), read from the process.
pub const USDT_ARG_REG_DEREF: u8 = 2;

/// How to read one argument (like libbpf's `usdt_arg_spec`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsdtArgSpec {
    /// The constant, or the offset added to the register before the read.
    pub val_off: u64,
    /// `USDT_ARG_*`.
    pub kind: u8,
    /// 1 = sign-extend from `size` bytes.
    pub signed: u8,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    /// 0: a number. 1 + k: a `char *` whose string goes into [`UsdtEvent::strs`]`[k]`.
    pub str_slot: u8,
    /// Byte offset of the register in the kernel's `struct pt_regs`.
    pub reg_off: u16,
    pub _pad: u16,
}

/// One probe of one binary.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsdtSpec {
    pub args: [UsdtArgSpec; USDT_MAX_ARGS],
    /// The agent's tag for this probe, copied into every event.
    pub probe: u32,
    pub arg_cnt: u16,
    pub _pad: u16,
}

/// One firing of a USDT probe.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsdtEvent {
    /// CLOCK_MONOTONIC, like every other event.
    pub ts_ns: u64,
    /// The process (tgid) and thread.
    pub pid: u32,
    pub tid: u32,
    /// [`UsdtSpec::probe`].
    pub probe: u32,
    /// Arguments read (the spec's `arg_cnt`).
    pub nargs: u16,
    /// Bit i: argument i could not be read (fault); its value is 0.
    pub bad_args: u8,
    pub _pad: u8,
    pub args: [u64; USDT_MAX_ARGS],
    /// String arguments, NUL-terminated (or truncated at `USDT_STR_LEN`).
    pub strs: [[u8; USDT_STR_LEN]; USDT_MAX_STRS],
}

/// Slots of the per-CPU `USDT_COUNTERS` array.
pub mod usdt_counter {
    /// The ring buffer was full: an event was lost.
    pub const DROPS: u32 = 0;
    /// A probe fired whose cookie has no spec (should not happen; counted).
    pub const NO_SPEC: u32 = 1;
    pub const SLOTS: u32 = 4;
}
