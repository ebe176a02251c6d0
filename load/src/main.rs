//! `ews-load`: drives real WebSocket clients against a gateway on this host and reports what the
//! clients saw and, given its PID, what the server spent. One subcommand per kind of load.

mod admin;
mod connect;
mod echo;
mod fanout;
mod idle;
mod ingest;
mod procfs;
mod pusher;
mod recover;
mod server;
mod source_ips;
mod stats;
mod token;
mod verify;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(name = "ews-load", version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

// Parsed once at start and consumed at once: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Mode {
    /// Print a JWT the worker accepts (HS256; `sub` = client id, optional `topics`), for a
    /// person: `ews-load token --sub alice --jwt-hs256-secret-file secret.txt`.
    Token(token::TokenArgs),
    #[command(flatten)]
    Load(Load),
}

/// The modes that drive clients against a gateway.
#[derive(Subcommand, Debug)]
enum Load {
    /// Open N connections and hold them: connect rate, errors, server RSS per connection.
    Idle(idle::IdleArgs),
    /// Round trips against an echo route: latency percentiles, throughput, server CPU per message.
    Echo(echo::EchoArgs),
    /// Send `{"msg","clientId","timestamp"}` events at a rate, optionally counting acks.
    Ingest(ingest::IngestArgs),
    /// Send events with acks, read them back from the queue or Kafka: sent, acknowledged,
    /// received, duplicates, missing. Fails if an acknowledged event is missing.
    Verify(verify::VerifyArgs),
    /// Subscribe N clients over several workers to one topic and publish to it: delivery
    /// latency p50/p99 and pushes per second. Fails if a subscriber misses a message.
    Fanout(fanout::FanoutArgs),
    /// Subscribe N clients to topics with history, take them away (drain their worker, or drop
    /// their connections), publish what they miss, bring them all back at once: time to the
    /// last recovered client and recoveries per second. Fails if a message is missing,
    /// duplicated or out of order, or a client cannot recover.
    Recover(recover::RecoverArgs),
}

/// What every mode reports.
pub trait Outcome: Serialize {
    /// Human-readable lines, most important first.
    fn human(&self) -> Vec<String>;
    /// Errors by kind, and failed units (connections or events, per mode) over attempted ones.
    fn failures(&self) -> &stats::Failures;
    /// Why the run did not measure or verify what it was asked to (no connection, nothing
    /// acknowledged, nothing read back): such a run fails whatever `--max-error-ratio` allows,
    /// because a figure over nothing is not a result.
    fn shortfall(&self) -> Option<String>;
}

fn main() -> ExitCode {
    let load = match Cli::parse().mode {
        Mode::Token(args) => {
            return match token::token(&args) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ews-load token: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Mode::Load(load) => load,
    };
    let nofile = connect::raise_nofile_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ews-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match load {
            Load::Idle(a) => {
                let c = a.connect.clone();
                finish(&c, nofile, idle::run(a)).await
            }
            Load::Echo(a) => {
                let c = a.connect.clone();
                finish(&c, nofile, echo::run(a)).await
            }
            Load::Ingest(a) => {
                let c = a.connect.clone();
                finish(&c, nofile, ingest::run(a)).await
            }
            Load::Verify(a) => {
                let c = a.connect.clone();
                finish(&c, nofile, verify::run(a)).await
            }
            Load::Fanout(a) => {
                let c = a.connect.clone();
                finish(&c, nofile, fanout::run(a)).await
            }
            Load::Recover(a) => {
                let c = a.connect.clone();
                finish(&c, nofile, recover::run(a)).await
            }
        }
    })
}

/// Runs a mode under the global deadline, prints its report and turns it into an exit code.
async fn finish<R: Outcome>(
    args: &connect::ConnectArgs,
    nofile: u64,
    run: impl Future<Output = Result<R, String>>,
) -> ExitCode {
    if args.connections + 16 > nofile {
        eprintln!(
            "ews-load: {} connections need more open files than the limit ({nofile}); \
             run several ews-load processes",
            args.connections
        );
        return ExitCode::FAILURE;
    }
    let report = match tokio::time::timeout(Duration::from_secs(args.deadline_secs), run).await {
        Err(_) => {
            eprintln!("ews-load: deadline of {} s reached", args.deadline_secs);
            return ExitCode::FAILURE;
        }
        Ok(Err(e)) => {
            eprintln!("ews-load: {e}");
            return ExitCode::from(2);
        }
        Ok(Ok(r)) => r,
    };
    for line in report.human() {
        println!("{line}");
    }
    for (kind, n) in &report.failures().errors {
        println!("error: {kind}: {n}");
    }
    let shortfall = report.shortfall();
    if let Some(why) = &shortfall {
        println!("failed: {why}");
    }
    if args.json {
        match serde_json::to_string(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("ews-load: cannot serialise the summary: {e}"),
        }
    }
    if let Some(why) = &shortfall {
        eprintln!("ews-load: {why}");
        return ExitCode::FAILURE;
    }
    if report.failures().error_ratio > args.max_error_ratio {
        eprintln!(
            "ews-load: error ratio {:.4} above the allowed {}",
            report.failures().error_ratio,
            args.max_error_ratio
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
