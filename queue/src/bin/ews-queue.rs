//! `ews-queue`: the built-in queue broker on its own, serving `/queue/{name}` WebSockets (the
//! leader hosts the same broker on its internal port; this binary exists for tests, benchmarks
//! and single-box setups), and `ews-queue read`, the consumer a person uses to look at events.

use std::io::Write;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ews_http::args::{read_secret_file, PortArgs, Secret};
use ews_http::link::LinkKey;
use ews_queue::args::QueueArgs;
use ews_queue::client::{Credential, ReadOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Without a subcommand, serves the broker.
#[derive(Debug, Parser)]
#[command(
    name = "ews-queue",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the messages of a queue as JSON lines (the worker's stamped events), oldest first:
    /// `ews-queue read --url ws://127.0.0.1:7070/queue/events [--follow] [--delete]`.
    Read(ReadArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to serve `/queue/{name}` and `/info` on.
    #[arg(long, env = "EWS_LISTEN", default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    ports: PortArgs,
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// The queue: `ws://HOST:PORT/queue/NAME` of an `ews-queue`, of the active leader's
    /// internal port (with the cluster secret), or of a standalone worker's admin port (with the
    /// admin token).
    #[arg(long)]
    url: String,
    /// Keep reading as new messages arrive, until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// Consume what is read (acknowledge it). Without it the messages stay in the queue and are
    /// delivered again once the broker's visibility timeout passes.
    #[arg(long)]
    delete: bool,
    /// Stop after this many messages.
    #[arg(long)]
    max: Option<u64>,
    /// Without --follow: stop once no message has come for this long.
    #[arg(long, default_value_t = 1000)]
    idle_ms: u64,
    /// The cluster secret, to read from a leader's internal port.
    #[arg(long, env = "EWS_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<Secret>,
    /// File holding the cluster secret (trailing newline ignored).
    #[arg(
        long,
        env = "EWS_CLUSTER_SECRET_FILE",
        conflicts_with = "cluster_secret",
        value_parser = read_secret_file
    )]
    cluster_secret_file: Option<Secret>,
    /// The admin token, to read a standalone worker's embedded queue on its admin port.
    #[arg(
        long,
        env = "EWS_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with_all = ["admin_token_file", "cluster_secret", "cluster_secret_file"]
    )]
    admin_token: Option<Secret>,
    /// File holding the admin token.
    #[arg(
        long,
        env = "EWS_ADMIN_TOKEN_FILE",
        value_parser = read_secret_file,
        conflicts_with_all = ["cluster_secret", "cluster_secret_file"]
    )]
    admin_token_file: Option<Secret>,
}

/// One output line per message: the body itself when it is one line of JSON (a stamped event),
/// else the body as a JSON string, so every line parses.
fn json_line(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(_) if !body.contains('\n') => body.to_string(),
        _ => serde_json::Value::String(body.to_string()).to_string(),
    }
}

async fn read(args: ReadArgs) -> ExitCode {
    let link = args
        .cluster_secret
        .as_ref()
        .or(args.cluster_secret_file.as_ref())
        .map(LinkKey::derive);
    let token = args.admin_token.as_ref().or(args.admin_token_file.as_ref());
    let credential = Credential::choose(link.as_ref(), token);
    let opts = ReadOptions {
        delete: args.delete,
        idle: (!args.follow).then(|| Duration::from_millis(args.idle_ms)),
        max: args.max,
    };
    let mut stdout = std::io::stdout().lock();
    let reading = ews_queue::client::read(&args.url, credential, opts, |_, body, _| {
        // A closed stdout (`| head`) ends the read; that message is not deleted.
        match writeln!(stdout, "{}", json_line(&body)).and_then(|()| stdout.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    });
    let outcome = tokio::select! {
        r = reading => r,
        _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
    };
    match outcome {
        Ok(n) => {
            eprintln!(
                "ews-queue read: {n} message(s){}",
                if args.delete { ", deleted" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ews-queue read: {}: {e}", args.url);
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Read(args)) => read(args).await,
        None => serve(cli.serve).await,
    }
}

async fn serve(cli: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Colour on a terminal only: a log file gets no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let broker = match cli.queue.open() {
        Ok(b) => Arc::new(b),
        Err(e) => {
            eprintln!(
                "ews-queue: cannot open {}: {e}",
                cli.queue.queue_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let listener = match ews_http::bind(cli.listen, cli.ports.backlog()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ews-queue: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, dir = %cli.queue.queue_dir.display(), "ews-queue listening");
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ews-queue: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        trigger.cancel();
    });
    ews_queue::server::serve(listener, broker, shutdown, cli.ports.limits()).await;
    ExitCode::SUCCESS
}
