//! Cluster membership for elastic-ws: who is in the cluster, in which role and state, where to
//! reach them, how loaded they are, and which leader is active.
//!
//! Membership is scuttlebutt gossip with phi-accrual failure detection over UDP (`chitchat`),
//! following the paper's Akka cluster semantics: leaders seed each other, workers seed both
//! leaders and join through whichever answers, a node that cannot join gives up after a while,
//! and a node that shuts down says so (`status=leaving`) before it stops gossiping, so its peers
//! drop it at once instead of waiting for the failure detector.
//!
//! The API is small: parse [`ClusterArgs`] (flattened into each binary's CLI), build a
//! [`MembershipConfig`], [`Membership::start`] it, read [`ClusterView`]s, and call
//! [`Membership::leave`] then [`Membership::shutdown`] on the way out.

mod args;
pub mod command;
pub mod interest;
pub mod link_client;
mod membership;
mod metrics;
mod node;
pub mod placement;
pub mod presence;
mod proof;
pub mod publish;
mod seeds;
mod view;

pub use args::{ClusterArgs, ClusterSecret, Seed};
pub use membership::{
    Announced, JoinState, Membership, MembershipConfig, ANNOUNCE_TIMEOUT, LEAVE_ROUNDS,
};
pub use metrics::ClusterMetrics;
pub use node::{NodeState, Role, Status, STATE_PATH};
pub use view::{ClusterView, Member};
