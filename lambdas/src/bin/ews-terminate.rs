//! Lambda: the worker group's custom termination policy; remove the least-loaded workers.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match ews_lambdas::terminate::run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ews-terminate: {e}");
            ExitCode::FAILURE
        }
    }
}
