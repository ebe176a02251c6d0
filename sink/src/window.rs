//! The bound every sink keeps on events it has taken but that are not yet durable or failed: the
//! back-pressure of the sink contract, in one place.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::SinkError;

/// Largest window a sink keeps (events in flight); larger requests are held to it.
pub const MAX_WINDOW: usize = 1_000_000;

pub(crate) struct Window {
    slots: Arc<Semaphore>,
    size: u32,
}

impl Window {
    /// A window of `size` events, between 1 and [`MAX_WINDOW`].
    pub fn new(size: usize) -> Window {
        let size = size.clamp(1, MAX_WINDOW);
        Window {
            slots: Arc::new(Semaphore::new(size)),
            size: size as u32,
        }
    }

    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// Waits for a free slot (the back-pressure); the event holds it until it is durable or has
    /// failed.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, SinkError> {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SinkError::Closed)
    }

    /// Waits until every slot is free: everything taken so far is durable or has failed.
    pub async fn drained(&self) -> Result<(), SinkError> {
        let all = self
            .slots
            .acquire_many(self.size)
            .await
            .map_err(|_| SinkError::Closed)?;
        drop(all);
        Ok(())
    }
}
