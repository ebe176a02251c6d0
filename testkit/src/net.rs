//! Free ports and readiness probes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A TCP port that was free on 127.0.0.1 a moment ago, never handed out twice by this process.
///
/// Ports come from below the kernel's ephemeral range: `bind(0)` and every outgoing connection
/// draw from that range, so a port picked there can be taken by a test's client socket (or handed
/// out again) before the node under test binds it. Below it only other test processes compete, and
/// each starts at its own offset.
pub fn free_port() -> u16 {
    next_port(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A port free for both TCP and UDP on 127.0.0.1 (gossip uses UDP on the same port number as the
/// node link's TCP).
pub fn free_udp_port() -> u16 {
    next_port(|p| {
        TcpListener::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok()
    })
}

/// Walks the non-ephemeral range from a per-process offset until `free` accepts a port; falls
/// back to a kernel-chosen port if the range is exhausted or the ephemeral range starts too low.
fn next_port(free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let high = ephemeral_low().clamp(LOW, u32::from(u16::MAX));
    let span = high - LOW;
    if span >= 1_000 {
        let seed = (std::process::id().wrapping_mul(2_654_435_761)) % span;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = (LOW + n % span) as u16;
            if free(port) {
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral TCP port");
        if free(port) {
            return port;
        }
    }
}

/// First port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(32_768)
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("nothing listening on {addr} after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, body). Enough for readiness probes
/// and for asserting status lines without pulling an HTTP client into every test.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, &[], b"")
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole response.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    http_request_within(addr, method, path, headers, body, Duration::from_secs(10))
}

/// [`http_request`] for a slow answer: waits up to `timeout` for the response.
pub fn http_request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until `GET path` answers 200.
pub fn wait_for_http_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match http_get(addr, path) {
            Ok((200, _)) => return Ok(()),
            Ok((code, body)) => last = format!("{code} {body}"),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "GET http://{addr}{path} not 200 after {timeout:?}: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub use http_request as request;

/// Opens a WebSocket session by a raw HTTP/1.1 upgrade of `path` (query included) and returns
/// the socket once the server answered 101: enough for tests that only need a session to exist
/// or to read a frame or two, without a WebSocket client library.
pub fn ws_open(addr: SocketAddr, path: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(format!("upgrade refused: {head}")));
    }
    Ok(s)
}

/// Opens `n` TCP connections to `addr` that will never send a byte (a silent or malicious peer).
/// Connections the server has not accepted yet still connect: the kernel queues them.
pub fn silent_connections(addr: SocketAddr, n: usize) -> std::io::Result<Vec<TcpStream>> {
    (0..n)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .collect()
}

/// Waits until the server has closed every one of `conns` (a read sees end of file or a reset),
/// at most `within` in all; the count still open otherwise.
pub fn wait_all_closed(conns: &mut [TcpStream], within: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + within;
    let mut open = 0;
    for c in conns.iter_mut() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            open += 1;
            continue;
        }
        let _ = c.set_read_timeout(Some(left));
        let mut buf = [0u8; 256];
        let closed = loop {
            match c.read(&mut buf) {
                Ok(0) => break true,
                // An answer (e.g. a 408) before the close is fine: read on.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
                Err(_) => break true,
            }
        };
        if !closed {
            open += 1;
        }
    }
    match open {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} silent connections still open after {within:?}",
            conns.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        if ephemeral_low() > 11_000 {
            assert!(
                ports.iter().all(|&p| u32::from(p) < ephemeral_low()),
                "{ports:?}"
            );
        }
        let udp = free_udp_port();
        assert!(UdpSocket::bind(("127.0.0.1", udp)).is_ok());
    }
}
