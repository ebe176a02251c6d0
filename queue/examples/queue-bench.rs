//! Throughput of a running queue broker: `--producers` connections send `--messages` in total
//! (each with up to `--window` sends unacknowledged), while `--consumers` connections receive and
//! delete them. Prints messages per second for the full send → durable → receive → delete cycle.
//!
//! `cargo run --release -p ews-queue --example queue-bench -- --url ws://127.0.0.1:7070/queue/bench`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ews_queue::client::connect;
use ews_queue::{ClientFrame, ServerFrame};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    #[arg(long, default_value_t = 4)]
    producers: u64,
    #[arg(long, default_value_t = 4)]
    consumers: u64,
    /// Sends a producer keeps unacknowledged (1 = one fsync per message).
    #[arg(long, default_value_t = 1024)]
    window: u64,
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Arc::new(Args::parse());
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..args.consumers {
        let (args, received) = (args.clone(), received.clone());
        tasks.spawn(async move {
            let (mut tx, mut rx) = connect(&args.url, None).await.map_err(|e| e.to_string())?;
            tx.send(&ClientFrame::Receive { count: u64::MAX })
                .await
                .map_err(|e| e.to_string())?;
            let mut n = 0u64;
            while received.load(Ordering::Relaxed) < args.messages {
                match tokio::time::timeout(Duration::from_millis(200), rx.next()).await {
                    Ok(Some(Ok(ServerFrame::Message { id, .. }))) => {
                        received.fetch_add(1, Ordering::Relaxed);
                        tx.feed(&ClientFrame::Delete { id })
                            .await
                            .map_err(|e| e.to_string())?;
                        n += 1;
                        if n.is_multiple_of(64) {
                            tx.flush().await.map_err(|e| e.to_string())?;
                        }
                    }
                    Ok(Some(Ok(_))) | Err(_) => {
                        tx.flush().await.map_err(|e| e.to_string())?;
                    }
                    Ok(Some(Err(e))) => return Err(format!("consumer {c}: {e}")),
                    Ok(None) => return Err(format!("consumer {c}: closed")),
                }
            }
            tx.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        });
    }
    for p in 0..args.producers {
        let args = args.clone();
        tasks.spawn(async move {
            let share =
                args.messages / args.producers + u64::from(p < args.messages % args.producers);
            let (mut tx, mut rx) = connect(&args.url, None).await.map_err(|e| e.to_string())?;
            let body = "x".repeat(args.body_bytes);
            let (mut sent, mut acked) = (0u64, 0u64);
            while acked < share {
                while sent < share && sent - acked < args.window {
                    tx.feed(&ClientFrame::Send { body: body.clone() })
                        .await
                        .map_err(|e| e.to_string())?;
                    sent += 1;
                }
                tx.flush().await.map_err(|e| e.to_string())?;
                match rx.next().await {
                    Some(Ok(ServerFrame::Sent { .. })) => acked += 1,
                    other => return Err(format!("producer {p}: {other:?}")),
                }
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "queue-bench: {} messages of {} B, {} producers (window {}), {} consumers: {:.2} s, {:.0} msg/s",
        args.messages,
        args.body_bytes,
        args.producers,
        args.window,
        args.consumers,
        secs,
        args.messages as f64 / secs
    );
    Ok(())
}
