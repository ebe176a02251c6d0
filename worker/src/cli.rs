//! The worker's command line, for `ews-worker` and for any binary a team builds over the
//! library: every `ews-worker` flag (and `EWS_*` variable), `--standalone`'s safer defaults,
//! logging to stderr, SIGTERM/SIGINT start the drain. A team's `main` registers its handlers:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     ews_worker::cli::main("my-worker", |node| node /* .handler("chat", Chat) */)
//! }
//! ```

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use tokio_util::sync::CancellationToken;

use crate::{Node, NodeArgs, NodeBuilder};

/// The elastic-ws worker: authenticates WebSocket clients, ingests their events into a sink and
/// pushes messages back.
#[derive(Parser)]
#[command(name = "ews-worker", version, about)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

/// Parses the command line (as `binary`), builds the node with the handlers `register` adds to
/// the built-ins, serves until SIGTERM or SIGINT, drains. The exit code says whether it went well.
pub fn main(binary: &'static str, register: impl FnOnce(NodeBuilder) -> NodeBuilder) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour on a terminal only: a log file gets no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = parse(binary);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{binary}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, register)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--standalone`'s drain window unless `--drain-seconds` says otherwise.
const STANDALONE_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The flags, with `--standalone`'s safer defaults: a one-machine worker listens on 127.0.0.1
/// unless `--listen`/`--admin-listen` say otherwise, and drains in two seconds.
fn parse(binary: &'static str) -> NodeArgs {
    let mut command = Cli::command().name(binary).bin_name(binary);
    if binary != "ews-worker" {
        // The library's own description would name `ews-worker` in a team's `--help`.
        command = command.about(format!(
            "{binary}: an elastic-ws worker with its own handlers; every ews-worker flag applies"
        ));
    }
    let matches = command.get_matches();
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
        // One machine, a developer at Ctrl-C: no load balancer needs a long drain.
        if defaulted("drain_window") {
            w.drain_window = STANDALONE_DRAIN;
        }
        println!(
            "standalone: listening on {} (public) and {} (admin); pass --listen 0.0.0.0:{} to reach it from other machines",
            w.listen,
            w.admin_listen,
            w.listen.port()
        );
    }
    cli.node
}

async fn run(
    args: NodeArgs,
    register: impl FnOnce(NodeBuilder) -> NodeBuilder,
) -> anyhow::Result<()> {
    let signal = shutdown_signal()?;
    let node = register(Node::builder(args)).build().await?;
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
