//! What each program needs from the kernel, and what happens when it is not there.
use leaktrace_common::{Field, TpOffsets, names::prog};

pub enum Hook {
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// Raw tracepoints share names with classic ones; `category` is only used to find the format
    /// file that proves the tracepoint exists.
    RawTracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// A perf_event program on a software counter of every CPU, run every Nth event; attached
    /// only when stacks are on (`run --stacks`, `watch`, `sites`). `name` as `perf list` says it.
    PerfEvent {
        name: &'static str,
    },
    /// A uprobe (`ret`: uretprobe) on a C library function, attached per watched process with
    /// `--malloc`; at start the program is only loaded (verified).
    UProbe {
        function: &'static str,
        ret: bool,
    },
    /// USDT probes of managed runtimes (`providers`), attached per tracked JVM / CPython process;
    /// at start the program is only loaded (verified).
    Usdt {
        providers: &'static str,
    },
}

impl Hook {
    pub fn category_name(&self) -> (&'static str, &'static str) {
        match *self {
            Hook::Tracepoint { category, name } | Hook::RawTracepoint { category, name } => (category, name),
            Hook::PerfEvent { name } => ("perf_event", name),
            Hook::UProbe { function, ret } => (if ret { "uretprobe" } else { "uprobe" }, function),
            Hook::Usdt { providers } => ("usdt", providers),
        }
    }
    pub fn label(&self) -> String {
        match self {
            Hook::Tracepoint { category, name } => format!("{category}:{name}"),
            Hook::RawTracepoint { name, .. } => format!("raw_tp:{name}"),
            Hook::PerfEvent { name } => format!("perf_event:{name}"),
            Hook::UProbe { function, ret: false } => format!("uprobe:libc:{function}"),
            Hook::UProbe { function, ret: true } => format!("uretprobe:libc:{function}"),
            Hook::Usdt { providers } => format!("usdt:{providers}"),
        }
    }
    /// Attached by the kernel's tracefs events (a `format` file proves the hook exists).
    pub fn in_tracefs(&self) -> bool {
        matches!(self, Hook::Tracepoint { .. } | Hook::RawTracepoint { .. })
    }
}

/// A format field the program reads and where its location goes in [`TpOffsets`].
pub struct FieldMap {
    pub format: &'static str,
    pub slot: fn(&mut TpOffsets) -> &mut Field,
    /// The program is useless without it (e.g. the syscall's `ret`); optional ones are flagged
    /// as absent and filled by the agent where it can (oom:mark_victim before 6.9).
    pub required: bool,
}

pub enum Need {
    Required,
    /// The agent keeps working without it, in the way described.
    Optional {
        fallback: &'static str,
    },
}

pub struct ProbeSpec {
    pub program: &'static str,
    /// A `syscalls:*` tracepoint. Attaching any of them sends every syscall of every task through
    /// the kernel's tracing slow path, so the host agent leaves them off unless asked.
    pub hook: Hook,
    pub syscall: bool,
    pub need: Need,
    pub fields: &'static [FieldMap],
}

macro_rules! f {
    ($fmt:literal => $slot:ident) => {
        FieldMap {
            format: $fmt,
            slot: |o| &mut o.$slot,
            required: true,
        }
    };
    ($fmt:literal => $slot:ident, optional) => {
        FieldMap {
            format: $fmt,
            slot: |o| &mut o.$slot,
            required: false,
        }
    };
}

const fn tp(category: &'static str, name: &'static str) -> Hook {
    Hook::Tracepoint { category, name }
}

const RET: &[FieldMap] = &[f!("ret" => sys_exit_ret)];

const fn malloc(function: &'static str) -> Hook {
    Hook::UProbe { function, ret: false }
}

const MALLOC: Need = Need::Optional {
    fallback: "--malloc is unavailable; default allocation sites still work",
};

