//! `ews-queue`: the built-in queue broker on its own, serving `/queue/{name}` WebSockets. The
//! leader hosts the same broker on its internal port; this binary exists for tests, benchmarks
//! and single-box setups.

use std::sync::Arc;

use clap::Parser;
use ews_queue::args::QueueArgs;

#[derive(Debug, Parser)]
#[command(name = "ews-queue", version, about)]
struct Cli {
    /// Address to serve `/queue/{name}` and `/info` on.
    #[arg(long, env = "EWS_LISTEN", default_value = "0.0.0.0:7070")]
    listen: String,
    #[command(flatten)]
    queue: QueueArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let broker = match cli.queue.open() {
        Ok(b) => Arc::new(b),
        Err(e) => {
            eprintln!(
                "ews-queue: cannot open {}: {e}",
                cli.queue.queue_dir.display()
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ews-queue: cannot listen on {}: {e}", cli.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, dir = %cli.queue.queue_dir.display(), "ews-queue listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    ews_queue::server::serve(listener, broker, shutdown).await;
    std::process::ExitCode::SUCCESS
}
