//! nginx in front of workers, as a load balancer would be (installed by
//! `scripts/tools/nginx.sh`): TLS termination for one server, or plain round robin over several.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{free_port, wait_for_tcp, Proc, Scratch};

/// What every proxied location sets: HTTP/1.1 upstream, WebSocket upgrades passed through,
/// sessions kept open for long.
const PROXY_WS: &str = r#"            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 300s;"#;

/// Writes a configuration holding `server` and runs nginx on it until `addr` listens.
fn run(dir: &Scratch, addr: SocketAddr, server: &str) -> Proc {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("nginx is not installed: run `bash scripts/tools/nginx.sh`"));
    let d = dir.arg();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
# Each client is two connections (its own and the upstream one): room for a few thousand.
worker_rlimit_nofile 10000;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {server}
}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let mut cmd = Command::new(nginx);
    cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf_path);
    let proc = Proc::spawn("nginx", cmd);
    if let Err(e) = wait_for_tcp(addr, Duration::from_secs(10)) {
        panic!("nginx did not listen on {addr}: {e}\n{}", proc.output());
    }
    proc
}

/// A round-robin load balancer (plain HTTP, WebSockets passed through) over `upstreams`: each
/// new connection goes to the next one, as an ALB with `least_conn` off does.
pub struct RoundRobin {
    pub addr: SocketAddr,
    _proc: Proc,
    _dir: Scratch,
}

impl RoundRobin {
    pub fn start(upstreams: &[SocketAddr]) -> RoundRobin {
        let dir = Scratch::new("nginx-rr");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("server {u} max_fails=0; "))
            .collect();
        let server = format!(
            r#"upstream workers {{ {servers}}}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://workers;
{PROXY_WS}
        }}
    }}"#
        );
        let proc = run(&dir, addr, &server);
        RoundRobin {
            addr,
            _proc: proc,
            _dir: dir,
        }
    }
}

/// A running nginx; stops with its guard, its scratch directory goes with it.
pub struct TlsProxy {
    pub addr: SocketAddr,
    _proc: Proc,
    _dir: Scratch,
}

impl TlsProxy {
    /// Listens with TLS (`cert`, `key`: PEM files) on a free loopback port and forwards
    /// everything, WebSocket upgrades included, to `upstream` over plain HTTP/1.1.
    pub fn start(upstream: SocketAddr, cert: &Path, key: &Path) -> TlsProxy {
        let dir = Scratch::new("nginx");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let server = format!(
            r#"server {{
        listen {addr} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://{upstream};
{PROXY_WS}
        }}
    }}"#,
            cert = cert.display(),
            key = key.display(),
        );
        let proc = run(&dir, addr, &server);
        TlsProxy {
            addr,
            _proc: proc,
            _dir: dir,
        }
    }
}
