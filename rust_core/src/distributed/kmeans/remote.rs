//! The cluster executor: shards resident in `ferrocluster-worker` processes.
//!
//! Each shard has a holder, a worker that loaded it and keeps it in memory; the steps of a
//! shard go to its holder's inbox. A holder leases its shards in Redis and extends the leases
//! while it lives. When a holder is lost (its worker record expired, or a lease it had taken
//! lapsed), the coordinator cancels its task and gives the shard to another live worker,
//! which loads it from the source and replays what it needs from the step itself (the mean,
//! the candidate batches, the centres the labels came from), so the result does not change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{s, Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::runtime::Handle;

use super::op::{ShardOp, ShardReply};
use super::source::{npy_shape, ShardSource};
use super::{ShardExecutor, ShardPlan, ShardedKMeans};
use crate::cluster::kmeans::KMeansModel;
use crate::cluster::validate_data;
use crate::queue::{inbox, DataRef, MatrixRef, Priority, Queue, TaskSpec, TaskState};

/// What can go wrong in a fit on a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad parameters or data (from this process or from a worker that loaded a shard).
    #[error(transparent)]
    Engine(#[from] crate::Error),
    /// The queue failed: Redis unreachable, refused credentials, ...
    #[error(transparent)]
    Queue(#[from] crate::queue::Error),
    /// A shard's task failed on its worker for another reason than its data.
    #[error("shard {shard}: {reason}")]
    Shard {
        /// The shard.
        shard: usize,
        /// The worker's error.
        reason: String,
    },
    /// No live worker serves the k-means shard tasks in this namespace.
    #[error("no live ferrocluster-worker serves k-means shards in this namespace: start one with the same --redis and --namespace")]
    NoWorkers,
    /// The fit took longer than its timeout.
    #[error("the distributed fit did not finish within {0:?}")]
    Timeout(Duration),
}

/// The data of a fit on a cluster.
#[derive(Debug, Clone)]
pub enum ClusterData<'a> {
    /// A matrix in this process: its shards are stored in Redis for the workers to load.
    Matrix(ArrayView2<'a, f32>),
    /// A float32 .npy file every worker reads at the same path.
    Npy(PathBuf),
}

/// The payload of a shard task: the step and what a worker needs to rebuild the shard.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShardTask {
    pub(crate) job: String,
    pub(crate) shard: usize,
    pub(crate) plan: ShardPlan,
    pub(crate) source: ShardSource,
    /// The column mean once known: a worker that loads the shard later centres it with it.
    pub(crate) mean: Option<Vec<f64>>,
    pub(crate) op: ShardOp<MatrixRef>,
}

/// The Redis key of something of job `job`.
pub(crate) fn job_key(queue: &Queue, job: &str, what: &str) -> String {
    format!("{}:kmeans:{job}:{what}", queue.config().namespace)
}

/// The task kind that drops a job's shards from a worker.
pub(crate) const RELEASE: &str = "kmeans.release";

/// A shard's holder: a worker's consumer name, and whether it has run a step of the shard
/// (and so holds its lease).
#[derive(Debug, Clone)]
struct Holder {
    consumer: String,
    confirmed: bool,
}

/// A step sent to one shard and not answered yet.
#[derive(Debug)]
struct Outstanding {
    index: usize,
    shard: usize,
    task: String,
    attempt: u32,
}

/// Shards resident in the workers of a queue.
#[derive(Debug)]
pub struct ClusterShards {
    queue: Queue,
    runtime: Handle,
    job: String,
    plan: ShardPlan,
    source: ShardSource,
    mean: Option<Vec<f64>>,
    holders: Vec<Option<Holder>>,
    seq: u64,
    deadline: Instant,
    timeout: Duration,
}

impl ShardedKMeans {
    /// Fits on the `ferrocluster-worker` processes of `queue`: the same model as
    /// [`crate::cluster::Clusterer::fit`] of the same parameters on the same data.
    ///
    /// Blocks on `runtime` (the one `queue` was connected on): call it from a thread outside
    /// that runtime (a plain thread, `spawn_blocking`).
    ///
    /// # Errors
    /// [`Error::Engine`] for bad parameters or data (NaN, fewer rows than clusters),
    /// [`Error::NoWorkers`], [`Error::Timeout`], queue failures.
    pub fn fit_on_cluster(
        &self,
        queue: &Queue,
        runtime: &Handle,
        data: ClusterData<'_>,
        timeout: Duration,
    ) -> Result<KMeansModel<f32>, Error> {
        let job = format!("{:016x}", rand::random::<u64>());
        let (plan, source) = match data {
            ClusterData::Matrix(x) => {
                validate_data(x, None, self.n_clusters)?;
                let plan = self.plan(x.nrows(), x.ncols())?;
                let prefix = job_key(queue, &job, "x");
                for s in 0..plan.shards() {
                    let rows = x.slice(s![plan.range(s), ..]).to_owned();
                    let at = ShardSource::shard_ref(&prefix, &plan, s).at;
                    runtime.block_on(MatrixRef::write(queue, at, &rows))?;
                }
                (plan, ShardSource::Keys(prefix))
            }
            ClusterData::Npy(path) => {
                let (n, d, _) = npy_shape(&path)?;
                (self.plan(n, d)?, ShardSource::Npy(path))
            }
        };
        let mut exec = ClusterShards {
            queue: queue.clone(),
            runtime: runtime.clone(),
            job,
            plan,
            source,
            mean: None,
            holders: vec![None; plan.shards()],
            seq: 0,
            deadline: Instant::now() + timeout,
            timeout,
        };
        let fitted = self.fit_with(plan, &mut exec);
        if let Err(e) = runtime.block_on(exec.release()) {
            tracing::warn!(error = %e, "releasing the shards of a k-means fit failed; workers drop them when idle");
        }
        fitted
    }
}

