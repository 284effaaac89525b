//! Training jobs on the embedded executor: a few threads off the async runtime take job ids
//! from a queue, extract features, fit, score and store the model, recording progress in the
//! job record as they go. Records persist, so jobs left unfinished by a restart run again.
//!
//! This is the seam for the Redis executor: [`Jobs::submit`] and [`Jobs::resume`] hand a
//! job id to the queue; a Redis-backed runner would enqueue the id on the work queue instead
//! and its workers would run [`Jobs::run`]'s steps (see `docs/rest-api.md`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use ferrocluster_core::cluster::kmeans::{KMeans, KMeansModel};
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Progress};
use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::image::DecodeLimits;
use ferrocluster_core::metrics::{calinski_harabasz_score, davies_bouldin_score, silhouette_score};
use ferrocluster_core::model::{Model, SavedModel};
use ferrocluster_core::pipeline::extract_files;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::jobs::{Job, JobProgress, JobState};
use crate::store::models::{ModelFiles, ModelMeta, ModelMetrics};
use crate::store::{new_id, now_ms, Store};

/// Rows scored by the silhouette (it costs O(n²)).
const SILHOUETTE_SAMPLE: usize = 2000;
/// Least time between two writes of a running job's progress, in milliseconds.
const PROGRESS_SAVE_MS: u128 = 500;

/// The clustering algorithm of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// k-means (Lloyd), equal to scikit-learn's `KMeans`.
    #[default]
    Kmeans,
    /// Mini-batch k-means, like scikit-learn's `MiniBatchKMeans`.
    MinibatchKmeans,
}

/// The body of `POST /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// The dataset to train on.
    pub dataset_id: String,
    /// The algorithm (default `kmeans`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Number of clusters (1 ..= the dataset's image count).
    pub k: usize,
    /// Features to extract (`ferrocluster_core::features::FeatureConfig`; default: RGB HOG of 64×64 images).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub features: FeatureConfig,
    /// Random seed (default 0); the same seed gives the same model.
    #[serde(default)]
    pub seed: u64,
    /// Most iterations (default: the algorithm's, 300 for k-means, 100 for mini-batch).
    pub max_iter: Option<usize>,
}

/// The configured clusterer of a request.
enum Fit {
    KMeans(KMeans),
    MiniBatch(MiniBatchKMeans),
}

impl TrainRequest {
    fn clusterer(&self) -> Fit {
        match self.algorithm {
            Algorithm::Kmeans => {
                let mut km = KMeans { n_clusters: self.k, random_state: self.seed, ..KMeans::default() };
                km.max_iter = self.max_iter.unwrap_or(km.max_iter);
                Fit::KMeans(km)
            }
            Algorithm::MinibatchKmeans => {
                let mut mb =
                    MiniBatchKMeans { n_clusters: self.k, random_state: self.seed, ..MiniBatchKMeans::default() };
                mb.max_iter = self.max_iter.unwrap_or(mb.max_iter);
                Fit::MiniBatch(mb)
            }
        }
    }

    /// Checks the request against a dataset of `n_images` images before a job is made.
    pub fn validate(&self, n_images: usize) -> ferrocluster_core::Result<()> {
        self.features.validate()?;
        match self.clusterer() {
            Fit::KMeans(km) => km.validate()?,
            Fit::MiniBatch(mb) => mb.validate()?,
        }
        if self.k > n_images {
            return Err(ferrocluster_core::Error::parameter(
                "k",
                format!("{} clusters asked of a dataset of {n_images} images", self.k),
            ));
        }
        Ok(())
    }

    fn fit(
        &self,
        x: &Array2<f32>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> ferrocluster_core::Result<KMeansModel<f32>> {
        match self.clusterer() {
            Fit::KMeans(km) => km.fit_observed(x.view(), None, progress),
            Fit::MiniBatch(mb) => mb.fit_observed(x.view(), None, progress),
        }
    }
}

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
    cancel: Arc<AtomicBool>,
    saved_at: Instant,
}

/// The job table, its persistence and the training threads.
pub struct Jobs {
    store: Store,
    limits: DecodeLimits,
    table: Mutex<HashMap<String, Entry>>,
    queue: Sender<String>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("store", &self.store).finish_non_exhaustive()
    }
}

/// A stage failed, or the job was cancelled between stages.
enum Stop {
    Cancelled,
    Failed(String),
}

