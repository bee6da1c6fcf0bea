//! Types shared by the eBPF programs and the agent.
//!
//! Every type that crosses the kernel boundary is `#[repr(C)]`, `Copy`, has explicit padding and
//! no `bool`. The agent side gets `aya::Pod` impls behind the `user` feature.
#![no_std]

pub mod event;
pub mod names;
pub mod offsets;
pub mod sites;

pub use event::*;
pub use offsets::{Field, TpOffsets};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for TpOffsets {}
    unsafe impl aya::Pod for Field {}
    unsafe impl aya::Pod for PendingCall {}
    unsafe impl aya::Pod for RssDirty {}
    unsafe impl aya::Pod for sites::SiteKey {}
    unsafe impl aya::Pod for sites::SiteValue {}
    unsafe impl aya::Pod for sites::MallocSite {}
    unsafe impl aya::Pod for sites::AllocKey {}
    unsafe impl aya::Pod for sites::AllocInfo {}
    unsafe impl aya::Pod for sites::PendingAlloc {}
    unsafe impl aya::Pod for sites::SitesConfig {}
}