impl ShardExecutor<f32> for ClusterShards {
    type Error = Error;

    fn run(&mut self, op: &ShardOp<Array2<f32>>, shards: &[usize]) -> Result<Vec<ShardReply>, Error> {
        let runtime = self.runtime.clone();
        runtime.block_on(self.run_async(op, shards))
    }
}

impl ClusterShards {
    async fn run_async(&mut self, op: &ShardOp<Array2<f32>>, shards: &[usize]) -> Result<Vec<ShardReply>, Error> {
        self.seq += 1;
        if let ShardOp::Centre { mean } = op {
            self.mean = Some(mean.clone());
        }
        // Matrices are broadcast by reference: written once, read by every holder.
        let mut matrices = Vec::new();
        let prefix = job_key(&self.queue, &self.job, &format!("m:{}", self.seq));
        let wire = op.try_map(&mut |m: &Array2<f32>| {
            let key = format!("{prefix}:{}", matrices.len());
            matrices.push((key.clone(), m.clone()));
            Ok::<_, Error>(MatrixRef { at: DataRef::Key(key), rows: m.nrows(), cols: m.ncols() })
        })?;
        for (key, m) in &matrices {
            MatrixRef::write(&self.queue, DataRef::Key(key.clone()), m).await?;
        }
        let mut live = self.live_workers().await?;
        let mut outstanding = Vec::with_capacity(shards.len());
        for (index, &shard) in shards.iter().enumerate() {
            let mut o = Outstanding { index, shard, task: String::new(), attempt: 0 };
            self.submit(&mut o, &wire, &live).await?;
            outstanding.push(o);
        }
        let mut replies: Vec<Option<ShardReply>> = vec![None; shards.len()];
        let (mut pause, mut checked) = (Duration::from_millis(1), Instant::now());
        while !outstanding.is_empty() {
            if Instant::now() > self.deadline {
                return Err(Error::Timeout(self.timeout));
            }
            let check_holders = checked.elapsed() >= self.queue.config().lease / 3;
            if check_holders {
                live = self.live_workers().await?;
                checked = Instant::now();
            }
            let mut still = Vec::with_capacity(outstanding.len());
            for mut o in outstanding {
                let status = self.queue.status(&o.task).await?;
                match status.state {
                    TaskState::Succeeded => {
                        replies[o.index] = Some(self.take_reply(o.shard, status.result.as_ref()).await?);
                        if let Some(h) = &mut self.holders[o.shard] {
                            h.confirmed = true;
                        }
                        pause = Duration::from_millis(1);
                        continue;
                    }
                    TaskState::Failed => return Err(failure(o.shard, status.error.unwrap_or_default())),
                    TaskState::Cancelled | TaskState::Dead => self.reassign(&mut o, &wire, &live).await?,
                    _ if check_holders && self.lost(o.shard, &live).await? => {
                        self.queue.cancel(&o.task).await?;
                        self.reassign(&mut o, &wire, &live).await?;
                    }
                    _ => {}
                }
                still.push(o);
            }
            outstanding = still;
            if !outstanding.is_empty() {
                tokio::time::sleep(pause).await;
                // A step is a barrier: every millisecond of polling delay is lost by all workers.
                pause = (pause * 2).min(Duration::from_millis(4));
            }
        }
        let keys: Vec<&String> = matrices.iter().map(|(key, _)| key).collect();
        if !keys.is_empty() {
            self.queue.conn.query::<()>(redis::cmd("DEL").arg(&keys)).await?;
        }
        Ok(replies.into_iter().map(|r| r.expect("every shard answered")).collect())
    }

    /// Consumer names of the live workers that run shard steps.
    async fn live_workers(&self) -> Result<Vec<String>, Error> {
        let step = ShardOp::<()>::Load.kind();
        let mut live: Vec<String> = self
            .queue
            .workers()
            .await?
            .into_iter()
            .filter(|w| w.fields.get("kinds").is_some_and(|k| k.split(',').any(|k| k == step)))
            .map(|w| w.consumer)
            .collect();
        live.sort();
        Ok(live)
    }

