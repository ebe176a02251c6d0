//! Lambda: the scale-down alarm fired; remove one worker and re-threshold both alarms.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match ews_lambdas::lambda::run(ews_lambdas::policy::Direction::Down).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ews-scale-down: {e}");
            ExitCode::FAILURE
        }
    }
}
