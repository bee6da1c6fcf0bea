//! `run --config FILE`, `completions` and `man` through the real binary. None of these need root:
//! a config error, like a pid that does not exist, is reported before anything is loaded.
use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
};

const AGENT: &str = env!("CARGO_BIN_EXE_leaktrace");

/// Above the largest pid_max Linux allows (2^22): never a live process.
const NO_PID: u32 = 4_194_305;

fn leaktrace(args: &[&str]) -> Output {
    Command::new(AGENT).args(args).output().expect("run leaktrace")
}

/// A config file with `text`, removed on drop.
struct Config(PathBuf);

impl Config {
    fn new(name: &str, text: &str) -> Config {
        let p = std::env::temp_dir().join(format!("leaktrace-config-{}-{name}.toml", std::process::id()));
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        Config(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit status 2 with exactly one line on stderr, which is returned.
fn usage_error(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err.trim_end().to_string()
}

#[test]
fn config_values_are_used_and_flags_win() {
    let c = Config::new("pid", &format!("json = true\ninterval = \"2s\"\npid = [{NO_PID}]\n"));
    // The file's pid is checked like one given as a flag...
    let e = usage_error(&leaktrace(&["run", "--config", c.path()]));
    assert_eq!(e, format!("error: no process with pid {NO_PID}"));
    // ...and a pid given on the command line replaces the file's list.
    let other = NO_PID + 1;
    let e = usage_error(&leaktrace(&["run", "--config", c.path(), "--pid", &other.to_string()]));
    assert_eq!(e, format!("error: no process with pid {other}"));
}

/// `key = value` lines of `run --print-config`.
fn printed(args: &[&str]) -> Vec<(String, String)> {
    let o = leaktrace(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_key_set_in_a_file_takes_effect() {
    let me = std::process::id();
    let set = [
        ("json", "true".to_string()),
        ("pid", format!("[{me}]")),
        ("comm", "[\"postgres\", \"java\"]".to_string()),
        ("interval", "\"2s\"".to_string()),
        ("duration", "\"1h\"".to_string()),
        ("syscalls", "true".to_string()),
        ("max_processes", "100".to_string()),
        ("report_dir", "\"/srv/reports\"".to_string()),
        ("predict_within", "\"10m\"".to_string()),
        ("snapshot_within", "45".to_string()),
        ("metrics", "\"127.0.0.1:9555\"".to_string()),
        ("metrics_top", "7".to_string()),
        ("stacks", "true".to_string()),
        ("fault_sample", "16".to_string()),
        ("record", "\"/tmp/agent.jsonl.gz\"".to_string()),
    ];
    let text: String = set.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let c = Config::new("every", &text);
    let got = printed(&["run", "--config", c.path(), "--print-config"]);
    let expect = |k: &str, want: &str| {
        let v = got.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(v, Some(want), "key `{k}` in {got:?}");
    };
    for (k, v) in &set {
        let want = match *k {
            "duration" => "\"3600s\"",
            "predict_within" => "\"600s\"",
            "snapshot_within" => "\"45s\"",
            _ => v.as_str(),
        };
        expect(k, want);
    }
    // Flags win over the file, key by key.
    let got = printed(&[
        "run",
        "--config",
        c.path(),
        "--interval",
        "500ms",
        "--metrics-top",
        "3",
        "--print-config",
    ]);
    let v = |k: &str| got.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(
        (v("interval"), v("metrics_top"), v("max_processes")),
        ("\"500ms\"".into(), "3".into(), "100".into())
    );
}

#[test]
fn unknown_key_is_one_line_with_file_line_and_key() {
    let c = Config::new("unknown", "json = true\n\nintervall = \"1s\"\n");
    let e = usage_error(&leaktrace(&["run", "--config", c.path()]));
    assert_eq!(e, format!("config error: {} line 3: unknown key `intervall`", c.path()));
}

#[test]
fn bad_value_is_one_line_with_file_line_and_key() {
    let c = Config::new("bad", "json = true\n# comment\n\n\ninterval = 0\n");
    let e = usage_error(&leaktrace(&["run", "--config", c.path()]));
    assert_eq!(
        e,
        format!(
            "config error: {} line 5: key `interval`: must be greater than zero, got `0`",
            c.path()
        )
    );
    // A bad value is an error even when the flag overrides it: the file is wrong either way.
    let e = usage_error(&leaktrace(&["run", "--config", c.path(), "--interval", "1"]));
    assert!(e.contains("line 5: key `interval`"), "{e}");
}

#[test]
fn syntax_error_and_missing_file() {
    let c = Config::new("syntax", "json = true\npid = [1, 2\n");
    let e = usage_error(&leaktrace(&["run", "--config", c.path()]));
    assert!(
        e.starts_with(&format!("config error: {} line 2: invalid TOML: ", c.path())),
        "{e}"
    );
    let e = usage_error(&leaktrace(&["run", "--config", "/nonexistent/leaktrace.toml"]));
    assert!(
        e.starts_with("config error: /nonexistent/leaktrace.toml: cannot read it: "),
        "{e}"
    );
    // clap's own errors keep their form.
    let e = usage_error(&leaktrace(&["run", "--config"]));
    assert!(
        e.starts_with("error: ") && e.ends_with("(see `leaktrace --help`)"),
        "{e}"
    );
}

#[test]
fn shipped_example_config_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/leaktrace.example.toml");
    let c = Config::new(
        "example",
        &format!("{}\npid = [{NO_PID}]\n", fs::read_to_string(example).unwrap()),
    );
    let e = usage_error(&leaktrace(&["run", "--config", c.path()]));
    assert_eq!(e, format!("error: no process with pid {NO_PID}"));
}

#[test]
fn completions_for_every_shell() {
    let o = leaktrace(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bash = stdout(&o);
    assert!(
        bash.contains("leaktrace") && bash.contains("watch") && bash.contains("--report-dir"),
        "{bash}"
    );
    assert!(bash.contains("complete -F"), "a bash completion script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = leaktrace(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        assert!(stdout(&o).contains("watch"), "{shell}");
    }
    usage_error(&leaktrace(&["completions", "tcsh"]));
    // Hidden from the main list.
    let help = stdout(&leaktrace(&["--help"]));
    assert!(!help.contains("completions") && !help.contains("man "), "{help}");
}

#[test]
fn man_pages() {
    let o = leaktrace(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.contains(".TH leaktrace 1"), "{page}");
    for sub in ["trace", "run", "watch", "doctor", "oom", "report", "top"] {
        assert!(page.contains(&format!("leaktrace\\-{sub}(1)")), "{sub} listed");
    }
    let o = leaktrace(&["man", "run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = stdout(&o);
    assert!(
        run.contains(".TH leaktrace-run 1") && run.contains("\\-\\-config"),
        "{run}"
    );
    let e = usage_error(&leaktrace(&["man", "frobnicate"]));
    assert_eq!(e, "error: no subcommand `frobnicate`");
}
