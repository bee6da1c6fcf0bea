//! One file per hook family. Each program is a thin `#[tracepoint] fn x(ctx) -> u32` calling
//! `try_x(ctx) -> Result<u32, i64>`.
pub mod kfunc;
pub mod lifecycle;
pub mod malloc;
pub mod mmap;
pub mod oom;
pub mod rss;
pub mod sites;
pub mod stackcopy;
pub mod usdt;
