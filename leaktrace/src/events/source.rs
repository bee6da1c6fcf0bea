//! Reading both ring buffers through `AsyncFd`, and the per-CPU drop counters.
use std::time::Duration;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
};
use leaktrace_common::{EVENT_KIND_SLOTS, EventKind, names};
use tokio::io::unix::AsyncFd;

use super::{KernelEvent, decode};

/// Decoded kernel events per kind since start, indexed by `EventKind as usize` (slot 0 unused).
pub type Counts = [u64; EVENT_KIND_SLOTS as usize];

pub struct EventSource {
    events: AsyncFd<RingBuf<MapData>>,
    lifecycle: AsyncFd<RingBuf<MapData>>,
    drops: PerCpuArray<MapData, u64>,
    reported_drops: [u64; EVENT_KIND_SLOTS as usize],
    /// Records that did not decode (a kernel/agent mismatch); counted, never fatal.
    pub decode_errors: u64,
    /// Events handled so far, for self-monitoring.
    pub handled: u64,
    /// Decoded events per kind (indexed by `EventKind as usize`), for metrics.
    kinds: [u64; EVENT_KIND_SLOTS as usize],
}

fn ring(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<AsyncFd<RingBuf<MapData>>> {
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} not in the eBPF object"))?;
    let rb = RingBuf::try_from(map).with_context(|| format!("map {name} is not a ring buffer"))?;
    // SAFETY: the ring buffer owns its descriptor for as long as the AsyncFd holds it, and the
    // AsyncFd is dropped (deregistering) before the ring buffer closes it.
    unsafe { AsyncFd::register(rb) }
        .map_err(|e| anyhow::anyhow!("registering ring buffer {name} with the event loop: {e}"))
}

impl EventSource {
    pub fn new(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let drops = ebpf
            .take_map(names::DROPS)
            .context("map DROPS not in the eBPF object")?;
        Ok(Self {
            lifecycle: ring(ebpf, names::LIFECYCLE)?,
            events: ring(ebpf, names::EVENTS)?,
            drops: PerCpuArray::try_from(drops).context("map DROPS")?,
            reported_drops: [0; EVENT_KIND_SLOTS as usize],
            decode_errors: 0,
            handled: 0,
            kinds: [0; EVENT_KIND_SLOTS as usize],
        })
    }

    /// Wait until a ring buffer signals data, or `max` passes (wakeups are batched in the kernel,
    /// so callers also drain on a timer).
    pub async fn wait(&mut self, max: Duration) {
        tokio::select! {
            r = self.events.readable_mut() => if let Ok(mut g) = r { g.clear_ready() },
            r = self.lifecycle.readable_mut() => if let Ok(mut g) = r { g.clear_ready() },
            () = tokio::time::sleep(max) => {}
        }
    }

    /// Everything waiting in both buffers, in time order.
    pub fn drain(&mut self, out: &mut Vec<KernelEvent>) {
        let start = out.len();
        for rb in [&mut self.lifecycle, &mut self.events] {
            let rb = rb.get_mut();
            while let Some(item) = rb.next() {
                match decode(&item) {
                    Ok(e) => {
                        self.kinds[e.hdr.kind as usize] += 1;
                        out.push(e);
                    }
                    Err(e) => {
                        self.decode_errors += 1;
                        log::debug!("undecodable record: {e}");
                    }
                }
            }
        }
        self.handled += (out.len() - start) as u64;
        out[start..].sort_by_key(|e| e.hdr.ts_ns);
    }

    /// Decoded events per kind since start, indexed by `EventKind as usize` (slot 0 unused).
    pub fn counts(&self) -> Counts {
        self.kinds
    }

    /// Reservation failures per kind since the last call.
    pub fn new_drops(&mut self) -> Vec<(EventKind, u64)> {
        let mut out = Vec::new();
        for kind in EventKind::ALL {
            let idx = kind as u32;
            let Ok(per_cpu) = self.drops.get(&idx, 0) else { continue };
            let total: u64 = per_cpu.iter().sum();
            let seen = &mut self.reported_drops[idx as usize];
            if total > *seen {
                out.push((kind, total - *seen));
                *seen = total;
            }
        }
        out
    }
}
