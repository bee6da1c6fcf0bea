//! Where the running kernel keeps a process's footprint counters, read from its BTF, for the floor
//! of each interval (`RssFloorConfig`, see leaktrace-ebpf `probes/rss.rs`). Nothing is assumed:
//! `task_struct.mm`, `mm_struct.rss_stat` (an array of `percpu_counter` from 6.2, a struct of
//! `atomic_long_t` before), the `MM_*` counter numbers and the raw tracepoint's arguments all come
//! from `/sys/kernel/btf/vmlinux`. When anything is missing the floor is off (one `fallback` line
//! in `doctor`), and `Obs.floor` stays null.
use anyhow::Context as _;
use aya::{Ebpf, programs::BtfTracePoint};
use leaktrace_common::{names::prog, rss::RssFloorConfig};

use super::{Check, LoadOptions, Status};
use crate::sys::btf::{Btf, Kind};

/// The name `doctor` shows and `--pretend-missing` takes.
pub const NAME: &str = "rss_floor";

const FALLBACK: &str = "floor stays null: only the reading at the end of each interval is known";

/// The footprint counters' layout in this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub task_mm: u32,
    pub rss_stat: u32,
    /// `percpu_counter` (6.2+) or `atomic_long_t`.
    pub counter: String,
    pub stride: u32,
    /// Offset of the 64-bit count inside one counter.
    pub count: u32,
    pub file: u32,
    pub anon: u32,
    pub swap: u32,
    pub shmem: u32,
    /// Parameters of the raw tracepoint after its `void *` context: 2 from 6.2, 3 before.
    pub args: usize,
}

impl Layout {
    /// Lowest of the three footprint counters.
    fn lowest(&self) -> u32 {
        self.anon.min(self.swap).min(self.shmem)
    }

    pub fn config(&self) -> RssFloorConfig {
        RssFloorConfig {
            enabled: 1,
            task_mm: self.task_mm,
            first: self.rss_stat + self.lowest() * self.stride + self.count,
            stride: self.stride,
            file_member: self.file,
            from_arg: u32::from(self.args == 3),
            anon_member: self.anon,
            _pad: 0,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "BTF: task_struct.mm@{}, mm_struct.rss_stat@{} ({} × {} B, count@{}), MM_ANON/SWAP/SHMEM = {}/{}/{}, args (mm, member{}",
            self.task_mm,
            self.rss_stat,
            self.counter,
            self.stride,
            self.count,
            self.anon,
            self.swap,
            self.shmem,
            if self.args == 3 {
                ", count): before 6.2, the minimum of anon from the count argument"
            } else {
                "): the minimum of the footprint"
            }
        )
    }
}

fn points_to(btf: &Btf, ty: u32, name: &str) -> bool {
    let t = btf.strip(ty);
    btf.kind(t) == Kind::Ptr && btf.target(t).is_some_and(|p| btf.name(btf.strip(p)) == name)
}

fn small(v: u64, what: &str) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("{what} out of range ({v})"))
}

