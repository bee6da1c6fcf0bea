//! Outputs. Every sink reads the monitor's typed events (`output::Event`) and, for the live views,
//! the process table; none touches the kernel side or the monitor itself.
//!
//! - `out`: JSON lines or text on stdout;
//! - `reports`: OOM reports and pre-OOM snapshots written to the report directory (it fills in the
//!   event's file path before the other sinks see it);
//! - `record`: the monitor's observations, for `analyze` (`run --record`);
//! - `metrics`: Prometheus `/metrics` (with `resmetrics`: descriptors, kernel memory, the host's
//!   memory in parts);
//! - `top`: the terminal view.
pub mod gc_metrics;
pub mod metrics;
pub mod out;
pub mod record;
pub mod reports;
pub mod resmetrics;
pub mod top;
