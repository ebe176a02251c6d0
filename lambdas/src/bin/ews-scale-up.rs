//! Lambda: the scale-up alarm fired; add one worker and re-threshold both alarms.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match ews_lambdas::lambda::run(ews_lambdas::policy::Direction::Up).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ews-scale-up: {e}");
            ExitCode::FAILURE
        }
    }
}
