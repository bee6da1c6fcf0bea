//! Line output to stdout that treats a closed pipe (`| head`) as a quiet end, not an error.
use std::io::{self, BufWriter, Stdout, Write};

pub struct Out {
    w: BufWriter<Stdout>,
    closed: bool,
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

impl Out {
    pub fn new() -> Self {
        Self {
            w: BufWriter::new(io::stdout()),
            closed: false,
        }
    }

    /// False once the reader went away: the caller should stop.
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    pub fn line(&mut self, s: &str) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = writeln!(self.w, "{s}");
        self.check(r)
    }

    pub fn json(&mut self, v: &serde_json::Value) -> io::Result<()> {
        self.line(&v.to_string())
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
