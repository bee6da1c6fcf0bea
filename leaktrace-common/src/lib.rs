//! Types shared by the eBPF programs and the agent.
//!
//! Every type that crosses the kernel boundary is `#[repr(C)]`, `Copy`, has explicit padding and
//! no `bool`. The agent side gets `aya::Pod` impls behind the `user` feature.
#![no_std]

pub mod event;
pub mod names;
pub mod offsets;
pub mod rss;
pub mod sites;
pub mod usdt;

pub use event::*;
pub use offsets::{Field, TpOffsets};

#[cfg(feature = "user")]
mod pod {
    use super::*;

    macro_rules! pod {
        ($($t:ty),* $(,)?) => {$(
            // SAFETY: `#[repr(C)]` and `Copy`, with only integer fields (arrays of them, or
            // `Field`s, themselves integers) and explicit `_pad` fields where alignment needs
            // them: no implicit padding bytes, and every bit pattern is a valid value.
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(
        TpOffsets,
        Field,
        PendingCall,
        RssDirty,
        ExecArgsConfig,
        rss::RssSlot,
        rss::FloorKey,
        rss::FloorVal,
        rss::RssFloorConfig,
        sites::SiteKey,
        sites::SiteValue,
        sites::MallocSite,
        sites::AllocKey,
        sites::AllocInfo,
        sites::PendingAlloc,
        sites::SitesConfig,
        usdt::UsdtSpec,
        sites::CopyRequest,
        sites::StackCopyHeader,
    );
}
