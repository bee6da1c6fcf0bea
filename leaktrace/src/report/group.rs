//! Linking the reports of one `memory.oom.group` kill: the kernel kills every process of the
//! group in one OOM event, and leaktrace sees one `oom:mark_victim` per process. Each victim
//! gets its own report; all of them carry the same `oom_group` (the cgroup, one `group_id`, and
//! every victim with its report id), rewritten as the later victims arrive.

use super::{GroupVictim, OomReport};

/// Kills of the same group cgroup at most this far apart (kernel time) are one group kill.
pub const WINDOW_NS: u64 = 5_000_000_000;

#[derive(Debug, Default)]
pub struct OomGroups {
    open: Vec<Open>,
}

#[derive(Debug)]
struct Open {
    memcg: String,
    last_ts_ns: u64,
    reports: Vec<OomReport>,
}

impl OomGroups {
    /// Links `r` to the earlier victims of its group kill; returns every report to (re)write,
    /// `r` last. A report without `oom_group` comes back alone.
    pub fn link(&mut self, mut r: OomReport) -> Vec<OomReport> {
        let ts = r.kill_ts_ns;
        self.open.retain(|g| ts.saturating_sub(g.last_ts_ns) <= WINDOW_NS);
        let Some(group) = r.oom_group.clone() else {
            return vec![r];
        };
        let Some(g) = self.open.iter_mut().find(|g| g.memcg == group.memcg) else {
            self.open.push(Open {
                memcg: group.memcg,
                last_ts_ns: ts,
                reports: vec![r.clone()],
            });
            return vec![r];
        };
        let first = g.reports[0].oom_group.as_ref().expect("grouped");
        let mut victims: Vec<GroupVictim> = first.victims.clone();
        victims.extend(group.victims);
        let group_id = first.group_id.clone();
        if let Some(og) = r.oom_group.as_mut() {
            og.group_id = group_id.clone();
            og.victims = victims.clone();
        }
        g.last_ts_ns = ts;
        g.reports.push(r);
        for rep in &mut g.reports {
            if let Some(og) = rep.oom_group.as_mut() {
                og.group_id = group_id.clone();
                og.victims = victims.clone();
            }
        }
        g.reports.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::OomGroup;

    fn report(pid: u32, ts_ns: u64, group: Option<&str>) -> OomReport {
        let id = format!("oom-{}-{pid}", 1000 + ts_ns / 1_000_000);
        let text = include_str!("testdata/minimal-report.json");
        let mut r: OomReport = serde_json::from_str(text).expect("minimal report");
        r.id = id.clone();
        r.kill_ts_ns = ts_ns;
        r.victim.pid = pid;
        r.oom_group = group.map(|g| OomGroup {
            memcg: g.into(),
            group_id: id.clone(),
            victims: vec![GroupVictim {
                pid,
                comm: Some("w".into()),
                report: id.clone(),
            }],
        });
        r
    }

    #[test]
    fn victims_of_one_group_kill_are_linked_both_ways() {
        let mut g = OomGroups::default();
        assert_eq!(g.link(report(1, 0, None)).len(), 1);
        let first = g.link(report(10, 1_000, Some("/grp")));
        assert_eq!(first.len(), 1);
        let second = g.link(report(11, 2_000, Some("/grp")));
        assert_eq!(second.len(), 2, "the first report is rewritten");
        let third = g.link(report(12, 3_000, Some("/grp")));
        assert_eq!(third.len(), 3);
        for r in &third {
            let og = r.oom_group.as_ref().unwrap();
            assert_eq!(og.group_id, first[0].id);
            let pids: Vec<u32> = og.victims.iter().map(|v| v.pid).collect();
            assert_eq!(pids, [10, 11, 12]);
            assert_eq!(og.victims[2].report, third[2].id);
        }
        // Another cgroup, or the same one much later, is another kill.
        assert_eq!(g.link(report(20, 4_000, Some("/other"))).len(), 1);
        let later = g.link(report(13, 3_000 + WINDOW_NS + 1, Some("/grp")));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].oom_group.as_ref().unwrap().group_id, later[0].id);
    }
}
