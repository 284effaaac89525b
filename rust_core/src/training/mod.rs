//! Training a model on image files: extract features, fit, score. One implementation serves
//! both executors of the REST service: its in-process threads call [`train`], and
//! `ferrocluster-worker` runs the same function as the [`task::KIND`] task.
//!
//! A cancelled training stops soon, not at the end of a stage: the observer's
//! [`CancelToken`] is checked between chunks of [`EXTRACT_CHUNK`] images, by the fit after
//! every iteration (or mini-batch) and between k-means++ centres, and before every stage.

pub mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ndarray::{s, Array2};
use serde::{Deserialize, Serialize};

use crate::cluster::kmeans::{KMeans, KMeansModel};
use crate::cluster::minibatch::MiniBatchKMeans;
use crate::cluster::{Clusterer, Progress};
use crate::features::FeatureConfig;
use crate::image::DecodeLimits;
use crate::metrics::{calinski_harabasz_score, davies_bouldin_score, silhouette_score};
use crate::pipeline::extract_files;
use crate::CancelToken;

/// Rows scored by the silhouette (it costs O(n²)).
const SILHOUETTE_SAMPLE: usize = 2000;
/// Images extracted between two checks for cancellation.
pub const EXTRACT_CHUNK: usize = 64;

/// The clustering algorithm of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// k-means (Lloyd), equal to scikit-learn's `KMeans`.
    #[default]
    Kmeans,
    /// Mini-batch k-means, like scikit-learn's `MiniBatchKMeans`.
    MinibatchKmeans,
}

/// The body of `POST /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// The dataset to train on.
    pub dataset_id: String,
    /// The algorithm (default `kmeans`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Number of clusters (1 ..= the dataset's image count).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub k: usize,
    /// Features to extract (default: RGB HOG of 64×64 images).
    #[serde(default)]
    pub features: FeatureConfig,
    /// Random seed (default 0); the same seed gives the same model.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = "uint64"))]
    pub seed: u64,
    /// Most iterations (default: the algorithm's, 300 for k-means, 100 for mini-batch).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
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

    /// Checks the request against a dataset of `n_images` images.
    ///
    /// # Errors
    /// [`crate::Error`] naming the bad parameter.
    pub fn validate(&self, n_images: usize) -> crate::Result<()> {
        self.features.validate()?;
        match self.clusterer() {
            Fit::KMeans(km) => km.validate()?,
            Fit::MiniBatch(mb) => mb.validate()?,
        }
        if self.k > n_images {
            return Err(crate::Error::parameter(
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
        cancel: &CancelToken,
    ) -> crate::Result<KMeansModel<f32>> {
        match self.clusterer() {
            Fit::KMeans(km) => km.fit_cancellable(x.view(), None, progress, cancel),
            Fit::MiniBatch(mb) => mb.fit_cancellable(x.view(), None, progress, cancel),
        }
    }
}

/// Quality of a fitted model on its training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelMetrics {
    /// Sum of squared distances of the training rows to their centre.
    pub inertia: f64,
    /// Iterations run.
    pub n_iter: usize,
    /// Mean silhouette (on a sample of at most 2,000 rows); absent with one cluster.
    pub silhouette: Option<f64>,
    /// Calinski–Harabasz index; absent with one cluster.
    pub calinski_harabasz: Option<f64>,
    /// Davies–Bouldin index; absent with one cluster.
    pub davies_bouldin: Option<f64>,
}

/// The stages of a training, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the images and extracting features (steps: images).
    Features,
    /// Fitting (steps: iterations, or mini-batches).
    Fit,
    /// Scoring the fit.
    Metrics,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 3] = [Stage::Features, Stage::Fit, Stage::Metrics];

    /// The stage's name, as in job records and timings.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Features => "features",
            Stage::Fit => "fit",
            Stage::Metrics => "metrics",
        }
    }
}

/// What a training reports to, and asks whether to go on.
pub trait Observer: Sync {
    /// `done` of `total` steps of `stage` are done; `(0, 0)` when the stage starts.
    fn progress(&self, stage: Stage, done: usize, total: usize);

    /// The token that stops the training once cancelled.
    fn cancel_token(&self) -> &CancelToken;
}

/// Why a training did not give a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainError {
    /// The observer asked it to stop.
    Cancelled,
    /// It failed, for this reason.
    Failed(String),
}

