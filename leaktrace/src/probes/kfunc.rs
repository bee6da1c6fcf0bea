//! The BPF-trampoline path for the memory syscalls: fexit/fentry programs on the x86_64 syscall
//! functions (`__x64_sys_mmap`, ...), tried at start; each one that loads and attaches replaces
//! its `syscalls:*` tracepoints, which stay the fallback. Tracepoints on `syscalls:*` put every
//! syscall of every task through the tracing slow path; trampolines cost only the traced calls,
//! so where they work the memory-syscall history is on by default.
//!
//! Kernels without trampolines (no `CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS`, some sandboxed or
//! nested hosts), without BTF, or another architecture get a named `fallback` line in `doctor`.

use aya::{Btf, Ebpf, programs::FEntry, programs::FExit};
use leaktrace_common::names::prog;

use super::{Check, LoadOptions, Status};

/// One trampoline program and the tracepoint programs it replaces.
pub struct KfuncSpec {
    pub program: &'static str,
    /// The kernel function (in BTF and `available_filter_functions`).
    pub function: &'static str,
    /// fexit (sees the result) or fentry.
    pub exit: bool,
    pub replaces: &'static [&'static str],
}

impl KfuncSpec {
    pub fn label(&self) -> String {
        format!("{}:{}", if self.exit { "fexit" } else { "fentry" }, self.function)
    }
}

pub static KFUNCS: &[KfuncSpec] = &[
    KfuncSpec {
        program: prog::MMAP_FEXIT,
        function: "__x64_sys_mmap",
        exit: true,
        replaces: &[prog::MMAP_ENTER, prog::MMAP_EXIT],
    },
    KfuncSpec {
        program: prog::MUNMAP_FEXIT,
        function: "__x64_sys_munmap",
        exit: true,
        replaces: &[prog::MUNMAP_ENTER, prog::MUNMAP_EXIT],
    },
    KfuncSpec {
        program: prog::BRK_FEXIT,
        function: "__x64_sys_brk",
        exit: true,
        replaces: &[prog::BRK_ENTER, prog::BRK_EXIT],
    },
    KfuncSpec {
        program: prog::MREMAP_FEXIT,
        function: "__x64_sys_mremap",
        exit: true,
        replaces: &[prog::MREMAP_ENTER, prog::MREMAP_EXIT],
    },
    KfuncSpec {
        program: prog::EXIT_GROUP_FENTRY,
        function: "__x64_sys_exit_group",
        exit: false,
        replaces: &[prog::EXIT_GROUP_ENTER],
    },
];

/// `--pretend-missing` names that disable the trampoline path: `fentry`/`fexit` (all of it), a
/// program name, a label (`fexit:__x64_sys_mmap`), or one of the tracepoint programs it
/// replaces (pretending the exit-code tracepoint missing means no exit codes at all).
fn pretended(spec: &KfuncSpec, opts: &LoadOptions) -> bool {
    let label = spec.label();
    opts.pretend_missing.iter().any(|p| {
        p == "fentry" || p == "fexit" || p == spec.program || *p == label || spec.replaces.contains(&p.as_str())
    })
}

