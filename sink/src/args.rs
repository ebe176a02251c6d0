//! The flags that choose a sink (`--sink` and what each kind needs), shared by the worker (its
//! sessions' events and lifecycle records) and the leader (its `node_lost` records).

use std::path::PathBuf;
use std::sync::Arc;

use crate::Sink;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// The built-in durable queue.
    Queue,
    /// Amazon SQS (`SendMessageBatch`, acknowledged once SQS confirms): the default in AWS.
    /// In builds with the `sqs` feature (the release binaries and AMIs).
    Sqs,
    /// Kafka (idempotent producer, acks=all). In builds with the `kafka` feature (the release
    /// binaries and AMIs).
    Kafka,
    /// One JSON line per record on standard output (debugging).
    Stdout,
    /// One JSON line per record appended to `--sink-file`, fsynced before the ack.
    File,
}

#[derive(Debug, Clone, clap::Args)]
// Its own group id: the worker wraps it in a struct of the same name.
#[group(id = "SinkChoice")]
pub struct SinkArgs {
    /// Where events go.
    #[arg(long, env = "EWS_SINK", value_enum, default_value = "queue")]
    pub sink: SinkKind,

    /// File the `file` sink appends to.
    #[arg(long, env = "EWS_SINK_FILE", default_value = "./data/events.jsonl")]
    pub sink_file: PathBuf,

    /// Queue the `queue` sink sends events to.
    #[arg(long, env = "EWS_QUEUE_NAME", default_value = "events")]
    pub queue_name: String,

    /// The SQS queue `--sink sqs` sends to (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
    /// Region and credentials come from the environment (the instance profile on EC2).
    #[arg(long, env = "EWS_SQS_QUEUE_URL", required_if_eq("sink", "sqs"))]
    pub sqs_queue_url: Option<String>,

    /// Kafka bootstrap servers (`host:port,...`) for `--sink kafka`.
    #[arg(long, env = "EWS_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Kafka topic events are produced to (key: the client id).
    #[arg(long, env = "EWS_KAFKA_TOPIC", default_value = "events")]
    pub kafka_topic: String,

    /// Write lifecycle records to the sink, in order with the events: `connected` and
    /// `disconnected` for every session (workers), `node_lost` for every worker generation that
    /// leaves the cluster (the active leader). Off: the sink holds events only.
    #[arg(long, env = "EWS_LIFECYCLE_EVENTS")]
    pub lifecycle_events: bool,
}

/// Records a sink may hold unacknowledged before its writers are back-pressured.
pub const SINK_WINDOW: usize = 8192;

impl SinkArgs {
    /// The sink `--sink` names, for every kind but `queue` (whose broker only the caller
    /// knows: `None`). `package` is the binary's, for the error when this build lacks the
    /// sink.
    pub async fn build_direct(&self, package: &str) -> anyhow::Result<Option<Arc<dyn Sink>>> {
        Ok(Some(match self.sink {
            SinkKind::Queue => return Ok(None),
            SinkKind::Stdout => Arc::new(crate::StdoutSink::new()),
            SinkKind::File => Arc::new(crate::FileSink::open(&self.sink_file).await?),
            SinkKind::Sqs => sqs_sink(self, package).await?,
            SinkKind::Kafka => kafka_sink(self, package)?,
        }))
    }
}

#[cfg(feature = "sqs")]
async fn sqs_sink(args: &SinkArgs, _: &str) -> anyhow::Result<Arc<dyn Sink>> {
    let Some(url) = &args.sqs_queue_url else {
        anyhow::bail!("--sink sqs needs --sqs-queue-url");
    };
    let mut config = crate::SqsConfig::new(url);
    config.window = SINK_WINDOW;
    Ok(Arc::new(crate::SqsSink::new(
        crate::sqs::client(crate::sqs::SEND_ATTEMPT_TIMEOUT).await,
        &config,
    )))
}

#[cfg(not(feature = "sqs"))]
async fn sqs_sink(_: &SinkArgs, package: &str) -> anyhow::Result<Arc<dyn Sink>> {
    Err(not_built("sqs", package))
}

#[cfg(feature = "kafka")]
fn kafka_sink(args: &SinkArgs, _: &str) -> anyhow::Result<Arc<dyn Sink>> {
    let mut config = crate::KafkaConfig::new(&args.kafka_brokers, &args.kafka_topic);
    config.max_in_flight = SINK_WINDOW;
    Ok(Arc::new(crate::KafkaSink::new(&config)?))
}

#[cfg(not(feature = "kafka"))]
fn kafka_sink(_: &SinkArgs, package: &str) -> anyhow::Result<Arc<dyn Sink>> {
    Err(not_built("kafka", package))
}

/// Why a sink left out of this build cannot be used, and how to get one that has it.
#[cfg(not(all(feature = "sqs", feature = "kafka")))]
fn not_built(sink: &str, package: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--sink {sink}: this {package} was built without the {sink} sink; build it with \
         `cargo build --release -p {package} --features {sink}` (or `full`; the release \
         binaries and the AMIs have every sink)"
    )
}
