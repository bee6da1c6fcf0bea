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
        format!(
            "{}\nReport file: {}",
            render(&report).trim_end(),
            path.display()
        )
    };
    let mut out = Out::new();
    for l in text.lines() {
        out.line(l).context("writing to stdout")?;
        if !out.is_open() {
            break;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::from(exit::OK))
}
