//! The admin API of a worker or a leader's front door (`POST /api/v1/publish`,
//! `GET /api/v1/presence`), one HTTP/1.1 request per connection: the load modes publish a few
//! thousand messages at most, so a pool would measure nothing more.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the admin API listens and the token it wants.
#[derive(Debug, Clone)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Admin {
    /// One request on its own connection: (status, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("{}: {e}", self.addr))?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
            .await
            .map_err(|_| "no answer within 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("unreadable answer")?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok((status, body.to_string()))
    }

    /// Publishes `msg` to `topic`: the sessions the answer counts as delivered.
    pub async fn publish(&self, topic: &str, msg: &str) -> Result<u64, String> {
        let body = serde_json::json!({"topic": topic, "msg": msg}).to_string();
        let (status, answer) = self.request("POST", "/api/v1/publish", &body).await?;
        if status != 200 {
            return Err(format!("status {status}: {}", answer.trim()));
        }
        Ok(serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["delivered"].as_u64())
            .unwrap_or(0))
    }
}
