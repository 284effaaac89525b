//! Feature extraction through the Redis queue (`ferrocluster cluster --redis`): the files are
//! split into `extract` tasks that workers run; a progress bar follows the tasks' progress;
//! the rows are gathered in file order.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::image::DecodeLimits;
use ferrocluster_core::queue::{DataRef, Queue, TaskSpec, TaskState, TaskStatus};
use ndarray::{Array2, Axis};

use crate::extract::FileFeatures;
use crate::progress::Bars;
use crate::tasks::{ExtractJob, FileRows};
use crate::Failure;

/// How long to wait for a worker to pick up the first task before warning that none serves
/// the queue.
const NO_WORKER_WARNING: Duration = Duration::from_secs(5);

/// Options of extraction on workers.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Extract features on `ferrocluster worker` processes through this Redis
    /// (redis://[user:password@]host:port/db); the images must be readable by every worker at
    /// the same absolute path.
    #[arg(long)]
    pub redis: Option<String>,
    /// Key prefix of the queue (with --redis).
    #[arg(long, default_value = "fc")]
    pub namespace: String,
    /// Queue the tasks go to (with --redis).
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// Images per task (with --redis).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk: u64,
}

/// The features of `paths`, computed by the workers of the queue at `url`.
pub fn features_of(
    url: &str,
    args: &RemoteArgs,
    paths: &[PathBuf],
    config: &FeatureConfig,
    bars: &Bars,
) -> Result<FileFeatures, Failure> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure::Job(format!("starting the runtime: {e}")))?;
    let features = runtime.block_on(async {
        let queue = crate::queue::connect(url, &args.namespace).await?;
        let job = Job::enqueue(&queue, args, paths, config).await?;
        let gathered = match job.follow(&queue, bars).await {
            Ok(statuses) => job.gather(&queue, &statuses, config.dim()).await,
            Err(e) => Err(e),
        };
        // Finished or not, nothing of the job is left behind in Redis but its task records
        // (which expire): pending tasks are cancelled, the matrices deleted.
        job.clean_up(&queue).await;
        gathered
    })?;
    Ok(features.checked(paths)?)
}

/// The tasks of one extraction.
struct Job {
    ids: Vec<String>,
    /// The matrix key of each task.
    keys: Vec<String>,
    /// The index of each task's first file, and how many files it has.
    spans: Vec<(usize, usize)>,
}

impl Job {
    async fn enqueue(
        queue: &Queue,
        args: &RemoteArgs,
        paths: &[PathBuf],
        config: &FeatureConfig,
    ) -> Result<Self, Failure> {
        // Workers run elsewhere, from another directory: they get absolute paths.
        let absolute: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::path::absolute(p).map_err(|e| ferrocluster_core::Error::io(p, e)))
            .collect::<Result<_, _>>()?;
        // A fresh name per run: task ids and matrix keys never meet an earlier run's.
        let name = format!("cluster-{:016x}", rand::random::<u64>());
        let mut job = Job { ids: Vec::new(), keys: Vec::new(), spans: Vec::new() };
        for (i, files) in absolute.chunks(args.chunk as usize).enumerate() {
            let key = format!("{}:data:{name}:{i}", args.namespace);
            let payload = ExtractJob {
                paths: files.to_vec(),
                config: config.clone(),
                limits: DecodeLimits::default(),
                output: DataRef::Key(key.clone()),
            };
            let payload = serde_json::to_value(payload).map_err(|e| Failure::Job(e.to_string()))?;
            let spec = TaskSpec {
                id: Some(format!("{name}-{i}")),
                result_ttl_s: 3600,
                ..TaskSpec::new(&args.queue, "extract", payload)
            };
            job.ids.push(queue.enqueue(&spec).await?);
            job.keys.push(key);
            job.spans.push((i * args.chunk as usize, files.len()));
        }
        Ok(job)
    }

    /// Shows progress until every task succeeded; fails on the first task that ended
    /// otherwise, or on Ctrl-C.
    async fn follow(&self, queue: &Queue, bars: &Bars) -> Result<Vec<TaskStatus>, Failure> {
        let total: usize = self.spans.iter().map(|s| s.1).sum();
        let bar = bars.bar(total, "features");
        let started = Instant::now();
        let mut warned = false;
        loop {
            let statuses = queue.known_statuses(&self.ids).await?;
            let mut done = 0;
            for (status, (_, files)) in statuses.iter().zip(&self.spans) {
                done += match status.state {
                    TaskState::Succeeded => *files,
                    TaskState::Pending | TaskState::Running => status.progress.map_or(0, |(d, _)| d as usize),
                    state => {
                        let error = status.error.as_deref().unwrap_or("no reason given");
                        return Err(Failure::Job(format!("extract task {} ended {state:?}: {error}", status.id)));
                    }
                };
            }
            bar.set_position(done as u64);
            if statuses.iter().all(|s| s.state == TaskState::Succeeded) {
                bar.finish();
                return Ok(statuses);
            }
            if !warned
                && started.elapsed() > NO_WORKER_WARNING
                && statuses.iter().all(|s| s.state == TaskState::Pending)
            {
                warned = true;
                let stats = queue.stats().await?;
                let name = &statuses[0].queue;
                if stats.queues.iter().any(|q| &q.name == name && q.workers == 0) {
                    bar.suspend(|| {
                        eprintln!("warning: no worker serves queue `{name}`: start one with `ferrocluster worker --redis URL --queues {name}`")
                    });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tokio::signal::ctrl_c() => return Err(Failure::Job("interrupted".to_owned())),
            }
        }
    }

    /// The rows of every task, in file order.
    async fn gather(&self, queue: &Queue, statuses: &[TaskStatus], dim: usize) -> Result<FileFeatures, Failure> {
        let mut matrices = Vec::with_capacity(statuses.len());
        let (mut rows, mut skipped) = (Vec::new(), Vec::new());
        for (status, (first, _)) in statuses.iter().zip(&self.spans) {
            let result = status.result.clone().unwrap_or_default();
            let out: FileRows = serde_json::from_value(result)
                .map_err(|e| Failure::Job(format!("extract task {} returned an unexpected result: {e}", status.id)))?;
            let matrix = out.features.read(queue).await?;
            if matrix.ncols() != dim || matrix.nrows() != out.rows.len() {
                return Err(Failure::Job(format!(
                    "extract task {} returned {} × {} features for {} files of dimension {dim}: is the worker of another version?",
                    status.id,
                    matrix.nrows(),
                    matrix.ncols(),
                    out.rows.len()
                )));
            }
            matrices.push(matrix);
            rows.extend(out.rows.iter().map(|r| first + r));
            skipped.extend(out.failures.into_iter().map(|(r, e)| (first + r, e)));
        }
        let views: Vec<_> = matrices.iter().map(Array2::view).collect();
        let features = ndarray::concatenate(Axis(0), &views).map_err(|e| Failure::Job(e.to_string()))?;
        Ok(FileFeatures { features, rows, skipped })
    }

    async fn clean_up(&self, queue: &Queue) {
        let cleaned = async {
            for id in &self.ids {
                queue.cancel(id).await?;
            }
            for key in &self.keys {
                DataRef::Key(key.clone()).delete(queue).await?;
            }
            Ok::<_, ferrocluster_core::queue::Error>(())
        };
        // One try: when Redis is gone, waiting out a reconnect per task would look like a hang.
        if let Err(e) = cleaned.await {
            eprintln!("warning: could not clean up the job's tasks and matrices in Redis: {e}");
        }
    }
}
