//! Work on the Redis queue (`ferrocluster cluster --redis`): the files are split into
//! `extract` tasks that workers run; a progress bar follows the tasks' progress; the
//! matrices they write stay in Redis (or as .npy files in `--shared-dir`) while the job
//! lives, for a k-means fit on the workers to read in place, and are gathered in file order
//! for what this process computes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ferrocluster_core::cluster::kmeans::KMeansModel;
use ferrocluster_core::cluster::Progress;
use ferrocluster_core::distributed::kmeans::{ClusterData, ClusterFit, ShardedKMeans};
use ferrocluster_core::distributed::{KeptKeys, DATA_TTL};
use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::image::DecodeLimits;
use ferrocluster_core::queue::{DataRef, FileRange, Listener, Queue, TaskSpec, TaskState, TaskStatus};
use ndarray::Array2;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::extract::FileFeatures;
use crate::progress::Bars;
use crate::shared_dir::RunFolder;
use crate::tasks::{ExtractJob, FileRows};
use crate::Failure;

/// How long to wait for a worker to pick up the first task before warning that none serves
/// the queue.
const NO_WORKER_WARNING: Duration = Duration::from_secs(5);

/// How often the progress bar shows the progress of the tasks still running (and a failed
/// task is noticed, should its notification be lost): tasks that end wake the wait at once.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Without `--chunk`, tasks per task slot of the live workers: enough that they stay busy to
/// the end when tasks take unequal times.
const TASKS_PER_SLOT: usize = 8;

/// Without `--chunk`, the most images a task: a task's fixed cost (about 0.8 ms of the worker
/// and Redis, measured) is then about 3% of its HOG on 32 × 32 images.
const CHUNK_MAX: usize = 1024;

/// The longest a k-means fit on the workers may take (Ctrl-C stops it sooner).
const FIT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Where k-means is fitted when the features were extracted on workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DistributedFit {
    /// On the workers from 500,000 images on (k-means||, as with `always`), here below.
    Auto,
    /// On the workers (k-means||, shards read in place from the extracted features).
    Always,
    /// In this process.
    Never,
}

/// Options of work on the Redis queue.
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
    /// Images per task (with --redis); by default enough tasks for 8 per task slot of the
    /// live workers serving the queue, of at most 1024 images.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk: Option<u64>,
    /// Where k-means is fitted with --redis: on the workers that hold the features
    /// (k-means||, the same model as `--init 'k-means||'` here), or in this process.
    #[arg(long, value_enum, default_value_t = DistributedFit::Auto)]
    pub distributed_fit: DistributedFit,
    /// A folder this process and every worker can write at the same path (with --redis): the
    /// workers write the features there as .npy files instead of sending them through Redis,
    /// and the fit on the workers reads them there. The run's files are removed when it ends.
    #[arg(long)]
    pub shared_dir: Option<PathBuf>,
}

/// The runtime of the queue's connections, and the Ctrl-C watcher, for the whole process:
/// once a Ctrl-C handler is installed it cannot be removed, so it lives as long as the process.
struct Session {
    runtime: Runtime,
    /// Whether a job is running: Ctrl-C then stops it (it cleans up); otherwise it exits.
    busy: Arc<AtomicBool>,
    interrupted: watch::Receiver<bool>,
}

fn session() -> Result<&'static Session, Failure> {
    static SESSION: OnceLock<Session> = OnceLock::new();
    if let Some(s) = SESSION.get() {
        return Ok(s);
    }
    let runtime = Runtime::new().map_err(|e| Failure::Job(format!("starting the runtime: {e}")))?;
    let busy = Arc::new(AtomicBool::new(false));
    let (tx, interrupted) = watch::channel(false);
    let watching = busy.clone();
    runtime.spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if !watching.load(Ordering::SeqCst) {
                std::process::exit(130);
            }
            tx.send_replace(true);
        }
    });
    Ok(SESSION.get_or_init(|| Session { runtime, busy, interrupted }))
}

/// Features extracted by the workers of a queue, kept in Redis (or the shared folder) while
/// this lives: dropping it cancels what is left of the job and deletes its matrices (keys
/// expire after [`DATA_TTL`] anyway, should this process be killed).
pub struct RemoteJob {
    session: &'static Session,
    queue: Queue,
    job: Job,
    /// Each task's output: its matrix, the files its rows are of, the files it skipped.
    outputs: Vec<FileRows>,
    kept: KeptKeys,
    /// The run's folder in `--shared-dir`, removed after the tasks are cancelled (fields drop
    /// after [`Drop::drop`]).
    folder: Option<RunFolder>,
}

