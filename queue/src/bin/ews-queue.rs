//! `ews-queue`: the built-in queue broker on its own, serving `/queue/{name}` WebSockets (the
//! leader hosts the same broker on its internal port; this binary exists for tests, benchmarks
//! and single-box setups); `ews-queue read`, the receiver a person uses to look at (or consume)
//! events; and `ews-queue send`, the sender: the three roles of a back-pressured queue.

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
use tokio::io::AsyncBufReadExt;
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
    /// Send messages to a queue: each line of stdin, or one every `--every`. A message goes out
    /// only while fewer than `--window` wait for the broker's acknowledgement, so a full queue
    /// slows the sender down until a receiver drains it.
    Send(SendArgs),
}

#[derive(Debug, Args)]
struct SendArgs {
    #[command(flatten)]
    to: QueueAt,
    /// Send `tick <n> <unix ms>` this often (`500ms`, `1s`, `1m`) instead of reading stdin.
    #[arg(long, value_parser = duration)]
    every: Option<Duration>,
    /// With --every: stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Messages sent and not yet acknowledged (made durable) by the broker, at most.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
}

/// `500ms`, `2s`, `1m`: a period.
fn duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a number with ms, s or m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{s:?}: use ms, s or m")),
    };
    if d.is_zero() {
        return Err("a period is positive".into());
    }
    Ok(d)
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

/// A queue and the credential its port wants.
#[derive(Debug, Args)]
struct QueueAt {
    /// The queue: `ws://HOST:PORT/queue/NAME` of an `ews-queue`, of the active leader's
    /// internal port (with the cluster secret), or of a standalone worker's admin port (with the
    /// admin token).
    #[arg(long)]
    url: String,
    /// The cluster secret, to reach a leader's internal port.
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
    /// The admin token, to reach a standalone worker's embedded queue on its admin port.
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

impl QueueAt {
    fn link(&self) -> Option<LinkKey> {
        self.cluster_secret
            .as_ref()
            .or(self.cluster_secret_file.as_ref())
            .map(LinkKey::derive)
    }

    fn token(&self) -> Option<&Secret> {
        self.admin_token.as_ref().or(self.admin_token_file.as_ref())
    }
}

#[derive(Debug, Args)]
struct ReadArgs {
    #[command(flatten)]
    from: QueueAt,
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
    let link = args.from.link();
    let credential = Credential::choose(link.as_ref(), args.from.token());
    let opts = ReadOptions {
        delete: args.delete,
        idle: (!args.follow).then(|| Duration::from_millis(args.idle_ms)),
        max: args.max,
    };
    let mut stdout = std::io::stdout().lock();
    let reading = ews_queue::client::read(&args.from.url, credential, opts, |_, body, _| {
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
            eprintln!("ews-queue read: {}: {e}", args.from.url);
            ExitCode::FAILURE
        }
    }
}

/// Sends each line of stdin (or a tick every `--every`), at most `--window` unacknowledged;
/// prints `sent <id>` as the broker makes each one durable.
async fn send(args: SendArgs) -> ExitCode {
    let link = args.to.link();
    let credential = Credential::choose(link.as_ref(), args.to.token());
    let (mut tx, mut rx) = match ews_queue::client::connect(&args.to.url, credential).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ews-queue send: {}: {e}", args.to.url);
            return ExitCode::FAILURE;
        }
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut ticks = args.every.map(tokio::time::interval);
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut more = true;
    let mut stdout = std::io::stdout().lock();
    while more || acked < sent {
        let room = more && sent - acked < args.window;
        tokio::select! {
            next = next_message(&mut lines, ticks.as_mut(), sent, args.count), if room => match next {
                Some(body) => {
                    if let Err(e) = tx.send(&ews_queue::ClientFrame::Send { body }).await {
                        eprintln!("ews-queue send: {e}");
                        return ExitCode::FAILURE;
                    }
                    sent += 1;
                }
                None => more = false,
            },
            frame = rx.next(), if sent > acked => match frame {
                Some(Ok(ews_queue::ServerFrame::Sent { id })) => {
                    acked += 1;
                    let _ = writeln!(stdout, "sent {id}").and_then(|()| stdout.flush());
                }
                Some(Ok(ews_queue::ServerFrame::Error { error })) => {
                    eprintln!("ews-queue send: the broker refused a message: {error}");
                    return ExitCode::FAILURE;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("ews-queue send: {e}");
                    return ExitCode::FAILURE;
                }
                None => {
                    eprintln!("ews-queue send: the broker closed the connection ({acked} of {sent} acknowledged)");
                    return ExitCode::FAILURE;
                }
            },
            _ = tokio::signal::ctrl_c() => more = false,
        }
    }
    tx.close().await;
    eprintln!("ews-queue send: {acked} message(s) sent and acknowledged");
    ExitCode::SUCCESS
}

/// The next message to send: the next line of stdin, or (with `--every`) the next tick's, until
/// `count`; `None` when there is no more.
async fn next_message(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
    ticks: Option<&mut tokio::time::Interval>,
    sent: u64,
    count: Option<u64>,
) -> Option<String> {
    match ticks {
        Some(_) if count.is_some_and(|c| sent >= c) => None,
        Some(t) => {
            t.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            Some(format!("tick {} {now}", sent + 1))
        }
        None => lines.next_line().await.ok().flatten(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Read(args)) => read(args).await,
        Some(Command::Send(args)) => send(args).await,
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