impl From<crate::Error> for TrainError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Cancelled => TrainError::Cancelled,
            e => TrainError::Failed(e.to_string()),
        }
    }
}

/// A trained model and what the service stores with it.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The fitted model.
    pub model: KMeansModel<f32>,
    /// The training features, one row per image.
    pub features: Array2<f32>,
    /// Quality metrics.
    pub metrics: ModelMetrics,
    /// Size of each cluster on the training data.
    pub cluster_sizes: Vec<usize>,
    /// Milliseconds spent in each stage.
    pub timings_ms: BTreeMap<String, u64>,
}

/// Trains `request` on the image files `paths` (every one must decode), reporting to and
/// stopping for `observer`.
///
/// # Errors
/// [`TrainError::Cancelled`] once `observer` says so; [`TrainError::Failed`] for an image that
/// cannot be read or a fit that fails.
pub fn train(
    paths: &[PathBuf],
    request: &TrainRequest,
    limits: &DecodeLimits,
    observer: &dyn Observer,
) -> Result<Trained, TrainError> {
    let mut timings_ms = BTreeMap::new();
    let features = stage(Stage::Features, observer, &mut timings_ms, || extract(paths, request, limits, observer))?;
    let model = stage(Stage::Fit, observer, &mut timings_ms, || fit(request, &features, observer))?;
    let metrics = stage(Stage::Metrics, observer, &mut timings_ms, || Ok(score(&features, &model, request.seed)))?;
    check(observer)?;
    let mut cluster_sizes = vec![0; request.k];
    for &label in &model.labels {
        cluster_sizes[label as usize] += 1;
    }
    Ok(Trained { model, features, metrics, cluster_sizes, timings_ms })
}

fn check(observer: &dyn Observer) -> Result<(), TrainError> {
    Ok(observer.cancel_token().check()?)
}

/// Runs `work` as `stage`: refuses to start when cancelled, announces it, times it.
fn stage<T>(
    stage: Stage,
    observer: &dyn Observer,
    timings_ms: &mut BTreeMap<String, u64>,
    work: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    check(observer)?;
    observer.progress(stage, 0, 0);
    let started = Instant::now();
    let value = work()?;
    timings_ms.insert(stage.name().to_owned(), started.elapsed().as_millis() as u64);
    Ok(value)
}

/// Features of every file, in chunks so that a cancel is seen within one chunk.
fn extract(
    paths: &[PathBuf],
    request: &TrainRequest,
    limits: &DecodeLimits,
    observer: &dyn Observer,
) -> Result<Array2<f32>, TrainError> {
    let n = paths.len();
    let mut features = Array2::<f32>::zeros((n, request.features.dim()));
    for (chunk, files) in paths.chunks(EXTRACT_CHUNK).enumerate() {
        check(observer)?;
        let first = chunk * EXTRACT_CHUNK;
        let extracted = extract_files(files, &request.features, limits, &|done| {
            observer.progress(Stage::Features, first + done, n)
        })?;
        if let Some((i, e)) = extracted.failures.first() {
            return Err(TrainError::Failed(format!("image {} of the dataset: {e}", first + i)));
        }
        features.slice_mut(s![first..first + files.len(), ..]).assign(&extracted.features);
    }
    Ok(features)
}

