//! `ews-leader`: a seed node of the cluster. Two run in separate availability zones, each seeding
//! the other; the one holding the active term (a DynamoDB lease in AWS) hosts the built-in queue
//! and publishes the cluster's connected-client count. Leaders accept no client WebSockets.

mod activity;
mod admin;
mod cloudwatch;
mod internal;
mod lease;
mod lost;
mod node;
mod takeover;

use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::node::{Leader, LeaderArgs};

#[derive(Debug, Parser)]
#[command(name = "ews-leader", version, about)]
struct Cli {
    #[command(flatten)]
    leader: LeaderArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "ews-leader failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let leader = Leader::build(cli.leader).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM"),
            _ = int.recv() => info!("SIGINT"),
        }
        trigger.cancel();
    });
    leader.run(shutdown).await
}
