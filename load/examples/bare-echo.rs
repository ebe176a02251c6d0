//! The baseline for the gateway benchmark: the plainest tokio-tungstenite echo server, no auth,
//! no routing. By default with tungstenite's DEFAULT `WebSocketConfig` (128 KiB read buffer per
//! connection); `--read-buffer-bytes 512` tunes it as `ews-worker` runs (a small read buffer and
//! no write buffer), so the comparison is also made against the same memory settings.
//! `ews-worker` is measured against both.
//!
//! `cargo run --release -p ews-load --example bare-echo -- --listen 127.0.0.1:9001`

use std::net::SocketAddr;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EWS_LISTEN", default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Read buffer per connection in bytes, and no write buffer (what `ews-worker` does); absent:
    /// tungstenite's defaults.
    #[arg(long, env = "EWS_WS_READ_BUFFER_BYTES")]
    read_buffer_bytes: Option<usize>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    raise_nofile_limit();
    let listener = TcpListener::bind(args.listen).await?;
    println!("bare-echo listening on {}", listener.local_addr()?);
    let config = args.read_buffer_bytes.map(|n| {
        WebSocketConfig::default()
            .read_buffer_size(n)
            .write_buffer_size(0)
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream, config));
            }
            // Out of files (or similar): back off instead of spinning on accept.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn echo(stream: TcpStream, config: Option<WebSocketConfig>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, config).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
