//! Lambda: the scale-down alarm fired; remove one worker and re-threshold both alarms.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ews_lambdas::lambda::run(ews_lambdas::policy::Direction::Down).await
}