    /// Whether the holder of `shard` is gone: no longer a live worker, or it took the
    /// shard's lease and let it lapse.
    async fn lost(&self, shard: usize, live: &[String]) -> Result<bool, Error> {
        let Some(holder) = &self.holders[shard] else { return Ok(true) };
        if !live.contains(&holder.consumer) {
            return Ok(true);
        }
        if !holder.confirmed {
            return Ok(false);
        }
        let lease: Option<String> = self.queue.conn.query(redis::cmd("GET").arg(self.lease_key(shard))).await?;
        Ok(lease.as_deref() != Some(holder.consumer.as_str()))
    }

    fn lease_key(&self, shard: usize) -> String {
        job_key(&self.queue, &self.job, &format!("lease:{shard}"))
    }

    /// Gives the shard of `o` to another live worker than its lost holder and sends the step again.
    async fn reassign(&mut self, o: &mut Outstanding, wire: &ShardOp<MatrixRef>, live: &[String]) -> Result<(), Error> {
        let lost = self.holders[o.shard].take().map(|h| h.consumer);
        if let Some(holder) = &lost {
            tracing::warn!(shard = o.shard, holder, "shard holder lost: giving the shard to another worker");
        }
        let live: Vec<String> = live.iter().filter(|w| lost.as_ref() != Some(*w)).cloned().collect();
        self.submit(o, wire, &live).await
    }

    /// Sends the step of `o` to the holder of its shard, choosing one if it has none: the
    /// live worker holding the fewest shards (ties by name, so assignment is stable).
    async fn submit(&mut self, o: &mut Outstanding, wire: &ShardOp<MatrixRef>, live: &[String]) -> Result<(), Error> {
        let holder = match &self.holders[o.shard] {
            Some(h) if live.contains(&h.consumer) => h.consumer.clone(),
            _ => {
                let mut load: BTreeMap<&str, usize> = live.iter().map(|w| (w.as_str(), 0)).collect();
                for h in self.holders.iter().flatten() {
                    if let Some(n) = load.get_mut(h.consumer.as_str()) {
                        *n += 1;
                    }
                }
                let chosen = load.iter().min_by_key(|(w, n)| (**n, **w)).map(|(w, _)| (*w).to_owned());
                let chosen = chosen.ok_or(Error::NoWorkers)?;
                self.holders[o.shard] = Some(Holder { consumer: chosen.clone(), confirmed: false });
                chosen
            }
        };
        o.attempt += 1;
        o.task = format!("kmeans-{}-{}-{}-{}", self.job, self.seq, o.shard, o.attempt);
        let task = ShardTask {
            job: self.job.clone(),
            shard: o.shard,
            plan: self.plan,
            source: self.source.clone(),
            mean: self.mean.clone(),
            op: wire.clone(),
        };
        let spec = TaskSpec {
            id: Some(o.task.clone()),
            queue: inbox(&holder),
            kind: wire.kind().to_owned(),
            payload: serde_json::to_value(&task).map_err(crate::queue::Error::from)?,
            max_retries: 2,
            retry_on_error: true,
            priority: Priority::Normal,
            result_ttl_s: 3600,
            notify: None,
        };
        self.queue.enqueue(&spec).await?;
        Ok(())
    }

    /// The reply a worker stored under the key its result names; deleted once read.
    async fn take_reply(&self, shard: usize, result: Option<&Value>) -> Result<ShardReply, Error> {
        let key = result
            .and_then(|r| r.get("reply"))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Shard { shard, reason: format!("the worker's result {result:?} names no reply") })?;
        let text: Option<String> = self.queue.conn.query(redis::cmd("GETDEL").arg(key)).await?;
        let text = text.ok_or_else(|| Error::Shard { shard, reason: format!("the reply key {key} is gone") })?;
        serde_json::from_str(&text).map_err(|e| Error::Shard { shard, reason: format!("unreadable reply: {e}") })
    }

    /// Tells the holders to drop the job's shards and deletes the job's shard blobs.
    async fn release(&self) -> Result<(), Error> {
        let mut holders: Vec<&str> = self.holders.iter().flatten().map(|h| h.consumer.as_str()).collect();
        holders.sort_unstable();
        holders.dedup();
        for holder in holders {
            let mut spec = TaskSpec::new(inbox(holder), RELEASE, serde_json::json!({ "job": self.job }));
            spec.result_ttl_s = 60;
            self.queue.enqueue(&spec).await?;
        }
        if let ShardSource::Keys(prefix) = &self.source {
            let keys: Vec<String> = (0..self.plan.shards()).map(|s| format!("{prefix}:{s}")).collect();
            self.queue.conn.query::<()>(redis::cmd("DEL").arg(&keys)).await?;
        }
        Ok(())
    }
}

/// A failed shard task as an error: bad data is the caller's [`crate::Error::InvalidInput`].
fn failure(shard: usize, error: String) -> Error {
    match error.strip_prefix("invalid input: ") {
        Some(reason) => Error::Engine(crate::Error::input(reason)),
        None => Error::Shard { shard, reason: error },
    }
}
