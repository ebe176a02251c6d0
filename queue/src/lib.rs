//! The built-in durable queue broker (`001_*`, made durable and bounded).
//!
//! * [`Broker`] holds named [`Queue`]s under a data directory. `send` is acknowledged with an id
//!   only after a group-committed `fdatasync`; `receive{count}` adds to cumulative demand and the
//!   broker pushes at most that many; `delete{id}` acknowledges; an undeleted message is
//!   redelivered after the visibility timeout and dead-lettered after `max_deliveries`.
//! * Storage (`storage`) is an append-only log of checksummed records per queue, replayed on
//!   open, with fully acknowledged segments deleted; its writer thread only reports durability,
//!   and [`Queue`] turns that into [`Durable`] futures.
//! * [`server`] speaks the `/queue/{name}` WebSocket protocol ([`protocol`]) for any hyper
//!   server; [`client`] is its counterpart.

pub mod args;
mod broker;
mod net;
mod queue;
mod storage;

pub use net::{client, protocol, server};

pub use broker::{valid_name, Broker};
pub use protocol::{ClientFrame, ServerFrame};
pub use queue::{Delivery, Durable, Queue, QueueConfig};

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("queue closed")]
    Closed,
    #[error("message of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("queue full")]
    Full,
    #[error("queue directory {0} is in use by another process")]
    Locked(String),
    #[error("invalid queue name {0:?}")]
    BadName(String),
    #[error("too many queues: this broker holds at most {0}")]
    TooManyQueues(usize),
    #[error("storage: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("connect: {0}")]
    Connect(String),
    #[error("the broker could not prove the cluster key: {0}")]
    Untrusted(ews_http::link::LinkError),
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        QueueError::Io(Arc::new(e))
    }
}
