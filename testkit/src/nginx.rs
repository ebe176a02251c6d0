//! nginx as a TLS-terminating reverse proxy in front of a server, as a load balancer would be
//! (installed by `scripts/tools/nginx.sh`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{free_port, wait_for_tcp, Proc, Scratch};

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
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("nginx is not installed: run `bash scripts/tools/nginx.sh`"));
        let dir = Scratch::new("nginx");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let d = dir.arg();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
        }}
    }}
}}
"#,
            cert = cert.display(),
            key = key.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut cmd = Command::new(nginx);
        cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf_path);
        let proc = Proc::spawn("nginx", cmd);
        if let Err(e) = wait_for_tcp(addr, Duration::from_secs(10)) {
            panic!("nginx did not listen on {addr}: {e}\n{}", proc.output());
        }
        TlsProxy {
            addr,
            _proc: proc,
            _dir: dir,
        }
    }
}
