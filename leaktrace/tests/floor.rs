//! The lowest footprint of each interval (`Obs.floor`, the 7th value of a record's `obs` rows),
//! measured by the kernel, against real processes. Run serially (`cargo xtask test -- floor`).
mod common;

use std::{
    collections::HashSet,
    fs,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHash, Map, MapData, PerCpuArray, loaded_maps};
use common::*;
use leaktrace_common::rss::{FLOOR_NONE, FloorKey, FloorVal, RssSlot};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// `lt-workload tides`: 32 MiB held, 24 MiB more for 120 ms out of every ~150 ms.
const BASE: u64 = 32 * MIB;
const TIDE: u64 = 24 * MIB;

/// A workload child, killed on drop.
struct Work(Child);

impl Work {
    fn start(args: &[&str]) -> Work {
        Work(
            Command::new(workload())
                .args(args)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn lt-workload"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ids of the BPF objects (`prog_id` / `map_id`) whose descriptors process `pid` holds: the
/// agent's own, whatever other agents run on the machine.
fn held_by(pid: u32, what: &str) -> HashSet<u32> {
    let mut ids = HashSet::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo").flatten() {
        let text = fs::read_to_string(fd.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix(what)?.trim().parse::<u32>().ok()),
        );
    }
    ids
}

/// Names of the programs the agent `pid` holds.
fn programs_of(pid: u32) -> Vec<String> {
    let ids = held_by(pid, "prog_id:");
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| String::from_utf8_lossy(p.name()).into_owned())
        .collect()
}

/// The agent's map `name`, and its size.
fn map_by_name(name: &str, agent: u32) -> (MapData, u32) {
    let ids = held_by(agent, "map_id:");
    let info = loaded_maps()
        .filter_map(Result::ok)
        .find(|m| m.name() == name.as_bytes() && ids.contains(&m.id()))
        .unwrap_or_else(|| panic!("map {name} not held by the agent"));
    (MapData::from_id(info.id()).expect("map by id"), info.max_entries())
}

/// What the kernel holds for `pid` now: its per-CPU slots and its `RSS_FLOOR` entries.
fn kernel_state(pid: u32, agent: u32) -> (Vec<RssSlot>, Vec<FloorVal>) {
    let (slots, _) = map_by_name("RSS_LAST", agent);
    let slots = Map::PerCpuArray(slots);
    let slots: PerCpuArray<&MapData, RssSlot> = PerCpuArray::try_from(&slots).expect("RSS_LAST");
    let in_slots = slots
        .get(&0, 0)
        .map(|v| v.iter().filter(|s| s.tgid == pid).copied().collect())
        .unwrap_or_default();
    let (floors, _) = map_by_name("RSS_FLOOR", agent);
    let floors = Map::LruHashMap(floors);
    let floors: BpfHash<&MapData, FloorKey, FloorVal> = BpfHash::try_from(&floors).expect("RSS_FLOOR");
    let in_map = floors
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| k.tgid == pid)
        .map(|(_, v)| v)
        .collect();
    (in_slots, in_map)
}

/// One `obs` row of a record: (t, tick, footprint, floor).
#[derive(Debug)]
struct Row {
    t: f64,
    tick: bool,
    footprint: u64,
    floor: Option<u64>,
}

fn rows(record: &str, pid: u32) -> Vec<Row> {
    let text = fs::read_to_string(record).unwrap_or_else(|e| panic!("{record}: {e}"));
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let Some(obs) = v["obs"].as_array() else { continue };
        for o in obs.iter().filter(|o| o[0] == pid) {
            let n = |i: usize| o[i].as_u64().unwrap_or_else(|| panic!("obs[{i}] in {o}"));
            out.push(Row {
                t: v["t"].as_f64().unwrap(),
                tick: v["tick"] != false,
                footprint: n(2) + n(4) + n(5),
                floor: o[6].as_u64(),
            });
        }
    }
    out
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / MIB as f64)
}

