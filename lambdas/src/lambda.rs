//! The shared `main` of `ews-scale-up` and `ews-scale-down`: configuration is read and checked at
//! cold start, so a missing or malformed variable fails the init with its name in the log.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

use crate::config::Config;
use crate::policy::Direction;
use crate::scaler::Scaler;

pub async fn run(direction: Direction) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let cfg = Config::from_env(direction).map_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
        e
    })?;
    tracing::info!(?cfg, "scaler configured");
    let scaler = Scaler::from_env(cfg).await;
    let scaler = &scaler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        scaler.handle(event).await
    }))
    .await
}
