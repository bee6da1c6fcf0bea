//! A watched command's stderr, passed through unchanged while lines naming a Java
//! `OutOfMemoryError` are picked out (`watch -- CMD`).
use std::io::Write as _;

use tokio::io::AsyncReadExt as _;

/// The text that marks the line.
pub const OOM_MARK: &str = "java.lang.OutOfMemoryError";

/// Copy `from` to our stderr byte for byte; send every complete line containing [`OOM_MARK`].
pub async fn pass_through(mut from: impl tokio::io::AsyncRead + Unpin, tx: tokio::sync::mpsc::UnboundedSender<String>) {
    let mut to = std::io::stderr();
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Small writes to our own stderr: done in place.
        let _ = to.write_all(&buf[..n]);
        let _ = to.flush();
        for &b in &buf[..n] {
            if b == b'\n' {
                pick(&line, &tx);
                line.clear();
            } else if line.len() < 4096 {
                line.push(b);
            }
        }
    }
    pick(&line, &tx);
}

fn pick(line: &[u8], tx: &tokio::sync::mpsc::UnboundedSender<String>) {
    let s = String::from_utf8_lossy(line);
    if s.contains(OOM_MARK) {
        let _ = tx.send(s.trim_end().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn picks_the_error_lines() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let text: &[u8] = b"starting\nException in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\tat X.main\nException: java.lang.OutOfMemoryError thrown from the UncaughtExceptionHandler";
        pass_through(text, tx).await;
        assert_eq!(
            rx.recv().await.as_deref(),
            Some("Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space")
        );
        assert_eq!(
            rx.recv().await.as_deref(),
            Some("Exception: java.lang.OutOfMemoryError thrown from the UncaughtExceptionHandler")
        );
        assert_eq!(rx.recv().await, None);
    }
}
