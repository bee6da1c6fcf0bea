//! `leaktrace run --config FILE`: the `run` options from a TOML file.
//!
//! Keys are the long flag names, with `-` or `_` (`max_processes`, `max-processes`). Each value is
//! turned into the flag it stands for and checked by that flag's own clap parser, so a file
//! accepts exactly what the command line does (durations as `"5m"` or a number of seconds, the
//! same ranges, the same messages). Flags given on the command line win over the file.
//! Every error names the file, the line and the key, on one line.
use std::{fmt, ops::Range, path::Path};

use clap::{ArgAction, ArgMatches, FromArgMatches as _, parser::ValueSource};
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{Cli, Command, RunArgs};

/// A config file that cannot be used: `config error: FILE line N: ...`.
#[derive(Debug)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "config error: {} line {n}: {}", self.path, self.msg),
            None => write!(f, "config error: {}: {}", self.path, self.msg),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One option set by the file.
#[derive(Debug, Clone)]
struct Entry {
    /// The clap argument id (the `RunArgs` field name).
    id: String,
    /// `--long=value` tokens (none for a flag set to `false`).
    tokens: Vec<String>,
}

/// A parsed and checked config file.
#[derive(Debug, Clone)]
pub struct FileValues {
    path: String,
    entries: Vec<Entry>,
}

/// The `run` subcommand's definition.
fn run_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
        .find_subcommand("run")
        .expect("`run` subcommand")
        .clone()
        .no_binary_name(true)
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<FileValues, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: shown.clone(),
        line: None,
        msg: format!("cannot read it: {e}"),
    })?;
    parse(&shown, &text)
}

/// Checks `text` (the contents of `path`) against the `run` options.
pub fn parse(path: &str, text: &str) -> Result<FileValues, ConfigError> {
    let err = |span: Option<Range<usize>>, msg: String| ConfigError {
        path: path.to_string(),
        line: span.map(|s| line_of(text, s.start)),
        msg,
    };
    let table = DeTable::parse(text).map_err(|e| {
        let msg = e
            .message()
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid TOML")
            .trim();
        err(e.span(), format!("invalid TOML: {msg}"))
    })?;
    let mut items: Vec<(&Spanned<_>, &Spanned<DeValue<'_>>)> = table.get_ref().iter().collect();
    items.sort_by_key(|(k, _)| k.span().start); // report the first problem in file order
    let run = run_command();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: Vec<(String, Range<usize>)> = Vec::new();
    for (key, value) in items {
        let name: &str = key.get_ref();
        let long = name.replace('_', "-");
        let arg = run
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && !a.is_hide_set())
            .filter(|a| !matches!(a.get_id().as_str(), "config" | "print_config" | "help" | "version"))
            .filter(|a| settable(a.get_id().as_str()))
            .ok_or_else(|| err(Some(key.span()), format!("unknown key `{name}`")))?;
        let id = arg.get_id().to_string();
        if let Some((_, first)) = seen.iter().find(|(i, _)| *i == id) {
            let msg = format!("key `{name}`: already set on line {}", line_of(text, first.start));
            return Err(err(Some(key.span()), msg));
        }
        seen.push((id.clone(), key.span()));
        let mut tokens = Vec::new();
        for (token, span) in
            to_tokens(arg, &long, value).map_err(|m| err(Some(value.span()), format!("key `{name}`: {m}")))?
        {
            // Each value on its own, through the flag's parser: the error points at its line.
            if let Err(e) = run.clone().try_get_matches_from([token.as_str()]) {
                return Err(err(Some(span), format!("key `{name}`: {}", clap_reason(&e))));
            }
            tokens.push(token);
        }
        entries.push(Entry { id, tokens });
    }
    Ok(FileValues {
        path: path.to_string(),
        entries,
    })
}

/// Sets in `args` every option of `file` that was not given on the command line (`given`: the
/// `run` subcommand's matches).
pub fn apply(file: &FileValues, args: &mut RunArgs, given: &ArgMatches) -> Result<(), ConfigError> {
    let from_file: Vec<&Entry> = file
        .entries
        .iter()
        .filter(|e| given.value_source(&e.id) != Some(ValueSource::CommandLine))
        .collect();
    let tokens = from_file.iter().flat_map(|e| e.tokens.iter().map(String::as_str));
    let whole = |msg: String| ConfigError {
        path: file.path.clone(),
        line: None,
        msg,
    };
    let m = run_command()
        .try_get_matches_from(tokens)
        .map_err(|e| whole(clap_reason(&e)))?;
    let mut parsed = RunArgs::from_arg_matches(&m).map_err(|e| whole(clap_reason(&e)))?;
    for e in from_file {
        move_field(&e.id, args, &mut parsed);
    }
    Ok(())
}

