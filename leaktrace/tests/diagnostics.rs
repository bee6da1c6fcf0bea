//! Probe diagnostics end to end (aya-log): with the `PENDING` map shrunk to one slot, two threads
//! inside mmap at once make `sys_enter_mmap`'s map update fail (-E2BIG); the probe logs it, the
//! agent shows the line on stderr once (repeats are quieted) and counts every one in `/metrics`.
//! (Other processes' syscalls may fail the same update while the test runs: same line, same
//! count.)
mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::*;

const LINE: &str = "probe diagnostic: update of map PENDING failed: error -7";

fn metrics(port: u16) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read /metrics");
    body
}

fn diagnostics_total(body: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix("leaktrace_probe_diagnostics_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no leaktrace_probe_diagnostics_total in /metrics:\n{body}"))
}

#[test]
fn map_full_is_logged_shown_once_and_counted() {
    if !bpf_available("map_full_is_logged_shown_once_and_counted") {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let agent = Agent::start_env(
        &["run", "--syscalls", "--comm", "lt-sys-nothing", "--metrics", &listen],
        &[("LEAKTRACE_TEST_MAP_ENTRIES", "PENDING=1")],
        "running",
    );
    let st = Command::new(workload())
        .args(["mmap-race", "2"])
        .status()
        .expect("run lt-workload");
    assert!(st.success(), "lt-workload mmap-race: {st}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = agent.stderr().iter().filter(|l| l.contains(LINE)).count();
        if shown > 0 || Instant::now() > deadline {
            break shown;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(shown, 1, "the line shown once; stderr: {:#?}", agent.stderr());
    // The exporter takes the count at its next update (every interval).
    thread::sleep(Duration::from_millis(1500));
    let total = diagnostics_total(&metrics(port));
    assert!(total >= 1, "counted: {total}");
    let (status, _) = agent.stop();
    assert!(status.success(), "leaktrace exit: {status}");
}
