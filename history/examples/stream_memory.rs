//! What one stream of history costs in memory, measured: `--streams` streams of `--messages`
//! messages of `--bytes` bytes each, appended through each engine, and the memory that took
//! divided by the streams. The in-process engine is measured by counting every heap byte it
//! allocates (a counting allocator, exact); Redis by its own `used_memory` before and after.
//!
//! `cargo run --release -p ews-history --example stream_memory -- [--redis-url URL]`; prints one
//! JSON line per engine. `scripts/bench.sh history` runs it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use ews_history::{Engine, Limits, MemoryEngine, RedisEngine};
use futures_util::stream::{self, StreamExt};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Args {
    streams: usize,
    messages: usize,
    bytes: usize,
    redis_url: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        streams: 10_000,
        messages: 100,
        bytes: 200,
        redis_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} wants a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--streams" => a.streams = number()?,
            "--messages" => a.messages = number()?,
            "--bytes" => a.bytes = number()?,
            "--redis-url" => a.redis_url = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Appends every stream's messages, 256 appends in flight.
async fn fill(engine: &dyn Engine, a: &Args) -> Result<(), String> {
    let limits = Limits {
        size: a.messages,
        ttl: Duration::from_secs(3600),
    };
    // Like a published message as history keeps it: `{"msg": "..."}`.
    let data = format!("{{\"msg\":\"{}\"}}", "x".repeat(a.bytes.saturating_sub(10)));
    let appends = (0..a.messages).flat_map(|_| 0..a.streams).map(|s| {
        let data = data.clone();
        async move {
            engine
                .append(&format!("bench.stream.{s}"), data, limits)
                .await
        }
    });
    let mut results = stream::iter(appends).buffer_unordered(256);
    while let Some(r) = results.next().await {
        r.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn report(engine: &str, a: &Args, used: i64) {
    let per_stream = used as f64 / a.streams as f64;
    println!(
        "{}",
        serde_json::json!({
            "engine": engine,
            "streams": a.streams,
            "messages_per_stream": a.messages,
            "message_bytes": a.bytes,
            "bytes_used": used,
            "bytes_per_stream": per_stream.round(),
            "bytes_per_message": (per_stream / a.messages.max(1) as f64).round(),
            "overhead_per_message": (per_stream / a.messages.max(1) as f64 - a.bytes as f64).round(),
        })
    );
}

async fn used_memory(url: &str) -> Result<i64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO memory".to_string())
}

async fn run() -> Result<(), String> {
    let a = args()?;
    // Room for every stream, whatever the default budget.
    let memory = MemoryEngine::new(a.streams, usize::MAX);
    let before = LIVE.load(Ordering::Relaxed);
    fill(&memory, &a).await?;
    let used = (LIVE.load(Ordering::Relaxed) - before) as i64;
    report("memory", &a, used);
    drop(memory);

    if let Some(url) = &a.redis_url {
        let engine =
            RedisEngine::new(url, "ews:h:", Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let before = used_memory(url).await?;
        fill(&engine, &a).await?;
        let used = used_memory(url).await? - before;
        report("redis", &a, used);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stream_memory: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream_memory: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
