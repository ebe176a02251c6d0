//! History on Redis or Valkey (ElastiCache in AWS): each stream is a Redis stream holding its
//! last messages (entry id = the offset) beside a small hash with its epoch and top offset. Each
//! append and each read is one Lua script, so offsets are handed out atomically whichever node
//! appends, and a read sees the epoch and the entries of one moment.
//!
//! An engine that restarts empty (no persistence, a failover to a replica that had not caught
//! up) loses the hashes: the next touch of a stream makes a new epoch, and every client holding
//! the old one is told it cannot recover. Never a silent gap.
//!
//! The client is the `redis` crate's `ConnectionManager`: one multiplexed connection per
//! process, reconnecting by itself, every command bounded by a response timeout. (`redis` over
//! `fred`: both are maintained and async; `redis` is the one most of the ecosystem builds on,
//! its scripts fall back from EVALSHA to EVAL by themselves, and it adds fewer crates to the
//! build.)

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::{
    decide, new_epoch, BoxFuture, Engine, Entry, HistoryError, Limits, Position, Recovery,
};

/// Metadata (epoch, top offset) outlives the messages: a client that comes back after the
/// messages expired hears `expired`, not `epoch_changed`. At least this long.
const META_TTL_MIN: Duration = Duration::from_secs(24 * 3600);

const APPEND: &str = r#"
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch, 's', 0)
end
local top = redis.call('hincrby', KEYS[2], 's', 1)
redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[1], tostring(top) .. '-0', 'd', ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[3])
redis.call('pexpire', KEYS[2], ARGV[5])
return {top, epoch}
"#;

/// ARGV: first id to read, count (0: none), new epoch, meta ttl, the reader's epoch.
const READ: &str = r#"
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch, 's', 0)
  redis.call('pexpire', KEYS[2], ARGV[4])
  return {0, epoch}
end
local top = tonumber(redis.call('hget', KEYS[2], 's') or '0')
local out = {top, epoch}
if ARGV[5] == epoch and tonumber(ARGV[2]) > 0 then
  local entries = redis.call('xrange', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
  for _, e in ipairs(entries) do
    out[#out + 1] = e[1]
    out[#out + 1] = e[2][2]
  end
end
return out
"#;

pub struct RedisEngine {
    conn: ConnectionManager,
    prefix: String,
    append: Script,
    read: Script,
}

impl RedisEngine {
    /// An engine on `url` (`redis://`, or `rediss://` for TLS, with `user:password@` where the
    /// server wants an auth token), keys under `prefix`. Connects lazily: a server that is down
    /// now is retried on each call, whose errors say so.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisEngine, HistoryError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(RedisEngine {
            conn,
            prefix: prefix.to_string(),
            append: Script::new(APPEND),
            read: Script::new(READ),
        })
    }

    /// The stream's keys, in one hash slot (a cluster-mode server keeps them together).
    fn keys(&self, stream: &str) -> (String, String) {
        (
            format!("{}{{{stream}}}:s", self.prefix),
            format!("{}{{{stream}}}:m", self.prefix),
        )
    }

    /// Runs the read script: the stream's top and up to `count` entries from `first` (in
    /// `epoch` only).
    async fn read(
        &self,
        stream: &str,
        first: u64,
        count: usize,
        epoch: &str,
    ) -> Result<(Position, Vec<Entry>), HistoryError> {
        let (s, m) = self.keys(stream);
        let mut conn = self.conn.clone();
        let out: Vec<Value> = self
            .read
            .key(s)
            .key(m)
            .arg(format!("{first}-0"))
            .arg(count)
            .arg(new_epoch())
            .arg(META_TTL_MIN.as_millis() as u64)
            .arg(epoch)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        parse_read(out)
    }
}

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// `{top, epoch, id, data, id, data, ...}` (ids `N-0`).
fn parse_read(out: Vec<Value>) -> Result<(Position, Vec<Entry>), HistoryError> {
    let bad = || HistoryError::Unavailable("unexpected answer from the history script".into());
    let mut it = out.into_iter();
    let top = it.next().as_ref().and_then(int).ok_or_else(bad)?;
    let epoch = it.next().and_then(text).ok_or_else(bad)?;
    let mut entries = Vec::new();
    while let Some(id) = it.next() {
        let id = text(id).ok_or_else(bad)?;
        let offset = id
            .split_once('-')
            .and_then(|(o, _)| o.parse().ok())
            .ok_or_else(bad)?;
        let data = it.next().and_then(text).ok_or_else(bad)?;
        entries.push(Entry { offset, data });
    }
    Ok((Position { offset: top, epoch }, entries))
}

impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        data: String,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Position, HistoryError>> {
        Box::pin(async move {
            let (s, m) = self.keys(stream);
            let mut conn = self.conn.clone();
            let ttl = limits.ttl.as_millis().max(1) as u64;
            let meta_ttl = limits.ttl.max(META_TTL_MIN).as_millis() as u64;
            let (offset, epoch): (u64, String) = self
                .append
                .key(s)
                .key(m)
                .arg(limits.size.max(1))
                .arg(data)
                .arg(ttl)
                .arg(new_epoch())
                .arg(meta_ttl)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(Position { offset, epoch })
        })
    }

    fn recover<'a>(
        &'a self,
        stream: &'a str,
        from: &'a Position,
        max: usize,
    ) -> BoxFuture<'a, Result<Recovery, HistoryError>> {
        Box::pin(async move {
            let count = max.saturating_add(1);
            let (top, entries) = self
                .read(stream, from.offset + 1, count, &from.epoch)
                .await?;
            Ok(decide(from, top, entries, max))
        })
    }

    fn top<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Position, HistoryError>> {
        Box::pin(async move { Ok(self.read(stream, 0, 0, "").await?.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Miss;

    const LIMITS: Limits = Limits {
        size: 3,
        ttl: Duration::from_secs(60),
    };

    #[tokio::test]
    async fn offsets_epochs_and_recovery_on_a_real_server() {
        let mut server = ews_testkit::redis::Redis::start();
        let e = RedisEngine::new(&server.url(), "ews:h:", Duration::from_secs(2)).unwrap();
        let start = e.top("room.1").await.unwrap();
        assert_eq!(start.offset, 0);
        for i in 1..=5u64 {
            let p = e.append("room.1", format!("m{i}"), LIMITS).await.unwrap();
            assert_eq!(
                p,
                Position {
                    offset: i,
                    epoch: start.epoch.clone()
                }
            );
        }
        let two = Position {
            offset: 2,
            epoch: start.epoch.clone(),
        };
        match e.recover("room.1", &two, 100).await.unwrap() {
            Recovery::Recovered { missed, top } => {
                let got: Vec<_> = missed.iter().map(|m| (m.offset, m.data.as_str())).collect();
                assert_eq!(got, [(3, "m3"), (4, "m4"), (5, "m5")]);
                assert_eq!(top.offset, 5);
            }
            other => panic!("{other:?}"),
        }
        let one = Position { offset: 1, ..two };
        assert!(matches!(
            e.recover("room.1", &one, 100).await.unwrap(),
            Recovery::Lost {
                why: Miss::Expired,
                ..
            }
        ));
        // Another stream has its own offsets.
        assert_eq!(
            e.append("room.2", "x".into(), LIMITS).await.unwrap().offset,
            1
        );

        // The server comes back empty: a new epoch, and the old position is told so.
        server.restart_empty();
        let five = Position {
            offset: 5,
            epoch: start.epoch.clone(),
        };
        let mut got = e.recover("room.1", &five, 100).await;
        // The first call after the restart may meet the broken connection.
        if got.is_err() {
            got = e.recover("room.1", &five, 100).await;
        }
        match got.unwrap() {
            Recovery::Lost { why, top } => {
                assert_eq!(why, Miss::EpochChanged);
                assert_ne!(top.epoch, start.epoch);
                assert_eq!(top.offset, 0);
                // Appends continue in the new epoch.
                let p = e.append("room.1", "m6".into(), LIMITS).await.unwrap();
                assert_eq!(
                    p,
                    Position {
                        offset: 1,
                        epoch: top.epoch
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_an_error_not_a_hang() {
        let port = ews_testkit::free_port();
        let e = RedisEngine::new(
            &format!("redis://127.0.0.1:{port}"),
            "ews:h:",
            Duration::from_millis(500),
        )
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), e.append("t", "m".into(), LIMITS))
            .await
            .expect("answered within the timeout");
        assert!(matches!(got, Err(HistoryError::Unavailable(_))), "{got:?}");
    }
}