/// Fits, stopping after the iteration (or k-means++ centre) during which a cancel came.
fn fit(request: &TrainRequest, x: &Array2<f32>, observer: &dyn Observer) -> Result<KMeansModel<f32>, TrainError> {
    let report = |p: Progress| observer.progress(Stage::Fit, p.done, p.total);
    Ok(request.fit(x, &report, observer.cancel_token())?)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::data::{synthetic, write_labelled, SyntheticSpec};

    /// Records what it is told; cancels once `cancel_at` reports of `stage` have come.
    struct Recorder {
        seen: Mutex<Vec<(Stage, usize, usize)>>,
        cancel_at: Option<(Stage, usize)>,
        reports: AtomicUsize,
        cancel: CancelToken,
    }

    impl Recorder {
        fn new(cancel_at: Option<(Stage, usize)>) -> Self {
            Recorder { seen: Mutex::default(), cancel_at, reports: AtomicUsize::new(0), cancel: CancelToken::new() }
        }
    }

    impl Observer for Recorder {
        fn progress(&self, stage: Stage, done: usize, total: usize) {
            self.seen.lock().unwrap().push((stage, done, total));
            if let Some((at_stage, after)) = self.cancel_at {
                if at_stage == stage && self.reports.fetch_add(1, Ordering::SeqCst) + 1 >= after {
                    self.cancel.cancel();
                }
            }
        }

        fn cancel_token(&self) -> &CancelToken {
            &self.cancel
        }
    }

    fn files(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let set = synthetic(&SyntheticSpec { n, size: [32, 32], classes: 3, ..Default::default() }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_labelled(&set, dir.path(), "img", 1).unwrap();
        let paths = (0..n).map(|i| dir.path().join(format!("img-{i:05}.png"))).collect();
        (dir, paths)
    }

    fn request(k: usize) -> TrainRequest {
        let features = FeatureConfig { size: [32, 32], ..FeatureConfig::default() };
        TrainRequest { dataset_id: "ds".into(), algorithm: Algorithm::Kmeans, k, features, seed: 0, max_iter: None }
    }

    #[test]
    fn trains_as_the_core_fits_and_reports_every_stage() {
        let (_dir, paths) = files(150);
        let request = request(3);
        let observer = Recorder::new(None);
        let trained = train(&paths, &request, &DecodeLimits::default(), &observer).unwrap();
        let x = extract_files(&paths, &request.features, &DecodeLimits::default(), &|_| {}).unwrap().features;
        assert_eq!(trained.features, x, "chunked extraction equals one pass");
        let km = KMeans { n_clusters: 3, random_state: 0, ..KMeans::default() };
        assert_eq!(trained.model, km.fit(x.view(), None).unwrap());
        assert_eq!(trained.cluster_sizes.iter().sum::<usize>(), 150);
        let seen = observer.seen.lock().unwrap();
        for stage in Stage::ALL {
            assert!(seen.contains(&(stage, 0, 0)), "{stage:?} announced");
            assert!(trained.timings_ms.contains_key(stage.name()));
        }
        assert!(seen.contains(&(Stage::Features, 150, 150)));
    }

    #[test]
    fn a_cancel_stops_extraction_within_a_chunk_and_the_fit_within_an_iteration() {
        let (_dir, paths) = files(3 * EXTRACT_CHUNK);
        let observer = Recorder::new(Some((Stage::Features, 2)));
        let outcome = train(&paths, &request(3), &DecodeLimits::default(), &observer);
        assert_eq!(outcome.unwrap_err(), TrainError::Cancelled);
        let seen = observer.seen.lock().unwrap();
        let most = seen.iter().filter(|(s, _, _)| *s == Stage::Features).map(|p| p.1).max().unwrap();
        assert!(most <= EXTRACT_CHUNK, "extraction went on to image {most}");
        drop(seen);

        let mut request = request(3);
        request.algorithm = Algorithm::MinibatchKmeans;
        let observer = Recorder::new(Some((Stage::Fit, 3)));
        let outcome = train(&paths[..EXTRACT_CHUNK], &request, &DecodeLimits::default(), &observer);
        assert_eq!(outcome.unwrap_err(), TrainError::Cancelled);
        let seen = observer.seen.lock().unwrap();
        // Stage start, one step, the step during which the cancel came; then it stops.
        assert_eq!(seen.iter().filter(|(s, _, _)| *s == Stage::Fit).count(), 3);
        assert!(!seen.iter().any(|(s, _, _)| *s == Stage::Metrics));
        drop(seen);

        let observer = Recorder::new(Some((Stage::Fit, 2)));
        let outcome = train(
            &paths[..EXTRACT_CHUNK],
            &TrainRequest { k: 8, algorithm: Algorithm::Kmeans, ..request },
            &DecodeLimits::default(),
            &observer,
        );
        assert_eq!(outcome.unwrap_err(), TrainError::Cancelled);
        let seen = observer.seen.lock().unwrap();
        assert_eq!(
            seen.iter().filter(|(s, _, _)| *s == Stage::Fit).collect::<Vec<_>>(),
            [&(Stage::Fit, 0, 0), &(Stage::Fit, 1, 300)],
            "Lloyd stops after the iteration that saw the cancel"
        );
    }

    #[test]
    fn an_unreadable_image_fails_naming_it() {
        let (dir, mut paths) = files(10);
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        paths[7] = bad;
        let outcome = train(&paths, &request(2), &DecodeLimits::default(), &Recorder::new(None));
        match outcome.unwrap_err() {
            TrainError::Failed(reason) => assert!(reason.starts_with("image 7 of the dataset"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
