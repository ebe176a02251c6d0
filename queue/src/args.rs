//! The broker's command-line flags, shared by every binary that hosts it (`ews-queue`,
//! `ews-leader`, `ews-worker --standalone`), so each spells them the same way.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Broker, QueueConfig, QueueError};

#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// Directory of the built-in queue's segment logs (one subdirectory per queue).
    #[arg(long, env = "EWS_QUEUE_DIR", default_value = "./data/queue")]
    pub queue_dir: PathBuf,
    /// A delivered message not deleted within this time is delivered again.
    #[arg(
        long,
        env = "EWS_QUEUE_VISIBILITY_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub queue_visibility_timeout_ms: u64,
    /// Deliveries after which an undeleted message moves to `<queue>-dlq` (0: never).
    #[arg(long, env = "EWS_QUEUE_MAX_DELIVERIES", default_value_t = 5)]
    pub queue_max_deliveries: u32,
    /// Messages a queue holds before senders are back-pressured.
    #[arg(long, env = "EWS_QUEUE_MAX_DEPTH", default_value_t = 100_000, value_parser = at_least_one)]
    pub queue_max_depth: usize,
    /// Body bytes a queue holds before senders are back-pressured.
    #[arg(long, env = "EWS_QUEUE_MAX_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = at_least_one)]
    pub queue_max_bytes: usize,
    /// Messages one consumer connection may hold delivered and not yet deleted; past it it gets
    /// nothing more until it deletes, so a greedy consumer cannot starve the others.
    #[arg(long, env = "EWS_QUEUE_MAX_UNACKED", default_value_t = 1000, value_parser = at_least_one)]
    pub queue_max_unacked: usize,
    /// Queues (besides their dead-letter queues) the broker creates at most; a client naming
    /// one more gets an error frame. Queues already stored are always recovered.
    #[arg(long, env = "EWS_QUEUE_MAX_QUEUES", default_value_t = crate::broker::DEFAULT_MAX_QUEUES, value_parser = at_least_one)]
    pub queue_max_queues: usize,
}

/// A bound that must hold at least one (message or byte): `0` is an error, not rounded up.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

impl QueueArgs {
    pub fn config(&self) -> QueueConfig {
        QueueConfig {
            visibility_timeout: Duration::from_millis(self.queue_visibility_timeout_ms),
            max_deliveries: self.queue_max_deliveries,
            max_depth: self.queue_max_depth,
            max_bytes: self.queue_max_bytes,
            max_unacked: self.queue_max_unacked,
            ..QueueConfig::default()
        }
    }

    /// Opens the broker these flags describe, recovering what is stored.
    pub fn open(&self) -> Result<Broker, QueueError> {
        Ok(Broker::open(&self.queue_dir, self.config())?.max_queues(self.queue_max_queues))
    }
}

/// A broker opened on first use. A leader hosts the queue only while it is the active one, so it
/// touches (and locks) its queue directory only once a client asks for a queue.
pub struct LazyBroker {
    args: QueueArgs,
    broker: Mutex<Option<Arc<Broker>>>,
}

impl LazyBroker {
    pub fn new(args: QueueArgs) -> LazyBroker {
        LazyBroker {
            args,
            broker: Mutex::new(None),
        }
    }

    /// The broker, opening (and recovering) it the first time.
    pub fn get(&self) -> Result<Arc<Broker>, QueueError> {
        let mut slot = self.broker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = Arc::new(self.args.open()?);
        *slot = Some(b.clone());
        Ok(b)
    }
}
