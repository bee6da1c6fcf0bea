//! Line output to stdout that treats a closed pipe (`| head`) as a quiet end, not an error.
use std::io::{self, BufWriter, Stdout, Write};

use crate::output::Event;

pub struct Out {
    w: BufWriter<Stdout>,
    closed: bool,
    json: bool,
}

impl Out {
    /// `json`: events as JSON lines, else as text.
    pub fn new(json: bool) -> Self {
        Self {
            w: BufWriter::new(io::stdout()),
            closed: false,
            json,
        }
    }

    /// False once the reader went away: the caller should stop.
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    /// One event, in the chosen form.
    pub fn emit(&mut self, e: &Event) -> io::Result<()> {
        if self.json {
            self.line(&e.json())
        } else {
            self.line(&e.text())
        }
    }

    /// Any serialisable value as one JSON line (listings that are not events: `oom --json`).
    pub fn json<T: serde::Serialize>(&mut self, v: &T) -> io::Result<()> {
        self.line(&serde_json::to_string(v).map_err(io::Error::other)?)
    }

    pub fn line(&mut self, s: &str) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = writeln!(self.w, "{s}");
        self.check(r)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.w.flush();
        self.check(r)
    }

    fn check(&mut self, r: io::Result<()>) -> io::Result<()> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}
