//! Probe diagnostics: the lines the eBPF programs log with aya-log on their cold paths
//! (`leaktrace-ebpf/src/error.rs`: a map update failed, a record not laid out as its format file
//! said). Each is counted, and shown through `log` at its level (`error`) as
//! `probe diagnostic: <message>`; a message repeated within [`REPEAT_QUIET`] is counted but not
//! shown again, so a map that stays full cannot flood the terminal.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;

/// The same message is shown at most once in this long.
pub const REPEAT_QUIET: Duration = Duration::from_secs(10);

/// Counts every record and forwards it to the process's logger, less repeats.
struct Counting {
    count: Arc<AtomicU64>,
    shown: Mutex<HashMap<String, Instant>>,
}

impl Counting {
    /// Whether `msg` should be shown at `now` (not shown within [`REPEAT_QUIET`]).
    fn due(&self, msg: &str, now: Instant) -> bool {
        let mut shown = self.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match shown.get(msg) {
            Some(t) if now.duration_since(*t) < REPEAT_QUIET => false,
            _ => {
                shown.insert(msg.to_string(), now);
                true
            }
        }
    }
}

impl log::Log for Counting {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let msg = record.args().to_string();
        if self.due(&msg, Instant::now()) {
            log::logger().log(
                &log::Record::builder()
                    .args(format_args!("probe diagnostic: {msg}"))
                    .level(record.level())
                    .target("leaktrace::probes")
                    .build(),
            );
        }
    }

    fn flush(&self) {}
}

/// Reads the probes' log ring buffer in a task of the event loop while it lives.
pub struct Diagnostics {
    count: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Diagnostics {
    /// Take the log ring buffer (`AYA_LOGS`) from the loaded object. Outside an event loop
    /// (nothing would poll it) the lines stay in the kernel and the count stays 0.
    pub fn start(ebpf: &mut Ebpf) -> anyhow::Result<Diagnostics> {
        let count = Arc::new(AtomicU64::new(0));
        let logger = EbpfLogger::init_with_logger(
            ebpf,
            Counting {
                count: Arc::clone(&count),
                shown: Mutex::new(HashMap::new()),
            },
        )
        .map_err(|e| anyhow::anyhow!("the probes' log ring buffer: {e}"))?;
        let task = match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                // SAFETY: the logger owns the ring buffer's descriptor and lives inside the
                // AsyncFd, which deregisters it when dropped, before the logger closes it.
                let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                    .map_err(|e| anyhow::anyhow!("registering the probes' log ring buffer: {e}"))?;
                Some(rt.spawn(async move {
                    while let Ok(mut ready) = fd.readable_mut().await {
                        ready.get_inner_mut().flush();
                        ready.clear_ready();
                    }
                }))
            }
            Err(_) => None,
        };
        Ok(Diagnostics { count, task })
    }

    /// Lines the probes have logged since they were loaded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Diagnostics {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use log::Log as _;

    use super::*;

    #[test]
    fn counts_every_line_and_quiets_repeats() {
        let c = Counting {
            count: Arc::new(AtomicU64::new(0)),
            shown: Mutex::new(HashMap::new()),
        };
        let t0 = Instant::now();
        assert!(c.due("update of map PENDING failed: error -7", t0));
        assert!(!c.due("update of map PENDING failed: error -7", t0 + Duration::from_secs(1)));
        assert!(c.due("tracepoint field mark_victim.comm did not read: error -14", t0));
        assert!(c.due("update of map PENDING failed: error -7", t0 + REPEAT_QUIET));
        for _ in 0..3 {
            c.log(
                &log::Record::builder()
                    .args(format_args!("update of map RSS_DIRTY failed: error -12"))
                    .level(log::Level::Error)
                    .target("leaktrace::probes::rss")
                    .build(),
            );
        }
        assert_eq!(c.count.load(Ordering::Relaxed), 3);
    }
}
