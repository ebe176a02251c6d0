//! `ews-worker`: the WebSocket gateway node, as a library a team builds its own worker on.
//!
//! [`Node::builder`] takes a [`WorkerConfig`] and the team's [`handler::Handler`]s;
//! [`NodeBuilder::build`] opens every port and the sink; [`Node::run`] serves until its shutdown
//! token is cancelled (or [`WorkerHandle::begin_drain`]) and then drains. Signals are the
//! binary's business, not the library's.

mod admin;
mod auth;
pub mod cli;
mod config;
pub mod handler;
mod hooks;
mod ids;
mod jwks;
mod lifecycle;
mod limits;
mod link;
mod membership;
mod metrics;
mod node;
mod page;
mod public;
mod pubsub;
mod rebalance;
mod registry;
mod remote;
mod session;
mod sinks;
mod spot;
mod streams;
mod token;

pub use config::{ConfigError, JwtArgs, Route, Routes, WorkerArgs};
pub use ews_sink::args::SinkKind;
pub use ids::{ClientId, NodeId, SessionId};
pub use membership::MembershipArgs;
pub use node::{Node, NodeArgs, NodeBuilder, WorkerConfig, WorkerHandle};
pub use sinks::SinkArgs;
