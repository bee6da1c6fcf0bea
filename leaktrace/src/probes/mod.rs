//! Load the eBPF object, read tracepoint formats, attach every probe and say what was chosen;
//! show and count what the probes log ([`diag`]).
pub mod diag;
pub mod execargs;
pub mod floor;
pub mod format;
pub mod kfunc;
pub mod privileges;
pub mod table;
pub mod tracefs;

use std::{collections::HashSet, fmt, fs};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{PerfEvent, RawTracePoint, TracePoint, UProbe, perf_event},
};
use leaktrace_common::{TpOffsets, names};

use self::{
    table::{Hook, Need, PROBES, ProbeSpec},
    tracefs::Tracefs,
};

/// The compiled eBPF object (built by build.rs through aya-build).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leaktrace"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Not attached; the agent works around it.
    Fallback,
    /// Not attached and nothing replaces it.
    Missing,
    /// Left off in this mode (the syscall probes in `run`, unless `--syscalls`).
    Off,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Fallback => "fallback",
            Status::Missing => "missing",
            Status::Off => "off",
        })
    }
}

/// One line of `leaktrace doctor`.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub status: Status,
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<9} {:<32} {}", self.status.to_string(), self.what, self.detail)
    }
}

#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Attach the `syscalls:*` probes (mmap/munmap/brk/mremap history, exit codes).
    pub syscalls: bool,
    /// Pretend these probes (program names or `cat:name`) are missing, to exercise fallbacks.
    pub pretend_missing: Vec<String>,
    /// Record allocation sites (user stacks); None = off, and their maps shrink to one entry.
    pub sites: Option<crate::sites::SitesOptions>,
    /// Measure the lowest footprint of each interval (`probes/floor.rs`), for the commands that
    /// read the RSS marks (all but `trace`).
    pub floor: bool,
}

/// Programs loaded and attached. Dropping it detaches everything.
pub struct Probes {
    pub ebpf: Ebpf,
    pub checks: Vec<Check>,
    attached: HashSet<&'static str>,
    /// `rss_stat` measures the lowest footprint of each interval (`RSS_FLOOR`; `probes/floor.rs`),
    /// of this kind.
    pub rss_floor: Option<crate::events::rss_floor::FloorKind>,
    /// The probes' own diagnostics (None when their log ring buffer could not be read).
    diag: Option<diag::Diagnostics>,
}

impl Probes {
    /// Lines the probes have logged (cold-path failures, see `diag`) since they were loaded.
    pub fn diagnostics_logged(&self) -> u64 {
        self.diag.as_ref().map_or(0, diag::Diagnostics::count)
    }

    pub fn is_attached(&self, program: &str) -> bool {
        self.attached.contains(program)
    }

    /// One line for a log: how many probes and which fallbacks.
    pub fn summary(&self) -> String {
        // Attached ones: programs only loaded for later (allocation-site uprobes) are not counted.
        let ok = self.attached.len();
        let off = self.checks.iter().filter(|c| c.status == Status::Off).count();
        let mut other: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status != Status::Ok && c.status != Status::Off)
            .filter(|c| !is_trampoline(&c.what))
            .map(|c| format!("{} {} ({})", c.what, c.status, c.detail))
            .collect();
        // The trampoline path's fallbacks in one clause (`doctor` has one line each).
        if let Some(c) = self
            .checks
            .iter()
            .find(|c| is_trampoline(&c.what) && c.status == Status::Fallback)
        {
            other.push(format!("memory syscalls via tracepoints ({}: {})", c.what, c.detail));
        }
        if off > 0 {
            other.insert(0, format!("{off} syscall probes off (--syscalls turns them on)"));
        }
        let tramp = kfunc::KFUNCS
            .iter()
            .filter(|k| self.attached.contains(k.program))
            .count();
        if tramp > 0 {
            other.insert(
                0,
                format!("memory syscalls through {tramp} BPF trampolines (fexit/fentry)"),
            );
        }
        if other.is_empty() {
            format!("{ok} probes attached")
        } else {
            format!("{ok} probes attached; {}", other.join("; "))
        }
    }
}

fn is_trampoline(label: &str) -> bool {
    label.starts_with("fexit:") || label.starts_with("fentry:")
}

struct Prepared {
    offsets: TpOffsets,
    usable: Vec<&'static ProbeSpec>,
    checks: Vec<Check>,
}

fn pretended(spec: &ProbeSpec, opts: &LoadOptions) -> bool {
    let label = spec.hook.label();
    let (c, n) = spec.hook.category_name();
    let cn = format!("{c}:{n}");
    opts.pretend_missing
        .iter()
        .any(|p| p == spec.program || *p == label || *p == cn || p == n)
}

