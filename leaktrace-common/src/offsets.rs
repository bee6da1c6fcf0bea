//! Tracepoint field locations, read by the agent from
//! `/sys/kernel/tracing/events/<cat>/<name>/format` at start and handed to the programs as one
//! global. A field the running kernel does not have has `size == 0`.

/// Where one field lives in a tracepoint record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    /// 0 = the kernel's format has no such field.
    pub size: u8,
    /// 1 = sign-extend when widening.
    pub signed: u8,
}

impl Field {
    pub const ABSENT: Field = Field {
        offset: 0,
        size: 0,
        signed: 0,
    };
    pub const fn present(&self) -> bool {
        self.size != 0
    }
}

/// Every field the programs read. Syscall tracepoints: `args[i]` of `sys_enter_*`, `ret` of
/// `sys_exit_*`. `data_loc` fields (`__data_loc char[]`) have size 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpOffsets {
    // syscalls:sys_enter_mmap
    pub mmap_addr: Field,
    pub mmap_len: Field,
    pub mmap_prot: Field,
    pub mmap_flags: Field,
    pub mmap_fd: Field,
    pub mmap_off: Field,
    // syscalls:sys_enter_munmap
    pub munmap_addr: Field,
    pub munmap_len: Field,
    // syscalls:sys_enter_brk
    pub brk_brk: Field,
    // syscalls:sys_enter_mremap
    pub mremap_addr: Field,
    pub mremap_old_len: Field,
    pub mremap_new_len: Field,
    pub mremap_flags: Field,
    pub mremap_new_addr: Field,
    // syscalls:sys_exit_* (same layout for all four, checked by the agent)
    pub sys_exit_ret: Field,
    // syscalls:sys_enter_exit_group
    pub exit_group_code: Field,
    // task:task_newtask
    pub newtask_pid: Field,
    pub newtask_clone_flags: Field,
    // sched:sched_process_fork
    pub fork_parent_pid: Field,
    pub fork_child_pid: Field,
    // sched:sched_process_exec
    pub exec_filename: Field,
    pub exec_pid: Field,
    pub exec_old_pid: Field,
    // sched:sched_process_exit
    pub exit_pid: Field,
    pub exit_group_dead: Field,
    // oom:mark_victim
    pub oom_pid: Field,
    pub oom_comm: Field,
    pub oom_total_vm: Field,
    pub oom_anon_rss: Field,
    pub oom_file_rss: Field,
    pub oom_shmem_rss: Field,
    pub oom_uid: Field,
    pub oom_pgtables: Field,
    pub oom_score_adj: Field,
}

impl TpOffsets {
    pub const ZERO: TpOffsets = TpOffsets {
        mmap_addr: Field::ABSENT,
        mmap_len: Field::ABSENT,
        mmap_prot: Field::ABSENT,
        mmap_flags: Field::ABSENT,
        mmap_fd: Field::ABSENT,
        mmap_off: Field::ABSENT,
        munmap_addr: Field::ABSENT,
        munmap_len: Field::ABSENT,
        brk_brk: Field::ABSENT,
        mremap_addr: Field::ABSENT,
        mremap_old_len: Field::ABSENT,
        mremap_new_len: Field::ABSENT,
        mremap_flags: Field::ABSENT,
        mremap_new_addr: Field::ABSENT,
        sys_exit_ret: Field::ABSENT,
        exit_group_code: Field::ABSENT,
        newtask_pid: Field::ABSENT,
        newtask_clone_flags: Field::ABSENT,
        fork_parent_pid: Field::ABSENT,
        fork_child_pid: Field::ABSENT,
        exec_filename: Field::ABSENT,
        exec_pid: Field::ABSENT,
        exec_old_pid: Field::ABSENT,
        exit_pid: Field::ABSENT,
        exit_group_dead: Field::ABSENT,
        oom_pid: Field::ABSENT,
        oom_comm: Field::ABSENT,
        oom_total_vm: Field::ABSENT,
        oom_anon_rss: Field::ABSENT,
        oom_file_rss: Field::ABSENT,
        oom_shmem_rss: Field::ABSENT,
        oom_uid: Field::ABSENT,
        oom_pgtables: Field::ABSENT,
        oom_score_adj: Field::ABSENT,
    };
}
