//! Inference like Ray Serve: models cached in memory and reloaded when a new version is
//! stored; requests gathered into batches (`max_batch_size`, `batch_wait_timeout`) that run
//! on blocking threads, a batch starting at once while fewer than `max_concurrent_batches`
//! run; a bound on requests in flight, past which callers get 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use ferrocluster_core::cluster::kmeans::KMeansModel;
use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::image::{decode, DecodeLimits, Image};
use ferrocluster_core::model::Model;
use ferrocluster_core::pipeline::extract_images;
use ferrocluster_core::report::{contact_sheet, ContactSheet};
use ndarray::{Array2, ArrayView1};
use rayon::prelude::*;
use rocket::tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use rocket::tokio::{self, time::Instant};
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::Settings;
use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::memory::{Need, WorkingMemory};
use crate::store::models::ModelMeta;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::upload::NamedImage;

/// A model ready to serve: centres, training features grouped by cluster, example names.
#[derive(Debug)]
pub struct Served {
    /// Its record.
    pub meta: ModelMeta,
    model: KMeansModel<f32>,
    features: FeatureConfig,
    train: Array2<f32>,
    names: Vec<String>,
    /// Training rows of each cluster.
    members: Vec<Vec<usize>>,
    version: (SystemTime, u64),
}

impl Served {
    /// The cluster centres.
    pub fn centres(&self) -> &Array2<f32> {
        &self.model.centres
    }
}

/// Models in memory, keyed by id, each checked against its stored version on use.
#[derive(Debug)]
pub struct ModelCache {
    store: Store,
    entries: Mutex<HashMap<String, Arc<Served>>>,
}

impl ModelCache {
    /// An empty cache over `store`.
    pub fn new(store: Store) -> Self {
        ModelCache { store, entries: Mutex::default() }
    }

    /// The model `id`, loaded (or reloaded, if a newer version was stored) as needed. Blocking.
    pub fn get(&self, id: &str) -> ApiResult<Arc<Served>> {
        let version = self.store.model_version(id).ok_or_else(|| ApiError::not_found("model", id))?;
        if let Some(served) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            if served.version == version {
                return Ok(served.clone());
            }
        }
        let files = self.store.load_model(id)?.ok_or_else(|| ApiError::not_found("model", id))?;
        let Model::KMeans(model) = files.saved.model;
        let features = files.saved.features.unwrap_or(files.meta.features.clone());
        let mut members = vec![Vec::new(); model.centres.nrows()];
        for (row, &label) in model.labels.iter().enumerate() {
            members[label as usize].push(row);
        }
        let served = Arc::new(Served {
            meta: files.meta,
            model,
            features,
            train: files.train,
            names: files.names,
            members,
            version,
        });
        tracing::info!(model = id, "model loaded into the cache");
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), served.clone());
        Ok(served)
    }

    /// Forgets model `id` (after it is deleted).
    pub fn evict(&self, id: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// How many models are in memory.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no model is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A training image near a prediction.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NearestExample {
    /// Its row in the training dataset.
    pub index: usize,
    /// Its name in the dataset.
    pub name: String,
    /// Euclidean distance in feature space.
    pub distance: f32,
}

/// The answer for one image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Prediction {
    /// The image's name.
    pub name: String,
    /// The nearest cluster.
    pub cluster: usize,
    /// Euclidean distance to each cluster centre.
    pub distances: Vec<f32>,
    /// The nearest training examples of that cluster, nearest first.
    pub nearest: Vec<NearestExample>,
}

/// One predict request waiting for its batch.
struct Pending {
    model: Arc<Served>,
    images: Vec<NamedImage>,
    reply: oneshot::Sender<ApiResult<Vec<Prediction>>>,
}

