//! The agent's half of the kernel's RSS change detection (see leaktrace-ebpf `probes/rss.rs`):
//! bump the epoch, then collect and clear the processes marked under the previous epochs, and
//! (with the floor on) merge the lowest footprints of the epoch that ended (`rss_floor.rs`).
use std::os::fd::AsFd as _;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, IterableMap as _, MapData},
};
use leaktrace_common::{RssDirty, names};

use super::rss_floor::{FloorKind, Floors};
use crate::sys::bpfmap;

pub struct RssChanges {
    dirty: HashMap<MapData, u32, RssDirty>,
    epoch_map: Array<MapData, u64>,
    epoch: u64,
    floors: Option<Floors>,
    drain: bpfmap::Drain,
}

impl RssChanges {
    /// `floor`: what the program's floor is of, if it measures one (`Probes::rss_floor`).
    pub fn new(ebpf: &mut Ebpf, floor: Option<FloorKind>) -> anyhow::Result<Self> {
        let dirty = ebpf.take_map(names::RSS_DIRTY).context("map RSS_DIRTY")?;
        let epoch = ebpf.take_map(names::RSS_EPOCH).context("map RSS_EPOCH")?;
        Ok(Self {
            dirty: HashMap::try_from(dirty).context("RSS_DIRTY")?,
            epoch_map: Array::try_from(epoch).context("RSS_EPOCH")?,
            epoch: 0,
            floors: floor.map(|k| Floors::new(ebpf, k)).transpose()?,
            drain: bpfmap::Drain::default(),
        })
    }

    /// Processes whose RSS changed since the last call. Marks made after the epoch bump stay for
    /// the next call.
    pub fn take_dirty(&mut self) -> Vec<u32> {
        let current = self.epoch;
        self.epoch += 1;
        if let Err(e) = self.epoch_map.set(0, self.epoch, 0) {
            log::warn!("RSS_EPOCH update failed: {e}");
        }
        if let Some(f) = self.floors.as_mut() {
            f.collect(current);
        }
        if let Some(marked) = self
            .drain
            .take::<u32, RssDirty>("RSS_DIRTY", self.dirty.map().fd().as_fd())
        {
            // Marks made after the bump belong to the next call: put them back (rare: only a
            // process that moved between the bump and the drain).
            for (tgid, v) in &marked {
                if v.epoch > current {
                    let _ = self.dirty.insert(tgid, v, 0);
                }
            }
            return marked.into_iter().map(|(tgid, _)| tgid).collect();
        }
        let marked: Vec<(u32, u64)> = self
            .dirty
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k, v.epoch))
            .collect();
        let mut out = Vec::with_capacity(marked.len());
        for (tgid, epoch) in marked {
            if epoch <= current {
                let _ = self.dirty.remove(&tgid);
            }
            out.push(tgid);
        }
        out
    }

    /// `Obs.floor` of `tgid` for the interval [`take_dirty`](Self::take_dirty) ended, given its
    /// anon and footprint read after it; None when the floor is off.
    pub fn floor(&self, tgid: u32, anon: u64, footprint: u64) -> Option<u64> {
        self.floors.as_ref().map(|f| f.floor(tgid, anon, footprint))
    }
}
