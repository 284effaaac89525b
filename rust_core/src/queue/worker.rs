//! [`Worker`]: runs a registry of task handlers on `concurrency` slots, heartbeating each
//! task's lease, sweeping the queue, and shutting down without losing a task.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{inbox, Consumer, Delivery, Lease, Queue, Result, Transition};

/// Why a handler did not return a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// It failed; retried if the task allows it and has retries left.
    #[error("{0}")]
    Failed(String),
    /// Its input is unusable: retrying cannot help, so it fails at once.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// It stopped because [`TaskContext::is_cancelled`] said so.
    #[error("cancelled")]
    Cancelled,
}

/// What a handler sees of the queue while it runs.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task id.
    pub id: String,
    /// Times the task was started, this run included.
    pub delivery: u32,
    /// Errors before this run (0 on the first try).
    pub attempt: u32,
    /// The consumer name of the worker running it (its inbox is [`super::inbox`] of it);
    /// empty outside a worker.
    pub worker: String,
    state: Arc<ContextState>,
}

#[derive(Debug, Default)]
struct ContextState {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
}

impl TaskContext {
    /// A context for running a handler outside a worker (tests, the in-process executor).
    pub fn detached(id: impl Into<String>) -> Self {
        TaskContext { id: id.into(), delivery: 1, attempt: 0, worker: String::new(), state: Arc::default() }
    }

    /// Reports progress; the worker writes it to the task record with its next heartbeat.
    pub fn progress(&self, done: u64, total: u64) {
        self.state.done.store(done, Ordering::Relaxed);
        self.state.total.store(total, Ordering::Relaxed);
    }

