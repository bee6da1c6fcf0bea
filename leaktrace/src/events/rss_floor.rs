//! The agent's half of the floor (see leaktrace-ebpf `probes/rss.rs`): once the epoch was bumped,
//! the lowest footprint each process had during the epoch that ended, merged from the per-CPU
//! slots (`RSS_LAST`) and the flushed entries (`RSS_FLOOR`); entries of ended epochs are deleted,
//! so a dead process's entries never outlive the next interval.
//!
//! Read slots first, then the map: a slot flushed between the two reads is then seen in the slot
//! (it was read before the flush) or in the map (the flush came first). Reading in the other order
//! could miss it.
use std::{collections::HashMap as StdHashMap, os::fd::AsFd as _};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap, IterableMap as _, MapData, PerCpuArray},
};
use leaktrace_common::{
    names,
    rss::{FLOOR_NONE, FloorKey, FloorVal, RSS_FLOOR_ENTRIES, RssSlot},
};

use crate::sys::bpfmap;

const CAPACITY: usize = RSS_FLOOR_ENTRIES as usize;
/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u32 = 1;

/// What the kernel's minimum is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    /// anon + swap + shmem (6.2+).
    Footprint,
    /// anon alone, from the tracepoint's count argument (before 6.2).
    Anon,
}

pub struct Floors {
    kind: FloorKind,
    slots: PerCpuArray<MapData, RssSlot>,
    entries: HashMap<MapData, FloorKey, FloorVal>,
    page: u64,
    /// tgid → lowest footprint (bytes) in the epoch that ended last.
    last: StdHashMap<u32, u64>,
    warned_full: bool,
    drain: bpfmap::Drain,
}

/// The lowest footprint (pages) per tgid of epoch `ended`, and the entries to delete (every one of
/// an ended epoch: `ended` itself was just merged, older ones were merged from the slots when
/// their epoch ended). Slots of other epochs are stale or already current.
pub fn merge(
    ended: u64,
    slots: impl IntoIterator<Item = RssSlot>,
    entries: impl IntoIterator<Item = (FloorKey, FloorVal)>,
) -> (StdHashMap<u32, u64>, Vec<FloorKey>) {
    let mut lowest: StdHashMap<u32, u64> = StdHashMap::new();
    let mut add = |tgid: u32, min: u64| {
        if tgid != 0 && min != FLOOR_NONE {
            let e = lowest.entry(tgid).or_insert(min);
            *e = (*e).min(min);
        }
    };
    for s in slots {
        if s.epoch == ended {
            add(s.tgid, s.min);
        }
    }
    let mut delete = Vec::new();
    for (k, v) in entries {
        if v.epoch == ended {
            add(k.tgid, v.min);
        }
        if v.epoch <= ended {
            delete.push(k);
        }
    }
    (lowest, delete)
}

/// What `Obs.floor` says: the kernel's lowest footprint, never above the reading at the end of the
/// interval (`footprint`); with no footprint event in the interval, the footprint did not move.
/// With [`FloorKind::Anon`] the minimum is of anon alone: the footprint minus how far anon rose
/// from it (`anon`: the end reading's), which assumes swap and shmem did not dip.
pub fn floor_of(kind: FloorKind, kernel_min: Option<u64>, anon: u64, footprint: u64) -> u64 {
    match (kind, kernel_min) {
        (_, None) => footprint,
        (FloorKind::Footprint, Some(m)) => m.min(footprint),
        (FloorKind::Anon, Some(m)) => footprint.saturating_sub(anon.saturating_sub(m)),
    }
}

