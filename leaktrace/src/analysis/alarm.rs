//! The live alarm: when the host agent says `leak_suspected` and `leak_cleared`.
//!
//! The classifier judges one timeline at one moment; the agent judges hundreds of timelines
//! every second, and each prefix of a warm-up looks like a leak. So an alarm is a state machine
//! over time, per process, on top of the classifier's verdicts:
//!
//! - **Evidence accumulates.** A process becomes a *candidate* when the classifier calls it a leak
//!   (with the host's significance, below); it is flagged only when it stayed a candidate
//!   for `confirm_secs` without a break and the growth the verdict rests on spans at least
//!   `min_growth_secs` (`Verdict::growth_secs`). Most warm-ups (caches filling, heaps sizing,
//!   interpreters loading) end sooner, and their deceleration ends the candidacy.
//! - **Growth towards a declared cap is bounded** (`caps`): a JVM below `-Xmx`, redis below
//!   `maxmemory`, memcached below `-m` — unless the cap lies above the limit that binds the
//!   process, where reaching it is an OOM.
//! - **Computing is not leaking.** A process that has kept a core busy (`busy_cpu_share`) since
//!   its growth began and is younger than `busy_grace_secs` is treated as a batch job
//!   (compiler, sort, compressor, a build): its memory grows with the work it does. Urgency
//!   still applies through time-to-OOM (`oom_predicted`), which is judged apart.
//! - **Hysteresis.** A flagged process stays flagged while it grows; it is cleared only after its
//!   floor stopped growing for `clear_after_secs`, and after a clear it is not flagged again for
//!   `realarm_after_secs`, nor before its floor rises above the level it was cleared at.
//! - **The host's false-alarm rate** is controlled, not each judgement's: the significance
//!   asked of each candidate's trend test is the classifier's divided by the number of
//!   processes that are candidates at the same time (Bonferroni), see [`host_significance`].
use serde::Serialize;

use super::{
    caps::Cap,
    classify::{Pattern, Verdict},
};

/// Tuning of the live alarm. Every field has a default (see `docs/classifier.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmConfig {
    /// A leak verdict must hold this long, without a break, before it is reported (s).
    pub confirm_secs: f64,
    /// Ticks a candidate may miss (the verdict wavering at a threshold) without losing its
    /// accumulated evidence, beyond as many as it had leak verdicts: a leak in big tides keeps
    /// its candidacy while at least about half its verdicts say leak.
    pub allowed_misses: u32,
    /// The growth a leak verdict rests on must span at least this long (s).
    pub min_growth_secs: f64,
    /// ...for a garbage-collected runtime (JVM, node, ...) that has not yet been seen to
    /// collect twice (two falls of a quarter of its range): its heap grows with garbage until a
    /// major collection, which may be minutes away, and one trough gives the floor no direction.
    pub gc_min_growth_secs: f64,
    /// The floor's recent slope must be at least this share of its slope over the horizon
    /// (a warm-up levelling off is not a leak).
    pub min_recent_ratio: f64,
    /// Share of a core above which a growing process counts as computing. Low, because what a
    /// process gets is what a busy host leaves it: in the corpus (a saturated 2-core host),
    /// compilers and sorts got 0.09–0.3 of a core while they grew, the programs that serve,
    /// cache or leak 0.00–0.07.
    pub busy_cpu_share: f64,
    /// A computing process is judged as a possible leak only after it has run this long (s).
    pub busy_grace_secs: f64,
    /// A flagged process is cleared when its floor has not grown for this long (s).
    pub clear_after_secs: f64,
    /// After a clear, no new alarm for this long (s).
    pub realarm_after_secs: f64,
    /// The classifier's `min_floor_steps` for the live alarm: lower than `watch`'s, because the
    /// confirmation over time does what a single verdict cannot (noisy troughs of a leak in
    /// tides come in fewer "equivalent steps" than a clean leak).
    pub floor_steps: f64,
    /// ...nor before the footprint rose above the level it was cleared at by this much (bytes)
    /// and this share of that level.
    pub realarm_growth_bytes: u64,
    pub realarm_growth_ratio: f64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            confirm_secs: 15.0,
            allowed_misses: 5,
            min_growth_secs: 55.0,
            gc_min_growth_secs: 240.0,
            min_recent_ratio: 0.5,
            busy_cpu_share: 0.08,
            busy_grace_secs: 300.0,
            clear_after_secs: 300.0,
            realarm_after_secs: 600.0,
            floor_steps: 2.0,
            realarm_growth_bytes: 4 << 20,
            realarm_growth_ratio: 0.05,
        }
    }
}

