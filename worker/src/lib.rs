//! `ews-worker`: the WebSocket gateway node.
//!
//! [`Node::build`] opens every port and the sink; [`Node::run`] serves until its shutdown token
//! is cancelled (or [`WorkerHandle::begin_drain`]) and then drains. Signals are the binary's
//! business, not the library's.

mod admin;
mod auth;
mod config;
mod handler;
mod hosted;
mod jwks;
mod limits;
mod link;
mod membership;
mod metrics;
mod node;
mod page;
mod public;
mod rebalance;
mod registry;
mod remote;
mod session;
mod sinks;
mod token;

pub use config::{HandlerKind, JwtArgs, Route, Routes, WorkerArgs};
pub use membership::MembershipArgs;
pub use node::{Node, NodeArgs, WorkerHandle};
pub use sinks::{SinkArgs, SinkKind};
