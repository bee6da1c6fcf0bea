//! `lt-workload MODE [ARGS]`: processes whose memory behaviour is known exactly, for tests and
//! benchmarks. Facts the test needs (addresses, pids) are printed as one JSON line on stdout.
//!
//! Modes:
//!   spine MMAP_MIB BRK_KIB EXIT_CODE  mmap+touch+munmap, grow brk, fork, exec `exit CODE`
//!   exit CODE                         exit with CODE
//!   oom CGROUP_PROCS_FILE             join the cgroup, then allocate 1 MiB/10 ms until killed
//!   leak KIB_PER_SEC SECS             allocate and touch, never free
//!   tidal PEAK_MIB PERIOD_SECS SECS   allocate to the peak, free everything, repeat
//!   plateau MIB RAMP_SECS SECS        grow to MIB over RAMP_SECS, then hold
//!   sawtooth UP_MIB DOWN_MIB PERIOD SECS  each period allocate UP, free DOWN (floor rises)
//!   tides BASE_MIB TIDE_MIB UP_MS DOWN_MS SECS  hold BASE; allocate+touch TIDE, hold it UP_MS,
//!                                     free it, wait DOWN_MS, repeat (several tides per second)
//!   faults MIB ROUNDS                 page-fault storm: mmap, touch every page, munmap
//!   mmaps COUNT                       mmap/munmap storm: small maps, not touched
//!   hold MIB SECS                     allocate MIB, hold it, exit
//!   mremaps COUNT                     COUNT mremap calls on one mapping
//!   mmap-race SECS                    two threads in mmap at once: one populating 64 MiB maps
//!                                     (a long syscall), one making small maps
//!   threads N                         N short threads, then fork a child that exits 0
//!   churn N                           N short-lived children (each with a thread); prints pids
//!   forkexec N [PROGRAM]              fork+exec PROGRAM (default /bin/true) N times, one at a time
//!   exits CODE MIN PAUSE_US           fork children that _exit(CODE) at once, one at a time, until
//!                                     stdin is closed (at least MIN); prints their pids
//!   pipes, tcp, fdchurn, serve, grows  leaks outside RSS and per unit of work: see `beyond.rs`
//!   population IDLE GROWING KIB_PER_SEC MAX_MIB
//!                                     a host's worth of processes: IDLE children that sleep and
//!                                     GROWING children that touch KIB_PER_SEC of new memory, free
//!                                     it all at MAX_MIB and start again; prints `{"ready":N}`
//!                                     once all run, and kills them all when stdin is closed (each
//!                                     child also dies with the parent); the children are named
//!                                     `lt-idle` and `lt-grow`
//!   forkrate RATE SECS [PROGRAM]      fork+exec PROGRAM (default /bin/true) RATE times a second,
//!                                     paced, for SECS; prints `{"forks":N}`
//! Before the mode: `--cgroup PROCS_FILE` joins a cgroup, `--oom-score-adj N` sets the OOM score.
use std::{
    env, fs,
    process::exit,
    thread::sleep,
    time::{Duration, Instant},
};

mod beyond;

const PAGE: usize = 4096;

fn die(msg: &str) -> ! {
    eprintln!("lt-workload: {msg}");
    exit(2)
}

fn num<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| die(&format!("missing or bad {what}")))
}

/// An anonymous private mapping of `len` bytes, every page touched.
fn map_touched(len: usize) -> *mut u8 {
    // SAFETY: plain anonymous mmap; checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        die("mmap failed");
    }
    let p = p.cast::<u8>();
    for off in (0..len).step_by(PAGE) {
        // SAFETY: within the mapping.
        unsafe { p.add(off).write_volatile(1) };
    }
    p
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: p/len came from map_touched.
    if unsafe { libc::munmap(p.cast(), len) } != 0 {
        die("munmap failed");
    }
}

struct Chunk(*mut u8, usize);
impl Drop for Chunk {
    fn drop(&mut self) {
        unmap(self.0, self.1);
    }
}
fn chunk(len: usize) -> Chunk {
    Chunk(map_touched(len), len)
}