/// The options in effect, as a config file this module reads back (`run --print-config`).
pub fn to_toml(a: &RunArgs) -> String {
    use std::fmt::Write as _;
    let dur = |d: std::time::Duration| {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            format!("\"{}s\"", ms / 1000)
        } else {
            format!("\"{ms}ms\"")
        }
    };
    // A TOML basic string.
    let s = |v: &str| {
        let mut q = String::from("\"");
        for c in v.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(q, "\\u{:04X}", c as u32);
                }
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let mut o = String::from("# leaktrace run: the options in effect (config file, then flags)\n");
    let _ = writeln!(o, "json = {}", a.json);
    let pids: Vec<String> = a.pids.iter().map(u32::to_string).collect();
    let _ = writeln!(o, "pid = [{}]", pids.join(", "));
    let comms: Vec<String> = a.comms.iter().map(|c| s(c)).collect();
    let _ = writeln!(o, "comm = [{}]", comms.join(", "));
    let _ = writeln!(o, "interval = {}", dur(a.interval));
    if let Some(d) = a.duration {
        let _ = writeln!(o, "duration = {}", dur(d));
    }
    let _ = writeln!(o, "syscalls = {}", a.syscalls);
    let _ = writeln!(o, "max_processes = {}", a.max_processes);
    let _ = writeln!(o, "report_dir = {}", s(&a.report_dir.to_string_lossy()));
    let _ = writeln!(o, "predict_within = {}", dur(a.predict_within));
    let _ = writeln!(o, "snapshot_within = {}", dur(a.snapshot_within));
    match a.metrics {
        Some(addr) => writeln!(o, "metrics = {}", s(&addr.to_string())),
        None => writeln!(o, "metrics = false"),
    }
    .ok();
    let _ = writeln!(o, "metrics_top = {}", a.metrics_top);
    let _ = writeln!(o, "stacks = {}", a.stacks.stacks);
    if let Some(n) = a.stacks.fault_sample {
        let _ = writeln!(o, "fault_sample = {n}");
    }
    if let Some(r) = &a.record {
        let _ = writeln!(o, "record = {}", s(&r.to_string_lossy()));
    }
    let _ = writeln!(o, "no_runtimes = {}", a.no_runtimes);
    let _ = writeln!(o, "heap_snapshots = {}", a.heap_snapshots);
    if let Some(w) = &a.work_metric {
        let _ = writeln!(o, "work_metric = {}", s(w));
    }
    o
}

/// The step in `main`: for `run --config FILE`, load the file and apply it under the flags.
pub fn apply_to(cli: &mut Cli, matches: &ArgMatches) -> Result<(), ConfigError> {
    let Command::Run(args) = &mut cli.command else {
        return Ok(());
    };
    let Some(path) = args.config.clone() else {
        return Ok(());
    };
    let file = load(&path)?;
    let given = matches.subcommand_matches("run").expect("`run` matches");
    apply(&file, args, given)
}

/// Whether the option with this clap id can be set from a file (the ids [`move_field`] knows).
fn settable(id: &str) -> bool {
    matches!(
        id,
        "json"
            | "pids"
            | "comms"
            | "interval"
            | "duration"
            | "syscalls"
            | "max_processes"
            | "report_dir"
            | "predict_within"
            | "snapshot_within"
            | "metrics"
            | "metrics_top"
            | "stacks"
            | "fault_sample"
            | "stack_copies"
            | "record"
            | "no_runtimes"
            | "heap_snapshots"
            | "work_metric"
    )
}

