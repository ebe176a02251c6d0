//! An elastic-ws backend as an AWS Lambda function: the worker's hooks (`"lambda": "<function>"`
//! in its hooks file) invoke it with a [`HookRequest`] and read its result as the
//! [`HookResponse`]. The decisions are those of the HTTP example (`examples/backend-http`), so
//! a team can compare the two and copy either; IAM authorises the worker (its role may invoke
//! only the functions named), so there is no signature to check here.

use ews_proto::hook::{HookKind, HookRequest, HookResponse};
use ews_proto::RpcError;

/// `alice` → `Alice`.
fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The answer to one hook call.
pub fn decide(call: &HookRequest) -> HookResponse {
    let claim = |name: &str| {
        call.claims
            .as_ref()
            .and_then(|c| c.get(name))
            .is_some_and(|v| v.as_bool().unwrap_or(false))
    };
    let client = call.client_id.as_deref().unwrap_or("anonymous");
    let refuse = |reason: &str| HookResponse {
        accept: Some(false),
        reason: Some(reason.into()),
        ..HookResponse::default()
    };
    match call.hook {
        HookKind::Connect if claim("banned") => HookResponse {
            status: Some(403),
            ..refuse("banned by the backend")
        },
        HookKind::Connect => {
            let rooms = vec![format!("room.{client}"), "room.lobby".to_string()];
            // What presence shows beside the client's id (join/leave frames, /api/v1/presence).
            let info = serde_json::json!({ "name": capitalized(client) });
            HookResponse {
                topics: rooms.clone(),
                publish: rooms,
                info: serde_json::from_value(info).ok(),
                ..HookResponse::default()
            }
        }
        HookKind::Subscribe if call.topic.as_deref() == Some("room.staff") && !claim("staff") => {
            refuse("staff only")
        }
        HookKind::Publish => {
            let msg = call.msg.as_deref().unwrap_or("");
            if msg.contains("spam") {
                refuse("looks like spam")
            } else if msg.contains("darn") {
                HookResponse {
                    msg: Some(msg.replace("darn", "d**n")),
                    ..HookResponse::default()
                }
            } else {
                HookResponse::default()
            }
        }
        HookKind::Rpc => match call.method.as_deref() {
            Some("time") => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                HookResponse {
                    data: Some(serde_json::json!({ "now": now })),
                    ..HookResponse::default()
                }
            }
            Some("echo") => HookResponse {
                data: Some(call.data.clone().unwrap_or_default()),
                ..HookResponse::default()
            },
            other => HookResponse {
                error: Some(RpcError::new(
                    "no_method",
                    format!("no method {:?} here", other.unwrap_or("")),
                )),
                ..HookResponse::default()
            },
        },
        HookKind::Message => HookResponse {
            send: vec![format!(
                "backend got: {}",
                call.msg.as_deref().unwrap_or("")
            )],
            ..HookResponse::default()
        },
        // subscribe (other topics), refresh, disconnect
        _ => HookResponse::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(hook: HookKind, f: impl FnOnce(&mut HookRequest)) -> HookResponse {
        let mut c = HookRequest {
            hook,
            client_id: Some("alice".into()),
            node: "w1".into(),
            session: 1,
            route: "/chat".into(),
            claims: None,
            topic: None,
            msg: None,
            method: None,
            data: None,
            reason: None,
        };
        f(&mut c);
        decide(&c)
    }

    #[test]
    fn decides_as_the_http_example() {
        let banned = call(HookKind::Connect, |c| {
            c.claims = serde_json::from_str(r#"{"banned": true}"#).ok()
        });
        assert_eq!((banned.accepted(), banned.status), (false, Some(403)));
        let alice = call(HookKind::Connect, |_| {});
        assert_eq!(alice.topics, ["room.alice", "room.lobby"]);
        assert_eq!(
            serde_json::to_string(&alice.info).unwrap(),
            r#"{"name":"Alice"}"#
        );
        assert!(!call(HookKind::Subscribe, |c| c.topic = Some("room.staff".into())).accepted());
        assert!(!call(HookKind::Publish, |c| c.msg = Some("spam!".into())).accepted());
        assert_eq!(
            call(HookKind::Publish, |c| c.msg = Some("darn".into())).msg,
            Some("d**n".into())
        );
        assert_eq!(
            call(HookKind::Message, |c| c.msg = Some("hi".into())).send,
            ["backend got: hi"]
        );
    }
}