/// Find the layout, or say what is missing.
pub fn layout(btf: &Btf) -> Result<Layout, String> {
    let (task_mm, mm_ty) = btf.offset_of("task_struct", "mm").map_err(|e| e.to_string())?;
    if !points_to(btf, mm_ty, "mm_struct") {
        return Err("task_struct.mm is not a struct mm_struct pointer".into());
    }
    let mm = btf
        .find("mm_struct", Kind::Struct)
        .ok_or("no struct mm_struct in BTF")?;
    let (rss_stat, rss_ty) = btf
        .member(mm, "rss_stat")
        .ok_or("no member mm_struct.rss_stat in BTF")?;
    let rss_ty = btf.strip(rss_ty);
    // 6.2+: struct percpu_counter rss_stat[NR_MM_COUNTERS]; before: struct mm_rss_stat
    // { atomic_long_t count[NR_MM_COUNTERS]; }.
    let (array_off, array_ty) = match btf.kind(rss_ty) {
        Kind::Array => (0, rss_ty),
        Kind::Struct => btf
            .member(rss_ty, "count")
            .ok_or("mm_struct.rss_stat has no `count` array (unknown layout)")?,
        k => return Err(format!("mm_struct.rss_stat is a {k:?} (unknown layout)")),
    };
    let (elem, n) = btf
        .array(array_ty)
        .ok_or("mm_struct.rss_stat is not an array of counters")?;
    let counter = Some(btf.name(elem))
        .filter(|n| !n.is_empty())
        .unwrap_or(btf.name(btf.strip(elem)))
        .to_string();
    let elem = btf.strip(elem);
    let count_field = if btf.name(elem) == "percpu_counter" {
        "count"
    } else {
        "counter"
    };
    let (count, count_ty) = btf
        .member(elem, count_field)
        .ok_or_else(|| format!("no member {counter}.{count_field} in BTF"))?;
    if btf.size(count_ty) != Some(8) {
        return Err(format!("{counter}.{count_field} is not 64-bit"));
    }
    let stride = btf.size(elem).ok_or_else(|| format!("size of {counter} unknown"))?;
    let e = |name: &str| -> Result<u32, String> {
        let v = btf
            .enumerator(name)
            .ok_or_else(|| format!("no enumerator {name} in BTF"))?;
        u32::try_from(v).map_err(|_| format!("{name} = {v}"))
    };
    let (file, anon, swap, shmem) = (
        e("MM_FILEPAGES")?,
        e("MM_ANONPAGES")?,
        e("MM_SWAPENTS")?,
        e("MM_SHMEMPAGES")?,
    );
    let mut fp = [anon, swap, shmem];
    fp.sort_unstable();
    if fp[1] != fp[0] + 1 || fp[2] != fp[0] + 2 || fp[2] >= n {
        return Err(format!(
            "MM_ANONPAGES/MM_SWAPENTS/MM_SHMEMPAGES = {anon}/{swap}/{shmem} are not three consecutive counters of {n}"
        ));
    }
    let tp = btf
        .find("btf_trace_rss_stat", Kind::Typedef)
        .ok_or("no btf_trace_rss_stat in BTF: the raw tracepoint's arguments cannot be checked")?;
    let params = btf.params(tp).ok_or("btf_trace_rss_stat is not a function pointer")?;
    let member_is_int = params
        .get(2)
        .is_some_and(|&t| matches!(btf.kind(btf.strip(t)), Kind::Int | Kind::Enum));
    if !(params.len() == 3 || params.len() == 4)
        || !params.get(1).is_some_and(|&t| points_to(btf, t, "mm_struct"))
        || !member_is_int
    {
        return Err("rss_stat's raw arguments are not (struct mm_struct *, int member, ...)".into());
    }
    let l = Layout {
        task_mm: small(task_mm, "task_struct.mm")?,
        rss_stat: small(rss_stat + array_off, "mm_struct.rss_stat")?,
        counter,
        stride: small(stride, "counter size")?,
        count: small(count, "counter.count")?,
        file,
        anon,
        swap,
        shmem,
        args: params.len() - 1,
    };
    let end = u64::from(l.config().first) + 2 * u64::from(l.stride) + 8;
    if l.stride < 8 || btf.size(mm).is_none_or(|s| end > s) {
        return Err("mm_struct.rss_stat does not fit in mm_struct".into());
    }
    Ok(l)
}

/// The configuration handed to the program and the `doctor` line (none when the command does
/// not want the floor). `rss_stat`: the tracepoint can be attached (the floor is measured there).
/// `btf`: the kernel's, as read (or why it could not be).
pub fn prepare(opts: &LoadOptions, rss_stat: bool, btf: &Result<Btf, String>) -> (RssFloorConfig, Option<Check>) {
    let fallback = |why: String| {
        (
            RssFloorConfig::OFF,
            Some(Check {
                what: NAME.into(),
                status: Status::Fallback,
                detail: format!("{why}; {FALLBACK}"),
            }),
        )
    };
    if !opts.floor {
        return (RssFloorConfig::OFF, None);
    }
    if opts.pretend_missing.iter().any(|p| p == NAME) {
        return fallback("disabled by --pretend-missing".into());
    }
    if !rss_stat {
        return fallback("needs raw_tp:rss_stat".into());
    }
    let found = btf.as_ref().map_err(Clone::clone).and_then(layout);
    match found {
        Ok(l) => (
            l.config(),
            Some(Check {
                what: NAME.into(),
                status: Status::Ok,
                detail: l.describe(),
            }),
        ),
        Err(why) => fallback(why),
    }
}

