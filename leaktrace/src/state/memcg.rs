//! Which memory cgroup a process is in, with the cgroup mounts read once.
use crate::sys::cgroup::{
    CgroupMount, MemcgPath, read_cgroup_mounts, read_proc_cgroups, resolve_memcg, v2_dir_has_memory,
};

pub struct MemcgResolver {
    mounts: Vec<CgroupMount>,
}

impl MemcgResolver {
    pub fn new() -> Self {
        Self {
            mounts: read_cgroup_mounts().unwrap_or_default(),
        }
    }

    /// The process's memory cgroup (v1 memory controller, else v2), None when it is gone.
    pub fn of(&self, pid: u32) -> Option<MemcgPath> {
        let cg = read_proc_cgroups(pid).ok()?;
        resolve_memcg(&cg, &self.mounts, v2_dir_has_memory)
    }
}

impl Default for MemcgResolver {
    fn default() -> Self {
        Self::new()
    }
}
