//! One named queue: durable send, demand-driven delivery, visibility timeout, delete,
//! dead-lettering and bounded depth.
//!
//! Bounds answer the seed's comment thread (`001_*`): the queue holds at most `max_depth`
//! messages and `max_bytes` of bodies. A sender past either limit waits for space (its send is
//! not acknowledged), so a window-limited sender stops, its connection stops being read and TCP
//! pushes back; it resumes as soon as receivers delete messages. Memory never grows without bound.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::time::Instant;

use crate::storage::log::{self, Op};
use crate::storage::record::Record;
use crate::QueueError;

/// Per-queue settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// A delivered message not deleted within this time is delivered again.
    pub visibility_timeout: Duration,
    /// After this many deliveries an undeleted message moves to the dead-letter queue instead of
    /// being delivered again. 0 disables dead-lettering.
    pub max_deliveries: u32,
    /// Most messages held (ready + in flight); senders wait past it.
    pub max_depth: usize,
    /// Most body bytes held; senders wait past it.
    pub max_bytes: usize,
    /// Largest accepted body.
    pub max_message_bytes: usize,
    /// A segment file is rolled once it reaches this size.
    pub segment_bytes: u64,
    /// Messages one connection may hold delivered and not yet deleted. Past it the connection
    /// gets nothing more until it deletes (or its deliveries time out), so one greedy consumer
    /// cannot take every message from the others.
    pub max_unacked: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout: Duration::from_secs(10),
            max_deliveries: 5,
            max_depth: 100_000,
            max_bytes: 256 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            max_unacked: 1000,
        }
    }
}

/// A message handed to a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: u64,
    pub body: String,
    /// How many times this message has been delivered, this time included.
    pub deliveries: u32,
}

/// A cheap handle to a queue.
#[derive(Clone)]
pub struct Queue(Arc<Inner>);

struct Inner {
    name: String,
    config: QueueConfig,
    state: Mutex<State>,
    /// Woken when a message becomes ready.
    ready: Notify,
    depth: Budget,
    bytes: Budget,
    writer: mpsc::Sender<Op>,
    /// Sends on their way to the committer, which makes them deliverable once durable.
    commits: mpsc::Sender<Pending>,
    dead_letters: Option<Queue>,
}

/// A send written to the log and not yet known durable.
struct Pending {
    id: u64,
    body: String,
    durable: oneshot::Receiver<std::io::Result<()>>,
    waiter: oneshot::Sender<Result<u64, QueueError>>,
}

/// Resolves with a sent message's id once it is durable (fsynced) and deliverable, or with why
/// it is not. Dropping it changes nothing: the message is committed all the same.
pub struct Durable(oneshot::Receiver<Result<u64, QueueError>>);

impl std::future::Future for Durable {
    type Output = Result<u64, QueueError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(QueueError::Closed)))
    }
}

enum Where {
    /// Committed and not yet delivered.
    Ready,
    /// Delivered; visible again at the deadline.
    InFlight(Instant),
    /// Being moved to the dead-letter queue.
    Moving,
}

struct Msg {
    body: String,
    deliveries: u32,
    at: Where,
}

#[derive(Default)]
struct State {
    next_id: u64,
    msgs: HashMap<u64, Msg>,
    /// Ready ids, oldest first (may hold ids deleted meanwhile; skipped when popped).
    ready: VecDeque<u64>,
    in_flight: BTreeSet<(Instant, u64)>,
}

enum Pop {
    Deliver(Delivery),
    DeadLetter(u64, String),
    Empty(Option<Instant>),
}

impl State {
    fn pop(&mut self, now: Instant, config: &QueueConfig) -> Pop {
        loop {
            let id = match self.in_flight.first() {
                Some(&(deadline, id)) if deadline <= now => {
                    self.in_flight.remove(&(deadline, id));
                    id
                }
                _ => match self.ready.pop_front() {
                    Some(id) => id,
                    None => return Pop::Empty(self.in_flight.first().map(|(d, _)| *d)),
                },
            };
            let Some(msg) = self.msgs.get_mut(&id) else {
                continue;
            };
            if config.max_deliveries > 0 && msg.deliveries >= config.max_deliveries {
                msg.at = Where::Moving;
                return Pop::DeadLetter(id, msg.body.clone());
            }
            msg.deliveries = msg.deliveries.saturating_add(1);
            let deadline = now + config.visibility_timeout;
            msg.at = Where::InFlight(deadline);
            self.in_flight.insert((deadline, id));
            return Pop::Deliver(Delivery {
                id,
                body: msg.body.clone(),
                deliveries: msg.deliveries,
            });
        }
    }
}

