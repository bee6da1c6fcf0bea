//! `leaktrace doctor`: one line per requirement and per probe; exit 0 when the agent can run.
use std::{path::Path, process::ExitCode};

use serde_json::json;

use crate::probes::{self, Check, LoadOptions, Status};

fn line(c: &Check, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"check": c.what, "status": c.status.to_string(), "detail": c.detail})
        );
    } else {
        println!("{c}");
    }
}

pub fn run(json: bool, opts: &LoadOptions) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    let privs = probes::privileges::check();
    checks.push(Check {
        what: "privileges".into(),
        status: if privs.is_ok() { Status::Ok } else { Status::Missing },
        detail: privs.clone().unwrap_or_else(|e| e),
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    checks.push(Check {
        what: "btf".into(),
        status: if btf.exists() { Status::Ok } else { Status::Fallback },
        detail: if btf.exists() {
            btf.display().to_string()
        } else {
            "no /sys/kernel/btf/vmlinux; programs do not need CO-RE, so loading still works".into()
        },
    });
    let mut can_run = privs.is_ok();
    if privs.is_ok() {
        match probes::tracefs::ensure() {
            Ok(t) => checks.push(Check {
                what: "tracefs".into(),
                status: Status::Ok,
                detail: format!(
                    "{}{}",
                    t.root.display(),
                    if t.mounted_by_us { " (mounted by leaktrace)" } else { "" }
                ),
            }),
            Err(e) => {
                can_run = false;
                checks.push(Check {
                    what: "tracefs".into(),
                    status: Status::Missing,
                    detail: e.to_string(),
                });
            }
        }
        match probes::load(opts, false) {
            Ok(mut p) => {
                let rb = ["EVENTS", "LIFECYCLE"].iter().all(|m| p.ebpf.map_mut(m).is_some());
                checks.push(Check {
                    what: "ring buffer".into(),
                    status: if rb { Status::Ok } else { Status::Missing },
                    detail: "EVENTS 4 MiB (bulk), LIFECYCLE 1 MiB (fork/exec/exit/oom_kill)".into(),
                });
                can_run &= rb;
                can_run &= p.checks.iter().all(|c| c.status != Status::Missing);
                let usdt = crate::runtimes::probes::available(&p);
                checks.append(&mut p.checks);
                // Managed runtimes running now, and whether their collector probes can be followed
                // (informational: never a reason the agent cannot run).
                checks.extend(crate::runtimes::probes::doctor_checks(usdt));
            }
            Err(e) => {
                can_run = false;
                checks.push(Check {
                    what: "ebpf load".into(),
                    status: Status::Missing,
                    detail: format!("{e:#}"),
                });
            }
        }
    } else {
        checks.push(Check {
            what: "probes".into(),
            status: Status::Missing,
            detail: "not checked: needs the privileges above".into(),
        });
    }
    for c in &checks {
        line(c, json);
    }
    if can_run {
        if !json {
            println!("leaktrace can run here.");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        if !json {
            println!("leaktrace cannot run here: see the `missing` lines above.");
        }
        Ok(ExitCode::from(crate::cli::exit::ERROR))
    }
}
