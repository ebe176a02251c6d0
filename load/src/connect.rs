//! Opening many client connections: source-address round-robin, a concurrency limit and a rate,
//! one minted token per client, TLS for `wss://`, and a tally of what failed and why.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;
use tokio_util::either::Either;

use crate::source_ips::SourceIps;
use crate::stats::{per_sec, Errors, Latency, LatencySummary};
use crate::token::{JwtKey, Minter};

/// A client connection: plain for `ws://`, TLS for `wss://`.
/// A load-generator connection: plain TCP or TLS.
pub type ConnStream = Either<TcpStream, TlsStream<TcpStream>>;
pub type Ws = WebSocketStream<ConnStream>;

/// Connections per second against a target that is not on this machine, unless `--connect-rate`
/// says otherwise: a load test of a deployment should ramp up, not arrive as a flood.
const REMOTE_CONNECT_RATE: u64 = 100;

/// How to reach the server and authenticate; shared by every mode.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Number of WebSocket connections (simulated clients).
    #[arg(long, short = 'n', env = "EWS_CONNECTIONS", default_value_t = 100)]
    pub connections: u64,
    /// Loopback source addresses, round-robin per connection: `127.0.0.1`, `127.0.0.1-20`,
    /// `127.0.0.1-127.0.0.20,127.0.1.1`. One address gives at most ~28k ports.
    #[arg(long, env = "EWS_SOURCE_IPS", default_value = "127.0.0.1")]
    pub source_ips: SourceIps,
    /// Connection attempts (TCP connect + upgrade) in flight at once.
    #[arg(long, env = "EWS_CONNECT_CONCURRENCY", default_value_t = 64)]
    pub connect_concurrency: usize,
    /// New connections started per second; 0 = as fast as the concurrency allows. Default:
    /// unlimited on loopback, 100/s against a remote target.
    #[arg(long, env = "EWS_CONNECT_RATE")]
    pub connect_rate: Option<u64>,
    /// Allow a target that is not on this machine (a deployment you run, e.g. through its load
    /// balancer). Without it only loopback targets are accepted.
    #[arg(long, env = "EWS_ALLOW_REMOTE")]
    pub allow_remote: bool,
    /// Give up on one connection attempt (TCP + upgrade) after this long.
    #[arg(long, env = "EWS_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Signing key and claims of the tokens minted per client (`sub` = client id), sent as
    /// `Authorization: Bearer`. Without a secret, connections are unauthenticated.
    #[command(flatten)]
    pub jwt: JwtKey,
    /// Lifetime of minted tokens.
    #[arg(long, env = "EWS_JWT_TTL_SECS", default_value_t = 3600)]
    pub jwt_ttl_secs: u64,
    /// One token every connection sends instead of minting its own (the one a `--standalone`
    /// worker prints, say): every connection is then the same client.
    #[arg(
        long,
        env = "EWS_TOKEN",
        hide_env_values = true,
        conflicts_with_all = ["jwt_hs256_secret", "jwt_hs256_secret_file"]
    )]
    pub token: Option<String>,
    /// Client ids are this prefix plus the connection number (`client-0`, `client-1`, ...).
    #[arg(long, env = "EWS_CLIENT_ID_PREFIX", default_value = "client-")]
    pub client_id_prefix: String,
    /// PID of the server process (on this host) to read its RSS and CPU time from /proc.
    #[arg(long, env = "EWS_SERVER_PID")]
    pub server_pid: Option<u32>,
    /// Print a one-line JSON summary after the human-readable report.
    #[arg(long, env = "EWS_JSON")]
    pub json: bool,
    /// Exit non-zero when errors / attempts exceeds this fraction (0 = any error fails).
    #[arg(long, env = "EWS_MAX_ERROR_RATIO", default_value_t = 0.0)]
    pub max_error_ratio: f64,
    /// Hard limit on the whole run; whatever is still running then is abandoned.
    #[arg(long, env = "EWS_DEADLINE_SECS", default_value_t = 600)]
    pub deadline_secs: u64,
}

