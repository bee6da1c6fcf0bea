//! The argv each program had at exec, as the exec probe read it from the kernel (`Payload::Exec`),
//! kept until the process's identity is read: programs that rewrite their process title (redis,
//! nginx, postgres) no longer show their options in /proc/PID/cmdline by then, and the options are
//! what `analysis::caps` reads a declared memory cap from. Bounded: an entry goes when it is used,
//! when the process exits, or is not kept at all past [`MAX_PENDING`].
use std::collections::HashMap;

/// Entries kept at most (processes that exec'd and whose identity is not read yet).
pub const MAX_PENDING: usize = 4096;

/// One program's argv at exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgv {
    pub args: Vec<String>,
    /// The kernel's argument area was longer than the event keeps: the last argument is cut.
    pub cut: bool,
}

impl ExecArgv {
    /// The command line to show: the exec-time argv, unless it was cut and /proc's (`from_proc`,
    /// read only then) is the same one, longer — the program did not rewrite it.
    pub fn cmdline(self, from_proc: impl FnOnce() -> Vec<String>) -> Vec<String> {
        if !self.cut {
            return self.args;
        }
        let proc = from_proc();
        if extends(&proc, &self.args) { proc } else { self.args }
    }
}

/// `full` begins with `cut` (whose last argument may be a prefix of `full`'s at that place).
fn extends(full: &[String], cut: &[String]) -> bool {
    let Some((last, head)) = cut.split_last() else {
        return true;
    };
    full.len() >= cut.len() && full[..head.len()] == *head && full[head.len()].starts_with(last.as_str())
}

#[derive(Debug, Default)]
pub struct ExecArgs {
    by_pid: HashMap<u32, ExecArgv>,
}

impl ExecArgs {
    /// `pid` exec'd a program with this argv (empty: not read; the cmdline comes from /proc).
    pub fn execed(&mut self, pid: u32, args: &[String], cut: bool) {
        if args.is_empty() || (self.by_pid.len() >= MAX_PENDING && !self.by_pid.contains_key(&pid)) {
            self.by_pid.remove(&pid);
            return;
        }
        self.by_pid.insert(
            pid,
            ExecArgv {
                args: args.to_vec(),
                cut,
            },
        );
    }

    /// The argv of `pid`'s program, to build its identity with (taken: read once).
    pub fn take(&mut self, pid: u32) -> Option<ExecArgv> {
        self.by_pid.remove(&pid)
    }

    pub fn ended(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_pid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_whole_argv_wins_over_a_rewritten_title() {
        let a = ExecArgv {
            args: v(&["redis-server", "--port", "16379", "--maxmemory", "64mb"]),
            cut: false,
        };
        let got = a.cmdline(|| panic!("/proc is not read when the argv is whole"));
        assert_eq!(got, v(&["redis-server", "--port", "16379", "--maxmemory", "64mb"]));
    }

    #[test]
    fn a_cut_argv_takes_the_longer_proc_one_when_it_is_the_same() {
        let a = ExecArgv {
            args: v(&["java", "-Xmx512m", "-cp", "/opt/a"]),
            cut: true,
        };
        let proc = v(&["java", "-Xmx512m", "-cp", "/opt/app.jar", "Main"]);
        assert_eq!(a.clone().cmdline(|| proc.clone()), proc);
        // Rewritten since: the exec-time (cut) argv.
        assert_eq!(
            a.clone().cmdline(|| v(&["java: worker", "", ""])),
            v(&["java", "-Xmx512m", "-cp", "/opt/a"])
        );
        // Unreadable /proc: the exec-time argv.
        assert_eq!(a.cmdline(Vec::new), v(&["java", "-Xmx512m", "-cp", "/opt/a"]));
    }

    #[test]
    fn entries_go_when_taken_or_ended_and_are_bounded() {
        let mut e = ExecArgs::default();
        e.execed(1, &v(&["a"]), false);
        e.execed(2, &v(&["b"]), false);
        assert_eq!(e.take(1).map(|a| a.args), Some(v(&["a"])));
        assert_eq!(e.take(1), None);
        e.ended(2);
        assert_eq!(e.len(), 0);
        // Nothing read: nothing kept (and an older program's argv is dropped).
        e.execed(3, &v(&["c"]), false);
        e.execed(3, &[], false);
        assert_eq!(e.take(3), None);
        for pid in 0..MAX_PENDING as u32 + 10 {
            e.execed(pid, &v(&["x"]), false);
        }
        assert_eq!(e.len(), MAX_PENDING);
        // A pid already kept is updated even when full.
        e.execed(0, &v(&["y"]), false);
        assert_eq!(e.take(0).map(|a| a.args), Some(v(&["y"])));
    }
}
