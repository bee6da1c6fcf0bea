//! RSS change detection at near-zero cost. `kmem:rss_stat` fires on every RSS counter change (each
//! page fault, unmap, ...). A raw tracepoint (no record formatting) compares the current tgid and
//! the agent's scan epoch with a per-CPU one-entry cache; only when they differ does it touch the
//! shared `RSS_DIRTY` map. A fault storm of one process therefore costs one shared-map update per
//! CPU per agent interval. The agent reads exact counters from /proc for dirty processes only.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use leaktrace_common::RssDirty;

use super::sites;
use crate::{
    emit::pid_tgid,
    maps::{RSS_DIRTY, RSS_EPOCH, RSS_LAST},
};

#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn rss_stat(ctx: RawTracePointContext) -> i32 {
    try_rss_stat(&ctx).unwrap_or(1)
}

fn try_rss_stat(ctx: &RawTracePointContext) -> Result<i32, i64> {
    let (tgid, _) = pid_tgid();
    if tgid == 0 {
        return Ok(0);
    }
    // Allocation sites: every Nth fault per CPU (stacks off: pruned by the verifier).
    sites::fault_tick(ctx, tgid);
    let epoch = RSS_EPOCH.get(0).copied().unwrap_or(0);
    let Some(last) = RSS_LAST.get_ptr_mut(0) else {
        return Ok(0);
    };
    // SAFETY: per-CPU slot, only this CPU touches it while we run.
    unsafe {
        if (*last).tgid == tgid && (*last).epoch == epoch {
            return Ok(0);
        }
        (*last).tgid = tgid;
        (*last).epoch = epoch;
    }
    RSS_DIRTY.insert(&tgid, &RssDirty { tgid, _pad: 0, epoch }, 0)?;
    Ok(0)
}
