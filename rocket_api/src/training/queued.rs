//! The queue executor: each job is a `train` task on the Redis work queue (task id = job id),
//! run by `ferrocluster-worker` processes. One thread here, with its own small runtime,
//! keeps the job records in step with the tasks: it enqueues new and resumed jobs (a
//! repeated enqueue of an id is a no-op), passes cancels on, copies state and progress from
//! the task records, stores the model of a task that succeeded and deletes the blobs that
//! brought it. Woken at once by a new job or a cancel, it otherwise looks every [`POLL`].
//!
//! Blobs no job will collect are deleted too, not left to expire: those of a task that
//! succeeded although its job was cancelled, and those left by a job whose model is deleted.
//!
//! The worker reads the images from the data directory (mounted at the same path on every
//! worker) and returns the model by reference: see `ferrocluster_core::training::task`.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ferrocluster_core::queue::{
    CancelOutcome, Error as QueueError, Queue, QueueConfig, TaskSpec, TaskState, TaskStatus,
};
use ferrocluster_core::training::task::{unpack_progress, TrainOutput, TrainTask, KIND};
use ferrocluster_core::training::TrainError;
use tokio::sync::Notify;

use super::Jobs;
use crate::config::Settings;
use crate::store::jobs::{Job, JobProgress, JobState};
use crate::store::now_ms;

/// How often the tasks are looked at when nothing wakes the thread.
const POLL: Duration = Duration::from_millis(250);
/// How often the live workers are counted.
const WORKERS_EVERY: Duration = Duration::from_secs(1);
/// How long a task's outcome, and the model blobs it refers to, stay in Redis: the service
/// may be down this long and still collect a model trained meanwhile.
const RESULT_TTL_S: u64 = 24 * 3600;
/// Times a training that returned an error is tried again.
const MAX_RETRIES: u32 = 1;

/// Redis and the workers as the executor last saw them.
#[derive(Debug, Clone, Default)]
pub struct QueueHealth {
    /// When Redis last answered.
    pub answered_at: Option<Instant>,
    /// Live workers that run `train` tasks from the training queue (when last counted).
    pub workers: usize,
    /// The last error talking to Redis, if the last exchange failed.
    pub error: Option<String>,
    /// The queue the jobs go to.
    pub queue: String,
}

/// The queue executor's shared state.
pub(super) struct Queued {
    url: String,
    config: QueueConfig,
    queue: String,
    wake: Arc<Notify>,
    /// Tasks to let go of: cancelled if they still run, their result blobs deleted.
    releases: Mutex<BTreeSet<String>>,
    health: Mutex<QueueHealth>,
}

impl Queued {
    pub(super) fn new(url: &str, settings: &Settings) -> Self {
        let config = QueueConfig {
            namespace: settings.queue_namespace.clone(),
            // Fail fast and try again at the next poll: readiness reports the outage meanwhile.
            reconnect_timeout: Duration::from_secs(3),
            ..QueueConfig::default()
        };
        let health = QueueHealth { queue: settings.training_queue.clone(), ..QueueHealth::default() };
        Queued {
            url: url.to_owned(),
            config,
            queue: settings.training_queue.clone(),
            wake: Arc::default(),
            releases: Mutex::default(),
            health: Mutex::new(health),
        }
    }

