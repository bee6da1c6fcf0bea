//! The event envelope: every record starts with an [`EventHeader`] whose `kind` tags the payload.

/// Tag of every record in the ring buffers; also the index into the `DROPS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Mmap = 1,
    Munmap = 2,
    Brk = 3,
    Mremap = 4,
    Fork = 5,
    Exec = 6,
    Exit = 7,
    OomKill = 8,
}

/// Number of slots in the `DROPS` array (kinds are 1-based).
pub const EVENT_KIND_SLOTS: u32 = 9;

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Mmap,
        EventKind::Munmap,
        EventKind::Brk,
        EventKind::Mremap,
        EventKind::Fork,
        EventKind::Exec,
        EventKind::Exit,
        EventKind::OomKill,
    ];

    pub const fn from_u32(v: u32) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Mmap,
            2 => EventKind::Munmap,
            3 => EventKind::Brk,
            4 => EventKind::Mremap,
            5 => EventKind::Fork,
            6 => EventKind::Exec,
            7 => EventKind::Exit,
            8 => EventKind::OomKill,
            _ => return None,
        })
    }

    /// The `"event"` value of the JSON lines contract.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Mmap => "mmap",
            EventKind::Munmap => "munmap",
            EventKind::Brk => "brk",
            EventKind::Mremap => "mremap",
            EventKind::Fork => "fork",
            EventKind::Exec => "exec",
            EventKind::Exit => "exit",
            EventKind::OomKill => "oom_kill",
        }
    }

    /// Lifecycle kinds travel in their own ring buffer.
    pub const fn is_lifecycle(self) -> bool {
        matches!(
            self,
            EventKind::Fork | EventKind::Exec | EventKind::Exit | EventKind::OomKill
        )
    }
}

pub const COMM_LEN: usize = 16;
pub const FILENAME_LEN: usize = 256;
/// Bytes of the new program's argument area kept by the exec event.
pub const EXEC_ARGS_LEN: usize = 256;

/// Common head of every record. `pid` is the tgid (the process), `tid` the thread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub kind: u32,
    pub cpu: u32,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MmapEvent {
    pub hdr: EventHeader,
    pub addr: u64,
    pub len: u64,
    pub prot: u64,
    pub flags: u64,
    pub fd: i64,
    pub off: u64,
    /// Mapped address, or `-errno`.
    pub ret: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MunmapEvent {
    pub hdr: EventHeader,
    pub addr: u64,
    pub len: u64,
    pub ret: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BrkEvent {
    pub hdr: EventHeader,
    /// The argument (0 = query).
    pub requested: u64,
    /// Break before the call; valid when `old_known != 0`.
    pub old_brk: u64,
    /// Break after the call (the syscall's return value).
    pub new_brk: u64,
    pub old_known: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MremapEvent {
    pub hdr: EventHeader,
    pub old_addr: u64,
    pub old_len: u64,
    pub new_len: u64,
    pub flags: u64,
    pub new_addr: u64,
    /// New address, or `-errno`.
    pub ret: i64,
}

/// A new process (threads are not reported). The header is the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub hdr: EventHeader,
    pub child_pid: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    pub old_pid: u32,
    /// Bytes of `filename` used (without NUL).
    pub filename_len: u32,
    pub filename: [u8; FILENAME_LEN],
    /// Bytes of `args` used: the program's argument area (`mm->arg_start..arg_end`, NUL-separated
    /// argv as in /proc/PID/cmdline) read at exec, before the program can rewrite it. 0 when it
    /// could not be read (or `ExecArgsConfig.enabled == 0`).
    pub args_len: u32,
    /// Size of the whole argument area (`arg_end - arg_start`); above `args_len`: cut.
    pub args_total: u32,
    pub args: [u8; EXEC_ARGS_LEN],
}

/// Where the argument area of a process is in the running kernel, read by the agent from BTF and
/// handed to the programs as the `EXEC_ARGS_CONFIG` global. `enabled == 0`: not read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecArgsConfig {
    pub enabled: u32,
    /// `offsetof(struct task_struct, mm)`.
    pub task_mm: u32,
    /// `offsetof(struct mm_struct, arg_start)`.
    pub mm_arg_start: u32,
    /// `offsetof(struct mm_struct, arg_end)`.
    pub mm_arg_end: u32,
}

impl ExecArgsConfig {
    pub const OFF: ExecArgsConfig = ExecArgsConfig {
        enabled: 0,
        task_mm: 0,
        mm_arg_start: 0,
        mm_arg_end: 0,
    };
}

/// A process (thread group) ended.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub hdr: EventHeader,
    /// The value passed to exit_group(); valid when `code_known != 0`.
    pub exit_code: i32,
    pub code_known: u32,
}

/// Bits of [`OomKillEvent::present`]: which fields the kernel's `oom:mark_victim` format has.
pub mod oom_field {
    pub const COMM: u32 = 1 << 0;
    pub const TOTAL_VM: u32 = 1 << 1;
    pub const ANON_RSS: u32 = 1 << 2;
    pub const FILE_RSS: u32 = 1 << 3;
    pub const SHMEM_RSS: u32 = 1 << 4;
    pub const UID: u32 = 1 << 5;
    pub const PGTABLES: u32 = 1 << 6;
    pub const OOM_SCORE_ADJ: u32 = 1 << 7;
}

/// `oom:mark_victim`. The header describes the *trigger* (the task running the OOM killer);
/// the victim is in the payload. Sizes are in kB, as the kernel gives them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OomKillEvent {
    pub hdr: EventHeader,
    pub victim_pid: u32,
    pub uid: u32,
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    pub pgtables_kb: u64,
    pub oom_score_adj: i32,
    pub present: u32,
    pub victim_comm: [u8; COMM_LEN],
}

/// Arguments saved at syscall entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingCall {
    pub kind: u32,
    pub _pad: u32,
    pub args: [u64; 6],
}

/// Value of `RSS_DIRTY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RssDirty {
    pub tgid: u32,
    pub _pad: u32,
    pub epoch: u64,
}

/// Largest record; the agent rejects shorter buffers than a kind needs.
pub const fn record_size(kind: EventKind) -> usize {
    match kind {
        EventKind::Mmap => core::mem::size_of::<MmapEvent>(),
        EventKind::Munmap => core::mem::size_of::<MunmapEvent>(),
        EventKind::Brk => core::mem::size_of::<BrkEvent>(),
        EventKind::Mremap => core::mem::size_of::<MremapEvent>(),
        EventKind::Fork => core::mem::size_of::<ForkEvent>(),
        EventKind::Exec => core::mem::size_of::<ExecEvent>(),
        EventKind::Exit => core::mem::size_of::<ExitEvent>(),
        EventKind::OomKill => core::mem::size_of::<OomKillEvent>(),
    }
}
