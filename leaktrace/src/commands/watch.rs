//! `leaktrace watch`: one process or a command's process tree, then a verdict.
//! Exit status 0 = no leak, 3 = leak, 127/126 = command not found / not executable.
use std::{io, process::ExitCode, process::Stdio};

use super::{UsageError, check_pids, shutdown_signal};
use crate::{
    cli::{WatchArgs, exit},
    monitor::{Monitor, MonitorConfig, Scope, Update},
    probes::LoadOptions,
    sinks::{live, out::Out},
};

pub async fn run(args: WatchArgs, opts: &LoadOptions) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal();
    let root = match (args.pid, args.command.is_empty()) {
        (Some(pid), true) => {
            check_pids(&[pid])?;
            pid
        }
        (None, false) => 0,
        (Some(_), false) => return Err(UsageError("give either --pid or a command, not both".into()).into()),
        (None, true) => return Err(UsageError("nothing to watch: give --pid PID or -- CMD [ARGS...]".into()).into()),
    };
    let mut mon = Monitor::start(MonitorConfig::new(args.interval, Scope::Tree { root }), opts)?;
    let mut child = None;
    if !args.command.is_empty() {
        let mut cmd = tokio::process::Command::new(&args.command[0]);
        cmd.args(&args.command[1..]).stdin(Stdio::inherit());
        if args.json {
            // Keep stdout pure JSON lines: the command's stdout goes to our stderr.
            cmd.stdout(io::stderr());
        }
        let c = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let (code, what) = match e.kind() {
                    io::ErrorKind::NotFound => (exit::NOT_FOUND, "command not found"),
                    io::ErrorKind::PermissionDenied => (126, "permission denied"),
                    _ => (exit::ERROR, "cannot start command"),
                };
                eprintln!("error: {what}: {}: {e}", args.command[0]);
                return Ok(ExitCode::from(code));
            }
        };
        let pid = c.id().unwrap_or(0);
        mon.set_root(pid);
        child = Some(c);
    }
    let root = mon.group.as_ref().map_or(0, |g| g.root);
    eprintln!(
        "leaktrace: watching pid {root} every {:?}, {}",
        args.interval,
        mon.probes.summary()
    );

    let mut out = Out::new();
    tokio::pin!(stop);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut exit_code = None;
    let mut last_human = -10.0;
    loop {
        let ups = tokio::select! {
            () = &mut stop => break,
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            st = async { match child.as_mut() { Some(c) => c.wait().await, None => std::future::pending().await } } => {
                exit_code = st.ok().and_then(|s| s.code());
                break;
            }
            ups = mon.next() => ups,
        };
        let root_gone = ups
            .iter()
            .any(|u| matches!(u, Update::Exited { proc, .. } if proc.key.pid == root));
        if let (Some(g), Some(v)) = (mon.group.as_ref(), mon.group_verdict())
            && g.first_t.is_some()
        {
            if args.json {
                out.json(&live::sample(g, &v))?;
            } else if g.last_t - last_human >= 5.0 {
                last_human = g.last_t;
                eprintln!(
                    "[{:>6.1}s] {} processes, footprint {}, {} ({:+.0} B/s)",
                    g.last_t,
                    g.members.len(),
                    crate::util::bytes(g.timeline.last().map_or(0, |s| s.rss_bytes)),
                    v.pattern,
                    v.growth_bytes_per_sec
                );
            }
        }
        out.flush()?;
        if root_gone && child.is_none() {
            break;
        }
    }
    // Where the tree grew: its allocation sites, read one last time.
    let sites = mon.sites.as_mut().map(|s| {
        s.refresh(&mut mon.probes.ebpf, None);
        for n in &s.notes {
            eprintln!("leaktrace: {n}");
        }
        (
            s.top(&[], crate::sites::TOP_SITES),
            s.unattributed_bytes(&[]),
            s.counters(),
        )
    });
    let Some(g) = mon.group.as_ref().filter(|g| g.first_t.is_some()) else {
        eprintln!("error: pid {root} exited before any sample was taken");
        return Ok(ExitCode::from(exit::ERROR));
    };
    let v = mon.group_verdict().expect("group");
    if args.json {
        let mut verdict = live::verdict(g, &v, exit_code);
        if let (Some((top, unattributed, c)), serde_json::Value::Object(m)) = (&sites, &mut verdict) {
            m.insert("top_sites".into(), serde_json::json!(top));
            m.insert("unattributed_bytes".into(), serde_json::json!(unattributed));
            m.insert("stack_collisions".into(), serde_json::json!(c.stack_collisions));
        }
        out.json(&verdict)?;
    } else {
        out.line(&live::human_verdict(g, &v))?;
        for site in sites.iter().flat_map(|(top, ..)| top) {
            out.line(&format!(
                "  {:>10}  {}",
                crate::util::bytes(site.bytes),
                crate::sites::short(&site.frames, 6)
            ))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::from(if v.leak { exit::LEAK } else { exit::OK }))
}