impl RemoteJob {
    /// Extracts the features of `paths` on the workers of the queue at `url`.
    pub fn extract(
        url: &str,
        args: &RemoteArgs,
        paths: &[PathBuf],
        config: &FeatureConfig,
        bars: &Bars,
    ) -> Result<Self, Failure> {
        // A fresh name per run: task ids, matrix keys and files never meet an earlier run's.
        let name = format!("cluster-{:016x}", rand::random::<u64>());
        let folder = args.shared_dir.as_deref().map(|dir| RunFolder::create(dir, &name)).transpose()?;
        let session = session()?;
        let rt = &session.runtime;
        let queue = rt.block_on(crate::queue::connect(url, &args.namespace))?;
        session.busy.store(true, Ordering::SeqCst);
        let kept = KeptKeys::new(&queue, rt.handle(), DATA_TTL);
        let mut remote = RemoteJob { session, queue, job: Job::default(), outputs: Vec::new(), kept, folder };
        remote.job = rt.block_on(Job::enqueue(&remote.queue, args, &name, remote.folder.as_ref(), paths, config))?;
        remote.kept.add(remote.job.keys.iter().cloned());
        let statuses = rt.block_on(remote.job.follow(&remote.queue, bars, session.interrupted.clone()))?;
        remote.outputs = remote.job.outputs(&statuses)?;
        Ok(remote)
    }

    /// Fits k-means on the workers, its shards read from the extracted matrices in place.
    pub fn fit(&self, km: &ShardedKMeans, progress: &(dyn Fn(Progress) + Sync)) -> Result<KMeansModel<f32>, Failure> {
        let parts = self.outputs.iter().map(|o| o.features.clone()).collect();
        let fit = ClusterFit { timeout: FIT_TIMEOUT, progress, stop: Some(&self.session.interrupted) };
        Ok(km.fit_on_cluster_with(&self.queue, self.session.runtime.handle(), ClusterData::Parts(parts), fit)?)
    }

    /// The rows of every task, in file order, read from Redis or the shared folder.
    pub fn features(&self, paths: &[PathBuf], dim: usize) -> Result<FileFeatures, Failure> {
        let features = self.session.runtime.block_on(self.gather(dim))?;
        Ok(features.checked(paths)?)
    }

    /// Reads each task's matrix straight into its rows of the whole one.
    async fn gather(&self, dim: usize) -> Result<FileFeatures, Failure> {
        for ((out, id), (_, files)) in self.outputs.iter().zip(&self.job.ids).zip(&self.job.spans) {
            let outside = out.rows.iter().chain(out.failures.iter().map(|(r, _)| r)).any(|r| r >= files);
            if out.features.cols != dim || out.features.rows != out.rows.len() || outside {
                return Err(Failure::Job(format!(
                    "extract task {id} returned {} × {} features for {} of its {files} files, of dimension {dim}: is the worker of another version?",
                    out.features.rows,
                    out.features.cols,
                    out.rows.len()
                )));
            }
        }
        let n = self.outputs.iter().map(|o| o.rows.len()).sum();
        let mut features = Array2::zeros((n, dim));
        let mut values = features.as_slice_mut().expect("a new matrix is contiguous");
        let (mut rows, mut skipped) = (Vec::with_capacity(n), Vec::new());
        for (out, (first, _)) in self.outputs.iter().zip(&self.job.spans) {
            let (these, rest) = std::mem::take(&mut values).split_at_mut(out.rows.len() * dim);
            out.features.read_into(&self.queue, these).await?;
            values = rest;
            rows.extend(out.rows.iter().map(|r| first + r));
            skipped.extend(out.failures.iter().map(|(r, e)| (first + r, e.clone())));
        }
        Ok(FileFeatures { features, rows, skipped })
    }
}

impl Drop for RemoteJob {
    /// Finished or not, nothing of the job is left behind in Redis but its task records
    /// (which expire): tasks not done are cancelled, the matrices deleted.
    fn drop(&mut self) {
        let cleaned = async {
            if self.outputs.len() < self.job.ids.len() {
                for id in &self.job.ids {
                    self.queue.cancel(id).await?;
                }
            }
            self.kept.delete().await
        };
        // One try: when Redis is gone, waiting out a reconnect per task would look like a hang.
        if let Err(e) = self.session.runtime.block_on(cleaned) {
            eprintln!("warning: could not clean up the job's tasks and matrices in Redis (they expire within {DATA_TTL:?}): {e}");
        }
        self.session.busy.store(false, Ordering::SeqCst);
    }
}

/// Images per task: `--chunk`, or [`TASKS_PER_SLOT`] tasks for each task slot of the live
/// workers serving the queue (one slot when none is there yet), of at most [`CHUNK_MAX`].
async fn chunk_size(queue: &Queue, args: &RemoteArgs, files: usize) -> Result<usize, Failure> {
    if let Some(chunk) = args.chunk {
        return Ok(chunk as usize);
    }
    let slots: usize = queue
        .workers()
        .await?
        .iter()
        .filter(|w| w.queues().any(|q| q == args.queue))
        .map(|w| w.fields.get("concurrency").and_then(|c| c.parse().ok()).unwrap_or(1))
        .sum();
    Ok(files.div_ceil(slots.max(1) * TASKS_PER_SLOT).clamp(1, CHUNK_MAX))
}

