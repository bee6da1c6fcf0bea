//! Command-line arguments for allocation sites, flattened into `run`, `watch` and `sites`.
use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::parse_duration;
use crate::sites::{DEFAULT_COPY_PAGES, DEFAULT_FAULT_SAMPLE, DEFAULT_STACK_COPIES, SitesOptions};

#[derive(Debug, Clone, Args)]
pub struct FaultSampleArgs {
    /// Allocation sites: take a stack at one page fault in N per CPU (each sample counts N × 4 KiB).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FAULT_SAMPLE, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub fault_sample: u64,
    /// Allocation sites: at most N copies of the user stack per second per process, unwound by
    /// the binaries' CFI where frame pointers are missing (0: frame-pointer stacks only).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STACK_COPIES, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub stack_copies: u32,
    /// Stack window copied per event, in 4 KiB pages (for measurements).
    #[arg(long, value_name = "PAGES", default_value_t = DEFAULT_COPY_PAGES, hide = true, value_parser = clap::value_parser!(u32).range(1..=leaktrace_common::sites::COPY_MAX_PAGES as i64))]
    pub stack_window: u32,
}

#[derive(Debug, Clone, Args)]
pub struct RunStackArgs {
    /// Record allocation sites of the tracked processes (user stacks at sampled page faults, and
    /// at brk/mmap/mremap growth with --syscalls): OOM reports then name the victim's top sites.
    #[arg(long)]
    pub stacks: bool,
    /// With --stacks: take a stack at one page fault in N per CPU (each sample counts N × 4 KiB);
    /// default 64.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub fault_sample: Option<u64>,
    /// With --stacks: at most N copies of the user stack per second per process, unwound by the
    /// binaries' CFI where frame pointers are missing (0: frame-pointer stacks only); default 50.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub stack_copies: Option<u32>,
    /// With --stacks: stack window copied per event, in 4 KiB pages (for measurements).
    #[arg(long, value_name = "PAGES", hide = true, value_parser = clap::value_parser!(u32).range(1..=leaktrace_common::sites::COPY_MAX_PAGES as i64))]
    pub stack_window: Option<u32>,
}

impl RunStackArgs {
    /// `all`: every process is tracked (no --pid/--comm filter). Err: a stack option without
    /// --stacks.
    pub fn options(&self, all: bool) -> Result<Option<SitesOptions>, String> {
        if !self.stacks {
            return match (self.fault_sample, self.stack_copies, self.stack_window) {
                (Some(_), _, _) => Err("--fault-sample needs --stacks".into()),
                (_, Some(_), _) => Err("--stack-copies needs --stacks".into()),
                (_, _, Some(_)) => Err("--stack-window needs --stacks".into()),
                _ => Ok(None),
            };
        }
        let fault_sample = self.fault_sample.unwrap_or(DEFAULT_FAULT_SAMPLE);
        Ok(Some(SitesOptions {
            all,
            fault_sample,
            malloc: false,
            malloc_sample: 1,
            eager: false,
            stack_copies: self.stack_copies.unwrap_or(DEFAULT_STACK_COPIES),
            copy_pages: self.stack_window.unwrap_or(DEFAULT_COPY_PAGES),
        }))
    }
}

#[derive(Debug, Clone, Args)]
pub struct MallocArgs {
    /// Precise mode: uprobes on the process's C allocator (malloc, calloc, realloc, free, ...);
    /// sites show outstanding (not freed) bytes. Slows allocation-heavy code a lot (README).
    #[arg(long)]
    pub malloc: bool,
    /// With --malloc: record one allocator call in N per CPU (bytes are scaled by N).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "malloc", value_parser = clap::value_parser!(u32).range(1..))]
    pub malloc_sample: u32,
}