/// What the program's minimum is of, with this configuration.
pub fn kind(c: &RssFloorConfig) -> crate::events::rss_floor::FloorKind {
    use crate::events::rss_floor::FloorKind;
    if c.from_arg != 0 {
        FloorKind::Anon
    } else {
        FloorKind::Footprint
    }
}

/// Load and attach `rss_stat_floor` (the BTF tracepoint that replaces raw_tp:rss_stat when the
/// floor is on). Its arguments are typed from the kernel's BTF, which aya parses again here.
pub fn attach(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF")?;
    let p: &mut BtfTracePoint = ebpf
        .program_mut(prog::RSS_STAT_FLOOR)
        .with_context(|| format!("program {} not in the eBPF object", prog::RSS_STAT_FLOOR))?
        .try_into()?;
    p.load("rss_stat", &btf)
        .with_context(|| format!("loading {}", prog::RSS_STAT_FLOOR))?;
    p.attach().context("attaching tp_btf:rss_stat")?;
    Ok(())
}

/// The `doctor` detail when the floor was found but its program could not be attached (`error`:
/// why; None: rss_stat itself could not be attached).
pub fn unattached(error: Option<&str>) -> String {
    match error {
        Some(e) => format!("{e}; raw_tp:rss_stat attached instead; {FALLBACK}"),
        None => format!("raw_tp:rss_stat could not be attached; {FALLBACK}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::btf::VMLINUX;

    /// The running kernel's layout (skipped where it has no BTF).
    #[test]
    fn finds_the_counters_of_the_running_kernel() {
        let Ok(btf) = Btf::read(std::path::Path::new(VMLINUX)) else {
            eprintln!("SKIP: no {VMLINUX}");
            return;
        };
        let l = layout(&btf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.file, l.anon, l.swap, l.shmem), (0, 1, 2, 3));
        let mm = btf.find("mm_struct", Kind::Struct).unwrap();
        let (rss_off, _) = btf.member(mm, "rss_stat").unwrap();
        if l.counter == "percpu_counter" {
            // 6.2+: the raw tracepoint is (mm, member); count is the s64 after the lock.
            assert_eq!(l.args, 2);
            let pc = btf.find("percpu_counter", Kind::Struct).unwrap();
            assert_eq!(u64::from(l.stride), btf.size(pc).unwrap());
            assert_eq!(Some(u64::from(l.count)), btf.member(pc, "count").map(|m| m.0));
            assert_eq!(u64::from(l.rss_stat), rss_off);
        } else {
            assert_eq!((l.counter.as_str(), l.stride, l.args), ("atomic_long_t", 8, 3));
        }
        let c = l.config();
        assert_eq!(c.enabled, 1);
        assert_eq!(c.first, l.rss_stat + l.stride + l.count, "anon (1) is the lowest");
        assert_eq!(u64::from(c.task_mm), btf.offset_of("task_struct", "mm").unwrap().0);
        assert!(l.describe().contains("task_struct.mm@"), "{}", l.describe());
    }

    #[test]
    fn pretend_missing_and_no_rss_stat_are_named_fallbacks() {
        let want = LoadOptions {
            floor: true,
            ..LoadOptions::default()
        };
        let opts = LoadOptions {
            pretend_missing: vec![NAME.into()],
            ..want.clone()
        };
        let no_btf: Result<Btf, String> = Err("not read".into());
        let (c, check) = prepare(&opts, true, &no_btf);
        let check = check.unwrap();
        assert_eq!((c, check.status), (RssFloorConfig::OFF, Status::Fallback));
        assert!(check.detail.contains("--pretend-missing") && check.detail.contains("floor stays null"));
        let (c, check) = prepare(&want, false, &no_btf);
        assert_eq!(c.enabled, 0);
        assert!(check.unwrap().detail.contains("raw_tp:rss_stat"));
        let (c, check) = prepare(&LoadOptions::default(), true, &no_btf);
        assert_eq!(
            (c.enabled, check.is_none()),
            (0, true),
            "not wanted (trace): off, no line"
        );
    }
}
