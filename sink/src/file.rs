//! Appends each event as one JSON line to a file, with group commit: a writer task takes what
//! sessions submitted, writes it, `fdatasync`s once and then resolves every receipt of the batch.
//! The channel to the writer is bounded, so a slow disk back-pressures the sessions.

use std::path::Path;

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::{BoxFuture, Receipt, ReceiptSender, Sink, SinkError, SinkRecord};

/// Events waiting for the writer; past it `submit` waits.
const QUEUE: usize = 1024;
/// Most events written per fsync.
const BATCH: usize = 256;

enum Cmd {
    Event(Vec<u8>, ReceiptSender),
    Flush(oneshot::Sender<Result<(), SinkError>>),
}

pub struct FileSink {
    tx: mpsc::Sender<Cmd>,
}

impl FileSink {
    /// Opens (creating it and its directory) `path` for appending and starts the writer task.
    pub async fn open(path: &Path) -> std::io::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(file, rx));
        Ok(FileSink { tx })
    }
}

async fn writer(mut file: File, mut rx: mpsc::Receiver<Cmd>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut buf = Vec::new();
        let mut receipts = Vec::new();
        let mut flushes = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Event(line, r) => {
                    buf.extend_from_slice(&line);
                    receipts.push(r);
                }
                Cmd::Flush(done) => flushes.push(done),
            }
        }
        let outcome = async {
            if !buf.is_empty() {
                file.write_all(&buf).await?;
                file.flush().await?;
                file.sync_data().await?;
            }
            Ok::<(), std::io::Error>(())
        }
        .await
        .map_err(|e| SinkError::Failed(e.to_string()));
        for r in receipts {
            r.complete(outcome.clone());
        }
        // Everything submitted before a flush request was in this or an earlier batch.
        for f in flushes {
            let _ = f.send(outcome.clone());
        }
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn submit(&self, record: SinkRecord) -> BoxFuture<'_, Result<Receipt, SinkError>> {
        Box::pin(async move {
            let mut line = record.to_json();
            line.push(b'\n');
            let (sender, receipt) = Receipt::pending();
            self.tx
                .send(Cmd::Event(line, sender))
                .await
                .map_err(|_| SinkError::Closed)?;
            Ok(receipt)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(Cmd::Flush(tx))
                .await
                .map_err(|_| SinkError::Closed)?;
            rx.await.unwrap_or(Err(SinkError::Closed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StampedEvent;

    fn event(seq: u64) -> SinkRecord {
        StampedEvent {
            id: None,
            msg: "m".into(),
            client_id: "c".into(),
            timestamp: 1,
            node: "n".into(),
            session: 1,
            seq,
            received_at: 2,
        }
        .into()
    }

    #[tokio::test]
    async fn events_are_durable_lines_once_acked() {
        let dir = std::env::temp_dir().join(format!("ews-file-sink-{}", std::process::id()));
        let path = dir.join("events.jsonl");
        let sink = FileSink::open(&path).await.expect("open");
        let mut receipts = Vec::new();
        for seq in 1..=10 {
            receipts.push(sink.submit(event(seq)).await.expect("submit"));
        }
        for r in receipts {
            assert_eq!(r.await, Ok(()));
        }
        sink.flush().await.expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<StampedEvent>(l)
                    .expect("json line")
                    .seq
            })
            .collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(dir);
    }
}
