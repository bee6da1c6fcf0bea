//! The contract: one example of every event, its JSON keys checked against README.md's table
//! (regenerate it with `LEAKTRACE_BLESS=1 cargo test readme_lists_every_event`), and its text form.
use std::fmt;

use serde::de::{IgnoredAny, MapAccess, Visitor};

use super::*;
use crate::{
    analysis::score::{LifeScore, Summary},
    events::{Header, KernelEvent, OomKill as KOom, Payload},
    report::render::tests::sample as sample_report,
};

/// A JVM's collector after one young collection.
fn jvm_gc() -> crate::state::gc::GcFigures {
    use crate::{
        input::Runtime,
        state::gc::{self, GcConfig, GcTracker},
    };
    let mut tr = GcTracker::new(GcConfig::default(), 0);
    tr.add(10, Runtime::Jvm);
    gc::young_collection(&mut tr, 10);
    tr.tick(1.0);
    tr.figures(10).unwrap()
}

fn heap_diff() -> HistogramDiff {
    HistogramDiff {
        secs: 30.0,
        growth_bytes: 2 << 20,
        classes: vec![crate::runtimes::histogram::ClassGrowth {
            name: "LeakedOrderDto".into(),
            module: None,
            growth_bytes: 2_167_200,
            growth_instances: 30_100,
            bytes: 3_585_600,
            instances: 49_800,
        }],
        suspect: Some("LeakedOrderDto".into()),
    }
}

fn subject() -> Subject {
    Subject {
        ts_ns: 5,
        pid: 10,
        comm: "a".into(),
        t: 12.5,
    }
}

fn verdict() -> VerdictFields {
    VerdictFields {
        pattern: Pattern::Mountain,
        leak: true,
        confidence: 0.9,
        growth_bytes_per_sec: 2048.0,
    }
}

fn kernel(payload: Payload) -> KernelEvent {
    KernelEvent {
        hdr: Header {
            kind: leaktrace_common::EventKind::Mmap,
            cpu: 0,
            ts_ns: 5,
            pid: 10,
            tid: 11,
            comm: "a".into(),
        },
        payload,
    }
}

fn kill() -> KOom {
    KOom {
        victim_pid: 77,
        victim_comm: Some("hog".into()),
        total_vm_kb: Some(10),
        anon_rss_kb: Some(65536),
        file_rss_kb: None,
        shmem_rss_kb: Some(0),
        uid: Some(0),
        pgtables_kb: Some(4),
        oom_score_adj: Some(0),
        filled_from: Vec::new(),
    }
}

