//! Training jobs: their records, persisted so that they survive a restart, and the executor
//! that runs them. The training itself is the core's [`ferrocluster_core::training::train`],
//! run by one of two executors:
//!
//! - [`embedded`] (no `redis_url`): `training_workers` threads in this process;
//! - [`queued`] (with `redis_url`): each job is a `train` task on the Redis work queue, run by
//!   `ferrocluster-worker` processes; a thread here follows the tasks and stores the models.
//!
//! Both end a job through [`Jobs::finish`], which stores the model whole before the record
//! says it succeeded.

mod embedded;
mod queued;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ferrocluster_core::image::DecodeLimits;
use ferrocluster_core::model::{Model, SavedModel};
pub use ferrocluster_core::training::{Algorithm, ModelMetrics, TrainRequest};
use ferrocluster_core::training::{Stage, TrainError, Trained};
use ferrocluster_core::CancelToken;

pub use self::queued::QueueHealth;
use crate::config::Settings;
use crate::memory::WorkingMemory;
use crate::store::jobs::{Job, JobProgress, JobState};
use crate::store::models::{ModelFiles, ModelMeta};
use crate::store::{new_id, now_ms, JobId, ModelId, Store};

/// Least time between two writes of a running job's progress, in milliseconds.
const PROGRESS_SAVE_MS: u128 = 500;

/// Why `DELETE /v1/jobs/{id}` could not cancel.
#[derive(Debug)]
pub enum CancelError {
    /// No such job.
    NotFound,
    /// The job had already finished in this state.
    Finished(JobState),
}

struct Entry {
    job: Job,
    cancel: CancelToken,
    saved_at: Instant,
}

/// Who runs the jobs.
enum Executor {
    Embedded(embedded::Embedded),
    Queued(Box<queued::Queued>),
}