/// Runs predict requests: bounded in flight, batched when batching is on.
#[derive(Debug)]
pub struct Predictor {
    cache: Arc<ModelCache>,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    batching: bool,
    policy: BatchPolicy,
    limits: DecodeLimits,
    memory: Arc<WorkingMemory>,
    nearest: usize,
    /// The batcher's inbox, made on first use (it needs the async runtime).
    inbox: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl Predictor {
    /// A predictor with the settings' batching, bounds and limits.
    pub fn new(settings: &Settings, cache: Arc<ModelCache>, metrics: Arc<Metrics>, memory: Arc<WorkingMemory>) -> Self {
        Predictor {
            cache,
            metrics,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            max_in_flight: settings.max_in_flight,
            batching: settings.batching && settings.max_batch_size > 1,
            policy: BatchPolicy {
                max_images: settings.max_batch_size,
                wait: Duration::from_millis(settings.batch_wait_timeout_ms),
                max_running: settings.max_concurrent_batches,
            },
            limits: settings.decode_limits,
            memory,
            nearest: settings.nearest_examples,
            inbox: OnceLock::new(),
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }

    /// Labels `images` with model `model_id`.
    pub async fn predict(&self, model_id: &str, images: Vec<NamedImage>) -> ApiResult<Vec<Prediction>> {
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            self.metrics.observe_overload();
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    ProblemKind::Overloaded,
                    format!("{} predict requests are in flight already: retry later", self.max_in_flight),
                )
            });
        };
        let cache = self.cache.clone();
        let id = model_id.to_owned();
        let model = tokio::task::spawn_blocking(move || cache.get(&id)).await.map_err(join_error)??;
        // Held until the answer: the batch decodes and extracts this request's images.
        let _reservation = self.memory.reserve(Need::predict(images.len(), &model.features))?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending { model, images, reply };
        if self.batching {
            self.inbox().send(pending).map_err(|_| ApiError::internal("the batcher has stopped"))?;
        } else {
            let job = self.batch_job();
            tokio::task::spawn_blocking(move || job.run(vec![pending]));
        }
        answer.await.map_err(|_| ApiError::internal("a predict batch was dropped"))?
    }

    fn batch_job(&self) -> BatchJob {
        BatchJob { limits: self.limits, nearest: self.nearest, metrics: self.metrics.clone() }
    }

    fn inbox(&self) -> &mpsc::UnboundedSender<Pending> {
        self.inbox.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(batcher(receiver, self.policy, self.batch_job()));
            sender
        })
    }
}

fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("a blocking task failed: {e}"))
}

/// Batches running on blocking threads, and a wake-up each time one ends.
#[derive(Default)]
struct Running {
    batches: AtomicUsize,
    ended: Notify,
}

/// When a batch starts.
#[derive(Debug, Clone, Copy)]
struct BatchPolicy {
    /// Most images in a batch.
    max_images: usize,
    /// Longest wait for more requests after the first, while `max_running` batches run.
    wait: Duration,
    /// Batches computed at once.
    max_running: usize,
}

