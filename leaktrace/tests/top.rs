//! `leaktrace top` in a real terminal: tmux runs it in a 200x50 pane, the test reads the pane and
//! types keys, then checks the terminal was handed back intact.
mod common;

use std::{
    fs::File,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;

/// Whether tmux can be used; installs it with apt-get if missing. Under CI=true a failed install
/// fails the test; locally the test is skipped with the reason.
fn tmux_available(test: &str) -> bool {
    let works = || {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return true;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "tmux"]) {
        apt(&["update"]);
        apt(&["install", "-y", "tmux"]);
    }
    if works() {
        return true;
    }
    let why = "tmux is not installed and `apt-get install -y tmux` failed";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: {why} and CI=true");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

/// A tmux server of our own (its own socket, no user config) with one session running `sh`;
/// killed on drop, whatever happened.
struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn start(name: &str, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            socket: format!("leaktrace-test-{}-{name}", std::process::id()),
            session: name.to_string(),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let out = t.run(&["new-session", "-d", "-s", name, "-x", &w, "-y", &h, "sh"]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.run(&["set-option", "-t", name, "remain-on-exit", "off"]);
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn type_text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", &self.session, "-l", text])
                .status
                .success()
        );
    }

    /// Named keys (`Enter`, `Escape`) or single characters.
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            assert!(
                self.run(&["send-keys", "-t", &self.session, k]).status.success(),
                "send-keys {k}"
            );
            thread::sleep(Duration::from_millis(30));
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", &self.session]).stdout).into_owned()
    }

    fn alternate_screen(&self) -> bool {
        String::from_utf8_lossy(
            &self
                .run(&["display-message", "-p", "-t", &self.session, "#{alternate_on}"])
                .stdout,
        )
        .trim()
            == "1"
    }

    /// Poll the pane until `pred` holds; panics with the screen after `timeout`.
    fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!("no {what} within {timeout:?}; screen:\n{s}");
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The table row of `pid`, if shown.
fn row_of(screen: &str, pid: u32) -> Option<String> {
    let pid = pid.to_string();
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pid.as_str()))
        .map(str::to_string)
}