/// The job table, its persistence and its executor.
pub struct Jobs {
    store: Store,
    limits: DecodeLimits,
    /// The service's working memory, which a job run here reserves before it starts.
    memory: Arc<WorkingMemory>,
    table: Mutex<HashMap<String, Entry>>,
    executor: Executor,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Jobs {
    /// Loads the job records, starts the executor `settings` name (the queue with a
    /// `redis_url`, else `training_workers` threads) and hands it every job a restart left
    /// unfinished.
    pub fn start(store: Store, settings: &Settings, memory: Arc<WorkingMemory>) -> std::io::Result<Arc<Jobs>> {
        let table = store
            .jobs()?
            .into_iter()
            .map(|job| (job.id.clone(), Entry { job, cancel: CancelToken::new(), saved_at: Instant::now() }))
            .collect();
        let executor = match &settings.redis_url {
            None => Executor::Embedded(embedded::Embedded::new()),
            Some(url) => Executor::Queued(Box::new(queued::Queued::new(url, settings))),
        };
        let jobs = Arc::new(Jobs { store, limits: settings.decode_limits, memory, table: Mutex::new(table), executor });
        match &jobs.executor {
            Executor::Embedded(embedded) => embedded.start(&jobs, settings.training_workers)?,
            Executor::Queued(queued) => queued.start(&jobs)?,
        }
        jobs.resume()?;
        Ok(jobs)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands every unfinished job to the executor again (after a restart).
    fn resume(&self) -> std::io::Result<()> {
        let mut table = self.lock();
        for entry in table.values_mut() {
            let job = &mut entry.job;
            if job.state == JobState::Cancelled {
                // Its task may still run on a worker if the cancel was not passed on, or have
                // left result blobs.
                self.executor.release(&job.id);
                continue;
            }
            if job.state.is_final() {
                continue;
            }
            if self.store.has_model(&job.model_id) {
                // The model was stored but the process died before the record said so.
                job.state = JobState::Succeeded;
                job.finished_at_ms.get_or_insert_with(now_ms);
            } else {
                tracing::info!(job = %job.id, attempts = job.attempts, "resuming a job a restart interrupted");
                self.executor.resume(job);
            }
            self.store.save_job(job)?;
        }
        Ok(())
    }

    /// Records a training job and hands it to the executor (the request is already validated).
    pub fn submit(&self, request: TrainRequest) -> std::io::Result<Job> {
        let job = Job {
            id: new_id(JobId::PREFIX),
            state: JobState::Queued,
            model_id: new_id(ModelId::PREFIX),
            request,
            progress: JobProgress::default(),
            created_at_ms: now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            timings_ms: BTreeMap::new(),
            error: None,
            attempts: 0,
        };
        self.store.save_job(&job)?;
        self.lock()
            .insert(job.id.clone(), Entry { job: job.clone(), cancel: CancelToken::new(), saved_at: Instant::now() });
        self.executor.submit(&job.id);
        Ok(job)
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().get(id).map(|e| e.job.clone())
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<Job> {
        let mut all: Vec<Job> = self.lock().values().map(|e| e.job.clone()).collect();
        all.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        all
    }

    fn unfinished(&self) -> Vec<Job> {
        self.lock().values().filter(|e| !e.job.state.is_final()).map(|e| e.job.clone()).collect()
    }

    /// Whether an unfinished job trains on `dataset_id`.
    pub fn uses_dataset(&self, dataset_id: &str) -> bool {
        self.lock().values().any(|e| !e.job.state.is_final() && e.job.request.dataset_id == dataset_id)
    }

    /// Job counts by state, for metrics.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for entry in self.lock().values() {
            *counts.entry(entry.job.state.name()).or_default() += 1;
        }
        counts
    }

    /// The queue executor's view of Redis and its workers; `None` with the embedded executor.
    pub fn queue_health(&self) -> Option<QueueHealth> {
        match &self.executor {
            Executor::Embedded(_) => None,
            Executor::Queued(queued) => Some(queued.health()),
        }
    }

    /// Cancels a queued or running job: it is marked cancelled now and its result, if any,
    /// is dropped; a running training stops at its next chunk of images or fit iteration.
    pub fn cancel(&self, id: &str) -> Result<Job, CancelError> {
        let mut table = self.lock();
        let entry = table.get_mut(id).ok_or(CancelError::NotFound)?;
        if entry.job.state.is_final() {
            return Err(CancelError::Finished(entry.job.state));
        }
        entry.cancel.cancel();
        entry.job.state = JobState::Cancelled;
        entry.job.finished_at_ms = Some(now_ms());
        if let Err(e) = self.store.save_job(&entry.job) {
            tracing::error!(job = id, "could not record the cancellation: {e}");
        }
        self.executor.release(id);
        Ok(entry.job.clone())
    }

    /// Deletes model `id`, and whatever its job's task left in Redis. Returns whether it existed.
    pub fn delete_model(&self, id: &str) -> std::io::Result<bool> {
        let job_id = self.store.model_meta(id)?.map(|meta| meta.job_id);
        let deleted = self.store.delete_model(id)?;
        if let Some(job_id) = job_id {
            self.executor.release(&job_id);
        }
        Ok(deleted)
    }

    /// Changes an unfinished job's record under the lock and writes it when `change` says
    /// so, or else at most every [`PROGRESS_SAVE_MS`].
    fn update(&self, id: &str, change: impl FnOnce(&mut Job) -> bool) {
        let mut table = self.lock();
        let Some(entry) = table.get_mut(id).filter(|e| !e.job.state.is_final()) else { return };
        let now = change(&mut entry.job);
        if now || entry.saved_at.elapsed().as_millis() >= PROGRESS_SAVE_MS {
            entry.saved_at = Instant::now();
            if let Err(e) = self.store.save_job(&entry.job) {
                tracing::error!(job = id, "could not record job progress: {e}");
            }
        }
    }

    /// Records the progress of a running job; a new stage is written at once.
    fn report(&self, id: &str, stage: Stage, done: usize, total: usize) {
        self.update(id, |job| {
            let new_stage = job.progress.stage != stage.name();
            job.progress = JobProgress { stage: stage.name().to_owned(), done, total };
            new_stage
        });
    }

    /// Ends a job with the outcome of its training: the model is stored whole, then the
    /// record says succeeded. Nothing changes for a job already finished (cancelled meanwhile).
    fn finish(&self, id: &str, outcome: Result<Trained, TrainError>) {
        let mut table = self.lock();
        let Some(entry) = table.get_mut(id) else { return };
        let job = &mut entry.job;
        if job.state.is_final() {
            return;
        }
        let stored = outcome.and_then(|trained| {
            job.timings_ms.clone_from(&trained.timings_ms);
            let started = Instant::now();
            let files = self.model_files(job, trained)?;
            self.store.save_model(&files).map_err(|e| TrainError::Failed(format!("storing the model: {e}")))?;
            job.timings_ms.insert("store".to_owned(), started.elapsed().as_millis() as u64);
            Ok(())
        });
        match stored {
            Ok(()) => job.state = JobState::Succeeded,
            Err(TrainError::Cancelled) => job.state = JobState::Cancelled,
            Err(TrainError::Failed(reason)) => {
                tracing::warn!(job = id, "training failed: {reason}");
                job.state = JobState::Failed;
                job.error = Some(reason);
            }
        }
        job.finished_at_ms = Some(now_ms());
        if let Err(e) = self.store.save_job(job) {
            tracing::error!(job = id, "could not record the end of the job: {e}");
        }
    }

    /// What is stored for the model a job trained.
    fn model_files(&self, job: &Job, trained: Trained) -> Result<ModelFiles, TrainError> {
        let request = &job.request;
        let dataset = self
            .store
            .dataset(&request.dataset_id)
            .map_err(|e| TrainError::Failed(format!("reading the dataset: {e}")))?
            .ok_or_else(|| TrainError::Failed(format!("dataset `{}` was deleted", request.dataset_id)))?;
        let meta = ModelMeta {
            id: job.model_id.clone(),
            job_id: job.id.clone(),
            dataset_id: request.dataset_id.clone(),
            algorithm: request.algorithm,
            k: request.k,
            seed: request.seed,
            features: request.features.clone(),
            created_at_ms: now_ms(),
            n_samples: trained.features.nrows(),
            n_features: trained.features.ncols(),
            cluster_sizes: trained.cluster_sizes,
            metrics: trained.metrics,
        };
        let names = dataset.images.into_iter().map(|image| image.name).collect();
        let saved = SavedModel::new(Model::KMeans(trained.model), Some(request.features.clone()));
        Ok(ModelFiles { meta, saved, train: trained.features, names })
    }
}

impl Executor {
    /// A new job is recorded.
    fn submit(&self, id: &str) {
        match self {
            Executor::Embedded(embedded) => embedded.submit(id),
            Executor::Queued(queued) => queued.wake(),
        }
    }

    /// An unfinished job found at start-up.
    fn resume(&self, job: &mut Job) {
        match self {
            Executor::Embedded(embedded) => {
                job.state = JobState::Queued;
                embedded.submit(&job.id);
            }
            // Its task may still be running, or be finished: the queue says which.
            Executor::Queued(_) => {}
        }
    }

    /// A job was cancelled (its record already says so), or its model deleted.
    fn release(&self, id: &str) {
        match self {
            // The training thread checks the job's token; nothing is kept elsewhere.
            Executor::Embedded(_) => {}
            Executor::Queued(queued) => queued.release(id),
        }
    }
}
