//! Writes the OOM report carried by each `oom_kill` and `java_oom` event, and each pre-OOM snapshot, to the
//! report directory, and puts the file's path into the event (null when it could not be written:
//! the event itself is never lost).
use crate::{output::Event, report::store::ReportStore};

pub struct ReportSink {
    store: ReportStore,
}

impl ReportSink {
    pub fn new(store: ReportStore) -> Self {
        Self { store }
    }

    pub fn handle(&self, e: &mut Event) {
        match e {
            Event::OomKill {
                context: Some(c), task, ..
            } => match self.store.write_oom((*c.full).clone()) {
                Ok((p, linked)) => {
                    // A memory.oom.group kill: the report now lists the victims seen so far.
                    c.oom_group = linked.oom_group.clone();
                    *c.full = linked;
                    c.report = Some(p);
                }
                Err(err) => eprintln!("leaktrace: writing the OOM report for pid {}: {err:#}", task.pid),
            },
            Event::JavaOom {
                full: Some(r),
                report,
                subject,
                ..
            } => match self.store.write(r) {
                Ok(p) => *report = Some(p),
                Err(err) => eprintln!(
                    "leaktrace: writing the Java OOM report for pid {}: {err:#}",
                    subject.pid
                ),
            },
            Event::OomSnapshot { snapshot, path, .. } => match self.store.write_snapshot(snapshot) {
                Ok(p) => *path = Some(p),
                Err(err) => eprintln!("leaktrace: snapshot of pid {}: {err:#}", snapshot.pid),
            },
            _ => {}
        }
    }
}