impl Queue {
    /// Opens the queue stored in `dir`, recovering its messages: every message not deleted before
    /// a crash or restart is ready again, with its delivery count.
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        config: QueueConfig,
        dead_letters: Option<Queue>,
    ) -> Result<Queue, QueueError> {
        let opened = log::open(dir, config.segment_bytes, 16 * 1024)?;
        let mut state = State {
            next_id: opened.next_id,
            ..State::default()
        };
        let (mut count, mut bytes) = (0usize, 0usize);
        for m in opened.messages {
            count += 1;
            bytes += m.body.len();
            state.ready.push_back(m.id);
            state.msgs.insert(
                m.id,
                Msg {
                    body: m.body,
                    deliveries: m.deliveries,
                    at: Where::Ready,
                },
            );
        }
        if count > 0 {
            tracing::info!(queue = name, messages = count, "recovered queue");
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            QueueError::Io(Arc::new(std::io::Error::other(
                "a queue is opened inside a tokio runtime",
            )))
        })?;
        let (commits, pending) = mpsc::channel(COMMIT_CHANNEL);
        let queue = Queue(Arc::new(Inner {
            name: name.to_string(),
            depth: Budget::new(config.max_depth, count),
            bytes: Budget::new(config.max_bytes, bytes),
            config,
            state: Mutex::new(state),
            ready: Notify::new(),
            writer: opened.writer,
            commits,
            dead_letters,
        }));
        runtime.spawn(commit_in_order(Arc::downgrade(&queue.0), pending));
        Ok(queue)
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn config(&self) -> &QueueConfig {
        &self.0.config
    }

    /// Messages held: ready, in flight and being dead-lettered.
    pub fn depth(&self) -> usize {
        self.state().msgs.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping would; keep serving.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a message and waits until it is durable; returns its id.
    pub async fn send(&self, body: String) -> Result<u64, QueueError> {
        self.admit(body).await?.await
    }

    /// Waits for room (the back-pressure), assigns an id and queues the durable write; the
    /// returned [`Durable`] resolves once the message is fsynced and deliverable.
    pub async fn admit(&self, body: String) -> Result<Durable, QueueError> {
        let len = body.len();
        if len > self.0.config.max_message_bytes {
            return Err(QueueError::TooLarge(len, self.0.config.max_message_bytes));
        }
        self.0.depth.acquire(1).await?;
        if let Err(e) = self.0.bytes.acquire(len).await {
            self.0.depth.release(1);
            return Err(e);
        }
        let (waiter, durable) = oneshot::channel();
        self.append_send(body, waiter).await?;
        Ok(Durable(durable))
    }

    /// Like [`Queue::admit`] but fails with [`QueueError::Full`] instead of waiting for room.
    fn try_admit(&self, body: String) -> Result<Durable, QueueError> {
        let len = body.len();
        if !self.0.depth.try_acquire(1) {
            return Err(QueueError::Full);
        }
        if !self.0.bytes.try_acquire(len) {
            self.0.depth.release(1);
            return Err(QueueError::Full);
        }
        let (waiter, durable) = oneshot::channel();
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.append_send(body, waiter).await {
                tracing::warn!(queue = me.name(), error = %e, "dead-letter append failed");
            }
        });
        Ok(Durable(durable))
    }

    /// Writes the send record (its room already taken) and hands it to the committer, which
    /// tells `waiter`.
    async fn append_send(
        &self,
        body: String,
        waiter: oneshot::Sender<Result<u64, QueueError>>,
    ) -> Result<(), QueueError> {
        let len = body.len();
        let id = {
            let mut st = self.state();
            let id = st.next_id;
            st.next_id += 1;
            id
        };
        // The record owns the body until it is written; the state gets a copy on commit.
        let copy = body.clone();
        let rec = Record::Send {
            id,
            deliveries: 0,
            body,
        };
        let (done, durable) = oneshot::channel();
        let pending = Pending {
            id,
            body: copy,
            durable,
            waiter,
        };
        if self
            .0
            .writer
            .send(Op::Append(rec, Some(done)))
            .await
            .is_err()
            || self.0.commits.send(pending).await.is_err()
        {
            self.0.depth.release(1);
            self.0.bytes.release(len);
            return Err(QueueError::Closed);
        }
        Ok(())
    }

    fn commit(&self, id: u64, body: String) {
        let mut st = self.state();
        st.msgs.insert(
            id,
            Msg {
                body,
                deliveries: 0,
                at: Where::Ready,
            },
        );
        st.ready.push_back(id);
        drop(st);
        self.0.ready.notify_one();
    }

    /// Resolves once every send admitted so far is durable.
    pub async fn barrier(&self) -> Result<(), QueueError> {
        let (tx, rx) = oneshot::channel();
        self.0
            .writer
            .send(Op::Barrier(tx))
            .await
            .map_err(|_| QueueError::Closed)?;
        rx.await
            .map_err(|_| QueueError::Closed)?
            .map_err(|e| QueueError::Io(Arc::new(e)))
    }

    /// Waits for the next deliverable message: a ready one, or one whose visibility timeout
    /// expired. Cancel-safe: a message is taken only when this returns it.
    pub async fn take(&self) -> Delivery {
        loop {
            let notified = self.0.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let popped = self.state().pop(Instant::now(), &self.0.config);
            match popped {
                Pop::Deliver(d) => {
                    if self.has_ready() {
                        // Pass the wake-up on to the next waiting receiver.
                        self.0.ready.notify_one();
                    }
                    // Best effort: if the writer is backed up, the count lives on in memory only.
                    let _ = self
                        .0
                        .writer
                        .try_send(Op::Append(Record::Deliver { id: d.id }, None));
                    return d;
                }
                Pop::DeadLetter(id, body) => self.dead_letter(id, body),
                Pop::Empty(Some(deadline)) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                Pop::Empty(None) => notified.await,
            }
        }
    }

    fn has_ready(&self) -> bool {
        !self.state().ready.is_empty()
    }

    /// Moves a message that was delivered too often to the dead-letter queue: durably appended
    /// there first, then deleted here (a crash in between leaves a copy in both, never none).
    fn dead_letter(&self, id: u64, body: String) {
        let Some(dlq) = &self.0.dead_letters else {
            return;
        };
        match dlq.try_admit(body) {
            Ok(durable) => {
                let me = self.clone();
                tokio::spawn(async move {
                    match durable.await {
                        Ok(dlq_id) => {
                            tracing::info!(queue = me.name(), id, dlq_id, "message dead-lettered");
                            me.delete(id).await;
                        }
                        Err(e) => {
                            tracing::warn!(queue = me.name(), id, error = %e, "dead-lettering failed");
                            me.retry_later(id);
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(queue = self.name(), id, error = %e, "dead-letter queue refused message");
                self.retry_later(id);
            }
        }
    }

    /// Makes an in-flight message ready again at once (its delivery failed before reaching the
    /// receiver). Its delivery count stays.
    pub fn release(&self, id: u64) {
        let mut st = self.state();
        let Some(m) = st.msgs.get_mut(&id) else {
            return;
        };
        let Where::InFlight(deadline) = m.at else {
            return;
        };
        m.at = Where::Ready;
        st.in_flight.remove(&(deadline, id));
        st.ready.push_front(id);
        drop(st);
        self.0.ready.notify_one();
    }

    /// Puts a message that could not be dead-lettered back in flight for another timeout.
    fn retry_later(&self, id: u64) {
        let mut st = self.state();
        let deadline = Instant::now() + self.0.config.visibility_timeout;
        if let Some(m) = st.msgs.get_mut(&id) {
            m.at = Where::InFlight(deadline);
            st.in_flight.insert((deadline, id));
        }
    }

    /// Acknowledges a message: it is never delivered again. Returns whether it existed.
    pub async fn delete(&self, id: u64) -> bool {
        let removed = {
            let mut st = self.state();
            let removed = st.msgs.remove(&id);
            if let Some(Msg {
                at: Where::InFlight(deadline),
                ..
            }) = &removed
            {
                st.in_flight.remove(&(*deadline, id));
            }
            removed
        };
        let Some(msg) = removed else {
            return false;
        };
        self.0.depth.release(1);
        self.0.bytes.release(msg.body.len());
        // Not waited for: a delete lost in a crash only means one more delivery.
        let _ = self
            .0
            .writer
            .send(Op::Append(Record::Delete { id }, None))
            .await;
        true
    }
}

/// Sends awaiting their durable write, per queue (each has its room taken already, so the
/// queue's depth bounds them too).
const COMMIT_CHANNEL: usize = 16 * 1024;

/// Makes each written send deliverable once the writer reports it durable, then tells its
/// sender; on a failed write gives its room back. Runs for the queue's life.
async fn commit_in_order(queue: std::sync::Weak<Inner>, mut pending: mpsc::Receiver<Pending>) {
    while let Some(p) = pending.recv().await {
        let written = p.durable.await;
        let Some(inner) = queue.upgrade() else {
            let _ = p.waiter.send(Err(QueueError::Closed));
            continue;
        };
        let q = Queue(inner);
        let outcome = match written {
            Ok(Ok(())) => {
                q.commit(p.id, p.body);
                Ok(p.id)
            }
            Ok(Err(e)) => {
                q.0.depth.release(1);
                q.0.bytes.release(p.body.len());
                Err(QueueError::Io(Arc::new(e)))
            }
            Err(_) => {
                q.0.depth.release(1);
                q.0.bytes.release(p.body.len());
                Err(QueueError::Closed)
            }
        };
        let _ = p.waiter.send(outcome);
    }
}

/// A capacity in units (messages or bytes). Recovery may start above the limit; the excess is a
/// debt repaid by deletes before new room appears.
struct Budget {
    sem: Semaphore,
    limit: usize,
    debt: Mutex<usize>,
}

impl Budget {
    fn new(limit: usize, used: usize) -> Budget {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Budget {
            sem: Semaphore::new(limit.saturating_sub(used)),
            limit,
            debt: Mutex::new(used.saturating_sub(limit)),
        }
    }

    /// Units are clamped to the limit so one oversized request cannot wait forever.
    fn units(&self, n: usize) -> u32 {
        n.min(self.limit).min(u32::MAX as usize) as u32
    }

    async fn acquire(&self, n: usize) -> Result<(), QueueError> {
        let units = self.units(n);
        if units == 0 {
            return Ok(());
        }
        self.sem
            .acquire_many(units)
            .await
            .map_err(|_| QueueError::Closed)?
            .forget();
        Ok(())
    }

    fn try_acquire(&self, n: usize) -> bool {
        let units = self.units(n);
        units == 0 || self.sem.try_acquire_many(units).map(|p| p.forget()).is_ok()
    }

    fn release(&self, n: usize) {
        let mut units = self.units(n) as usize;
        {
            let mut debt = self.debt.lock().unwrap_or_else(|p| p.into_inner());
            let repay = units.min(*debt);
            *debt -= repay;
            units -= repay;
        }
        if units > 0 {
            self.sem.add_permits(units);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(name: &str, config: QueueConfig) -> (Queue, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("ews-queue-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Queue::open(name, &dir, config, None).unwrap(), dir)
    }

    #[tokio::test]
    async fn released_message_is_ready_again_at_once() {
        let (q, dir) = open("release", QueueConfig::default());
        let id = q.send("m".into()).await.unwrap();
        let d = q.take().await;
        assert_eq!((d.id, d.deliveries), (id, 1));
        q.release(id);
        let d = tokio::time::timeout(Duration::from_millis(500), q.take())
            .await
            .expect("no visibility wait after a release");
        assert_eq!((d.id, d.deliveries), (id, 2));
        assert!(q.delete(id).await);
        assert!(!q.delete(id).await);
        assert_eq!(q.depth(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_full_queue_admits_again_after_a_delete() {
        let config = QueueConfig {
            max_depth: 2,
            ..QueueConfig::default()
        };
        let (q, dir) = open("full", config);
        q.send("a".into()).await.unwrap();
        q.send("b".into()).await.unwrap();
        let third = tokio::spawn({
            let q = q.clone();
            async move { q.send("c".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!third.is_finished(), "the third send waits for room");
        let d = q.take().await;
        q.delete(d.id).await;
        let id = tokio::time::timeout(Duration::from_secs(2), third)
            .await
            .expect("the send resumes once a message is deleted")
            .unwrap()
            .unwrap();
        assert_eq!(id, 3);
        let _ = std::fs::remove_dir_all(dir);
    }
}
