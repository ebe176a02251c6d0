//! Command-line flags of the gateway. Every flag also reads an `EWS_*` environment variable, so
//! the same names work in a systemd `EnvironmentFile`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ews_cluster::placement::Placement;
use ews_http::args::{positive_secs, secs, AdminArgs, Hs256Args, PortArgs};

use crate::handler::HandlerName;
use crate::hooks::HooksArgs;
use crate::rebalance::RebalanceArgs;
use crate::sinks::SinkArgs;

/// Flags of the WebSocket gateway (public port, admin port, auth, limits, drain).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Public address (the ALB target): `/info`, WebSocket routes, the test page.
    #[arg(long, env = "EWS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Admin address (`/metrics`, `/api/v1/sessions`, `/api/v1/publish`); never expose it
    /// through the load balancer. Without `--admin-token` it is bound to loopback whatever the
    /// address asks.
    #[arg(long, env = "EWS_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// One machine, no cluster: serves the test page at `/` and, without a configured key,
    /// signs a development token with an HS256 secret (kept beside the queue's data, so a
    /// restart accepts the same token) and prints a ready URL with it. The public and admin
    /// ports default to 127.0.0.1 then (pass `--listen 0.0.0.0:8080` to expose it), and the
    /// drain to 2 seconds.
    #[arg(long, env = "EWS_STANDALONE")]
    pub standalone: bool,

    /// Serve the test page at `/` (always on with `--standalone`): a browser client that sends
    /// events with acknowledgements and shows reconnects, built on the client library.
    #[arg(long, env = "EWS_TEST_PAGE")]
    pub test_page: bool,

    /// Accept clients without a token. Logs a warning at start; for local tests only.
    #[arg(long, env = "EWS_NO_AUTH")]
    pub no_auth: bool,

    #[command(flatten)]
    pub jwt: JwtArgs,

    /// WebSocket routes: comma-separated `PATH=HANDLER[@PLACEMENT][+presence]` (handlers: the built-in
    /// `ingest`, `echo`, `greet`, and any a program built on the library registers;
    /// placements: `local`, the default, or for any handler but `ingest` `random`,
    /// `least-loaded`, `key-hash`: the handler then runs on a worker chosen among the serving
    /// ones, over the node link). Outside a cluster every placement is local. `+presence`:
    /// the route's sessions announce their topic joins and leaves to each other (`join`,
    /// `leave` frames).
    #[arg(
        long,
        env = "EWS_ROUTES",
        default_value = "/ws=ingest,/echo=echo,/greet=greet@random"
    )]
    pub routes: Routes,

    #[command(flatten)]
    pub hooks: HooksArgs,

    /// Sessions whose handler this worker runs for other workers' clients (remote placement);
    /// past it, other workers place elsewhere. Default: this worker's own session capacity.
    #[arg(long, env = "EWS_MAX_HOSTED_SESSIONS")]
    pub max_hosted_sessions: Option<usize>,

    /// Seconds between the first SIGTERM and exit: sessions are closed (1012) spread over this
    /// window.
    #[arg(long = "drain-seconds", env = "EWS_DRAIN_SECONDS", default_value = "30", value_parser = secs)]
    pub drain_window: Duration,

    /// Seconds between server pings; a peer that has sent nothing (not even a pong) for two
    /// intervals is dropped. Keep it below the load balancer's idle timeout.
    #[arg(long = "ping-interval-secs", env = "EWS_PING_INTERVAL_SECS", default_value = "30", value_parser = positive_secs)]
    pub ping_interval: Duration,

    /// Most concurrent WebSocket sessions; past it upgrades get 503. Default: derived from
    /// RLIMIT_NOFILE (after raising the soft limit to the hard one).
    #[arg(long, env = "EWS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Seconds a client has to send a complete upgrade request (also the longest a connection
    /// to the public port may stay without upgrading).
    #[arg(long = "handshake-timeout-secs", env = "EWS_HANDSHAKE_TIMEOUT_SECS", default_value = "10", value_parser = positive_secs)]
    pub handshake_timeout: Duration,

    /// Largest accepted WebSocket message (and frame), in bytes; larger ones close the session
    /// with 1009.
    #[arg(long, env = "EWS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024, value_parser = at_least(1024))]
    pub max_message_bytes: usize,

    /// Initial read buffer per WebSocket session, in bytes. Small keeps idle sessions cheap;
    /// larger messages grow it on demand.
    #[arg(long, env = "EWS_WS_READ_BUFFER_BYTES", default_value_t = 512, value_parser = at_least(64))]
    pub ws_read_buffer_bytes: usize,

    /// Messages pushed through `/api/v1/publish` that may wait for one slow session; past it
    /// new pushes to that session are dropped (and reported to the publisher).
    #[arg(long, env = "EWS_OUTBOUND_QUEUE", default_value_t = 64, value_parser = at_least(1))]
    pub outbound_queue: usize,

    /// Let every client join every topic, whatever its token says (development; always on with
    /// `--standalone`). Without it a token's `topics` claim lists what its client may join.
    #[arg(long, env = "EWS_TOPICS_OPEN")]
    pub topics_open: bool,

    /// Topics one session may be subscribed to at once; past it `subscribe` is refused
    /// (`too_many_topics`).
    #[arg(long, env = "EWS_MAX_TOPICS_PER_SESSION", default_value_t = 100, value_parser = at_least(1))]
    pub max_topics_per_session: usize,

    /// Events of one session whose sink receipt is awaited at once when the client asked for
    /// acks (`?ack=1`); a full window stops reading from that client.
    #[arg(long, env = "EWS_ACK_WINDOW", default_value_t = 64, value_parser = at_least(1))]
    pub ack_window: usize,

    /// Seconds before a session's token expires that the worker sends `refresh_required`; a
    /// session that has not sent a valid `refresh` by `exp` is closed with 4001 `token expired`.
    #[arg(long = "refresh-lead-secs", env = "EWS_REFRESH_LEAD_SECS", default_value = "60", value_parser = secs)]
    pub refresh_lead: Duration,

    /// Let sessions outlive their token (no `refresh_required`, no 4001): the token is checked
    /// at the upgrade only.
    #[arg(long, env = "EWS_SESSION_OUTLIVES_TOKEN")]
    pub session_outlives_token: bool,

    /// Client `publish` frames one session may send per second (a burst of as many is
    /// allowed); past it they are answered `rate_limited`.
    #[arg(long, env = "EWS_CLIENT_PUBLISH_RATE", default_value_t = 50, value_parser = at_least(1))]
    pub client_publish_rate: usize,

    #[command(flatten)]
    pub ports: PortArgs,

    #[command(flatten)]
    pub admin: AdminArgs,

    #[command(flatten)]
    pub sink: SinkArgs,

    /// Which topics keep history, how much, and where.
    #[command(flatten)]
    pub history: ews_history::HistoryArgs,

    #[command(flatten)]
    pub rebalance: RebalanceArgs,

    #[command(flatten)]
    pub spot: crate::spot::SpotArgs,
}