/// The classifier's significance level for one process when `candidates` processes are judged
/// as possible leaks at the same time: the host's false-alarm budget shared among them.
pub fn host_significance(alpha: f64, candidates: usize) -> f64 {
    alpha / candidates.max(1) as f64
}

/// What the alarm needs to know of a process at one tick, besides its verdict.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Monitor clock, seconds.
    pub t: f64,
    /// Seconds the process has lived.
    pub age_secs: f64,
    /// CPU time it has used so far, seconds (None when unknown).
    pub cpu_secs: Option<f64>,
    /// Current footprint and floor (bytes).
    pub footprint: u64,
    /// The cap it declares, if any.
    pub cap: Option<&'a Cap>,
    /// The limit that binds it: its memory cgroup's limit, else the host's memory (bytes).
    pub limit_bytes: u64,
    /// It runs a garbage-collected runtime (`caps::gc_runtime`).
    pub gc_runtime: bool,
}

/// Why a leak verdict is being held back (shown in `leak_suspected`'s evidence when it clears).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// Growing towards a cap it declares, below the limit that binds it.
    BoundedByCap,
    /// Busy computing since its growth began, and young.
    Computing,
}

/// Per-process state of the alarm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmState {
    /// When the current candidacy began.
    pub candidate_since: Option<f64>,
    /// CPU time (s) at the candidacy's start, and when it was read.
    pub cpu_at_start: Option<(f64, f64)>,
    /// Ticks of the candidacy with a leak verdict, and without.
    hits: u32,
    misses: u32,
    pub flagged_at: Option<f64>,
    /// The last tick at which a flagged process was still growing.
    last_growth: Option<f64>,
    /// Last clear: when, and the floor level (bytes) it was cleared at.
    pub cleared: Option<(f64, u64)>,
    /// Why the last tick's leak verdict was held back, if it was.
    pub held: Option<Hold>,
}

/// What the alarm says at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Quiet,
    /// Raise `leak_suspected` now.
    Flag(Evidence),
    /// Raise `leak_cleared` (no longer growing) now.
    Clear,
}

/// What a `leak_suspected` rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evidence {
    /// How long the floor has been growing with leak-level confidence (s).
    pub growth_secs: f64,
    /// Floor growth over that time (bytes).
    pub floor_growth_bytes: f64,
    /// How long the verdict held before the alarm (s).
    pub confirmed_secs: f64,
    /// Share of a core the process used while it grew (null: unknown).
    pub cpu_share: Option<f64>,
    /// The significance asked of its trend test (the host's share).
    pub significance: f64,
}

/// Is a footprint's growth bounded by a declared cap below the limit that binds?
pub fn bounded_by_cap(cap: Option<&Cap>, footprint: u64, limit_bytes: u64) -> bool {
    cap.is_some_and(|c| c.footprint_bytes < limit_bytes && footprint < c.footprint_bytes)
}

fn bounded(ctx: &Context<'_>) -> bool {
    bounded_by_cap(ctx.cap, ctx.footprint, ctx.limit_bytes)
}

/// Falls in the series above which its floor is read as tidal (see `step`).
const TIDAL_FALLS: usize = 10;