    /// Whether the handler should stop: the task was cancelled, or this worker lost its
    /// lease (another worker may be running it). Check it between chunks of work.
    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(TaskError::Cancelled)` once [`TaskContext::is_cancelled`], for `?` in handlers.
    ///
    /// # Errors
    /// [`TaskError::Cancelled`].
    pub fn check_cancelled(&self) -> std::result::Result<(), TaskError> {
        if self.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        Ok(())
    }

    fn cancel(&self) {
        self.state.cancelled.store(true, Ordering::Relaxed);
    }

    fn progress_now(&self) -> (u64, u64) {
        (self.state.done.load(Ordering::Relaxed), self.state.total.load(Ordering::Relaxed))
    }
}

/// A task handler: input payload in, JSON result out. It runs on a blocking thread (use
/// rayon inside freely) and should check [`TaskContext::is_cancelled`] between chunks.
pub type Handler = Arc<dyn Fn(&TaskContext, Value) -> std::result::Result<Value, TaskError> + Send + Sync>;

/// The task kinds a worker runs. Only registered kinds run: the queue never carries code.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds()).finish()
    }
}

impl Registry {
    /// Registers `handler` for `kind`, replacing any earlier one.
    pub fn register(
        &mut self,
        kind: impl Into<String>,
        handler: impl Fn(&TaskContext, Value) -> std::result::Result<Value, TaskError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> BTreeSet<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }

    fn get(&self, kind: &str) -> Option<Handler> {
        self.handlers.get(kind).cloned()
    }
}

/// How a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// A readable name (host or role); the consumer name adds the pid and a random suffix so
    /// restarts never reuse a dead worker's identity.
    pub name: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// On shutdown, how long running tasks may take to finish before they are handed back.
    pub grace: Duration,
}

/// Runs tasks from a queue until told to stop.
#[derive(Debug)]
pub struct Worker {
    queue: Queue,
    config: WorkerConfig,
    registry: Registry,
}

/// What a worker's record shows of it.
#[derive(Debug, Default)]
struct Activity {
    /// Tasks running, by id.
    current: Mutex<BTreeSet<String>>,
    /// Tasks whose outcome it recorded.
    completed: AtomicU64,
    /// Whether it was told to stop.
    stopping: AtomicBool,
}

type Running = Arc<Activity>;

/// Everything a worker writes into its record.
#[derive(Debug, Clone)]
struct Identity {
    consumer: String,
    config: WorkerConfig,
    kinds: String,
    started_ms: u64,
}

impl Worker {
    /// A worker for `queue` running the kinds in `registry`.
    pub fn new(queue: Queue, config: WorkerConfig, registry: Registry) -> Self {
        Worker { queue, config, registry }
    }

    /// Runs until `shutdown` completes, then stops fetching, lets running tasks finish for
    /// up to `grace`, hands back whatever it still holds, and leaves the consumer group.
    ///
    /// # Errors
    /// Only when it cannot join the queue; later Redis failures are logged and retried.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let consumer_name = format!("{}-{}-{:08x}", self.config.name, std::process::id(), rand::random::<u32>());
        // The inbox first: its tasks are steps of a job that waits for them.
        let queues: Vec<String> = std::iter::once(inbox(&consumer_name)).chain(self.config.queues.clone()).collect();
        let consumer = Arc::new(Consumer::join(&self.queue, &consumer_name, &queues).await?);
        let lease = self.queue.config.lease;
        let heartbeat = lease / 3;
        let running: Running = Arc::default();
        let identity = Identity {
            consumer: consumer_name.clone(),
            config: self.config.clone(),
            kinds: self.registry.kinds().into_iter().collect::<Vec<_>>().join(","),
            started_ms: now_ms(),
        };
        let mut background = JoinSet::new();
        background.spawn(sweep_loop(self.queue.clone(), lease / 2));
        background.spawn(record_loop(self.queue.clone(), identity.clone(), running.clone()));
        tracing::info!(consumer = consumer_name, queues = ?self.config.queues, kinds = ?self.registry.kinds(), "worker started");

        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while tasks.try_join_next().is_some() {}
            let first = tokio::select! {
                _ = &mut shutdown => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let mut permits = vec![first];
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                permits.push(permit);
            }
            let fetched = tokio::select! {
                _ = &mut shutdown => break,
                fetched = consumer.fetch(permits.len(), self.queue.config.block) => fetched,
            };
            match fetched {
                Ok(deliveries) => {
                    for delivery in deliveries {
                        let permit = permits.pop().expect("fetch returns at most one task per free slot");
                        let run =
                            run_task(consumer.clone(), self.registry.clone(), delivery, heartbeat, running.clone());
                        tasks.spawn(async move {
                            run.await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "fetching tasks failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }

        tracing::info!(running = tasks.len(), grace = ?self.config.grace, "stopping: no new tasks");
        running.stopping.store(true, Ordering::Relaxed);
        // Shown at once, not at the next heartbeat: an operator waiting on it sees it stop.
        self.queue.refresh_worker_record(&identity, &running).await;
        let drained = tokio::time::timeout(self.config.grace, async { while tasks.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::warn!(tasks = tasks.len(), "grace period over: handing running tasks back");
        }
        // Their handlers may still be computing on blocking threads; the process exits soon
        // and any late completion would be refused by the fence anyway.
        tasks.abort_all();
        background.abort_all();
        let released = consumer.release_all().await?;
        if released > 0 {
            tracing::info!(released, "handed back tasks");
        }
        consumer.leave().await?;
        self.queue.remove_worker_record(&consumer_name).await?;
        self.queue.prune_inbox(&consumer_name).await?;
        tracing::info!(consumer = consumer_name, "worker stopped");
        Ok(())
    }
}

/// Runs one delivery to its recorded end (or its refusal), heartbeating meanwhile.
async fn run_task(consumer: Arc<Consumer>, registry: Registry, delivery: Delivery, every: Duration, running: Running) {
    let id = delivery.envelope.id.clone();
    let kind = delivery.envelope.kind.clone();
    let Some(handler) = registry.get(&kind) else {
        let reason = format!("unknown task kind `{kind}`: this worker runs {:?}", registry.kinds());
        log_failure(consumer.reject(&delivery, &reason).await, &id);
        return;
    };
    lock(&running.current).insert(id.clone());
    let context = TaskContext {
        id: id.clone(),
        delivery: delivery.deliveries,
        attempt: delivery.attempts,
        worker: consumer.name().to_owned(),
        state: Arc::default(),
    };
    let beats = tokio::spawn(heartbeat_loop(consumer.clone(), delivery.clone(), context.clone(), every));
    tracing::debug!(id, kind, delivery = delivery.deliveries, "task started");
    let payload = delivery.envelope.payload.clone();
    let ctx = context.clone();
    let outcome = tokio::task::spawn_blocking(move || handler(&ctx, payload)).await;
    beats.abort();
    let recorded = match outcome {
        Ok(Ok(result)) => consumer.complete(&delivery, &result).await,
        Ok(Err(_)) if context.is_cancelled() => consumer.cancelled(&delivery).await,
        Ok(Err(TaskError::Cancelled)) => consumer.cancelled(&delivery).await,
        Ok(Err(TaskError::Failed(e))) => consumer.fail(&delivery, &e, true).await,
        Ok(Err(e @ TaskError::Invalid(_))) => consumer.fail(&delivery, &e.to_string(), false).await,
        Err(join) => consumer.fail(&delivery, &format!("handler panicked: {}", panic_message(join)), true).await,
    };
    match recorded {
        Ok(Transition::Applied) => {
            running.completed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(id, "task outcome recorded")
        }
        Ok(Transition::Refused) => {
            tracing::warn!(id, "outcome refused: the lease was lost and another worker owns the task")
        }
        Err(e) => log_failure(Err(e), &id),
    }
    lock(&running.current).remove(&id);
}

/// Extends the lease every `every`, passing cancels and lease loss to the handler.
async fn heartbeat_loop(consumer: Arc<Consumer>, delivery: Delivery, context: TaskContext, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match consumer.heartbeat(&delivery, context.progress_now()).await {
            Ok(Lease::Held { cancel_requested: false }) => {}
            Ok(Lease::Held { cancel_requested: true }) => context.cancel(),
            Ok(Lease::Lost) => {
                tracing::warn!(id = context.id, "lease lost (reclaimed by a sweeper): stopping the task");
                context.cancel();
                return;
            }
            Err(e) => tracing::warn!(id = context.id, error = %e, "heartbeat failed"),
        }
    }
}

async fn sweep_loop(queue: Queue, every: Duration) {
    loop {
        match queue.sweep().await {
            Ok(report) if report.reclaimed + report.pruned_consumers > 0 => tracing::info!(?report, "swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Keeps this worker's record (what `stats` shows) fresh.
async fn record_loop(queue: Queue, identity: Identity, running: Running) {
    loop {
        queue.refresh_worker_record(&identity, &running).await;
        tokio::time::sleep(queue.config.lease / 3).await;
    }
}

impl Queue {
    /// Writes a worker's record; a failure is only logged (the next heartbeat tries again).
    async fn refresh_worker_record(&self, identity: &Identity, running: &Activity) {
        if let Err(e) = self.write_worker_record(identity, running).await {
            tracing::warn!(error = %e, "writing the worker record failed");
        }
    }

    /// Writes a worker's record, expiring after 3 leases without a refresh (`stats` reads the
    /// heartbeat's age from what is left of that).
    async fn write_worker_record(&self, identity: &Identity, running: &Activity) -> Result<()> {
        let config = &identity.config;
        let lease_ms = self.config.lease.as_millis() as u64;
        let fields = [
            ("name", config.name.clone()),
            ("pid", std::process::id().to_string()),
            ("state", if running.stopping.load(Ordering::Relaxed) { "stopping" } else { "running" }.to_owned()),
            ("queues", config.queues.join(",")),
            ("kinds", identity.kinds.clone()),
            ("concurrency", config.concurrency.to_string()),
            ("lease_ms", lease_ms.to_string()),
            ("current", lock(&running.current).iter().cloned().collect::<Vec<_>>().join(",")),
            ("completed", running.completed.load(Ordering::Relaxed).to_string()),
            ("started_ms", identity.started_ms.to_string()),
            ("last_heartbeat_ms", now_ms().to_string()),
        ];
        let consumer = &identity.consumer;
        let key = self.keys.worker(consumer);
        let ttl_ms = lease_ms * 3;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(&key, &fields)
            .ignore()
            .pexpire(&key, ttl_ms as i64)
            .ignore()
            .zadd(self.keys.workers(), consumer, now_ms())
            .ignore();
        self.conn.pipeline(&pipe).await
    }

    async fn remove_worker_record(&self, consumer: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(self.keys.worker(consumer)).ignore().zrem(self.keys.workers(), consumer).ignore();
        self.conn.pipeline(&pipe).await
    }
}

fn log_failure(outcome: Result<Transition>, id: &str) {
    if let Err(e) = outcome {
        // The lease will expire and a sweeper will put the task back: nothing is lost.
        tracing::error!(id, error = %e, "recording the outcome failed; the task will be reclaimed after its lease");
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-text panic".to_owned()),
        Err(join) => join.to_string(),
    }
}

fn lock(current: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
