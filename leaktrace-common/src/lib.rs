//! Types shared by the eBPF programs and the agent.
//!
//! Every type that crosses the kernel boundary is `#[repr(C)]`, `Copy`, has explicit padding and
//! no `bool`. The agent side gets `aya::Pod` impls behind the `user` feature.
#![no_std]

pub mod event;
pub mod names;
pub mod offsets;

pub use event::*;
pub use offsets::{Field, TpOffsets};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for TpOffsets {}
    unsafe impl aya::Pod for Field {}
    unsafe impl aya::Pod for PendingCall {}
    unsafe impl aya::Pod for RssDirty {}
}
