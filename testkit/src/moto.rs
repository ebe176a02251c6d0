//! A moto server (AWS API emulator) on a free port, installed by `scripts/tools/moto.sh`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, net, tools_dir, Proc};

pub struct Moto {
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Moto {
    /// Starts moto and waits until `GET /moto-api/` answers 200.
    pub fn start() -> Moto {
        let python = tools_dir().join("moto/bin/python");
        assert!(
            python.exists(),
            "moto not installed at {}: run `bash scripts/tools/moto.sh`",
            python.display()
        );
        let port = free_port();
        let mut cmd = Command::new(python);
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        let proc = Proc::spawn("moto", cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if let Err(e) = net::wait_for_http_ok(addr, "/moto-api/", Duration::from_secs(30)) {
            panic!("moto did not start: {e}\n{}", proc.output());
        }
        Moto { addr, _proc: proc }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` or an SDK `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets every resource (between tests sharing one server).
    pub fn reset(&self) {
        let _ = net::request(self.addr, "POST", "/moto-api/reset", &[], b"");
    }
}