impl MallocArgs {
    /// Stack options for one observed process tree (`watch`, `sites`).
    pub fn options(&self, faults: &FaultSampleArgs) -> SitesOptions {
        SitesOptions {
            all: false,
            fault_sample: faults.fault_sample,
            malloc: self.malloc,
            malloc_sample: self.malloc_sample,
            eager: true,
            stack_copies: faults.stack_copies,
            copy_pages: faults.stack_window,
        }
    }
}

#[derive(Debug, Args)]
pub struct SitesArgs {
    /// The process whose allocation sites to show.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: u32,
    /// One JSON object (the table) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Observe this long (default: until Ctrl-C or the process exits).
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Also write folded stacks (`outer;...;inner bytes`, for flamegraph.pl / inferno) to FILE.
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,
    /// How often the kernel's aggregates are read and frames named.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration, allow_negative_numbers = true)]
    pub interval: Duration,
    #[command(flatten)]
    pub faults: FaultSampleArgs,
    #[command(flatten)]
    pub malloc: MallocArgs,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{DEFAULT_COPY_PAGES, DEFAULT_FAULT_SAMPLE, DEFAULT_STACK_COPIES};
    use crate::cli::{Cli, Command};

    #[test]
    fn sites_args() {
        let c = Cli::try_parse_from([
            "leaktrace",
            "sites",
            "--pid",
            "5",
            "--malloc",
            "--malloc-sample",
            "3",
            "--folded",
            "/tmp/x",
        ])
        .unwrap();
        let Command::Sites(s) = c.command else { panic!() };
        assert_eq!(
            (s.pid, s.malloc.malloc, s.malloc.malloc_sample, s.faults.fault_sample),
            (5, true, 3, DEFAULT_FAULT_SAMPLE)
        );
        assert!(Cli::try_parse_from(["leaktrace", "sites"]).is_err());
        assert!(
            Cli::try_parse_from(["leaktrace", "sites", "--pid", "5", "--malloc-sample", "3"]).is_err(),
            "--malloc-sample needs --malloc"
        );
        assert!(Cli::try_parse_from(["leaktrace", "sites", "--pid", "5", "--fault-sample", "0"]).is_err());
        let c = Cli::try_parse_from(["leaktrace", "watch", "--malloc", "--fault-sample", "16", "--", "ls"]).unwrap();
        let Command::Watch(w) = c.command else { panic!() };
        assert!(w.malloc.malloc);
        assert_eq!(w.faults.fault_sample, 16);
        let c = Cli::try_parse_from(["leaktrace", "run", "--stacks", "--fault-sample", "8"]).unwrap();
        let Command::Run(r) = c.command else { panic!() };
        let o = r.stacks.options(true).unwrap().unwrap();
        assert_eq!((o.all, o.fault_sample, o.malloc, o.eager), (true, 8, false, false));
        assert_eq!(
            (o.stack_copies, o.copy_pages),
            (DEFAULT_STACK_COPIES, DEFAULT_COPY_PAGES)
        );
        let c = Cli::try_parse_from(["leaktrace", "run", "--stacks", "--stack-copies", "0"]).unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.stacks.options(false).unwrap().unwrap().stack_copies, 0);
        for flag in ["--fault-sample", "--stack-copies", "--stack-window"] {
            let c = Cli::try_parse_from(["leaktrace", "run", flag, "8"]).unwrap();
            let Command::Run(r) = c.command else { panic!() };
            assert!(r.stacks.options(true).is_err(), "{flag} needs --stacks");
        }
        let c = Cli::try_parse_from(["leaktrace", "sites", "--pid", "5", "--stack-copies", "7"]).unwrap();
        let Command::Sites(s) = c.command else { panic!() };
        assert_eq!(s.malloc.options(&s.faults).stack_copies, 7);
        assert!(Cli::try_parse_from(["leaktrace", "sites", "--pid", "5", "--stack-window", "9"]).is_err());
        let c = Cli::try_parse_from(["leaktrace", "run"]).unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert!(r.stacks.options(true).unwrap().is_none(), "stacks are opt-in for run");
    }
}
