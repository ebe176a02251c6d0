//! The network side: the `/queue/{name}` WebSocket protocol, the broker's server for it and the
//! client the sink and `ews-queue read` use.

pub mod client;
pub mod protocol;
pub mod server;
