//! The worker side: shards kept resident between steps, leased in Redis while the worker lives.
//!
//! A worker that runs a step of a shard it does not hold loads the shard from its source
//! (centring it with the mean the step carries) and keeps it in memory. It takes the shard's
//! lease (`{ns}:kmeans:{job}:lease:{shard}` = its consumer name, expiring after the queue's
//! lease) and extends it every lease / 3 while it holds the shard. A shard whose lease another
//! worker took (the coordinator thought this one lost), or that saw no step for
//! [`IDLE_RELEASE`], is dropped.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ndarray::Array2;
use redis::Script;
use serde::Deserialize;
use serde_json::{json, Value};

use super::op::ShardOp;
use super::remote::{job_key, reply_key, staged_reply_key, ShardTask, RELEASE};
use super::shard::ShardState;
use crate::queue::{eval_cmd, Queue, Registry, TaskContext, TaskError};

/// A shard that saw no step for this long is dropped (its coordinator is gone).
pub const IDLE_RELEASE: Duration = Duration::from_secs(600);

/// Seconds a reply kept by reference waits in Redis for its coordinator.
const REPLY_TTL_S: u64 = 600;

/// Replies up to this size travel in the task's result. The result passes through the
/// FINISH script, and Redis copies a script's arguments into Lua and back (about 1.5 µs a
/// KiB: 0.65 ms for a 440 KiB reply); past this, a plain SET (no copy) and a rename cost less.
const INLINE_REPLY_MAX: usize = 16 * 1024;

/// Publishes a step's reply, staged beforehand by a plain SET at KEYS[2], under its key
/// KEYS[3], unless its task was cancelled meanwhile (atomic with the queue's cancel script,
/// which flags a running task's record): then the staged copy is deleted, so that a
/// coordinator that gave up and deleted the replies it knew of never leaves one behind.
/// RENAME moves the value without copying it, TTL included. Returns 1 if it published it.
static PUBLISH_REPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('HGET', KEYS[1], 'cancel') == '1' then redis.call('DEL', KEYS[2]) return 0 end
         redis.call('RENAME', KEYS[2], KEYS[3])
         return 1",
    )
});

/// Extends a lease only if this holder has it (or nobody does). Returns 1 if it did.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
         if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
         return 0",
    )
});

/// Deletes a lease only if this holder has it.
static DROP: LazyLock<Script> = LazyLock::new(|| {
    Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
});

/// A shard held by this process.
#[derive(Debug)]
struct Resident {
    holder: String,
    lease_key: String,
    state: Mutex<ShardState<f32>>,
    touched: Mutex<Instant>,
}

/// A shard's job and index.
type ShardId = (String, usize);

