//! What travels on a stream: a typed, versioned JSON envelope. Never pickle: a worker runs
//! only the kinds it registered, with data it can validate.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Error, Result};

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Scheduling priority: workers take `High` before `Normal` before `Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Taken last.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Taken first.
    High,
}

impl Priority {
    /// Every level, most urgent first (the order workers read them in).
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The name used in keys and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// What a caller asks to run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task's id. Give one to make retried enqueues of the same work collapse into one
    /// task; `None` derives it from a hash of `kind` and `payload`, so the same content is
    /// de-duplicated too.
    pub id: Option<String>,
    /// Which queue it goes to (workers pick the queues they serve).
    pub queue: String,
    /// The handler that runs it (`noop`, `extract`, ...).
    pub kind: String,
    /// The handler's input. Keep it small: large data goes by reference.
    pub payload: Value,
    /// Times a task that returned an error is run again.
    pub max_retries: u32,
    /// Whether errors are retried at all (Ray's `retry_exceptions`).
    pub retry_on_error: bool,
    /// Scheduling priority.
    pub priority: Priority,
    /// Seconds the outcome is kept once the task is finished (0: until deleted).
    pub result_ttl_s: u64,
    /// A notification channel: the task's id is pushed to it when the task finishes, for a
    /// [`super::Listener`] of that channel (a submitter waiting without polling).
    pub notify: Option<String>,
}

impl TaskSpec {
    /// A task of `kind` on `queue` with defaults: 3 retries on error, normal priority, the
    /// outcome kept for a day.
    pub fn new(queue: impl Into<String>, kind: impl Into<String>, payload: Value) -> Self {
        TaskSpec {
            id: None,
            queue: queue.into(),
            kind: kind.into(),
            payload,
            max_retries: 3,
            retry_on_error: true,
            priority: Priority::Normal,
            result_ttl_s: 24 * 3600,
            notify: None,
        }
    }
}

/// The versioned envelope stored on the stream and in the task record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version: [`ENVELOPE_VERSION`].
    pub v: u32,
    /// The task id.
    pub id: String,
    /// Handler name.
    pub kind: String,
    /// Handler input.
    pub payload: Value,
    /// Retries on error.
    pub max_retries: u32,
    /// Whether errors are retried.
    pub retry_on_error: bool,
    /// Scheduling priority.
    pub priority: Priority,
    /// Seconds the outcome is kept.
    pub result_ttl_s: u64,
}

impl Envelope {
    /// Builds the envelope of a spec, deriving its id if it has none.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty kind or queue or an unusable id.
    pub fn from_spec(spec: &TaskSpec) -> Result<Self> {
        check_name("queue", &spec.queue)?;
        check_name("kind", &spec.kind)?;
        if let Some(channel) = &spec.notify {
            check_name("notify", channel)?;
        }
        let id = match &spec.id {
            Some(id) => {
                check_name("id", id)?;
                id.clone()
            }
            None => content_id(&spec.kind, &spec.payload),
        };
        Ok(Envelope {
            v: ENVELOPE_VERSION,
            id,
            kind: spec.kind.clone(),
            payload: spec.payload.clone(),
            max_retries: spec.max_retries,
            retry_on_error: spec.retry_on_error,
            priority: spec.priority,
            result_ttl_s: spec.result_ttl_s,
        })
    }

    /// Serializes, refusing anything over `limit` bytes.
    ///
    /// # Errors
    /// [`Error::TooLarge`].
    pub fn to_json(&self, limit: usize) -> Result<String> {
        let text = serde_json::to_string(self)?;
        check_size("the task envelope", text.len(), limit)?;
        Ok(text)
    }

    /// Parses an envelope, checking its version before its fields so that a newer producer
    /// gets a clear message rather than a field error.
    ///
    /// # Errors
    /// [`Error::Envelope`] for invalid JSON, a missing or newer version, or bad fields.
    pub fn parse(text: &str) -> Result<Self> {
        let doc: Value = serde_json::from_str(text).map_err(|e| Error::Envelope(format!("not JSON: {e}")))?;
        match doc.get("v").and_then(Value::as_u64) {
            Some(v) if v == u64::from(ENVELOPE_VERSION) => {}
            Some(v) => {
                return Err(Error::Envelope(format!(
                    "version {v}, this build reads version {ENVELOPE_VERSION}: upgrade the worker"
                )))
            }
            None => return Err(Error::Envelope("no \"v\" (version) field".to_owned())),
        }
        let envelope: Envelope = serde_json::from_value(doc)?;
        check_name("id", &envelope.id).map_err(|e| Error::Envelope(e.to_string()))?;
        Ok(envelope)
    }
}

/// Refuses `size` bytes of `what` past `limit`.
pub(crate) fn check_size(what: &'static str, size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(Error::TooLarge { what, size, limit });
    }
    Ok(())
}

/// Ids, kinds and queue names end up in keys and logs: printable, no spaces, bounded.
pub(crate) fn check_name(name: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 256 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(name, format!("{value:?} must be 1–256 printable characters without spaces")));
    }
    Ok(())
}

/// A content id: SHA-256 of the kind and the payload's JSON (serde_json writes object keys
/// sorted, so equal payloads hash equally), as 32 hex digits.
fn content_id(kind: &str, payload: &Value) -> String {
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0]);
    hash.update(payload.to_string().as_bytes());
    hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}