impl From<ferrocluster_core::Error> for Stop {
    fn from(e: ferrocluster_core::Error) -> Self {
        Stop::Failed(e.to_string())
    }
}

impl Jobs {
    /// Loads the job records, starts `workers` training threads and queues every job a
    /// restart left unfinished.
    pub fn start(store: Store, limits: DecodeLimits, workers: usize) -> std::io::Result<Arc<Jobs>> {
        let (queue, receiver) = channel();
        let records = store.jobs()?;
        let table = records
            .into_iter()
            .map(|job| (job.id.clone(), Entry { job, cancel: Arc::default(), saved_at: Instant::now() }))
            .collect();
        let jobs = Arc::new(Jobs { store, limits, table: Mutex::new(table), queue });
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let (weak, receiver) = (Arc::downgrade(&jobs), receiver.clone());
            std::thread::Builder::new().name(format!("train-{i}")).spawn(move || work(&weak, &receiver))?;
        }
        jobs.resume()?;
        Ok(jobs)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues again every job that is not finished (after a restart).
    fn resume(&self) -> std::io::Result<()> {
        let mut table = self.lock();
        for entry in table.values_mut().filter(|e| !e.job.state.is_final()) {
            let job = &mut entry.job;
            if self.store.has_model(&job.model_id) {
                // The model was stored but the process died before the record said so.
                job.state = JobState::Succeeded;
                job.finished_at_ms.get_or_insert_with(now_ms);
            } else {
                tracing::info!(job = %job.id, attempts = job.attempts, "resuming a job a restart interrupted");
                job.state = JobState::Queued;
                let _ = self.queue.send(job.id.clone());
            }
            self.store.save_job(job)?;
        }
        Ok(())
    }

