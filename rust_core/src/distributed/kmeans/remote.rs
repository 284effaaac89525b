//! The cluster executor: shards resident in `ferrocluster-worker` processes.
//!
//! Each shard has a holder, a worker that loaded it and keeps it in memory; the steps of a
//! shard go to its holder's inbox. A holder leases its shards in Redis and extends the leases
//! while it lives. When a holder is lost (its worker record expired, or a lease it had taken
//! lapsed), the coordinator cancels its task and gives the shard to another live worker,
//! which loads it from the source and replays what it needs from the step itself (the mean,
//! the candidate batches, the centres the labels came from), so the result does not change.
//!
//! The coordinator does not poll: every step task notifies the fit's channel when it ends,
//! and the coordinator blocks on it ([`Listener`]), waking every lease / 3 to check the
//! holders (and the tasks, in case a notification was lost to a Redis restart).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{s, Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::op::{ShardOp, ShardReply};
use super::source::{npy_shape, ShardSource};
use super::{ShardExecutor, ShardPlan, ShardedKMeans};
use crate::cluster::kmeans::KMeansModel;
use crate::cluster::{validate_data, Progress};
use crate::distributed::{KeptKeys, DATA_TTL};
use crate::queue::{inbox, DataRef, Listener, MatrixRef, Priority, Queue, TaskSpec, TaskState, TaskStatus};

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
    /// The caller asked the fit to stop ([`ClusterFit::stop`]).
    #[error("the distributed fit was interrupted")]
    Interrupted,
}

/// The data of a fit on a cluster.
#[derive(Debug, Clone)]
pub enum ClusterData<'a> {
    /// A matrix in this process: its shards are stored in Redis for the workers to load.
    Matrix(ArrayView2<'a, f32>),
    /// A float32 .npy file every worker reads at the same path.
    Npy(PathBuf),
    /// Float32 matrices already stored where every worker can read them (the outputs of
    /// `extract` tasks), whose rows, one after the other, are the data: nothing is copied,
    /// each holder reads the rows of its shards. They must outlive the fit.
    Parts(Vec<MatrixRef>),
}

/// How a fit on a cluster runs, besides its data.
#[derive(Clone, Copy)]
pub struct ClusterFit<'a> {
    /// The fit fails with [`Error::Timeout`] past this.
    pub timeout: Duration,
    /// Sees stage `"iteration"` after each Lloyd iteration (`total = max_iter × n_init`).
    pub progress: &'a (dyn Fn(Progress) + Sync),
    /// Once it holds `true`, the fit stops with [`Error::Interrupted`] (cleaning up first).
    pub stop: Option<&'a watch::Receiver<bool>>,
}

impl std::fmt::Debug for ClusterFit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterFit").field("timeout", &self.timeout).finish_non_exhaustive()
    }
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

/// The notification channel of job `job`'s step tasks.
fn channel(job: &str) -> String {
    format!("kmeans-{job}")
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
    stop: Option<watch::Receiver<bool>>,
    listener: Listener,
    /// The live workers as of `checked`.
    live: Vec<String>,
    checked: Instant,
    /// Step tasks sent and not answered (cancelled if the fit ends early).
    in_flight: BTreeMap<String, Outstanding>,
    /// The fit's data in Redis (shard blobs, the list of parts), renewed while it runs.
    kept: KeptKeys,
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
        self.fit_on_cluster_with(queue, runtime, data, ClusterFit { timeout, progress: &|_| {}, stop: None })
    }

    /// [`ShardedKMeans::fit_on_cluster`] with progress and a way to stop it. Whatever the
    /// outcome, the fit's tasks, shards and keys are gone from Redis and the workers when it
    /// returns (or expire after [`DATA_TTL`] if Redis cannot be reached).
    ///
    /// # Errors
    /// As [`ShardedKMeans::fit_on_cluster`]; [`Error::Interrupted`].
    pub fn fit_on_cluster_with(
        &self,
        queue: &Queue,
        runtime: &Handle,
        data: ClusterData<'_>,
        fit: ClusterFit<'_>,
    ) -> Result<KMeansModel<f32>, Error> {
        let job = format!("{:016x}", rand::random::<u64>());
        let kept = KeptKeys::new(queue, runtime, DATA_TTL);
        let stored = runtime.block_on(store(queue, &job, &kept, data, self));
        let (plan, source) = match stored {
            Ok(stored) => stored,
            Err(e) => {
                runtime.block_on(kept.delete()).ok();
                return Err(e);
            }
        };
        let mut exec = ClusterShards {
            queue: queue.clone(),
            runtime: runtime.clone(),
            listener: Listener::new(queue, &channel(&job))?,
            job,
            plan,
            source,
            mean: None,
            holders: vec![None; plan.shards()],
            seq: 0,
            deadline: Instant::now() + fit.timeout,
            timeout: fit.timeout,
            stop: fit.stop.cloned(),
            live: Vec::new(),
            checked: Instant::now(),
            in_flight: BTreeMap::new(),
            kept,
        };
        let fitted = runtime.block_on(exec.refresh_live()).and_then(|()| self.fit_with(plan, &mut exec, fit.progress));
        if let Err(e) = runtime.block_on(exec.release()) {
            tracing::warn!(error = %e, "releasing the shards of a k-means fit failed; workers drop them when idle");
        }
        fitted
    }
}

