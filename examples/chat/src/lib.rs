//! Chat rooms on elastic-ws: the example handler of `docs/handlers.md`.
//!
//! A client joins and leaves rooms and says things in them; rooms are topics (`chat.<room>`),
//! so a message reaches every member on every worker, and the member list is presence. The
//! client speaks JSON text frames:
//!
//! - `{"do":"join","room":"lobby"}`: answered `{"event":"members","room","members":[…]}`; the
//!   room hears `{"event":"joined","room","from"}`.
//! - `{"do":"say","room":"lobby","text":"hi"}`: the room hears `{"event":"said","room","from","text"}`
//!   (a room the client is not in is refused).
//! - `{"do":"leave","room":"lobby"}`: the room hears `{"event":"left","room","from"}`.
//!
//! What the room hears reaches each member as a push (`{"type":"push","topic":"chat.lobby",
//! "msg":"<the event as JSON>"}`); what is for one client alone comes as the event itself.
//! Mistakes are answered `{"event":"error","detail"}` and the session stays open.
//!
//! Beside the handler's own requests, a member uses what every session offers:
//!
//! - `{"type":"rpc","id":1,"method":"who","data":{"room":"lobby"}}`: answered by this handler
//!   with the room's members (client ids, cluster-wide) in a `reply`.
//! - `{"type":"publish","topic":"chat.lobby","msg":"hi","id":"p1"}`: straight to the room, no
//!   handler in the way, when the token's `publish` claim grants `chat.*`; members get a push
//!   whose `from` is the sender's client id, which the worker sets.
//! - On a route marked `+presence`, members hear `{"type":"join"|"leave","topic","clientId"}`
//!   as clients come and go (the worker's, beside the handler's own `joined`/`left` by name).

use ews_proto::topic::Topic;
use ews_worker::handler::{CloseReason, Handler, Msg, RpcError, SessionCtx};
use serde::{Deserialize, Serialize};

/// Rooms one session may be in at once: a client cannot make its state grow without bound.
pub const MAX_ROOMS: usize = 8;
/// Longest message, in characters.
pub const MAX_TEXT: usize = 2000;

/// The chat handler. Stateless itself: each session's rooms and name are its [`Member`].
pub struct Chat;

/// One session's part of the chat.
#[derive(Debug, Default)]
pub struct Member {
    /// The client id, as presence lists it.
    id: String,
    /// Who the room sees: the token's `name` claim, else its subject.
    name: String,
    rooms: Vec<Room>,
}

/// A room's name (`a-z`, `0-9`, `-`, `_`; 1 to 32) and its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    name: String,
    topic: Topic,
}

impl Room {
    pub fn parse(name: &str) -> Result<Room, String> {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("room {name:?}: 1 to 32 of a-z, 0-9, '-', '_'"));
        }
        let topic = Topic::parse(&format!("chat.{name}")).map_err(|e| e.to_string())?;
        Ok(Room {
            name: name.to_string(),
            topic,
        })
    }
}

/// What a client asks.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "do", rename_all = "lowercase", deny_unknown_fields)]
pub enum Ask {
    Join { room: String },
    Leave { room: String },
    Say { room: String, text: String },
}

/// What a client hears.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Heard {
    Members {
        room: String,
        members: Vec<String>,
    },
    Joined {
        room: String,
        from: String,
    },
    Left {
        room: String,
        from: String,
    },
    Said {
        room: String,
        from: String,
        text: String,
    },
    Error {
        detail: String,
    },
}

impl Heard {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Handler for Chat {
    type State = Member;

    async fn on_open(&self, ctx: &mut SessionCtx<'_>) -> Member {
        // The claims are here only: keep the one this handler uses.
        let claimed = ctx
            .claims()
            .and_then(|c| c.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string);
        let id = ctx
            .client_id()
            .map(|c| c.to_string())
            .unwrap_or_else(|| format!("guest-{}", ctx.session_id()));
        Member {
            name: claimed.unwrap_or_else(|| id.clone()),
            id,
            rooms: Vec::new(),
        }
    }

    async fn on_message(&self, ctx: &mut SessionCtx<'_>, me: &mut Member, msg: Msg) {
        let outcome = match msg.as_text().map(serde_json::from_str::<Ask>) {
            Some(Ok(ask)) => act(ctx, me, ask).await,
            Some(Err(e)) => Err(format!("not a chat request: {e}")),
            None => Err("chat speaks JSON text frames".into()),
        };
        if let Err(detail) = outcome {
            ctx.count("refused");
            let _ = ctx.send(Msg::text(Heard::Error { detail }.to_json())).await;
        }
    }

