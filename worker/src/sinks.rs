//! Which sink a worker hands its events to (`--sink`, [`ews_sink::args`]), and the built-in
//! queue's part only a worker knows: which broker the `queue` sink writes to.

use std::sync::Arc;

use ews_cluster::Membership;
use ews_http::link::LinkKey;
use ews_queue::Broker;
use ews_sink::args::{SinkKind, SINK_WINDOW};
use ews_sink::Sink;

#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    #[command(flatten)]
    pub to: ews_sink::args::SinkArgs,

    /// A queue broker to send to (`ws://host:port/queue/NAME`) instead of the active leader's
    /// (in a cluster) or the embedded one (outside a cluster).
    #[arg(long, env = "EWS_QUEUE_URL")]
    pub queue_url: Option<String>,

    /// The embedded broker's storage and limits (outside a cluster).
    #[command(flatten)]
    pub queue: ews_queue::args::QueueArgs,
}

/// The broker the node hosts for its own queue sink: outside a cluster, without `--queue-url`.
/// The node holds it for its life (it keeps the queue directory locked).
pub fn embedded_broker(args: &SinkArgs, in_cluster: bool) -> anyhow::Result<Option<Arc<Broker>>> {
    if args.to.sink != SinkKind::Queue || args.queue_url.is_some() || in_cluster {
        return Ok(None);
    }
    let broker = args.queue.open()?;
    tracing::info!(dir = %args.queue.queue_dir.display(), queue = %args.to.queue_name, "embedded queue");
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
    match args.to.build_direct("ews-worker").await? {
        Some(sink) => Ok(sink),
        None => queue_sink(args, cluster, broker),
    }
}

fn queue_sink(
    args: &SinkArgs,
    cluster: Option<&Arc<Membership>>,
    broker: Option<&Arc<Broker>>,
) -> anyhow::Result<Arc<dyn Sink>> {
    use ews_sink::QueueSink;
    if let Some(b) = broker {
        return Ok(Arc::new(QueueSink::embedded(b.queue(&args.to.queue_name)?)));
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
    let name = args.to.queue_name.clone();
    let target = Arc::new(move || {
        m.active_leader_internal_addr()
            .map(|addr| format!("ws://{addr}/queue/{name}"))
    });
    Ok(Arc::new(QueueSink::remote(target, link, SINK_WINDOW)))
}
