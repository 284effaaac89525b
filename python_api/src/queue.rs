//! The Redis work queue for Python: a producer handle (`Queue`) and the fenced consumer steps
//! (`Consumer`) that `python -m ferrocluster worker` drives.
//!
//! The binding owns one tokio runtime; every call blocks on it with the GIL released, so
//! Python threads can fetch, heartbeat and complete concurrently. Payloads and results cross
//! as JSON text: the Python layer owns the codec.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferrocluster_core::queue::{
    BlobRef, CancelOutcome, Consumer, Delivery, Lease, Listener, Priority, Queue, QueueConfig, TaskSpec, Transition,
};
use ferrocluster_core::CancelToken;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::errors::{json_error, queue_to_py};

/// The runtime every queue handle shares: a small multi-threaded one, since the work is I/O.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ferrocluster-queue")
        .enable_all()
        .build()
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot start the queue runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs a queue future to completion without the GIL.
fn block<T: Send>(
    py: Python<'_>,
    work: impl std::future::Future<Output = ferrocluster_core::queue::Result<T>> + Send,
) -> PyResult<T> {
    let rt = runtime()?;
    py.detach(|| rt.block_on(work)).map_err(queue_to_py)
}

fn seconds(timeout_s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(timeout_s.max(0.0)).map_err(|e| PyValueError::new_err(format!("timeout_s: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| json_error("queue reply", e))
}

/// A flag that asks running work to stop: set it from any thread, and the fits given it
/// stop at their next step. It answers as a `threading.Event` does (`set`, `is_set`).
///
/// Example:
///     >>> flag = CancelFlag()
///     >>> flag.set()
///     >>> flag.is_set()
///     True
#[pyclass(module = "ferrocluster._core", name = "CancelFlag", frozen)]
#[derive(Default)]
pub struct PyCancelFlag {
    token: CancelToken,
}

impl PyCancelFlag {
    /// The token the core's work checks.
    pub(crate) fn token(&self) -> CancelToken {
        self.token.clone()
    }
}

#[pymethods]
impl PyCancelFlag {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Asks the work holding this flag to stop.
    fn set(&self) {
        self.token.cancel();
    }

    /// Whether someone asked to stop.
    fn is_set(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// A connection to a work queue on Redis.
///
/// Args:
///     url: `redis://[user:pass@]host:port/db`, or `rediss://` for TLS (certificates from
///         FERROCLUSTER_REDIS_CA, FERROCLUSTER_REDIS_CERT and FERROCLUSTER_REDIS_KEY).
///     namespace: key prefix shared by every process of this queue.
///     lease_ms: how long a worker may go without a heartbeat before its task is reclaimed.
///     block_ms: how long a consumer's blocking read waits before looping.
///
/// Example:
///     >>> q = Queue("redis://127.0.0.1:6379/0")  # doctest: +SKIP
///     >>> task_id, new = q.enqueue("default", "noop", "{}")  # doctest: +SKIP
#[pyclass(module = "ferrocluster._core", name = "Queue", frozen)]
pub struct PyQueue {
    queue: Queue,
}

impl PyQueue {
    /// The core queue (for bindings that drive a distributed job over it).
    pub(crate) fn inner(&self) -> &Queue {
        &self.queue
    }
}

#[pymethods]
impl PyQueue {
    #[new]
    #[pyo3(signature = (url, namespace = "fc", lease_ms = 30_000, block_ms = 2_000))]
    fn new(py: Python<'_>, url: &str, namespace: &str, lease_ms: u64, block_ms: u64) -> PyResult<Self> {
        let config = QueueConfig {
            namespace: namespace.to_owned(),
            lease: Duration::from_millis(lease_ms),
            block: Duration::from_millis(block_ms),
            ..QueueConfig::default()
        };
        Ok(PyQueue { queue: block(py, Queue::connect(url, config))? })
    }

    /// Adds a task; a task with the same id is not added twice.
    ///
    /// Args:
    ///     queue: the queue name workers serve.
    ///     kind: the handler that runs it.
    ///     payload: the handler's input, JSON text.
    ///     id: the task id; None derives it from kind and payload.
    ///     max_retries: times an error is retried.
    ///     retry_on_error: whether errors are retried at all.
    ///     priority: "high", "normal" or "low".
    ///     result_ttl_s: seconds the outcome is kept.
    ///     notify: a channel told the task's id when it finishes (see `Listener`).
    /// Returns:
    ///     (task id, whether it was new).
    #[pyo3(signature = (queue, kind, payload, id = None, max_retries = 3, retry_on_error = true, priority = "normal", result_ttl_s = 86_400, notify = None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        py: Python<'_>,
        queue: &str,
        kind: &str,
        payload: &str,
        id: Option<String>,
        max_retries: u32,
        retry_on_error: bool,
        priority: &str,
        result_ttl_s: u64,
        notify: Option<String>,
    ) -> PyResult<(String, bool)> {
        let (queue, kind, payload, priority) =
            (queue.to_owned(), kind.to_owned(), payload.to_owned(), priority.to_owned());
        let task = (queue, kind, payload, id, max_retries, retry_on_error, priority, result_ttl_s, notify);
        Ok(self.enqueue_many(py, vec![task])?.remove(0))
    }

    /// Adds many tasks in one round trip, in order.
    ///
    /// Args:
    ///     tasks: tuples of `enqueue`'s arguments, all given: (queue, kind, payload, id,
    ///         max_retries, retry_on_error, priority, result_ttl_s, notify).
    /// Returns:
    ///     (task id, whether it was new) per task.
    fn enqueue_many(&self, py: Python<'_>, tasks: Vec<TaskArgs>) -> PyResult<Vec<(String, bool)>> {
        let specs = tasks.into_iter().map(spec).collect::<PyResult<Vec<_>>>()?;
        block(py, self.queue.enqueue_many(&specs))
    }

    /// The statuses of many tasks in one round trip, as JSON text: a list in the order of
    /// `ids`, `null` for a task without a record (never enqueued, or expired).
    fn statuses(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<String> {
        to_json(&block(py, self.queue.statuses(&ids))?)
    }

    /// Reclaims tasks idle past their lease, promotes retries whose backoff passed and prunes
    /// consumers of dead workers (what every worker does every half lease).
    ///
    /// Returns:
    ///     (reclaimed, promoted, pruned consumers).
    fn sweep(&self, py: Python<'_>) -> PyResult<(u64, u64, u64)> {
        let report = block(py, self.queue.sweep())?;
        Ok((report.reclaimed, report.promoted, report.pruned_consumers))
    }

    /// Stores bytes too large for an envelope in Redis, expiring after `ttl_s` (0: kept).
    ///
    /// Returns:
    ///     (blob id, size): what `get_blob` takes.
    fn put_blob(&self, py: Python<'_>, data: &[u8], ttl_s: u64) -> PyResult<(String, usize)> {
        let blob = block(py, self.queue.put_blob(data, ttl_s))?;
        Ok((blob.id, blob.size))
    }

    /// The bytes of a blob (a writable bytearray), or None when it expired or was deleted.
    fn get_blob<'py>(&self, py: Python<'py>, id: String, size: usize) -> PyResult<Option<Bound<'py, PyByteArray>>> {
        let bytes = block(py, self.queue.get_blob(&BlobRef { id, size }))?;
        Ok(bytes.map(|bytes| PyByteArray::new(py, &bytes)))
    }

    /// A task's status as JSON text: state, attempts, deliveries, progress, error, result, ...
    ///
    /// Raises:
    ///     KeyError: no such task (never enqueued, or its record expired).
    fn status(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        to_json(&block(py, self.queue.status(id))?)
    }

    /// Waits until every task is finished or `timeout_s` passes.
    ///
    /// Returns:
    ///     JSON text: the statuses in the order of `ids`, finished or not.
    fn wait(&self, py: Python<'_>, ids: Vec<String>, timeout_s: f64) -> PyResult<String> {
        to_json(&block(py, self.queue.wait(&ids, seconds(timeout_s)?))?)
    }

    /// Cancels a task.
    ///
    /// Returns:
    ///     "cancelled" (it was pending and will not run), "requested" (it is running; its
    ///     worker is told at its next heartbeat) or the state it had already finished in.
    fn cancel(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        Ok(match block(py, self.queue.cancel(id))? {
            CancelOutcome::Cancelled => "cancelled".to_owned(),
            CancelOutcome::Requested => "requested".to_owned(),
            CancelOutcome::AlreadyFinished(state) => to_json(&state)?.trim_matches('"').to_owned(),
        })
    }

    /// Queue lengths, pending entries, consumers, dead letters, live workers and counters,
    /// as JSON text.
    fn stats(&self, py: Python<'_>) -> PyResult<String> {
        to_json(&block(py, self.queue.stats())?)
    }
}

/// `enqueue`'s arguments: queue, kind, payload, id, max_retries, retry_on_error, priority,
/// result_ttl_s, notify.
type TaskArgs = (String, String, String, Option<String>, u32, bool, String, u64, Option<String>);

fn spec(task: TaskArgs) -> PyResult<TaskSpec> {
    let (queue, kind, payload, id, max_retries, retry_on_error, priority, result_ttl_s, notify) = task;
    let priority = match priority.as_str() {
        "high" => Priority::High,
        "normal" => Priority::Normal,
        "low" => Priority::Low,
        other => return Err(PyValueError::new_err(format!("priority must be high, normal or low, got {other:?}"))),
    };
    Ok(TaskSpec {
        id,
        payload: serde_json::from_str(&payload).map_err(|e| json_error("payload", e))?,
        max_retries,
        retry_on_error,
        priority,
        result_ttl_s,
        notify,
        ..TaskSpec::new(queue, kind, serde_json::Value::Null)
    })
}

/// Waits for the tasks enqueued with `notify=channel` to finish, without polling.
///
/// Args:
///     queue: the queue connection whose settings (block time, reconnects) it uses.
///     channel: the channel name; one listener per channel (a popped id is gone).
#[pyclass(module = "ferrocluster._core", name = "Listener", frozen)]
pub struct PyListener {
    listener: Listener,
}

#[pymethods]
impl PyListener {
    #[new]
    fn new(queue: &PyQueue, channel: &str) -> PyResult<Self> {
        Ok(PyListener { listener: Listener::new(&queue.queue, channel).map_err(queue_to_py)? })
    }

    /// Up to `max` ids of tasks that finished, waiting up to `timeout_s` (capped at the
    /// queue's block time) for the first; empty when none did.
    fn next(&self, py: Python<'_>, max: usize, timeout_s: f64) -> PyResult<Vec<String>> {
        block(py, self.listener.next(max, seconds(timeout_s)?))
    }

    /// Like `next`, with the outcomes that travelled with the ids, as JSON text: a list of
    /// `{"id"}`, or `{"id", "state", "result", "error"}` when the outcome was small enough
    /// to travel with its notification (otherwise read it with `Queue.statuses`).
    fn next_finished(&self, py: Python<'_>, max: usize, timeout_s: f64) -> PyResult<String> {
        to_json(&block(py, self.listener.next_finished(max, seconds(timeout_s)?))?)
    }
}

/// A task a `Consumer` fetched and started; its lease lasts while the consumer heartbeats.
#[pyclass(module = "ferrocluster._core", name = "Delivery", frozen)]
pub struct PyDelivery {
    delivery: Delivery,
}

#[pymethods]
impl PyDelivery {
    /// The task id.
    #[getter]
    fn id(&self) -> &str {
        &self.delivery.envelope.id
    }

    /// The handler name.
    #[getter]
    fn kind(&self) -> &str {
        &self.delivery.envelope.kind
    }

    /// The handler's input, JSON text.
    #[getter]
    fn payload(&self) -> String {
        self.delivery.envelope.payload.to_string()
    }

    /// Errors before this run.
    #[getter]
    fn attempts(&self) -> u32 {
        self.delivery.attempts
    }

    /// Times it was started, this time included.
    #[getter]
    fn deliveries(&self) -> u32 {
        self.delivery.deliveries
    }

    /// Seconds its outcome is kept (blobs of its result should live as long).
    #[getter]
    fn result_ttl_s(&self) -> u64 {
        self.delivery.envelope.result_ttl_s
    }
}

/// One member of a queue's consumer group: the fenced steps of a worker.
///
/// Args:
///     queue: the queue connection to use.
///     name: a consumer name unique among live workers.
///     queues: the queue names to serve.
#[pyclass(module = "ferrocluster._core", name = "Consumer", frozen)]
pub struct PyConsumer {
    consumer: Arc<Consumer>,
}

#[pymethods]
impl PyConsumer {
    #[new]
    fn new(py: Python<'_>, queue: &PyQueue, name: &str, queues: Vec<String>) -> PyResult<Self> {
        let consumer = block(py, Consumer::join(&queue.queue, name, &queues))?;
        Ok(PyConsumer { consumer: Arc::new(consumer) })
    }

    /// Fetches and starts up to `max` tasks, blocking up to `block_ms` when there are none.
    fn fetch(&self, py: Python<'_>, max: usize, block_ms: u64) -> PyResult<Vec<PyDelivery>> {
        let fetched = block(py, self.consumer.fetch(max, Duration::from_millis(block_ms)))?;
        Ok(fetched.into_iter().map(|delivery| PyDelivery { delivery }).collect())
    }

    /// Extends the lease and reports progress.
    ///
    /// Returns:
    ///     "held", "cancel" (held, and a caller asked to cancel) or "lost" (reclaimed: stop,
    ///     the outcome would be refused).
    #[pyo3(signature = (delivery, done = 0, total = 0))]
    fn heartbeat(&self, py: Python<'_>, delivery: &PyDelivery, done: u64, total: u64) -> PyResult<&'static str> {
        Ok(match block(py, self.consumer.heartbeat(&delivery.delivery, (done, total)))? {
            Lease::Held { cancel_requested: false } => "held",
            Lease::Held { cancel_requested: true } => "cancel",
            Lease::Lost => "lost",
        })
    }

    /// Records the result (JSON text), once. Returns False when refused (lease lost).
    fn complete(&self, py: Python<'_>, delivery: &PyDelivery, result: &str) -> PyResult<bool> {
        let value = serde_json::from_str(result).map_err(|e| json_error("result", e))?;
        applied(block(py, self.consumer.complete(&delivery.delivery, &value))?)
    }

    /// Records many results (JSON text) in one round trip; False for each one refused.
    fn complete_many(&self, py: Python<'_>, done: Vec<(PyRef<'_, PyDelivery>, String)>) -> PyResult<Vec<bool>> {
        let values = done
            .iter()
            .map(|(_, result)| serde_json::from_str(result).map_err(|e| json_error("result", e)))
            .collect::<PyResult<Vec<serde_json::Value>>>()?;
        let pairs: Vec<(&Delivery, &serde_json::Value)> =
            done.iter().map(|(delivery, _)| &delivery.delivery).zip(&values).collect();
        let transitions = block(py, self.consumer.complete_many(&pairs))?;
        Ok(transitions.into_iter().map(|t| t == Transition::Applied).collect())
    }

    /// Hands a task back at once, as a fresh entry any worker can fetch (not counted as a
    /// lost delivery). Returns False when refused.
    fn release(&self, py: Python<'_>, delivery: &PyDelivery) -> PyResult<bool> {
        applied(block(py, self.consumer.release(&delivery.delivery))?)
    }

    /// Records an error, retried when `retryable` and the task has retries left. Returns False
    /// when refused.
    fn fail(&self, py: Python<'_>, delivery: &PyDelivery, error: &str, retryable: bool) -> PyResult<bool> {
        applied(block(py, self.consumer.fail(&delivery.delivery, error, retryable))?)
    }

    /// Records that the task stopped because it was cancelled. Returns False when refused.
    fn cancelled(&self, py: Python<'_>, delivery: &PyDelivery) -> PyResult<bool> {
        applied(block(py, self.consumer.cancelled(&delivery.delivery))?)
    }

    /// Dead-letters a task this worker must not run, with the reason. Returns False when refused.
    fn reject(&self, py: Python<'_>, delivery: &PyDelivery, reason: &str) -> PyResult<bool> {
        applied(block(py, self.consumer.reject(&delivery.delivery, reason))?)
    }

    /// Hands every task this consumer holds back to the queue; returns how many.
    fn release_all(&self, py: Python<'_>) -> PyResult<usize> {
        block(py, self.consumer.release_all())
    }

    /// Leaves the consumer group (once nothing is held).
    fn leave(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.consumer.leave())
    }
}

fn applied(transition: Transition) -> PyResult<bool> {
    Ok(transition == Transition::Applied)
}
