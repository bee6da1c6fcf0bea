//! The HTTP side: `POST /api/v1/query_range` with a blocking client (ureq: `analyze` is a batch
//! job with nothing else to do while it waits, so no event loop is needed), optional credentials,
//! and a readable line for every way it can fail.
use std::time::Duration;

use super::{
    api::{Answer, one_line, parse_range},
    plan::{Grid, api_secs},
};

/// Environment variables read for credentials.
pub const ENV_TOKEN: &str = "LEAKTRACE_PROMETHEUS_TOKEN";
pub const ENV_TOKEN_FILE: &str = "LEAKTRACE_PROMETHEUS_TOKEN_FILE";
pub const ENV_USER: &str = "LEAKTRACE_PROMETHEUS_USER";
pub const ENV_PASSWORD: &str = "LEAKTRACE_PROMETHEUS_PASSWORD";

/// Largest answer read (decompressed).
const MAX_BODY: u64 = 1 << 30;
/// Longest one call may take (Prometheus's own query timeout is 2 min by default).
const TIMEOUT: Duration = Duration::from_secs(180);

/// Credentials sent with every request.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(…)"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, …)"),
        }
    }
}

impl Auth {
    /// Credentials from the environment (`var` looks a variable up): a bearer token
    /// (`LEAKTRACE_PROMETHEUS_TOKEN`, or a file holding it: `LEAKTRACE_PROMETHEUS_TOKEN_FILE`),
    /// or basic auth (`LEAKTRACE_PROMETHEUS_USER` and `LEAKTRACE_PROMETHEUS_PASSWORD`); none
    /// when none is set. Two kinds at once, or half of basic auth, is an error.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Auth>, String> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let token = match (get(ENV_TOKEN), get(ENV_TOKEN_FILE)) {
            (Some(_), Some(_)) => return Err(format!("set {ENV_TOKEN} or {ENV_TOKEN_FILE}, not both")),
            (Some(t), None) => Some(t),
            (None, Some(path)) => {
                let t =
                    std::fs::read_to_string(&path).map_err(|e| format!("{ENV_TOKEN_FILE}: cannot read {path}: {e}"))?;
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(format!("{ENV_TOKEN_FILE}: {path} is empty"));
                }
                Some(t)
            }
            (None, None) => None,
        };
        let basic = match (get(ENV_USER), get(ENV_PASSWORD)) {
            (Some(user), Some(password)) => Some(Auth::Basic { user, password }),
            (None, None) => None,
            _ => return Err(format!("basic auth needs both {ENV_USER} and {ENV_PASSWORD}")),
        };
        match (token, basic) {
            (Some(_), Some(_)) => Err("a bearer token and basic auth are both set: keep one".into()),
            (Some(t), None) => Ok(Some(Auth::Bearer(t))),
            (None, b) => Ok(b),
        }
    }

    fn header(&self) -> String {
        match self {
            Auth::Bearer(t) => format!("Bearer {t}"),
            Auth::Basic { user, password } => format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
        }
    }
}

/// Standard base64 with padding (RFC 4648), for basic auth.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Prometheus server's query API.
pub struct Client {
    agent: ureq::Agent,
    /// The base URL, without a trailing `/`.
    base: String,
    auth: Option<Auth>,
}

impl Client {
    pub fn new(base: &str, auth: Option<Auth>) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("leaktrace/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_string(),
            auth,
        }
    }

    /// `query` over one chunk of the grid.
    pub fn query_range(&self, query: &str, g: &Grid) -> Result<Answer, String> {
        let url = format!("{}/api/v1/query_range", self.base);
        let mut req = self.agent.post(&url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a.header());
        }
        let form = [
            ("query", query.to_string()),
            ("start", api_secs(g.start_ms)),
            ("end", api_secs(g.end_ms)),
            ("step", api_secs(g.step_ms)),
        ];
        let mut resp = req
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .map_err(|e| unreachable(&self.base, &e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .lossy_utf8(true)
            .read_to_string()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    format!(
                        "{url}: the answer is over 1 GiB: narrow the query, or use a larger --step or a shorter --range"
                    )
                }
                e => format!("{url}: reading the answer (HTTP {status}): {e}"),
            })?;
        if status == 401 || status == 403 {
            return Err(format!(
                "{url}: HTTP {status} ({}): credentials come from {ENV_TOKEN}, {ENV_TOKEN_FILE} or {ENV_USER}/{ENV_PASSWORD}",
                if self.auth.is_some() { "refused" } else { "none sent" }
            ));
        }
        parse_range(status, &body).map_err(|e| {
            if e.starts_with("HTTP ") || e.starts_with("not a Prometheus") {
                format!("{url}: {e}")
            } else {
                e
            }
        })
    }
}

/// A request that got no HTTP answer, in words.
fn unreachable(base: &str, e: &ureq::Error) -> String {
    let why = match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::Timeout(_) => format!("no answer within {}s", TIMEOUT.as_secs()),
        ureq::Error::BadUri(u) => format!("not a URL: {u}"),
        ureq::Error::RedirectFailed => "it redirects the query (POST): give the URL it redirects to".to_string(),
        e => one_line(&e.to_string(), 200),
    };
    format!("cannot reach Prometheus at {base}: {why}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn credentials_from_the_environment() {
        assert_eq!(Auth::from_env(env(&[])).unwrap(), None);
        assert_eq!(
            Auth::from_env(env(&[(ENV_TOKEN, "abc")])).unwrap(),
            Some(Auth::Bearer("abc".into()))
        );
        let basic = Auth::from_env(env(&[(ENV_USER, "Aladdin"), (ENV_PASSWORD, "open sesame")]))
            .unwrap()
            .unwrap();
        // RFC 7617's example.
        assert_eq!(basic.header(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(format!("{basic:?}"), "Basic(Aladdin, …)", "no secret in debug output");
        assert!(Auth::from_env(env(&[(ENV_USER, "a")])).is_err());
        assert!(Auth::from_env(env(&[(ENV_TOKEN, "t"), (ENV_USER, "a"), (ENV_PASSWORD, "b")])).is_err());
        let dir = std::env::temp_dir().join(format!("leaktrace-prom-token-{}", std::process::id()));
        std::fs::write(&dir, "tok\n").unwrap();
        let p = dir.display().to_string();
        assert_eq!(
            Auth::from_env(env(&[(ENV_TOKEN_FILE, &p)])).unwrap(),
            Some(Auth::Bearer("tok".into()))
        );
        assert!(Auth::from_env(env(&[(ENV_TOKEN_FILE, &p), (ENV_TOKEN, "x")])).is_err());
        std::fs::remove_file(&dir).unwrap();
        let e = Auth::from_env(env(&[(ENV_TOKEN_FILE, &p)])).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i}");
        }
    }

    #[test]
    fn nothing_listening_is_one_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let e = Client::new(&base, None)
            .query_range(
                "up",
                &Grid {
                    start_ms: 0,
                    end_ms: 1000,
                    step_ms: 1000,
                },
            )
            .unwrap_err();
        assert!(e.starts_with(&format!("cannot reach Prometheus at {base}: ")), "{e}");
        assert!(e.to_lowercase().contains("refused"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }
}
