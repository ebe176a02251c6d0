//! The flags every node binary shares for its ports, and the parsers every binary's flags use:
//! durations (so `0` or junk is an error at start, never a silent clamp) and secrets given
//! either on the command line or in a file (read once, at the boundary, into a [`Secret`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{Backlog, Limits};

/// Flags for the ports that serve operators, scrapers and other nodes (admin, node link, queue).
#[derive(Debug, Clone, clap::Args)]
pub struct PortArgs {
    /// Accept-queue length of every listening port. Default: the kernel's ceiling,
    /// `net.core.somaxconn`, so a burst of reconnects is queued instead of dropped.
    #[arg(long, env = "EWS_LISTEN_BACKLOG")]
    pub listen_backlog: Option<Backlog>,

    /// HTTP connections each admin, node-link and queue port serves at once (one source address
    /// may hold half of them); at the cap the connection waiting longest without a request is
    /// closed to make room, and with none such more wait in the accept queue.
    #[arg(
        long,
        env = "EWS_PORT_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub port_max_connections: u32,

    /// Seconds a connection to an admin, node-link or queue port has to send a request head;
    /// also how long an idle keep-alive connection stays open.
    #[arg(
        long = "port-header-timeout-secs",
        env = "EWS_PORT_HEADER_TIMEOUT_SECS",
        default_value = "10",
        value_parser = positive_secs
    )]
    pub port_header_timeout: Duration,
}

impl PortArgs {
    pub fn backlog(&self) -> Backlog {
        self.listen_backlog.unwrap_or_else(Backlog::system)
    }

    /// The limits of an admin, node-link or queue port.
    pub fn limits(&self) -> Limits {
        let max_connections = self.port_max_connections as usize;
        Limits {
            max_connections,
            max_per_source: Some(crate::serve::per_source(max_connections)),
            header_read_timeout: self.port_header_timeout,
            ..Limits::internal()
        }
    }
}

/// An HS256 key for client tokens: what the worker verifies with and `ews-load` signs with,
/// spelled the same in both.
#[derive(Debug, Clone, clap::Args)]
pub struct Hs256Args {
    /// HS256 shared secret of client tokens.
    #[arg(long, env = "EWS_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<Secret>,

    /// File holding the HS256 secret (trailing white space ignored).
    #[arg(
        long,
        env = "EWS_JWT_HS256_SECRET_FILE",
        conflicts_with = "jwt_hs256_secret",
        value_parser = read_secret_file
    )]
    pub jwt_hs256_secret_file: Option<Secret>,
}

impl Hs256Args {
    /// The secret, from the flag or its file.
    pub fn secret(&self) -> Option<&Secret> {
        self.jwt_hs256_secret
            .as_ref()
            .or(self.jwt_hs256_secret_file.as_ref())
    }
}

/// The admin token: what every admin route but `/metrics` and `/info` requires, as
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Token the admin API requires (`Authorization: Bearer <token>`) on every route but
    /// `/metrics` and `/info`. Without one, the admin port listens on loopback only.
    #[arg(
        long,
        env = "EWS_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_token_file"
    )]
    pub admin_token: Option<Secret>,

    /// File holding the admin token (trailing white space ignored).
    #[arg(long, env = "EWS_ADMIN_TOKEN_FILE", value_parser = read_secret_file)]
    pub admin_token_file: Option<Secret>,
}

impl AdminArgs {
    pub fn token(&self) -> Option<&Secret> {
        self.admin_token.as_ref().or(self.admin_token_file.as_ref())
    }

    /// Where the admin port may listen: `wanted`, or, without a token, the loopback address of
    /// the same family and port (an admin API without a credential must not face a network).
    pub fn listen(&self, wanted: std::net::SocketAddr) -> std::net::SocketAddr {
        if self.token().is_some() || wanted.ip().is_loopback() {
            return wanted;
        }
        let loopback: std::net::IpAddr = if wanted.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        tracing::warn!(
            wanted = %wanted,
            "no --admin-token: the admin port listens on loopback only"
        );
        std::net::SocketAddr::new(loopback, wanted.port())
    }
}