struct Workload(Child);

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn top_draws_the_leak_and_gives_the_terminal_back() {
    let test = "top_draws_the_leak_and_gives_the_terminal_back";
    if !bpf_available(test) || !tmux_available(test) {
        return;
    }
    let tmux = Tmux::start("top", 200, 50);
    tmux.type_text(&format!("{AGENT} top --interval 1; echo TOP_EXIT=$?"));
    tmux.keys(&["Enter"]);
    tmux.wait("the view", Duration::from_secs(60), |s| {
        s.contains("leaktrace top") && s.contains("processes tracked")
    });
    assert!(tmux.alternate_screen(), "top should draw on the alternate screen");

    let leak = Workload(
        Command::new(workload())
            .args(["leak", "4096", "40"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn workload"),
    );
    let pid = leak.0.id();
    let start = Instant::now();
    let s = tmux.wait(&format!("a mountain row for pid {pid}"), Duration::from_secs(35), |s| {
        row_of(s, pid).is_some_and(|r| r.contains("mountain"))
    });
    let row = row_of(&s, pid).unwrap();
    eprintln!("mountain after {:.1}s; screen:\n{s}", start.elapsed().as_secs_f64());
    assert!(
        row.contains("lt-workload") && row.contains("/s") && row.contains('█'),
        "{row}"
    );
    for want in [
        "MemAvailable",
        "Swap",
        "PSI memory",
        "OOM kills",
        "since boot",
        "sort: growth",
        " q  quit",
        // Issue 14: where the memory is, and the article's clues.
        "Memory: ",
        "page_cache",
        "clues: ",
    ] {
        assert!(s.contains(want), "{want} missing from the screen:\n{s}");
    }

    // s cycles the sort.
    tmux.keys(&["s"]);
    tmux.wait("sort: rss", Duration::from_secs(3), |s| s.contains("sort: rss"));
    tmux.keys(&["s", "s", "s"]);
    tmux.wait("sort: growth again", Duration::from_secs(3), |s| {
        s.contains("sort: growth")
    });

    // / filters by comm: typed keys go to the filter (the `s` is not a sort), Enter applies.
    tmux.keys(&["/"]);
    tmux.type_text("lt-work");
    tmux.wait("the filter prompt", Duration::from_secs(3), |s| {
        s.contains("filter by comm:") && s.contains("lt-work")
    });
    tmux.keys(&["Enter"]);
    tmux.wait("the filtered row", Duration::from_secs(3), |s| {
        s.contains("filter: lt-work") && row_of(s, pid).is_some()
    });
    tmux.keys(&["/"]);
    tmux.type_text("zzz");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the row hidden by `zzz`", Duration::from_secs(3), |s| {
        s.contains("filter: zzz") && row_of(s, pid).is_none()
    });
    assert!(s.contains("no process matches `zzz`"), "{s}");
    assert!(s.contains("sort: growth"), "typing the filter changed the sort:\n{s}");
    // Esc while typing clears the filter (and does not quit).
    tmux.keys(&["/", "Escape"]);
    tmux.wait("the row back after clearing the filter", Duration::from_secs(3), |s| {
        !s.contains("filter:") && row_of(s, pid).is_some()
    });

    // p freezes the display, the monitor keeps going; p again resumes.
    tmux.keys(&["p"]);
    tmux.wait("PAUSED", Duration::from_secs(3), |s| s.contains("PAUSED"));
    tmux.keys(&["p"]);
    tmux.wait("resumed", Duration::from_secs(3), |s| !s.contains("PAUSED"));

    // Too small degrades, and recovers.
    tmux.run(&["resize-window", "-t", "top", "-x", "50", "-y", "8"]);
    tmux.wait("the too-small notice", Duration::from_secs(3), |s| {
        s.contains("terminal too small: need 60x10")
    });
    tmux.run(&["resize-window", "-t", "top", "-x", "200", "-y", "50"]);
    tmux.wait("the view after resizing back", Duration::from_secs(3), |s| {
        row_of(s, pid).is_some()
    });

    // q quits cleanly and gives the terminal back: main screen, and cooked mode (sh only runs a
    // line when the terminal turns Enter into a newline again).
    let quit = Instant::now();
    tmux.keys(&["q"]);
    tmux.wait("TOP_EXIT=0", Duration::from_secs(15), |s| s.contains("TOP_EXIT=0"));
    eprintln!("exited {:.2}s after q", quit.elapsed().as_secs_f64());
    assert!(!tmux.alternate_screen(), "still on the alternate screen after quitting");
    tmux.type_text("echo TTY_$((20+22))");
    tmux.keys(&["Enter"]);
    tmux.wait("the shell to run a command", Duration::from_secs(5), |s| {
        s.lines()
            .any(|l| l.trim() == "TTY_42" || l.trim_end().ends_with(" TTY_42"))
    });
    let s = tmux.screen();
    assert!(!s.contains("PID COMM"), "the view was left on the screen:\n{s}");
}

#[test]
fn top_refuses_a_stdout_that_is_not_a_terminal() {
    // No root needed: the check comes before anything is loaded.
    let st = Command::new(AGENT)
        .args(["top", "--interval", "1"])
        .stdout(File::create("/dev/null").unwrap())
        .stderr(Stdio::piped())
        .output()
        .expect("run leaktrace top");
    let err = String::from_utf8_lossy(&st.stderr);
    assert_eq!(st.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains("terminal"), "{err}");

    let (code, out, err) = run_agent(&["top"]);
    assert_eq!((code, out.as_str(), err.lines().count()), (2, "", 1), "{err}");
    let (code, _, err) = run_agent(&["top", "--interval", "0"]);
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
}