/// One tick of the alarm for one process. `significance`: what the verdict was judged with.
pub fn step(s: &mut AlarmState, v: &Verdict, ctx: &Context<'_>, cfg: &AlarmConfig, significance: f64) -> Decision {
    let t = ctx.t;
    let leak = v.pattern == Pattern::Mountain && v.leak;
    // Share of a core used since the candidacy began (once there is enough time to tell); a
    // candidacy younger than that (a long growth is flagged at once) has the life's own share.
    let cpu = match (s.cpu_at_start, ctx.cpu_secs) {
        (Some((t0, c0)), Some(c)) if t - t0 >= 5.0 => Some(((c - c0) / (t - t0)).max(0.0)),
        (_, Some(c)) if ctx.age_secs >= 5.0 => Some((c / ctx.age_secs).max(0.0)),
        _ => None,
    };
    s.held = if !leak {
        None
    } else if bounded(ctx) {
        Some(Hold::BoundedByCap)
    } else if ctx.age_secs < cfg.busy_grace_secs && cpu.is_some_and(|c| c >= cfg.busy_cpu_share) {
        Some(Hold::Computing)
    } else {
        None
    };

    if let Some(flagged) = s.flagged_at {
        // Hysteresis: a flagged process stays flagged while its floor grows at all.
        if v.pattern == Pattern::Mountain {
            s.last_growth = Some(t);
            return Decision::Quiet;
        }
        let since = s.last_growth.unwrap_or(flagged);
        if t - since >= cfg.clear_after_secs {
            s.flagged_at = None;
            s.candidate_since = None;
            s.cpu_at_start = None;
            s.cleared = Some((t, ctx.footprint));
            return Decision::Clear;
        }
        return Decision::Quiet;
    }

    if leak && s.held != Some(Hold::BoundedByCap) {
        if s.candidate_since.is_none() {
            s.candidate_since = Some(t);
            s.cpu_at_start = ctx.cpu_secs.map(|c| (t, c));
            s.hits = 0;
            s.misses = 0;
        }
        s.hits += 1;
    } else if s.candidate_since.is_some() {
        s.misses += 1;
        if s.misses > cfg.allowed_misses + s.hits || matches!(v.pattern, Pattern::Plateau | Pattern::Flat) {
            s.candidate_since = None;
            s.cpu_at_start = None;
        }
    }
    let Some(since) = s.candidate_since else {
        return Decision::Quiet;
    };
    let confirmed = t - since;
    // Growth established over twice the minimum is itself accumulated evidence (a slow leak in
    // big tides reaches leak confidence only now and then): no further confirmation is needed.
    // Not for a collected heap, whose floor swings with its collections: one verdict there may
    // catch the top of a long sawtooth.
    let confirm = if v.growth_secs >= 2.0 * cfg.min_growth_secs && !ctx.gc_runtime {
        0.0
    } else {
        cfg.confirm_secs
    };
    let rearm_ok = s.cleared.is_none_or(|(at, level)| {
        let needed = (cfg.realarm_growth_bytes as f64).max(cfg.realarm_growth_ratio * level as f64);
        t - at >= cfg.realarm_after_secs && ctx.footprint as f64 >= level as f64 + needed
    });
    // A collected heap: two major collections seen (their troughs give the floor a direction),
    // not only the small scavenges of a young generation.
    let collected = v.major_falls >= 2;
    // ...and then it leaks only if the level each major collection gets back to rises too: a
    // heap whose garbage piles up between major collections rises between them (a sawtooth
    // longer than the floor's window) and falls back to the same bottom.
    // A warm-up levels off smoothly, and its last stretch says so; a floor under tides (many
    // falls) is known only at its troughs, and the last stretch may hold one or two of them.
    let recent_needed = if v.falls >= TIDAL_FALLS {
        cfg.min_recent_ratio * 0.3
    } else {
        cfg.min_recent_ratio
    };
    // Any other floor with major falls must at least not be falling back lower each time.
    let bottoms_rise = match (collected, ctx.gc_runtime) {
        (false, _) => true,
        (true, true) => v.major_trough_slope >= 0.25 * v.growth_bytes_per_sec,
        (true, false) => v.major_trough_slope >= 0.0,
    };
    let min_growth = if ctx.gc_runtime && !collected {
        cfg.gc_min_growth_secs
    } else {
        cfg.min_growth_secs
    };
    if leak
        && s.held.is_none()
        && confirmed >= confirm
        && v.growth_secs >= min_growth
        && v.recent_ratio >= recent_needed
        && bottoms_rise
        && rearm_ok
    {
        s.flagged_at = Some(t);
        s.last_growth = Some(t);
        return Decision::Flag(Evidence {
            growth_secs: v.growth_secs,
            floor_growth_bytes: v.floor_growth_bytes.round(),
            confirmed_secs: confirmed,
            cpu_share: cpu.map(|c| (c * 100.0).round() / 100.0),
            significance,
        });
    }
    Decision::Quiet
}

#[cfg(test)]
mod tests;
