//! Opening many client connections: source-address round-robin, a concurrency limit and a rate,
//! one minted token per client, and a tally of what failed and why.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use crate::source_ips::SourceIps;
use crate::stats::{per_sec, Errors, Latency, LatencySummary};
use crate::token::{JwtKey, Minter};

pub type Ws = WebSocketStream<TcpStream>;

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
    /// New connections started per second; 0 = as fast as the concurrency allows.
    #[arg(long, env = "EWS_CONNECT_RATE", default_value_t = 0)]
    pub connect_rate: u64,
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
    pub addr: SocketAddr,
}

impl Target {
    /// Parses `url` (plus `extra_query`, e.g. `ack=1`), refusing anything but `ws://` to a
    /// loopback host: ews-load is a local benchmark tool, not a way to load someone's server.
    pub fn parse(url: &str, extra_query: Option<&str>) -> Result<Target, String> {
        let url = match extra_query {
            None => url.to_string(),
            Some(q) if url.contains('?') => format!("{url}&{q}"),
            Some(q) => format!("{url}?{q}"),
        };
        let uri: Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("ws") {
            return Err(format!("{url:?}: only ws:// URLs are supported"));
        }
        let host = uri.host().ok_or_else(|| format!("{url:?} has no host"))?;
        let ip: IpAddr = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("{url:?}: host must be an IP address or localhost"))?,
        };
        if !ip.is_loopback() {
            return Err(format!("{url:?}: only loopback targets are allowed"));
        }
        let addr = SocketAddr::new(ip, uri.port_u16().unwrap_or(80));
        Ok(Target { uri, addr })
    }
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
}

impl Connector {
    pub fn new(args: &ConnectArgs, target: Target) -> Result<Connector, String> {
        let minter = args
            .jwt
            .secret()?
            .map(|s| args.jwt.minter(&s, args.jwt_ttl_secs));
        if args.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        Ok(Connector {
            args: args.clone(),
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
            if self.args.connect_rate > 0 {
                let at = start + Duration::from_secs_f64(i as f64 / self.args.connect_rate as f64);
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
    async fn open(&self, n: u64) -> Result<Ws, String> {
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
        if let Some(minter) = &self.minter {
            let token = minter
                .mint(&self.client_id(n))
                .map_err(|e| format!("mint token: {e}"))?;
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("token header: {e}"))?;
            request.headers_mut().insert("authorization", value);
        }
        let stream = self.tcp_connect(n).await?;
        match tokio_tungstenite::client_async_with_config(request, stream, Some(self.config)).await
        {
            Ok((ws, _response)) => Ok(ws),
            Err(WsError::Http(resp)) => Err(format!("http {}", resp.status().as_u16())),
            Err(WsError::Io(e)) => Err(format!("handshake io: {}", e.kind())),
            Err(e) => Err(format!("handshake: {e}")),
        }
    }

    async fn tcp_connect(&self, n: u64) -> Result<TcpStream, String> {
        let socket = match self.target.addr {
            SocketAddr::V4(_) => {
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
            // The source list is IPv4 loopback; an IPv6 target connects from ::1.
            SocketAddr::V6(_) => {
                TcpSocket::new_v6().map_err(|e| format!("socket: {}", e.kind()))?
            }
        };
        let stream = socket
            .connect(self.target.addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
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
    fn targets_are_loopback_ws_only() {
        let t = Target::parse("ws://127.0.0.1:9000/ws", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse().unwrap());
        let t = Target::parse("ws://localhost/ws", Some("ack=1")).unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.uri.query(), Some("ack=1"));
        let t = Target::parse("ws://[::1]:1/x?a=b", Some("ack=1")).unwrap();
        assert_eq!(t.uri.query(), Some("a=b&ack=1"));
        for bad in [
            "ws://10.1.2.3:80/ws",
            "wss://127.0.0.1/ws",
            "http://127.0.0.1/ws",
            "ws://example.com/ws",
            "not a url",
        ] {
            assert!(Target::parse(bad, None).is_err(), "{bad} accepted");
        }
    }
}