/// A `ws://` URL on a loopback address, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    pub uri: Uri,
    /// Every address the host resolved to; connections take them in turn (an ALB name resolves
    /// to one address per zone).
    pub addrs: Vec<SocketAddr>,
    /// The name to verify the server's certificate against, for `wss://`.
    pub tls: Option<ServerName<'static>>,
}

impl Target {
    /// Parses `url` (plus `extra_query`, e.g. `ack=1`) and resolves its host. A target that is not
    /// on this machine needs `allow_remote`: ews-load loads servers its user runs, not anyone's.
    pub fn parse(
        url: &str,
        extra_query: Option<&str>,
        allow_remote: bool,
    ) -> Result<Target, String> {
        let url = match extra_query {
            None => url.to_string(),
            Some(q) if url.contains('?') => format!("{url}&{q}"),
            Some(q) => format!("{url}?{q}"),
        };
        let uri: Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
        let (tls, default_port) = match uri.scheme_str() {
            Some("ws") => (false, 80),
            Some("wss") => (true, 443),
            _ => return Err(format!("{url:?}: only ws:// and wss:// URLs are supported")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(default_port);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) if host == "localhost" => {
                vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)]
            }
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .map_err(|e| format!("{url:?}: cannot resolve {host}: {e}"))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{url:?}: {host} resolved to no address"));
        }
        if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "{url:?}: not a loopback target; pass --allow-remote to load a deployment you run"
            ));
        }
        let tls = if tls {
            Some(
                ServerName::try_from(host.clone())
                    .map_err(|e| format!("{url:?}: {host} is no TLS server name: {e}"))?,
            )
        } else {
            None
        };
        Ok(Target { uri, addrs, tls })
    }

    /// Whether every address is on this machine (source addresses and an unlimited rate apply).
    pub fn is_local(&self) -> bool {
        self.addrs.iter().all(|a| a.ip().is_loopback())
    }
}

/// The TLS client for `wss://`: the system's trust roots (`SSL_CERT_FILE` / `SSL_CERT_DIR`
/// override them), the same crypto provider as the rest of the workspace, HTTP/1.1 for the
/// upgrade.
fn tls_connector() -> Result<TlsConnector, String> {
    // The client library's: one TLS set-up for the users' clients and the load generator.
    ews_client::tls_connector().map_err(|e| e.to_string())
}

/// What opening the connections took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectSummary {
    pub attempted: u64,
    pub established: u64,
    /// Source addresses the connections were spread over.
    pub source_ips: usize,
    pub failed: u64,
    pub elapsed_secs: f64,
    pub handshakes_per_sec: f64,
    pub handshake_latency: LatencySummary,
}

/// "no connection was established (http 401: 50)": the reason a run measured nothing, with the
/// most frequent errors, so a refused token or a wrong URL is named.
pub fn no_connection(c: &ConnectSummary, errors: &BTreeMap<String, u64>) -> String {
    let mut top: Vec<(&String, &u64)> = errors.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let named: Vec<String> = top
        .iter()
        .take(3)
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    if named.is_empty() {
        format!("no connection was established (0/{})", c.attempted)
    } else {
        format!(
            "no connection was established (0/{}; {})",
            c.attempted,
            named.join(", ")
        )
    }
}

/// Everything a mode needs to open its connections.
pub struct Connector {
    args: ConnectArgs,
    target: Target,
    minter: Option<Minter>,
    config: WebSocketConfig,
    tls: Option<TlsConnector>,
    /// Connections started per second; 0 = unlimited.
    rate: u64,
}

