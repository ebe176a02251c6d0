//! Which sink a worker hands its events to (`--sink`).

use std::path::PathBuf;
use std::sync::Arc;

use ews_sink::Sink;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// The built-in durable queue.
    Queue,
    /// Kafka (idempotent producer, acks=all).
    Kafka,
    /// One JSON line per event on standard output (debugging).
    Stdout,
    /// One JSON line per event appended to `--sink-file`, fsynced before the ack.
    File,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Where events go.
    #[arg(long, env = "EWS_SINK", value_enum, default_value = "queue")]
    pub sink: SinkKind,

    /// File the `file` sink appends to.
    #[arg(long, env = "EWS_SINK_FILE", default_value = "./data/events.jsonl")]
    pub sink_file: PathBuf,
}

pub async fn build(args: &SinkArgs) -> anyhow::Result<Arc<dyn Sink>> {
    Ok(match args.sink {
        SinkKind::Stdout => Arc::new(ews_sink::StdoutSink::new()),
        SinkKind::File => Arc::new(ews_sink::FileSink::open(&args.sink_file).await?),
        SinkKind::Queue | SinkKind::Kafka => anyhow::bail!(
            "--sink {:?} is not wired into this build yet; use --sink stdout or --sink file",
            args.sink
        ),
    })
}