/// Read every format file and fill the offsets; decide which probes can be attached.
fn prepare(tracefs: &Tracefs, opts: &LoadOptions) -> Prepared {
    let mut offsets = TpOffsets::ZERO;
    let mut usable = Vec::new();
    let mut checks = Vec::new();
    for spec in PROBES {
        let (category, name) = spec.hook.category_name();
        let mut fail = |why: String| {
            let (status, detail) = match spec.need {
                Need::Required => (Status::Missing, why),
                Need::Optional { fallback } => (Status::Fallback, format!("{why}; {fallback}")),
            };
            checks.push(Check {
                what: spec.hook.label(),
                status,
                detail,
            });
        };
        if pretended(spec, opts) {
            fail("disabled by --pretend-missing".into());
            continue;
        }
        if spec.syscall && !opts.syscalls {
            checks.push(Check {
                what: spec.hook.label(),
                status: Status::Off,
                detail: "off in this mode (--syscalls)".into(),
            });
            continue;
        }
        if !spec.hook.in_tracefs() {
            // perf events and uprobes have no format file; loading them proves they work.
            checks.push(Check {
                what: spec.hook.label(),
                status: Status::Ok,
                detail: String::new(),
            });
            usable.push(spec);
            continue;
        }
        let path = tracefs.event_dir(category, name).join("format");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                fail(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let fields = match format::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                fail(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let mut absent = Vec::new();
        let mut missing_required = None;
        for fm in spec.fields {
            // `--pretend-missing mark_victim.fields` (or `.anon_rss`) drops optional fields, to
            // exercise the older-kernel layouts.
            let hidden = !fm.required
                && opts.pretend_missing.iter().any(|p| {
                    *p == format!("{}.fields", spec.program) || *p == format!("{}.{}", spec.program, fm.format)
                });
            match fields.get(fm.format).filter(|_| !hidden) {
                Some(ff) => *(fm.slot)(&mut offsets) = ff.to_field(),
                None if fm.required => missing_required = Some(fm.format),
                None => absent.push(fm.format),
            }
        }
        if let Some(f) = missing_required {
            fail(format!("format has no field `{f}`"));
            continue;
        }
        let detail = if absent.is_empty() {
            if spec.fields.is_empty() {
                String::new()
            } else {
                format!(
                    "fields: {}",
                    spec.fields.iter().map(|f| f.format).collect::<Vec<_>>().join(",")
                )
            }
        } else {
            format!("older layout, fields absent (filled from /proc): {}", absent.join(","))
        };
        checks.push(Check {
            what: spec.hook.label(),
            status: Status::Ok,
            detail,
        });
        usable.push(spec);
    }
    Prepared {
        offsets,
        usable,
        checks,
    }
}

/// Privileges first (with a message naming what is missing), then load and attach everything.
pub fn start(opts: &LoadOptions) -> anyhow::Result<Probes> {
    privileges::check().map_err(anyhow::Error::msg)?;
    load(opts, true)
}

/// Load and attach. With `strict`, a missing required probe is an error; without (doctor), it is
/// only reported.
pub fn load(opts: &LoadOptions, strict: bool) -> anyhow::Result<Probes> {
    let tracefs = tracefs::ensure()?;
    if opts.pretend_missing.iter().any(|p| p == "ringbuf") || !ringbuf_supported() {
        bail!("this kernel has no BPF ring buffer (needs Linux ≥ 5.8): leaktrace cannot run here");
    }
    if EBPF_OBJECT.is_empty() {
        bail!("this leaktrace was built without its eBPF programs (AYA_BUILD_SKIP); build it with `cargo xtask run`");
    }
    let Prepared {
        offsets,
        usable,
        mut checks,
    } = prepare(&tracefs, opts);
    let mut sites = opts.sites.as_ref().map_or(
        leaktrace_common::sites::SitesConfig::OFF,
        crate::sites::SitesOptions::config,
    );
    // Page faults are sampled in raw_tp:rss_stat when it is there (it runs at every fault anyway);
    // the perf_event program is the fallback.
    let rss_sampler = sites.enabled != 0 && usable.iter().any(|s| s.program == names::prog::RSS_STAT);
    if rss_sampler {
        sites.rss_every = opts
            .sites
            .as_ref()
            .map_or(0, |o| o.fault_sample.min(u64::from(u32::MAX)) as u32);
    }
    // The kernel's BTF, parsed once for the offsets both the floor and the exec args need.
    let btf = crate::sys::btf::Btf::read(std::path::Path::new(crate::sys::btf::VMLINUX)).map_err(|e| e.to_string());
    let (floor, floor_check) = floor::prepare(opts, usable.iter().any(|s| s.program == names::prog::RSS_STAT), &btf);
    // Shown right after the probe it lives in.
    if let Some(c) = floor_check {
        let at = checks
            .iter()
            .position(|c| c.what == "raw_tp:rss_stat")
            .map_or(checks.len(), |i| i + 1);
        checks.insert(at, c);
    }
    let (exec_args, exec_args_check) = execargs::prepare(opts, &btf);
    drop(btf);
    let at = checks
        .iter()
        .position(|c| c.what == "sched:sched_process_exec")
        .map_or(checks.len(), |i| i + 1);
    checks.insert(at, exec_args_check);
    // Tests only: `LEAKTRACE_TEST_MAP_ENTRIES=PENDING=1` shrinks maps, so that their "full" paths
    // run (tests/diagnostics.rs).
    let test_entries = std::env::var("LEAKTRACE_TEST_MAP_ENTRIES").unwrap_or_default();
    let mut loader = EbpfLoader::new();
    // No CO-RE relocations: the programs take their offsets from the globals. Drop the kernel BTF
    // the loader parsed (~20 MiB of small allocations); ours was parsed and dropped above.
    loader.btf(None);
    for (map, n) in test_entries
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse::<u32>().ok()?)))
    {
        loader.map_max_entries(map, n);
    }
    loader
        .override_global(names::OFFSETS_GLOBAL, &offsets, true)
        .override_global(names::SITES_CONFIG_GLOBAL, &sites, true)
        .override_global(names::RSS_FLOOR_CONFIG_GLOBAL, &floor, true)
        .override_global(names::EXEC_ARGS_CONFIG_GLOBAL, &exec_args, true);
    if floor.enabled == 0 {
        loader.map_max_entries(names::RSS_FLOOR, 1);
    }
    // Stack maps cost memory only when stacks are on; the malloc ones only with --malloc.
    if opts.sites.is_none() {
        loader
            .map_max_entries(names::STACKS, 1)
            .map_max_entries(names::SITES, 1);
    }
    if opts.sites.as_ref().is_none_or(|s| s.stack_copies == 0) {
        loader
            .map_max_entries(names::STACK_COPIES, 4096)
            .map_max_entries(names::FP_TRUSTED, 1)
            .map_max_entries(names::COPY_BUDGET, 1);
    }
    if !opts.sites.as_ref().is_some_and(|s| s.malloc) {
        for m in [names::MALLOC_SITES, names::ALLOCS, names::MALLOC_PENDING] {
            loader.map_max_entries(m, 1);
        }
    }
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .context("loading the eBPF object (is BTF available and the kernel ≥ 5.8 with ring buffers?)")?;
    let diag = diag::Diagnostics::start(&mut ebpf)
        .map_err(|e| log::warn!("probe diagnostics will not be shown: {e:#}"))
        .ok();
    let mut attached = HashSet::new();
    let (mut rss_floor, mut floor_error) = (None, None);
    // BPF trampolines first: each syscall they take over needs no syscalls:* tracepoint.
    let kf = kfunc::attach(&mut ebpf, opts);
    for (label, program) in &kf.replaced {
        let Some(spec) = PROBES.iter().find(|s| s.program == *program) else {
            continue;
        };
        if let Some(c) = checks.iter_mut().find(|c| c.what == spec.hook.label()) {
            match c.status {
                Status::Ok | Status::Off => {
                    c.status = Status::Ok;
                    c.detail = format!("standby: {label} in use");
                }
                Status::Missing => {
                    c.status = Status::Fallback;
                    c.detail = format!("{}; not needed: {label} in use", c.detail);
                }
                Status::Fallback => {}
            }
        }
    }
    let usable: Vec<&ProbeSpec> = usable
        .into_iter()
        .filter(|s| !kf.replaced.iter().any(|(_, p)| *p == s.program))
        .collect();
    let at = checks
        .iter()
        .position(|c| c.what.starts_with("syscalls:"))
        .unwrap_or(checks.len());
    checks.splice(at..at, kf.checks);
    attached.extend(kf.attached.iter().copied());
    for spec in usable {
        let check = checks
            .iter_mut()
            .find(|c| c.what == spec.hook.label())
            .expect("prepared");
        if spec.program == names::prog::RSS_STAT && floor.enabled != 0 {
            match floor::attach(&mut ebpf) {
                Ok(()) => {
                    check.detail = format!("as tp_btf:rss_stat ({}), with the floor", names::prog::RSS_STAT_FLOOR);
                    attached.insert(spec.program);
                    rss_floor = Some(floor::kind(&floor));
                    continue;
                }
                Err(e) => floor_error = Some(format!("{e:#}")),
            }
        }
        let rss_sampling = rss_sampler && attached.contains(names::prog::RSS_STAT);
        match attach(&mut ebpf, spec, opts, rss_sampling) {
            Ok(Attached::Yes) => {}
            Ok(Attached::OnDemand(why)) => {
                check.detail = why.into();
                continue;
            }
            Err(e) => {
                check.detail = format!("{e:#}");
                check.status = match spec.need {
                    Need::Required => Status::Missing,
                    Need::Optional { fallback } => {
                        check.detail.push_str(&format!("; {fallback}"));
                        Status::Fallback
                    }
                };
                continue;
            }
        }
        attached.insert(spec.program);
    }
    // The kernel's BTF was parsed (up to twice) into many small allocations: give them back.
    #[cfg(target_env = "gnu")]
    // SAFETY: plain libc call.
    unsafe {
        libc::malloc_trim(0);
    }
    if floor.enabled != 0
        && rss_floor.is_none()
        && let Some(c) = checks.iter_mut().find(|c| c.what == floor::NAME)
    {
        c.status = Status::Fallback;
        c.detail = floor::unattached(floor_error.as_deref());
    }
    if strict {
        let missing: Vec<String> = checks
            .iter()
            .filter(|c| c.status == Status::Missing)
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect();
        if !missing.is_empty() {
            bail!("required probes could not be attached: {}", missing.join("; "));
        }
    }
    Ok(Probes {
        ebpf,
        checks,
        attached,
        rss_floor,
        diag,
    })
}

