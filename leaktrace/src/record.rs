//! The labelled corpus (`corpus/*.jsonl.gz`) seen life by life: [`lives`] rebuilds, from a record
//! read by [`crate::input::read_record`], one timeline per process life (pid, start ticks) with
//! the values the live agent holds at every tick (a life without a reading in a tick keeps its
//! last values). For the corpus tests, the baseline of the classifier, and tuning.
//!
//! Pure: no dependency on the monitor or the probes.

use std::collections::{HashMap, HashSet};

use crate::input::{Identity, Label, Record};

/// One life: (pid, start time in clock ticks since boot).
pub type LifeKey = (u32, u64);

/// One sample of a life's timeline, at a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifeSample {
    /// Seconds since the recording started.
    pub t: f64,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
    /// The lowest footprint of the interval when the record knows it (at most the footprint);
    /// the footprint itself otherwise, and when the values were carried forward.
    pub floor: u64,
    /// The values were read this tick (false: carried forward).
    pub observed: bool,
}

impl LifeSample {
    /// anon + shmem + swap: what the agent judges.
    pub fn footprint(&self) -> u64 {
        self.anon.saturating_add(self.shmem).saturating_add(self.swap)
    }
}

/// The timeline of one life: one sample per tick from its first reading to its exit (or the end
/// of the record).
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub key: LifeKey,
    /// The latest identity (after an exec, the new one); None if the record never gave one.
    pub identity: Option<Identity>,
    pub samples: Vec<LifeSample>,
    /// The record saw it exit.
    pub exited: bool,
}

impl Life {
    pub fn comm(&self) -> &str {
        self.identity.as_ref().map_or("?", |i| i.comm.as_str())
    }
}

/// The label of a life, if it has one.
pub fn label(rec: &Record, key: LifeKey) -> Option<&Label> {
    rec.labels.iter().find(|l| (l.pid, l.start) == key)
}

/// Whether a life leaks: its label, else the header's `default_leak`.
pub fn is_leak(rec: &Record, key: LifeKey) -> bool {
    label(rec, key).map_or(rec.header.default_leak, |l| l.leak)
}

