//! Which topics keep history and where (`--history-*`), and the node's view of it: the
//! [`History`] a worker's sessions and a leader's front door append through and recover from.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ews_proto::topic::{Topic, TopicPattern};
use serde::{Deserialize, Serialize};

use crate::{Engine, HistoryError, Limits, MemoryEngine, Position, RedisEngine};

/// The history flags, shared by `ews-worker` and `ews-leader` (both append: the worker for its
/// clients' and handlers' publishes and its admin API, the leader for its front door).
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Topics whose messages are kept (comma-separated names or patterns such as `room.*`): each
    /// push on them carries an offset and an epoch, and a client that resubscribes with `since`
    /// gets what it missed. Empty: no history.
    #[arg(long, env = "EWS_HISTORY_TOPICS", value_delimiter = ',')]
    pub history_topics: Vec<String>,

    /// Messages kept per topic (the oldest go first).
    #[arg(long, env = "EWS_HISTORY_SIZE", default_value = "100", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history_size: u32,

    /// Seconds a message is kept.
    #[arg(long = "history-ttl-secs", env = "EWS_HISTORY_TTL_SECS", default_value = "300", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub history_ttl_secs: u64,

    /// Pushes to a client id keep history too: every session starts with the `position` of its
    /// client's stream, and a client that comes back `resume`s from its last push.
    #[arg(long, env = "EWS_HISTORY_CLIENTS")]
    pub history_clients: bool,

    /// Most messages one recovery hands over; a client that missed more is told `too_many`.
    #[arg(long, env = "EWS_HISTORY_RECOVER_MAX", default_value = "1000", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history_recover_max: u32,

    /// Redis or Valkey holding the history (`redis://host:6379`, `rediss://` for TLS), so it
    /// outlives any node: required in a cluster. Without it, history is kept in this process.
    #[arg(long, env = "EWS_HISTORY_REDIS_URL")]
    pub history_redis_url: Option<String>,

    /// A file holding the Redis URL instead (it carries the auth token).
    #[arg(
        long,
        env = "EWS_HISTORY_REDIS_URL_FILE",
        conflicts_with = "history_redis_url"
    )]
    pub history_redis_url_file: Option<PathBuf>,
}

/// How long one engine call may take.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's history: which topics keep it, how much, and the engine.
pub struct History {
    patterns: Vec<TopicPattern>,
    /// Pushes to client ids keep history too.
    pub clients: bool,
    limits: Limits,
    pub recover_max: usize,
    engine: Arc<dyn Engine>,
}

/// What history keeps of a published message: enough to push it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl History {
    /// From the flags: `None` when no topic keeps history. `in_cluster`: the history must be
    /// shared (Redis), or one node's offsets would mean nothing on another.
    pub fn from_args(args: &HistoryArgs, in_cluster: bool) -> anyhow::Result<Option<History>> {
        if args.history_topics.iter().all(|t| t.trim().is_empty()) && !args.history_clients {
            return Ok(None);
        }
        let patterns = args
            .history_topics
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                TopicPattern::parse(t.trim())
                    .map_err(|e| anyhow::anyhow!("--history-topics {t:?}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let url = match (&args.history_redis_url, &args.history_redis_url_file) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("--history-redis-url-file {}: {e}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let engine: Arc<dyn Engine> = match url {
            Some(u) => Arc::new(
                RedisEngine::new(&u, "ews:h:", ENGINE_TIMEOUT)
                    .map_err(|e| anyhow::anyhow!("--history-redis-url: {e}"))?,
            ),
            None if in_cluster => anyhow::bail!(
                "--history-topics in a cluster needs --history-redis-url: history kept in one \
                 node's memory would mean nothing to the others"
            ),
            None => Arc::new(MemoryEngine::default()),
        };
        let mut h = History::new(
            patterns,
            Limits {
                size: args.history_size as usize,
                ttl: Duration::from_secs(args.history_ttl_secs),
            },
            args.history_recover_max as usize,
            engine,
        );
        h.clients = args.history_clients;
        Ok(Some(h))
    }

    pub fn new(
        patterns: Vec<TopicPattern>,
        limits: Limits,
        recover_max: usize,
        engine: Arc<dyn Engine>,
    ) -> History {
        History {
            patterns,
            clients: false,
            limits,
            recover_max,
            engine,
        }
    }

    /// Whether `topic` keeps history.
    pub fn keeps(&self, topic: &Topic) -> bool {
        self.patterns.iter().any(|p| p.allows(topic))
    }

    pub fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// Keeps a message published to `topic`: its position.
    pub async fn append(&self, topic: &Topic, kept: &Kept) -> Result<Position, HistoryError> {
        self.append_to(topic.as_str(), kept).await
    }

    /// Keeps a message to stream `name` (a topic's, or [`History::client_stream`]).
    pub async fn append_to(&self, name: &str, kept: &Kept) -> Result<Position, HistoryError> {
        let data = serde_json::to_string(kept).unwrap_or_default();
        self.engine.append(name, data, self.limits).await
    }

    /// The stream of pushes to client `client_id` (`@` cannot begin a topic).
    pub fn client_stream(client_id: &str) -> String {
        format!("@{client_id}")
    }
}

impl Kept {
    /// A kept message read back (`None`: not one of ours).
    pub fn parse(data: &str) -> Option<Kept> {
        serde_json::from_str(data).ok()
    }
}
