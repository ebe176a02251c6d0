//! Writes each event as one JSON line to standard output. For debugging: nothing is durable, so
//! a receipt resolves `Ok` once the line is written. Back-pressure is the write itself: a slow
//! reader of stdout slows every session down, and nothing is buffered beyond one line.

use tokio::io::{AsyncWriteExt, Stdout};
use tokio::sync::Mutex;

use crate::{BoxFuture, Receipt, Sink, SinkError, SinkRecord};

pub struct StdoutSink {
    out: Mutex<Stdout>,
}

impl StdoutSink {
    pub fn new() -> StdoutSink {
        StdoutSink {
            out: Mutex::new(tokio::io::stdout()),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink::new()
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn submit(&self, record: SinkRecord) -> BoxFuture<'_, Result<Receipt, SinkError>> {
        Box::pin(async move {
            let mut line = record.to_json();
            line.push(b'\n');
            let mut out = self.out.lock().await;
            out.write_all(&line)
                .await
                .map_err(|e| SinkError::Failed(e.to_string()))?;
            out.flush()
                .await
                .map_err(|e| SinkError::Failed(e.to_string()))?;
            Ok(Receipt::durable())
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.out
                .lock()
                .await
                .flush()
                .await
                .map_err(|e| SinkError::Failed(e.to_string()))
        })
    }
}
