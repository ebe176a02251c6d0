//! The hooks file (`--hooks-file`): which routes call which backend, for which hooks.
//!
//! A file, not more `--routes` syntax: a backend has a URL, a secret, a timeout, a concurrency
//! and a breaker, and several routes share one; written into `--routes` that is unreadable.
//! JSON, because Terraform writes it with `jsonencode` and every language reads it:
//!
//! ```json
//! {
//!   "backends": {
//!     "app": { "url": "https://app.internal/ews/hooks", "secretFile": "/etc/ews/hook-secret",
//!              "timeoutMs": 2000, "concurrency": 64 },
//!     "fn": { "lambda": "arn:aws:lambda:eu-central-1:123456789012:function:ews-hooks" }
//!   },
//!   "routes": {
//!     "/chat": { "backend": "app", "hooks": ["connect", "subscribe", "publish", "disconnect"] },
//!     "/bot": { "backend": "app", "hooks": ["message", "rpc"] }
//!   }
//! }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ews_proto::hook::HookKind;
use serde::Deserialize;

/// `--hooks-file`.
#[derive(Debug, Clone, clap::Args)]
pub struct HooksArgs {
    /// JSON file naming the backends a route's hooks call (connect, refresh, subscribe,
    /// publish, rpc, message, disconnect) and how: see docs/hooks.md. Read once at start.
    #[arg(long, env = "EWS_HOOKS_FILE")]
    pub hooks_file: Option<PathBuf>,

    /// File holding the secret that signs calls to every `url` backend of the hooks file that
    /// names no `secretFile` of its own (in AWS: fetched from SSM at boot).
    #[arg(long, env = "EWS_HOOK_SECRET_FILE")]
    pub hook_secret_file: Option<PathBuf>,
}

/// The file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksFile {
    pub backends: BTreeMap<String, BackendConfig>,
    pub routes: BTreeMap<String, RouteConfig>,
}

/// One backend: where its hooks go and how far it is trusted to keep up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendConfig {
    /// `http://` or `https://` (verified against the system's roots): each call is a POST.
    #[serde(default)]
    pub url: Option<String>,
    /// Or an AWS Lambda function (name or ARN): each call is an `Invoke` (RequestResponse),
    /// authorised by the worker's IAM role instead of a signature.
    #[serde(default)]
    pub lambda: Option<String>,
    /// File holding the secret that signs every call (`X-Ews-Signature`); without it calls
    /// are unsigned (a backend on a private network that trusts its callers).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// One call's deadline (a retry gets its own).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Calls in flight to this backend from this worker; more wait (their clients unread).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Consecutive failures that open the circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit fails calls at once before one probe is let through.
    #[serde(default = "default_breaker_open_ms")]
    pub breaker_open_ms: u64,
}

fn default_timeout_ms() -> u64 {
    2_000
}
fn default_concurrency() -> usize {
    64
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_ms() -> u64 {
    10_000
}

/// A route's hooks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub backend: String,
    pub hooks: Vec<HookKind>,
}

/// Where a backend's calls go.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Http(http::Uri),
    Lambda(String),
}

/// A backend's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub target: Target,
    pub secret: Option<Vec<u8>>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
}

/// A route's hooks, checked: its backend exists and it names each hook once.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub path: String,
    pub backend: String,
    pub hooks: Vec<HookKind>,
}

/// The whole file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub backends: Vec<Backend>,
    pub routes: Vec<Route>,
}

