//! `leaktrace report <ID|PATH>`: one OOM report, rendered for a person or as pretty JSON.
use std::process::ExitCode;

use anyhow::Context as _;

use crate::{
    cli::{ReportArgs, exit},
    report::{render::render, store::ReportStore},
    sinks::out::Out,
};

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    // A missing or corrupt file is an error naming it (exit 1).
    let (path, report) = ReportStore::at(&args.report_dir).load(&args.report)?;
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("serialising the report")?
    } else {
        format!("{}\nReport file: {}", render(&report).trim_end(), path.display())
    };
    let mut out = Out::new(args.json);
    for l in text.lines() {
        out.line(l).context("writing to stdout")?;
        if !out.is_open() {
            break;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::from(exit::OK))
}

#[cfg(test)]
mod tests {
    use std::{fs, path::PathBuf};

    use clap::Parser as _;

    use super::*;
    use crate::{
        cli::DEFAULT_REPORT_DIR,
        cli::{Cli, Command},
        report::render::tests::sample,
    };

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lt-report-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn args(dir: &std::path::Path, report: &str) -> ReportArgs {
        ReportArgs {
            report: report.into(),
            json: false,
            report_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn parses() {
        let c = Cli::try_parse_from(["leaktrace", "report", "oom-1-2", "--json"]).unwrap();
        let Command::Report(a) = c.command else { panic!() };
        assert_eq!((a.report.as_str(), a.json), ("oom-1-2", true));
        assert_eq!(a.report_dir, PathBuf::from(DEFAULT_REPORT_DIR));
        assert!(Cli::try_parse_from(["leaktrace", "report"]).is_err());
    }

    #[test]
    fn loads_by_id_name_and_path() {
        let dir = temp_dir("load");
        let r = sample();
        let path = ReportStore::open(&dir).unwrap().write(&r).unwrap();
        let store = ReportStore::at(&dir);
        for key in [r.id.clone(), format!("{}.json", r.id), path.display().to_string()] {
            let (p, back) = store.load(&key).unwrap();
            assert_eq!((p, &back), (path.clone(), &r));
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_or_corrupt_is_an_error_naming_the_file() {
        let dir = temp_dir("bad");
        let e = run(args(&dir, "oom-1-2")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("oom-1-2.json") && msg.contains("cannot read report"),
            "{msg}"
        );
        fs::write(dir.join("oom-3-4.json"), b"{\"version\": 1, \"id\": ").unwrap();
        let e = run(args(&dir, "oom-3-4")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("oom-3-4.json is not a leaktrace report"), "{msg}");
        let _ = fs::remove_dir_all(&dir);
    }
}