/// Every shard this process holds.
static RESIDENT: LazyLock<Mutex<HashMap<ShardId, Arc<Resident>>>> = LazyLock::new(Mutex::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers the k-means shard steps (`kmeans.load_shard`, `kmeans.init_cost`,
/// `kmeans.step`, ...) and `kmeans.release` on a worker of `queue`.
pub fn register(registry: &mut Registry, queue: &Queue) {
    for kind in ShardOp::<()>::KINDS {
        let q = queue.clone();
        registry.register(kind, move |ctx, payload| run_step(&q, ctx, payload));
    }
    let q = queue.clone();
    registry.register(RELEASE, move |_, payload| release(&q, payload));
}

fn invalid(e: crate::Error) -> TaskError {
    match e {
        crate::Error::InvalidInput(reason) => TaskError::Invalid(reason),
        other => TaskError::Invalid(other.to_string()),
    }
}

fn block_on<T>(future: impl std::future::Future<Output = crate::queue::Result<T>>) -> Result<T, TaskError> {
    tokio::runtime::Handle::current().block_on(future).map_err(|e| TaskError::Failed(e.to_string()))
}

/// Runs one step on every shard of the task (those this worker holds), loading a shard first
/// if this worker does not hold it. The broadcast matrices are read once for all of them, and
/// the replies, in the task's shard order, go back in one result.
fn run_step(queue: &Queue, ctx: &TaskContext, payload: Value) -> Result<Value, TaskError> {
    let task: ShardTask = serde_json::from_value(payload).map_err(|e| TaskError::Invalid(format!("payload: {e}")))?;
    let op: ShardOp<Array2<f32>> = task.op.try_map(&mut |_, m| block_on(m.read(queue)))?;
    let mut replies = Vec::with_capacity(task.shards.len());
    for &shard in &task.shards {
        ctx.check_cancelled()?;
        let resident = resident(queue, ctx, &task, shard)?;
        let reply = {
            let mut state = lock(&resident.state);
            if let Some(mean) = &task.mean {
                state.centre(mean).map_err(invalid)?;
            }
            state.apply(&op).map_err(invalid)?
        };
        *lock(&resident.touched) = Instant::now();
        replies.push(reply);
    }
    let replies = serde_json::to_value(&replies).map_err(|e| TaskError::Failed(e.to_string()))?;
    let text = replies.to_string();
    // Small replies travel in the result (no extra round trips); large ones (k × d partial
    // sums) by reference, as no envelope cap applies to a key.
    if text.len() <= INLINE_REPLY_MAX.min(queue.config().max_envelope_bytes / 4) {
        return Ok(json!({ "inline": replies }));
    }
    let key = reply_key(queue, &task.job, &ctx.id);
    let staged = staged_reply_key(&key);
    // One round trip: the value staged (retried whole after a lost connection: both steps
    // are idempotent), then published.
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(&staged).arg(text).arg("EX").arg(REPLY_TTL_S).ignore();
    pipe.add_command(eval_cmd(&PUBLISH_REPLY, &[queue.keys.task(&ctx.id), staged, key.clone()]));
    if block_on(queue.conn.invoke_all::<i64>(&PUBLISH_REPLY, &pipe))? != [1] {
        return Err(TaskError::Cancelled);
    }
    Ok(json!({ "reply": key }))
}

/// Shard `shard` of `task` as this worker holds it, loaded from its source if needed.
fn resident(queue: &Queue, ctx: &TaskContext, task: &ShardTask, shard: usize) -> Result<Arc<Resident>, TaskError> {
    let id = (task.job.clone(), shard);
    if let Some(r) = lock(&RESIDENT).get(&id).filter(|r| r.holder == ctx.worker) {
        return Ok(r.clone());
    }
    let range = task.plan.range(shard);
    if range.is_empty() {
        return Err(TaskError::Invalid(format!("shard {shard} is outside the plan {:?}", task.plan)));
    }
    let loaded = tokio::runtime::Handle::current().block_on(task.source.load(queue, &task.plan, shard));
    let x = loaded.map_err(|e| match e {
        // The caller saw the file; this worker does not: say which worker, and what is expected.
        crate::Error::Io { .. } => TaskError::Invalid(format!(
            "worker {} cannot read the data: {e} (every worker must see the same files at the same paths)",
            ctx.worker
        )),
        other => invalid(other),
    })?;
    tracing::info!(job = task.job, shard, rows = range.len(), "loaded a k-means shard");
    let resident = Arc::new(Resident {
        holder: ctx.worker.clone(),
        lease_key: job_key(queue, &task.job, &format!("lease:{shard}")),
        state: Mutex::new(ShardState::new(shard, range.start, task.plan.d, x)),
        touched: Mutex::new(Instant::now()),
    });
    // The lease is taken when the shard is loaded and renewed in the background from then on.
    let lease_ms = queue.config().lease.as_millis() as u64;
    block_on(
        queue.conn.query::<()>(redis::cmd("SET").arg(&resident.lease_key).arg(&ctx.worker).arg("PX").arg(lease_ms)),
    )?;
    lock(&RESIDENT).insert(id, resident.clone());
    static RENEWER: OnceLock<()> = OnceLock::new();
    RENEWER.get_or_init(|| {
        tokio::runtime::Handle::current().spawn(renew_leases(queue.clone()));
    });
    Ok(resident)
}

/// Extends the leases of the shards held, every lease / 3, dropping those another worker
/// took over and those left idle.
async fn renew_leases(queue: Queue) {
    let lease = queue.config().lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        let held: Vec<_> = lock(&RESIDENT).iter().map(|(id, r)| (id.clone(), r.clone())).collect();
        for (id, r) in held {
            let idle = lock(&r.touched).elapsed() > IDLE_RELEASE;
            let script = if idle { &*DROP } else { &*RENEW };
            let mut call = script.prepare_invoke();
            call.key(&r.lease_key).arg(&r.holder).arg(lease.as_millis() as u64);
            match queue.conn.invoke::<i64>(&call).await {
                Ok(renewed) if idle || renewed == 0 => {
                    tracing::info!(job = id.0, shard = id.1, idle, "dropping a k-means shard");
                    lock(&RESIDENT).remove(&id);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "renewing a shard lease failed"),
            }
        }
    }
}

/// `kmeans.release {job}`: drops the job's shards held here and their leases.
fn release(queue: &Queue, payload: Value) -> Result<Value, TaskError> {
    #[derive(Deserialize)]
    struct Release {
        job: String,
    }
    let Release { job } = serde_json::from_value(payload).map_err(|e| TaskError::Invalid(format!("payload: {e}")))?;
    let dropped: Vec<Arc<Resident>> = {
        let mut resident = lock(&RESIDENT);
        let ids: Vec<_> = resident.keys().filter(|(j, _)| *j == job).cloned().collect();
        ids.iter().filter_map(|id| resident.remove(id)).collect()
    };
    for r in &dropped {
        let mut call = DROP.prepare_invoke();
        call.key(&r.lease_key).arg(&r.holder);
        block_on(queue.conn.invoke::<i64>(&call))?;
    }
    Ok(json!({ "released": dropped.len() }))
}
