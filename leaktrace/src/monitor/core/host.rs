//! The core's hooks for the host's memory (issue 14): each part of the split, each tmpfs mount
//! and used memory are classified (`analysis::host`), and a part that turns into a mountain
//! becomes `host_leak_suspected`, naming what grows (mount, slab cache) and the lives whose
//! descriptors pin it. State in `state::host`.
use super::Core;
use crate::{
    analysis::{
        classify::{ClassifierConfig, Pattern, classify},
        host::{Clues, Part, available_classifier, clues, part_classifier},
        resources::{Change, decide, fds_per_sec},
    },
    output::{
        Event,
        resources::{HostCleared, HostLeak, Pinner},
    },
    report::HostPart,
    state::{
        host::{HostState, PartSeries},
        resources::Flag,
    },
};

/// Host parts are classified every this many intervals (they are many, and move slowly)…
const HOST_EVERY: f64 = 5.0;
/// …and, unflagged, only when they moved by this much since (or after [`HOST_STALE`] intervals).
const HOST_MOVED: u64 = 1 << 20;
const HOST_STALE: f64 = 60.0;

/// What judging one part changed.
enum Said {
    Flagged,
    Cleared(&'static str, Option<Flag>),
}

/// Classify `s` if due; flag or clear it. `allowed`: a new flag may be raised.
fn judge(s: &mut PartSeries, cfg: &ClassifierConfig, t: f64, every: f64, allowed: bool) -> Option<Said> {
    if !s.present {
        return s.flag.take().map(|f| Said::Cleared("unmounted", Some(f)));
    }
    if t - s.last_classified_t < every {
        return None;
    }
    let still = s.flag.is_none()
        && s.last.abs_diff(s.classified_level) < HOST_MOVED
        && t - s.last_classified_t < every * HOST_STALE / HOST_EVERY;
    if still {
        return None;
    }
    let v = classify(&s.timeline.samples(), cfg);
    s.verdict = Some(v);
    s.last_classified_t = t;
    s.classified_level = s.last;
    let before = s.flag;
    match decide(&v, s.last, &mut s.flag, t, allowed)? {
        Change::Flagged(_) => Some(Said::Flagged),
        Change::Cleared(reason) => Some(Said::Cleared(reason, before)),
    }
}

impl Core {
    /// The host's memory over time, as the sinks read it.
    pub fn host_state(&self) -> &HostState {
        &self.hostmem
    }

    /// The host-level clues now (None before the first reading).
    pub fn host_clues(&self) -> Option<Clues> {
        let h = self.hostmem.last.as_ref()?;
        Some(clues(h, self.hostmem.used.verdict.as_ref(), self.hostmem.oom_first))
    }