fn show(rs: &[Row]) -> String {
    rs.iter()
        .map(|r| {
            format!(
                "t={:.1}{} fp={} floor={}",
                r.t,
                if r.tick { "" } else { " (between ticks)" },
                mib(r.footprint),
                r.floor.map_or("null".into(), mib)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn floor_follows_the_troughs_inside_each_interval() {
    if !bpf_available("floor_follows_the_troughs_inside_each_interval") {
        return;
    }
    let dir = tempdir("floor");
    fs::create_dir_all(&dir).unwrap();
    let record = format!("{dir}/floor.jsonl");
    // Emulated kernels (the matrix under TCG) run everything several times slower.
    let watch = scaled(Duration::from_secs(12));
    let life = (watch.as_secs() + 60).to_string();
    let flat = Work::start(&["hold", "40", &life]);
    let tides = Work::start(&["tides", "32", "24", "120", "30", &life]);
    thread::sleep(scaled(Duration::from_secs(1))); // the flat one has touched its memory
    let (pt, pf) = (tides.pid().to_string(), flat.pid().to_string());
    let agent = Agent::start(
        &[
            "run",
            "--json",
            "--report-dir",
            &dir,
            "--record",
            &record,
            "--pid",
            &pt,
            "--pid",
            &pf,
        ],
        "leaktrace: running",
    );
    // The path taken: the BTF tracepoint that measures the floor, not the raw one, and the kernel's
    // per-CPU slots / RSS_FLOOR entries hold a minimum for the tides process near its base.
    let loaded = programs_of(agent.pid());
    let has = |n: &str| loaded.iter().any(|p| p == n);
    assert!(
        has("rss_stat_floor") && !has("rss_stat"),
        "rss_stat_floor should replace raw_tp:rss_stat: {loaded:?}"
    );
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < watch {
        let (slots, entries) = kernel_state(tides.pid(), agent.pid());
        for s in slots.iter().filter(|s| s.min != FLOOR_NONE) {
            assert_ne!(s.mm, 0, "a slot with a minimum knows its mm: {s:?}");
            seen.push(s.min);
        }
        seen.extend(entries.iter().map(|e| e.min));
        thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = agent.stop();
    assert!(status.success(), "agent exit: {status:?}");
    assert!(
        !seen.is_empty(),
        "no kernel minimum was ever seen for the tides process"
    );
    let lowest = seen.iter().min().unwrap() * 4096;
    // The base: 32 MiB plus the program's own few hundred KiB (a few MiB on some kernels: 34.0 MiB
    // on Debian's 6.12 under TCG), as for the floor in the record below.
    assert!(
        (BASE - MIB..=BASE + 4 * MIB).contains(&lowest),
        "kernel minimum {} is not the base {}",
        mib(lowest),
        mib(BASE)
    );

    // The tides process: at every tick the end reading jumps with the tide, the floor stays at
    // the base it returns to several times a second.
    let tide_rows = rows(&record, tides.pid());
    let ticks: Vec<&Row> = tide_rows.iter().filter(|r| r.tick && r.t > 1.5).collect();
    let all = show(&tide_rows);
    assert!(
        ticks.len() >= 8,
        "only {} tick rows for the tides process:\n{all}",
        ticks.len()
    );
    for r in &ticks {
        let f = r.floor.unwrap_or_else(|| panic!("tick row without a floor:\n{all}"));
        assert!(f <= r.footprint, "floor above the end reading:\n{all}");
    }
    // The base: 32 MiB plus the program's own few hundred KiB (a few MiB on some kernels).
    let base = ticks.iter().filter_map(|r| r.floor).min().unwrap();
    assert!(
        (BASE - MIB..=BASE + 4 * MIB).contains(&base),
        "lowest floor {} is not the base:\n{all}",
        mib(base)
    );
    // Natively every interval holds several troughs; under emulation (TCG) one tide can take most
    // of a second to allocate, so some intervals hold none.
    let at_base = ticks
        .iter()
        .filter(|r| r.floor.is_some_and(|f| f <= base + MIB))
        .count();
    assert!(
        at_base * 3 >= ticks.len() * 2,
        "the floor should stay at the base {} ({at_base} of {} intervals):\n{all}",
        mib(base),
        ticks.len()
    );
    // The floor saw what the end reading missed: intervals that ended high in the tide while
    // their floor is the base. How many depends on the reading's phase in the tide, which drifts
    // slowly against the interval (runs of low readings follow each other), and on the host's
    // load (a starved process sits at its base): 3 to 10 of 11 were seen here (3 in CI, right
    // after the busy-host test), so two is the bar. An end-of-interval reading passed off as the
    // floor has none.
    let missed = ticks
        .iter()
        .filter(|r| r.floor.is_some_and(|f| f <= base + MIB && r.footprint >= f + TIDE / 3))
        .count();
    eprintln!(
        "floor: base in {missed} of {} intervals that ended high in the tide",
        ticks.len()
    );
    assert!(
        missed >= 2,
        "the floor should be the base in intervals that ended high in the tide ({missed} of {}):\n{all}",
        ticks.len()
    );
    assert!(
        tide_rows.iter().filter(|r| !r.tick).all(|r| r.floor.is_none()),
        "a reading between ticks covers no interval: no floor\n{all}"
    );

    // The flat process: read when first seen, then only when the kernel marks a change or at the
    // round-robin refresh (every 300 s on a quiet host: issue 16), so a 12 s run may hold no tick
    // row for it; any it has carries its footprint as its floor.
    let flat_rows = rows(&record, flat.pid());
    assert!(!flat_rows.is_empty(), "the flat process was never read");
    assert!(
        flat_rows.iter().all(|r| r.footprint >= 40 * MIB),
        "{}",
        show(&flat_rows)
    );
    for r in flat_rows.iter().filter(|r| r.tick) {
        assert_eq!(r.floor, Some(r.footprint), "flat process:\n{}", show(&flat_rows));
        assert!(r.footprint >= 40 * MIB, "{}", show(&flat_rows));
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn floor_fallback_is_null_and_said() {
    if !bpf_available("floor_fallback_is_null_and_said") {
        return;
    }
    let (code, out, _) = run_agent(&["doctor"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("rss_floor") && l.contains("mm_struct.rss_stat@")),
        "doctor should find the counters in BTF:\n{out}"
    );
    let (code, out, _) = run_agent(&["doctor", "--pretend-missing", "rss_floor"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("fallback") && l.contains("rss_floor") && l.contains("floor stays null")),
        "{out}"
    );

    let dir = tempdir("floor-fallback");
    fs::create_dir_all(&dir).unwrap();
    let record = format!("{dir}/floor.jsonl");
    let life = (scaled(Duration::from_secs(6)).as_secs() + 60).to_string();
    let tides = Work::start(&["tides", "32", "24", "120", "30", &life]);
    let pt = tides.pid().to_string();
    let agent = Agent::start(
        &[
            "run",
            "--json",
            "--report-dir",
            &dir,
            "--record",
            &record,
            "--pid",
            &pt,
            "--pretend-missing",
            "rss_floor",
        ],
        "leaktrace: running",
    );
    // The path taken: the raw tracepoint marks changes, nothing measures a floor, and RSS_FLOOR
    // was shrunk to one entry it never uses.
    let loaded = programs_of(agent.pid());
    let has = |n: &str| loaded.iter().any(|p| p == n);
    assert!(
        has("rss_stat") && !has("rss_stat_floor"),
        "the raw tracepoint should be attached, not rss_stat_floor: {loaded:?}"
    );
    let (_, size) = map_by_name("RSS_FLOOR", agent.pid());
    assert_eq!(size, 1, "RSS_FLOOR should be shrunk when the floor is off");
    let start = Instant::now();
    let mut slots_seen = 0;
    while start.elapsed() < scaled(Duration::from_secs(5)) {
        let (slots, entries) = kernel_state(tides.pid(), agent.pid());
        // The raw program only marks: it never writes a slot's mm or minimum (zero-initialised).
        assert!(
            slots.iter().all(|s| s.min == 0 && s.mm == 0) && entries.is_empty(),
            "a floor was measured anyway: {slots:?} {entries:?}"
        );
        slots_seen += slots.len();
        thread::sleep(Duration::from_millis(100));
    }
    assert!(slots_seen > 0, "the raw tracepoint never marked the tides process");
    let (status, _) = agent.stop();
    assert!(status.success(), "agent exit: {status:?}");
    let rs = rows(&record, tides.pid());
    assert!(rs.iter().filter(|r| r.tick).count() >= 3, "{}", show(&rs));
    assert!(
        rs.iter().all(|r| r.floor.is_none()),
        "floor must stay null:\n{}",
        show(&rs)
    );
    let _ = fs::remove_dir_all(&dir);
}
