//! Which sink a worker hands its events to (`--sink`).

use std::path::PathBuf;
use std::sync::Arc;

use ews_cluster::Membership;
use ews_http::link::LinkKey;
use ews_queue::Broker;
use ews_sink::Sink;

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

    /// Queue the `queue` sink sends events to.
    #[arg(long, env = "EWS_QUEUE_NAME", default_value = "events")]
    pub queue_name: String,

    /// A queue broker to send to (`ws://host:port/queue/NAME`) instead of the active leader's
    /// (in a cluster) or the embedded one (outside a cluster).
    #[arg(long, env = "EWS_QUEUE_URL")]
    pub queue_url: Option<String>,

    /// The embedded broker's storage and limits (outside a cluster).
    #[command(flatten)]
    pub queue: ews_queue::args::QueueArgs,

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
}

/// Events a sink may hold unacknowledged before sessions are back-pressured.
const SINK_WINDOW: usize = 8192;

/// The broker the node hosts for its own queue sink: outside a cluster, without `--queue-url`.
/// The node holds it for its life (it keeps the queue directory locked).
pub fn embedded_broker(args: &SinkArgs, in_cluster: bool) -> anyhow::Result<Option<Arc<Broker>>> {
    if args.sink != SinkKind::Queue || args.queue_url.is_some() || in_cluster {
        return Ok(None);
    }
    let broker = args.queue.open()?;
    tracing::info!(dir = %args.queue.queue_dir.display(), queue = %args.queue_name, "embedded queue");
    Ok(Some(Arc::new(broker)))
}

/// The sink `--sink` names. `cluster` is the worker's membership, if it is in a cluster: the
/// `queue` sink then sends to the active leader's broker over the node link; `broker` is the
/// node's embedded one, if it hosts one.
pub async fn build(
    args: &SinkArgs,
    cluster: Option<&Arc<Membership>>,
    broker: Option<&Arc<Broker>>,
) -> anyhow::Result<Arc<dyn Sink>> {
    Ok(match args.sink {
        SinkKind::Stdout => Arc::new(ews_sink::StdoutSink::new()),
        SinkKind::File => Arc::new(ews_sink::FileSink::open(&args.sink_file).await?),
        SinkKind::Queue => queue_sink(args, cluster, broker)?,
        SinkKind::Sqs => sqs_sink(args).await?,
        SinkKind::Kafka => kafka_sink(args)?,
    })
}

#[cfg(feature = "sqs")]
async fn sqs_sink(args: &SinkArgs) -> anyhow::Result<Arc<dyn Sink>> {
    let Some(url) = &args.sqs_queue_url else {
        anyhow::bail!("--sink sqs needs --sqs-queue-url");
    };
    let mut config = ews_sink::SqsConfig::new(url);
    config.window = SINK_WINDOW;
    Ok(Arc::new(ews_sink::SqsSink::new(
        ews_sink::sqs::client(ews_sink::sqs::SEND_ATTEMPT_TIMEOUT).await,
        &config,
    )))
}

#[cfg(not(feature = "sqs"))]
async fn sqs_sink(_: &SinkArgs) -> anyhow::Result<Arc<dyn Sink>> {
    Err(not_built("sqs"))
}

#[cfg(feature = "kafka")]
fn kafka_sink(args: &SinkArgs) -> anyhow::Result<Arc<dyn Sink>> {
    let mut config = ews_sink::KafkaConfig::new(&args.kafka_brokers, &args.kafka_topic);
    config.max_in_flight = SINK_WINDOW;
    Ok(Arc::new(ews_sink::KafkaSink::new(&config)?))
}

#[cfg(not(feature = "kafka"))]
fn kafka_sink(_: &SinkArgs) -> anyhow::Result<Arc<dyn Sink>> {
    Err(not_built("kafka"))
}

/// Why a sink left out of this build cannot be used, and how to get one that has it.
#[cfg(not(all(feature = "sqs", feature = "kafka")))]
fn not_built(sink: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--sink {sink}: this ews-worker was built without the {sink} sink; build it with \
         `cargo build --release -p ews-worker --features {sink}` (or `full`; the release \
         binaries and the AMIs have every sink)"
    )
}

fn queue_sink(
    args: &SinkArgs,
    cluster: Option<&Arc<Membership>>,
    broker: Option<&Arc<Broker>>,
) -> anyhow::Result<Arc<dyn Sink>> {
    use ews_sink::QueueSink;
    if let Some(b) = broker {
        return Ok(Arc::new(QueueSink::embedded(b.queue(&args.queue_name)?)));
    }
    if let Some(url) = &args.queue_url {
        let url = url.clone();
        return Ok(Arc::new(QueueSink::remote(
            Arc::new(move || Some(url.clone())),
            None,
            SINK_WINDOW,
        )));
    }
    let Some(m) = cluster else {
        anyhow::bail!("the queue sink has no broker: pass --queue-url, --seeds or --standalone");
    };
    let link = m.secret().map(LinkKey::derive);
    let m = m.clone();
    let name = args.queue_name.clone();
    let target = Arc::new(move || {
        m.active_leader_internal_addr()
            .map(|addr| format!("ws://{addr}/queue/{name}"))
    });
    Ok(Arc::new(QueueSink::remote(target, link, SINK_WINDOW)))
}