    /// `who`: the members of `data.room`.
    async fn on_rpc(
        &self,
        ctx: &mut SessionCtx<'_>,
        me: &mut Member,
        method: &str,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, RpcError> {
        if method != "who" {
            return Err(RpcError::no_method(method));
        }
        let room = data
            .get("room")
            .and_then(|r| r.as_str())
            .ok_or_else(|| RpcError::new("bad_request", "who: data is {\"room\": NAME}"))?;
        // Rooms are public in this example: anyone may ask who is in one.
        let room = Room::parse(room).map_err(|e| RpcError::new("bad_request", e))?;
        ctx.count("who");
        Ok(serde_json::json!(members_of(ctx, &room, &me.id).await))
    }

    async fn on_close(&self, ctx: &mut SessionCtx<'_>, me: Member, _: CloseReason) {
        // The rooms hear it; the subscriptions go with the session.
        for room in me.rooms {
            let left = Heard::Left {
                room: room.name.clone(),
                from: me.name.clone(),
            };
            ctx.publish(&room.topic, left.to_json()).await;
        }
    }
}

async fn act(ctx: &mut SessionCtx<'_>, me: &mut Member, ask: Ask) -> Result<(), String> {
    match ask {
        Ask::Join { room } => {
            let room = Room::parse(&room)?;
            if me.rooms.contains(&room) {
                return members(ctx, &room, &me.id).await;
            }
            if me.rooms.len() >= MAX_ROOMS {
                return Err(format!("a session is in at most {MAX_ROOMS} rooms"));
            }
            ctx.subscribe(&room.topic)
                .await
                .map_err(|e| e.to_string())?;
            me.rooms.push(room.clone());
            ctx.count("joined");
            members(ctx, &room, &me.id).await?;
            let joined = Heard::Joined {
                room: room.name.clone(),
                from: me.name.clone(),
            };
            ctx.publish(&room.topic, joined.to_json()).await;
            Ok(())
        }
        Ask::Leave { room } => {
            let room = Room::parse(&room)?;
            let Some(at) = me.rooms.iter().position(|r| *r == room) else {
                return Err(format!("not in room {}", room.name));
            };
            me.rooms.remove(at);
            ctx.unsubscribe(&room.topic).await;
            let left = Heard::Left {
                room: room.name,
                from: me.name.clone(),
            };
            ctx.publish(&room.topic, left.to_json()).await;
            Ok(())
        }
        Ask::Say { room, text } => {
            let room = Room::parse(&room)?;
            if !me.rooms.contains(&room) {
                return Err(format!("join room {} before you speak in it", room.name));
            }
            if text.chars().count() > MAX_TEXT {
                return Err(format!("a message is at most {MAX_TEXT} characters"));
            }
            let said = Heard::Said {
                room: room.name,
                from: me.name.clone(),
                text,
            };
            ctx.count("said");
            ctx.publish(&room.topic, said.to_json()).await;
            Ok(())
        }
    }
}

/// Who is in `room` (presence, cluster-wide: client ids), `me` included.
async fn members_of(ctx: &mut SessionCtx<'_>, room: &Room, me: &str) -> Vec<String> {
    let mut members = ctx.presence(&room.topic).await.clients;
    // A handler on another worker joins through the socket's worker: presence may not list
    // this session yet.
    if !members.iter().any(|m| m == me) {
        members.push(me.to_string());
        members.sort();
    }
    members
}

/// Tells the joiner who is in `room`, itself included.
async fn members(ctx: &mut SessionCtx<'_>, room: &Room, me: &str) -> Result<(), String> {
    let answer = Heard::Members {
        room: room.name.clone(),
        members: members_of(ctx, room, me).await,
    };
    ctx.send(Msg::text(answer.to_json()))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_rooms_are_checked() {
        let ask: Ask = serde_json::from_str(r#"{"do":"say","room":"lobby","text":"hi"}"#).unwrap();
        assert_eq!(
            ask,
            Ask::Say {
                room: "lobby".into(),
                text: "hi".into()
            }
        );
        assert!(serde_json::from_str::<Ask>(r#"{"do":"shout","room":"lobby"}"#).is_err());
        assert!(Room::parse("lobby").is_ok());
        for bad in ["", "Lobby", "a.b", &"x".repeat(33)] {
            assert!(Room::parse(bad).is_err(), "{bad:?}");
        }
        let heard = Heard::Said {
            room: "lobby".into(),
            from: "ann".into(),
            text: "hi".into(),
        };
        assert_eq!(
            heard.to_json(),
            r#"{"event":"said","room":"lobby","from":"ann","text":"hi"}"#
        );
    }
}
