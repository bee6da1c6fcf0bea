//! A record replayed through the same [`Core`] as the live agent: the events `run` would have
//! printed, at the times it would have printed them, attributed to the life they are about.
use std::collections::HashMap;

use super::core::{Core, CoreConfig, World};
use crate::{
    analysis::{
        classify::Verdict,
        score::{LifeScore, Said, Summary, score},
    },
    input::{CgObs, Record},
    output::Event,
    state::{Proc, Snapshot},
};

/// One event of the replay.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Seconds since the recording started.
    pub t: f64,
    /// The life (pid, start ticks) it is about.
    pub life: (u32, u64),
    pub event: Event,
}

/// What the replay saw of one life.
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub comm: String,
    pub first_t: f64,
    pub last_t: f64,
    /// Largest footprint read (bytes).
    pub peak_footprint: u64,
    /// It exited before the recording ended.
    pub ended: bool,
    /// The last verdict the core held for it (when it exited, or at the end of the recording).
    pub verdict: Option<Verdict>,
}

/// The recorded system: memory cgroups as they were read during the recording; no snapshots.
struct Recorded<'a> {
    cg: &'a [CgObs],
}

impl World for Recorded<'_> {
    /// The live world answered with the tightest level above the process (its cgroup or an
    /// ancestor): the recorded reading of that level, i.e. the one with the least headroom among
    /// the process's cgroup and its recorded ancestors.
    fn memcg(&mut self, _pid: u32, memcg: &str) -> Option<CgObs> {
        self.cg
            .iter()
            .filter(|c| c.0 == memcg || memcg.starts_with(&format!("{}/", c.0.trim_end_matches('/'))))
            .min_by_key(|c| c.2.map_or(u64::MAX, |l| l.saturating_sub(c.1)))
            .cloned()
    }

    fn snapshot(&mut self, _p: &Proc, _eta_secs: f64, _limit: &str) -> Option<Snapshot> {
        None
    }
}

/// Replay `rec` with `cfg` (its interval is the record's). `explain`: a pid whose judgement is
/// written, tick by tick, to stderr.
pub fn replay(rec: &Record, mut cfg: CoreConfig, explain: Option<u32>) -> (Vec<Replayed>, HashMap<(u32, u64), Life>) {
    cfg.interval_secs = rec.header.interval_secs;
    let mut core = Core::new(cfg, rec.header.host.mem_total, 0);
    core.explain = explain;
    let mut current: HashMap<u32, u64> = HashMap::new();
    let mut lives: HashMap<(u32, u64), Life> = HashMap::new();
    let mut out = Vec::new();
    for b in &rec.batches {
        for id in &b.new {
            current.insert(id.pid, id.start);
            lives
                .entry((id.pid, id.start))
                .and_modify(|l| {
                    if !id.comm.is_empty() {
                        l.comm.clone_from(&id.comm);
                    }
                })
                .or_insert_with(|| Life {
                    comm: id.comm.clone(),
                    first_t: b.t,
                    last_t: b.t,
                    peak_footprint: 0,
                    ended: false,
                    verdict: None,
                });
        }
        for o in &b.obs {
            if let Some(l) = lives.get_mut(&o.key()) {
                l.peak_footprint = l.peak_footprint.max(o.2 + o.4 + o.5);
            }
        }
        for key in &b.exit {
            if let (Some(l), Some(p)) = (lives.get_mut(key), core.table().life(*key)) {
                l.verdict = p.verdict;
            }
        }
        let events = core.apply(b, &mut Recorded { cg: &b.cg });
        for line in core.explained.drain(..) {
            eprintln!("{line}");
        }
        for event in events {
            let pid = event.pid();
            let start = current.get(&pid).copied().unwrap_or(0);
            out.push(Replayed {
                t: b.t,
                life: (pid, start),
                event,
            });
        }
        for key in &b.exit {
            if let Some(l) = lives.get_mut(key) {
                l.last_t = b.t;
                l.ended = true;
            }
        }
    }
    // Lives still running at the end of the recording lasted until then.
    let end = rec.batches.last().map_or(0.0, |b| b.t);
    for (key, l) in lives.iter_mut().filter(|(_, l)| !l.ended) {
        l.last_t = end;
        if let Some(p) = core.table().life(*key) {
            l.verdict = p.verdict;
        }
    }
    (out, lives)
}

/// A replay judged against its record's labels: what the agent said of each life (alarms,
/// clears other than exit, OOM predictions) scored by [`score`].
pub fn score_replay(rec: &Record, events: &[Replayed], lives: &HashMap<(u32, u64), Life>) -> (Vec<LifeScore>, Summary) {
    let mut said: HashMap<(u32, u64), Said> = HashMap::new();
    for r in events {
        let s = said.entry(r.life).or_default();
        match &r.event {
            Event::LeakSuspected { .. } => s.flagged.push(r.t),
            Event::LeakCleared { reason, .. } if reason != "exited" => s.cleared.push(r.t),
            Event::OomPredicted { .. } => s.predicted.push(r.t),
            _ => {}
        }
    }
    let spans = lives
        .iter()
        .map(|(k, l)| (*k, (l.comm.clone(), l.first_t, l.last_t)))
        .collect();
    score(
        &rec.labels,
        rec.header.default_leak,
        &spans,
        &said,
        rec.has_heap_figures(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_reading_is_the_tightest_level_above_the_process() {
        let cg = [
            CgObs("/p".into(), 60, Some(64)),
            CgObs("/p/b".into(), 10, Some(512)),
            CgObs("/q".into(), 0, Some(1)),
            CgObs("/pp".into(), 0, Some(1)),
        ];
        let mut w = Recorded { cg: &cg };
        // /p/b/c: its recorded ancestors are /p (4 left) and /p/b (502 left): /p binds.
        assert_eq!(w.memcg(1, "/p/b/c").map(|c| c.0), Some("/p".into()));
        assert_eq!(w.memcg(1, "/p").map(|c| c.0), Some("/p".into()));
        // `/pp` is not under `/p`, nor `/q` under anything asked.
        assert_eq!(w.memcg(1, "/x"), None);
    }
}