impl Connector {
    pub fn new(args: &ConnectArgs, target: Target) -> Result<Connector, String> {
        let minter = args
            .jwt
            .secret()
            .map(|s| args.jwt.minter(&s, args.jwt_ttl_secs));
        if args.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        let rate = match (args.connect_rate, target.is_local()) {
            (Some(r), _) => r,
            (None, true) => 0,
            (None, false) => {
                eprintln!(
                    "ews-load: remote target: {REMOTE_CONNECT_RATE} new connections/s \
                     (--connect-rate to change)"
                );
                REMOTE_CONNECT_RATE
            }
        };
        let tls = match target.tls {
            Some(_) => Some(tls_connector()?),
            None => None,
        };
        Ok(Connector {
            args: args.clone(),
            tls,
            rate,
            target,
            minter,
            // The load generator holds thousands of sockets itself: keep its buffers small so its
            // own memory never limits a run (tungstenite's default read buffer is 128 KiB).
            config: WebSocketConfig::default().read_buffer_size(4096),
        })
    }

    pub fn client_id(&self, n: u64) -> String {
        format!("{}{n}", self.args.client_id_prefix)
    }

    /// Opens `--connections` connections, at most `--connect-concurrency` at a time and
    /// `--connect-rate` starts per second. Failures are tallied in `errors`; the established
    /// connections come back with their connection numbers, in completion order.
    pub async fn open_all(
        self: &Arc<Self>,
        errors: &Arc<Errors>,
    ) -> (Vec<(u64, Ws)>, ConnectSummary) {
        let n = self.args.connections;
        let sem = Arc::new(Semaphore::new(self.args.connect_concurrency));
        let latency = Arc::new(Latency::default());
        let mut tasks = JoinSet::new();
        let mut conns = Vec::with_capacity(n.min(1 << 20) as usize);
        let start = Instant::now();
        for i in 0..n {
            if self.rate > 0 {
                let at = start + Duration::from_secs_f64(i as f64 / self.rate as f64);
                tokio::time::sleep_until(at.into()).await;
            }
            // The semaphore is never closed, so acquiring only waits.
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let (me, errors, latency) = (self.clone(), errors.clone(), latency.clone());
            tasks.spawn(async move {
                let t0 = Instant::now();
                let res = me.open(i).await;
                drop(permit);
                match res {
                    Ok(ws) => {
                        latency.record(t0.elapsed());
                        Some((i, ws))
                    }
                    Err(kind) => {
                        errors.add(kind);
                        None
                    }
                }
            });
            // Collect finished attempts as we go so the set never holds more than it must.
            while let Some(done) = tasks.try_join_next() {
                conns.extend(done.ok().flatten());
            }
        }
        while let Some(done) = tasks.join_next().await {
            conns.extend(done.ok().flatten());
        }
        let elapsed = start.elapsed();
        let established = conns.len() as u64;
        let summary = ConnectSummary {
            attempted: n,
            established,
            source_ips: self.args.source_ips.len(),
            failed: n - established,
            elapsed_secs: elapsed.as_secs_f64(),
            handshakes_per_sec: per_sec(established, elapsed),
            handshake_latency: latency.summary(),
        };
        (conns, summary)
    }

    /// One connection: bind to its source address, connect, upgrade. The error is a short kind
    /// for the tally.
    pub async fn open(&self, n: u64) -> Result<Ws, String> {
        let timeout = Duration::from_millis(self.args.connect_timeout_ms);
        match tokio::time::timeout(timeout, self.open_inner(n)).await {
            Ok(r) => r,
            Err(_) => Err("connect timeout".into()),
        }
    }