    /// Starts the thread that follows the tasks; it ends when the jobs are dropped.
    pub(super) fn start(&self, jobs: &Arc<Jobs>) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (weak, url, config, wake) =
            (Arc::downgrade(jobs), self.url.clone(), self.config.clone(), self.wake.clone());
        std::thread::Builder::new()
            .name("train-queue".to_owned())
            .spawn(move || runtime.block_on(follow(weak, url, config, wake)))?;
        Ok(())
    }

    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Lets go of the task of job `id` (cancelled, or its model deleted): it is cancelled if
    /// it still runs, and its result blobs are deleted whenever it ends.
    pub(super) fn release(&self, id: &str) {
        lock(&self.releases).insert(id.to_owned());
        self.wake();
    }

    pub(super) fn health(&self) -> QueueHealth {
        lock(&self.health).clone()
    }

    fn answered(&self, workers: Option<usize>) {
        let mut health = lock(&self.health);
        health.answered_at = Some(Instant::now());
        health.error = None;
        if let Some(workers) = workers {
            health.workers = workers;
        }
    }

    fn failed(&self, error: &QueueError) {
        tracing::warn!(error = %error, "the training queue is unreachable; retrying");
        lock(&self.health).error = Some(error.to_string());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the following thread remembers between rounds.
#[derive(Default)]
struct Round {
    /// Jobs enqueued by this process (a restart enqueues again; the queue drops repeats).
    enqueued: HashSet<String>,
    /// When the workers were last counted.
    counted_at: Option<Instant>,
    /// Released tasks asked to stop, followed until they end (one may succeed first).
    stopping: HashSet<String>,
}

/// The thread's loop: connect, then follow the tasks round after round.
async fn follow(jobs: Weak<Jobs>, url: String, config: QueueConfig, wake: Arc<Notify>) {
    let mut queue: Option<Queue> = None;
    let mut round = Round::default();
    loop {
        if queue.is_none() {
            match Queue::connect(&url, config.clone()).await {
                Ok(connected) => queue = Some(connected),
                Err(e) => match jobs.upgrade() {
                    Some(jobs) => jobs.queued().failed(&e),
                    None => return,
                },
            }
        }
        let Some(jobs) = jobs.upgrade() else { return };
        if let Some(queue) = &queue {
            if let Err(e) = step(&jobs, queue, &mut round).await {
                jobs.queued().failed(&e);
            }
        }
        drop(jobs);
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One round: releases, new jobs, task states, and (every second) the live workers.
async fn step(jobs: &Jobs, queue: &Queue, round: &mut Round) -> Result<(), QueueError> {
    let executor = jobs.queued();
    release(queue, executor, round).await?;

    let unfinished = jobs.unfinished();
    let fresh: Vec<&Job> = unfinished.iter().filter(|job| !round.enqueued.contains(&job.id)).collect();
    let mut specs = Vec::new();
    for job in &fresh {
        match task_spec(jobs, job, &executor.queue) {
            Ok(spec) => specs.push(spec),
            Err(reason) => jobs.finish(&job.id, Err(TrainError::Failed(reason))),
        }
    }
    for (id, new) in queue.enqueue_many(&specs).await? {
        if new {
            tracing::info!(job = id, queue = executor.queue, "training job enqueued");
        }
        round.enqueued.insert(id);
    }

    let ids: Vec<String> = unfinished.iter().map(|job| job.id.clone()).collect();
    let statuses = queue.statuses(&ids).await?;
    for (job, status) in unfinished.iter().zip(statuses) {
        match status {
            Some(status) => track(jobs, queue, job, status).await,
            // Never enqueued, or gone with a Redis that lost its data: enqueue it (again).
            None => {
                round.enqueued.remove(&job.id);
                executor.wake();
            }
        }
    }

    let workers = if round.counted_at.is_none_or(|at| at.elapsed() >= WORKERS_EVERY) {
        round.counted_at = Some(Instant::now());
        Some(training_workers(queue, &executor.queue).await?)
    } else {
        None
    };
    executor.answered(workers);
    Ok(())
}

/// Cancels the released tasks that still run and deletes the result blobs of those that
/// succeeded, now or (for one asked to stop) when it ends.
async fn release(queue: &Queue, executor: &Queued, round: &mut Round) -> Result<(), QueueError> {
    let releases: Vec<String> = lock(&executor.releases).iter().cloned().collect();
    for id in releases {
        match queue.cancel(&id).await {
            Ok(CancelOutcome::Requested) => {
                round.stopping.insert(id.clone());
            }
            Ok(CancelOutcome::AlreadyFinished(TaskState::Succeeded)) => {
                discard(queue, &id, queue.status(&id).await?.result).await?;
            }
            Ok(_) | Err(QueueError::NoSuchTask(_)) => {}
            Err(e) => return Err(e),
        }
        lock(&executor.releases).remove(&id);
    }
    let stopping: Vec<String> = round.stopping.iter().cloned().collect();
    for (id, status) in stopping.iter().zip(queue.statuses(&stopping).await?) {
        match status {
            Some(status) if !status.state.is_terminal() => continue,
            Some(status) if status.state == TaskState::Succeeded => discard(queue, id, status.result).await?,
            _ => {}
        }
        round.stopping.remove(id);
    }
    Ok(())
}

/// Deletes the blobs named by the result of task `id`, if it holds a [`TrainOutput`].
async fn discard(queue: &Queue, id: &str, result: Option<serde_json::Value>) -> Result<(), QueueError> {
    let Some(Ok(output)) = result.map(serde_json::from_value::<TrainOutput>) else { return Ok(()) };
    output.discard(queue).await?;
    tracing::debug!(job = id, "the task's result blobs are deleted");
    Ok(())
}

/// The task of a job: its images by path, its id the job's.
fn task_spec(jobs: &Jobs, job: &Job, queue: &str) -> Result<TaskSpec, String> {
    let dataset_id = &job.request.dataset_id;
    let dataset = jobs
        .store
        .dataset(dataset_id)
        .map_err(|e| format!("reading the dataset: {e}"))?
        .ok_or_else(|| format!("dataset `{dataset_id}` was deleted"))?;
    let task = TrainTask {
        request: job.request.clone(),
        images: jobs.store.dataset_images(&dataset),
        limits: jobs.limits,
        result_ttl_s: RESULT_TTL_S,
    };
    let payload = serde_json::to_value(task).map_err(|e| e.to_string())?;
    let mut spec = TaskSpec::new(queue, KIND, payload);
    spec.id = Some(job.id.clone());
    spec.max_retries = MAX_RETRIES;
    spec.result_ttl_s = RESULT_TTL_S;
    Ok(spec)
}

/// Brings a job's record in step with its task.
async fn track(jobs: &Jobs, queue: &Queue, job: &Job, status: TaskStatus) {
    let id = job.id.as_str();
    let attempts = status.deliveries;
    match status.state {
        TaskState::Pending | TaskState::Running => {
            let state = if status.state == TaskState::Running { JobState::Running } else { JobState::Queued };
            let progress = status.progress.and_then(unpack_progress);
            jobs.update(id, |job| {
                let changed = job.state != state || job.attempts != attempts;
                if job.attempts != attempts && state == JobState::Running {
                    // A new delivery: the first, or another worker took over a lost one.
                    job.started_at_ms = Some(now_ms());
                    job.progress = JobProgress::default();
                }
                job.state = state;
                job.attempts = attempts;
                if let Some((stage, done, total)) = progress {
                    let new_stage = job.progress.stage != stage.name();
                    job.progress = JobProgress { stage: stage.name().to_owned(), done, total };
                    return changed || new_stage;
                }
                changed
            });
        }
        TaskState::Succeeded => {
            jobs.update(id, |job| {
                job.attempts = attempts;
                true
            });
            let output = status.result.map(serde_json::from_value::<TrainOutput>);
            let outcome = match &output {
                Some(Ok(output)) => output.clone().fetch(queue).await.map_err(|e| TrainError::Failed(e.to_string())),
                Some(Err(e)) => Err(TrainError::Failed(format!("the worker's result is unreadable: {e}"))),
                None => Err(TrainError::Failed("the worker's result is missing".to_owned())),
            };
            jobs.finish(id, outcome);
            // The model is stored now (or never will be): Redis need not keep it.
            if let Some(Ok(output)) = output {
                if let Err(e) = output.discard(queue).await {
                    tracing::warn!(job = id, error = %e, "deleting the result blobs failed; they expire with the task");
                }
            }
        }
        TaskState::Failed => {
            let reason = status.error.unwrap_or_else(|| "the training task failed".to_owned());
            jobs.finish(id, Err(TrainError::Failed(reason)));
        }
        TaskState::Dead => {
            let reason = status.error.unwrap_or_default();
            jobs.finish(id, Err(TrainError::Failed(format!("the training task was dead-lettered: {reason}"))));
        }
        TaskState::Cancelled => jobs.finish(id, Err(TrainError::Cancelled)),
    }
}

/// Live workers that run `train` tasks from `queue` and are not stopping.
async fn training_workers(queue: &Queue, name: &str) -> Result<usize, QueueError> {
    let workers = queue.workers().await?;
    Ok(workers
        .iter()
        .filter(|w| w.queues().any(|q| q == name))
        .filter(|w| w.fields.get("kinds").is_some_and(|kinds| kinds.split(',').any(|k| k == KIND)))
        .filter(|w| w.fields.get("state").is_none_or(|state| state == "running"))
        .count())
}

impl Jobs {
    /// The queue executor (only called by its own thread).
    fn queued(&self) -> &Queued {
        match &self.executor {
            super::Executor::Queued(queued) => queued,
            super::Executor::Embedded(_) => unreachable!("the queue thread runs only with the queue executor"),
        }
    }
}
