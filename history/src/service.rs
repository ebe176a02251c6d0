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
    /// gets what it missed. An entry may carry its own limits, `PATTERN=SIZE/TTL_SECS` (either
    /// side may be left out: `room.*=500`, `news.*=/3600`); the first entry that matches a topic
    /// decides. Empty: no history.
    #[arg(long, env = "EWS_HISTORY_TOPICS", value_delimiter = ',')]
    pub history_topics: Vec<String>,

    /// Messages kept per topic (the oldest go first), where its `--history-topics` entry names
    /// none.
    #[arg(long, env = "EWS_HISTORY_SIZE", default_value = "100", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history_size: u32,

    /// Seconds a message is kept, where its `--history-topics` entry names none.
    #[arg(long = "history-ttl-secs", env = "EWS_HISTORY_TTL_SECS", default_value = "300", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub history_ttl_secs: u64,

    /// Pushes to a client id keep history too: every session starts with the `position` of its
    /// client's stream, and a client that comes back `resume`s from its last push.
    #[arg(long, env = "EWS_HISTORY_CLIENTS")]
    pub history_clients: bool,

    /// Most messages one recovery hands over; a client that missed more is told `too_many`.
    #[arg(long, env = "EWS_HISTORY_RECOVER_MAX", default_value = "1000", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub history_recover_max: u32,

    /// Most memory the history kept in this process may take (without a Redis URL): past it the
    /// streams written least recently lose their messages first (their clients are told
    /// `expired`).
    #[arg(long, env = "EWS_HISTORY_MEMORY_MIB", default_value = "256", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub history_memory_mib: u32,

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

/// The bounds of `--history-size` and `--history-ttl-secs`, which an entry's own limits share.
const SIZE_RANGE: std::ops::RangeInclusive<u64> = 1..=100_000;
const TTL_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=604_800;

/// One `--history-topics` entry: the topics it names and how much of each it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: TopicPattern,
    pub limits: Limits,
}

impl Rule {
    /// `PATTERN[=[SIZE][/TTL_SECS]]`, what the entry leaves out taken from `defaults`.
    pub fn parse(entry: &str, defaults: Limits) -> Result<Rule, String> {
        let (pattern, spec) = match entry.split_once('=') {
            Some((p, s)) => (p, Some(s)),
            None => (entry, None),
        };
        let pattern = TopicPattern::parse(pattern).map_err(|e| format!("{entry:?}: {e}"))?;
        let mut limits = defaults;
        if let Some(spec) = spec {
            let (size, ttl) = match spec.split_once('/') {
                Some((s, t)) => (s, Some(t)),
                None => (spec, None),
            };
            let number = |what: &str, s: &str, range: std::ops::RangeInclusive<u64>| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        format!(
                            "{entry:?}: the {what} {s:?} is not a whole number from {} to {} \
                             (PATTERN=SIZE/TTL_SECS)",
                            range.start(),
                            range.end()
                        )
                    })
            };
            if size.is_empty() && ttl.is_none() {
                return Err(format!(
                    "{entry:?}: nothing after '=' (PATTERN=SIZE/TTL_SECS, e.g. room.*=500/3600)"
                ));
            }
            if !size.is_empty() {
                limits.size = number("size", size, SIZE_RANGE)? as usize;
            }
            if let Some(t) = ttl {
                limits.ttl = Duration::from_secs(number("time to live", t, TTL_SECS_RANGE)?);
            }
        }
        Ok(Rule { pattern, limits })
    }

    /// Whether every topic `other` names, this one names too (so `other` after it never
    /// decides anything).
    fn covers(&self, other: &TopicPattern) -> bool {
        match (&self.pattern, other) {
            (TopicPattern::Exact(a), TopicPattern::Exact(b)) => a == b,
            (TopicPattern::Exact(_), TopicPattern::Prefix(_)) => false,
            (TopicPattern::Prefix(p), TopicPattern::Exact(t)) => t.as_str().starts_with(p.as_str()),
            (TopicPattern::Prefix(p), TopicPattern::Prefix(q)) => q.starts_with(p.as_str()),
        }
    }
}

