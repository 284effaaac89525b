//! The task kinds `ferrocluster-worker` runs. Payloads are JSON; matrices go by reference.

use std::path::PathBuf;
use std::time::Duration;

use ferrocluster_core::cluster::kmeans::KMeansModel;
use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::image::{load_batch, DecodeLimits};
use ferrocluster_core::pipeline::extract_files;
use ferrocluster_core::queue::{DataRef, FileRange, MatrixRef, Queue, Registry, TaskContext, TaskError};
use ferrocluster_core::training::task::{pack_progress, TrainOutput, TrainTask};
use ferrocluster_core::training::{self, Observer, Stage, TrainError};
use ferrocluster_core::CancelToken;
use ndarray::Array2;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The built-in kinds, plus the test-only ones when asked.
pub fn registry(queue: &Queue, test_tasks: bool) -> Registry {
    let mut registry = Registry::default();
    registry.register("noop", |_, _| Ok(Value::Null)).register("sleep", sleep);
    let q = queue.clone();
    registry.register("decode", move |ctx, payload| decode(&q, ctx, payload));
    let q = queue.clone();
    registry.register("extract", move |ctx, payload| extract(&q, ctx, payload));
    let q = queue.clone();
    registry.register("kmeans.predict", move |ctx, payload| predict(&q, ctx, payload));
    let q = queue.clone();
    registry.register(training::task::KIND, move |ctx, payload| train(&q, ctx, payload));
    ferrocluster_core::distributed::kmeans::register(&mut registry, queue);
    if test_tasks {
        register_test_tasks(&mut registry);
    }
    registry
}

/// `sleep {ms}`: sleeps in 10 ms chunks, reporting progress and stopping when cancelled.
fn sleep(ctx: &TaskContext, payload: Value) -> Result<Value, TaskError> {
    #[derive(Deserialize)]
    struct Sleep {
        ms: u64,
    }
    let Sleep { ms } = parse(payload)?;
    let mut slept = 0;
    while slept < ms {
        ctx.check_cancelled()?;
        let step = (ms - slept).min(10);
        std::thread::sleep(Duration::from_millis(step));
        slept += step;
        ctx.progress(slept, ms);
    }
    Ok(json!({ "slept_ms": ms, "pid": std::process::id() }))
}

/// The payload of `extract`: image files (paths every worker can read), the features to
/// compute, and where to write them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractJob {
    /// The image files (or `files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathBuf>,
    /// Instead of `paths`: a range of a listing of the whole job's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileRange>,
    /// The features.
    #[serde(default)]
    pub config: FeatureConfig,
    /// Bounds on decoding.
    #[serde(default)]
    pub limits: DecodeLimits,
    /// Where the matrix goes.
    pub output: DataRef,
    /// Seconds an output key lives (its submitter renews it while it needs it), so a
    /// submitter that dies leaves nothing behind; none: it lives until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

/// The result of `extract` and `decode`: the matrix written (one row per file that could be
/// read: its features, or for `decode` its pixels), the input index of each row, and the
/// files that could not be read with the reason.
#[derive(Debug, Serialize, Deserialize)]
pub struct FileRows {
    /// The matrix.
    pub features: MatrixRef,
    /// For each row, the index of its file in the payload's `paths`.
    pub rows: Vec<usize>,
    /// Files not read: index and reason.
    pub failures: Vec<(usize, String)>,
}

/// `extract {paths | files, config, limits?, output}`: features of image files, written to
/// `output` as a float32 matrix.
fn extract(queue: &Queue, ctx: &TaskContext, payload: Value) -> Result<Value, TaskError> {
    let job: ExtractJob = parse(payload)?;
    ctx.check_cancelled()?;
    let paths = match (job.files, job.paths.is_empty()) {
        (None, _) => job.paths,
        (Some(range), true) => block_on(range.paths(queue))?,
        (Some(_), false) => return Err(TaskError::Invalid("give `paths` or `files`, not both".to_owned())),
    };
    let total = paths.len() as u64;
    let extracted = extract_files(&paths, &job.config, &job.limits, &|done| ctx.progress(done as u64, total))
        .map_err(|e| TaskError::Invalid(e.to_string()))?;
    let failures = extracted.failures.iter().map(|(i, e)| (*i, e.to_string())).collect();
    write_rows(queue, ctx, (job.output, job.ttl_s), &extracted.features, extracted.rows, failures)
}

/// `decode {paths, size, limits?, output}`: image files decoded to RGB and resized to
/// `size` (height, width), written to `output` as a float32 matrix of `h·w·3` values (0–255,
/// row-major, channels interleaved) per file.
fn decode(queue: &Queue, ctx: &TaskContext, payload: Value) -> Result<Value, TaskError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Decode {
        paths: Vec<PathBuf>,
        size: [usize; 2],
        #[serde(default)]
        limits: DecodeLimits,
        output: DataRef,
    }
    let job: Decode = parse(payload)?;
    if job.size.contains(&0) {
        return Err(TaskError::Invalid(format!("size {:?} must be positive", job.size)));
    }
    ctx.check_cancelled()?;
    let total = job.paths.len() as u64;
    let batch = load_batch(&job.paths, job.size, &job.limits, &|done| ctx.progress(done as u64, total));
    let width = job.size[0] * job.size[1] * 3;
    let pixels: Vec<f32> = batch.images.iter().flat_map(|(_, image)| image.data().iter().copied()).collect();
    let matrix = Array2::from_shape_vec((batch.images.len(), width), pixels)
        .map_err(|e| TaskError::Failed(format!("decoded images of unexpected size: {e}")))?;
    let rows = batch.images.iter().map(|(i, _)| *i).collect();
    let failures = batch.failures.iter().map(|(i, e)| (*i, e.to_string())).collect();
    write_rows(queue, ctx, (job.output, None), &matrix, rows, failures)
}

