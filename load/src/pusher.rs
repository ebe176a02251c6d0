//! The Pusher channels protocol, as far as `fanout` needs it to measure a Pusher-protocol server
//! (sockudo, soketi, Pusher itself) on the same load as ours: subscribe a socket to a public
//! channel, recognise an event on it, and publish through the signed HTTP API
//! (`POST /apps/{id}/events`, authenticated by an HMAC-SHA256 over the method, path and sorted
//! query, the body bound by its MD5).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;

/// The app a Pusher-protocol server knows (its id, key and secret).
#[derive(clap::Args, Debug, Clone)]
pub struct PusherArgs {
    /// `--protocol pusher`: the app id the events API is under.
    #[arg(long, env = "EWS_PUSHER_APP_ID", default_value = "app-id")]
    pub pusher_app_id: String,
    /// `--protocol pusher`: the app key (the subscribers connect to `/app/{key}`).
    #[arg(long, env = "EWS_PUSHER_KEY", default_value = "app-key")]
    pub pusher_key: String,
    /// `--protocol pusher`: the app secret the events API requests are signed with.
    #[arg(long, env = "EWS_PUSHER_SECRET", default_value = "app-secret")]
    pub pusher_secret: String,
}

/// The event name `fanout` publishes.
pub const EVENT: &str = "ews-load";

/// A socket's request to join `channel`.
pub fn subscribe(channel: &str) -> String {
    json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string()
}

/// What a frame says about a subscription to `channel`: joined, refused (why), or neither.
pub fn subscription(frame: &Value, channel: &str) -> Option<Result<(), String>> {
    match frame["event"].as_str()? {
        "pusher_internal:subscription_succeeded" if frame["channel"] == channel => Some(Ok(())),
        "pusher:error" | "pusher:subscription_error" => Some(Err(frame["data"].to_string())),
        _ => None,
    }
}

/// The data of our event on `channel`, if the frame is one.
pub fn event_data<'a>(frame: &'a Value, channel: &str) -> Option<&'a str> {
    (frame["event"] == EVENT && frame["channel"] == channel)
        .then(|| frame["data"].as_str())
        .flatten()
}

/// The path and query, and the body, of a signed request publishing `data` to `channel` at
/// `timestamp` (seconds since the epoch).
pub fn publish_request(
    app: &PusherArgs,
    channel: &str,
    data: &str,
    timestamp: u64,
) -> (String, String) {
    let body = json!({"name": EVENT, "channels": [channel], "data": data}).to_string();
    let path = format!("/apps/{}/events", app.pusher_app_id);
    let query = format!(
        "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={}",
        app.pusher_key,
        hex(&Md5::digest(body.as_bytes()))
    );
    let signature = sign(&app.pusher_secret, &format!("POST\n{path}\n{query}"));
    (format!("{path}?{query}&auth_signature={signature}"), body)
}

fn sign(secret: &str, text: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(text.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_api_signature_of_pushers_documentation() {
        // The worked example of Pusher's HTTP API reference ("Generating authentication
        // signatures"): key, secret, timestamp and body from there, and its signature.
        let app = PusherArgs {
            pusher_app_id: "3".into(),
            pusher_key: "278d425bdf160c739803".into(),
            pusher_secret: "7ad3773142a6692b25b8".into(),
        };
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(
            hex(&Md5::digest(body.as_bytes())),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let text = "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f";
        assert_eq!(
            sign(&app.pusher_secret, text),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        let (target, ours) = publish_request(&app, "c", "d", 1);
        assert!(
            target.starts_with("/apps/3/events?auth_key=278d425bdf160c739803&auth_timestamp=1&")
        );
        assert_eq!(ours, r#"{"channels":["c"],"data":"d","name":"ews-load"}"#);
    }

    #[test]
    fn frames_are_recognised() {
        let ok: Value = serde_json::from_str(
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#,
        )
        .unwrap();
        assert_eq!(subscription(&ok, "c"), Some(Ok(())));
        assert_eq!(subscription(&ok, "other"), None);
        let ev: Value =
            serde_json::from_str(r#"{"event":"ews-load","channel":"c","data":"1:2"}"#).unwrap();
        assert_eq!(event_data(&ev, "c"), Some("1:2"));
        assert_eq!(event_data(&ev, "d"), None);
    }
}
