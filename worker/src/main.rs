use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use ews_worker::{Node, NodeArgs};
use tokio_util::sync::CancellationToken;

/// The elastic-ws worker: authenticates WebSocket clients, ingests their events into a sink and
/// pushes messages back.
#[derive(Parser)]
#[command(name = "ews-worker", version, about)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = parse();
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

/// The flags, with `--standalone`'s safer defaults: a one-machine worker listens on 127.0.0.1
/// unless `--listen`/`--admin-listen` say otherwise.
fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let w = &mut cli.node.worker;
    if w.standalone {
        let defaulted = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
        let local = std::net::Ipv4Addr::LOCALHOST.into();
        if defaulted("listen") {
            w.listen.set_ip(local);
        }
        if defaulted("admin_listen") {
            w.admin_listen.set_ip(local);
        }
        println!(
            "standalone: listening on {} (public) and {} (admin); pass --listen 0.0.0.0:{} to reach it from other machines",
            w.listen,
            w.admin_listen,
            w.listen.port()
        );
    }
    cli
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let signal = shutdown_signal()?;
    let node = Node::build(cli.node).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        trigger.cancel();
    });
    node.run(shutdown).await
}

/// Resolves on the first SIGTERM or SIGINT (installed now, so a signal during start-up is not
/// lost).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    })
}
