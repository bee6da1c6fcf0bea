//! `cargo xtask bench [--quick] [--json] [-- rounds=N only=W1,W2 no-capacity no-scale no-kcost
//! soak[=SECS]]`: the benchmarks.
//!
//! Builds the agent and `lt-workload` in release, then runs every workload (timed by wall clock)
//! under every arm — no tracing, `leaktrace run`, bpftrace as a peer — interleaved round by round,
//! measures the agent's own CPU and memory, runs the capacity test, the agent's cost at scale
//! (thousands of processes, fork churn; `bench/scale.rs`) and the programs' kernel cost
//! (`bench/kcost.rs`), judges every goal on a 95 % interval (`bench/stats.rs`), prints a table
//! (or JSON with `--json`) and, in full mode, rewrites BENCHMARKS.md. `--quick` is a smoke test
//! (one short round of each part, on the debug build): it fails unless every arm ran and every
//! figure exists.
//! `soak[=SECS]` runs only the soak (one agent for an hour by default, `bench/soak.rs`) and
//! rewrites only its section of BENCHMARKS.md.
//!
//! Needs root (BPF). As another user, the build runs as that user and the benchmark itself
//! through sudo (like `cargo xtask run`).

mod agent;
mod capacity;
mod kcost;
mod report;
mod scale;
mod soak;
mod stats;
mod sys;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use self::agent::{Arm, Cost, Tools};
use self::report::{ArmRun, Machine, Results, Sample, WorkloadRun};
use self::workload::{Ctx, Sizes, State, Workload};
use crate::util::{self, Project};
use crate::{privilege, setup};

#[derive(Args)]
pub struct BenchArgs {
    /// Short run (fewer iterations), e.g. for CI.
    #[arg(long)]
    pub quick: bool,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Internal: the binaries are built already (used when re-running through sudo).
    #[arg(long, hide = true)]
    pub no_build: bool,
    /// Extra arguments for the benchmark runner. Put them after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// What the extra arguments after `--` can change.
struct Options {
    rounds: Option<usize>,
    /// Timed workloads and parts (`capacity`, `scale`, `kcost`) to run; None: all.
    only: Option<Vec<String>>,
    capacity: bool,
    scale: bool,
    kcost: bool,
    /// Run only the soak, this many seconds.
    soak: Option<u64>,
}

/// The parts besides the timed workloads that `only=` can name.
const PARTS: [&str; 3] = ["capacity", "scale", "kcost"];

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            rounds: None,
            only: None,
            capacity: true,
            scale: true,
            kcost: true,
            soak: None,
        };
        for a in args {
            if let Some(n) = a.strip_prefix("rounds=") {
                o.rounds = Some(
                    n.parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .with_context(|| format!("bad `{a}`"))?,
                );
            } else if let Some(list) = a.strip_prefix("only=") {
                o.only = Some(list.split(',').map(str::to_owned).collect());
            } else if a == "no-capacity" {
                o.capacity = false;
            } else if a == "no-scale" {
                o.scale = false;
            } else if a == "no-kcost" {
                o.kcost = false;
            } else if a == "soak" {
                o.soak = Some(3600);
            } else if let Some(n) = a.strip_prefix("soak=") {
                o.soak = Some(
                    n.parse()
                        .ok()
                        .filter(|&n| n >= 60)
                        .with_context(|| format!("bad `{a}` (seconds, at least 60)"))?,
                );
            } else {
                bail!(
                    "unknown benchmark argument `{a}` (accepted: rounds=N, only=WORKLOAD|PART[,...], no-capacity, \
                     no-scale, no-kcost, soak[=SECS])"
                );
            }
        }
        if let Some(only) = &o.only {
            let named = |p: &str| only.iter().any(|k| k == p);
            o.capacity &= named("capacity");
            o.scale &= named("scale");
            o.kcost &= named("kcost");
        }
        Ok(o)
    }

    /// Whether timed workload `key` runs.
    fn runs_workload(&self, key: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|k| k == key))
    }

    /// A run restricted by the options does not refresh BENCHMARKS.md.
    fn is_default(&self) -> bool {
        self.rounds.is_none() && self.only.is_none() && self.capacity && self.scale && self.kcost
    }
}

