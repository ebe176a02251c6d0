//! A subscribe to a topic with history: the session joins at this node's position in the
//! topic's stream and, when the client names where it was (`since`), gets what it missed from
//! history first, written straight to its socket before anything live (which queues meanwhile
//! and follows), then `subscribed` saying whether it was all recovered.

use ews_history::{Position, Recovery};
use ews_proto::topic::Topic;
use ews_proto::{ErrorKind, ServerFrame, StreamPosition};
use ews_sink::BoxFuture;
use tokio_tungstenite::tungstenite::Message;

use super::control;
use super::{Flow, Machine, Transport};
use crate::handler::SubscribeError;
use crate::streams::{NodeHistory, StreamKey};

impl<T: Transport> Machine<'_, T> {
    /// The node's history, when `topic` keeps it.
    pub(super) fn history_of(&self, topic: &str) -> Option<NodeHistory> {
        let (h, s) = self.env.services.pubsub.history.as_ref()?;
        let t = Topic::parse(topic).ok()?;
        h.keeps(&t).then(|| (h.clone(), s.clone()))
    }

    /// Boxed: only subscribes to topics with history take this path.
    pub(super) fn subscribe_recovering(
        &mut self,
        raw: String,
        since: Option<StreamPosition>,
        (history, streams): NodeHistory,
    ) -> BoxFuture<'_, Flow> {
        Box::pin(async move {
            let Ok(topic) = Topic::parse(&raw) else {
                return Flow::Continue;
            };
            let services = self.env.services.clone();
            if let Err(refused) = control::may_subscribe(&self.core, &services, &topic, &raw).await
            {
                return self.write(Message::text(refused.to_text())).await;
            }
            let engine = history.engine();
            let from = since.as_ref().map(|s| Position {
                offset: s.offset,
                epoch: s.epoch.clone(),
            });
            let read = match &from {
                Some(f) => engine.recover(topic.as_str(), f, history.recover_max).await,
                None => engine
                    .top(topic.as_str())
                    .await
                    .map(|top| Recovery::Recovered {
                        missed: Vec::new(),
                        top,
                    }),
            };
            let read = match read {
                Ok(r) => r,
                // History is down: joined all the same (live pushes flow), and told.
                Err(e) => {
                    tracing::warn!(topic = raw, error = %e, "history unavailable at subscribe");
                    let frame = match crate::handler::subscribe(&self.core, &services, &topic).await
                    {
                        Ok(()) => ServerFrame::Subscribed {
                            topic: raw,
                            offset: None,
                            epoch: None,
                            recovered: since.map(|_| false),
                            reason: Some("unavailable".into()),
                        },
                        Err(e) => control::refused(&e, raw),
                    };
                    return self.write(Message::text(frame.to_text())).await;
                }
            };
            let registry = &services.registry;
            let joined = streams.subscribe_at(
                registry,
                (self.core.shared.id, services.max_topics),
                &topic,
                read.top(),
            );
            let (seq, here) = match joined {
                Ok(j) => j,
                Err(_) => {
                    services.metrics.subscription("too_many");
                    let e = SubscribeError::TooManyTopics(services.max_topics);
                    let frame = control::refused(&e, raw);
                    return self.write(Message::text(frame.to_text())).await;
                }
            };
            services.metrics.subscription("ok");
            let (mut missed, mut recovered, mut reason) = match read {
                Recovery::Recovered { missed, .. } => (missed, from.is_some(), None),
                Recovery::Lost { why, .. } => (Vec::new(), false, Some(why.as_str().to_string())),
            };
            // The node is past what the read saw: the rest comes from history too.
            let top = read_top(&missed, &from, &here);
            if recovered && here.offset > top {
                let at = Position {
                    offset: top,
                    epoch: here.epoch.clone(),
                };
                match engine
                    .recover(topic.as_str(), &at, history.recover_max)
                    .await
                {
                    Ok(Recovery::Recovered { missed: more, .. }) => missed.extend(more),
                    Ok(Recovery::Lost { why, .. }) => {
                        recovered = false;
                        reason = Some(why.as_str().to_string());
                    }
                    Err(_) => {
                        recovered = false;
                        reason = Some("unavailable".into());
                    }
                }
            }
            registry.advertised(seq).await;
            if self.write_missed(missed, Some(&raw), &here).await == Flow::End {
                return Flow::End;
            }
            let frame = ServerFrame::Subscribed {
                topic: raw,
                offset: Some(here.offset),
                epoch: Some(here.epoch.clone()),
                recovered: since.map(|_| recovered),
                reason: reason.filter(|_| !recovered),
            };
            if self.write(Message::text(frame.to_text())).await == Flow::End {
                return Flow::End;
            }
            // Messages published before the cluster routed the topic here.
            let key = crate::streams::StreamKey::Topic(topic.clone());
            streams.catch_up(registry, &history, &key).await;
            Flow::Continue
        })
    }
}