impl Floors {
    pub fn new(ebpf: &mut Ebpf, kind: FloorKind) -> anyhow::Result<Self> {
        let slots = ebpf.take_map(names::RSS_LAST).context("map RSS_LAST")?;
        let entries = ebpf.take_map(names::RSS_FLOOR).context("map RSS_FLOOR")?;
        // SAFETY: sysconf without preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(Self {
            kind,
            slots: PerCpuArray::try_from(slots).context("RSS_LAST")?,
            entries: HashMap::try_from(entries).context("RSS_FLOOR")?,
            page: u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096),
            last: StdHashMap::new(),
            warned_full: false,
            drain: bpfmap::Drain::default(),
        })
    }

    /// Merge epoch `ended` (the kernel already writes `ended + 1`).
    pub fn collect(&mut self, ended: u64) {
        let slots: Vec<RssSlot> = self
            .slots
            .get(&0, 0)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let entries = self.take_entries(ended);
        if entries.len() * 10 >= CAPACITY * 9 && !self.warned_full {
            self.warned_full = true;
            log::warn!(
                "RSS_FLOOR holds {} of {CAPACITY} entries: the least recently flushed are evicted, so some floors may read too high",
                entries.len()
            );
        }
        let (lowest, delete) = merge(ended, slots, entries);
        if !self.drain.on() {
            for k in &delete {
                let _ = self.entries.remove(k);
            }
        }
        self.last = lowest
            .into_iter()
            .map(|(t, p)| (t, p.saturating_mul(self.page)))
            .collect();
    }

    /// Every entry of `RSS_FLOOR`. With the batch drain (one or a few `bpf()` calls) the map is
    /// emptied and the entries of the epoch now running are put back (without overwriting one
    /// the kernel re-created meanwhile: then the lower minimum is kept); otherwise each entry is
    /// read with two calls and deleted with a third in `collect`.
    fn take_entries(&mut self, ended: u64) -> Vec<(FloorKey, FloorVal)> {
        if let Some(all) = self
            .drain
            .take::<FloorKey, FloorVal>("RSS_FLOOR", self.entries.map().fd().as_fd())
        {
            for (k, v) in all.iter().filter(|(_, v)| v.epoch > ended) {
                if self.entries.insert(k, v, u64::from(BPF_NOEXIST)).is_err()
                    && let Ok(now) = self.entries.get(k, 0)
                    && now.epoch == v.epoch
                    && v.min < now.min
                {
                    let _ = self.entries.insert(k, v, 0);
                }
            }
            return all;
        }
        self.entries.iter().filter_map(Result::ok).collect()
    }

    /// `Obs.floor` of `tgid` for the epoch that ended last, given its anon and footprint read
    /// just after.
    pub fn floor(&self, tgid: u32, anon: u64, footprint: u64) -> u64 {
        floor_of(self.kind, self.last.get(&tgid).copied(), anon, footprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(tgid: u32, epoch: u64, min: u64) -> RssSlot {
        RssSlot {
            tgid,
            epoch,
            min,
            ..RssSlot::EMPTY
        }
    }

    fn entry(tgid: u32, cpu: u32, epoch: u64, min: u64) -> (FloorKey, FloorVal) {
        (FloorKey::new(tgid, cpu, epoch), FloorVal { epoch, min })
    }

    #[test]
    fn the_lowest_of_slots_and_entries_of_the_ended_epoch() {
        // Process 10 ran on CPU 0 then moved to CPU 1 (flushed from CPU 0), then came back to
        // CPU 0 and is still in its slot; process 20 only in a slot; 30 only flushed.
        let slots = [slot(10, 5, 900), slot(20, 5, 300), slot(40, 4, 1), slot(50, 6, 2)];
        let entries = [
            entry(10, 0, 5, 700),
            entry(10, 1, 5, 800),
            entry(30, 1, 5, 50),
            entry(60, 0, 4, 3), // an older epoch: merged from its slot back then
            entry(70, 1, 6, 4), // the new epoch: kept for the next merge
            entry(80, 0, 5, FLOOR_NONE),
        ];
        let (lowest, mut delete) = merge(5, slots, entries);
        assert_eq!(lowest.get(&10), Some(&700));
        assert_eq!(lowest.get(&20), Some(&300));
        assert_eq!(lowest.get(&30), Some(&50));
        assert_eq!(lowest.get(&40), None, "a slot of an older epoch is stale");
        assert_eq!(lowest.get(&50), None, "a slot of the new epoch is not this interval");
        assert_eq!(lowest.get(&60), None);
        assert_eq!(lowest.get(&70), None);
        assert_eq!(lowest.get(&80), None, "no footprint seen");
        delete.sort_by_key(|k| (k.tgid, k.cpu_parity));
        let tg: Vec<u32> = delete.iter().map(|k| k.tgid).collect();
        assert_eq!(
            tg,
            vec![10, 10, 30, 60, 80],
            "everything of an ended epoch goes, the new one stays"
        );
    }

    #[test]
    fn parity_keeps_the_ended_epoch_apart_from_the_next() {
        assert_ne!(FloorKey::new(7, 3, 10), FloorKey::new(7, 3, 11));
        assert_eq!(FloorKey::new(7, 3, 10), FloorKey::new(7, 3, 12));
        assert_ne!(FloorKey::new(7, 3, 10), FloorKey::new(7, 2, 10));
        assert_eq!(FloorKey::new(7, 3, 11).cpu_parity, 7);
    }

    #[test]
    fn the_floor_never_exceeds_the_end_reading() {
        let f = FloorKind::Footprint;
        assert_eq!(floor_of(f, Some(10 << 20), 0, 30 << 20), 10 << 20);
        assert_eq!(
            floor_of(f, Some(40 << 20), 0, 30 << 20),
            30 << 20,
            "clamped to the end footprint"
        );
        assert_eq!(
            floor_of(f, None, 0, 30 << 20),
            30 << 20,
            "no event: the footprint did not move"
        );
        // Before 6.2: anon's minimum 12 MiB, anon 20 MiB at the end of a 30 MiB footprint.
        let a = FloorKind::Anon;
        assert_eq!(floor_of(a, Some(12 << 20), 20 << 20, 30 << 20), 22 << 20);
        assert_eq!(
            floor_of(a, Some(25 << 20), 20 << 20, 30 << 20),
            30 << 20,
            "anon ended lower"
        );
        assert_eq!(floor_of(a, Some(0), 40 << 20, 30 << 20), 0, "never below zero");
        assert_eq!(floor_of(a, None, 20 << 20, 30 << 20), 30 << 20);
    }
}
