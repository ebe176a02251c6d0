//! Elasticity for the worker group: the scaling policy, the two scaler Lambdas built on it, the
//! termination-policy Lambda that picks the least-loaded worker to remove, and `ews-sim`, which
//! replays load curves through the very same policy.

pub mod chart;
pub mod config;
pub mod event;
pub mod lambda;
pub mod policy;
pub mod scaler;
pub mod scenario;
pub mod sim;
pub mod sim_model;
pub mod terminate;