pub static PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        program: prog::MMAP_ENTER,
        syscall: true,
        hook: tp("syscalls", "sys_enter_mmap"),
        need: Need::Required,
        fields: &[
            f!("addr" => mmap_addr),
            f!("len" => mmap_len),
            f!("prot" => mmap_prot),
            f!("flags" => mmap_flags),
            f!("fd" => mmap_fd),
            f!("off" => mmap_off, optional),
        ],
    },
    ProbeSpec {
        program: prog::MMAP_EXIT,
        syscall: true,
        hook: tp("syscalls", "sys_exit_mmap"),
        need: Need::Required,
        fields: RET,
    },
    ProbeSpec {
        program: prog::MUNMAP_ENTER,
        syscall: true,
        hook: tp("syscalls", "sys_enter_munmap"),
        need: Need::Required,
        fields: &[f!("addr" => munmap_addr), f!("len" => munmap_len)],
    },
    ProbeSpec {
        program: prog::MUNMAP_EXIT,
        syscall: true,
        hook: tp("syscalls", "sys_exit_munmap"),
        need: Need::Required,
        fields: RET,
    },
    ProbeSpec {
        program: prog::BRK_ENTER,
        syscall: true,
        hook: tp("syscalls", "sys_enter_brk"),
        need: Need::Required,
        fields: &[f!("brk" => brk_brk)],
    },
    ProbeSpec {
        program: prog::BRK_EXIT,
        syscall: true,
        hook: tp("syscalls", "sys_exit_brk"),
        need: Need::Required,
        fields: RET,
    },
    ProbeSpec {
        program: prog::MREMAP_ENTER,
        syscall: true,
        hook: tp("syscalls", "sys_enter_mremap"),
        need: Need::Required,
        fields: &[
            f!("addr" => mremap_addr),
            f!("old_len" => mremap_old_len),
            f!("new_len" => mremap_new_len),
            f!("flags" => mremap_flags),
            f!("new_addr" => mremap_new_addr, optional),
        ],
    },
    ProbeSpec {
        program: prog::MREMAP_EXIT,
        syscall: true,
        hook: tp("syscalls", "sys_exit_mremap"),
        need: Need::Required,
        fields: RET,
    },
    ProbeSpec {
        program: prog::EXIT_GROUP_ENTER,
        syscall: true,
        hook: tp("syscalls", "sys_enter_exit_group"),
        need: Need::Optional {
            fallback: "exit codes are reported as unknown",
        },
        fields: &[f!("error_code" => exit_group_code)],
    },
    ProbeSpec {
        program: prog::TASK_NEWTASK,
        syscall: false,
        hook: tp("task", "task_newtask"),
        need: Need::Optional {
            fallback: "threads are told from processes in the agent via /proc",
        },
        fields: &[f!("pid" => newtask_pid), f!("clone_flags" => newtask_clone_flags)],
    },
    ProbeSpec {
        program: prog::PROCESS_FORK,
        syscall: false,
        hook: tp("sched", "sched_process_fork"),
        need: Need::Required,
        fields: &[
            f!("parent_pid" => fork_parent_pid, optional),
            f!("child_pid" => fork_child_pid),
        ],
    },
    ProbeSpec {
        program: prog::PROCESS_EXEC,
        syscall: false,
        hook: tp("sched", "sched_process_exec"),
        need: Need::Required,
        fields: &[
            f!("filename" => exec_filename),
            f!("pid" => exec_pid, optional),
            f!("old_pid" => exec_old_pid, optional),
        ],
    },
    ProbeSpec {
        program: prog::PROCESS_EXIT,
        syscall: false,
        hook: tp("sched", "sched_process_exit"),
        need: Need::Required,
        fields: &[
            f!("pid" => exit_pid, optional),
            f!("group_dead" => exit_group_dead, optional),
        ],
    },
    ProbeSpec {
        program: prog::MARK_VICTIM,
        syscall: false,
        hook: tp("oom", "mark_victim"),
        need: Need::Required,
        fields: &[
            f!("pid" => oom_pid),
            f!("comm" => oom_comm, optional),
            f!("total_vm" => oom_total_vm, optional),
            f!("anon_rss" => oom_anon_rss, optional),
            f!("file_rss" => oom_file_rss, optional),
            f!("shmem_rss" => oom_shmem_rss, optional),
            f!("uid" => oom_uid, optional),
            f!("pgtables" => oom_pgtables, optional),
            f!("oom_score_adj" => oom_score_adj, optional),
        ],
    },
    ProbeSpec {
        program: prog::RSS_STAT,
        syscall: false,
        hook: Hook::RawTracepoint {
            category: "kmem",
            name: "rss_stat",
        },
        need: Need::Optional {
            fallback: "every tracked process is read from /proc each interval",
        },
        fields: &[],
    },
    ProbeSpec {
        program: prog::FAULT_SAMPLE,
        syscall: false,
        hook: Hook::PerfEvent { name: "page-faults" },
        need: Need::Optional {
            fallback: "allocation sites come from brk/mmap/mremap growth only",
        },
        fields: &[],
    },
    ProbeSpec {
        program: prog::MALLOC_ENTER,
        syscall: false,
        hook: malloc("malloc"),
        need: MALLOC,
        fields: &[],
    },
    ProbeSpec {
        program: prog::CALLOC_ENTER,
        syscall: false,
        hook: malloc("calloc"),
        need: MALLOC,
        fields: &[],
    },
    ProbeSpec {
        program: prog::REALLOC_ENTER,
        syscall: false,
        hook: malloc("realloc"),
        need: MALLOC,
        fields: &[],
    },
    ProbeSpec {
        program: prog::ALIGNED_ALLOC_ENTER,
        syscall: false,
        hook: malloc("aligned_alloc"),
        need: MALLOC,
        fields: &[],
    },
    ProbeSpec {
        program: prog::POSIX_MEMALIGN_ENTER,
        syscall: false,
        hook: malloc("posix_memalign"),
        need: MALLOC,
        fields: &[],
    },
    ProbeSpec {
        program: prog::FREE_ENTER,
        syscall: false,
        hook: malloc("free"),
        need: MALLOC,
        fields: &[],
    },
    ProbeSpec {
        program: prog::ALLOC_RETURN,
        syscall: false,
        hook: Hook::UProbe {
            function: "malloc,calloc,realloc,aligned_alloc,posix_memalign",
            ret: true,
        },
        need: MALLOC,
        fields: &[],
    },
    ProbeSpec {
        program: prog::USDT_PROBE,
        syscall: false,
        hook: Hook::Usdt {
            providers: "hotspot,python",
        },
        need: Need::Optional {
            fallback: "no GC figures for JVM and CPython processes (needs Linux >= 5.15 for BPF cookies)",
        },
        fields: &[],
    },
];
