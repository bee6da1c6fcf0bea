//! The alarm's state machine on synthetic verdict sequences (the classifier is tested apart;
//! the corpus test replays real timelines through both).
use super::*;

const MIB: u64 = 1 << 20;

fn verdict(pattern: Pattern, leak: bool, growth_secs: f64) -> Verdict {
    Verdict {
        pattern,
        leak,
        confidence: if leak { 0.9 } else { 0.5 },
        growth_bytes_per_sec: 1e6,
        samples: 100,
        span_secs: growth_secs,
        growth_secs,
        floor_growth_bytes: growth_secs * 1e6,
        recent_ratio: 1.0,
        falls: 0,
        major_falls: 0,
        major_trough_slope: 1e6,
    }
}

fn ctx(t: f64) -> Context<'static> {
    Context {
        t,
        age_secs: 3600.0 + t,
        cpu_secs: Some(0.01 * t),
        footprint: 100 * MIB + (t as u64) * MIB,
        cap: None,
        limit_bytes: 16 << 30,
        gc_runtime: false,
    }
}

/// Run a steady leak (verdicts leak=true from `from` on, growing since 0) until it flags.
fn first_flag(
    s: &mut AlarmState,
    c: impl Fn(f64) -> Context<'static>,
    from: f64,
    until: f64,
) -> Option<(f64, Evidence)> {
    let cfg = AlarmConfig::default();
    let mut t = from;
    while t <= until {
        if let Decision::Flag(e) = step(s, &verdict(Pattern::Mountain, true, t), &c(t), &cfg, 0.01) {
            return Some((t, e));
        }
        t += 1.0;
    }
    None
}

#[test]
fn a_steady_leak_is_flagged_once_the_evidence_has_built_up() {
    let mut s = AlarmState::default();
    let (t, e) = first_flag(&mut s, ctx, 15.0, 200.0).expect("flagged");
    let cfg = AlarmConfig::default();
    assert_eq!(
        t, cfg.min_growth_secs,
        "growth must span min_growth_secs (confirm is shorter)"
    );
    assert!(
        e.confirmed_secs >= cfg.confirm_secs && e.growth_secs >= cfg.min_growth_secs,
        "{e:?}"
    );
    assert_eq!(e.cpu_share, Some(0.01));
    // Flagged: no second alarm while it keeps growing.
    for t in 56..2000 {
        let d = step(
            &mut s,
            &verdict(Pattern::Mountain, true, f64::from(t)),
            &ctx(f64::from(t)),
            &cfg,
            0.01,
        );
        assert_eq!(d, Decision::Quiet, "at {t}");
    }
}

#[test]
fn a_warm_up_that_levels_off_is_never_flagged() {
    let cfg = AlarmConfig::default();
    let mut s = AlarmState::default();
    // Leak-like for 40 s (a cache filling), then a plateau.
    for t in 0..400 {
        let t = f64::from(t);
        let v = if t < 40.0 {
            verdict(Pattern::Mountain, true, t)
        } else {
            verdict(Pattern::Plateau, false, 0.0)
        };
        assert_eq!(step(&mut s, &v, &ctx(t), &cfg, 0.01), Decision::Quiet, "at {t}");
    }
    // A longer one that decelerates: the recent slope falls below half the horizon's.
    let mut s = AlarmState::default();
    for t in 0..120 {
        let t = f64::from(t);
        let mut v = verdict(Pattern::Mountain, true, t);
        v.recent_ratio = (1.0 - t / 60.0).max(0.1);
        assert_eq!(step(&mut s, &v, &ctx(t), &cfg, 0.01), Decision::Quiet, "at {t}");
    }
}

#[test]
fn wavering_verdicts_keep_their_evidence_but_a_plateau_resets_it() {
    let cfg = AlarmConfig::default();
    let mut s = AlarmState::default();
    let mut flagged = None;
    for t in 0..200 {
        let tf = f64::from(t);
        // A leak in big tides: the verdict drops out of `leak` two ticks in five.
        let v = if t % 5 < 2 {
            verdict(Pattern::Tidal, false, 0.0)
        } else {
            verdict(Pattern::Mountain, true, tf)
        };
        if let Decision::Flag(_) = step(&mut s, &v, &ctx(tf), &cfg, 0.01) {
            flagged = Some(tf);
            break;
        }
    }
    let t = flagged.expect("a wavering leak is flagged");
    assert!(t <= 70.0, "{t}");
    let mut s = AlarmState::default();
    for t in 0..54 {
        step(
            &mut s,
            &verdict(Pattern::Mountain, true, f64::from(t)),
            &ctx(f64::from(t)),
            &cfg,
            0.01,
        );
    }
    assert!(s.candidate_since.is_some());
    step(&mut s, &verdict(Pattern::Plateau, false, 0.0), &ctx(54.0), &cfg, 0.01);
    assert!(s.candidate_since.is_none(), "a plateau ends the candidacy");
}