/// Where the keys that verify client tokens come from.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtArgs {
    #[command(flatten)]
    pub hs256: Hs256Args,

    /// PEM public key (RSA → RS256, EC P-256 → ES256).
    #[arg(long, env = "EWS_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWKS URL (e.g. a Cloud Foundry UAA `/token_keys`), fetched at start and again when a
    /// token names an unknown `kid`. `https://` is verified against the system's roots
    /// (`SSL_CERT_FILE`/`SSL_CERT_DIR` override them).
    #[arg(long, env = "EWS_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Required `iss` claim.
    #[arg(long, env = "EWS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim.
    #[arg(long, env = "EWS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "EWS_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
}

/// A flag value that must be at least `min` (a smaller one is an error, not rounded up).
fn at_least(min: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s| match s.trim().parse::<usize>() {
        Ok(n) => check_min(n, min).map(|()| n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

fn check_min(n: usize, min: usize) -> Result<(), String> {
    if n < min {
        return Err(format!("{n} is below the minimum of {min}"));
    }
    Ok(())
}

/// A setting outside what its flag accepts, set by a program that builds its configuration in
/// code (the flags refuse such values as they are parsed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The flag the setting belongs to.
    pub setting: &'static str,
    pub problem: String,
}

impl WorkerArgs {
    /// The bounds the flags enforce, checked again for settings made in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let minimums = [
            ("--max-message-bytes", self.max_message_bytes, 1024),
            ("--ws-read-buffer-bytes", self.ws_read_buffer_bytes, 64),
            ("--outbound-queue", self.outbound_queue, 1),
            ("--max-topics-per-session", self.max_topics_per_session, 1),
            ("--ack-window", self.ack_window, 1),
        ];
        for (setting, n, min) in minimums {
            check_min(n, min).map_err(|problem| ConfigError { setting, problem })?;
        }
        for (setting, d) in [
            ("--ping-interval-secs", self.ping_interval),
            ("--handshake-timeout-secs", self.handshake_timeout),
        ] {
            if d.is_zero() {
                let problem = "must be at least 1 second".into();
                return Err(ConfigError { setting, problem });
            }
        }
        self.rebalance.validate()
    }
}

