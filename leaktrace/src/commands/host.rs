//! `leaktrace host`: where the host's memory is now — MemTotal in parts, the tmpfs mounts, the
//! largest slab caches, and with `--files N` the largest files in tmpfs mounts.
use std::process::ExitCode;

use crate::{
    analysis::host::split,
    cli::{HostArgs, exit},
    monitor::host_parts_now,
    output::{
        Event,
        resources::{HostReport, Named, PartBytes},
    },
    sinks::out::Out,
    sys::hostmem::largest_files,
    util::monotonic_ns,
};

/// Slab caches listed.
const SLABS: usize = 10;
/// Directory entries visited per mount at most for `--files`.
const MAX_ENTRIES: usize = 200_000;

pub fn run(a: HostArgs) -> anyhow::Result<ExitCode> {
    let Some(h) = host_parts_now() else {
        anyhow::bail!("cannot read /proc/meminfo");
    };
    let s = split(&h);
    let files = match a.files {
        Some(n) => {
            let mut all: Vec<Named> = s
                .tmpfs
                .iter()
                .flat_map(|(m, _)| largest_files(m, n as usize, MAX_ENTRIES))
                .map(|f| Named {
                    name: f.path,
                    bytes: f.bytes,
                    reclaimable: None,
                })
                .collect();
            all.sort_by(|x, y| y.bytes.cmp(&x.bytes).then_with(|| x.name.cmp(&y.name)));
            all.truncate(n as usize);
            all
        }
        None => Vec::new(),
    };
    let m = &h.mem;
    let report = HostReport {
        ts_ns: monotonic_ns(),
        mem_total_bytes: s.total,
        mem_available_bytes: s.available,
        parts: s
            .parts
            .iter()
            .map(|(p, b)| PartBytes {
                part: p.name(),
                bytes: *b,
            })
            .collect(),
        tmpfs: s
            .tmpfs
            .iter()
            .map(|(n, b)| Named {
                name: n.clone(),
                bytes: *b,
                reclaimable: None,
            })
            .collect(),
        slabs: h
            .slabs
            .iter()
            .flatten()
            .take(SLABS)
            .map(|(n, b, r)| Named {
                name: n.clone(),
                bytes: *b,
                reclaimable: Some(*r),
            })
            .collect(),
        files,
        swap_used_ratio: (m.swap_total > 0)
            .then(|| m.swap_total.saturating_sub(m.swap_free) as f64 / m.swap_total as f64),
        oom_kills: h.oom_kills,
    };
    let mut out = Out::new(a.json);
    out.emit(&Event::Host(Box::new(report)))?;
    out.flush()?;
    Ok(ExitCode::from(exit::OK))
}