/// Rounds of a full run (timed workloads and the scale loads): enough for a 95 % interval of
/// about ±1 % when one round scatters by ±2 %.
const FULL_ROUNDS: usize = 15;
/// Rounds of the kernel-cost phase (per-call costs are averages over millions of calls).
const KCOST_ROUNDS: usize = 3;
/// A run starts only once the machine is at most this busy (% of all CPUs, 0.3 s sample)...
const QUIET_PCT: f64 = 15.0;
/// ... or this long has passed (full / quick mode).
const QUIET_WAIT: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(2)];
/// ... and at most this long over the whole run (full / quick mode).
const QUIET_BUDGET: [Duration; 2] = [Duration::from_secs(300), Duration::from_secs(10)];

/// Waits until other work leaves the machine nearly idle and no other tracing agent runs —
/// at most `ctx.quiet_wait` per run and `ctx.quiet_budget` in all. Returns the last busy % and
/// the number of foreign tracing agents.
fn quiet_gate(ctx: &Ctx) -> (f64, usize) {
    let start = Instant::now();
    let mut said = false;
    loop {
        let busy = sys::busy_pct(Duration::from_millis(300));
        let foreign = sys::foreign_tracers();
        let quiet = (busy.is_nan() || busy <= QUIET_PCT) && foreign.is_empty();
        let waited = start.elapsed();
        if quiet || waited >= ctx.quiet_wait || waited >= ctx.quiet_budget.get() {
            ctx.quiet_budget.set(ctx.quiet_budget.get().saturating_sub(waited));
            if said {
                log(&format!(
                    "  machine {busy:.0} % busy, {} other tracing agent(s), after waiting {:.0} s (wait budget left: {:.0} s)",
                    foreign.len(),
                    waited.as_secs_f64(),
                    ctx.quiet_budget.get().as_secs_f64()
                ));
            }
            return (busy, foreign.len());
        }
        if !said {
            let who: Vec<String> = foreign.iter().map(|(p, c)| format!("{c} (pid {p})")).collect();
            log(&format!(
                "  machine {busy:.0} % busy with other work{}: waiting (up to {} s)",
                if who.is_empty() {
                    String::new()
                } else {
                    format!(", other tracing agents running: {}", who.join(", "))
                },
                ctx.quiet_wait.as_secs().min(ctx.quiet_budget.get().as_secs())
            ));
            said = true;
        }
    }
}

fn log(msg: &str) {
    eprintln!("bench: {msg}");
}

pub fn run(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let project = Project::locate();
    let opts = Options::parse(&args.args)?;

    if !args.no_build {
        let env = setup::ensure(&project)?;
        build(&project, &env, args.quick)?;
        if !privilege::is_root()? {
            // Built as the invoking user; the benchmark itself (BPF, bpftrace) runs as root.
            let prefix = privilege::root_prefix(&env)?;
            let exe = std::env::current_exe().context("cannot locate the xtask binary")?;
            let mut cmd = Command::new(&prefix[0]);
            cmd.args(&prefix[1..]).arg(exe).args(["bench", "--no-build"]);
            if args.quick {
                cmd.arg("--quick");
            }
            if args.json {
                cmd.arg("--json");
            }
            if !args.args.is_empty() {
                cmd.arg("--").args(&args.args);
            }
            if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
                cmd.env("CARGO_TARGET_DIR", dir);
            }
            log(&format!(
                "not root, running the benchmark through sudo: {}",
                util::display(&cmd)
            ));
            let status = cmd
                .status()
                .with_context(|| format!("could not run `{}`", util::display(&cmd)))?;
            if !status.success() {
                bail!("the benchmark failed ({status})");
            }
            return Ok(());
        }
    } else if !privilege::is_root()? {
        bail!("`bench --no-build` must run as root");
    }

    let bin_dir = project.target_dir.join(profile_dir(args.quick));
    let leaktrace = bin_dir.join("leaktrace");
    let workload_bin = bin_dir.join("lt-workload");
    for b in [&leaktrace, &workload_bin] {
        if !b.is_file() {
            bail!(
                "{} does not exist: build with `{}`",
                b.display(),
                build_command(args.quick).join(" ")
            );
        }
    }
    if let Some(secs) = opts.soak {
        return soak(&project, secs, &leaktrace, &workload_bin);
    }
    let results = measure(&project, &opts, args.quick, &leaktrace, &workload_bin, started)?;

    if args.json {
        println!("{}", serde_json::to_string(&report::to_json(&results))?);
    } else {
        print!("{}", report::table(&results));
    }
    if !args.quick && opts.is_default() {
        let path = project.root.join("BENCHMARKS.md");
        std::fs::write(&path, report::markdown(&results))
            .with_context(|| format!("cannot write {}", path.display()))?;
        log(&format!("wrote {}", path.display()));
    } else if !args.quick {
        log("BENCHMARKS.md left as it is (a restricted run: rounds=/only=/no-capacity)");
    }
    let problems = report::problems(&results);
    log(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    if !problems.is_empty() {
        for p in &problems {
            log(&format!("problem: {p}"));
        }
        bail!(
            "{} problem(s): not every arm ran or not every figure was produced",
            problems.len()
        );
    }
    Ok(())
}

