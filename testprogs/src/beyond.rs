//! Modes for issue 14's tests: leaks that RSS does not show, memory per unit of work, runs that
//! grow from one to the next.
//!
//!   pipes PER_SEC SECS BYTES      open PER_SEC pipes a second, write BYTES into each, keep them
//!   tcp PER_SEC SECS BYTES        open PER_SEC loopback TCP connections a second (both ends in
//!                                 this process), send BYTES on each that nobody reads, keep them
//!   fdchurn PER_SEC SECS BYTES    the same pipes and connections, each closed a second later
//!   serve PORT KIB SECS           HTTP on 127.0.0.1:PORT: `GET /work` keeps KIB KiB (touched)
//!                                 and counts it; `GET /metrics` shows `lt_requests_total`
//!   grows STATE BASE_MIB STEP_MIB HOLD_SECS   hold BASE + n × STEP MiB for HOLD_SECS, where n is
//!                                 the number in file STATE (0 if absent), then write n + 1 there
//! Each prints `{"pid":N,...}` on stdout once set up.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    thread::sleep,
    time::{Duration, Instant},
};

use super::{chunk, die, num};

fn ready(extra: &str) {
    println!("{{\"pid\":{}{extra}}}", std::process::id());
    let _ = std::io::stdout().flush();
}

/// A pipe with `bytes` written into it (held by its kernel buffer), both ends kept open.
fn pipe_with(bytes: usize) -> [OwnedFd; 2] {
    let mut p = [0; 2];
    // SAFETY: a two-int array for pipe(2).
    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
        die(&format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe(2) just returned these descriptors; they are owned from here on.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let buf = vec![7u8; bytes.min(60 * 1024)];
    if !buf.is_empty() {
        // SAFETY: writing a local buffer to our own pipe (it holds 64 KiB: never blocks).
        unsafe { libc::write(w.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    }
    [r, w]
}

/// Both ends of a loopback TCP connection, `bytes` sent and left unread.
fn connection(l: &TcpListener, bytes: usize) -> [TcpStream; 2] {
    let addr = l.local_addr().unwrap_or_else(|e| die(&format!("local_addr: {e}")));
    let mut c = TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect: {e}")));
    let (s, _) = l.accept().unwrap_or_else(|e| die(&format!("accept: {e}")));
    if bytes > 0 {
        let _ = c.write_all(&vec![7u8; bytes.min(60 * 1024)]);
    }
    [c, s]
}

/// Every 100 ms, `per_sec / 10` new things (rounded over time) until `secs` have passed.
fn paced(per_sec: f64, secs: f64, mut add: impl FnMut(f64)) {
    let start = Instant::now();
    let mut made = 0.0;
    while start.elapsed().as_secs_f64() < secs {
        let t = start.elapsed().as_secs_f64();
        while made < per_sec * t {
            add(t);
            made += 1.0;
        }
        sleep(Duration::from_millis(100));
    }
}

pub fn run(mode: &str, a: &[String]) -> bool {
    match mode {
        "pipes" | "tcp" | "fdchurn" => {
            let per_sec: f64 = num(a, 0, "PER_SEC");
            let secs: f64 = num(a, 1, "SECS");
            let bytes: usize = num(a, 2, "BYTES");
            let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
            ready("");
            let mut pipes: Vec<(f64, [OwnedFd; 2])> = Vec::new();
            let mut conns: Vec<(f64, [TcpStream; 2])> = Vec::new();
            paced(per_sec, secs, |t| {
                match mode {
                    "pipes" => pipes.push((t, pipe_with(bytes))),
                    "tcp" => conns.push((t, connection(&l, bytes))),
                    _ => {
                        // As many opened as closed: half pipes, half connections, each kept 1 s.
                        if pipes.len() <= conns.len() {
                            pipes.push((t, pipe_with(bytes)));
                        } else {
                            conns.push((t, connection(&l, bytes)));
                        }
                        pipes.retain(|p| t - p.0 < 1.0);
                        conns.retain(|c| t - c.0 < 1.0);
                    }
                }
            });
        }
        "serve" => serve(a),
        "grows" => {
            let state: String = num(a, 0, "STATE");
            let base: usize = num(a, 1, "BASE_MIB");
            let step: usize = num(a, 2, "STEP_MIB");
            let hold: f64 = num(a, 3, "HOLD_SECS");
            let n: usize = std::fs::read_to_string(&state)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            ready(&format!(",\"n\":{n}"));
            // Grow to the run's size over a second, then hold it.
            let mut held = Vec::new();
            let total = base + n * step;
            for _ in 0..total {
                held.push(chunk(1 << 20));
                sleep(Duration::from_millis((1000 / total.max(1)) as u64));
            }
            sleep(Duration::from_secs_f64(hold));
            std::fs::write(&state, format!("{}\n", n + 1)).unwrap_or_else(|e| die(&format!("{state}: {e}")));
        }
        _ => return false,
    }
    true
}

/// A tiny HTTP server: each `GET /work` keeps `KIB` KiB for good; `/metrics` counts them.
fn serve(a: &[String]) {
    let port: u16 = num(a, 0, "PORT");
    let kib: usize = num(a, 1, "KIB");
    let secs: f64 = num(a, 2, "SECS");
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| die(&format!("bind: {e}")));
    l.set_nonblocking(true)
        .unwrap_or_else(|e| die(&format!("nonblocking: {e}")));
    let port = l.local_addr().map(|a| a.port()).unwrap_or(port);
    ready(&format!(",\"port\":{port}"));
    let start = Instant::now();
    let mut kept = Vec::new();
    let mut served = 0u64;
    let mut buf = [0u8; 2048];
    while start.elapsed().as_secs_f64() < secs {
        let mut s = match l.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                sleep(Duration::from_millis(2));
                continue;
            }
            Err(e) => die(&format!("accept: {e}")),
        };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let body = if path == "/metrics" {
            format!("# TYPE lt_requests counter\nlt_requests_total {served}\n")
        } else if path == "/work" {
            // Some garbage the request makes and frees, and the part it keeps.
            let scratch = vec![1u8; 64 * 1024];
            std::hint::black_box(&scratch);
            kept.push(chunk(kib * 1024));
            served += 1;
            "ok\n".to_string()
        } else {
            "not found\n".to_string()
        };
        let _ = write!(
            s,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}