/// `to.<id> = from.<id>`.
fn move_field(id: &str, to: &mut RunArgs, from: &mut RunArgs) {
    match id {
        "json" => to.json = from.json,
        "pids" => to.pids = std::mem::take(&mut from.pids),
        "comms" => to.comms = std::mem::take(&mut from.comms),
        "interval" => to.interval = from.interval,
        "duration" => to.duration = from.duration,
        "syscalls" => to.syscalls = from.syscalls,
        "max_processes" => to.max_processes = from.max_processes,
        "report_dir" => to.report_dir = std::mem::take(&mut from.report_dir),
        "predict_within" => to.predict_within = from.predict_within,
        "snapshot_within" => to.snapshot_within = from.snapshot_within,
        "metrics" => to.metrics = from.metrics,
        "metrics_top" => to.metrics_top = from.metrics_top,
        "stacks" => to.stacks.stacks = from.stacks.stacks,
        "fault_sample" => to.stacks.fault_sample = from.stacks.fault_sample,
        "work_metric" => to.work_metric = from.work_metric.take(),
        "stack_copies" => to.stacks.stack_copies = from.stacks.stack_copies,
        "record" => to.record = std::mem::take(&mut from.record),
        "no_runtimes" => to.no_runtimes = from.no_runtimes,
        "heap_snapshots" => to.heap_snapshots = from.heap_snapshots,
        other => unreachable!("`{other}` is not in settable's list"),
    }
}

/// The flag tokens a TOML value stands for, each with the span of the value it came from.
fn to_tokens(arg: &clap::Arg, long: &str, v: &Spanned<DeValue<'_>>) -> Result<Vec<(String, Range<usize>)>, String> {
    let flag = matches!(arg.get_action(), ArgAction::SetTrue);
    // `--metrics` alone: an option whose value may be left out.
    let optional_value = arg
        .get_num_args()
        .is_some_and(|r| r.min_values() == 0 && r.max_values() > 0);
    let one = |s: String| vec![(format!("--{long}={s}"), v.span())];
    match v.get_ref() {
        DeValue::Boolean(b) if flag || optional_value => Ok(if *b {
            vec![(format!("--{long}"), v.span())]
        } else {
            vec![]
        }),
        _ if flag => Err(format!("expected true or false, not {}", kind(v.get_ref()))),
        DeValue::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items
            .iter()
            .map(|item| scalar(item.get_ref()).map(|s| (format!("--{long}={s}"), item.span())))
            .collect(),
        DeValue::Array(_) => Err("expected one value, not a list".into()),
        other => scalar(other).map(one),
    }
}

