//! [`Worker`]: runs a registry of task handlers on `concurrency` slots, heartbeating each
//! task's lease, sweeping the queue, and shutting down without losing a task.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{inbox, Consumer, Delivery, Error, Lease, Queue, Result, Transition};
use crate::CancelToken;

/// Most tasks one slot fetches and runs as a batch (when they are quick).
const BATCH_MAX: usize = 16;

/// How long a batch may hold results (and tasks it has not started) before recording them
/// (and handing the rest back).
const BATCH_HOLD: Duration = Duration::from_millis(20);

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
    cancel: CancelToken,
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
        self.state.cancel.is_cancelled()
    }

    /// The token behind [`TaskContext::is_cancelled`], for computations that take one.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.state.cancel
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
        self.state.cancel.cancel();
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
    /// What each running batch holds: where a published cancel is looked up.
    batches: Mutex<Vec<Held>>,
}

impl Activity {
    /// Stops the handler of task `id`, if this worker holds it.
    fn cancel(&self, id: &str) {
        for held in lock(&self.batches).iter() {
            for (_, context) in lock(held).iter().filter(|(_, context)| context.id == id) {
                tracing::debug!(id, "cancel heard: stopping the task");
                context.cancel();
            }
        }
    }
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
        background.spawn(cancel_loop(self.queue.clone(), running.clone()));
        tracing::info!(consumer = consumer_name, queues = ?self.config.queues, kinds = ?self.registry.kinds(), "worker started");

        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        // Tasks a slot takes at once: doubled while batches run quickly, back to 1 when not.
        let batch_size = Arc::new(AtomicUsize::new(1));
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
            let size = batch_size.load(Ordering::Relaxed);
            let fetched = tokio::select! {
                _ = &mut shutdown => break,
                fetched = consumer.fetch(permits.len() * size, self.queue.config.block) => fetched,
            };
            match fetched {
                Ok(deliveries) if !deliveries.is_empty() => {
                    let per_slot = deliveries.len().div_ceil(permits.len());
                    let mut deliveries = deliveries.into_iter();
                    loop {
                        let batch: Vec<Delivery> = deliveries.by_ref().take(per_slot).collect();
                        if batch.is_empty() {
                            break;
                        }
                        let permit = permits.pop().expect("fetch returns at most `size` tasks per free slot");
                        let run = run_batch(consumer.clone(), self.registry.clone(), batch, heartbeat, running.clone());
                        let batch_size = batch_size.clone();
                        tasks.spawn(async move {
                            let quick = run.await;
                            let next = if quick { (size * 2).min(BATCH_MAX) } else { 1 };
                            batch_size.store(next, Ordering::Relaxed);
                            drop(permit);
                        });
                    }
                }
                Ok(_) => {}
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

/// Deliveries a batch holds, with their contexts: what its heartbeats extend.
type Held = Arc<Mutex<Vec<(Delivery, TaskContext)>>>;

/// Runs a batch of deliveries on one slot, one after the other, and records their results
/// together (one round trip for the lot). Once the batch has taken [`BATCH_HOLD`] it records
/// the results it holds and hands back the tasks it has not started, even while a task still
/// runs, so that a long task neither delays the results before it nor holds up those after
/// it. Returns whether it ran every task within the hold.
async fn run_batch(
    consumer: Arc<Consumer>,
    registry: Registry,
    batch: Vec<Delivery>,
    every: Duration,
    running: Running,
) -> bool {
    let worker = consumer.name().to_owned();
    let waiting: VecDeque<(Delivery, TaskContext)> = batch
        .into_iter()
        .map(|delivery| {
            let context = TaskContext {
                id: delivery.envelope.id.clone(),
                delivery: delivery.deliveries,
                attempt: delivery.attempts,
                worker: worker.clone(),
                state: Arc::default(),
            };
            (delivery, context)
        })
        .collect();
    let held: Held = Arc::new(Mutex::new(waiting.iter().cloned().collect()));
    lock(&running.batches).push(held.clone());
    let beats = tokio::spawn(heartbeat_loop(consumer.clone(), held.clone(), every));
    let mut batch = Batch { consumer, registry, running, held, waiting, results: Vec::new() };
    let mut hold_until = Some(tokio::time::Instant::now() + BATCH_HOLD);
    let mut first = true;
    while let Some((delivery, context)) = batch.waiting.pop_front() {
        if batch.running.stopping.load(Ordering::Relaxed) || (!first && hold_until.is_none()) {
            batch.waiting.push_front((delivery, context));
            break;
        }
        first = false;
        batch.run(delivery, context, &mut hold_until).await;
        if hold_until.is_some_and(|until| tokio::time::Instant::now() >= until) {
            hold_until = None;
        }
    }
    let quick = batch.waiting.is_empty() && hold_until.is_some();
    batch.hand_back().await;
    beats.abort();
    lock(&batch.running.batches).retain(|other| !Arc::ptr_eq(other, &batch.held));
    quick
}

/// The state of a batch being run.
struct Batch {
    consumer: Arc<Consumer>,
    registry: Registry,
    running: Running,
    held: Held,
    /// Deliveries not started yet, in order.
    waiting: VecDeque<(Delivery, TaskContext)>,
    /// Results not recorded yet.
    results: Vec<(Delivery, Value)>,
}

impl Batch {
    /// Runs one delivery; its result waits to be recorded with the others, any other outcome
    /// is recorded at once. When `hold_until` passes while the handler runs, the batch hands
    /// back what it holds (and `hold_until` becomes `None`).
    async fn run(&mut self, delivery: Delivery, context: TaskContext, hold_until: &mut Option<tokio::time::Instant>) {
        let id = delivery.envelope.id.clone();
        let kind = delivery.envelope.kind.clone();
        let Some(handler) = self.registry.get(&kind) else {
            let reason = format!("unknown task kind `{kind}`: this worker runs {:?}", self.registry.kinds());
            log_failure(self.consumer.reject(&delivery, &reason).await, &id);
            self.forget(&delivery);
            return;
        };
        if context.is_cancelled() {
            // Cancelled (or its lease lost) while it waited in the batch: it does not run.
            let recorded = self.cancelled(&delivery, &context).await;
            self.noted(recorded, &id);
            self.forget(&delivery);
            return;
        }
        lock(&self.running.current).insert(id.clone());
        tracing::debug!(id, kind, delivery = delivery.deliveries, "task started");
        let payload = delivery.envelope.payload.clone();
        let ctx = context.clone();
        let mut handle = tokio::task::spawn_blocking(move || handler(&ctx, payload));
        let outcome = loop {
            let until = hold_until.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                outcome = &mut handle => break outcome,
                _ = tokio::time::sleep_until(until), if hold_until.is_some() => {
                    *hold_until = None;
                    self.hand_back().await;
                }
            }
        };
        let recorded = match outcome {
            Ok(Ok(result)) => {
                self.results.push((delivery, result));
                lock(&self.running.current).remove(&id);
                return;
            }
            Ok(Err(_)) if context.is_cancelled() => self.cancelled(&delivery, &context).await,
            Ok(Err(TaskError::Cancelled)) => self.cancelled(&delivery, &context).await,
            Ok(Err(TaskError::Failed(e))) => self.consumer.fail(&delivery, &e, true).await,
            Ok(Err(e @ TaskError::Invalid(_))) => self.consumer.fail(&delivery, &e.to_string(), false).await,
            Err(join) => {
                self.consumer.fail(&delivery, &format!("handler panicked: {}", panic_message(join)), true).await
            }
        };
        self.noted(recorded, &id);
        self.forget(&delivery);
        lock(&self.running.current).remove(&id);
    }

    /// Records that a task stopped for a cancel, with the progress it had reached (what the
    /// record shows of where it stopped).
    async fn cancelled(&self, delivery: &Delivery, context: &TaskContext) -> Result<Transition> {
        if let Err(e) = self.consumer.heartbeat(delivery, context.progress_now()).await {
            tracing::warn!(id = context.id, error = %e, "recording the progress of a cancelled task failed");
        }
        self.consumer.cancelled(delivery).await
    }

    /// Records the results held (one round trip) and hands back the tasks not started.
    async fn hand_back(&mut self) {
        let results = std::mem::take(&mut self.results);
        if !results.is_empty() {
            let done: Vec<(&Delivery, &Value)> = results.iter().map(|(delivery, result)| (delivery, result)).collect();
            match self.consumer.complete_many(&done).await {
                Ok(transitions) => {
                    for ((delivery, _), transition) in results.iter().zip(transitions) {
                        self.noted(Ok(transition), &delivery.envelope.id);
                    }
                }
                Err(e) => {
                    let ids: Vec<&str> = results.iter().map(|(delivery, _)| delivery.envelope.id.as_str()).collect();
                    tracing::error!(?ids, error = %e, "recording results failed; the tasks will be reclaimed after their lease");
                }
            }
            for (delivery, _) in &results {
                self.forget(delivery);
            }
        }
        while let Some((delivery, _)) = self.waiting.pop_front() {
            log_failure(self.consumer.release(&delivery).await, &delivery.envelope.id);
            self.forget(&delivery);
        }
    }

    /// Logs what recording an outcome did, and counts it.
    fn noted(&self, recorded: Result<Transition>, id: &str) {
        match recorded {
            Ok(Transition::Applied) => {
                self.running.completed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(id, "task outcome recorded")
            }
            Ok(Transition::Refused) => {
                tracing::warn!(id, "outcome refused: the lease was lost and another worker owns the task")
            }
            Err(e) => log_failure(Err(e), id),
        }
    }

    /// Stops heartbeating a delivery whose outcome is recorded or that was handed back.
    fn forget(&self, delivery: &Delivery) {
        lock(&self.held).retain(|(held, _)| held.entry != delivery.entry);
    }
}

/// Extends the leases of what a batch holds every `every`, passing cancels and lease loss to
/// the handlers.
async fn heartbeat_loop(consumer: Arc<Consumer>, held: Held, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let snapshot = lock(&held).clone();
        for (delivery, context) in snapshot {
            match consumer.heartbeat(&delivery, context.progress_now()).await {
                Ok(Lease::Held { cancel_requested: false }) => {}
                Ok(Lease::Held { cancel_requested: true }) => context.cancel(),
                Ok(Lease::Lost) => {
                    tracing::warn!(id = context.id, "lease lost (reclaimed by a sweeper): stopping the task");
                    context.cancel();
                    lock(&held).retain(|(held, _)| held.entry != delivery.entry);
                }
                Err(e) => tracing::warn!(id = context.id, error = %e, "heartbeat failed"),
            }
        }
    }
}

/// Passes published cancels to the handlers; resubscribes after a lease when the
/// subscription breaks (the heartbeats carry cancels meanwhile). A Redis user denied the
/// pub/sub commands is said once: it stays so, and the heartbeats carry every cancel.
async fn cancel_loop(queue: Queue, running: Running) {
    let mut denied = false;
    loop {
        match queue.follow_cancels(|id| running.cancel(id)).await {
            Err(e @ Error::Permission(_)) if denied => tracing::debug!(error = %e, "still no pub/sub for cancels"),
            Err(e @ Error::Permission(_)) => {
                denied = true;
                tracing::warn!(error = %e, "this Redis user may not subscribe to the cancel channel (grant +subscribe): cancels reach running tasks with the heartbeats");
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for cancels failed; they reach tasks with the heartbeats until it is back");
            }
            Ok(()) => {}
        }
        tokio::time::sleep(queue.config.lease).await;
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