/// Where the binaries are: a full run measures the release build; `--quick` (a smoke test of the
/// harness, whose figures are not judged) takes the debug build `cargo xtask test` has just made,
/// which saves CI a release build of the whole agent.
fn profile_dir(quick: bool) -> &'static str {
    if quick { "debug" } else { "release" }
}

fn build_command(quick: bool) -> Vec<&'static str> {
    let mut c = vec!["cargo", "build"];
    if !quick {
        c.push("--release");
    }
    c.extend(["-p", "leaktrace", "-p", "testprogs"]);
    c
}

/// [`build_command`] with the project's environment; cargo's output and ours go to stderr so
/// that `--json` output stays alone on stdout.
fn build(project: &Project, env: &setup::Env, quick: bool) -> Result<()> {
    let mut cmd = Command::new(util::cargo());
    cmd.args(&build_command(quick)[1..])
        .current_dir(&project.root)
        .stdout(Stdio::from(std::io::stderr()));
    env.apply(&mut cmd);
    log(&format!("build: {}", util::display(&cmd)));
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", util::display(&cmd)))?;
    if !status.success() {
        bail!(
            "build failed after {} ({status}): `{}`",
            util::secs(start),
            util::display(&cmd)
        );
    }
    log(&format!("build ok ({})", util::secs(start)));
    Ok(())
}