/// Every life of the record, in order of first appearance. A life is tracked from its `new`
/// entry or first reading; it gets a sample at every tick (`tick: true` batch) until the batch
/// that reports its exit (a reading in that batch is kept; one between ticks updates the values
/// the next tick shows).
pub fn lives(rec: &Record) -> Vec<Life> {
    struct Acc {
        life: Life,
        cur: Option<LifeSample>,
        open: bool,
        read_since_tick: bool,
    }
    fn entry<'a>(acc: &'a mut HashMap<LifeKey, Acc>, order: &mut Vec<LifeKey>, key: LifeKey) -> &'a mut Acc {
        acc.entry(key).or_insert_with(|| {
            order.push(key);
            Acc {
                life: Life {
                    key,
                    identity: None,
                    samples: Vec::new(),
                    exited: false,
                },
                cur: None,
                open: true,
                read_since_tick: false,
            }
        })
    }
    let mut order: Vec<LifeKey> = Vec::new();
    let mut acc: HashMap<LifeKey, Acc> = HashMap::new();
    for b in &rec.batches {
        for id in &b.new {
            entry(&mut acc, &mut order, (id.pid, id.start)).life.identity = Some(id.clone());
        }
        for o in &b.obs {
            let a = entry(&mut acc, &mut order, o.key());
            let fp = o.2.saturating_add(o.4).saturating_add(o.5);
            // Two readings in one interval (between ticks, then at the tick): the lower floor.
            let floor = o.6.unwrap_or(fp).min(fp);
            let floor = match a.cur {
                Some(c) if a.read_since_tick => floor.min(c.floor),
                _ => floor,
            };
            a.cur = Some(LifeSample {
                t: b.t,
                anon: o.2,
                file: o.3,
                shmem: o.4,
                swap: o.5,
                floor,
                observed: true,
            });
            a.read_since_tick = true;
        }
        let exited: HashSet<LifeKey> = b.exit.iter().copied().collect();
        if b.tick {
            for a in acc.values_mut().filter(|a| a.open) {
                if let Some(c) = a.cur {
                    let s = if a.read_since_tick {
                        LifeSample { t: b.t, ..c }
                    } else {
                        LifeSample {
                            t: b.t,
                            floor: c.footprint(),
                            observed: false,
                            ..c
                        }
                    };
                    a.life.samples.push(s);
                }
                a.read_since_tick = false;
            }
        }
        for k in &exited {
            if let Some(a) = acc.get_mut(k) {
                a.open = false;
                a.life.exited = true;
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| acc.remove(&k).map(|a| a.life))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, path::Path};

    use super::*;
    use crate::input::read_record;

    const MIB: u64 = 1 << 20;

    fn header() -> String {
        r#"{"leaktrace_record":1,"interval_secs":1.0,"source":"test","kernel":"6.1","host":{"mem_total":1000,"swap_total":0},"started_unix_ms":5,"default_leak":false,"note":"n"}"#
            .to_string()
    }

    fn sample_text() -> String {
        [
            header(),
            r#"{"t":1.0,"host":{"avail":900,"swap_free":0},"new":[{"pid":7,"start":100,"ppid":1,"comm":"sh","cmdline":["sh"],"memcg":"/a","limit":null}],"obs":[[7,100,1048576,4096,0,0,524288]]}"#.into(),
            r#"{"t":2.0}"#.into(),
            r#"{"t":3.0,"new":[{"pid":7,"start":100,"ppid":1,"comm":"java","cmdline":["java","X"],"memcg":"/a","limit":268435456}],"obs":[[7,100,3145728,0,1048576,0,null],[8,200,4096,0,0,0,4096]]}"#.into(),
            r#"{"label":{"pid":7,"start":100,"leak":true,"what":"w","rate":1024,"flag_within":60}}"#.into(),
            r#"{"t":3.5,"tick":false,"obs":[[8,200,65536,0,0,0,null]],"new":[{"pid":9,"start":300,"comm":"x"}],"exit":[[8,200]]}"#.into(),
            r#"{"t":4.0,"obs":[[9,300,8192,0,0,0,4096]]}"#.into(),
            r#"{"t":5.0,"obs":[[8,200,1,0,0,0,1]]}"#.into(),
        ]
        .join("\n")
            + "\n"
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("leaktrace-corpus-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lives_carry_values_forward_and_end_at_exit() {
        let dir = tmpdir("lives");
        let r = read_record(&write(&dir, "r.jsonl", sample_text().as_bytes())).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(is_leak(&r, (7, 100)));
        assert!(!is_leak(&r, (8, 200)));
        assert_eq!(label(&r, (7, 100)).unwrap().flag_within, Some(60.0));

        let lives = lives(&r);
        let keys: Vec<LifeKey> = lives.iter().map(|l| l.key).collect();
        assert_eq!(keys, [(7, 100), (8, 200), (9, 300)]);
        let a = &lives[0];
        // The identity after exec replaces the first one.
        assert_eq!(a.comm(), "java");
        assert_eq!(a.identity.as_ref().unwrap().limit, Some(256 * MIB));
        // One sample per tick (t = 3.5 is not a tick); t = 2 and 4 carried forward.
        let t: Vec<f64> = a.samples.iter().map(|s| s.t).collect();
        assert_eq!(t, [1.0, 2.0, 3.0, 4.0, 5.0]);
        let fp: Vec<u64> = a.samples.iter().map(LifeSample::footprint).collect();
        assert_eq!(fp, [MIB, MIB, 4 * MIB, 4 * MIB, 4 * MIB]);
        let fl: Vec<u64> = a.samples.iter().map(|s| s.floor).collect();
        assert_eq!(fl, [MIB / 2, MIB, 4 * MIB, 4 * MIB, 4 * MIB]);
        assert!(a.samples[0].observed && !a.samples[1].observed);
        assert!(!a.exited);
        // Life 8: no identity; exits between ticks, so its last sample is the tick at t = 3.
        let b = &lives[1];
        assert_eq!((b.comm(), b.exited, b.samples.len()), ("?", true, 1));
        assert_eq!(b.samples[0].footprint(), 4096);
        // Life 9: known from t = 3.5, read from the tick at t = 4.
        let c = &lives[2];
        let t: Vec<f64> = c.samples.iter().map(|s| s.t).collect();
        assert_eq!((c.comm(), t), ("x", vec![4.0, 5.0]));
        assert_eq!(c.samples[0].floor, 4096);
    }

    #[test]
    fn labels_appended_as_a_second_gzip_member_are_read() {
        // `record.py --recorder leaktrace` appends the labels to the agent's .gz record.
        let dir = tmpdir("gz");
        let text = sample_text();
        let (body, labels): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| !l.contains("\"label\""));
        let mut bytes = Vec::new();
        for part in [body.join("\n") + "\n", labels.join("\n") + "\n"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(part.as_bytes()).unwrap();
            bytes.extend(e.finish().unwrap());
        }
        let plain = read_record(&write(&dir, "r.jsonl", text.as_bytes())).unwrap();
        let gz = read_record(&write(&dir, "r.jsonl.gz", &bytes)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(plain.batches, gz.batches);
        assert_eq!(plain.labels, gz.labels);
        assert_eq!(gz.labels.len(), 1);
        assert_eq!(lives(&plain), lives(&gz));
    }

    // ---- the corpus (corpus/*.jsonl.gz at the repository root) ---------------------------------

    fn corpus_files() -> Vec<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
            .collect();
        v.sort();
        v
    }

    /// Seconds from which a labelled leak leaks in this life.
    fn leak_start(l: &Label, life: &Life) -> f64 {
        let first = life.samples.first().map_or(0.0, |s| s.t);
        l.leak_starts.map_or(first, |s| s.max(first))
    }

    /// Lowest interval floor among the samples with `a <= t < b`.
    fn floor_min(life: &Life, a: f64, b: f64) -> Option<u64> {
        life.samples
            .iter()
            .filter(|s| s.t >= a && s.t < b)
            .map(|s| s.floor)
            .min()
    }

    #[test]
    fn corpus_labels_name_lives_and_leaks_grow() {
        const W: f64 = 15.0;
        let files = corpus_files();
        assert!(!files.is_empty(), "no corpus files");
        let mut leaks = 0;
        for f in &files {
            let r = read_record(f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy();
            assert!(!r.labels.is_empty(), "{name}: no labels");
            assert!(!r.header.default_leak, "{name}");
            let lives: HashMap<LifeKey, Life> = lives(&r).into_iter().map(|l| (l.key, l)).collect();
            for l in &r.labels {
                let life = lives
                    .get(&(l.pid, l.start))
                    .unwrap_or_else(|| panic!("{name}: label {l:?} names no life of the record"));
                assert!(!life.samples.is_empty(), "{name}: {l:?}");
                if !l.leak {
                    assert!(l.rate.is_none() && l.flag_within.is_none(), "{name}: {l:?}");
                    continue;
                }
                leaks += 1;
                let rate = l.rate.unwrap_or_else(|| panic!("{name}: leak without a rate: {l:?}"));
                assert!(l.flag_within.is_some_and(|w| w > 0.0), "{name}: {l:?}");
                let a = leak_start(l, life);
                // A process that exits gives its memory back while it tears down: for those, the
                // leak is measured up to the largest footprint.
                let b = if life.exited {
                    life.samples.iter().max_by_key(|s| s.footprint()).unwrap().t
                } else {
                    life.samples.last().unwrap().t
                };
                assert!(
                    b - a >= 30.0,
                    "{name}: {}: only {:.0} s recorded after the leak starts",
                    l.what,
                    b - a
                );
                let lo = floor_min(life, a, a + W).unwrap();
                let hi = floor_min(life, b - W, b + 0.001).unwrap();
                let grew = hi as f64 - lo as f64;
                let want = 0.6 * rate * (b - a);
                assert!(
                    grew >= want,
                    "{name}: {} (pid {}): floor grew {:.1} MiB in {:.0} s, want >= {:.1} MiB",
                    l.what,
                    l.pid,
                    grew / (1 << 20) as f64,
                    b - a,
                    want / (1 << 20) as f64
                );
            }
        }
        assert!(leaks > 0, "no labelled leak in the corpus");
    }
}

/// The corpus replayed through the live agent's own logic, judged against its labels: the
/// figures of issue 11 (README "Leak detection", docs/classifier.md).
#[cfg(test)]
mod figures {
    use std::path::Path;

    use crate::{
        analysis::score::LifeScore,
        input::read_record,
        monitor::{
            CoreConfig,
            replay::{replay, score_replay},
        },
    };

    fn corpus() -> Vec<std::path::PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
            .collect();
        v.sort();
        v
    }

    /// One record replayed and scored: its line of the table and its misjudged lives.
    fn judge(f: &Path) -> (String, Vec<String>) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let rec = read_record(f).unwrap();
        let (events, lives) = replay(&rec, CoreConfig::new(rec.header.interval_secs), None);
        let (scored, sum) = score_replay(&rec, &events, &lives);
        let line = format!(
            "{name}: {} lives, {} leaks: {} in time, {} late, {} missed; {} false alarms; {} re-alarms\n",
            sum.lives,
            sum.leaks,
            sum.leaks_flagged_in_time,
            sum.leaks_late,
            sum.leaks_missed,
            sum.false_alarms,
            sum.re_alarms
        );
        let wrong = |l: &LifeScore| !matches!(l.outcome, "ok" | "ok_growing" | "unjudged");
        let bad = scored
            .iter()
            .filter(|l| wrong(l))
            .map(|l| {
                format!(
                    "{name}: {} pid {} ({}): flagged {:?} of {:?}, {} alarms — {}",
                    l.outcome, l.pid, l.comm, l.flag_secs, l.flag_within, l.alarms, l.what
                )
            })
            .collect();
        (line, bad)
    }

    /// Every record: zero false alarms, one alarm per leak, every judged leak flagged in time.
    /// Records are independent: they are replayed side by side, one thread each.
    #[test]
    fn corpus_meets_the_figures() {
        let files = corpus();
        let judged: Vec<(String, Vec<String>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = files.iter().map(|f| sc.spawn(move || judge(f))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let table: String = judged.iter().map(|(l, _)| l.as_str()).collect();
        let bad: Vec<String> = judged.into_iter().flat_map(|(_, b)| b).collect();
        println!("{table}");
        assert!(bad.is_empty(), "misjudged lives:\n{}\n{table}", bad.join("\n"));
    }
}