    /// Where the host's memory is now, for an OOM report: every part with memory, largest
    /// first, then the tmpfs mounts (flagged ones, and the largest three).
    pub fn host_parts_now(&self) -> Vec<HostPart> {
        let Some(split) = &self.hostmem.split else {
            return Vec::new();
        };
        let of = |part: Part, name: Option<String>, bytes: u64, s: Option<&PartSeries>| HostPart {
            part: part.name().to_string(),
            name,
            bytes,
            growth_bytes_per_sec: s
                .and_then(|s| s.verdict)
                .map_or(0.0, |v| v.growth_bytes_per_sec.round()),
            leak_suspected: s.is_some_and(|s| s.flag.is_some()),
        };
        let mut v: Vec<HostPart> = split
            .parts
            .iter()
            .filter(|(_, b)| *b > 0)
            .map(|(p, b)| of(*p, None, *b, self.hostmem.parts.get(p)))
            .collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.part.cmp(&b.part)));
        let mut mounts: Vec<(&String, &PartSeries)> = self.hostmem.mounts.iter().collect();
        mounts.sort_by(|a, b| {
            (b.1.flag.is_some(), b.1.last)
                .cmp(&(a.1.flag.is_some(), a.1.last))
                .then_with(|| a.0.cmp(b.0))
        });
        for (i, (m, s)) in mounts.into_iter().enumerate() {
            if i < 3 || s.flag.is_some() {
                v.push(of(Part::Tmpfs, Some(m.clone()), s.last, Some(s)));
            }
        }
        v
    }

    /// The lives whose descriptor count is a mountain, fastest first (at most 5).
    fn pinners(&self) -> Vec<Pinner> {
        let mut v: Vec<Pinner> = self
            .beyond
            .res
            .iter()
            .filter_map(|(pid, r)| {
                let g = r
                    .fds
                    .verdict
                    .filter(|v| v.pattern == Pattern::Mountain && v.growth_bytes_per_sec > 0.0)?;
                let p = self.table.get(pid)?;
                Some(Pinner {
                    pid,
                    comm: p.comm.clone(),
                    open_fds: r.fds.last,
                    fd_growth_per_sec: (fds_per_sec(&g) * 10.0).round() / 10.0,
                    kernel_bytes: r.kernel.last,
                })
            })
            .collect();
        v.sort_by(|a, b| {
            b.fd_growth_per_sec
                .total_cmp(&a.fd_growth_per_sec)
                .then(a.pid.cmp(&b.pid))
        });
        v.truncate(5);
        v
    }

    fn host_leak(&self, part: Part, name: Option<String>, s: &PartSeries) -> Event {
        let v = s.verdict.unwrap_or_else(|| classify(&[], &part_classifier(part)));
        let (total, avail) = self.hostmem.split.as_ref().map_or((0, 0), |x| (x.total, x.available));
        Event::HostLeakSuspected(Box::new(HostLeak {
            ts_ns: self.ts_ns(self.now),
            part: part.name(),
            name,
            bytes: s.last,
            growth_bytes_per_sec: v.growth_bytes_per_sec.round(),
            pattern: v.pattern,
            confidence: (v.confidence * 1000.0).round() / 1000.0,
            mem_total_bytes: total,
            mem_available_bytes: avail,
            pinned_by: if part.pinned_by_descriptors() {
                self.pinners()
            } else {
                Vec::new()
            },
            t: self.now,
        }))
    }

    fn host_cleared(&self, part: Part, name: Option<String>, reason: &str, s: &PartSeries, f: Option<Flag>) -> Event {
        Event::HostLeakCleared(Box::new(HostCleared {
            ts_ns: self.ts_ns(self.now),
            part: part.name(),
            name,
            reason: reason.to_string(),
            bytes: s.last,
            flagged_secs: f.map(|f| (self.now - f.t).round()),
            t: self.now,
        }))
    }

    /// Judge every part of the host's memory and every tmpfs mount.
    pub(super) fn judge_host(&mut self, t: f64, out: &mut Vec<Event>) {
        if self.hostmem.readings == 0 {
            return;
        }
        let every = HOST_EVERY * self.cfg.interval_secs - 1e-6;
        // A flagged process explains the parts that follow its own memory.
        let process_flagged = self.table.iter().any(|p| p.flagged);
        let mut said: Vec<(Part, Option<String>, Said)> = Vec::new();
        for (part, s) in &mut self.hostmem.parts {
            if !part.candidate() {
                continue;
            }
            let allowed = !(part.follows_processes() && process_flagged);
            if let Some(x) = judge(s, &part_classifier(*part), t, every, allowed) {
                said.push((*part, None, x));
            }
        }
        let mut mounts: Vec<&String> = self.hostmem.mounts.keys().collect();
        mounts.sort();
        let mounts: Vec<String> = mounts.into_iter().cloned().collect();
        for m in mounts {
            if let Some(s) = self.hostmem.mounts.get_mut(&m)
                && let Some(x) = judge(s, &part_classifier(Part::Tmpfs), t, every, true)
            {
                said.push((Part::Tmpfs, Some(m), x));
            }
        }
        self.hostmem.mounts.retain(|_, m| m.present || m.flag.is_some());
        if t - self.hostmem.used.last_classified_t >= every {
            self.hostmem.used.verdict = Some(classify(&self.hostmem.used.timeline.samples(), &available_classifier()));
            self.hostmem.used.last_classified_t = t;
        }
        for (part, name, x) in said {
            let s = match &name {
                Some(m) => self.hostmem.mounts.get(m),
                None => self.hostmem.parts.get(&part),
            };
            let Some(s) = s else {
                // An unmounted mount's series is gone once cleared.
                if let Said::Cleared(reason, f) = x {
                    out.push(Event::HostLeakCleared(Box::new(HostCleared {
                        ts_ns: self.ts_ns(self.now),
                        part: part.name(),
                        name,
                        reason: reason.to_string(),
                        bytes: 0,
                        flagged_secs: f.map(|f| (self.now - f.t).round()),
                        t: self.now,
                    })));
                }
                continue;
            };
            out.push(match x {
                Said::Flagged => {
                    let name = name.or_else(|| {
                        (part == Part::SlabUnreclaimable)
                            .then(|| {
                                let span = s.verdict.map_or(60.0, |v| v.span_secs);
                                self.hostmem.top_unreclaimable_slab(span).map(|x| x.0)
                            })
                            .flatten()
                    });
                    self.host_leak(part, name, s)
                }
                Said::Cleared(reason, f) => self.host_cleared(part, name, reason, s, f),
            });
        }
    }
}