/// The program on PATH, installing `package` with apt-get when it is missing.
fn ensure_tool(program: &str, package: &str, apt_updated: &mut bool) -> Option<PathBuf> {
    if let Some(p) = sys::which(program) {
        return Some(p);
    }
    sys::which("apt-get")?;
    let install = || {
        log(&format!("{program} is missing: apt-get install -y {package}"));
        Command::new("apt-get")
            .args(["install", "-y", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() && !*apt_updated {
        log("apt-get install failed: apt-get update, then again");
        *apt_updated = true;
        let _ = Command::new("apt-get")
            .arg("update")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        install();
    }
    let found = sys::which(program);
    if found.is_none() {
        log(&format!("{program} is still missing; its arm/workload will fail"));
    }
    found
}

fn version(program: &Option<PathBuf>, arg: &str) -> String {
    let Some(p) = program else {
        return "not installed".into();
    };
    Command::new(p)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown version".into())
}

fn measure(
    project: &Project,
    opts: &Options,
    quick: bool,
    leaktrace: &Path,
    workload_bin: &Path,
    started: Instant,
) -> Result<Results> {
    sys::ensure_tracefs()?;
    let mut apt_updated = false;
    let bpftrace = ensure_tool("bpftrace", "bpftrace", &mut apt_updated);
    let redis_server = ensure_tool("redis-server", "redis-server", &mut apt_updated);
    let redis_benchmark = ensure_tool("redis-benchmark", "redis-tools", &mut apt_updated);
    let bpftool = if opts.kcost {
        ensure_tool("bpftool", "bpftool", &mut apt_updated)
    } else {
        None
    };

    let scratch = sys::TempDir::new()?;
    let nproc = sys::nproc();
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let rounds = opts.rounds.unwrap_or(if quick { 1 } else { FULL_ROUNDS });
    let tools = Tools {
        leaktrace: leaktrace.to_owned(),
        bpftrace: bpftrace.clone(),
        scratch: scratch.0.clone(),
    };
    let ctx = Ctx {
        workload_bin: workload_bin.to_owned(),
        nproc,
        sizes,
        timeout: Duration::from_secs(if quick { 120 } else { 600 }),
        quiet_wait: QUIET_WAIT[usize::from(quick)],
        quiet_budget: std::cell::Cell::new(QUIET_BUDGET[usize::from(quick)]),
        redis_server,
        redis_benchmark,
        scratch: scratch.0.clone(),
    };

    let mut machine = Machine {
        nproc,
        kernel: sys::kernel(),
        cpu: sys::cpu_model(),
        mem_gib: sys::mem_total_gib(),
        thp: sys::thp(),
        load_before: sys::loadavg(),
        bpftrace: version(&bpftrace, "--version"),
        redis: version(&ctx.redis_server, "--version"),
        quiet_pct: QUIET_PCT,
        quiet_wait_secs: ctx.quiet_wait.as_secs_f64(),
        quiet_budget_secs: ctx.quiet_budget.get().as_secs_f64(),
        bpf_stats_on: kcost::sysctl_on(),
        ..Machine::default()
    };
    machine.busy_before_pct = sys::busy_pct(Duration::from_secs(2));
    log(&format!(
        "{} CPUs ({}), kernel {}; {:.1} % of all CPUs busy before the run (load {})",
        machine.nproc, machine.cpu, machine.kernel, machine.busy_before_pct, machine.load_before
    ));
    if machine.busy_before_pct > 10.0 {
        log("warning: the machine is busy with other work; the figures will be noisy");
    }

    let workloads: Vec<Workload> = workload::all(&sizes, nproc)
        .into_iter()
        .filter(|w| opts.runs_workload(w.key))
        .collect();
    if workloads.is_empty() && !(opts.capacity || opts.scale || opts.kcost) {
        bail!(
            "`only=` selected nothing (known: idle, faults, faults_per_cpu, mmaps, forkexec, redis, {})",
            PARTS.join(", ")
        );
    }
    let arms: Vec<Arm> = Arm::ALL.into_iter().filter(|a| a.implemented()).collect();
    let mut runs = Vec::new();
    for w in &workloads {
        runs.push(run_workload(w, &arms, rounds, &ctx, &tools, &scratch));
    }

    let capacity = if opts.capacity {
        let plan = if quick {
            capacity::Plan::quick()
        } else {
            capacity::Plan::full()
        };
        log(&format!(
            "capacity: k = {:?} mmap storms of {} pairs each, with exit churn",
            plan.ks, plan.calls
        ));
        capacity::run(&plan, leaktrace, workload_bin, &scratch.0, &log).map_err(|e| format!("{e:#}"))
    } else {
        Err("skipped (no-capacity)".into())
    };
    let scale = opts.scale.then(|| {
        let plan = if quick {
            scale::Plan::quick()
        } else {
            scale::Plan::full(opts.rounds.unwrap_or(FULL_ROUNDS))
        };
        log(&format!(
            "scale: {} round(s) of {}",
            plan.rounds,
            plan.loads.iter().map(|l| l.key()).collect::<Vec<_>>().join(", ")
        ));
        let env = scale::Env {
            leaktrace,
            workload: workload_bin,
            dir: &scratch.0,
        };
        let results = scale::run(&plan, &env, &log);
        report::ScaleRun { plan, results }
    });
    let kcost = opts.kcost.then(|| {
        let s = &sizes;
        let jobs = [
            kcost::Job {
                key: "faults",
                title: format!("page faults ({} MiB touched ×{})", s.fault_mib, s.fault_rounds),
                event: "page fault",
                events: s.fault_mib * 256 * s.fault_rounds,
                args: vec!["faults".into(), s.fault_mib.to_string(), s.fault_rounds.to_string()],
            },
            kcost::Job {
                key: "mmaps",
                title: format!("mmap/munmap ({} pairs)", s.mmaps),
                event: "mmap+munmap pair",
                events: s.mmaps,
                args: vec!["mmaps".into(), s.mmaps.to_string()],
            },
            kcost::Job {
                key: "forkexec",
                title: format!("fork/exec/exit ({} × /bin/true)", s.forkexec),
                event: "fork+exec+exit",
                events: s.forkexec,
                args: vec!["forkexec".into(), s.forkexec.to_string(), "/bin/true".into()],
            },
        ];
        log("kernel cost: the programs' run-time statistics per workload event");
        kcost::run(
            &jobs,
            if quick { 1 } else { KCOST_ROUNDS },
            leaktrace,
            workload_bin,
            &scratch.0,
            bpftool.as_deref(),
            &log,
        )
    });
    machine.load_after = sys::loadavg();

    let mut command = String::from("cargo xtask bench");
    if quick {
        command.push_str(" --quick");
    }
    Ok(Results {
        quick,
        rounds,
        command,
        date: sys::utc_now(),
        revision: sys::git_revision(&project.root),
        machine,
        workloads: runs,
        capacity,
        capacity_skipped: !opts.capacity,
        scale,
        kcost,
        soak_section: std::fs::read_to_string(project.root.join("BENCHMARKS.md"))
            .ok()
            .and_then(|t| soak::section_of(&t).map(str::to_owned)),
        duration_secs: started.elapsed().as_secs_f64(),
    })
}

/// `soak[=SECS]`: one agent on 5,000 idle + 100 growing processes with a light churn; prints the
/// result and rewrites the soak section of BENCHMARKS.md (when it ran an hour or more).
fn soak(project: &Project, secs: u64, leaktrace: &Path, workload_bin: &Path) -> Result<()> {
    let scratch = sys::TempDir::new()?;
    let load = format!(
        "{} idle + {} growing processes and {} fork+exec of /bin/true per second",
        scale::thousands(soak::IDLE as u64),
        soak::GROWING,
        soak::CHURN_PER_SEC
    );
    log(&format!(
        "soak: {secs} s of `leaktrace run` on {load} (load {})",
        sys::loadavg()
    ));
    let (samples, forks) = soak::run(secs, leaktrace, workload_bin, &scratch.0, &log)?;
    let r = soak::Results {
        secs: secs as f64,
        samples,
        forks,
        date: sys::utc_now(),
        revision: sys::git_revision(&project.root),
        load: format!("{load}; load average at the end {}", sys::loadavg()),
    };
    let md = r.markdown();
    print!("{md}");
    if secs >= 3600 {
        let path = project.root.join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, soak::replace_section(&old, &md))
            .with_context(|| format!("cannot write {}", path.display()))?;
        log(&format!("wrote the soak section of {}", path.display()));
    } else {
        log("BENCHMARKS.md left as it is (a soak shorter than an hour)");
    }
    Ok(())
}

/// All rounds of one workload; arms interleaved within each round, in a rotating order.
fn run_workload(
    w: &Workload,
    arms: &[Arm],
    rounds: usize,
    ctx: &Ctx,
    tools: &Tools,
    scratch: &sys::TempDir,
) -> WorkloadRun {
    let mut out = WorkloadRun {
        key: w.key,
        title: w.title.clone(),
        metrics: w.metrics.clone(),
        arms: arms
            .iter()
            .map(|&arm| ArmRun {
                arm,
                samples: Vec::new(),
                error: None,
            })
            .collect(),
        error: None,
    };
    log(&format!("{}: {}", w.key, w.title));
    let state = match w.prepare(ctx) {
        Ok(s) => s,
        Err(e) => {
            log(&format!("{}: cannot run: {e:#}", w.key));
            out.error = Some(format!("{e:#}"));
            return out;
        }
    };
    // One unrecorded run first (page cache, redis's allocations, CPU frequency), as the baseline.
    match w.start(ctx, &state).and_then(|s| s.finish(ctx, &state)) {
        Ok(_) => log("  warm-up done"),
        Err(e) => log(&format!("  warm-up failed: {e:#}")),
    }
    for round in 0..rounds {
        let mut order = arms.to_vec();
        order.rotate_left(round % arms.len());
        for arm in order {
            let slot = out
                .arms
                .iter_mut()
                .find(|a| a.arm == arm)
                .expect("every arm has a slot");
            if slot.error.is_some() {
                continue; // failed before: do not retry every round
            }
            let tag = format!("{}-{}-{round}", w.key, arm.key());
            let (busy, foreign) = quiet_gate(ctx);
            match one_run(w, arm, ctx, tools, &state, scratch, &tag, round, (busy, foreign)) {
                Ok(sample) => {
                    let vals: Vec<String> = sample
                        .values
                        .iter()
                        .zip(&w.metrics)
                        .map(|(v, m)| {
                            if m.unit == "s" {
                                format!("{v:.3} s")
                            } else {
                                format!("{v:.0} {}", m.unit)
                            }
                        })
                        .collect();
                    let cost = sample.cost.as_ref().map_or(String::new(), |c| {
                        format!(" (agent {:.2} % CPU, {:.1} MiB peak)", c.cpu_pct, c.peak_rss_mib)
                    });
                    log(&format!(
                        "  round {}/{rounds} {:<22} {}{cost} [machine {:.0} % busy before, {:.0} % during]",
                        round + 1,
                        arm.label(),
                        vals.join(", "),
                        sample.busy_before_pct,
                        sample.busy_during_pct
                    ));
                    slot.samples.push(sample);
                }
                Err(e) => {
                    log(&format!(
                        "  round {}/{rounds} {}: FAILED: {e:#}",
                        round + 1,
                        arm.label()
                    ));
                    slot.error = Some(format!("{e:#}"));
                }
            }
        }
    }
    drop(state);
    out
}

/// One workload run under one arm: start the agent, run, measure, stop.
#[allow(clippy::too_many_arguments)]
fn one_run(
    w: &Workload,
    arm: Arm,
    ctx: &Ctx,
    tools: &Tools,
    state: &State,
    scratch: &sys::TempDir,
    tag: &str,
    round: usize,
    (busy_before_pct, foreign_tracers): (f64, usize),
) -> Result<Sample> {
    // The workload's processes first (held), so an agent watching one can be pointed at it.
    let started = w.start(ctx, state)?;
    let target = if arm.needs_target() { started.target() } else { None };
    let agent = agent::start(arm, tools, &scratch.0, tag, target)?;
    // Let the agent finish whatever it does right after attaching (the same pause for all arms).
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = agent.as_ref().map(|a| a.cpu_ns());
    let jiffies = sys::cpu_jiffies();
    let start = Instant::now();
    let values = started.finish(ctx, state);
    let wall = start.elapsed().as_secs_f64();
    let busy_during_pct = sys::busy_between(jiffies, sys::cpu_jiffies());
    let cost = match agent {
        None => None,
        Some(a) => {
            let cpu1 = a.cpu_ns();
            let (peak, fin) = a.memory_mib();
            let out = a.out.clone();
            a.stop()?;
            let drops = match out {
                Some(p) => {
                    let d = agent::drops_in(&p)?;
                    let _ = std::fs::remove_file(&p);
                    d
                }
                None => Default::default(),
            };
            Some(Cost {
                cpu_pct: 100.0 * cpu1.saturating_sub(cpu0.unwrap_or(0)) as f64 / 1e9 / wall,
                peak_rss_mib: peak,
                final_rss_mib: fin,
                drops,
            })
        }
    };
    // Let the system settle before the next run (agent teardown, freed memory).
    std::thread::sleep(Duration::from_millis(200));
    Ok(Sample {
        round,
        values: values?,
        cost,
        busy_before_pct,
        busy_during_pct,
        foreign_tracers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = Options::parse(&["rounds=3".into(), "only=faults,redis".into()]).unwrap();
        assert_eq!(o.rounds, Some(3));
        assert_eq!(o.only.as_deref(), Some(&["faults".to_owned(), "redis".to_owned()][..]));
        assert!(!o.is_default());
        assert!(Options::parse(&[]).unwrap().is_default());
        assert!(Options::parse(&["rounds=0".into()]).is_err());
        assert!(Options::parse(&["--bogus".into()]).is_err());
    }
}