/// Parses the `--history-topics` entries in order, refusing one that an earlier entry hides
/// (its limits would never apply: a silent misconfiguration otherwise).
fn rules(entries: &[String], defaults: Limits) -> Result<Vec<Rule>, String> {
    let mut rules: Vec<Rule> = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let rule = Rule::parse(entry, defaults)?;
        if let Some(earlier) = rules.iter().find(|r| r.covers(&rule.pattern)) {
            return Err(format!(
                "{entry:?} never applies: {:?} before it matches every topic it does (put the \
                 narrower entry first)",
                pattern_text(&earlier.pattern)
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn pattern_text(p: &TopicPattern) -> String {
    match p {
        TopicPattern::Exact(t) => t.as_str().to_string(),
        TopicPattern::Prefix(p) => format!("{p}*"),
    }
}

/// A node's history: which topics keep it, how much, and the engine.
pub struct History {
    rules: Vec<Rule>,
    /// Pushes to client ids keep history too.
    pub clients: bool,
    /// For client streams, and topics whose entry names no limits of its own.
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
        let limits = Limits {
            size: args.history_size as usize,
            ttl: Duration::from_secs(args.history_ttl_secs),
        };
        let rules = rules(&args.history_topics, limits)
            .map_err(|e| anyhow::anyhow!("--history-topics {e}"))?;
        if rules.is_empty() && !args.history_clients {
            return Ok(None);
        }
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
            None => Arc::new(MemoryEngine::new(
                crate::memory::MAX_STREAMS,
                (args.history_memory_mib as usize) << 20,
            )),
        };
        Ok(Some(History {
            rules,
            clients: args.history_clients,
            limits,
            recover_max: args.history_recover_max as usize,
            engine,
        }))
    }

    /// History for the topics `patterns` name, each kept within `limits`.
    pub fn new(
        patterns: Vec<TopicPattern>,
        limits: Limits,
        recover_max: usize,
        engine: Arc<dyn Engine>,
    ) -> History {
        History {
            rules: patterns
                .into_iter()
                .map(|pattern| Rule { pattern, limits })
                .collect(),
            clients: false,
            limits,
            recover_max,
            engine,
        }
    }

    /// How much of `topic` is kept: `None` when it keeps no history.
    pub fn limits_of(&self, topic: &Topic) -> Option<Limits> {
        self.rules
            .iter()
            .find(|r| r.pattern.allows(topic))
            .map(|r| r.limits)
    }

    /// Whether `topic` keeps history.
    pub fn keeps(&self, topic: &Topic) -> bool {
        self.limits_of(topic).is_some()
    }

    pub fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// Keeps a message published to `topic`: its position.
    pub async fn append(&self, topic: &Topic, kept: &Kept) -> Result<Position, HistoryError> {
        let limits = self.limits_of(topic).unwrap_or(self.limits);
        self.append_within(topic.as_str(), kept, limits).await
    }

    /// Keeps a message to client stream `name` ([`History::client_stream`]).
    pub async fn append_to(&self, name: &str, kept: &Kept) -> Result<Position, HistoryError> {
        self.append_within(name, kept, self.limits).await
    }

    async fn append_within(
        &self,
        name: &str,
        kept: &Kept,
        limits: Limits,
    ) -> Result<Position, HistoryError> {
        let data = serde_json::to_string(kept).unwrap_or_default();
        self.engine.append(name, data, limits).await
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

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Limits = Limits {
        size: 100,
        ttl: Duration::from_secs(300),
    };

    fn topic(t: &str) -> Topic {
        Topic::parse(t).unwrap()
    }

    fn history(entries: &[&str]) -> Result<History, String> {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        let rules = rules(&entries, DEFAULTS)?;
        let mut h = History::new(Vec::new(), DEFAULTS, 10, Arc::new(MemoryEngine::default()));
        h.rules = rules;
        Ok(h)
    }

    #[test]
    fn an_entry_may_carry_its_own_size_and_time_to_live() {
        let h = history(&["room.vip.*=1000/3600", "room.*=50", "news=/60", "chat.*"]).unwrap();
        let got = |t: &str| h.limits_of(&topic(t));
        assert_eq!(
            got("room.vip.1"),
            Some(Limits {
                size: 1000,
                ttl: Duration::from_secs(3600)
            })
        );
        assert_eq!(
            got("room.1"),
            Some(Limits {
                size: 50,
                ttl: DEFAULTS.ttl
            })
        );
        assert_eq!(
            got("news"),
            Some(Limits {
                size: DEFAULTS.size,
                ttl: Duration::from_secs(60)
            })
        );
        assert_eq!(got("chat.x"), Some(DEFAULTS));
        assert_eq!(got("other"), None);
        assert!(!h.keeps(&topic("news.1")));
    }

    #[test]
    fn a_bad_entry_or_one_an_earlier_entry_hides_is_refused() {
        for (entries, says) in [
            (&["room.*=0"][..], "size \"0\""),
            (&["room.*=100001"][..], "size"),
            (&["room.*=10/0"][..], "time to live \"0\""),
            (&["room.*=10/604801"][..], "time to live"),
            (&["room.*=ten"][..], "size \"ten\""),
            (&["room.*="][..], "nothing after '='"),
            (&["room *=5"][..], "room *"),
            (
                &["room.*", "room.vip.*=1000"][..],
                "never applies: \"room.*\"",
            ),
            (&["room.*", "room.1=5"][..], "never applies"),
            (&["news", "news=5"][..], "never applies: \"news\""),
        ] {
            let err = history(entries).err().unwrap_or_default();
            assert!(err.contains(says), "{entries:?}: {err}");
        }
        // An exact name before a prefix hides nothing; blanks are skipped.
        assert!(history(&["room.1=5", "room.*", " "]).is_ok());
    }
}
