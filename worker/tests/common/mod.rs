//! Support for the worker's integration tests: a real `ews-worker` process on free ports,
//! token minting and WebSocket clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ews_testkit::{free_port, http_get, wait_for_http_ok, Proc, Scratch};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const SECRET: &str = "test-secret";

pub struct Worker {
    pub proc: Proc,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// A scratch directory, removed after the process (fields drop in declaration order).
    scratch: Option<Scratch>,
}

impl Worker {
    /// Starts `ews-worker` with `args` on free loopback ports and waits for `/info`.
    pub fn start(args: &[&str]) -> Worker {
        Worker::start_with(Command::new(env!("CARGO_BIN_EXE_ews-worker")), args)
    }

    /// Starts the worker with extra environment variables.
    pub fn start_env(env: &[(&str, &str)], args: &[&str]) -> Worker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ews-worker"));
        cmd.envs(env.iter().copied());
        Worker::start_with(cmd, args)
    }

    /// Starts the worker with both RLIMIT_NOFILE limits lowered to `nofile`.
    pub fn start_with_nofile(nofile: u32, args: &[&str]) -> Worker {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_ews-worker"));
        Worker::start_with(cmd, args)
    }

    fn start_with(mut cmd: Command, args: &[&str]) -> Worker {
        let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        cmd.args([
            "--listen",
            &public.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(args)
        .env("RUST_LOG", "info");
        let proc = Proc::spawn("ews-worker", cmd);
        if let Err(e) = wait_for_http_ok(public, "/info", Duration::from_secs(20)) {
            panic!("worker did not start: {e}\n{}", proc.output());
        }
        Worker {
            proc,
            public,
            admin,
            scratch: None,
        }
    }

    /// A worker checking HS256 tokens signed with [`SECRET`], events to a file sink.
    pub fn hs256(extra: &[&str]) -> (Worker, PathBuf) {
        let scratch = Scratch::new("worker-test");
        let file = scratch.join("events.jsonl");
        let f = file.to_string_lossy().into_owned();
        let mut args = vec![
            "--jwt-hs256-secret",
            SECRET,
            "--sink",
            "file",
            "--sink-file",
            &f,
        ];
        args.extend(extra);
        let mut w = Worker::start(&args);
        w.scratch = Some(scratch);
        (w, file)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.public)
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims valid for an hour for `sub`.
pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "iat": now()})
}

pub fn hs_token(claims: &Value) -> String {
    hs_token_with(SECRET.as_bytes(), claims)
}

pub fn hs_token_with(secret: &[u8], claims: &Value) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// RS256 or ES256 token signed with the private key file `tests/keys/<key>`.
pub fn asym_token(
    alg: jsonwebtoken::Algorithm,
    key: &str,
    kid: Option<&str>,
    claims: &Value,
) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let pem = std::fs::read(key_path(key)).expect("key");
    let k = match alg {
        jsonwebtoken::Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).expect("ec key"),
        _ => EncodingKey::from_rsa_pem(&pem).expect("rsa key"),
    };
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, claims, &k).expect("encode")
}

/// Connects to `url` with extra headers; the handshake's HTTP error, if any, as (status, headers).
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<(Ws, Response), (u16, String)> {
    let mut req = url.into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(ok) => Ok(ok),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let www = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Err((resp.status().as_u16(), www))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// Connects with `Authorization: Bearer <token>`.
pub async fn connect_bearer(url: &str, token: &str) -> Ws {
    let auth = format!("Bearer {token}");
    connect(url, &[("authorization", &auth)])
        .await
        .expect("connect")
        .0
}

/// The next text frame as JSON, within 5 s.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("stream open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code.
pub async fn close_code(ws: &mut Ws, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
            Err(_) => panic!("no close within {within:?}"),
        }
    }
}

pub fn event(msg: &str) -> Message {
    Message::text(
        json!({"msg": msg, "clientId": "claimed", "timestamp": 1_456_862_575_765u64}).to_string(),
    )
}