    /// Records and queues a training job (the request is already validated).
    pub fn submit(&self, request: TrainRequest) -> std::io::Result<Job> {
        let job = Job {
            id: new_id("job_"),
            state: JobState::Queued,
            model_id: new_id("m_"),
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
            .insert(job.id.clone(), Entry { job: job.clone(), cancel: Arc::default(), saved_at: Instant::now() });
        let _ = self.queue.send(job.id.clone());
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

    /// Cancels a queued or running job: it is marked cancelled now and its result, if any,
    /// is dropped (a running fit stops at its next stage boundary).
    pub fn cancel(&self, id: &str) -> Result<Job, CancelError> {
        let mut table = self.lock();
        let entry = table.get_mut(id).ok_or(CancelError::NotFound)?;
        if entry.job.state.is_final() {
            return Err(CancelError::Finished(entry.job.state));
        }
        entry.cancel.store(true, Ordering::SeqCst);
        entry.job.state = JobState::Cancelled;
        entry.job.finished_at_ms = Some(now_ms());
        if let Err(e) = self.store.save_job(&entry.job) {
            tracing::error!(job = id, "could not record the cancellation: {e}");
        }
        Ok(entry.job.clone())
    }

    /// Changes a job's record under the lock and writes it (always, or at most every
    /// [`PROGRESS_SAVE_MS`] when `throttled`).
    fn update(&self, id: &str, throttled: bool, change: impl FnOnce(&mut Job)) {
        let mut table = self.lock();
        let Some(entry) = table.get_mut(id) else { return };
        change(&mut entry.job);
        if !throttled || entry.saved_at.elapsed().as_millis() >= PROGRESS_SAVE_MS {
            entry.saved_at = Instant::now();
            if let Err(e) = self.store.save_job(&entry.job) {
                tracing::error!(job = id, "could not record job progress: {e}");
            }
        }
    }

    /// Runs job `id` to its end, unless it is already finished.
    fn run(&self, id: &str) {
        let (request, model_id, cancel) = {
            let mut table = self.lock();
            let Some(entry) = table.get_mut(id) else { return };
            if entry.job.state.is_final() {
                return;
            }
            let job = &mut entry.job;
            job.state = JobState::Running;
            job.attempts += 1;
            job.started_at_ms = Some(now_ms());
            job.timings_ms.clear();
            job.progress = JobProgress::default();
            let _ = self.store.save_job(job);
            (job.request.clone(), job.model_id.clone(), entry.cancel.clone())
        };
        let outcome = self.train(id, &request, &model_id, &cancel);
        let mut table = self.lock();
        let Some(entry) = table.get_mut(id) else { return };
        let job = &mut entry.job;
        if job.state == JobState::Cancelled {
            return;
        }
        let stored = outcome.and_then(|files| {
            let started = Instant::now();
            self.store.save_model(&files).map_err(|e| Stop::Failed(format!("storing the model: {e}")))?;
            job.timings_ms.insert("store".to_owned(), started.elapsed().as_millis() as u64);
            Ok(())
        });
        match stored {
            Ok(()) => job.state = JobState::Succeeded,
            Err(Stop::Cancelled) => job.state = JobState::Cancelled,
            Err(Stop::Failed(reason)) => {
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

    /// Runs `work` as stage `name`, timing it and refusing to start if the job was cancelled.
    fn stage<T>(
        &self,
        id: &str,
        name: &str,
        cancel: &AtomicBool,
        work: impl FnOnce() -> Result<T, Stop>,
    ) -> Result<T, Stop> {
        if cancel.load(Ordering::SeqCst) {
            return Err(Stop::Cancelled);
        }
        self.update(id, false, |job| job.progress = JobProgress { stage: name.to_owned(), done: 0, total: 0 });
        let started = Instant::now();
        let value = work()?;
        let ms = started.elapsed().as_millis() as u64;
        self.update(id, false, |job| {
            job.timings_ms.insert(name.to_owned(), ms);
        });
        Ok(value)
    }

    fn report(&self, id: &str, done: usize, total: usize) {
        self.update(id, true, |job| {
            job.progress.done = done;
            job.progress.total = total;
        });
    }

    fn train(&self, id: &str, request: &TrainRequest, model_id: &str, cancel: &AtomicBool) -> Result<ModelFiles, Stop> {
        let dataset = self
            .store
            .dataset(&request.dataset_id)
            .map_err(|e| Stop::Failed(format!("reading the dataset: {e}")))?
            .ok_or_else(|| Stop::Failed(format!("dataset `{}` was deleted", request.dataset_id)))?;
        let paths = self.store.dataset_files(&dataset);
        let n = paths.len();
        let x = self.stage(id, "features", cancel, || {
            let extracted = extract_files(&paths, &request.features, &self.limits, &|done| self.report(id, done, n))?;
            match extracted.failures.first() {
                Some((i, e)) => Err(Stop::Failed(format!("image {i} of the dataset: {e}"))),
                None => Ok(extracted.features),
            }
        })?;
        let model = self.stage(id, "fit", cancel, || Ok(request.fit(&x, &|p| self.report(id, p.done, p.total))?))?;
        let metrics = self.stage(id, "metrics", cancel, || Ok(score(&x, &model, request.seed)))?;
        if cancel.load(Ordering::SeqCst) {
            return Err(Stop::Cancelled);
        }
        let mut cluster_sizes = vec![0; request.k];
        for &label in &model.labels {
            cluster_sizes[label as usize] += 1;
        }
        let meta = ModelMeta {
            id: model_id.to_owned(),
            job_id: id.to_owned(),
            dataset_id: request.dataset_id.clone(),
            algorithm: request.algorithm,
            k: request.k,
            seed: request.seed,
            features: request.features.clone(),
            created_at_ms: now_ms(),
            n_samples: x.nrows(),
            n_features: x.ncols(),
            cluster_sizes,
            metrics,
        };
        let names = dataset.images.into_iter().map(|image| image.name).collect();
        let saved = SavedModel::new(Model::KMeans(model), Some(request.features.clone()));
        Ok(ModelFiles { meta, saved, train: x, names })
    }
}

/// Internal indices of the fit; those undefined for the data (one cluster) are left out.
fn score(x: &Array2<f32>, model: &KMeansModel<f32>, seed: u64) -> ModelMetrics {
    let sample = (x.nrows() > SILHOUETTE_SAMPLE).then_some(SILHOUETTE_SAMPLE);
    ModelMetrics {
        inertia: model.inertia,
        n_iter: model.n_iter,
        silhouette: silhouette_score(x.view(), &model.labels, sample, seed).ok(),
        calinski_harabasz: calinski_harabasz_score(x.view(), &model.labels).ok(),
        davies_bouldin: davies_bouldin_score(x.view(), &model.labels).ok(),
    }
}

/// A training thread: runs queued jobs until the service is dropped.
fn work(jobs: &Weak<Jobs>, receiver: &Mutex<Receiver<String>>) {
    loop {
        let next = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let (Ok(id), Some(jobs)) = (next, jobs.upgrade()) else { return };
        jobs.run(&id);
    }
}
