//! Names of the Redis keys a queue uses, all under one namespace prefix.

use super::Priority;

/// The inbox of a worker: a queue only the worker with this consumer name reads, for tasks
/// that must run where its data is (the shards of a distributed k-means fit).
pub fn inbox(consumer: &str) -> String {
    format!("{INBOX_PREFIX}{consumer}")
}

/// Queue names starting with this are inboxes.
const INBOX_PREFIX: &str = "@";

/// Whether a queue name is a worker's inbox.
pub(crate) fn is_inbox(queue: &str) -> bool {
    queue.starts_with(INBOX_PREFIX)
}

/// Key names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Keys { ns: namespace.to_owned() }
    }

    /// The stream of one queue at one priority. An inbox has a single stream (its tasks
    /// share one worker and a barrier, so priorities would only cost that worker reads).
    pub(crate) fn stream(&self, queue: &str, priority: Priority) -> String {
        let priority = if is_inbox(queue) { Priority::Normal } else { priority };
        format!("{}:q:{queue}:{}", self.ns, priority.as_str())
    }

    /// The queue a stream belongs to (`None` for a key that is not one of our streams).
    pub(crate) fn queue_of<'s>(&self, stream: &'s str) -> Option<&'s str> {
        let rest = stream.strip_prefix(&self.ns)?.strip_prefix(":q:")?;
        Priority::ALL.iter().find_map(|p| rest.strip_suffix(p.as_str())?.strip_suffix(':'))
    }

    /// One queue's counters (a hash, the same fields as [`Keys::stats`]). The scripts derive
    /// it from a stream's key by replacing the priority with `stats`.
    pub(crate) fn queue_stats(&self, queue: &str) -> String {
        format!("{}:q:{queue}:stats", self.ns)
    }

    /// The streams of one queue, most urgent first.
    pub(crate) fn streams(&self, queue: &str) -> impl Iterator<Item = String> + '_ {
        let queue = queue.to_owned();
        let levels: &[Priority] = if is_inbox(&queue) { &[Priority::Normal] } else { &Priority::ALL };
        levels.iter().map(move |&p| self.stream(&queue, p))
    }

    /// Prefix of task records; the Lua scripts append the id.
    pub(crate) fn task_prefix(&self) -> String {
        format!("{}:task:", self.ns)
    }

    /// The record (a hash) of one task: state, envelope, outcome, progress.
    pub(crate) fn task(&self, id: &str) -> String {
        format!("{}:task:{id}", self.ns)
    }

    /// Dead letters: a stream of entries with the task id, the reason and the raw envelope.
    pub(crate) fn dead(&self) -> String {
        format!("{}:dead", self.ns)
    }

    /// Retries waiting for their backoff: a sorted set of task ids by due time (ms).
    pub(crate) fn delayed(&self) -> String {
        format!("{}:delayed", self.ns)
    }

    /// Counters (a hash): succeeded, failed, cancelled, dead, retried, reclaimed, refused.
    pub(crate) fn stats(&self) -> String {
        format!("{}:stats", self.ns)
    }

    /// Names of every queue that was ever enqueued to (a set).
    pub(crate) fn queues(&self) -> String {
        format!("{}:queues", self.ns)
    }

    /// Live workers: a sorted set of consumer names by last heartbeat (ms).
    pub(crate) fn workers(&self) -> String {
        format!("{}:workers", self.ns)
    }

    /// One worker's state (a hash that expires if the worker stops heartbeating).
    pub(crate) fn worker(&self, consumer: &str) -> String {
        format!("{}:worker:{consumer}", self.ns)
    }

    /// A submitter's notification list: ids of its tasks as they finish, in order.
    pub(crate) fn notify(&self, channel: &str) -> String {
        format!("{}:notify:{channel}", self.ns)
    }

    /// The pub/sub channel of cancel requests for running tasks: their ids.
    pub(crate) fn cancels(&self) -> String {
        format!("{}:cancels", self.ns)
    }

    /// Chunk `index` of a blob (a Redis string each).
    pub(crate) fn blob_chunk(&self, blob: &str, index: usize) -> String {
        format!("{}:blob:{blob}:{index}", self.ns)
    }
}
