//! What the guest reports on its console: `@@lt-vm` marker lines written by its init around each
//! test binary, and libtest's own `test result:` lines in between.

/// The marker that starts every line the guest's init writes for the host.
pub const MARK: &str = "@@lt-vm";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileResult {
    pub name: String,
    /// Exit status of the test binary; None if it never ended (guest died or timed out).
    pub rc: Option<i32>,
    pub secs: Option<u64>,
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    pub filtered_out: u32,
    /// Names of tests that failed (`test NAME ... FAILED`).
    pub failures: Vec<String>,
    /// `SKIP ...` lines: a privileged test that decided not to run (never acceptable here).
    pub skips: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub files: Vec<FileResult>,
    /// The guest's init said it had run every file.
    pub done: bool,
    /// `@@lt-vm info k=v` lines, in order.
    pub info: Vec<(String, String)>,
}

impl Report {
    pub fn feed(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix(MARK) {
            let rest = rest.trim();
            let mut words = rest.split_whitespace();
            match words.next() {
                Some("begin") => self.files.push(FileResult {
                    name: words.next().unwrap_or("?").to_owned(),
                    ..FileResult::default()
                }),
                Some("end") => {
                    let _name = words.next();
                    if let Some(f) = self.files.last_mut() {
                        for w in words {
                            if let Some(v) = w.strip_prefix("rc=") {
                                f.rc = v.parse().ok();
                            } else if let Some(v) = w.strip_prefix("secs=") {
                                f.secs = v.parse().ok();
                            }
                        }
                    }
                }
                Some("done") => self.done = true,
                Some("info") => {
                    let kv = rest.trim_start_matches("info").trim();
                    if let Some((k, v)) = kv.split_once('=') {
                        self.info.push((k.to_owned(), v.to_owned()));
                    }
                }
                _ => {}
            }
            return;
        }
        let Some(f) = self.files.last_mut() else {
            return;
        };
        if f.rc.is_some() {
            return;
        }
        if let Some(summary) = line.strip_prefix("test result: ") {
            // Accumulate: a binary prints one summary (a doctest run could print more).
            let counts = parse_summary(summary);
            f.passed += counts[0];
            f.failed += counts[1];
            f.ignored += counts[2];
            f.filtered_out += counts[3];
        } else if let Some(t) = line.strip_prefix("test ")
            && let Some(name) = t.strip_suffix(" ... FAILED")
        {
            f.failures.push(name.to_owned());
        } else if line.starts_with("SKIP ") {
            f.skips.push(line.to_owned());
        }
    }

    /// Why this run failed, one reason per line; empty = it passed.
    pub fn problems(&self, expected: &[&str], filtered: bool) -> Vec<String> {
        let mut out = Vec::new();
        if !self.done {
            out.push("the guest did not finish (timed out, panicked or ran out of memory)".to_owned());
        }
        for name in expected {
            let Some(f) = self.files.iter().find(|f| f.name == *name) else {
                if self.done {
                    out.push(format!("{name}: never ran"));
                }
                continue;
            };
            match f.rc {
                None => out.push(format!("{name}: did not finish")),
                Some(0) => {}
                Some(rc) => out.push(format!(
                    "{name}: exit status {rc}, {} failed{}",
                    f.failed,
                    if f.failures.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", f.failures.join(", "))
                    }
                )),
            }
            if f.ignored > 0 {
                out.push(format!(
                    "{name}: {} test(s) ignored: every test must run in the matrix",
                    f.ignored
                ));
            }
            for s in &f.skips {
                out.push(format!("{name}: a test skipped itself: {s}"));
            }
            if f.rc == Some(0) && f.passed == 0 && !filtered {
                out.push(format!("{name}: ran no test"));
            }
        }
        out
    }

    pub fn totals(&self) -> (u32, u32) {
        self.files.iter().fold((0, 0), |(p, f), r| {
            (
                p + r.passed,
                f + r.failed + u32::from(r.rc.is_some_and(|c| c != 0) && r.failed == 0),
            )
        })
    }
}

/// `ok. 3 passed; 1 failed; 0 ignored; 0 measured; 2 filtered out; finished in 1.2s`
/// → [passed, failed, ignored, filtered out].
fn parse_summary(s: &str) -> [u32; 4] {
    let mut out = [0; 4];
    for part in s.split(';') {
        let part = part
            .trim()
            .trim_start_matches("ok.")
            .trim_start_matches("FAILED.")
            .trim();
        let mut it = part.split_whitespace();
        let (Some(n), Some(what)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else {
            continue;
        };
        match what {
            "passed" => out[0] = n,
            "failed" => out[1] = n,
            "ignored" => out[2] = n,
            "filtered" => out[3] = n,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Report {
        let mut r = Report::default();
        for l in lines {
            r.feed(l);
        }
        r
    }

    #[test]
    fn a_clean_run() {
        let r = feed(&[
            "@@lt-vm info uname=6.1.0-57-cloud-amd64",
            "@@lt-vm begin spine",
            "test doctor_says_the_agent_can_run ... ok",
            "test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.81s",
            "@@lt-vm end spine rc=0 secs=11",
            "@@lt-vm done",
        ]);
        assert!(r.done);
        assert_eq!(r.info, [("uname".to_owned(), "6.1.0-57-cloud-amd64".to_owned())]);
        assert_eq!(r.files[0].passed, 4);
        assert_eq!(r.files[0].rc, Some(0));
        assert_eq!(r.files[0].secs, Some(11));
        assert!(r.problems(&["spine"], false).is_empty());
        assert_eq!(r.problems(&["spine", "oom"], false), ["oom: never ran"]);
    }

    #[test]
    fn failures_skips_ignores_and_timeouts_are_problems() {
        let r = feed(&[
            "@@lt-vm begin oom",
            "test a ... FAILED",
            "SKIP b: BPF cannot be loaded here",
            "test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1s",
            "@@lt-vm end oom rc=101 secs=3",
            "@@lt-vm begin leaks",
        ]);
        let p = r.problems(&["oom", "leaks"], false);
        assert!(p.iter().any(|l| l.contains("did not finish (timed out")), "{p:?}");
        assert!(p.iter().any(|l| l == "oom: exit status 101, 1 failed (a)"), "{p:?}");
        assert!(p.iter().any(|l| l.contains("1 test(s) ignored")), "{p:?}");
        assert!(p.iter().any(|l| l.contains("skipped itself")), "{p:?}");
        assert!(p.iter().any(|l| l == "leaks: did not finish"), "{p:?}");
        assert_eq!(r.totals(), (1, 1));
    }

    #[test]
    fn an_empty_file_is_a_problem_unless_filtered() {
        let r = feed(&[
            "@@lt-vm begin spine",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 4 filtered out; finished in 0s",
            "@@lt-vm end spine rc=0 secs=0",
            "@@lt-vm done",
        ]);
        assert_eq!(r.problems(&["spine"], false), ["spine: ran no test"]);
        assert!(r.problems(&["spine"], true).is_empty());
    }
}