/// Whether the kernel can create a BPF ring buffer map.
pub fn ringbuf_supported() -> bool {
    aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(false)
}

enum Attached {
    Yes,
    /// Loaded (verified) but attached later or only in some modes: why.
    OnDemand(&'static str),
}

/// `rss_sampling`: page faults are already sampled in raw_tp:rss_stat.
fn attach(ebpf: &mut Ebpf, spec: &ProbeSpec, opts: &LoadOptions, rss_sampling: bool) -> anyhow::Result<Attached> {
    let prog = ebpf
        .program_mut(spec.program)
        .with_context(|| format!("program {} not in the eBPF object", spec.program))?;
    match spec.hook {
        Hook::Tracepoint { category, name } => {
            let p: &mut TracePoint = prog.try_into()?;
            p.load().with_context(|| format!("loading {}", spec.program))?;
            p.attach(category, name)
                .with_context(|| format!("attaching {category}:{name}"))?;
        }
        Hook::RawTracepoint { name, .. } => {
            let p: &mut RawTracePoint = prog.try_into()?;
            p.load().with_context(|| format!("loading {}", spec.program))?;
            p.attach(name)
                .with_context(|| format!("attaching raw tracepoint {name}"))?;
        }
        Hook::PerfEvent { .. } => {
            let p: &mut PerfEvent = prog.try_into()?;
            p.load().with_context(|| format!("loading {}", spec.program))?;
            let Some(sites) = &opts.sites else {
                return Ok(Attached::OnDemand(
                    "loaded; the page-fault sampler when raw_tp:rss_stat is missing",
                ));
            };
            if rss_sampling {
                return Ok(Attached::OnDemand(
                    "not needed: page faults are sampled in raw_tp:rss_stat",
                ));
            }
            let cpus = aya::util::online_cpus().map_err(|(f, e)| anyhow::anyhow!("{f}: {e}"))?;
            for cpu in cpus {
                p.attach(
                    perf_event::PerfEventConfig::Software(perf_event::SoftwareEvent::PageFaults),
                    perf_event::PerfEventScope::AllProcessesOneCpu { cpu },
                    perf_event::SamplePolicy::Period(sites.fault_sample),
                    false,
                )
                .with_context(|| format!("perf_event_open(page-faults, cpu {cpu})"))?;
            }
        }
        Hook::UProbe { .. } => {
            let p: &mut UProbe = prog.try_into()?;
            p.load().with_context(|| format!("loading {}", spec.program))?;
            return Ok(Attached::OnDemand(
                "loaded; attached to the watched process's libc with --malloc",
            ));
        }
        Hook::Usdt { .. } => {
            let p: &mut UProbe = prog.try_into()?;
            p.load().with_context(|| format!("loading {}", spec.program))?;
            return Ok(Attached::OnDemand(
                "loaded; attached to each tracked JVM / CPython process that has the probes",
            ));
        }
    }
    Ok(Attached::Yes)
}