fn spine(args: &[String]) {
    let mib: usize = num(args, 0, "MMAP_MIB");
    let brk_kib: u64 = num(args, 1, "BRK_KIB");
    let code: i32 = num(args, 2, "EXIT_CODE");
    let len = mib << 20;
    let p = map_touched(len);
    unmap(p, len);
    // SAFETY: raw brk syscalls: query, then grow by a known amount.
    let old = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    let want = old + (brk_kib << 10);
    // SAFETY: as above: grows the heap by a known amount, nothing points past it yet.
    let new = unsafe { libc::syscall(libc::SYS_brk, want) } as u64;
    if new != want {
        die("brk did not grow");
    }
    // SAFETY: the child only calls _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: _exit ends this (child) process at once; it has no preconditions.
        unsafe { libc::_exit(0) };
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut st, 0) };
    println!(
        "{{\"pid\":{},\"mmap_addr\":{},\"mmap_len\":{},\"brk_old\":{},\"brk_new\":{},\"child_pid\":{}}}",
        std::process::id(),
        p as u64,
        len,
        old,
        new,
        child
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let exe = env::current_exe().unwrap_or_else(|_| die("no current_exe"));
    let err =
        std::os::unix::process::CommandExt::exec(std::process::Command::new(exe).args(["exit", &code.to_string()]));
    die(&format!("exec failed: {err}"));
}

/// fork, exec `path` without arguments in the child, wait; dies unless it exits 0.
fn fork_exec_wait(path: &std::ffi::CStr) {
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: the child only calls execv and _exit (async-signal-safe).
    let child = unsafe { libc::fork() };
    if child < 0 {
        die("fork failed");
    }
    if child == 0 {
        // SAFETY: path and argv are NUL-terminated C strings (argv ends in NULL) that outlive the call.
        unsafe {
            libc::execv(path.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut st, 0) };
    if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
        die(&format!("{} failed (wait status {st})", path.to_string_lossy()));
    }
}

/// In a child just forked: die with the parent (and at once if it is already gone).
fn die_with_parent(parent: i32) {
    // SAFETY: plain prctl/getppid calls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
}

/// See the mode list: many sleeping processes and a few growing ones, for the agent's cost at
/// scale. The children allocate nothing at start (they are copies of this small process).
fn population(idle: usize, growing: usize, kib_per_sec: u64, max_mib: usize) {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut pids: Vec<i32> = Vec::with_capacity(idle + growing);
    for i in 0..idle + growing {
        // SAFETY: the child runs only async-signal-safe calls (or the grower loop below, which
        // touches its own fresh mappings) and never returns.
        let child = unsafe { libc::fork() };
        if child < 0 {
            for p in &pids {
                // SAFETY: our own children.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            die(&format!("fork failed after {i} children"));
        }
        if child == 0 {
            die_with_parent(me);
            // Named apart, so that tests filtering on `lt-workload` elsewhere on a shared machine
            // do not pick these up.
            let name: &[u8] = if i < idle { b"lt-idle\0" } else { b"lt-grow\0" };
            // SAFETY: a NUL-terminated name of at most 16 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
            if i < idle {
                loop {
                    // SAFETY: waits for a signal; SIGKILL ends it.
                    unsafe { libc::pause() };
                }
            }
            grow_forever(kib_per_sec, max_mib);
        }
        pids.push(child);
    }
    println!("{{\"ready\":{}}}", pids.len());
    use std::io::{Read as _, Write as _};
    let _ = std::io::stdout().flush();
    let mut buf = [0u8; 64];
    while std::io::stdin().read(&mut buf).is_ok_and(|n| n > 0) {}
    for p in &pids {
        // SAFETY: our own children.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    for p in &pids {
        let mut st = 0;
        // SAFETY: reaping our own children.
        unsafe { libc::waitpid(*p, &mut st, 0) };
    }
}

/// Touch `kib_per_sec` of new memory a second (one page at a time, evenly spread), free it all
/// when `max_mib` is reached, and start again.
fn grow_forever(kib_per_sec: u64, max_mib: usize) -> ! {
    let pages_per_sec = (kib_per_sec * 1024 / PAGE as u64).max(1);
    let pause = Duration::from_secs_f64(1.0 / pages_per_sec as f64);
    let per_chunk = 64 * PAGE;
    loop {
        let mut held: Vec<Chunk> = Vec::new();
        while held.len() * per_chunk < max_mib << 20 {
            // SAFETY: plain anonymous mmap; checked for MAP_FAILED.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    per_chunk,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                // SAFETY: ending the child.
                unsafe { libc::_exit(1) };
            }
            let p = p.cast::<u8>();
            for off in (0..per_chunk).step_by(PAGE) {
                // SAFETY: within the mapping.
                unsafe { p.add(off).write_volatile(1) };
                sleep(pause);
            }
            held.push(Chunk(p, per_chunk));
        }
    }
}

