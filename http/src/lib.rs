//! The one way an elastic-ws node serves a TCP port: the worker's public, admin and node-link
//! ports, the leader's admin and internal ports, and `ews-queue` all go through [`serve`].
//!
//! Every port gets the same guarantees, so none can be held by a silent peer: a cap on open
//! connections, a deadline for each request head (which is also how long an idle keep-alive
//! connection may stay), a deadline for each request, back-off when descriptors run out, and a
//! graceful shutdown that waits for the requests in flight. [`bind`] opens the listener with a
//! backlog sized for reconnect storms. [`reply`] builds the plain answers; [`WsUpgrade`]
//! validates a WebSocket handshake into a typed value before anything is spawned.

pub mod args;
pub mod link;
pub mod link_stream;
mod listen;
mod ports;
pub mod reply;
mod serve;
mod ws;

pub use listen::{bind, Backlog};
pub use ports::Ports;
pub use reply::Body;
pub use serve::{
    serve, Event, Events, Limits, H2_CONNECTION_WINDOW, H2_KEEPALIVE, H2_STREAM_WINDOW,
};
pub use ws::{Rejection, Upgrading, WsStream, WsUpgrade};