    async fn open_inner(&self, n: u64) -> Result<Ws, String> {
        let mut request = self
            .target
            .uri
            .clone()
            .into_client_request()
            .map_err(|e| format!("request: {e}"))?;
        let token = match (&self.args.token, &self.minter) {
            (Some(given), _) => Some(given.clone()),
            (None, Some(minter)) => Some(
                minter
                    .mint(&self.client_id(n))
                    .map_err(|e| format!("mint token: {e}"))?,
            ),
            (None, None) => None,
        };
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("token header: {e}"))?;
            request.headers_mut().insert("authorization", value);
        }
        let tcp = self.tcp_connect(n).await?;
        let stream = match (&self.tls, &self.target.tls) {
            (Some(tls), Some(name)) => Either::Right(
                tls.connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("tls: {}", tls_error_kind(&e)))?,
            ),
            _ => Either::Left(tcp),
        };
        match tokio_tungstenite::client_async_with_config(request, stream, Some(self.config)).await
        {
            Ok((ws, _response)) => Ok(ws),
            Err(WsError::Http(resp)) => Err(format!("http {}", resp.status().as_u16())),
            Err(WsError::Io(e)) => Err(format!("handshake io: {}", e.kind())),
            Err(e) => Err(format!("handshake: {e}")),
        }
    }

    async fn tcp_connect(&self, n: u64) -> Result<TcpStream, String> {
        let addrs = &self.target.addrs;
        let addr = addrs[(n % addrs.len() as u64) as usize];
        let socket = match addr {
            // Loopback source addresses spread many clients over more ports; a remote target is
            // reached from whatever address the route gives.
            SocketAddr::V4(_) if self.target.is_local() => {
                let s = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
                // Lets a port whose previous connection sits in TIME_WAIT be bound again, so
                // back-to-back runs do not exhaust the ports of a source address.
                s.set_reuseaddr(true)
                    .map_err(|e| format!("socket: {}", e.kind()))?;
                let src = self.args.source_ips.for_connection(n);
                s.bind(SocketAddr::new(IpAddr::V4(src), 0))
                    .map_err(|e| format!("bind {src}: {}", e.kind()))?;
                s
            }
            SocketAddr::V4(_) => {
                TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?
            }
            // The source list is IPv4 loopback; an IPv6 target connects from the route's address.
            SocketAddr::V6(_) => {
                TcpSocket::new_v6().map_err(|e| format!("socket: {}", e.kind()))?
            }
        };
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// A short kind for a failed TLS handshake ("certificate: UnknownIssuer"), for the error tally.
fn tls_error_kind(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => format!("certificate: {c:?}"),
        Some(other) => other.to_string(),
        None => e.kind().to_string(),
    }
}

/// Closes every connection politely (close frame, wait briefly for the server's), many at once.
pub async fn close_all(conns: Vec<(u64, Ws)>) {
    let mut tasks = JoinSet::new();
    let sem = Arc::new(Semaphore::new(256));
    for (_, mut ws) in conns {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        tasks.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                use futures_util::StreamExt;
                if ws.close(None).await.is_ok() {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
            .await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Raises this process's open-file soft limit to the hard limit: each connection is a file.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_without_allow_remote() {
        let t = Target::parse("ws://127.0.0.1:9000/ws", None, false).unwrap();
        assert_eq!(t.addrs, vec!["127.0.0.1:9000".parse().unwrap()]);
        assert!(t.tls.is_none() && t.is_local());
        let t = Target::parse("ws://localhost/ws", Some("ack=1"), false).unwrap();
        assert_eq!(t.addrs[0].port(), 80);
        assert_eq!(t.uri.query(), Some("ack=1"));
        let t = Target::parse("ws://[::1]:1/x?a=b", Some("ack=1"), false).unwrap();
        assert_eq!(t.uri.query(), Some("a=b&ack=1"));
        let t = Target::parse("wss://127.0.0.1/ws", None, false).unwrap();
        assert_eq!(t.addrs[0].port(), 443);
        assert!(t.tls.is_some());
        for bad in ["http://127.0.0.1/ws", "not a url", "ws://10.1.2.3:80/ws"] {
            assert!(Target::parse(bad, None, false).is_err(), "{bad} accepted");
        }
        let err = Target::parse("wss://192.0.2.1/ws", None, false).unwrap_err();
        assert!(err.contains("--allow-remote"), "{err}");
    }

    #[test]
    fn remote_targets_with_allow_remote() {
        let t = Target::parse("wss://192.0.2.1:8443/ws", None, true).unwrap();
        assert_eq!(t.addrs, vec!["192.0.2.1:8443".parse().unwrap()]);
        assert!(!t.is_local());
        assert_eq!(
            t.tls,
            Some(ServerName::try_from("192.0.2.1".to_string()).unwrap())
        );
    }
}
