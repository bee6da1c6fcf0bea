//! Load the eBPF object, read tracepoint formats, attach every probe and say what was chosen.
pub mod format;
pub mod privileges;
pub mod table;
pub mod tracefs;

use std::{collections::HashSet, fmt, fs};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{RawTracePoint, TracePoint},
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
        let ok = self.checks.iter().filter(|c| c.status == Status::Ok).count();
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
    opts.pretend_missing.iter().any(|p| p == spec.program || *p == label || *p == cn || p == n)
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
            checks.push(Check { what: spec.hook.label(), status, detail });
        };
        if pretended(spec, opts) {
            fail("disabled by --pretend-missing".into());
            continue;
        }
        if spec.syscall && !opts.syscalls {
            checks.push(Check { what: spec.hook.label(), status: Status::Off, detail: "off in this mode (--syscalls)".into() });
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
                && opts.pretend_missing.iter().any(|p| *p == format!("{}.fields", spec.program) || *p == format!("{}.{}", spec.program, fm.format));
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
            if spec.fields.is_empty() { String::new() } else {
                format!("fields: {}", spec.fields.iter().map(|f| f.format).collect::<Vec<_>>().join(","))
            }
        } else {
            format!("older layout, fields absent (filled from /proc): {}", absent.join(","))
        };
        checks.push(Check { what: spec.hook.label(), status: Status::Ok, detail });
        usable.push(spec);
    }
    Prepared { offsets, usable, checks }
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
    let Prepared { offsets, usable, mut checks } = prepare(&tracefs, opts);
    let mut ebpf = EbpfLoader::new()
        .set_global(names::OFFSETS_GLOBAL, &offsets, true)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object (is BTF available and the kernel ≥ 5.8 with ring buffers?)")?;
    let mut attached = HashSet::new();
    for spec in usable {
        if let Err(e) = attach(&mut ebpf, spec) {
            let check = checks.iter_mut().find(|c| c.what == spec.hook.label()).expect("prepared");
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
    Ok(Probes { ebpf, checks, tracefs, attached })
}

/// Whether the kernel can create a BPF ring buffer map.
pub fn ringbuf_supported() -> bool {
    aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(false)
}

fn attach(ebpf: &mut Ebpf, spec: &ProbeSpec) -> anyhow::Result<()> {
    let prog = ebpf
        .program_mut(spec.program)
        .with_context(|| format!("program {} not in the eBPF object", spec.program))?;
    match spec.hook {
        Hook::Tracepoint { category, name } => {
            let p: &mut TracePoint = prog.try_into()?;
            p.load().with_context(|| format!("loading {}", spec.program))?;
            p.attach(category, name).with_context(|| format!("attaching {category}:{name}"))?;
        }
        Hook::RawTracepoint { name, .. } => {
            let p: &mut RawTracePoint = prog.try_into()?;
            p.load().with_context(|| format!("loading {}", spec.program))?;
            p.attach(name).with_context(|| format!("attaching raw tracepoint {name}"))?;
        }
    }
    Ok(())
}
