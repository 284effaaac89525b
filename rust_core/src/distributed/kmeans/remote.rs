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
use super::source::ShardSource;
use super::{ShardExecutor, ShardPlan, ShardedKMeans};
use crate::cluster::kmeans::KMeansModel;
use crate::cluster::{validate_data, Progress};
use crate::distributed::{KeptKeys, DATA_TTL};
use crate::npy::NpyFile;
use crate::queue::{inbox, DataRef, Finished, Listener, MatrixRef, Outcome, Priority, Queue, TaskSpec, TaskState};

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
    /// Float32 .npy files every worker reads at the same paths, whose rows, one after the
    /// other, are the data (one file, or a file per part). This process reads their headers
    /// for the plan; each holder reads the rows of its shards.
    Npy(Vec<PathBuf>),
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
    /// The shards of the step this worker holds (or is to load), in reply order.
    pub(crate) shards: Vec<usize>,
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

/// Where the step task `task` of job `job` leaves a reply too large for its result.
pub(crate) fn reply_key(queue: &Queue, job: &str, task: &str) -> String {
    job_key(queue, job, &format!("reply:{task}"))
}

/// Where a worker stages the reply at `reply_key` before publishing it (renaming it there).
pub(crate) fn staged_reply_key(reply_key: &str) -> String {
    format!("{reply_key}:staged")
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

/// A step sent to one holder for its shards and not answered yet.
#[derive(Debug)]
struct Outstanding {
    holder: String,
    /// The shards, each with the position of its reply among the step's replies.
    shards: Vec<(usize, usize)>,
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
    /// Step tasks sent so far (their ids are numbered).
    sent: u64,
    /// Versioned broadcast matrices stored in Redis (key, values), by version: kept while
    /// steps name them.
    broadcast: BTreeMap<u64, (String, Array2<f32>)>,
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
            sent: 0,
            broadcast: BTreeMap::new(),
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
            let ttl_ms = kept.ttl().as_millis() as u64;
            for s in 0..plan.shards() {
                let key = ShardSource::shard_key(&prefix, s);
                kept.add([key.clone()]);
                let bytes = le_bytes(x.slice(s![plan.range(s), ..]));
                queue.conn.query::<()>(redis::cmd("SET").arg(&key).arg(bytes).arg("PX").arg(ttl_ms)).await?;
            }
            (plan, ShardSource::Keys(prefix))
        }
        ClusterData::Npy(paths) => {
            let (mut n, mut d) = (0, None);
            for path in &paths {
                let NpyFile { rows, cols, .. } = NpyFile::open(path)?;
                if d.is_some_and(|d| d != cols) {
                    return Err(crate::Error::input(format!(
                        "{} has {cols} columns, the files before it {}",
                        path.display(),
                        d.unwrap_or_default()
                    ))
                    .into());
                }
                (n, d) = (n + rows, Some(cols));
            }
            let d = d.ok_or_else(|| crate::Error::input("no .npy file to fit"))?;
            (params.plan(n, d)?, ShardSource::Npy(paths))
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

/// The raw little-endian float32 values of `m`, row-major: what a [`MatrixRef`] reads.
fn le_bytes(m: ArrayView2<'_, f32>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(m.len() * 4);
    for v in m {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
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
        let (wire, once) = self.broadcast(op).await?;
        let replies = self.gather(&wire, shards).await;
        if !once.is_empty() {
            self.queue.conn.query::<()>(redis::cmd("DEL").arg(&once)).await?;
        }
        replies
    }

    /// Stores the matrices of `op` for the holders to read, in one round trip, and returns
    /// the step as sent with the keys of the matrices that live for this step only. Matrices
    /// are broadcast by reference: written once, read once by each holder. A versioned one
    /// (centres, candidates) stays stored while steps name it, so the previous centres a
    /// Lloyd step names are not sent again (candidates grow under one version: a changed
    /// matrix is stored anew); those no step names any more are deleted. All expire anyway,
    /// should this process die meanwhile.
    async fn broadcast(&mut self, op: &ShardOp<Array2<f32>>) -> Result<(ShardOp<MatrixRef>, Vec<String>), Error> {
        let prefix = job_key(&self.queue, &self.job, &format!("m:{}", self.seq));
        let ttl_ms = DATA_TTL.as_millis() as u64;
        let mut pipe = redis::pipe();
        let (mut kept, mut once, mut written) = (BTreeMap::new(), Vec::new(), 0usize);
        let wire = op.try_map(&mut |version: Option<u64>, m: &Array2<f32>| {
            let stored = version.and_then(|v| self.broadcast.get(&v)).filter(|(_, held)| held == m);
            let key = match stored {
                Some((key, _)) => key.clone(),
                None => {
                    let key = format!("{prefix}:{written}");
                    written += 1;
                    pipe.cmd("SET").arg(&key).arg(le_bytes(m.view())).arg("PX").arg(ttl_ms).ignore();
                    key
                }
            };
            match version {
                Some(v) => {
                    kept.insert(v, (key.clone(), m.clone()));
                }
                None => once.push(key.clone()),
            }
            Ok::<_, Error>(MatrixRef { at: DataRef::Key(key), rows: m.nrows(), cols: m.ncols() })
        })?;
        let kept_keys: Vec<&String> = kept.values().map(|(key, _)| key).collect();
        let stale: Vec<&String> =
            self.broadcast.values().map(|(key, _)| key).filter(|k| !kept_keys.contains(k)).collect();
        if !stale.is_empty() {
            pipe.cmd("DEL").arg(stale).ignore();
        }
        if !pipe.is_empty() {
            self.queue.conn.pipeline::<()>(&pipe).await?;
        }
        self.broadcast = kept;
        Ok((wire, once))
    }

    /// Sends the step to every shard, one task per holder for all its shards, and waits for
    /// the replies, reassigning the shards of lost holders.
    async fn gather(&mut self, wire: &ShardOp<MatrixRef>, shards: &[usize]) -> Result<Vec<ShardReply>, Error> {
        let asked: Vec<(usize, usize)> = shards.iter().copied().enumerate().collect();
        self.send(&asked, wire).await?;
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
                let all = self.in_flight.keys().map(|id| Finished { id: id.clone(), outcome: None }).collect();
                self.settle(all, wire, &mut replies, true).await?;
                continue;
            }
            let wait = (tick - now).min(self.deadline - now);
            let mut stop = self.stop.clone();
            let finished = tokio::select! {
                finished = self.listener.next_finished(self.in_flight.len(), wait) => finished?,
                () = stopped(stop.as_mut()) => return Err(Error::Interrupted),
            };
            // Tasks given up earlier (a lost holder's) may still be heard of: skipped.
            let finished: Vec<Finished> = finished.into_iter().filter(|f| self.in_flight.contains_key(&f.id)).collect();
            if !finished.is_empty() {
                self.settle(finished, wire, &mut replies, false).await?;
            }
        }
        Ok(replies.into_iter().map(|r| r.expect("every shard answered")).collect())
    }

    /// Looks at the tasks `finished`: takes the replies of those that succeeded, sends again
    /// those that were cancelled, dead-lettered or (with `check_holders`) whose holder is lost.
    async fn settle(
        &mut self,
        finished: Vec<Finished>,
        wire: &ShardOp<MatrixRef>,
        replies: &mut [Option<ShardReply>],
        check_holders: bool,
    ) -> Result<(), Error> {
        let mut succeeded = Vec::new();
        for (id, outcome) in self.outcomes(finished).await? {
            match outcome.as_ref().map(|o| o.state) {
                Some(TaskState::Succeeded) => succeeded.push((id, outcome.expect("an outcome"))),
                Some(TaskState::Failed) => {
                    let shard = self.in_flight[&id].shards[0].1;
                    return Err(failure(shard, outcome.and_then(|o| o.error).unwrap_or_default()));
                }
                Some(TaskState::Cancelled | TaskState::Dead) | None => self.reassign(&id, wire).await?,
                _ => {
                    if check_holders && self.lost(&self.in_flight[&id]).await? {
                        self.queue.cancel(&id).await?;
                        self.reassign(&id, wire).await?;
                    }
                }
            }
        }
        for (id, answers) in self.take_replies(&succeeded).await? {
            let o = self.in_flight.remove(&id).expect("in flight");
            for ((index, shard), reply) in o.shards.into_iter().zip(answers) {
                if let Some(h) = &mut self.holders[shard] {
                    h.confirmed = true;
                }
                replies[index] = Some(reply);
            }
        }
        Ok(())
    }

    /// The state, result and error of each task: as its notification carried them (a small
    /// outcome, such as a reply by reference, travels with it), else read from its record (one
    /// round trip for all those); `None` for a task without a record.
    async fn outcomes(&self, finished: Vec<Finished>) -> Result<Vec<(String, Option<Outcome>)>, Error> {
        let unheard: Vec<String> = finished.iter().filter(|f| f.outcome.is_none()).map(|f| f.id.clone()).collect();
        let mut read = self.queue.statuses(&unheard).await?.into_iter();
        Ok(finished
            .into_iter()
            .map(|f| {
                let outcome = f.outcome.or_else(|| {
                    let status = read.next().flatten()?;
                    Some(Outcome { state: status.state, result: status.result, error: status.error })
                });
                (f.id, outcome)
            })
            .collect())
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

    /// Whether the holder of a task's shards is gone: no longer a live worker, or it took
    /// the lease of one of them and let it lapse.
    async fn lost(&self, task: &Outstanding) -> Result<bool, Error> {
        if !self.live.contains(&task.holder) {
            return Ok(true);
        }
        for &(_, shard) in &task.shards {
            let Some(holder) = &self.holders[shard] else { return Ok(true) };
            if !holder.confirmed {
                continue;
            }
            let lease: Option<String> = self.queue.conn.query(redis::cmd("GET").arg(self.lease_key(shard))).await?;
            if lease.as_deref() != Some(holder.consumer.as_str()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn lease_key(&self, shard: usize) -> String {
        job_key(&self.queue, &self.job, &format!("lease:{shard}"))
    }

    /// Gives the shards of task `id` to other live workers than its lost holder and sends
    /// the step again.
    async fn reassign(&mut self, id: &str, wire: &ShardOp<MatrixRef>) -> Result<(), Error> {
        let o = self.in_flight.remove(id).expect("in flight");
        tracing::warn!(shards = ?o.shards, holder = o.holder, "shard holder lost: giving its shards to other workers");
        self.live.retain(|w| *w != o.holder);
        for &(_, shard) in &o.shards {
            self.holders[shard] = None;
        }
        self.send(&o.shards, wire).await
    }

    /// Sends the step of `shards` (each with the position of its reply) to their holders,
    /// one task per holder, in one round trip.
    async fn send(&mut self, shards: &[(usize, usize)], wire: &ShardOp<MatrixRef>) -> Result<(), Error> {
        let mut by_holder: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for &(index, shard) in shards {
            by_holder.entry(self.holder(shard)?).or_default().push((index, shard));
        }
        let mut specs = Vec::with_capacity(by_holder.len());
        for (holder, shards) in by_holder {
            self.sent += 1;
            let task = ShardTask {
                job: self.job.clone(),
                shards: shards.iter().map(|&(_, shard)| shard).collect(),
                plan: self.plan,
                source: self.source.clone(),
                mean: self.mean.clone(),
                op: wire.clone(),
            };
            let spec = TaskSpec {
                id: Some(format!("kmeans-{}-{}-{}", self.job, self.seq, self.sent)),
                queue: inbox(&holder),
                kind: wire.kind().to_owned(),
                payload: serde_json::to_value(&task).map_err(crate::queue::Error::from)?,
                max_retries: 2,
                retry_on_error: true,
                priority: Priority::Normal,
                result_ttl_s: 3600,
                notify: Some(channel(&self.job)),
            };
            self.in_flight.insert(spec.id.clone().expect("step tasks are named"), Outstanding { holder, shards });
            specs.push(spec);
        }
        self.queue.enqueue_many(&specs).await?;
        Ok(())
    }

    /// The holder of `shard`, choosing one if it has none (or a lost one): the live worker
    /// holding the fewest shards (ties by name, so assignment is stable).
    fn holder(&mut self, shard: usize) -> Result<String, Error> {
        if let Some(h) = &self.holders[shard] {
            if self.live.contains(&h.consumer) {
                return Ok(h.consumer.clone());
            }
        }
        let mut load: BTreeMap<&str, usize> = self.live.iter().map(|w| (w.as_str(), 0)).collect();
        for h in self.holders.iter().flatten() {
            if let Some(n) = load.get_mut(h.consumer.as_str()) {
                *n += 1;
            }
        }
        let chosen = load.iter().min_by_key(|(w, n)| (**n, **w)).map(|(w, _)| (*w).to_owned());
        let chosen = chosen.ok_or(Error::NoWorkers)?;
        self.holders[shard] = Some(Holder { consumer: chosen.clone(), confirmed: false });
        Ok(chosen)
    }

    /// The replies of the tasks that succeeded, one per shard of each: in their result when
    /// small, else under the key it names (read and deleted in one round trip).
    async fn take_replies(&self, succeeded: &[(String, Outcome)]) -> Result<Vec<(String, Vec<ShardReply>)>, Error> {
        let mut replies = Vec::with_capacity(succeeded.len());
        let mut by_key = Vec::new();
        let mut pipe = redis::pipe();
        for (id, outcome) in succeeded {
            let result = outcome.result.as_ref();
            if let Some(inline) = result.and_then(|r| r.get("inline")) {
                let answers = serde_json::from_value(inline.clone()).map_err(|e| e.to_string());
                replies.push((id.clone(), self.answers(id, answers)?));
                continue;
            }
            let key = result.and_then(|r| r.get("reply")).and_then(Value::as_str).ok_or_else(|| Error::Shard {
                shard: self.in_flight[id].shards[0].1,
                reason: format!("the worker's result {result:?} names no reply"),
            })?;
            pipe.cmd("GETDEL").arg(key);
            by_key.push((id.clone(), key.to_owned()));
        }
        if by_key.is_empty() {
            return Ok(replies);
        }
        let texts: Vec<Option<String>> = self.queue.conn.pipeline(&pipe).await?;
        for ((id, key), text) in by_key.into_iter().zip(texts) {
            let answers = match text {
                Some(text) => serde_json::from_str(&text).map_err(|e| e.to_string()),
                None => Err(format!("the reply key {key} is gone")),
            };
            replies.push((id.clone(), self.answers(&id, answers)?));
        }
        Ok(replies)
    }

    /// The replies of task `id`, checked to be one per shard it was sent.
    fn answers(&self, id: &str, read: Result<Vec<ShardReply>, String>) -> Result<Vec<ShardReply>, Error> {
        let shards = &self.in_flight[id].shards;
        let reason = match read {
            Ok(answers) if answers.len() == shards.len() => return Ok(answers),
            Ok(answers) => {
                format!("{} replies for {} shards: is the worker of another version?", answers.len(), shards.len())
            }
            Err(e) => format!("unreadable reply: {e}"),
        };
        Err(Error::Shard { shard: shards[0].1, reason })
    }

    /// Cancels the steps still in flight, tells the holders to drop the job's shards, and
    /// deletes the job's keys (shard blobs, list of parts, notifications).
    async fn release(&mut self) -> Result<(), Error> {
        let mut replies = Vec::new();
        for id in std::mem::take(&mut self.in_flight).into_keys() {
            self.queue.cancel(&id).await?;
            // Published before the cancel, if at all: none can be published after it. A copy
            // staged by a worker that died before publishing it goes too.
            let reply = reply_key(&self.queue, &self.job, &id);
            replies.push(staged_reply_key(&reply));
            replies.push(reply);
        }
        if !replies.is_empty() {
            self.queue.conn.query::<()>(redis::cmd("DEL").arg(replies)).await?;
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
        let broadcast: Vec<String> = std::mem::take(&mut self.broadcast).into_values().map(|(key, _)| key).collect();
        if !broadcast.is_empty() {
            self.queue.conn.query::<()>(redis::cmd("DEL").arg(broadcast)).await?;
        }
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
