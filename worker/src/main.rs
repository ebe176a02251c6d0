use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ews_worker::membership::{self, MembershipArgs};
use ews_worker::{link, sinks, Worker, WorkerArgs};

/// The elastic-ws worker: authenticates WebSocket clients, ingests their events into a sink and
/// pushes messages back.
#[derive(Parser)]
#[command(name = "ews-worker", version, about)]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    membership: MembershipArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ews-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ews-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cluster = membership::start(&cli.membership, &cli.worker).await?;
    let sink = sinks::build(&cli.worker.sink, cluster.as_ref()).await?;
    let node_id = cli.membership.cluster.node_id();
    let mut worker = Worker::bind(cli.worker, node_id, sink).await?;
    if let Some(m) = &cluster {
        membership::attach(m, &mut worker);
        link::start(m, cli.membership.internal_listen, worker.handle()).await?;
        worker.set_peers(Arc::new(link::Peers::new(m.clone())));
    }
    membership::serve(worker, cluster).await
}
