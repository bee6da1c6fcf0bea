//! Load the eBPF object, read tracepoint formats, attach every probe and say what was chosen.
pub mod format;
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
}

/// Programs loaded and attached. Dropping it detaches everything.
pub struct Probes {
    pub ebpf: Ebpf,
    pub checks: Vec<Check>,
    pub tracefs: Tracefs,
    attached: HashSet<&'static str>,
}

impl Probes {
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
            .map(|c| format!("{} {} ({})", c.what, c.status, c.detail))
            .collect();
        if off > 0 {
            other.insert(0, format!("{off} syscall probes off (--syscalls turns them on)"));
        }
        if other.is_empty() {
            format!("{ok} probes attached")
        } else {
            format!("{ok} probes attached; {}", other.join("; "))
        }
    }
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
    let mut loader = EbpfLoader::new();
    loader
        .set_global(names::OFFSETS_GLOBAL, &offsets, true)
        .override_global(names::SITES_CONFIG_GLOBAL, &sites, true);
    // Stack maps cost memory only when stacks are on; the malloc ones only with --malloc.
    if opts.sites.is_none() {
        loader
            .map_max_entries(names::STACKS, 1)
            .map_max_entries(names::SITES, 1);
    }
    if !opts.sites.as_ref().is_some_and(|s| s.malloc) {
        for m in [names::MALLOC_SITES, names::ALLOCS, names::MALLOC_PENDING] {
            loader.map_max_entries(m, 1);
        }
    }
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .context("loading the eBPF object (is BTF available and the kernel ≥ 5.8 with ring buffers?)")?;
    let mut attached = HashSet::new();
    for spec in usable {
        let check = checks
            .iter_mut()
            .find(|c| c.what == spec.hook.label())
            .expect("prepared");
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
        tracefs,
        attached,
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
    }
    Ok(Attached::Yes)
}