/// Gathers requests into batches: a batch takes every request already queued, then starts at
/// once if fewer than `max_running` batches run. Otherwise it waits for more until
/// `max_images` images, `wait` after its first request, or a running batch ends, whichever
/// comes first. A lone request thus costs no wait, every core computes a batch under load, and
/// past that batches fill while the running ones compute (Triton's dynamic batcher over
/// `max_running` model instances).
async fn batcher(mut inbox: mpsc::UnboundedReceiver<Pending>, policy: BatchPolicy, job: BatchJob) {
    let running = Arc::new(Running::default());
    while let Some(first) = inbox.recv().await {
        let deadline = Instant::now() + policy.wait;
        let mut images = first.images.len();
        let mut batch = vec![first];
        let mut add = |next: Pending, batch: &mut Vec<Pending>| {
            images += next.images.len();
            batch.push(next);
            images >= policy.max_images
        };
        loop {
            let mut full = false;
            while !full {
                let Ok(next) = inbox.try_recv() else { break };
                full = add(next, &mut batch);
            }
            if full || running.batches.load(Ordering::Acquire) < policy.max_running {
                break;
            }
            tokio::select! {
                next = inbox.recv() => {
                    let Some(next) = next else { break };
                    if add(next, &mut batch) {
                        break;
                    }
                }
                () = running.ended.notified() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let (job, running) = (job.clone(), running.clone());
        running.batches.fetch_add(1, Ordering::AcqRel);
        tokio::task::spawn_blocking(move || {
            job.run(batch);
            running.batches.fetch_sub(1, Ordering::AcqRel);
            // A permit is kept when the batcher is not waiting yet, so no end is missed.
            running.ended.notify_one();
        });
    }
}

/// What a batch needs besides its requests.
#[derive(Debug, Clone)]
struct BatchJob {
    limits: DecodeLimits,
    nearest: usize,
    metrics: Arc<Metrics>,
}

impl BatchJob {
    /// Decodes, extracts and labels every image of the batch in one parallel pass per model,
    /// then answers each request (a request with a bad image fails alone).
    fn run(&self, batch: Vec<Pending>) {
        self.metrics.observe_batch(batch.iter().map(|p| p.images.len()).sum());
        let mut groups: Vec<Vec<Pending>> = Vec::new();
        for pending in batch {
            match groups.iter_mut().find(|g| Arc::ptr_eq(&g[0].model, &pending.model)) {
                Some(group) => group.push(pending),
                None => groups.push(vec![pending]),
            }
        }
        for group in groups {
            let model = group[0].model.clone();
            let images: Vec<&NamedImage> = group.iter().flat_map(|p| &p.images).collect();
            let mut answers = self.label(&model, &images).into_iter();
            for pending in group {
                let mine: Vec<_> = answers.by_ref().take(pending.images.len()).collect();
                let _ = pending.reply.send(mine.into_iter().collect());
            }
        }
    }

    /// One answer per image, in order.
    fn label(&self, model: &Served, images: &[&NamedImage]) -> Vec<ApiResult<Prediction>> {
        let size = model.features.size;
        let decoded: Vec<ApiResult<Image<f32>>> =
            images.par_iter().map(|image| Ok(decode(&image.bytes, &image.name, Some(size), &self.limits)?)).collect();
        let good: Vec<usize> = (0..images.len()).filter(|&i| decoded[i].is_ok()).collect();
        let views: Vec<_> = good.iter().filter_map(|&i| decoded[i].as_ref().ok().map(Image::view)).collect();
        let labelled = extract_images(&views, &model.features, &|_| {})
            .map_err(ApiError::from)
            .and_then(|extracted| self.predictions(model, &extracted.features, images, &good));
        let mut answers: Vec<Option<ApiResult<Prediction>>> =
            decoded.iter().map(|d| d.as_ref().err().map(|e| Err(e.clone()))).collect();
        match labelled {
            Ok(predictions) => {
                for (i, prediction) in good.into_iter().zip(predictions) {
                    answers[i] = Some(Ok(prediction));
                }
            }
            Err(e) => {
                for i in good {
                    answers[i] = Some(Err(e.clone()));
                }
            }
        }
        answers.into_iter().map(|a| a.expect("every image has an answer")).collect()
    }

    fn predictions(
        &self,
        model: &Served,
        x: &Array2<f32>,
        images: &[&NamedImage],
        rows: &[usize],
    ) -> ApiResult<Vec<Prediction>> {
        let distances = model.model.transform(x.view())?;
        Ok(distances
            .outer_iter()
            .zip(x.outer_iter())
            .zip(rows)
            .map(|((dist, features), &i)| {
                let cluster = argmin(dist);
                Prediction {
                    name: images[i].name.clone(),
                    cluster,
                    distances: dist.to_vec(),
                    nearest: nearest_members(model, cluster, features, self.nearest),
                }
            })
            .collect())
    }
}

fn argmin(values: ArrayView1<'_, f32>) -> usize {
    values.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

fn distance(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

/// The `n` training rows of `cluster` nearest to `point`, nearest first.
fn nearest_members(model: &Served, cluster: usize, point: ArrayView1<'_, f32>, n: usize) -> Vec<NearestExample> {
    let mut near: Vec<NearestExample> = model.members[cluster]
        .iter()
        .map(|&row| NearestExample {
            index: row,
            name: model.names.get(row).cloned().unwrap_or_default(),
            distance: distance(model.train.row(row), point),
        })
        .collect();
    near.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.index.cmp(&b.index)));
    near.truncate(n);
    near
}

/// A PNG strip of the `n` members of cluster `c` nearest its centre. Blocking.
pub fn cluster_examples_png(
    store: &Store,
    model: &Served,
    c: usize,
    n: usize,
    thumb: u32,
    limits: &DecodeLimits,
) -> ApiResult<Vec<u8>> {
    let k = model.members.len();
    if c >= k {
        return Err(ApiError::new(ProblemKind::NotFound, format!("the model has clusters 0..{k}, not {c}")));
    }
    let dataset = store.dataset(&model.meta.dataset_id)?.ok_or_else(|| {
        ApiError::new(ProblemKind::NotFound, format!("the training dataset `{}` was deleted", model.meta.dataset_id))
    })?;
    let files = store.dataset_files(&dataset);
    let centre = model.model.centres.row(c);
    let rows: Vec<usize> = nearest_members(model, c, centre, n).into_iter().map(|e| e.index).collect();
    let images: Vec<Image<f32>> = rows
        .par_iter()
        .map(|&row| ferrocluster_core::image::load(&files[row], None, limits))
        .collect::<Result<_, _>>()?;
    let layout = ContactSheet { per_cluster: n.max(1), thumb, gap: 4 };
    let sheet = contact_sheet(&layout, &[images.iter().collect()], &[model.members[c].len()])?;
    let mut png = Vec::new();
    sheet
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ApiError::internal(format!("encoding the PNG: {e}")))?;
    Ok(png)
}