fn for_secs(secs: f64, mut step: impl FnMut(f64)) {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        step(start.elapsed().as_secs_f64());
    }
}

fn main() {
    let mut args: Vec<String> = env::args().skip(1).collect();
    loop {
        match args.first().map(String::as_str) {
            Some("--cgroup") => {
                let file = args
                    .get(1)
                    .cloned()
                    .unwrap_or_else(|| die("--cgroup needs a cgroup.procs path"));
                fs::write(&file, std::process::id().to_string())
                    .unwrap_or_else(|e| die(&format!("joining {file}: {e}")));
            }
            Some("--oom-score-adj") => {
                let v = args
                    .get(1)
                    .cloned()
                    .unwrap_or_else(|| die("--oom-score-adj needs a value"));
                fs::write("/proc/self/oom_score_adj", &v).unwrap_or_else(|e| die(&format!("oom_score_adj {v}: {e}")));
            }
            _ => break,
        }
        args.drain(..2);
    }
    let Some(mode) = args.first().cloned() else {
        die("usage: lt-workload MODE [ARGS] (see source)")
    };
    let a = &args[1..];
    match mode.as_str() {
        "spine" => spine(a),
        "exit" => exit(num(a, 0, "CODE")),
        "threads" => {
            // Start N threads that each live briefly; then fork one child that exits 0.
            let n: usize = num(a, 0, "N");
            let hs: Vec<_> = (0..n)
                .map(|_| std::thread::spawn(|| sleep(Duration::from_millis(200))))
                .collect();
            for h in hs {
                let _ = h.join();
            }
            // SAFETY: the child only calls _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                // SAFETY: _exit ends this (child) process at once; it has no preconditions.
                unsafe { libc::_exit(0) };
            }
            let mut st = 0;
            // SAFETY: `st` is a valid place for the status; `child` is our own child.
            unsafe { libc::waitpid(child, &mut st, 0) };
            println!("{{\"pid\":{},\"child_pid\":{child}}}", std::process::id());
        }
        "churn" => {
            // N short-lived children, each with one extra thread; prints their pids.
            let n: usize = num(a, 0, "N");
            let mut pids = Vec::with_capacity(n);
            for _ in 0..n {
                // SAFETY: the child starts a thread, touches a little memory and _exits.
                let child = unsafe { libc::fork() };
                if child == 0 {
                    let h = std::thread::spawn(|| drop(chunk(64 << 10)));
                    let _ = h.join();
                    drop(chunk(256 << 10));
                    // SAFETY: _exit ends this (child) process at once; it has no preconditions.
                    unsafe { libc::_exit(0) };
                }
                let mut st = 0;
                // SAFETY: `st` is a valid place for the status; `child` is our own child.
                unsafe { libc::waitpid(child, &mut st, 0) };
                pids.push(child);
            }
            let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
            println!("{{\"pids\":[{}]}}", list.join(","));
        }
        "mremaps" => {
            // COUNT mremap calls (grow then shrink one mapping): a kind of syscall that nothing
            // else on a quiet machine makes, so drop accounting can be checked exactly.
            let count: usize = num(a, 0, "COUNT");
            let mut p = map_touched(64 << 10);
            for i in 0..count {
                let (from, to, flags) = if i % 2 == 0 {
                    (64 << 10, 128 << 10, libc::MREMAP_MAYMOVE)
                } else {
                    (128 << 10, 64 << 10, 0)
                };
                // SAFETY: p is our mapping of `from` bytes.
                let q = unsafe { libc::mremap(p.cast(), from, to, flags) };
                if q == libc::MAP_FAILED {
                    die("mremap failed");
                }
                p = q.cast();
            }
            let len = if count % 2 == 1 { 128 << 10 } else { 64 << 10 };
            unmap(p, len);
        }
        "hold" => {
            let mib: usize = num(a, 0, "MIB");
            let secs: f64 = num(a, 1, "SECS");
            let _c = chunk(mib << 20);
            sleep(Duration::from_secs_f64(secs));
        }
        "oom" => {
            let mut hold = Vec::new();
            loop {
                hold.push(chunk(1 << 20));
                sleep(Duration::from_millis(10));
            }
        }
        "leak" => {
            let kib: f64 = num(a, 0, "KIB_PER_SEC");
            let secs: f64 = num(a, 1, "SECS");
            // 10 steps a second, rounded to pages.
            let step = ((kib * 1024.0 / 10.0) as usize).max(PAGE).div_ceil(PAGE) * PAGE;
            let mut hold = Vec::new();
            for_secs(secs, |_| {
                hold.push(chunk(step));
                sleep(Duration::from_millis(100));
            });
        }
        "tidal" => {
            let peak: usize = num(a, 0, "PEAK_MIB");
            let period: f64 = num(a, 1, "PERIOD_SECS");
            let secs: f64 = num(a, 2, "SECS");
            for_secs(secs, |_| {
                let c = chunk(peak << 20);
                sleep(Duration::from_secs_f64(period / 2.0));
                drop(c);
                sleep(Duration::from_secs_f64(period / 2.0));
            });
        }
        "plateau" => {
            let mib: usize = num(a, 0, "MIB");
            let ramp: f64 = num(a, 1, "RAMP_SECS");
            let secs: f64 = num(a, 2, "SECS");
            let mut hold = Vec::new();
            for _ in 0..mib {
                hold.push(chunk(1 << 20));
                sleep(Duration::from_secs_f64(ramp / mib as f64));
            }
            sleep(Duration::from_secs_f64((secs - ramp).max(0.0)));
        }
        "sawtooth" => {
            let up: usize = num(a, 0, "UP_MIB");
            let down: usize = num(a, 1, "DOWN_MIB");
            let period: f64 = num(a, 2, "PERIOD");
            let secs: f64 = num(a, 3, "SECS");
            let mut keep = Vec::new();
            for_secs(secs, |_| {
                let mut now: Vec<Chunk> = (0..up).map(|_| chunk(1 << 20)).collect();
                sleep(Duration::from_secs_f64(period / 2.0));
                now.truncate(up.saturating_sub(down));
                keep.extend(now);
                sleep(Duration::from_secs_f64(period / 2.0));
            });
        }
        "tides" => {
            let base: usize = num(a, 0, "BASE_MIB");
            let tide: usize = num(a, 1, "TIDE_MIB");
            let up = Duration::from_millis(num(a, 2, "UP_MS"));
            let down = Duration::from_millis(num(a, 3, "DOWN_MS"));
            let secs: f64 = num(a, 4, "SECS");
            let _base = chunk(base << 20);
            for_secs(secs, |_| {
                let c = chunk(tide << 20);
                sleep(up);
                drop(c);
                sleep(down);
            });
        }
        "faults" => {
            let mib: usize = num(a, 0, "MIB");
            let rounds: usize = num(a, 1, "ROUNDS");
            for _ in 0..rounds {
                drop(chunk(mib << 20));
            }
        }
        "mmaps" => {
            let count: usize = num(a, 0, "COUNT");
            for _ in 0..count {
                // SAFETY: anonymous mapping, never touched, unmapped at once.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        64 << 10,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    die("mmap failed");
                }
                // SAFETY: `p` is the mapping of that size made just above, not used after.
                unsafe { libc::munmap(p, 64 << 10) };
            }
        }
        "mmap-race" => {
            let secs: f64 = num(a, 0, "SECS");
            let map = |len: usize, flags: i32| {
                // SAFETY: anonymous mapping of `len` bytes, unmapped at once, never used.
                unsafe {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                        -1,
                        0,
                    );
                    if p == libc::MAP_FAILED {
                        die("mmap failed");
                    }
                    libc::munmap(p, len);
                }
            };
            let slow = std::thread::spawn(move || for_secs(secs, |_| map(64 << 20, libc::MAP_POPULATE)));
            for_secs(secs, |_| map(64 << 10, 0));
            slow.join().unwrap_or_else(|_| die("thread failed"));
        }
        "forkexec" => {
            // Process churn for benchmarks: fork, exec a program without arguments, wait; N times.
            let n: usize = num(a, 0, "N");
            let prog = a.get(1).map(String::as_str).unwrap_or("/bin/true");
            let path = std::ffi::CString::new(prog).unwrap_or_else(|_| die("bad PROGRAM"));
            for _ in 0..n {
                fork_exec_wait(&path);
            }
        }
        "exits" => {
            // Exit churn without any mmap/munmap/brk of its own (fork only, no exec, no allocation
            // in the children), so a benchmark can tell lifecycle events from bulk ones exactly.
            let code: i32 = num(a, 0, "CODE");
            let min: usize = num(a, 1, "MIN");
            let pause: u64 = num(a, 2, "PAUSE_US");
            let mut pids: Vec<i32> = Vec::with_capacity(min.max(1024));
            let mut open = true;
            while open || pids.len() < min {
                if open {
                    let mut p = libc::pollfd {
                        fd: 0,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; a zero timeout never blocks.
                    if unsafe { libc::poll(&mut p, 1, 0) } > 0 {
                        let mut b = [0u8; 64];
                        // SAFETY: reading into a local buffer.
                        if unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) } <= 0 {
                            open = false;
                        }
                    }
                }
                // SAFETY: the child only calls _exit.
                let child = unsafe { libc::fork() };
                if child < 0 {
                    die("fork failed");
                }
                if child == 0 {
                    // SAFETY: _exit ends this (child) process at once; it has no preconditions.
                    unsafe { libc::_exit(code) };
                }
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut st, 0) };
                if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != code {
                    die(&format!("child {child} ended with wait status {st}"));
                }
                pids.push(child);
                if pause > 0 {
                    sleep(Duration::from_micros(pause));
                }
            }
            let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
            println!("{{\"pids\":[{}]}}", list.join(","));
        }
        "population" => population(
            num(a, 0, "IDLE"),
            num(a, 1, "GROWING"),
            num(a, 2, "KIB_PER_SEC"),
            num(a, 3, "MAX_MIB"),
        ),
        "forkrate" => {
            let rate: f64 = num(a, 0, "RATE");
            let secs: f64 = num(a, 1, "SECS");
            if rate <= 0.0 {
                die("RATE must be positive");
            }
            let prog = a.get(2).map(String::as_str).unwrap_or("/bin/true");
            let path = std::ffi::CString::new(prog).unwrap_or_else(|_| die("bad PROGRAM"));
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                // Paced from the start, not from the last fork: a slow fork is caught up.
                let due = Duration::from_secs_f64(n as f64 / rate);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    sleep(wait);
                }
                fork_exec_wait(&path);
                n += 1;
            }
            println!("{{\"forks\":{n}}}");
        }
        other if beyond::run(other, a) => {}
        other => die(&format!("unknown mode `{other}`")),
    }
}
