//! [`Listener`]: a submitter's wait for its tasks without polling. Tasks enqueued with
//! `notify: Some(channel)` push their id to the channel's list when they finish (in the same
//! atomic script that records the outcome); a listener pops those ids with a blocking read.
//! A small outcome travels with its id (`{id} {state} {result or error}`), so that the
//! submitter need not read the task's record.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::connection::Connection;
use super::envelope::check_name;
use super::{Queue, Result, TaskState};

/// A task that finished, as its notification tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finished {
    /// The task id.
    pub id: String,
    /// Its outcome, when small enough to travel with the notification (1 KiB); otherwise
    /// read it with [`Queue::status`].
    #[serde(flatten)]
    pub outcome: Option<Outcome>,
}

/// How a task ended, as its notification carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Its final state.
    pub state: TaskState,
    /// The result, when it succeeded.
    pub result: Option<Value>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}

impl Finished {
    /// Reads a notification: an id, or `{id} {state} {value}` (ids have no spaces).
    fn parse(note: &str) -> Self {
        let mut parts = note.splitn(3, ' ');
        let id = parts.next().unwrap_or_default().to_owned();
        let outcome = match (parts.next().and_then(TaskState::parse), parts.next()) {
            (Some(TaskState::Succeeded), Some(value)) => serde_json::from_str(value).ok().map(|result| Outcome {
                state: TaskState::Succeeded,
                result: Some(result),
                error: None,
            }),
            (Some(state), Some(value)) => {
                Some(Outcome { state, result: None, error: Some(value.to_owned()).filter(|e| !e.is_empty()) })
            }
            _ => None,
        };
        Finished { id, outcome }
    }
}

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
        Ok(self.next_finished(max, timeout).await?.into_iter().map(|finished| finished.id).collect())
    }

    /// Like [`Listener::next`], with the outcomes that travelled with the ids.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn next_finished(&self, max: usize, timeout: Duration) -> Result<Vec<Finished>> {
        // BLMPOP's timeout 0 means forever: wait at least a millisecond.
        let seconds = timeout.min(self.block_max).as_secs_f64().max(0.001);
        let mut cmd = redis::cmd("BLMPOP");
        cmd.arg(seconds).arg(1).arg(&self.key).arg("LEFT").arg("COUNT").arg(max.max(1));
        let popped: Option<(String, Vec<String>)> = self.reader.query(&cmd).await?;
        Ok(popped.map(|(_, notes)| notes.iter().map(|note| Finished::parse(note)).collect()).unwrap_or_default())
    }
}
