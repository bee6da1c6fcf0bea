//! Booting a kernel with an initramfs under QEMU and reading what the guest prints on its serial
//! console, line by line, until it powers off or the deadline passes.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How QEMU runs the guest's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`/dev/kvm`), `-cpu host`.
    Kvm,
    /// Software emulation (multi-threaded TCG), `-cpu max`: slower, works everywhere.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

pub struct Boot<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub append: String,
    pub timeout: Duration,
}

pub struct Outcome {
    /// The guest powered off by itself (QEMU exited) before the deadline.
    pub finished: bool,
    pub elapsed: Duration,
    /// QEMU's own stderr (why it could not start, if it could not).
    pub stderr: String,
}

/// QEMU's command line for `boot`.
pub fn command(boot: &Boot) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    match boot.accel {
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    cmd.args(["-m", &boot.memory_mib.to_string(), "-smp", &boot.cpus.to_string()])
        .args(["-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(boot.kernel)
        .arg("-initrd")
        .arg(boot.initrd)
        .arg("-append")
        .arg(&boot.append);
    cmd
}

/// Boots and calls `on_line` for each console line (without `\r\n`) as it arrives.
pub fn run(boot: &Boot, mut on_line: impl FnMut(&str)) -> Result<Outcome> {
    let mut cmd = command(boot);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("could not start qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut line = Vec::new();
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            let _ = tx.send(std::mem::take(&mut line));
                        } else if b != b'\r' {
                            line.push(b);
                        }
                    }
                }
            }
        }
        if !line.is_empty() {
            let _ = tx.send(line);
        }
    });
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let deadline = start + boot.timeout;
    let mut finished = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => on_line(&String::from_utf8_lossy(&line)),
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                finished = true;
                break;
            }
        }
    }
    if !finished {
        kill(&mut child);
    }
    let _ = child.wait();
    let _ = reader.join();
    // Lines that arrived between the deadline and the kill.
    while let Ok(line) = rx.try_recv() {
        on_line(&String::from_utf8_lossy(&line));
    }
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Outcome {
        finished,
        elapsed: start.elapsed(),
        stderr,
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
}
