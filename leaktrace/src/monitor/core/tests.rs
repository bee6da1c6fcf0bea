//! The monitor's logic on synthetic batches: no kernel, no /proc.
use super::*;
use crate::{
    input::{Identity, Obs},
    state::Proc,
};

const MIB: u64 = 1 << 20;

/// A system where every memory cgroup has the same limit and usage, and snapshots always work.
#[derive(Default)]
struct FakeWorld {
    limit: Option<u64>,
    usage: u64,
    snapshots: usize,
    asked: Vec<(u32, String)>,
}

impl World for FakeWorld {
    fn memcg(&mut self, pid: u32, memcg: &str) -> Option<CgObs> {
        self.asked.push((pid, memcg.to_string()));
        Some(CgObs(memcg.to_string(), self.usage, self.limit))
    }

    fn snapshot(&mut self, p: &Proc, eta_secs: f64, limit: &str) -> Option<Snapshot> {
        self.snapshots += 1;
        Some(Snapshot {
            pid: p.key.pid,
            comm: p.comm.clone(),
            taken_unix_ms: 0,
            eta_secs,
            limit: limit.into(),
            smaps_rollup: Default::default(),
            status: Default::default(),
            top_mappings: Vec::new(),
        })
    }
}

fn id(pid: u32, ppid: u32, comm: &str, memcg: Option<&str>) -> Identity {
    Identity {
        pid,
        start: u64::from(pid) * 10,
        ppid,
        comm: comm.into(),
        cmdline: vec![comm.into()],
        memcg: memcg.map(str::to_string),
        limit: None,
        age: Some(3600.0),
    }
}

fn obs(pid: u32, anon: u64) -> Obs {
    Obs(pid, u64::from(pid) * 10, anon, 0, 0, 0, None)
}

fn tick(t: f64) -> Batch {
    Batch {
        host: Some(HostObs {
            avail: 16 << 30,
            swap_free: 0,
        }),
        ..Batch::at(t, true)
    }
}

fn core() -> Core {
    Core::new(CoreConfig::new(1.0), 32 << 30, 1_000)
}

fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
            format!("{}:{}", v["event"].as_str().unwrap(), e.pid())
        })
        .collect()
}

/// 120 s of a 2 MiB/s leak (pid 7) beside a 60 MiB tide (pid 8) and a flat process (pid 9).
fn busy(c: &mut Core, w: &mut FakeWorld) -> Vec<(f64, Event)> {
    let mut out = Vec::new();
    let mut b = tick(0.0);
    b.new = vec![id(7, 1, "leaker", None), id(8, 1, "tide", None), id(9, 1, "flat", None)];
    b.obs = vec![obs(7, 20 * MIB), obs(8, 10 * MIB), obs(9, 5 * MIB)];
    out.extend(c.apply(&b, w).into_iter().map(|e| (0.0, e)));
    for i in 1..=120u64 {
        let t = i as f64;
        let mut b = tick(t);
        b.obs.push(obs(7, 20 * MIB + i * 2 * MIB));
        let tide = if (i / 5) % 2 == 0 { 10 * MIB } else { 70 * MIB };
        b.obs.push(obs(8, tide + (i % 3) * 4096));
        // pid 9 is not read at all: it is carried forward.
        out.extend(c.apply(&b, w).into_iter().map(|e| (t, e)));
    }
    out
}

