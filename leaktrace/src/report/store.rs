//! The report directory: created 0700, reports written 0600 (atomically), read back with errors
//! that name the file.
use std::{
    fs::{self, DirBuilder, OpenOptions},
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{OomReport, group::OomGroups};

#[derive(Debug, Clone)]
pub struct ReportStore {
    pub dir: PathBuf,
    /// Recent `memory.oom.group` kills, whose reports are linked to each other.
    groups: std::sync::Arc<std::sync::Mutex<OomGroups>>,
}

impl ReportStore {
    /// Create the directory (0700) if needed and prove it is writable now, not at the first kill.
    pub fn open(dir: &Path) -> anyhow::Result<ReportStore> {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create report directory {}", dir.display()))?;
        } else if !dir.is_dir() {
            bail!("report directory {} is not a directory", dir.display());
        }
        let probe = dir.join(format!(".leaktrace-write-test-{}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .with_context(|| format!("report directory {} is not writable", dir.display()))?;
        let _ = fs::remove_file(&probe);
        Ok(ReportStore::at(dir))
    }

    /// A read-only view (for `leaktrace oom` / `report`): no creation, no write test.
    pub fn at(dir: &Path) -> ReportStore {
        ReportStore {
            dir: dir.to_path_buf(),
            groups: Default::default(),
        }
    }

    fn write_json<T: Serialize>(&self, stem: &str, value: &T) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("{stem}.json"));
        let tmp = self.dir.join(format!(".{stem}.json.tmp"));
        let body = serde_json::to_vec_pretty(value).context("serialising report")?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(path)
    }

    pub fn write(&self, r: &OomReport) -> anyhow::Result<PathBuf> {
        self.write_json(&r.id, r)
    }

    /// Writes a new OOM report; for a `memory.oom.group` kill, links it with the other victims'
    /// reports (rewriting those). Returns its path and the report as written.
    pub fn write_oom(&self, r: OomReport) -> anyhow::Result<(PathBuf, OomReport)> {
        let linked = match self.groups.lock() {
            Ok(mut g) => g.link(r),
            Err(poisoned) => poisoned.into_inner().link(r),
        };
        let (last, earlier) = linked.split_last().expect("link returns the report");
        for other in earlier {
            self.write(other)?;
        }
        Ok((self.write(last)?, last.clone()))
    }

    pub fn write_snapshot(&self, s: &crate::state::Snapshot) -> anyhow::Result<PathBuf> {
        self.write_json(&format!("snapshot-{}-{}", s.taken_unix_ms, s.pid), s)
    }

    /// Every `oom-*.json` in the directory, oldest first, each parsed or with its error.
    pub fn list(&self) -> anyhow::Result<Vec<(PathBuf, anyhow::Result<OomReport>)>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading report directory {}", self.dir.display())),
        };
        let mut paths: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("oom-") && n.ends_with(".json"))
            })
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|p| {
                let r = load_path(&p);
                (p, r)
            })
            .collect())
    }

    /// A report by id (`oom-...`), file name, or path.
    pub fn load(&self, id_or_path: &str) -> anyhow::Result<(PathBuf, OomReport)> {
        let as_path = Path::new(id_or_path);
        let path = if as_path.exists() || id_or_path.contains('/') {
            as_path.to_path_buf()
        } else if id_or_path.ends_with(".json") {
            self.dir.join(id_or_path)
        } else {
            self.dir.join(format!("{id_or_path}.json"))
        };
        let r = load_path(&path)?;
        Ok((path, r))
    }
}

pub fn load_path(path: &Path) -> anyhow::Result<OomReport> {
    let text = fs::read(path).with_context(|| format!("cannot read report {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a leaktrace report (corrupt or truncated?)", path.display()))
}