/// The admin gate: with a token configured, `headers` must carry it; the refusal to send if
/// not. Without one the port is loopback-only ([`AdminArgs::listen`]) and open.
pub fn admin_refusal(
    token: Option<&Secret>,
    headers: &http::HeaderMap,
) -> Option<http::Response<crate::Body>> {
    let t = token?;
    (!bearer_matches(headers, t))
        .then(|| crate::reply::unauthorized("admin token required (Authorization: Bearer <token>)"))
}

/// Whether `headers` carry exactly `Authorization: Bearer <token>` (compared in constant time;
/// nothing is trimmed, so `Bearer  <token>` or a token with white space around it is refused).
pub fn bearer_matches(headers: &http::HeaderMap, token: &Secret) -> bool {
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A whole number of seconds, `0` included.
pub fn secs(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("not a whole number of seconds: {e}"))
}

/// A whole number of seconds, at least 1.
pub fn positive_secs(s: &str) -> Result<Duration, String> {
    match secs(s)? {
        d if d.is_zero() => Err("must be at least 1 second".into()),
        d => Ok(d),
    }
}

/// A whole number of milliseconds, at least 1.
pub fn positive_millis(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 millisecond".into()),
        Ok(n) => Ok(Duration::from_millis(n)),
        Err(e) => Err(format!("not a whole number of milliseconds: {e}")),
    }
}

/// A shared secret (the cluster secret, an HS256 key). Never printed: its `Debug` is redacted.
/// A flag `--x` takes it as text, its companion `--x-file` through [`read_secret_file`]; either
/// way an empty secret is an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim_end_matches(['\r', '\n']);
        if s.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Secret(s.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Reads a secret from the file at `path` (trailing white space ignored).
pub fn read_secret_file(path: &str) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    text.trim_end().parse().map_err(|e| format!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_refuse_zero_and_junk() {
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert_eq!(positive_secs("30"), Ok(Duration::from_secs(30)));
        assert!(positive_secs("0").is_err());
        assert!(positive_secs("-1").is_err());
        assert!(positive_secs("1.5").is_err());
        assert_eq!(positive_millis("250"), Ok(Duration::from_millis(250)));
        assert!(positive_millis("0").is_err());
    }

    #[test]
    fn secrets_come_from_text_or_a_file_and_are_never_printed() {
        assert_eq!("abc\n".parse::<Secret>().unwrap().expose(), "abc");
        assert!("".parse::<Secret>().is_err());
        let path = std::env::temp_dir().join(format!("ews-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file  \n").unwrap();
        let s = read_secret_file(path.to_str().unwrap()).unwrap();
        assert_eq!(s.expose(), "from-file");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret_file(path.to_str().unwrap()).is_err());
        let _ = std::fs::remove_file(&path);
        assert!(read_secret_file("/nonexistent/secret").is_err());
    }

    #[test]
    fn the_admin_token_is_a_bearer_and_without_it_admin_is_loopback_only() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            admin: AdminArgs,
        }
        let open = Cli::try_parse_from(["x"]).unwrap().admin;
        let any: std::net::SocketAddr = "0.0.0.0:9090".parse().unwrap();
        assert_eq!(open.listen(any), "127.0.0.1:9090".parse().unwrap());
        let with = Cli::try_parse_from(["x", "--admin-token", "t0k"])
            .unwrap()
            .admin;
        assert_eq!(with.listen(any), any);
        let token = with.token().unwrap();
        let mut h = http::HeaderMap::new();
        assert!(!bearer_matches(&h, token));
        h.insert(http::header::AUTHORIZATION, "Bearer t0x".parse().unwrap());
        assert!(!bearer_matches(&h, token));
        h.insert(http::header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        assert!(bearer_matches(&h, token));
        for near in [
            "Bearer  t0k",
            "Bearer t0k\t",
            "Bearer t0k x",
            "bearer t0k",
            "Bearer\tt0k",
        ] {
            h.insert(http::header::AUTHORIZATION, near.parse().unwrap());
            assert!(!bearer_matches(&h, token), "{near:?}");
        }
    }

    #[test]
    fn port_flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            ports: PortArgs,
        }
        let c = Cli::try_parse_from(["x", "--port-max-connections", "8"]).unwrap();
        assert_eq!(c.ports.limits().max_connections, 8);
        assert!(Cli::try_parse_from(["x", "--port-max-connections", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--port-header-timeout-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--listen-backlog", "0"]).is_err());
    }
}
