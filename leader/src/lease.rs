//! The active-leader lease in DynamoDB: one item per cluster, taken and renewed with conditional
//! writes, so at most one leader holds an unexpired term at any time, whatever the network between
//! the leaders does (the "lease" strategy of Akka's Split Brain Resolver).
//!
//! Item (`lease` is the table's string hash key): `holder` (node id), `epoch` (raised on every
//! change of holder: the fencing number peers follow), `expires_ms` (wall clock, ms since the
//! epoch). A leader takes the lease only when it is free or expired, and renews it only while it
//! still holds the same epoch; the holder stops acting before its term can expire (see
//! `activity`), so a term that another leader took over was already given up.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

/// Where the active term is held: what the leaders' choice (`activity`) needs of it. The
/// DynamoDB item in AWS; an in-memory fake in the tests of the step-down rule.
pub trait LeaseStore: Send + Sync {
    /// Takes the lease for `me` for `ttl` if nobody holds an unexpired term: `Ok(Some(epoch))`
    /// taken with a new epoch, `Ok(None)` held by somebody else.
    fn acquire(
        &self,
        me: &str,
        ttl: Duration,
    ) -> impl std::future::Future<Output = Result<Option<u64>, String>> + Send;

    /// Extends `me`'s term `epoch` by `ttl` from now; `Ok(false)` once it is not `me`'s.
    fn renew(
        &self,
        me: &str,
        epoch: u64,
        ttl: Duration,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send;

    /// Ends `me`'s term `epoch` now.
    fn release(
        &self,
        me: &str,
        epoch: u64,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send;
}

impl LeaseStore for DynamoLease {
    async fn acquire(&self, me: &str, ttl: Duration) -> Result<Option<u64>, String> {
        DynamoLease::acquire(self, me, ttl).await
    }

    async fn renew(&self, me: &str, epoch: u64, ttl: Duration) -> Result<bool, String> {
        DynamoLease::renew(self, me, epoch, ttl).await
    }

    async fn release(&self, me: &str, epoch: u64) -> Result<bool, String> {
        DynamoLease::release(self, me, epoch).await
    }
}

/// The lease's item in a DynamoDB table.
pub struct DynamoLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    name: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoLease {
    /// The lease `name` in `table`. Region and credentials come from the environment (the
    /// instance profile on EC2); `AWS_ENDPOINT_URL` points it elsewhere (moto in tests). Every
    /// call is bounded, so a hung endpoint counts as a failed renewal.
    pub async fn new(table: &str, name: &str) -> DynamoLease {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(3))
            .build();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        DynamoLease::with_config(&shared, table, name)
    }

    /// The lease over an explicit AWS configuration.
    pub fn with_config(config: &aws_config::SdkConfig, table: &str, name: &str) -> DynamoLease {
        DynamoLease {
            client: aws_sdk_dynamodb::Client::new(config),
            table: table.to_string(),
            name: name.to_string(),
        }
    }

    /// Takes the lease for `me` for `ttl` if nobody holds an unexpired term. `Ok(Some(epoch))`:
    /// taken, with a new epoch; `Ok(None)`: somebody else holds it.
    pub async fn acquire(&self, me: &str, ttl: Duration) -> Result<Option<u64>, String> {
        let now = now_ms();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("lease", s(&self.name))
            .update_expression(
                "SET #holder = :me, #expires = :expires, #epoch = if_not_exists(#epoch, :zero) + :one",
            )
            .condition_expression("attribute_not_exists(#holder) OR #expires < :now")
            .set_expression_attribute_names(Some(names()))
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":expires", n(now + ttl.as_millis() as u64))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match out {
            Ok(out) => {
                let epoch = out
                    .attributes()
                    .and_then(|a| a.get("epoch"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| "the lease write returned no epoch".to_string())?;
                Ok(Some(epoch))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(DisplayErrorContext(&e).to_string()),
        }
    }

    /// Extends `me`'s term `epoch` by `ttl` from now. `Ok(false)`: the term is no longer
    /// `me`'s (it expired and was taken).
    pub async fn renew(&self, me: &str, epoch: u64, ttl: Duration) -> Result<bool, String> {
        self.update_held(me, epoch, now_ms() + ttl.as_millis() as u64)
            .await
    }

    /// Ends `me`'s term `epoch` now, so a standby takes over without waiting for it to expire.
    pub async fn release(&self, me: &str, epoch: u64) -> Result<bool, String> {
        self.update_held(me, epoch, 0).await
    }

    async fn update_held(&self, me: &str, epoch: u64, expires: u64) -> Result<bool, String> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("lease", s(&self.name))
            .update_expression("SET #expires = :expires")
            .condition_expression("#holder = :me AND #epoch = :epoch")
            .set_expression_attribute_names(Some(names()))
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":epoch", n(epoch))
            .expression_attribute_values(":expires", n(expires))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(DisplayErrorContext(&e).to_string()),
        }
    }
}

/// Attribute names through placeholders: no clash with DynamoDB's reserved words.
fn names() -> HashMap<String, String> {
    [
        ("#holder", "holder"),
        ("#expires", "expires_ms"),
        ("#epoch", "epoch"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ews_testkit::moto::Moto;

    /// Two leaders contend for one lease in moto's DynamoDB: one term at a time, a new epoch on
    /// every change of holder, a lapsed term taken over, a released one at once.
    #[tokio::test]
    async fn one_holder_at_a_time_with_a_new_epoch_each_change() {
        let moto = Moto::start();
        moto.create_dynamodb_table("leases", "lease");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .load()
            .await;
        let a = DynamoLease::with_config(&config, "leases", "active-leader");
        let b = DynamoLease::with_config(&config, "leases", "active-leader");
        let ttl = Duration::from_millis(600);

        assert_eq!(a.acquire("leader-1", ttl).await, Ok(Some(1)));
        assert_eq!(b.acquire("leader-2", ttl).await, Ok(None), "held");
        assert_eq!(a.renew("leader-1", 1, ttl).await, Ok(true));
        assert_eq!(b.renew("leader-2", 1, ttl).await, Ok(false), "not its term");

        // leader-1 stops renewing (dead, or cut off from the store): the term lapses.
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        assert_eq!(b.acquire("leader-2", ttl).await, Ok(Some(2)));
        assert_eq!(a.renew("leader-1", 1, ttl).await, Ok(false), "fenced off");

        // A released term is free at once.
        assert_eq!(b.release("leader-2", 2).await, Ok(true));
        assert_eq!(a.acquire("leader-1", ttl).await, Ok(Some(3)));
        // Another lease name in the same table is another cluster's.
        let c = DynamoLease::with_config(&config, "leases", "other-cluster");
        assert_eq!(c.acquire("leader-9", ttl).await, Ok(Some(1)));
    }
}