#[test]
fn a_leak_is_flagged_once_and_cleared_at_exit() {
    let mut c = core();
    let mut w = FakeWorld::default();
    let events = busy(&mut c, &mut w);
    let flagged: Vec<&(f64, Event)> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::LeakSuspected { .. }))
        .collect();
    assert_eq!(
        flagged.len(),
        1,
        "{:?}",
        names(&events.iter().map(|x| x.1.clone()).collect::<Vec<_>>())
    );
    let (t, e) = flagged[0];
    assert_eq!(e.pid(), 7);
    // The live alarm waits for the growth to span min_growth_secs (warm-ups end sooner).
    assert!(
        (55.0..=60.0).contains(t),
        "a 2 MiB/s leak is flagged within 55–60 s, got {t}"
    );
    let Event::LeakSuspected { verdict, subject, .. } = e else {
        unreachable!()
    };
    assert!(verdict.leak);
    assert!(
        (verdict.growth_bytes_per_sec / (2.0 * MIB as f64) - 1.0).abs() < 0.1,
        "{verdict:?}"
    );
    assert_eq!(
        subject.ts_ns,
        1_000 + (*t * 1e9) as u64,
        "ts_ns follows the batch clock"
    );
    // The flat process was carried: one sample per tick although never read again.
    let flat = c.table().get(9).unwrap();
    assert_eq!(flat.timeline.len(), 1, "carried lazily: not touched at the ticks");
    assert_eq!(c.table().samples(flat).len(), 121);
    assert!(c.table().get(7).unwrap().flagged);

    let mut b = Batch::at(120.5, false);
    b.exit.push((7, 70));
    let out = c.apply(&b, &mut w);
    assert_eq!(names(&out), ["leak_cleared:7"]);
    let Event::LeakCleared {
        reason, flagged_secs, ..
    } = &out[0]
    else {
        unreachable!()
    };
    assert_eq!(reason, "exited");
    assert!(flagged_secs.unwrap() > 60.0);
    assert!(!c.table().contains(7));
}

#[test]
fn growth_toward_a_memcg_limit_is_predicted_and_snapshotted_once() {
    let mut c = core();
    let mut w = FakeWorld {
        limit: Some(512 * MIB),
        usage: 400 * MIB,
        ..FakeWorld::default()
    };
    let mut b = tick(0.0);
    b.new = vec![id(7, 1, "leaker", Some("/box"))];
    b.obs = vec![obs(7, 20 * MIB)];
    c.apply(&b, &mut w);
    let mut predicted = Vec::new();
    let mut snapshots = 0;
    for i in 1..=60u64 {
        let mut b = tick(i as f64);
        b.obs.push(obs(7, 20 * MIB + i * 8 * MIB));
        w.usage = (400 + i) * MIB;
        for e in c.apply(&b, &mut w) {
            match e {
                Event::OomPredicted {
                    limit,
                    limit_bytes,
                    eta_secs,
                    placement,
                    ..
                } => predicted.push((limit, limit_bytes, eta_secs, placement.memcg)),
                Event::OomSnapshot { .. } => snapshots += 1,
                _ => {}
            }
        }
    }
    assert_eq!(predicted.len(), 1, "{predicted:?}");
    let (limit, bytes, eta, memcg) = &predicted[0];
    assert_eq!(
        (*limit, *bytes, memcg.as_deref()),
        (LimitKind::Memcg, 512 * MIB, Some("/box"))
    );
    assert!(*eta < 20.0, "~100 MiB of headroom at 8 MiB/s, got {eta}");
    assert_eq!((snapshots, w.snapshots), (1, 1), "one snapshot per life");
    assert!(w.asked.iter().all(|(pid, m)| *pid == 7 && m == "/box"));
    let p = c.table().get(7).unwrap();
    assert!(p.eta.is_some() && p.snapshot.is_some() && p.predicted_at.is_some());
}

#[test]
fn a_reused_pid_ends_the_old_life() {
    let mut c = core();
    let mut w = FakeWorld::default();
    busy(&mut c, &mut w);
    assert!(c.table().get(7).unwrap().flagged);
    // The same pid, another start time: the flagged life ended unseen.
    let mut b = Batch::at(121.0, false);
    b.new.push(Identity {
        start: 999,
        ..id(7, 1, "other", None)
    });
    b.obs.push(Obs(7, 999, MIB, 0, 0, 0, None));
    let out = c.apply(&b, &mut w);
    assert_eq!(names(&out), ["leak_cleared:7"]);
    let p = c.table().get(7).unwrap();
    assert_eq!((p.comm.as_str(), p.flagged, p.timeline.len()), ("other", false, 1));
    // A reading of the old life is not taken for the new one.
    let mut b = tick(122.0);
    b.obs.push(obs(7, 900 * MIB));
    c.apply(&b, &mut w);
    assert_eq!(c.table().get(7).unwrap().rss.anon, MIB);
}

