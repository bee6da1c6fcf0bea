//! A real Prometheus (and its exporters) for the tests: Debian packages installed by the test
//! when missing, servers started on free ports in a temporary directory, and a plain HTTP client
//! for its API.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("leaktrace-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `cmd --version` runs and succeeds.
pub fn has(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The programs `commands` on PATH, installing the Debian `packages` if any is missing. Under
/// CI=true a failed install fails the test; locally the test is skipped with the reason.
pub fn installed(test: &str, packages: &[&str], commands: &[&str]) -> bool {
    if commands.iter().all(|c| has(c)) {
        return true;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("apt-get {}: {e}", args.join(" ")))
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    let err = String::from_utf8_lossy(&o.stderr);
                    Err(format!(
                        "apt-get {} failed ({}): {}",
                        args.join(" "),
                        o.status,
                        err.lines().last().unwrap_or("")
                    ))
                }
            })
    };
    eprintln!(
        "{test}: {} not on PATH, installing the Debian package(s) {}",
        commands.join("/"),
        packages.join(" ")
    );
    let mut install = vec!["-q", "-y", "--no-install-recommends", "install"];
    install.extend(packages);
    let r = apt(&["-q", "update"]).and_then(|()| apt(&install));
    match r {
        Ok(()) if commands.iter().all(|c| has(c)) => true,
        Ok(()) => fail_or_skip(
            test,
            &format!("the packages installed no {} on PATH", commands.join("/")),
        ),
        Err(e) => fail_or_skip(test, &e),
    }
}

/// Prometheus (and promtool) on PATH, from Debian's `prometheus` package if missing.
pub fn prometheus_available(test: &str) -> bool {
    installed(test, &["prometheus"], &["prometheus", "promtool"])
}

pub fn fail_or_skip(test: &str, why: &str) -> bool {
    if ci() {
        panic!("{test}: a package is needed and CI=true: {why}");
    }
    eprintln!("SKIP {test}: not available: {why}");
    false
}

/// A plain HTTP/1.0 GET; returns (status, head, body).
pub fn http_get(port: u16, target: &str, accept: Option<&str>) -> Result<(u16, String, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from {addr}: {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((status, head.to_string(), body.to_string()))
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Prometheus API call: the `data` member of a successful answer.
pub fn api(port: u16, target: &str) -> Result<Value, String> {
    let (status, _, body) = http_get(port, target, None)?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("{target}: HTTP {status}, not JSON ({e}): {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{target}: {v}"));
    }
    Ok(v["data"].clone())
}

/// Instant query: the result vector.
pub fn query(port: u16, q: &str) -> Result<Vec<Value>, String> {
    let d = api(port, &format!("/api/v1/query?query={}", urlencode(q)))?;
    Ok(d["result"].as_array().cloned().unwrap_or_default())
}

/// A Prometheus server on 127.0.0.1 with its data and log in `dir`.
pub struct Prometheus {
    pub port: u16,
    log: PathBuf,
    _child: Killed,
}

impl Prometheus {
    /// Start `prometheus` with `config` (YAML), written to `dir/prometheus.yml`.
    pub fn start(dir: &Path, config: &str) -> Prometheus {
        let port = free_port();
        let file = dir.join("prometheus.yml");
        fs::write(&file, config).unwrap();
        let log = dir.join("prometheus.log");
        let out = fs::File::create(&log).unwrap();
        let child = Killed(
            Command::new("prometheus")
                .arg(format!("--config.file={}", file.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start prometheus"),
        );
        Prometheus {
            port,
            log,
            _child: child,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the scrape job `job` has a healthy target, or panic after `timeout`.
    pub fn wait_up(&self, job: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if query(self.port, &format!("up{{job=\"{job}\"}} == 1")).is_ok_and(|r| !r.is_empty()) {
                return;
            }
            if start.elapsed() > timeout {
                let targets = api(self.port, "/api/v1/targets")
                    .map(|v| v.to_string())
                    .unwrap_or_else(|e| e);
                panic!(
                    "Prometheus did not scrape job {job} within {timeout:?}; targets: {targets}; log: {}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}
