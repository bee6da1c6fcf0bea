//! Managed runtimes, the live side: attaching the collector (USDT) probes of JVM and CPython
//! processes and reading their events, JVM class histograms through the HotSpot attach mechanism,
//! and a watched command's stderr. What the events mean — GC figures, the heap floor, heap OOM —
//! is `state::gc`, fed through the monitor's batches (`input::GcEvent`).
//!
//! - [`probes`]: finds a tracked process's `libjvm.so` / python binary, attaches the collector
//!   probes, and decodes their events.
//! - [`jvm_attach`] and [`histogram`]: `inspectheap` through the attach socket, parsed and diffed;
//!   [`snapshots`]: when `run --heap-snapshots` takes them (rate-limited, in the background).
//! - [`stderr`]: `watch -- CMD`'s stderr, passed through, `OutOfMemoryError` lines picked out.
pub mod histogram;
pub mod jvm_attach;
pub mod probes;
pub mod snapshots;
pub mod stderr;