fn write_rows(
    queue: &Queue,
    ctx: &TaskContext,
    (output, ttl_s): (DataRef, Option<u64>),
    matrix: &Array2<f32>,
    rows: Vec<usize>,
    failures: Vec<(usize, String)>,
) -> Result<Value, TaskError> {
    // A task cancelled meanwhile (its caller gave up) leaves no matrix behind.
    ctx.check_cancelled()?;
    let ttl = ttl_s.map(Duration::from_secs);
    let to_file = matches!(output, DataRef::Path(_));
    let features = block_on(MatrixRef::write_expiring(queue, output, matrix, ttl)).map_err(|e| match e {
        // A folder shared by the submitter and the workers: say which worker could not write it.
        TaskError::Failed(why) if to_file => TaskError::Failed(format!(
            "worker {}: {why} (every worker must reach the folder at the same path)",
            ctx.worker
        )),
        e => e,
    })?;
    serde_json::to_value(FileRows { features, rows, failures }).map_err(|e| TaskError::Failed(e.to_string()))
}

/// `kmeans.predict {centres, rows}`: nearest centre and squared distance of each row of a
/// matrix given by reference.
fn predict(queue: &Queue, ctx: &TaskContext, payload: Value) -> Result<Value, TaskError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Predict {
        centres: Vec<Vec<f32>>,
        rows: MatrixRef,
    }
    let job: Predict = parse(payload)?;
    let k = job.centres.len();
    let d = job.centres.first().map_or(0, Vec::len);
    let flat: Vec<f32> = job.centres.into_iter().flatten().collect();
    let centres = Array2::from_shape_vec((k, d), flat)
        .map_err(|_| TaskError::Invalid("centres must be a non-empty list of equal-length rows".to_owned()))?;
    let x = block_on(job.rows.read(queue))?;
    ctx.check_cancelled()?;
    let model = KMeansModel { centres, labels: Vec::new(), inertia: 0.0, n_iter: 0 };
    let (labels, distances) = model.predict_with_distances(x.view()).map_err(|e| TaskError::Invalid(e.to_string()))?;
    Ok(json!({ "labels": labels, "distances": distances }))
}

/// `train {request, images, limits?, result_ttl_s}`: the REST service's training job — the
/// same steps as its in-process executor; the model comes back as blobs ([`TrainOutput`]).
fn train(queue: &Queue, ctx: &TaskContext, payload: Value) -> Result<Value, TaskError> {
    let job: TrainTask = parse(payload)?;
    job.request.validate(job.images.count).map_err(|e| TaskError::Invalid(e.to_string()))?;
    let trained = match training::train(&job.images.paths(), &job.request, &job.limits, &TaskObserver(ctx)) {
        Ok(trained) => trained,
        Err(TrainError::Cancelled) => return Err(TaskError::Cancelled),
        Err(TrainError::Failed(reason)) => return Err(TaskError::Failed(reason)),
    };
    // A task cancelled meanwhile leaves no blobs behind.
    ctx.check_cancelled()?;
    let output = block_on(TrainOutput::store(queue, trained, job.result_ttl_s))?;
    serde_json::to_value(output).map_err(|e| TaskError::Failed(e.to_string()))
}

/// A training's progress and cancel checks, through the task's context.
struct TaskObserver<'a>(&'a TaskContext);

impl Observer for TaskObserver<'_> {
    fn progress(&self, stage: Stage, done: usize, total: usize) {
        let (done, total) = pack_progress(stage, done, total);
        self.0.progress(done, total);
    }

    fn cancel_token(&self) -> &CancelToken {
        self.0.cancel_token()
    }
}

/// Tasks that misbehave on purpose, for the fault-tolerance tests only.
fn register_test_tasks(registry: &mut Registry) {
    registry
        .register("test.crash", |ctx, _| {
            tracing::warn!(id = ctx.id, "test.crash: exiting without a word");
            std::process::exit(86)
        })
        .register("test.hang", |_, _| loop {
            std::thread::sleep(Duration::from_secs(1));
        })
        .register("test.fail", |ctx, payload| {
            let failures = payload.get("failures").and_then(Value::as_u64).unwrap_or(u64::MAX);
            if u64::from(ctx.attempt) < failures {
                return Err(TaskError::Failed(format!("test.fail: attempt {} fails on purpose", ctx.attempt)));
            }
            Ok(json!({ "attempt": ctx.attempt }))
        });
}

fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, TaskError> {
    serde_json::from_value(payload).map_err(|e| TaskError::Invalid(format!("payload: {e}")))
}

/// Handlers run on blocking threads of the worker's runtime, so they may wait on it.
fn block_on<T>(future: impl std::future::Future<Output = ferrocluster_core::queue::Result<T>>) -> Result<T, TaskError> {
    tokio::runtime::Handle::current().block_on(future).map_err(|e| TaskError::Failed(e.to_string()))
}
