//! What callers read back: task status, queue statistics, dead letters.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting on a stream, or for its retry backoff.
    Pending,
    /// A worker holds its lease.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error, retries exhausted or not retryable.
    Failed,
    /// In the dead-letter stream: poison (lost its worker too often), malformed or of a kind
    /// no worker runs. [`super::Queue::retry_dead`] gives it a fresh start.
    Dead,
    /// Cancelled before or while running.
    Cancelled,
}

impl TaskState {
    /// Whether the task will not change state again by itself.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running)
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => TaskState::Pending,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "dead" => TaskState::Dead,
            "cancelled" => TaskState::Cancelled,
            _ => return None,
        })
    }
}

/// A task's record as last written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStatus {
    /// The task id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its handler.
    pub kind: String,
    /// Its state.
    pub state: TaskState,
    /// Errors so far (each retried error counts one).
    pub attempts: u32,
    /// Times a worker started it since it was enqueued (or retried from the dead letters).
    pub deliveries: u32,
    /// The worker's last progress report: done and total units.
    pub progress: Option<(u64, u64)>,
    /// The last error, or why it is dead or cancelled.
    pub error: Option<String>,
    /// The result, once succeeded.
    pub result: Option<Value>,
    /// The consumer running it.
    pub worker: Option<String>,
    /// Whether a cancel was asked while it ran.
    pub cancel_requested: bool,
    /// When the next retry is due (ms since the epoch, Redis clock), while waiting for one.
    pub retry_at_ms: Option<u64>,
}

impl TaskStatus {
    /// The fields of a task record that a status is read from: a record also holds its
    /// envelope, which can be large (an `extract` task's paths) and is not read for a status.
    pub(crate) const FIELDS: [&'static str; 13] = [
        "id",
        "queue",
        "kind",
        "state",
        "attempts",
        "deliveries",
        "progress_total",
        "progress_done",
        "error",
        "result",
        "worker",
        "cancel",
        "retry_at_ms",
    ];

    /// Reads a status from the values of [`TaskStatus::FIELDS`], in that order (`None` for a
    /// field the record lacks); `None` when the record is not a task's.
    pub(crate) fn from_fields(values: Vec<Option<String>>) -> Option<Self> {
        let fields: HashMap<&str, String> =
            Self::FIELDS.iter().zip(values).filter_map(|(name, v)| Some((*name, v?))).collect();
        let text = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        let state = TaskState::parse(fields.get("state")?)?;
        let progress = match (number("progress_total"), number("progress_done")) {
            (Some(total), Some(done)) if total > 0 || done > 0 => Some((done, total)),
            _ => None,
        };
        let result = if state == TaskState::Succeeded {
            fields.get("result").and_then(|r| serde_json::from_str(r).ok())
        } else {
            None
        };
        Some(TaskStatus {
            id: fields.get("id")?.clone(),
            queue: text("queue").unwrap_or_default(),
            kind: text("kind").unwrap_or_default(),
            state,
            attempts: number("attempts").unwrap_or(0) as u32,
            deliveries: number("deliveries").unwrap_or(0) as u32,
            progress,
            error: text("error"),
            result,
            worker: text("worker"),
            cancel_requested: fields.get("cancel").is_some_and(|c| c == "1"),
            retry_at_ms: if state == TaskState::Pending { number("retry_at_ms") } else { None },
        })
    }
}

/// One queue's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// The queue name.
    pub name: String,
    /// Entries on its streams (waiting plus delivered and not yet finished).
    pub length: u64,
    /// Entries delivered to a worker and not yet finished.
    pub pending: u64,
    /// Consumers in its groups (stays bounded: leaving and dead workers are pruned).
    pub consumers: u64,
    /// Live workers serving it.
    pub workers: u64,
    /// Its counters, as [`Stats::counters`] for the whole namespace: results recorded
    /// (succeeded, failed, cancelled), dead letters (dead), retried, reclaimed, refused.
    pub counters: BTreeMap<String, u64>,
}

/// A live worker as it describes itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerInfo {
    /// Its consumer name.
    pub consumer: String,
    /// How long ago it last wrote its record, by Redis's clock (no clock skew between
    /// machines); `None` for a record that does not say its lease.
    pub heartbeat_age_ms: Option<u64>,
    /// Every field of its record: name, host, pid, state (`running`, or `stopping` after
    /// SIGTERM), queues, kinds, concurrency, lease_ms, current tasks, tasks completed, start
    /// and last heartbeat (ms, the worker's clock).
    pub fields: BTreeMap<String, String>,
}

impl WorkerInfo {
    /// The queues it serves.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        self.fields.get("queues").map(String::as_str).unwrap_or_default().split(',').filter(|q| !q.is_empty())
    }
}

/// The whole namespace's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Per queue.
    pub queues: Vec<QueueStats>,
    /// Retries waiting for their backoff.
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
    /// Live workers.
    pub workers: Vec<WorkerInfo>,
    /// Counters since the namespace was created: succeeded, failed, cancelled, dead, retried,
    /// reclaimed, refused (late or duplicate completions turned away).
    pub counters: BTreeMap<String, u64>,
}

/// An entry of the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The dead-letter stream entry id.
    pub entry: String,
    /// The task id, when the entry or its envelope had one.
    pub id: Option<String>,
    /// The task's kind, when its envelope says.
    pub kind: Option<String>,
    /// The queue it was taken from.
    pub queue: Option<String>,
    /// Times it had been started when it died, when it had a task record.
    pub deliveries: Option<u32>,
    /// Why it is here.
    pub reason: String,
    /// The raw envelope as it was on the stream.
    pub raw: String,
    /// When it was dead-lettered (ms since the epoch, Redis clock).
    pub at_ms: u64,
}
