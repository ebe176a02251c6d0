//! `ews-hooks-lambda`: the example backend on the Lambda runtime (`cargo lambda build
//! --release --arm64 --output-format zip -p ews-hooks-lambda`, or `cargo lambda watch` locally).

use ews_proto::hook::{HookRequest, HookResponse};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<HookRequest>| async move {
        Ok::<HookResponse, Error>(ews_hooks_lambda::decide(&event.payload))
    }))
    .await
}
