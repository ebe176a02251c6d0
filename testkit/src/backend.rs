//! The example HTTP backend of the worker's hooks (`examples/backend-http/backend.py`) as a real
//! process: what a team copies is what the tests run against.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, net, workspace_root, Proc};

pub struct HookBackend {
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl HookBackend {
    /// Starts the backend on a free port; it checks signatures with the secret in
    /// `secret_file` (none: it accepts unsigned calls).
    pub fn start(secret_file: Option<&Path>) -> HookBackend {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cmd = Command::new("python3");
        cmd.arg(workspace_root().join("examples/backend-http/backend.py"))
            .args(["--port", &addr.port().to_string()]);
        if let Some(f) = secret_file {
            cmd.arg("--secret-file").arg(f);
        }
        let proc = Proc::spawn("hook-backend", cmd);
        if let Err(e) = net::wait_for_tcp(addr, Duration::from_secs(10)) {
            panic!("the example backend did not start: {e}\n{}", proc.output());
        }
        HookBackend { addr, proc }
    }

    /// The URL a hooks file names.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Switches how it answers every hook: `ok`, `hang` (never) or `garbage` (not JSON).
    pub fn mode(&self, mode: &str) {
        let r = net::http_request(self.addr, "POST", "/mode", &[], mode.as_bytes());
        assert!(matches!(r, Ok((200, _))), "setting mode {mode}: {r:?}");
    }

    /// Every call it got (that passed its signature check), oldest first.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        match net::http_get(self.addr, "/calls") {
            Ok((200, body)) => serde_json::from_str(&body).unwrap_or_default(),
            other => panic!("GET /calls: {other:?}"),
        }
    }
}