/// One event of every kind (two for `oom_kill`: from `trace`, and from `run` with its context).
pub fn examples() -> Vec<Event> {
    let report = sample_report();
    let context = KillContext {
        memcg: Some("/box".into()),
        container: None,
        binding_limit: "memcg".into(),
        binding_memcg: Some("/box".into()),
        oom_group: None,
        predicted: true,
        lead_time_secs: Some(12.0),
        flagged: true,
        report: Some("/var/lib/leaktrace/reports/oom-1-77.json".into()),
        full: Box::new(report.clone()),
    };
    vec![
        Event::from_kernel(&kernel(Payload::Mmap {
            addr: 0,
            len: 7 << 20,
            prot: 3,
            flags: 0x22,
            fd: -1,
            off: 0,
            ret: 0x1000,
        })),
        Event::from_kernel(&kernel(Payload::Munmap {
            addr: 0x1000,
            len: 4096,
            ret: 0,
        })),
        Event::from_kernel(&kernel(Payload::Brk {
            requested: 0x6000,
            old_brk: Some(0x5000),
            new_brk: 0x6000,
        })),
        Event::from_kernel(&kernel(Payload::Mremap {
            old_addr: 0x1000,
            old_len: 4096,
            new_len: 8192,
            flags: 1,
            new_addr: 0,
            ret: 0x2000,
        })),
        Event::from_kernel(&kernel(Payload::Fork { child_pid: 12 })),
        Event::from_kernel(&kernel(Payload::Exec {
            old_pid: 10,
            filename: "/bin/true".into(),
            args: vec!["true".into()],
            args_cut: false,
        })),
        Event::from_kernel(&kernel(Payload::Exit { exit_code: Some(3) })),
        Event::from_kernel(&kernel(Payload::OomKill(kill()))),
        Event::oom_kill(&kernel(Payload::OomKill(kill())), &kill(), Some(Box::new(context))),
        Event::dropped(5, "mmap", 3),
        Event::LeakSuspected {
            subject: subject(),
            rss_bytes: 100 << 20,
            footprint_bytes: 90 << 20,
            anon_bytes: 90 << 20,
            swap_bytes: 0,
            samples: 40,
            observed_secs: 40.0,
            verdict: verdict(),
            placement: Placement::of(Some("/box")),
            evidence: Evidence {
                growth_secs: 48.0,
                floor_growth_bytes: 96.0 * 1024.0 * 1024.0,
                confirmed_secs: 15.0,
                cpu_share: Some(0.05),
                significance: 0.01,
            },
            signs: vec!["heap_floor"],
            gc: Some(Box::new(jvm_gc())),
            work: Some(work()),
        },
        Event::LeakCleared {
            subject: subject(),
            reason: "exited".into(),
            rss_bytes: 100 << 20,
            footprint_bytes: 90 << 20,
            flagged_secs: Some(30.0),
            verdict: Some(verdict()),
        },
        Event::OomPredicted {
            subject: subject(),
            eta_secs: 42.0,
            limit: LimitKind::Memcg,
            limit_bytes: 512 << 20,
            growth_bytes_per_sec: 2048.0,
            footprint_bytes: 90 << 20,
            rss_bytes: 100 << 20,
            placement: Placement::of(Some("/box")),
            limit_memcg: Some("/box".into()),
        },
        Event::OomSnapshot {
            subject: subject(),
            eta_secs: 20.0,
            limit: "memcg".into(),
            path: Some("/var/lib/leaktrace/reports/snapshot-1-10.json".into()),
            snapshot: Box::new(report.snapshot.clone().expect("the sample report has a snapshot")),
        },
        Event::Sample {
            subject: subject(),
            t_secs: 12.5,
            processes: 2,
            rss_bytes: 100 << 20,
            footprint_bytes: 90 << 20,
            verdict: verdict(),
        },
        Event::Verdict {
            pid: 10,
            comm: "a".into(),
            start_rss_bytes: 1 << 20,
            end_rss_bytes: 100 << 20,
            peak_rss_bytes: 100 << 20,
            samples: 40,
            duration_secs: 40.0,
            command_exit_code: Some(0),
            verdict: verdict(),
            sites: Some(VerdictSites {
                top_sites: vec![Site {
                    bytes: 1 << 20,
                    frames: vec!["leak_here".into(), "main".into()],
                    events: 4,
                }],
                unattributed_bytes: 0,
                stack_collisions: 0,
            }),
            signs: vec!["rss_floor"],
            gc_pid: Some(10),
            gc: Some(Box::new(jvm_gc())),
            java_oom: Some(JavaOom {
                seen: OomSeen::Stderr,
                error: Some("Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space".into()),
                exit_code: None,
            }),
            work: Some(work()),
        },
        Event::JavaOom {
            subject: subject(),
            seen: OomSeen::Exit,
            error: None,
            predicted: true,
            lead_time_secs: Some(12.0),
            flagged: true,
            old_gen: jvm_gc().old_gen,
            heap_floor: None,
            footprint_bytes: 90 << 20,
            rss_bytes: 100 << 20,
            placement: Placement::of(Some("/box")),
            report: Some("/var/lib/leaktrace/reports/oom-1-10.json".into()),
            full: None,
        },
        Event::HeapHistogram {
            subject: subject(),
            reason: Some(SnapshotReason::OomPredicted),
            total_bytes: 3 << 20,
            total_instances: 50_000,
            classes: vec![ClassEntry {
                name: "LeakedOrderDto".into(),
                module: None,
                instances: 49_800,
                bytes: 3_585_600,
            }],
            diff: Some(heap_diff()),
            error: None,
        },
        Event::HeapDiff {
            subject: subject(),
            before_bytes: 1 << 20,
            after_bytes: 3 << 20,
            diff: heap_diff(),
        },
        Event::Sites(Box::new(SitesTable {
            ts_ns: 5,
            pid: 10,
            comm: "a".into(),
            mode: "growth".into(),
            fault_sample: 64,
            duration_secs: 30.0,
            sites: vec![Row {
                bytes: 1 << 20,
                grown_bytes: 0,
                fault_bytes: 1 << 20,
                events: 4,
                unattributed: false,
                frames: vec!["leak_here".into(), "main".into()],
            }],
            unattributed_bytes: 0,
            counters: crate::sites::Counters {
                fault_samples: 4,
                stack_copies: 4,
                ..Default::default()
            },
            unwind: Default::default(),
            folded: None,
        })),
        Event::Scored(Box::new(LifeScore {
            pid: 10,
            start: 100,
            comm: "a".into(),
            leak: true,
            what: "2 MiB/s".into(),
            observed_secs: 60.0,
            flag_secs: Some(17.0),
            flag_within: Some(60.0),
            alarms: 1,
            re_alarms: 0,
            oom_predictions: 0,
            outcome: "ok",
        })),
        Event::Score(Summary::default()),
        Event::MemcgPressure {
            ts_ns: 5,
            memcg: "/box".into(),
            usage_bytes: Some(40 << 20),
            high_bytes: Some(32 << 20),
            limit_bytes: Some(64 << 20),
            high_events: 12,
            max_events: 0,
            psi_some_avg10: Some(35.5),
            psi_full_avg10: Some(20.0),
            t: 12.5,
        },
        Event::SeriesVerdict(Box::new(SeriesVerdict {
            labels: [
                ("__name__", "namedprocess_namegroup_memory_bytes"),
                ("groupname", "leak"),
                ("instance", "web-1:9256"),
                ("memtype", "resident"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            lives: 2,
            points: 1200,
            from: Some("2026-01-01T00:00:00Z".into()),
            to: Some("2026-01-01T00:19:59Z".into()),
            pattern: Pattern::Mountain,
            leak: true,
            confidence: 0.97,
            growth_bytes_per_sec: 81920.0,
            flagged_at: Some("2026-01-01T00:13:10Z".into()),
            still_flagged: true,
            alarms: 1,
            last_bytes: 60 << 20,
            peak_bytes: 90 << 20,
            limit_bytes: Some(512 << 20),
            eta_secs: Some(5800.0),
        })),
        Event::SeriesSummary(SeriesSummary {
            series: 5,
            lives: 6,
            points: 6000,
            leaks: 1,
            step_secs: 1.0,
            from: "2026-01-01T00:00:00Z".into(),
            to: "2026-01-01T00:19:59Z".into(),
            queries: 1,
        }),
    ]
    .into_iter()
    .chain(resource_examples())
    .collect()
}

fn work() -> crate::analysis::work::WorkFields {
    crate::analysis::work::WorkFields {
        cpu_secs_per_sec: Some(0.25),
        bytes_per_cpu_sec: Some(8192.0),
        work_per_sec: Some(20.0),
        bytes_per_work: Some(102.0),
    }
}

/// Issue 14's events.
fn resource_examples() -> Vec<Event> {
    use crate::{
        analysis::{
            resources::LeakKind,
            runs::{RunStat, RunsVerdict},
        },
        output::resources::*,
        sys::fds::{FdCounts, FdKind},
    };
    let mut kinds = FdCounts::default();
    for _ in 0..3 {
        kinds.add(FdKind::Pipe);
    }
    kinds.add(FdKind::Socket);
    vec![
        Event::ResourceLeakSuspected(Box::new(ResourceLeak {
            subject: subject(),
            kind: LeakKind::FdLeak,
            pattern: Pattern::Mountain,
            confidence: 0.93,
            open_fds: Some(4),
            fd_growth_per_sec: Some(80.0),
            fds_by_kind: Some(kinds),
            fd_kind_growth_per_sec: [("pipe", 80.0)].into_iter().collect(),
            fd_limit: Some(1024),
            kernel_bytes: Some(12 << 20),
            kernel_growth_bytes_per_sec: Some(327_680.0),
            kernel_includes_reclaimable: true,
            sock_bytes: None,
            slab_unreclaimable_attributed_bytes_per_sec: Some(81_920.0),
            rss_bytes: 10 << 20,
            footprint_bytes: 8 << 20,
            placement: Placement::of(Some("/box")),
        })),
        Event::ResourceLeakCleared(Box::new(ResourceCleared {
            subject: subject(),
            kind: LeakKind::FdLeak,
            reason: "released".into(),
            open_fds: Some(12),
            kernel_bytes: None,
            flagged_secs: Some(30.0),
        })),
        Event::FdExhaustionPredicted(Box::new(FdExhaustion {
            subject: subject(),
            eta_secs: 12.5,
            open_fds: 1000,
            fd_limit: 1024,
            fd_growth_per_sec: 2.0,
            placement: Placement::of(None),
        })),
        Event::HostLeakSuspected(Box::new(HostLeak {
            ts_ns: 5,
            part: "tmpfs",
            name: Some("/dev/shm".into()),
            bytes: 100 << 20,
            growth_bytes_per_sec: 2097152.0,
            pattern: Pattern::Mountain,
            confidence: 0.9,
            mem_total_bytes: 8 << 30,
            mem_available_bytes: 6 << 30,
            pinned_by: vec![Pinner {
                pid: 10,
                comm: "a".into(),
                open_fds: Some(400),
                fd_growth_per_sec: 80.0,
                kernel_bytes: None,
            }],
            t: 12.5,
        })),
        Event::HostLeakCleared(Box::new(HostCleared {
            ts_ns: 5,
            part: "tmpfs",
            name: Some("/dev/shm".into()),
            reason: "released".into(),
            bytes: 0,
            flagged_secs: Some(20.0),
            t: 12.5,
        })),
        Event::Runs(Box::new(Runs {
            command: vec!["./job".into()],
            runs: vec![RunStat {
                run: 1,
                pid: 10,
                peak_bytes: 40 << 20,
                retained_bytes: 30 << 20,
                samples: 10,
                duration_secs: 5.0,
                exit_code: Some(0),
            }],
            verdict: RunsVerdict {
                growing: false,
                peak_growth_per_run_bytes: 0.0,
                retained_growth_per_run_bytes: 0.0,
            },
        })),
        Event::Host(Box::new(HostReport {
            ts_ns: 5,
            mem_total_bytes: 8 << 30,
            mem_available_bytes: 6 << 30,
            parts: vec![PartBytes {
                part: "page_cache",
                bytes: 1 << 30,
            }],
            tmpfs: vec![Named {
                name: "/dev/shm".into(),
                bytes: 1 << 20,
                reclaimable: None,
            }],
            slabs: vec![Named {
                name: "dentry".into(),
                bytes: 1 << 20,
                reclaimable: Some(true),
            }],
            files: vec![],
            swap_used_ratio: None,
            oom_kills: Some(0),
        })),
    ]
}

/// Compile-time proof that [`examples`] covers every variant: a new variant fails to compile here.
fn slot(e: &Event) -> usize {
    match e {
        Event::Mmap { .. } => 0,
        Event::Munmap { .. } => 1,
        Event::Brk { .. } => 2,
        Event::Mremap { .. } => 3,
        Event::Fork { .. } => 4,
        Event::Exec { .. } => 5,
        Event::Exit { .. } => 6,
        Event::OomKill { .. } => 7,
        Event::Dropped { .. } => 8,
        Event::LeakSuspected { .. } => 9,
        Event::LeakCleared { .. } => 10,
        Event::OomPredicted { .. } => 11,
        Event::OomSnapshot { .. } => 12,
        Event::Sample { .. } => 13,
        Event::Verdict { .. } => 14,
        Event::JavaOom { .. } => 26,
        Event::HeapHistogram { .. } => 27,
        Event::HeapDiff { .. } => 28,
        Event::Sites(_) => 15,
        Event::Scored(_) => 16,
        Event::Score(_) => 17,
        Event::MemcgPressure { .. } => 18,
        Event::ResourceLeakSuspected(_) => 19,
        Event::ResourceLeakCleared(_) => 20,
        Event::FdExhaustionPredicted(_) => 21,
        Event::HostLeakSuspected(_) => 22,
        Event::HostLeakCleared(_) => 23,
        Event::Runs(_) => 24,
        Event::Host(_) => 25,
        Event::SeriesVerdict(_) => 29,
        Event::SeriesSummary(_) => 30,
    }
}
const VARIANTS: usize = 31;

/// The top-level keys of a JSON object, in order.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, IgnoredAny)) = m.next_entry::<String, IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// README.md's table of events and their keys, as the code serialises them.
fn contract_table() -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for e in examples() {
        let Keys(keys) = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(keys[0], "event", "the tag comes first");
        let name: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        let name = name["event"].as_str().unwrap().to_string();
        let keys: Vec<String> = keys.into_iter().skip(1).collect();
        match rows.iter_mut().find(|(n, _)| *n == name) {
            // `oom_kill` from `run`: the keys `trace` has, then the agent's.
            Some((_, have)) => {
                let extra: Vec<String> = keys.into_iter().filter(|k| !have.contains(k)).collect();
                have.push(format!("run adds: {}", extra.join(", ")));
            }
            None => rows.push((name, keys)),
        }
    }
    let mut s = String::from("| `event` | keys, in order |\n| --- | --- |\n");
    for (name, keys) in rows {
        let keys: Vec<String> = keys
            .iter()
            .map(|k| match k.strip_prefix("run adds: ") {
                Some(rest) => format!(
                    "with `run`: {}",
                    rest.split(", ")
                        .map(|x| format!("`{x}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("`{k}`"),
            })
            .collect();
        s.push_str(&format!("| `{name}` | {} |\n", keys.join(", ")));
    }
    s
}

const BEGIN: &str = "<!-- json-contract:begin (generated from output::Event by a test) -->\n";
const END: &str = "<!-- json-contract:end -->";

#[test]
fn every_variant_has_an_example() {
    let mut seen = [false; VARIANTS];
    for e in examples() {
        seen[slot(&e)] = true;
    }
    assert!(seen.iter().all(|s| *s), "{seen:?}");
}

#[test]
fn readme_lists_every_event() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md has no json-contract markers")
    };
    let table = contract_table();
    let current = &readme[b + BEGIN.len()..e];
    if current != table {
        if std::env::var_os("LEAKTRACE_BLESS").is_some() {
            let new = format!("{}{table}{}", &readme[..b + BEGIN.len()], &readme[e..]);
            std::fs::write(path, new).unwrap();
        } else {
            panic!(
                "README.md's event table is out of date (LEAKTRACE_BLESS=1 cargo test readme_lists_every_event):\n{table}"
            );
        }
    }
}

#[test]
fn json_values() {
    let v: Vec<serde_json::Value> = examples()
        .iter()
        .map(|e| serde_json::from_str(&e.json()).unwrap())
        .collect();
    let mmap = &v[0];
    assert_eq!(
        (mmap["addr"].as_u64(), mmap["ok"].as_bool()),
        (Some(0x1000), Some(true))
    );
    assert_eq!(mmap["errno"], serde_json::Value::Null);
    let failed = Event::from_kernel(&kernel(Payload::Mmap {
        addr: 0x7000,
        len: 1,
        prot: 3,
        flags: 0x22,
        fd: -1,
        off: 0,
        ret: -12,
    }));
    let f: serde_json::Value = serde_json::from_str(&failed.json()).unwrap();
    assert_eq!(
        (f["ok"].as_bool(), f["errno"].as_i64(), f["addr"].as_u64()),
        (Some(false), Some(12), Some(0x7000))
    );
    let oom = &v[7];
    assert_eq!((oom["pid"].as_u64(), oom["comm"].as_str()), (Some(77), Some("hog")));
    assert_eq!(oom["anon_rss_bytes"], 64 << 20);
    assert_eq!(oom["file_rss_bytes"], serde_json::Value::Null);
    assert_eq!(
        (oom["trigger_pid"].as_u64(), oom.get("binding_limit")),
        (Some(10), None)
    );
    let run_oom = &v[8];
    assert_eq!(run_oom["binding_limit"], "memcg");
    assert_eq!(run_oom["report"], "/var/lib/leaktrace/reports/oom-1-77.json");
    assert!(run_oom.get("full").is_none(), "the whole report stays out of the line");
    assert_eq!(v[10]["memcg"], "/box");
    assert_eq!(v[10]["pattern"], "mountain");
    assert_eq!(v[12]["limit"], "memcg");
}

#[test]
fn text_forms() {
    let texts: Vec<String> = examples().iter().map(Event::text).collect();
    for (t, e) in texts.iter().zip(examples()) {
        assert!(!t.trim().is_empty(), "{e:?}");
    }
    assert!(
        texts[0].contains("mmap") && texts[0].contains("7.0 MiB"),
        "{}",
        texts[0]
    );
    assert!(
        texts[7].contains("OOM-KILLED") && texts[7].contains("hog"),
        "{}",
        texts[7]
    );
    assert!(
        texts[8].contains("report: /var/lib/leaktrace/reports/oom-1-77.json"),
        "{}",
        texts[8]
    );
    assert!(
        texts[10].starts_with("[   12.5s] LEAK SUSPECTED pid 10 (a)"),
        "{}",
        texts[10]
    );
    assert!(
        texts[12].contains("memcg limit 512.0 MiB reached in ~42s"),
        "{}",
        texts[12]
    );
    assert!(
        texts[15].contains("verdict: LEAK") && texts[15].contains("leak_here ← main"),
        "{}",
        texts[15]
    );
    assert!(
        texts[15].contains("signs: rss_floor") && texts[15].contains("Java OutOfMemoryError"),
        "{}",
        texts[15]
    );
    assert!(
        texts[10].contains("signs: heap_floor") && texts[10].contains("G1 Old Gen"),
        "{}",
        texts[10]
    );
    assert!(
        texts[16].contains("JAVA OOM") && texts[16].contains("report: /var/lib/leaktrace/reports/oom-1-10.json"),
        "{}",
        texts[16]
    );
    assert!(texts[17].contains("LeakedOrderDto +2.1 MiB"), "{}", texts[17]);
    assert!(
        texts[18].contains("+2.1 MiB") && texts[18].contains("LeakedOrderDto"),
        "{}",
        texts[18]
    );
    assert!(
        texts[19].contains("leak_here") && texts[19].contains("fault samples: 4"),
        "{}",
        texts[19]
    );
    let series = examples()
        .iter()
        .position(|e| matches!(e, Event::SeriesVerdict(_)))
        .unwrap();
    assert_eq!(
        texts[series],
        "LEAK  mountain 0.97   +80.0 KiB/s  now 60.0 MiB, peak 90.0 MiB  flagged 2026-01-01 00:13:10 UTC (still)  \
         limit 512.0 MiB reached in ~96m  2 lives  \
         namedprocess_namegroup_memory_bytes{groupname=\"leak\", instance=\"web-1:9256\", memtype=\"resident\"}"
    );
    assert_eq!(
        texts[series + 1],
        "5 series (6 lives, 6000 values at a 1s step, 2026-01-01 00:00:00 UTC → 2026-01-01 00:19:59 UTC, 1 query): 1 leak flagged"
    );
}