/// What the trampoline path gave: a check per program, and the tracepoint programs replaced.
#[derive(Default)]
pub struct Outcome {
    pub checks: Vec<Check>,
    /// Trampoline programs attached, and (label, tracepoint program) pairs they replace.
    pub attached: Vec<&'static str>,
    pub replaced: Vec<(String, &'static str)>,
}

/// Loads and attaches every trampoline program that this kernel takes.
pub fn attach(ebpf: &mut Ebpf, opts: &LoadOptions) -> Outcome {
    let mut out = Outcome::default();
    let fallback = |spec: &KfuncSpec, why: String| Check {
        what: spec.label(),
        status: Status::Fallback,
        detail: format!("{why}; the syscalls:* tracepoints instead"),
    };
    let btf = if cfg!(target_arch = "x86_64") {
        Btf::from_sys_fs().map_err(|e| format!("no kernel BTF (/sys/kernel/btf/vmlinux): {e}"))
    } else {
        Err("needs x86_64 (pt_regs layout of the syscall functions)".to_owned())
    };
    for spec in KFUNCS {
        if pretended(spec, opts) {
            out.checks.push(fallback(spec, "disabled by --pretend-missing".into()));
            continue;
        }
        let btf = match &btf {
            Ok(b) => b,
            Err(why) => {
                out.checks.push(fallback(spec, why.clone()));
                continue;
            }
        };
        match attach_one(ebpf, spec, btf) {
            Ok(()) => {
                out.checks.push(Check {
                    what: spec.label(),
                    status: Status::Ok,
                    detail: "BPF trampoline: memory-syscall history without the syscall slow path".into(),
                });
                out.attached.push(spec.program);
                out.replaced.extend(spec.replaces.iter().map(|r| (spec.label(), *r)));
            }
            Err(e) => out.checks.push(fallback(spec, explain(&format!("{e:#}")))),
        }
    }
    out
}

fn attach_one(ebpf: &mut Ebpf, spec: &KfuncSpec, btf: &Btf) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let p = ebpf
        .program_mut(spec.program)
        .with_context(|| format!("program {} not in the eBPF object", spec.program))?;
    if spec.exit {
        let p: &mut FExit = p.try_into()?;
        p.load(spec.function, btf)
            .with_context(|| format!("loading {}", spec.program))?;
        p.attach().with_context(|| format!("attaching {}", spec.label()))?;
    } else {
        let p: &mut FEntry = p.try_into()?;
        p.load(spec.function, btf)
            .with_context(|| format!("loading {}", spec.program))?;
        p.attach().with_context(|| format!("attaching {}", spec.label()))?;
    }
    Ok(())
}

/// A kernel error, with what it usually means here.
fn explain(err: &str) -> String {
    // ENOTSUPP (524): the kernel cannot make a trampoline (no direct-call ftrace, or a host
    // that forbids it); ESRCH/ENOENT: the function is not in BTF or not traceable.
    if err.contains("Operation not permitted") {
        format!("{err} (this kernel refuses fentry/fexit programs)")
    } else if err.contains("524") {
        format!("{err} (no BPF trampolines on this kernel)")
    } else if err.contains("No such process") || err.contains("not found") {
        format!("{err} (function not in this kernel's BTF)")
    } else {
        err.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(p: &[&str]) -> LoadOptions {
        LoadOptions {
            pretend_missing: p.iter().map(|s| s.to_string()).collect(),
            ..LoadOptions::default()
        }
    }

    #[test]
    fn every_syscall_tracepoint_has_one_replacement() {
        let mut replaced: Vec<&str> = KFUNCS.iter().flat_map(|k| k.replaces.iter().copied()).collect();
        replaced.sort_unstable();
        let mut syscall_tps: Vec<&str> = super::super::table::PROBES
            .iter()
            .filter(|p| p.syscall)
            .map(|p| p.program)
            .collect();
        syscall_tps.sort_unstable();
        assert_eq!(replaced, syscall_tps);
        // Kernel program names are cut at 15 characters.
        assert!(KFUNCS.iter().all(|k| k.program.len() <= 15));
    }

    #[test]
    fn pretend_names() {
        let mmap = &KFUNCS[0];
        assert!(pretended(mmap, &opts(&["fexit"])));
        assert!(pretended(mmap, &opts(&["fentry"])));
        assert!(pretended(mmap, &opts(&["mmap_fexit"])));
        assert!(pretended(mmap, &opts(&["fexit:__x64_sys_mmap"])));
        assert!(pretended(mmap, &opts(&["mmap_exit"])));
        assert!(!pretended(mmap, &opts(&["brk_fexit", "rss_stat"])));
        assert_eq!(mmap.label(), "fexit:__x64_sys_mmap");
        assert_eq!(KFUNCS[4].label(), "fentry:__x64_sys_exit_group");
    }
}
