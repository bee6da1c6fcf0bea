//! `run --record FILE`: the monitor's observations as a record (README.md, "Records"), which
//! `leaktrace analyze FILE` replays through the same code.
use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::Path,
};

use anyhow::Context as _;

use crate::input::{Batch, Header};

pub struct Recorder {
    w: Box<dyn std::io::Write>,
    path: String,
}

impl Recorder {
    /// Create FILE (truncating it; gzip-compressed when it ends in `.gz`) and write the header.
    pub fn create(path: &Path, header: &Header) -> anyhow::Result<Recorder> {
        let f = File::create(path).with_context(|| format!("--record: cannot create {}", path.display()))?;
        let w: Box<dyn std::io::Write> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::write::GzEncoder::new(
                BufWriter::new(f),
                flate2::Compression::default(),
            ))
        } else {
            Box::new(BufWriter::new(f))
        };
        let mut r = Recorder {
            w,
            path: path.display().to_string(),
        };
        r.line(header)?;
        Ok(r)
    }

    fn line<T: serde::Serialize>(&mut self, v: &T) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.w, v).with_context(|| format!("writing {}", self.path))?;
        self.w
            .write_all(b"\n")
            .with_context(|| format!("writing {}", self.path))
    }

    pub fn write(&mut self, batches: &[Batch]) -> anyhow::Result<()> {
        for b in batches {
            self.line(b)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.w.flush().with_context(|| format!("writing {}", self.path))
    }

    /// Flush and close (a gzip stream gets its trailer).
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        drop(self.w);
        Ok(())
    }
}