impl HooksFile {
    /// Reads and checks `path`; secret files are read relative to the working directory, and
    /// `default_secret` signs the `url` backends that name none.
    pub fn load(path: &Path, default_secret: Option<&Path>) -> Result<Checked, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--hooks-file {}: {e}", path.display()))?;
        let mut file: HooksFile = serde_json::from_str(&text)
            .map_err(|e| format!("--hooks-file {}: {e}", path.display()))?;
        if let Some(secret) = default_secret {
            for b in file.backends.values_mut() {
                if b.url.is_some() && b.secret_file.is_none() {
                    b.secret_file = Some(secret.to_path_buf());
                }
            }
        }
        file.check()
            .map_err(|e| format!("--hooks-file {}: {e}", path.display()))
    }

    pub fn check(self) -> Result<Checked, String> {
        let mut backends = Vec::new();
        for (name, b) in self.backends {
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_'
                });
            if !ok_name {
                return Err(format!(
                    "backend {name:?}: a name is 1 to 64 of a-z, 0-9, '-' and '_'"
                ));
            }
            let target = match (&b.url, &b.lambda) {
                (Some(url), None) => {
                    let uri: http::Uri = url
                        .parse()
                        .map_err(|e| format!("backend {name}: url {url:?}: {e}"))?;
                    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                        return Err(format!(
                            "backend {name}: url {url:?} is not an http:// or https:// URL"
                        ));
                    }
                    Target::Http(uri)
                }
                (None, Some(f)) => {
                    // A name (1 to 64 of letters, digits, '-', '_') or an ARN, maybe qualified.
                    let ok = (1..=170).contains(&f.len())
                        && f.bytes().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b':' | b'$')
                        });
                    if !ok {
                        return Err(format!(
                            "backend {name}: lambda {f:?} is not a function name or ARN"
                        ));
                    }
                    Target::Lambda(f.clone())
                }
                _ => {
                    return Err(format!(
                        "backend {name}: give either url or lambda, not both or neither"
                    ))
                }
            };
            if matches!(target, Target::Lambda(_)) && b.secret_file.is_some() {
                return Err(format!(
                    "backend {name}: a lambda backend is authorised by IAM, not a secretFile"
                ));
            }
            if !(1..=60_000).contains(&b.timeout_ms) {
                return Err(format!("backend {name}: timeoutMs must be 1 to 60000"));
            }
            if !(1..=10_000).contains(&b.concurrency) {
                return Err(format!("backend {name}: concurrency must be 1 to 10000"));
            }
            if b.breaker_failures == 0 || !(1..=600_000).contains(&b.breaker_open_ms) {
                return Err(format!(
                    "backend {name}: breakerFailures must be at least 1 and breakerOpenMs 1 to 600000"
                ));
            }
            let secret = match &b.secret_file {
                None => None,
                Some(p) => {
                    let s = ews_http::args::read_secret_file(&p.to_string_lossy())
                        .map_err(|e| format!("backend {name}: secretFile {e}"))?;
                    Some(s.expose().as_bytes().to_vec())
                }
            };
            backends.push(Backend {
                name,
                target,
                secret,
                timeout: Duration::from_millis(b.timeout_ms),
                concurrency: b.concurrency,
                breaker_failures: b.breaker_failures,
                breaker_open: Duration::from_millis(b.breaker_open_ms),
            });
        }
        let mut routes = Vec::new();
        for (path, r) in self.routes {
            if !backends.iter().any(|b| b.name == r.backend) {
                return Err(format!("route {path}: no backend named {:?}", r.backend));
            }
            if r.hooks.is_empty() {
                return Err(format!("route {path}: no hooks listed"));
            }
            let mut hooks = r.hooks.clone();
            hooks.sort_by_key(|h| h.as_str());
            hooks.dedup();
            if hooks.len() != r.hooks.len() {
                return Err(format!("route {path}: a hook is listed twice"));
            }
            routes.push(Route {
                path,
                backend: r.backend,
                hooks,
            });
        }
        Ok(Checked { backends, routes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Checked, String> {
        serde_json::from_str::<HooksFile>(text)
            .map_err(|e| e.to_string())?
            .check()
    }

    #[test]
    fn a_file_is_checked_with_clear_errors() {
        let ok = parse(
            r#"{"backends":{"app":{"url":"http://127.0.0.1:9/h","timeoutMs":500}},
                "routes":{"/chat":{"backend":"app","hooks":["connect","publish"]}}}"#,
        )
        .expect("valid");
        assert_eq!(ok.backends[0].timeout, Duration::from_millis(500));
        assert_eq!(ok.backends[0].concurrency, 64);
        assert_eq!(
            ok.routes[0].hooks,
            vec![HookKind::Connect, HookKind::Publish]
        );
        for (bad, says) in [
            (
                r#"{"backends":{},"routes":{"/c":{"backend":"x","hooks":["connect"]}}}"#,
                "no backend named",
            ),
            (
                r#"{"backends":{"a":{}},"routes":{}}"#,
                "either url or lambda",
            ),
            (
                r#"{"backends":{"a":{"url":"http://h/","lambda":"f"}},"routes":{}}"#,
                "either url or lambda",
            ),
            (
                r#"{"backends":{"a":{"lambda":"my fn"}},"routes":{}}"#,
                "not a function name",
            ),
            (
                r#"{"backends":{"a":{"lambda":"f","secretFile":"s"}},"routes":{}}"#,
                "authorised by IAM",
            ),
            (
                r#"{"backends":{"a":{"url":"ftp://h/"}},"routes":{}}"#,
                "not an http",
            ),
            (
                r#"{"backends":{"a":{"url":"http://h/","timeoutMs":0}},"routes":{}}"#,
                "timeoutMs",
            ),
            (
                r#"{"backends":{"A b":{"url":"http://h/"}},"routes":{}}"#,
                "a name is",
            ),
            (
                r#"{"backends":{"a":{"url":"http://h/"}},"routes":{"/c":{"backend":"a","hooks":["connect","connect"]}}}"#,
                "twice",
            ),
            (
                r#"{"backends":{"a":{"url":"http://h/"}},"routes":{"/c":{"backend":"a","hooks":["teleport"]}}}"#,
                "unknown variant",
            ),
            (
                r#"{"backends":{"a":{"url":"http://h/","timeout":1}},"routes":{}}"#,
                "unknown field",
            ),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
