//! Where the running kernel keeps a process's argument area (`mm->arg_start..arg_end`), read from
//! its BTF, so that the exec probe keeps the program's real argv (`ExecArgsConfig`, see
//! leaktrace-ebpf `probes/lifecycle.rs`): programs that rewrite their process title (redis,
//! nginx, postgres) have lost it from /proc/PID/cmdline by the time the agent reads it. When BTF
//! lacks a field, exec events carry no arguments and the cmdline comes from /proc as before.
use leaktrace_common::ExecArgsConfig;

use super::{Check, LoadOptions, Status};
use crate::sys::btf::Btf;

/// The name `doctor` shows and `--pretend-missing` takes.
pub const NAME: &str = "exec_args";

const FALLBACK: &str = "command lines from /proc only (a program that rewrites its title loses its options)";

/// The offsets, or what is missing.
pub fn layout(btf: &Btf) -> Result<ExecArgsConfig, String> {
    let field = |s: &str, m: &str, size: u64| -> Result<u32, String> {
        let (off, ty) = btf.offset_of(s, m).map_err(|e| e.to_string())?;
        if btf.size(ty) != Some(size) {
            return Err(format!("{s}.{m} is not {size} bytes"));
        }
        u32::try_from(off).map_err(|_| format!("{s}.{m} out of range ({off})"))
    };
    Ok(ExecArgsConfig {
        enabled: 1,
        task_mm: field("task_struct", "mm", 8)?,
        mm_arg_start: field("mm_struct", "arg_start", 8)?,
        mm_arg_end: field("mm_struct", "arg_end", 8)?,
    })
}

/// The configuration handed to the programs and the `doctor` line.
/// `btf`: the kernel's, as read (or why it could not be).
pub fn prepare(opts: &LoadOptions, btf: &Result<Btf, String>) -> (ExecArgsConfig, Check) {
    let found = if opts.pretend_missing.iter().any(|p| p == NAME) {
        Err("disabled by --pretend-missing".to_string())
    } else {
        btf.as_ref().map_err(Clone::clone).and_then(layout)
    };
    match found {
        Ok(c) => (
            c,
            Check {
                what: NAME.into(),
                status: Status::Ok,
                detail: format!(
                    "BTF: task_struct.mm@{}, mm_struct.arg_start@{}/arg_end@{}: argv kept at exec",
                    c.task_mm, c.mm_arg_start, c.mm_arg_end
                ),
            },
        ),
        Err(why) => (
            ExecArgsConfig::OFF,
            Check {
                what: NAME.into(),
                status: Status::Fallback,
                detail: format!("{why}; {FALLBACK}"),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::btf::VMLINUX;

    /// The running kernel's offsets (skipped where it has no BTF).
    #[test]
    fn finds_the_argument_area_of_the_running_kernel() {
        let Ok(btf) = Btf::read(std::path::Path::new(VMLINUX)) else {
            eprintln!("SKIP: no {VMLINUX}");
            return;
        };
        let c = layout(&btf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.enabled, 1);
        // Two adjacent unsigned longs.
        assert_eq!(c.mm_arg_end, c.mm_arg_start + 8, "{c:?}");
        assert!(c.task_mm > 0, "{c:?}");
    }

    #[test]
    fn pretend_missing_turns_it_off() {
        let opts = LoadOptions {
            pretend_missing: vec![NAME.into()],
            ..LoadOptions::default()
        };
        let (c, check) = prepare(&opts, &Err("not read".into()));
        assert_eq!(c, ExecArgsConfig::OFF);
        assert_eq!(check.status, Status::Fallback);
    }
}
