//! `redis-server` on a free loopback port (installed by `scripts/tools/redis.sh`): the history
//! engine's real peer. No persistence unless asked, so a restart loses every stream (what an
//! engine failover without a replica looks like).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, wait_for_tcp, Proc, Scratch};

/// A running redis-server, stopped when dropped.
pub struct Redis {
    pub addr: SocketAddr,
    dir: Scratch,
    proc: Proc,
}

impl Redis {
    /// Starts one on a free port, its working directory a scratch dir.
    pub fn start() -> Redis {
        let dir = Scratch::new("redis");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let proc = spawn(addr, &dir);
        Redis { addr, dir, proc }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills it (`kill -9`: nothing saved) and starts a fresh one on the same port: every stream
    /// and its metadata are gone.
    pub fn restart_empty(&mut self) {
        self.proc.kill();
        self.proc = spawn(self.addr, &self.dir);
    }

    pub fn output(&self) -> String {
        self.proc.output()
    }
}

fn spawn(addr: SocketAddr, dir: &Scratch) -> Proc {
    let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("redis-server is not installed: run `bash scripts/tools/redis.sh`")
        });
    let mut cmd = Command::new(bin);
    cmd.args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir.path());
    let proc = Proc::spawn("redis-server", cmd);
    if let Err(e) = wait_for_tcp(addr, Duration::from_secs(10)) {
        panic!("redis-server did not start: {e}\n{}", proc.output());
    }
    proc
}