/// Puts the data where the workers load it from: the plan and the source of the shards.
async fn store(
    queue: &Queue,
    job: &str,
    kept: &KeptKeys,
    data: ClusterData<'_>,
    params: &ShardedKMeans,
) -> Result<(ShardPlan, ShardSource), Error> {
    Ok(match data {
        ClusterData::Matrix(x) => {
            validate_data(x, None, params.n_clusters)?;
            let plan = params.plan(x.nrows(), x.ncols())?;
            let prefix = job_key(queue, job, "x");
            for s in 0..plan.shards() {
                let rows = x.slice(s![plan.range(s), ..]).to_owned();
                let at = ShardSource::shard_ref(&prefix, &plan, s).at;
                if let DataRef::Key(key) = &at {
                    kept.add([key.clone()]);
                }
                MatrixRef::write_expiring(queue, at, &rows, Some(kept.ttl())).await?;
            }
            (plan, ShardSource::Keys(prefix))
        }
        ClusterData::Npy(path) => {
            let (n, d, _) = npy_shape(&path)?;
            (params.plan(n, d)?, ShardSource::Npy(path))
        }
        ClusterData::Parts(parts) => {
            let parts: Vec<MatrixRef> = parts.into_iter().filter(|p| p.rows > 0).collect();
            let n = parts.iter().map(|p| p.rows).sum();
            let d = parts.first().map_or(0, |p| p.cols);
            if let Some(p) = parts.iter().find(|p| p.cols != d) {
                return Err(crate::Error::input(format!(
                    "the parts differ in width: {:?} has {} columns, not {d}",
                    p.at, p.cols
                ))
                .into());
            }
            let plan = params.plan(n, d)?;
            let manifest = job_key(queue, job, "parts");
            kept.add([manifest.clone()]);
            let text = serde_json::to_string(&parts).map_err(crate::queue::Error::from)?;
            let ttl_ms = kept.ttl().as_millis() as u64;
            queue.conn.query::<()>(redis::cmd("SET").arg(&manifest).arg(text).arg("PX").arg(ttl_ms)).await?;
            (plan, ShardSource::Parts(manifest))
        }
    })
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
        // Matrices are broadcast by reference: written once, read by every holder, deleted
        // after the step (and expiring anyway, should this process die meanwhile).
        let mut matrices = Vec::new();
        let prefix = job_key(&self.queue, &self.job, &format!("m:{}", self.seq));
        let wire = op.try_map(&mut |m: &Array2<f32>| {
            let key = format!("{prefix}:{}", matrices.len());
            matrices.push((key.clone(), m.clone()));
            Ok::<_, Error>(MatrixRef { at: DataRef::Key(key), rows: m.nrows(), cols: m.ncols() })
        })?;
        for (key, m) in &matrices {
            MatrixRef::write_expiring(&self.queue, DataRef::Key(key.clone()), m, Some(DATA_TTL)).await?;
        }
        let replies = self.gather(&wire, shards).await;
        let keys: Vec<&String> = matrices.iter().map(|(key, _)| key).collect();
        if !keys.is_empty() {
            self.queue.conn.query::<()>(redis::cmd("DEL").arg(&keys)).await?;
        }
        replies
    }

    /// Sends the step to every shard and waits for their replies, reassigning the shards of
    /// lost holders.
    async fn gather(&mut self, wire: &ShardOp<MatrixRef>, shards: &[usize]) -> Result<Vec<ShardReply>, Error> {
        let mut specs = Vec::with_capacity(shards.len());
        for (index, &shard) in shards.iter().enumerate() {
            let mut o = Outstanding { index, shard, attempt: 0 };
            let spec = self.spec(&mut o, wire)?;
            self.in_flight.insert(spec.id.clone().expect("step tasks are named"), o);
            specs.push(spec);
        }
        self.queue.enqueue_many(&specs).await?;
        let mut replies: Vec<Option<ShardReply>> = vec![None; shards.len()];
        let check_every = self.queue.config().lease / 3;
        while !self.in_flight.is_empty() {
            let now = Instant::now();
            if now > self.deadline {
                return Err(Error::Timeout(self.timeout));
            }
            let tick = self.checked + check_every;
            if now >= tick {
                self.refresh_live().await?;
                let ids: Vec<String> = self.in_flight.keys().cloned().collect();
                self.settle(&ids, wire, &mut replies, true).await?;
                continue;
            }
            let wait = (tick - now).min(self.deadline - now);
            let mut stop = self.stop.clone();
            let finished = tokio::select! {
                ids = self.listener.next(self.in_flight.len(), wait) => ids?,
                () = stopped(stop.as_mut()) => return Err(Error::Interrupted),
            };
            // Ids of tasks given up earlier (a lost holder's) may still arrive: skipped.
            let ids: Vec<String> = finished.into_iter().filter(|id| self.in_flight.contains_key(id)).collect();
            if !ids.is_empty() {
                self.settle(&ids, wire, &mut replies, false).await?;
            }
        }
        Ok(replies.into_iter().map(|r| r.expect("every shard answered")).collect())
    }

    /// Looks at the tasks `ids`: takes the replies of those that succeeded, sends again
    /// those that were cancelled, dead-lettered or (with `check_holders`) whose holder is lost.
    async fn settle(
        &mut self,
        ids: &[String],
        wire: &ShardOp<MatrixRef>,
        replies: &mut [Option<ShardReply>],
        check_holders: bool,
    ) -> Result<(), Error> {
        let statuses = self.queue.statuses(ids).await?;
        let mut succeeded = Vec::new();
        for (id, status) in ids.iter().zip(statuses) {
            let state = status.as_ref().map(|s| s.state);
            match state {
                Some(TaskState::Succeeded) => succeeded.push((id.clone(), status.expect("a record"))),
                Some(TaskState::Failed) => {
                    let shard = self.in_flight[id].shard;
                    return Err(failure(shard, status.and_then(|s| s.error).unwrap_or_default()));
                }
                Some(TaskState::Cancelled | TaskState::Dead) | None => self.reassign(id, wire).await?,
                _ => {
                    if check_holders && self.lost(self.in_flight[id].shard).await? {
                        self.queue.cancel(id).await?;
                        self.reassign(id, wire).await?;
                    }
                }
            }
        }
        for (id, reply) in self.take_replies(&succeeded).await? {
            let o = self.in_flight.remove(&id).expect("in flight");
            if let Some(h) = &mut self.holders[o.shard] {
                h.confirmed = true;
            }
            replies[o.index] = Some(reply);
        }
        Ok(())
    }

    /// Consumer names of the live workers that run shard steps, as of now.
    async fn refresh_live(&mut self) -> Result<(), Error> {
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
        self.live = live;
        self.checked = Instant::now();
        Ok(())
    }

    /// Whether the holder of `shard` is gone: no longer a live worker, or it took the
    /// shard's lease and let it lapse.
    async fn lost(&self, shard: usize) -> Result<bool, Error> {
        let Some(holder) = &self.holders[shard] else { return Ok(true) };
        if !self.live.contains(&holder.consumer) {
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

    /// Gives the shard of task `id` to another live worker than its lost holder and sends
    /// the step again.
    async fn reassign(&mut self, id: &str, wire: &ShardOp<MatrixRef>) -> Result<(), Error> {
        let mut o = self.in_flight.remove(id).expect("in flight");
        let lost = self.holders[o.shard].take().map(|h| h.consumer);
        if let Some(holder) = &lost {
            tracing::warn!(shard = o.shard, holder, "shard holder lost: giving the shard to another worker");
            self.live.retain(|w| w != holder);
        }
        let spec = self.spec(&mut o, wire)?;
        self.queue.enqueue(&spec).await?;
        self.in_flight.insert(spec.id.expect("step tasks are named"), o);
        Ok(())
    }

    /// The task of the step of `o` for the holder of its shard, choosing one if it has none:
    /// the live worker holding the fewest shards (ties by name, so assignment is stable).
    fn spec(&mut self, o: &mut Outstanding, wire: &ShardOp<MatrixRef>) -> Result<TaskSpec, Error> {
        let holder = match &self.holders[o.shard] {
            Some(h) if self.live.contains(&h.consumer) => h.consumer.clone(),
            _ => {
                let mut load: BTreeMap<&str, usize> = self.live.iter().map(|w| (w.as_str(), 0)).collect();
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
        let task = ShardTask {
            job: self.job.clone(),
            shard: o.shard,
            plan: self.plan,
            source: self.source.clone(),
            mean: self.mean.clone(),
            op: wire.clone(),
        };
        Ok(TaskSpec {
            id: Some(format!("kmeans-{}-{}-{}-{}", self.job, self.seq, o.shard, o.attempt)),
            queue: inbox(&holder),
            kind: wire.kind().to_owned(),
            payload: serde_json::to_value(&task).map_err(crate::queue::Error::from)?,
            max_retries: 2,
            retry_on_error: true,
            priority: Priority::Normal,
            result_ttl_s: 3600,
            notify: Some(channel(&self.job)),
        })
    }

    /// The replies of the tasks that succeeded: in their result when small, else under the
    /// key it names (read and deleted in one round trip).
    async fn take_replies(&self, succeeded: &[(String, TaskStatus)]) -> Result<Vec<(String, ShardReply)>, Error> {
        let mut replies = Vec::with_capacity(succeeded.len());
        let mut by_key = Vec::new();
        let mut pipe = redis::pipe();
        for (id, status) in succeeded {
            let shard = self.in_flight[id].shard;
            let result = status.result.as_ref();
            if let Some(inline) = result.and_then(|r| r.get("inline")) {
                let reply = serde_json::from_value(inline.clone())
                    .map_err(|e| Error::Shard { shard, reason: format!("unreadable reply: {e}") })?;
                replies.push((id.clone(), reply));
                continue;
            }
            let key = result.and_then(|r| r.get("reply")).and_then(Value::as_str).ok_or_else(|| Error::Shard {
                shard,
                reason: format!("the worker's result {result:?} names no reply"),
            })?;
            pipe.cmd("GETDEL").arg(key);
            by_key.push((id.clone(), shard, key.to_owned()));
        }
        if by_key.is_empty() {
            return Ok(replies);
        }
        let texts: Vec<Option<String>> = self.queue.conn.pipeline(&pipe).await?;
        for ((id, shard, key), text) in by_key.into_iter().zip(texts) {
            let text = text.ok_or_else(|| Error::Shard { shard, reason: format!("the reply key {key} is gone") })?;
            let reply = serde_json::from_str(&text)
                .map_err(|e| Error::Shard { shard, reason: format!("unreadable reply: {e}") })?;
            replies.push((id, reply));
        }
        Ok(replies)
    }

    /// Cancels the steps still in flight, tells the holders to drop the job's shards, and
    /// deletes the job's keys (shard blobs, list of parts, notifications).
    async fn release(&mut self) -> Result<(), Error> {
        for id in std::mem::take(&mut self.in_flight).into_keys() {
            self.queue.cancel(&id).await?;
        }
        let mut holders: Vec<&str> = self.holders.iter().flatten().map(|h| h.consumer.as_str()).collect();
        holders.sort_unstable();
        holders.dedup();
        let specs: Vec<TaskSpec> = holders
            .into_iter()
            .map(|holder| TaskSpec {
                // Named per holder: the same payload would otherwise be one task for all.
                id: Some(format!("kmeans-{}-release-{holder}", self.job)),
                result_ttl_s: 60,
                ..TaskSpec::new(inbox(holder), RELEASE, serde_json::json!({ "job": self.job }))
            })
            .collect();
        self.queue.enqueue_many(&specs).await?;
        self.kept.delete().await?;
        let notifications = self.queue.keys.notify(&channel(&self.job));
        self.queue.conn.query::<()>(redis::cmd("DEL").arg(notifications)).await?;
        Ok(())
    }
}

/// Resolves once `stop` holds `true`; never without one (or once its sender is gone).
async fn stopped(stop: Option<&mut watch::Receiver<bool>>) {
    if let Some(rx) = stop {
        if rx.wait_for(|s| *s).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// A failed shard task as an error: bad data is the caller's [`crate::Error::InvalidInput`].
fn failure(shard: usize, error: String) -> Error {
    match error.strip_prefix("invalid input: ") {
        Some(reason) => Error::Engine(crate::Error::input(reason)),
        None => Error::Shard { shard, reason: error },
    }
}
