//! [`Listener`]: a submitter's wait for its tasks without polling. Tasks enqueued with
//! `notify: Some(channel)` push their id to the channel's list when they finish (in the same
//! atomic script that records the outcome); a listener pops those ids with a blocking read.

use std::time::Duration;

use super::connection::Connection;
use super::envelope::check_name;
use super::{Queue, Result};

/// Reads a notification channel: the ids of tasks that finished, in the order they did.
#[derive(Debug)]
pub struct Listener {
    key: String,
    /// A blocking read gets its own connection, its reply timeout above the longest block, so
    /// it neither times out nor stalls the queue's other commands.
    reader: Connection,
    block_max: Duration,
}

impl Listener {
    /// A listener of `channel` (the `notify` of the tasks to hear about). One reader per
    /// channel: ids popped by one listener are not seen by another.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a channel name with spaces or control characters.
    pub fn new(queue: &Queue, channel: &str) -> Result<Self> {
        check_name("channel", channel)?;
        let config = queue.config();
        Ok(Listener {
            key: queue.keys.notify(channel),
            reader: Connection::new(
                queue.client.clone(),
                config.block + config.response_timeout,
                config.reconnect_timeout,
            ),
            block_max: config.block,
        })
    }

    /// Up to `max` ids of finished tasks, waiting up to `timeout` (capped at the queue's
    /// `block`) for the first; empty when none finished meanwhile.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn next(&self, max: usize, timeout: Duration) -> Result<Vec<String>> {
        // BLMPOP's timeout 0 means forever: wait at least a millisecond.
        let seconds = timeout.min(self.block_max).as_secs_f64().max(0.001);
        let mut cmd = redis::cmd("BLMPOP");
        cmd.arg(seconds).arg(1).arg(&self.key).arg("LEFT").arg("COUNT").arg(max.max(1));
        let popped: Option<(String, Vec<String>)> = self.reader.query(&cmd).await?;
        Ok(popped.map(|(_, ids)| ids).unwrap_or_default())
    }
}