/// One WebSocket route: its path, its handler and where the handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub path: String,
    /// A registered handler's name (checked against the node's [`crate::handler::Handlers`]
    /// when it is built).
    pub handler: HandlerName,
    pub placement: Placement,
    /// The route's sessions announce their topic joins and leaves (`+presence`).
    pub presence: bool,
}

/// `--routes`: the WebSocket paths of the public port and their handlers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes(pub Vec<Route>);

impl Routes {
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.0.iter().find(|r| r.path == path)
    }
}

impl FromStr for Routes {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut routes: Vec<Route> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((path, rest)) = entry.split_once('=') else {
                return Err(format!(
                    "entry {entry:?} is not PATH=HANDLER[@PLACEMENT][+presence]"
                ));
            };
            let (rest, presence) = match rest.split_once('+') {
                Some((rest, "presence")) => (rest, true),
                Some((_, option)) => {
                    return Err(format!(
                        "{path}: unknown route option {option:?} (presence)"
                    ))
                }
                None => (rest, false),
            };
            if !path.starts_with('/') {
                return Err(format!("path {path:?} must start with /"));
            }
            if routes.iter().any(|r| r.path == path) {
                return Err(format!("path {path:?} appears twice"));
            }
            let (name, placement) = match rest.split_once('@') {
                Some((name, p)) => (name, p.parse::<Placement>()?),
                None => (rest, Placement::Local),
            };
            let handler = HandlerName::parse(name)?;
            routes.push(Route {
                path: path.to_string(),
                handler,
                placement,
                presence,
            });
        }
        if routes.is_empty() {
            return Err("names no route".into());
        }
        Ok(Routes(routes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_reject_mistakes() {
        let r: Routes = "/ws=ingest, /echo=echo, /greet=greet@key-hash"
            .parse()
            .expect("valid");
        let route = |path: &str, handler, placement| Route {
            path: path.to_string(),
            handler: HandlerName::parse(handler).unwrap(),
            placement,
            presence: false,
        };
        assert_eq!(
            r.0,
            vec![
                route("/ws", "ingest", Placement::Local),
                route("/echo", "echo", Placement::Local),
                route("/greet", "greet", Placement::KeyHash),
            ]
        );
        // Names are checked against the registered handlers when the node is built.
        assert!("/c=chat@random".parse::<Routes>().is_ok());
        let p: Routes = "/c=chat@key-hash+presence,/d=echo+presence"
            .parse()
            .unwrap();
        assert!(p.0.iter().all(|r| r.presence));
        assert_eq!(p.0[0].placement, Placement::KeyHash);
        for bad in [
            "/ws",
            "ws=ingest",
            "/ws=No Such",
            "/a=echo,/a=echo",
            "",
            "/g=greet@sideways",
            "/c=chat+history",
        ] {
            assert!(bad.parse::<Routes>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_made_in_code_are_held_to_the_flags_bounds() {
        let mut w = crate::WorkerConfig::default().worker;
        assert_eq!(w.validate(), Ok(()));
        w.max_message_bytes = 10;
        assert_eq!(
            w.validate().map_err(|e| e.setting),
            Err("--max-message-bytes")
        );
        let mut w = crate::WorkerConfig::default().worker;
        w.ping_interval = Duration::ZERO;
        assert_eq!(
            w.validate().map_err(|e| e.setting),
            Err("--ping-interval-secs")
        );
        let mut w = crate::WorkerConfig::default().worker;
        w.rebalance.rebalance_rate = f64::NAN;
        assert_eq!(w.validate().map_err(|e| e.setting), Err("--rebalance-rate"));
    }

    #[test]
    fn limits_below_their_minimum_are_errors() {
        assert_eq!(at_least(64)("512"), Ok(512));
        assert!(at_least(64)("10").is_err());
        assert!(at_least(1)("-3").is_err());
    }
}