impl<T: Transport> Machine<'_, T> {
    /// `resume`: the pushes to this client after `since`, written first, then `resumed`.
    /// Boxed: only clients coming back with history for client ids take this path.
    pub(super) fn resume(&mut self, since: StreamPosition) -> BoxFuture<'_, Flow> {
        Box::pin(async move {
            let services = self.env.services.clone();
            let history = services
                .pubsub
                .history
                .clone()
                .filter(|(h, _)| h.clients)
                .zip(self.core.shared.client_id.clone());
            let Some(((history, streams), client)) = history else {
                let frame = control::error_frame(
                    ErrorKind::InvalidFrame,
                    "pushes to client ids keep no history here".into(),
                    None,
                    None,
                );
                return self.write(Message::text(frame.to_text())).await;
            };
            let key = StreamKey::Client(client.to_string());
            let name = key.name();
            let engine = history.engine();
            let from = Position {
                offset: since.offset,
                epoch: since.epoch.clone(),
            };
            let read = engine.recover(&name, &from, history.recover_max).await;
            let (mut missed, mut reason, top) = match read {
                Ok(Recovery::Recovered { missed, top }) => (missed, None, top),
                Ok(Recovery::Lost { why, top }) => (Vec::new(), Some(why.as_str()), top),
                Err(e) => {
                    tracing::warn!(error = %e, "history unavailable at resume");
                    let frame = ServerFrame::Resumed {
                        offset: since.offset,
                        epoch: since.epoch,
                        recovered: false,
                        reason: Some("unavailable".into()),
                    };
                    return self.write(Message::text(frame.to_text())).await;
                }
            };
            // Where this node is in the stream (the session already receives what follows).
            let Ok(((), here)) = streams.pin(&services.registry, &key, &top, |_| Ok::<(), ()>(()))
            else {
                return Flow::Continue;
            };
            let read_to = missed.last().map_or(from.offset, |m| m.offset);
            if reason.is_none() && here.epoch == top.epoch && here.offset > read_to {
                let at = Position {
                    offset: read_to,
                    epoch: here.epoch.clone(),
                };
                match engine.recover(&name, &at, history.recover_max).await {
                    Ok(Recovery::Recovered { missed: more, .. }) => missed.extend(more),
                    Ok(Recovery::Lost { why, .. }) => reason = Some(why.as_str()),
                    Err(_) => reason = Some("unavailable"),
                }
            }
            if reason.is_some() {
                missed.clear();
            }
            if self.write_missed(missed, None, &here).await == Flow::End {
                return Flow::End;
            }
            let frame = ServerFrame::Resumed {
                offset: here.offset,
                epoch: here.epoch,
                recovered: reason.is_none(),
                reason: reason.map(str::to_string),
            };
            self.write(Message::text(frame.to_text())).await
        })
    }
}

impl<T: Transport> Machine<'_, T> {
    /// Writes the messages history handed over, up to the node's position `here` (what follows
    /// it comes live), as pushes on `topic` (none: to the client itself).
    async fn write_missed(
        &mut self,
        missed: Vec<ews_history::Entry>,
        topic: Option<&str>,
        here: &StreamPosition,
    ) -> Flow {
        for m in missed.into_iter().filter(|m| m.offset <= here.offset) {
            let Some(kept) = ews_history::Kept::parse(&m.data) else {
                continue;
            };
            let push = ServerFrame::Push {
                msg: kept.msg,
                topic: topic.map(str::to_string),
                from: kept.from,
                offset: Some(m.offset),
                epoch: Some(here.epoch.clone()),
            };
            if self.write(Message::text(push.to_text())).await == Flow::End {
                return Flow::End;
            }
        }
        Flow::Continue
    }
}

/// The last offset a recovery read covers: its last message's, else where the client was (or,
/// for a plain subscribe, the node's position: nothing to add).
fn read_top(missed: &[ews_history::Entry], from: &Option<Position>, here: &StreamPosition) -> u64 {
    missed
        .last()
        .map(|m| m.offset)
        .or(from.as_ref().map(|f| f.offset))
        .unwrap_or(here.offset)
}
