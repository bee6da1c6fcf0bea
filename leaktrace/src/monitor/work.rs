//! `--work-metric URL#NAME`: the work a service reports doing (a Prometheus counter such as
//! requests served), read once per tick over plain HTTP, so memory can be judged per unit of
//! work (`analysis::work`). The driver's I/O; the value goes into `Batch::work`.
use std::time::Duration;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Where the counter is: `http://HOST:PORT/PATH#NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSource {
    /// `HOST:PORT` to connect to.
    pub addr: String,
    /// The `Host:` header.
    pub host: String,
    pub path: String,
    /// The metric: its samples (every label set) are summed.
    pub name: String,
}

/// Largest answer read.
const MAX_BODY: usize = 4 << 20;

impl WorkSource {
    /// Parse `http://HOST[:PORT][/PATH]#NAME` (HTTPS is not supported: the counter is read from
    /// the service's own metrics endpoint, usually on localhost).
    pub fn parse(s: &str) -> Result<WorkSource, String> {
        let (url, name) = s
            .rsplit_once('#')
            .ok_or_else(|| format!("`{s}`: expected URL#NAME, e.g. http://127.0.0.1:8080/metrics#requests_total"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return Err(format!("`{name}` is not a metric name"));
        }
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("`{url}`: only http:// is supported")
            } else {
                format!("`{url}` is not an http:// URL")
            }
        })?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        if hostport.is_empty() || hostport.contains(['@', ' ']) {
            return Err(format!("`{url}`: no host"));
        }
        let bad_port = || format!("`{url}`: bad port");
        let addr = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((_, "")) => format!("{hostport}:80"),
                Some((_, p)) if p.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok()) => hostport.to_string(),
                _ => return Err(bad_port()),
            }
        } else {
            match hostport.rsplit_once(':') {
                None => format!("{hostport}:80"),
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => hostport.to_string(),
                _ => return Err(bad_port()),
            }
        };
        Ok(WorkSource {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
            name: name.to_string(),
        })
    }

    /// The counter now; None when the endpoint does not answer in `timeout` or has no such metric.
    pub async fn read(&self, timeout: Duration) -> Option<f64> {
        let body = tokio::time::timeout(timeout, self.get()).await.ok()?.ok()?;
        parse_metric(&body, &self.name)
    }

    async fn get(&self) -> std::io::Result<String> {
        let mut s = TcpStream::connect(&self.addr).await?;
        let req = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_BODY {
                return Err(std::io::Error::other("answer too large"));
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
        if head.split_whitespace().nth(1).is_none_or(|c| c != "200") {
            return Err(std::io::Error::other("not 200 OK"));
        }
        Ok(body.to_string())
    }
}

/// The sum of every sample of `name` in a Prometheus text exposition (`NAME` or `NAME{...}`;
/// for a counter named without it, `NAME_total` too). None when there is none.
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    let mut sum = None::<f64>;
    let total = format!("{name}_total");
    for l in text.lines() {
        let l = l.trim_start();
        if l.starts_with('#') {
            continue;
        }
        let (metric, rest) = match l.find(['{', ' ']) {
            Some(i) => (&l[..i], &l[i..]),
            None => continue,
        };
        if metric != name && metric != total {
            continue;
        }
        let rest = if rest.starts_with('{') {
            match rest.rfind('}') {
                Some(i) => &rest[i + 1..],
                None => continue,
            }
        } else {
            rest
        };
        let Some(v) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if v.is_finite() {
            sum = Some(sum.unwrap_or(0.0) + v);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let w = WorkSource::parse("http://127.0.0.1:8080/metrics#requests_total").unwrap();
        assert_eq!(
            w,
            WorkSource {
                addr: "127.0.0.1:8080".into(),
                host: "127.0.0.1:8080".into(),
                path: "/metrics".into(),
                name: "requests_total".into()
            }
        );
        let w = WorkSource::parse("http://localhost#served").unwrap();
        assert_eq!((w.addr.as_str(), w.path.as_str()), ("localhost:80", "/metrics"));
        let w = WorkSource::parse("http://[::1]:9000/m#x").unwrap();
        assert_eq!(w.addr, "[::1]:9000");
        for bad in [
            "http://127.0.0.1:8080/metrics",
            "https://x/metrics#a",
            "ftp://x#a",
            "http://#a",
            "http://x:99999/#a",
            "http://x/#",
            "http://x/#a b",
        ] {
            assert!(WorkSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metrics() {
        let text = "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{code=\"200\"} 10\nrequests_total{code=\"500\"} 2\nrequests_created 1.7e9\nother 5\n";
        assert_eq!(parse_metric(text, "requests_total"), Some(12.0));
        assert_eq!(parse_metric(text, "requests"), Some(12.0));
        assert_eq!(parse_metric("served 3 1700000000000\n", "served"), Some(3.0));
        assert_eq!(parse_metric(text, "missing"), None);
        assert_eq!(parse_metric("x{a=\"}\"} 1\n", "x"), Some(1.0));
        assert_eq!(parse_metric("x NaN\nx{", "x"), None);
    }
}
