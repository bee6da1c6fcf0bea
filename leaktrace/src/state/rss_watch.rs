//! The agent's half of the kernel's RSS change detection (see leaktrace-ebpf `probes/rss.rs`):
//! bump the epoch, then collect and clear the processes marked under the previous epochs.
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use leaktrace_common::{RssDirty, names};

pub struct RssWatch {
    dirty: HashMap<MapData, u32, RssDirty>,
    epoch_map: Array<MapData, u64>,
    epoch: u64,
}

impl RssWatch {
    pub fn new(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let dirty = ebpf.take_map(names::RSS_DIRTY).context("map RSS_DIRTY")?;
        let epoch = ebpf.take_map(names::RSS_EPOCH).context("map RSS_EPOCH")?;
        Ok(Self {
            dirty: HashMap::try_from(dirty).context("RSS_DIRTY")?,
            epoch_map: Array::try_from(epoch).context("RSS_EPOCH")?,
            epoch: 0,
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

    /// Entries in the kernel map (for the churn test: nothing left for dead processes).
    pub fn len(&self) -> usize {
        self.dirty.keys().count()
    }
}