#[test]
fn a_tree_is_followed_through_its_children() {
    let mut cfg = CoreConfig::new(1.0);
    cfg.tree_root = Some(50);
    let mut c = Core::new(cfg, 32 << 30, 0);
    let mut w = FakeWorld::default();
    assert!(c.verdict_event(None, None).is_none(), "no sample yet");
    let mut b = tick(0.0);
    b.new = vec![
        id(50, 1, "sh", None),
        id(51, 50, "worker", None),
        id(60, 1, "stranger", None),
    ];
    b.obs = vec![obs(50, MIB), obs(51, 10 * MIB), obs(60, 500 * MIB)];
    let out = c.apply(&b, &mut w);
    assert!(c.in_group(51) && !c.in_group(60));
    let Some(Event::Sample {
        processes,
        footprint_bytes,
        ..
    }) = out.last()
    else {
        panic!("a tick of a watched tree gives a sample: {}", names(&out).join(","))
    };
    assert_eq!((*processes, *footprint_bytes), (2, 11 * MIB));
    // A fork seen by the kernel before the child's first reading.
    c.adopt(51, 52);
    assert!(c.in_group(52));
    for i in 1..=40u64 {
        let mut b = tick(i as f64);
        b.obs.push(obs(51, 10 * MIB + i * MIB));
        c.apply(&b, &mut w);
    }
    let (v, leak) = c.verdict_event(Some(0), None).unwrap();
    assert!(leak);
    let Event::Verdict {
        pid,
        comm,
        samples,
        command_exit_code,
        ..
    } = v
    else {
        unreachable!()
    };
    assert_eq!(
        (pid, comm.as_str(), samples, command_exit_code),
        (50, "sh", 41, Some(0))
    );
}

#[test]
fn a_refused_life_is_not_read() {
    let mut cfg = CoreConfig::new(1.0);
    cfg.max_processes = 1;
    let mut c = Core::new(cfg, 32 << 30, 0);
    let mut b = tick(0.0);
    b.new = vec![id(1, 0, "a", None), id(2, 0, "b", None)];
    b.obs = vec![obs(1, MIB), obs(2, MIB)];
    c.apply(&b, &mut FakeWorld::default());
    assert_eq!((c.table().len(), c.table().refused), (1, 1));
}

/// Classifications per tick are bounded: many changing processes are classified in turn, those
/// without a verdict first, then the oldest verdict; an unchanged process with a verdict that is
/// not growing is not classified again.
#[test]
fn classifications_per_tick_are_budgeted() {
    let mut c = Core::new(
        CoreConfig {
            classify_budget: 10,
            ..CoreConfig::new(1.0)
        },
        32 << 30,
        1_000,
    );
    let mut w = FakeWorld::default();
    let all: Vec<u32> = (100..130).chain([200]).collect();
    let mut b = tick(0.0);
    // 30 processes whose footprint moves every tick, and one (200) that never moves.
    b.new = all.iter().map(|&p| id(p, 1, "p", None)).collect();
    b.obs = all.iter().map(|&p| obs(p, 10 * MIB)).collect();
    c.apply(&b, &mut w);
    let verdicts = |c: &Core| {
        all.iter()
            .filter(|&&p| c.table().get(p).unwrap().verdict.is_some())
            .count()
    };
    assert_eq!(verdicts(&c), 10);
    let mut still_at = None;
    for i in 1..=40u64 {
        let t = i as f64;
        let mut b = tick(t);
        b.obs = (100..130).map(|p| obs(p, 10 * MIB + (i % 2) * 4096)).collect();
        c.apply(&b, &mut w);
        let now = all
            .iter()
            .filter(|&&p| c.table().get(p).unwrap().last_classified_t == t)
            .count();
        assert_eq!(now, 10, "tick {i}: the budget's worth");
        if i == 3 {
            // Every process has had a first verdict (31 processes, 10 a tick).
            assert_eq!(verdicts(&c), 31);
            still_at = Some(c.table().get(200).unwrap().last_classified_t);
        }
        if i >= 6 {
            // Each changing process waits at most three ticks for its turn.
            assert!((100..130).all(|p| t - c.table().get(p).unwrap().last_classified_t <= 3.0));
        }
    }
    // The still process was classified once, then never again while it does not change.
    assert_eq!(Some(c.table().get(200).unwrap().last_classified_t), still_at);
}
