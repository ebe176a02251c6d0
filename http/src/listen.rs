//! Opening a listener with a backlog that survives a reconnect storm.

use std::net::SocketAddr;
use std::str::FromStr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue length asked of the kernel. When a worker dies, its clients (15,000 of
/// them) reconnect within a second; with the default of 128 most SYNs overflow the queue and
/// wait 1–3 s for a retry. The kernel caps the value at `net.core.somaxconn` in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog(u32);

impl Backlog {
    /// Used when `net.core.somaxconn` cannot be read (it is 4096 on current kernels).
    const FALLBACK: u32 = 4096;

    /// The system's ceiling, `net.core.somaxconn`.
    pub fn system() -> Backlog {
        let read = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&n| n > 0);
        Backlog(read.unwrap_or(Self::FALLBACK))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog::system()
    }
}

impl FromStr for Backlog {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<u32>() {
            Ok(0) => Err("the listen backlog must be at least 1".into()),
            Ok(n) => Ok(Backlog(n)),
            Err(e) => Err(format!("not a connection count: {e}")),
        }
    }
}

impl std::fmt::Display for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Binds `addr` (with `SO_REUSEADDR`, so a restarted node does not wait out `TIME_WAIT`) and
/// listens with `backlog`.
pub fn bind(addr: SocketAddr, backlog: Backlog) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_parses_and_refuses_zero() {
        assert_eq!("512".parse::<Backlog>(), Ok(Backlog(512)));
        assert!("0".parse::<Backlog>().is_err());
        assert!("many".parse::<Backlog>().is_err());
        assert!(Backlog::system().get() > 0);
    }

    #[tokio::test]
    async fn binds_with_the_asked_backlog() {
        let l = bind("127.0.0.1:0".parse().unwrap(), Backlog(16)).unwrap();
        assert_ne!(l.local_addr().unwrap().port(), 0);
    }
}