/// A string or a number, as it would be typed on the command line.
fn scalar(v: &DeValue<'_>) -> Result<String, String> {
    match v {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|e| format!("bad integer: {e}")),
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .map(|x| x.to_string())
            .map_err(|e| format!("bad number: {e}")),
        other => Err(format!("expected a string or a number, not {}", kind(other))),
    }
}

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) | DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Why clap refused a value: the parser's own message when there is one (`must be greater than
/// zero, got `0``), else clap's first line without its `error: `.
fn clap_reason(e: &clap::Error) -> String {
    if let Some(src) = std::error::Error::source(e) {
        let why = src.to_string();
        return match e.get(clap::error::ContextKind::InvalidValue) {
            Some(clap::error::ContextValue::String(v)) if !why.contains(v.as_str()) => {
                format!("`{v}`: {why}")
            }
            _ => why,
        };
    }
    let text = e.render().to_string();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid value");
    first.trim_start_matches("error: ").to_string()
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;

    const PATH: &str = "/etc/leaktrace.toml";

    /// `leaktrace <argv>` with `text` as its config file: the `run` arguments, or the error.
    fn run_with(text: &str, argv: &[&str]) -> Result<RunArgs, String> {
        let m = <Cli as clap::CommandFactory>::command()
            .try_get_matches_from(std::iter::once("leaktrace").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        let mut cli = Cli::from_arg_matches(&m).map_err(|e| e.to_string())?;
        let Command::Run(args) = &mut cli.command else {
            panic!("not run")
        };
        let file = parse(PATH, text).map_err(|e| e.to_string())?;
        apply(&file, args, m.subcommand_matches("run").unwrap()).map_err(|e| e.to_string())?;
        let Command::Run(args) = cli.command else {
            unreachable!()
        };
        Ok(args)
    }

    fn err(text: &str) -> String {
        parse(PATH, text).unwrap_err().to_string()
    }

    #[test]
    fn good_file_sets_every_option() {
        let text = r#"
# a comment
json = true
pid = [10, 20]
comm = ["postgres", "java"]
interval = "2s"
duration = "1h"
syscalls = true
max_processes = 100
report_dir = "/srv/reports"
predict_within = "10m"
snapshot_within = 45
metrics = "0.0.0.0:9464"
metrics_top = 7
"#;
        let a = run_with(text, &["run"]).unwrap();
        assert!(a.json && a.syscalls);
        assert_eq!(a.pids, vec![10, 20]);
        assert_eq!(a.comms, vec!["postgres", "java"]);
        assert_eq!(a.interval, Duration::from_secs(2));
        assert_eq!(a.duration, Some(Duration::from_secs(3600)));
        assert_eq!(a.max_processes, 100);
        assert_eq!(a.report_dir, PathBuf::from("/srv/reports"));
        assert_eq!(a.predict_within, Duration::from_secs(600));
        assert_eq!(a.snapshot_within, Duration::from_secs(45));
        assert_eq!(a.metrics, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(a.metrics_top, 7);
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let text = r#"
json = true
pid = [10, 20]
comm = ["post\"gres", "ja\\va"]
interval = "1500ms"
duration = "1h"
syscalls = true
max_processes = 100
report_dir = "/srv/reports"
predict_within = "10m"
snapshot_within = 45
metrics = "[::1]:9464"
metrics_top = 7
stacks = true
fault_sample = 16
record = "/tmp/x.jsonl.gz"
"#;
        let a = run_with(text, &["run"]).unwrap();
        let printed = to_toml(&a);
        let b = run_with(&printed, &["run"]).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{printed}");
        // Defaults print too, and read back.
        let d = run_with("", &["run"]).unwrap();
        let e = run_with(&to_toml(&d), &["run"]).unwrap();
        assert_eq!(format!("{d:?}"), format!("{e:?}"));
    }

    #[test]
    fn empty_file_keeps_the_defaults() {
        let a = run_with("# nothing\n", &["run"]).unwrap();
        let d = run_with("", &["run"]).unwrap();
        assert!(!a.json && a.pids.is_empty() && a.metrics.is_none());
        assert_eq!(
            (a.interval, a.max_processes, a.report_dir),
            (d.interval, d.max_processes, d.report_dir)
        );
        assert_eq!(a.interval, Duration::from_secs(1));
    }

    #[test]
    fn dashes_or_underscores_and_metrics_forms() {
        let a = run_with("max-processes = 5\nmetrics = true\n", &["run"]).unwrap();
        assert_eq!(a.max_processes, 5);
        assert_eq!(a.metrics, Some(super::super::DEFAULT_METRICS_ADDR.parse().unwrap()));
        assert_eq!(run_with("metrics = false\n", &["run"]).unwrap().metrics, None);
        assert_eq!(
            run_with("metrics = 9999\n", &["run"]).unwrap().metrics,
            Some("127.0.0.1:9999".parse().unwrap())
        );
        assert_eq!(run_with("pid = 42\n", &["run"]).unwrap().pids, vec![42]);
        assert_eq!(run_with("max_processes = 0x10\n", &["run"]).unwrap().max_processes, 16);
    }

    #[test]
    fn command_line_flags_override_the_file() {
        let text = "interval = \"5s\"\npid = [10]\njson = true\nmax_processes = 100\nmetrics_top = 3\n";
        let a = run_with(
            text,
            &[
                "run",
                "--interval",
                "250ms",
                "--pid",
                "7",
                "--pid",
                "8",
                "--metrics-top",
                "9",
            ],
        )
        .unwrap();
        assert_eq!(a.interval, Duration::from_millis(250));
        assert_eq!(
            a.pids,
            vec![7, 8],
            "a list given on the command line replaces the file's"
        );
        assert_eq!(a.metrics_top, 9);
        // Not given: from the file, not the default.
        assert!(a.json);
        assert_eq!(a.max_processes, 100);
        // A flag given with its default value still wins.
        assert_eq!(
            run_with(text, &["run", "--interval", "1"]).unwrap().interval,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("json = true\n\ninterval = 1\nintervall = \"1s\"\n");
        assert_eq!(e, "config error: /etc/leaktrace.toml line 4: unknown key `intervall`");
        assert!(err("config = \"/x\"\n").contains("line 1: unknown key `config`"));
        assert!(err("pretend_missing = [\"x\"]\n").contains("unknown key `pretend_missing`"));
        assert!(err("[run]\ninterval = 1\n").contains("line 1: unknown key `run`"));
        let e = err("interval = 1\ninterval-x = 2\n");
        assert!(e.contains("line 2: unknown key `interval-x`"), "{e}");
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let e = err("json = true\n# c\n\n\ninterval = 0\n");
        assert_eq!(
            e,
            "config error: /etc/leaktrace.toml line 5: key `interval`: must be greater than zero, got `0`"
        );
        let e = err("pid = [\n  10,\n  0,\n]\n");
        assert!(
            e.starts_with("config error: /etc/leaktrace.toml line 3: key `pid`: "),
            "{e}"
        );
        assert!(err("json = \"yes\"\n").contains("line 1: key `json`: expected true or false, not a string"));
        assert!(err("interval = [1, 2]\n").contains("key `interval`: expected one value, not a list"));
        assert!(err("interval = \"soon\"\n").contains("key `interval`: `soon` is not a duration"));
        assert!(err("max_processes = 2000000\n").contains("line 1: key `max_processes`: "));
        assert!(err("metrics = \"nowhere\"\n").contains("key `metrics`: "));
        assert!(err("report_dir = true\n").contains("key `report_dir`: expected a string or a number, not a boolean"));
        let e = err("interval = 1\nmax_processes = 3\nmax-processes = 4\n");
        assert!(e.contains("line 3: key `max-processes`: already set on line 2"), "{e}");
        for e in [err("interval = -1\n"), err("interval = 1\nsnapshot_within = \"0ms\"\n")] {
            assert!(e.contains("must be greater than zero"), "{e}");
            assert_eq!(e.lines().count(), 1);
        }
    }

    #[test]
    fn syntax_error_names_its_line() {
        let e = err("json = true\ninterval = \"1s\n");
        assert!(
            e.starts_with("config error: /etc/leaktrace.toml line 2: invalid TOML: "),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let e = err("json = true\npid = [1, 2\n");
        assert!(
            e.starts_with("config error: /etc/leaktrace.toml line 2: invalid TOML"),
            "{e}"
        );
        let e = err("\n\njson = true\njson = false\n");
        assert!(
            e.starts_with("config error: /etc/leaktrace.toml line 4: invalid TOML"),
            "{e}"
        );
        let e = err("interval 5\n");
        assert!(
            e.starts_with("config error: /etc/leaktrace.toml line 1: invalid TOML"),
            "{e}"
        );
    }

    #[test]
    fn duration_forms() {
        for (v, want) in [
            ("\"1s\"", Duration::from_secs(1)),
            ("\"5m\"", Duration::from_secs(300)),
            ("\"500ms\"", Duration::from_millis(500)),
            ("\"2h\"", Duration::from_secs(7200)),
            ("\"1d\"", Duration::from_secs(86400)),
            ("30", Duration::from_secs(30)),
            ("1.5", Duration::from_millis(1500)),
            ("\"1.5\"", Duration::from_millis(1500)),
            ("1_000", Duration::from_secs(1000)),
            ("2e1", Duration::from_secs(20)),
        ] {
            let a = run_with(&format!("interval = {v}\nduration = {v}\n"), &["run"]).unwrap();
            assert_eq!((a.interval, a.duration), (want, Some(want)), "{v}");
        }
        for bad in ["0", "-1", "\"0s\"", "\"-5m\"", "inf", "nan", "\"\"", "\"5 minutes\""] {
            assert!(parse(PATH, &format!("predict_within = {bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn unreadable_file_is_one_line() {
        let e = load(Path::new("/nonexistent/leaktrace.toml")).unwrap_err().to_string();
        assert!(
            e.starts_with("config error: /nonexistent/leaktrace.toml: cannot read it: "),
            "{e}"
        );
    }

    /// Every visible `run` option can be set from a file, so a new flag cannot be forgotten here.
    #[test]
    fn every_run_option_is_a_key() {
        let run = run_command();
        for a in run.get_arguments().filter(|a| !a.is_hide_set()) {
            let id = a.get_id().as_str();
            if matches!(id, "config" | "print_config" | "help" | "version") {
                continue;
            }
            assert!(
                settable(id),
                "`run --{}` cannot be set in a config file: add `{id}` to config.rs",
                a.get_long().unwrap_or(id)
            );
        }
    }

    /// The shipped example, with every key uncommented, is a valid file.
    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../../../deploy/leaktrace.example.toml");
        assert!(
            parse(PATH, text).unwrap().entries.is_empty(),
            "every key is commented out"
        );
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix('#')
                    .filter(|r| r.contains(" = ") && !r.starts_with(' '))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let f = parse(PATH, &uncommented).unwrap_or_else(|e| panic!("{e}"));
        let run = run_command();
        let keys = run.get_arguments().filter(|a| {
            !a.is_hide_set() && !matches!(a.get_id().as_str(), "config" | "print_config") && a.get_long().is_some()
        });
        assert_eq!(f.entries.len(), keys.count(), "the example shows every key");
    }
}