#[test]
fn growth_below_a_declared_cap_is_bounded_unless_the_cap_is_above_the_limit() {
    let cap = Box::leak(Box::new(Cap {
        flag: "-Xmx512m".into(),
        declared_bytes: 512 * MIB,
        footprint_bytes: 768 * MIB,
    }));
    let with_cap = |t: f64| Context {
        cap: Some(cap),
        ..ctx(t)
    };
    let mut s = AlarmState::default();
    assert!(
        first_flag(&mut s, with_cap, 0.0, 600.0).is_none(),
        "bounded below its cap"
    );
    assert_eq!(s.held, Some(Hold::BoundedByCap));
    // The same cap inside a 512 MiB memory cgroup: reaching it is an OOM, not a plateau.
    let in_small_cg = |t: f64| Context {
        cap: Some(cap),
        limit_bytes: 512 * MIB,
        ..ctx(t)
    };
    let mut s = AlarmState::default();
    assert!(first_flag(&mut s, in_small_cg, 0.0, 600.0).is_some());
    // Above its cap, growth is judged as any other.
    let above = |t: f64| Context {
        cap: Some(cap),
        footprint: 900 * MIB,
        ..ctx(t)
    };
    let mut s = AlarmState::default();
    assert!(first_flag(&mut s, above, 0.0, 600.0).is_some());
}

#[test]
fn a_young_process_computing_flat_out_is_a_batch_job() {
    let cfg = AlarmConfig::default();
    // A compiler: one core busy since it started 10 s before leaktrace saw it.
    let busy = |t: f64| Context {
        age_secs: 10.0 + t,
        cpu_secs: Some(0.95 * t),
        ..ctx(t)
    };
    let mut s = AlarmState::default();
    let flag = first_flag(&mut s, busy, 0.0, 1000.0).expect("flagged once it is no longer young");
    assert!(flag.0 >= cfg.busy_grace_secs - 10.0, "{flag:?}");
    assert!(flag.1.cpu_share.unwrap() > 0.9);
    // The same growth at a low CPU share is flagged as soon as the evidence allows.
    let idle = |t: f64| Context {
        age_secs: 10.0 + t,
        ..ctx(t)
    };
    let mut s = AlarmState::default();
    assert_eq!(first_flag(&mut s, idle, 0.0, 1000.0).unwrap().0, cfg.min_growth_secs);
}

#[test]
fn a_garbage_collected_heap_needs_a_collection_or_a_longer_look() {
    let cfg = AlarmConfig::default();
    let jvm = |t: f64| Context {
        gc_runtime: true,
        ..ctx(t)
    };
    let mut s = AlarmState::default();
    assert_eq!(first_flag(&mut s, jvm, 0.0, 1000.0).unwrap().0, cfg.gc_min_growth_secs);
    // Once a major collection was seen, the floor it left is judged as usual.
    let mut s = AlarmState::default();
    let mut t = 0.0;
    let flagged = loop {
        let mut v = verdict(Pattern::Mountain, true, t);
        v.falls = 3;
        v.major_falls = 2;
        if let Decision::Flag(_) = step(&mut s, &v, &jvm(t), &cfg, 0.01) {
            break t;
        }
        t += 1.0;
        assert!(t < 1000.0);
    };
    assert_eq!(flagged, cfg.min_growth_secs);
}

#[test]
fn cleared_only_after_a_long_stop_and_not_flagged_again_on_the_same_evidence() {
    let cfg = AlarmConfig::default();
    let mut s = AlarmState::default();
    let (t0, _) = first_flag(&mut s, ctx, 0.0, 200.0).unwrap();
    // It stops growing: cleared after clear_after_secs, not before.
    let level = ctx(t0).footprint;
    let flat = |t: f64| Context {
        footprint: level,
        ..ctx(t)
    };
    let mut cleared = None;
    for i in 1..=400 {
        let t = t0 + f64::from(i);
        match step(&mut s, &verdict(Pattern::Plateau, false, 0.0), &flat(t), &cfg, 0.01) {
            Decision::Clear => {
                cleared = Some(t);
                break;
            }
            d => assert_eq!(d, Decision::Quiet),
        }
    }
    let tc = cleared.expect("cleared");
    assert_eq!(tc - t0, cfg.clear_after_secs);
    // The old evidence comes back at once: no alarm within realarm_after_secs...
    for i in 1..600 {
        let t = tc + f64::from(i);
        let d = step(&mut s, &verdict(Pattern::Mountain, true, 120.0), &flat(t), &cfg, 0.01);
        assert_eq!(d, Decision::Quiet, "re-alarm at +{i}s");
    }
    // ...nor after it, until the footprint rises above the cleared level by the minimum.
    let t = tc + 700.0;
    assert_eq!(
        step(&mut s, &verdict(Pattern::Mountain, true, 120.0), &flat(t), &cfg, 0.01),
        Decision::Quiet
    );
    let higher = Context {
        footprint: level + 64 * MIB,
        ..ctx(t + 1.0)
    };
    assert!(matches!(
        step(&mut s, &verdict(Pattern::Mountain, true, 120.0), &higher, &cfg, 0.01),
        Decision::Flag(_)
    ));
}

#[test]
fn the_hosts_budget_is_shared() {
    assert_eq!(host_significance(0.01, 0), 0.01);
    assert_eq!(host_significance(0.01, 1), 0.01);
    assert!((host_significance(0.01, 20) - 0.0005).abs() < 1e-12);
}