/// The tasks of one extraction.
#[derive(Default)]
struct Job {
    /// The notification channel of its tasks.
    channel: String,
    ids: Vec<String>,
    /// The job's keys in Redis: the listing of its files and each task's matrix (none when
    /// they go to the shared folder).
    keys: Vec<String>,
    /// The index of each task's first file, and how many files it has.
    spans: Vec<(usize, usize)>,
}

impl Job {
    async fn enqueue(
        queue: &Queue,
        args: &RemoteArgs,
        name: &str,
        folder: Option<&RunFolder>,
        paths: &[PathBuf],
        config: &FeatureConfig,
    ) -> Result<Self, Failure> {
        // Workers run elsewhere, from another directory: they get absolute paths.
        let absolute: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::path::absolute(p).map_err(|e| ferrocluster_core::Error::io(p, e)))
            .collect::<Result<_, _>>()?;
        let chunk = chunk_size(queue, args, absolute.len()).await?;
        let mut job = Job { channel: name.to_owned(), ..Job::default() };
        // The paths go once, in a listing that each task names a range of.
        let listing = match folder {
            Some(folder) => DataRef::Path(folder.listing()),
            None => {
                let key = format!("{}:data:{name}:files", args.namespace);
                job.keys.push(key.clone());
                DataRef::Key(key)
            }
        };
        FileRange::write_listing(queue, &listing, &absolute, Some(DATA_TTL)).await?;
        let mut specs = Vec::new();
        for (i, files) in absolute.chunks(chunk).enumerate() {
            let (output, ttl_s) = match folder {
                Some(folder) => (DataRef::Path(folder.file(i)), None),
                None => {
                    let key = format!("{}:data:{name}:{i}", args.namespace);
                    job.keys.push(key.clone());
                    (DataRef::Key(key), Some(DATA_TTL.as_secs()))
                }
            };
            let start = i * chunk;
            let payload = ExtractJob {
                paths: Vec::new(),
                files: Some(FileRange { listing: listing.clone(), total: absolute.len(), start, count: files.len() }),
                config: config.clone(),
                limits: DecodeLimits::default(),
                output,
                ttl_s,
            };
            let payload = serde_json::to_value(payload).map_err(|e| Failure::Job(e.to_string()))?;
            specs.push(TaskSpec {
                id: Some(format!("{name}-{i}")),
                result_ttl_s: 3600,
                notify: Some(job.channel.clone()),
                ..TaskSpec::new(&args.queue, "extract", payload)
            });
            job.spans.push((start, files.len()));
        }
        job.ids = queue.enqueue_many(&specs).await?.into_iter().map(|(id, _)| id).collect();
        Ok(job)
    }

    /// Shows progress until every task succeeded; fails on the first task that ended
    /// otherwise, or on Ctrl-C. Waits on the tasks' notifications, not by polling: the
    /// statuses are read when every task has ended and every [`PROGRESS_EVERY`] meanwhile.
    async fn follow(
        &self,
        queue: &Queue,
        bars: &Bars,
        mut interrupted: watch::Receiver<bool>,
    ) -> Result<Vec<TaskStatus>, Failure> {
        let total: usize = self.spans.iter().map(|s| s.1).sum();
        let bar = bars.bar(total, "features");
        let listener = Listener::new(queue, &self.channel)?;
        let started = Instant::now();
        let mut warned = false;
        let mut ended = std::collections::HashSet::new();
        let mut checked = Instant::now();
        loop {
            let tick = ended.len() == self.ids.len() || checked.elapsed() >= PROGRESS_EVERY;
            if tick {
                checked = Instant::now();
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
                    // Notifications not read yet are already in the list: take them, so that
                    // the list goes with its last entry.
                    listener.next(self.ids.len() - ended.len(), Duration::ZERO).await?;
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
                continue;
            }
            let wait = PROGRESS_EVERY.saturating_sub(checked.elapsed());
            tokio::select! {
                ids = listener.next(self.ids.len() - ended.len(), wait) => ended.extend(ids?),
                Ok(_) = interrupted.wait_for(|i| *i) => return Err(Failure::Job("interrupted".to_owned())),
            }
        }
    }

    /// What each task wrote, read from its result.
    fn outputs(&self, statuses: &[TaskStatus]) -> Result<Vec<FileRows>, Failure> {
        statuses
            .iter()
            .map(|status| {
                let result = status.result.clone().unwrap_or_default();
                serde_json::from_value(result)
                    .map_err(|e| Failure::Job(format!("extract task {} returned an unexpected result: {e}", status.id)))
            })
            .collect()
    }
}
