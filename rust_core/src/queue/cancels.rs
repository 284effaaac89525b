//! Cancels pushed to workers. [`Queue::cancel`] of a running task flags its record (which the
//! worker's next heartbeat reads) and publishes the id on the namespace's cancel channel; every
//! worker subscribes and tells the handler holding that id at once, so a training stops at
//! its next chunk or iteration rather than at the next heartbeat. The heartbeat stays the
//! fallback: a message lost while a worker reconnects, or a Redis user without the pub/sub
//! commands, only delays the cancel to it.

use futures_util::StreamExt;

use super::{Queue, Result};

impl Queue {
    /// Tells the subscribed workers that task `id` was asked to stop. Best effort: a failure
    /// is logged, and the heartbeat carries the flag anyway.
    pub(crate) async fn publish_cancel(&self, id: &str) {
        let published: Result<i64> = self.conn.query(redis::cmd("PUBLISH").arg(self.keys.cancels()).arg(id)).await;
        if let Err(e) = published {
            tracing::debug!(id, error = %e, "publishing a cancel failed; the worker sees it at its next heartbeat");
        }
    }

    /// Calls `cancel` with the id of each task asked to stop from now on, until the
    /// subscription breaks.
    ///
    /// # Errors
    /// Redis errors (connecting, subscribing); the end of the subscription is an error too.
    pub(crate) async fn follow_cancels(&self, cancel: impl Fn(&str)) -> Result<()> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.keys.cancels()).await?;
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            match message.get_payload::<String>() {
                Ok(id) => cancel(&id),
                Err(e) => tracing::warn!(error = %e, "an unreadable message on the cancel channel"),
            }
        }
        Err(super::Error::Redis("the cancel subscription ended".to_owned()))
    }
}
