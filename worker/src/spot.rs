//! Spot interruptions: EC2 gives a Spot instance two minutes' notice before it reclaims it,
//! through the instance metadata service (`spot/instance-action`). A worker told to poll it
//! (`--imds-url`, set by Terraform on Spot workers) starts its drain on the notice, exactly as
//! SIGTERM would: `/info` turns 503, upgrades are refused, every session is closed with 1012
//! spread over the drain window, and the worker exits. Its clients reconnect to the other
//! workers well before the instance is gone (Terraform keeps the drain window within the
//! notice). The group's Capacity Rebalancing launches the replacement.
//!
//! IMDSv2 only: a session token from `PUT /latest/api/token`, then the notice with it. A
//! metadata service that does not answer (not on EC2, a firewall) is logged once and polled
//! again; it never stops the worker.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::WorkerHandle;

/// The Spot flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SpotArgs {
    /// Poll the instance metadata service at this base URL (`http://169.254.169.254` on EC2)
    /// for a Spot interruption notice, and drain when one comes. Unset: not polled.
    #[arg(long = "imds-url", env = "EWS_IMDS_URL", value_parser = imds_url)]
    pub imds_url: Option<Uri>,

    /// How often the notice is polled for.
    #[arg(long, env = "EWS_IMDS_POLL_SECS", default_value = "5", value_parser = ews_http::args::positive_secs)]
    pub imds_poll_secs: Duration,
}

/// `http://host[:port]`, nothing after it: the metadata service's base.
fn imds_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("{s:?}: {e}"))?;
    match (uri.scheme_str(), uri.authority(), uri.path()) {
        (Some("http"), Some(_), "" | "/") => Ok(uri),
        _ => Err(format!(
            "{s:?}: an http:// base URL without a path, e.g. http://169.254.169.254"
        )),
    }
}

/// A notice: what EC2 will do, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Notice {
    pub action: String,
    pub time: String,
}

/// Each request's limit: the metadata service answers in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The token's life, renewed well before it ends.
const TOKEN_TTL_SECS: u64 = 21_600;

struct Imds {
    base: Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    token: Option<String>,
}

impl Imds {
    async fn call(
        &self,
        method: Method,
        path: &str,
        header: (&str, &str),
    ) -> Result<(StatusCode, Bytes), String> {
        let uri = format!("{}{path}", self.base.to_string().trim_end_matches('/'));
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header.0, header.1)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, res.into_body().collect())
            .await
            .map_err(|_| "timed out reading".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    /// The notice, if there is one now.
    async fn notice(&mut self) -> Result<Option<Notice>, String> {
        if self.token.is_none() {
            let ttl = TOKEN_TTL_SECS.to_string();
            let (status, body) = self
                .call(
                    Method::PUT,
                    "/latest/api/token",
                    ("x-aws-ec2-metadata-token-ttl-seconds", &ttl),
                )
                .await?;
            if status != StatusCode::OK {
                return Err(format!("token: {status}"));
            }
            self.token = Some(String::from_utf8_lossy(&body).trim().to_string());
        }
        let token = self.token.clone().unwrap_or_default();
        let (status, body) = self
            .call(
                Method::GET,
                "/latest/meta-data/spot/instance-action",
                ("x-aws-ec2-metadata-token", &token),
            )
            .await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| format!("an instance-action that is not JSON: {e}")),
            StatusCode::UNAUTHORIZED => {
                // The token ran out: a new one next round.
                self.token = None;
                Err("token expired".into())
            }
            other => Err(format!("instance-action: {other}")),
        }
    }
}

/// Polls until a notice comes (then begins the drain) or `stop`.
pub async fn watch(args: SpotArgs, worker: WorkerHandle, stop: CancellationToken) {
    let Some(base) = args.imds_url else { return };
    let mut imds = Imds {
        base,
        client: Client::builder(TokioExecutor::new()).build_http(),
        token: None,
    };
    let mut failing = false;
    loop {
        match imds.notice().await {
            Ok(Some(notice)) => {
                tracing::warn!(
                    action = %notice.action,
                    at = %notice.time,
                    "Spot interruption notice: draining"
                );
                worker.begin_drain();
                return;
            }
            Ok(None) => {
                if failing {
                    tracing::info!("instance metadata service answers again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "instance metadata service: no answer about Spot interruptions; polling on");
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = worker.draining() => return,
            _ = tokio::time::sleep(args.imds_poll_secs) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_is_checked() {
        assert!(imds_url("http://169.254.169.254").is_ok());
        assert!(imds_url("http://127.0.0.1:8123/").is_ok());
        for bad in [
            "https://169.254.169.254",
            "169.254.169.254",
            "http://x/latest",
            "",
        ] {
            assert!(imds_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_notice_parses() {
        let n: Notice =
            serde_json::from_str(r#"{"action": "terminate", "time": "2026-12-07T23:50:00Z"}"#)
                .unwrap();
        assert_eq!(n.action, "terminate");
    }
}
