//! [`Queue`]: the handle producers, observers and workers share.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::{Client, IntoConnectionInfo, Value as RedisValue};
use serde_json::Value;

use super::connection::{eval_cmd, Connection};
use super::keys::{inbox, Keys};
use super::scripts;
use super::{
    DeadLetter, Envelope, Error, QueueConfig, QueueStats, Result, Stats, TaskSpec, TaskState, TaskStatus, TlsFiles,
    WorkerInfo,
};

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was pending and will not run.
    Cancelled,
    /// It is running; its worker hears of it at once (or, should the message be missed, at
    /// its next heartbeat) and the handler stops at its next `is_cancelled` check.
    Requested,
    /// It had already finished in this state; nothing changed.
    AlreadyFinished(TaskState),
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Entries idle past their lease that were put back or dead-lettered.
    pub reclaimed: u64,
    /// Retries whose backoff had passed, put back on their stream.
    pub promoted: u64,
    /// Consumers removed (dead workers with nothing pending).
    pub pruned_consumers: u64,
}

/// A work queue on Redis Streams. Cheap to clone: clones share one connection.
///
/// Example (needs a Redis server, so not run here):
/// ```no_run
/// # async fn demo() -> ferrocluster_core::queue::Result<()> {
/// use ferrocluster_core::queue::{Queue, QueueConfig, TaskSpec};
/// let queue = Queue::connect("redis://127.0.0.1:6379/0", QueueConfig::default()).await?;
/// let id = queue.enqueue(&TaskSpec::new("default", "sleep", serde_json::json!({"ms": 10}))).await?;
/// let done = queue.wait(&[id], std::time::Duration::from_secs(5)).await?;
/// assert!(done[0].state.is_terminal());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Queue {
    pub(crate) client: Client,
    pub(crate) conn: Connection,
    pub(crate) config: QueueConfig,
    pub(crate) keys: Keys,
}

impl Queue {
    /// Connects (AUTH/ACL user and password from the URL, `redis://user:pass@host:port/db`;
    /// `rediss://` for TLS, verified with `config.tls`), checks the server answers, and warns when its configuration puts
    /// tasks at risk (an eviction policy other than `noeviction`, or no AOF).
    ///
    /// # Errors
    /// [`Error::Url`] (also for certificates given with a `redis://` URL, which would go in
    /// clear, and for certificate files that cannot be read), [`Error::Auth`] when Redis
    /// refuses the credentials, [`Error::Unavailable`] when it cannot be reached within
    /// `reconnect_timeout` (a TLS handshake that fails, e.g. an untrusted certificate, too).
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Self> {
        config.validate()?;
        let client = open_client(url, &config.tls)?;
        let conn = Connection::new(client.clone(), config.response_timeout, config.reconnect_timeout);
        let keys = Keys::new(&config.namespace);
        let queue = Queue { client, conn, config, keys };
        queue.warn_about_durability().await?;
        Ok(queue)
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Adds a task. Returns its id; enqueuing a task whose id already exists (the same
    /// caller-given id, or the same kind and payload) adds nothing and returns that id.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past `max_envelope_bytes`, [`Error::Invalid`] for a bad spec.
    pub async fn enqueue(&self, spec: &TaskSpec) -> Result<String> {
        Ok(self.enqueue_new(spec).await?.0)
    }

    /// Like [`Queue::enqueue`], also telling whether the task was new (`false`: de-duplicated).
    ///
    /// # Errors
    /// As [`Queue::enqueue`].
    pub async fn enqueue_new(&self, spec: &TaskSpec) -> Result<(String, bool)> {
        let mut added = self.enqueue_many(std::slice::from_ref(spec)).await?;
        Ok(added.pop().expect("one outcome per spec"))
    }

    /// Adds many tasks in one round trip (one atomic enqueue script per [`scripts::BATCH`]
    /// tasks), in order. Each is de-duplicated as by [`Queue::enqueue`]; returns (id, whether
    /// it was new) per spec.
    ///
    /// # Errors
    /// As [`Queue::enqueue`], for the first bad spec, before anything is sent.
    pub async fn enqueue_many(&self, specs: &[TaskSpec]) -> Result<Vec<(String, bool)>> {
        let mut tasks = Vec::with_capacity(specs.len());
        for spec in specs {
            let envelope = Envelope::from_spec(spec)?;
            let text = envelope.to_json(self.config.max_envelope_bytes)?;
            tasks.push((spec, envelope.id, text));
        }
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for chunk in tasks.chunks(scripts::BATCH) {
            let mut keys = vec![self.keys.queues()];
            for (spec, id, _) in chunk {
                keys.extend([self.keys.task(id), self.keys.stream(&spec.queue, spec.priority)]);
            }
            let mut cmd = eval_cmd(&scripts::ENQUEUE, &keys);
            cmd.arg(&self.config.group);
            for (spec, id, text) in chunk {
                cmd.arg(id)
                    .arg(&spec.queue)
                    .arg(&spec.kind)
                    .arg(spec.priority.as_str())
                    .arg(text)
                    .arg(spec.result_ttl_s)
                    .arg(spec.notify.as_deref().map(|channel| self.keys.notify(channel)).unwrap_or_default());
            }
            pipe.add_command(cmd);
        }
        let added: Vec<Vec<i64>> = self.conn.invoke_all(&scripts::ENQUEUE, &pipe).await?;
        Ok(tasks.into_iter().zip(added.into_iter().flatten()).map(|((_, id, _), added)| (id, added == 1)).collect())
    }

    /// A task's status.
    ///
    /// # Errors
    /// [`Error::NoSuchTask`] when there is no record (never enqueued, or expired).
    pub async fn status(&self, id: &str) -> Result<TaskStatus> {
        let ids = [id.to_owned()];
        self.statuses(&ids).await?.pop().flatten().ok_or_else(|| Error::NoSuchTask(id.to_owned()))
    }

    /// The statuses of many tasks in one round trip, in the order of `ids`; `None` for a task
    /// without a record (never enqueued, or expired).
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn statuses(&self, ids: &[String]) -> Result<Vec<Option<TaskStatus>>> {
        let mut statuses = Vec::with_capacity(ids.len());
        // One round trip per thousand ids keeps a reply within a few megabytes.
        for batch in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in batch {
                pipe.cmd("HMGET").arg(self.keys.task(id)).arg(&TaskStatus::FIELDS[..]);
            }
            let records: Vec<Vec<Option<String>>> = self.conn.pipeline(&pipe).await?;
            statuses.extend(records.into_iter().map(TaskStatus::from_fields));
        }
        Ok(statuses)
    }

    /// The statuses of many tasks, in the order of `ids`, every one of which must have a record.
    ///
    /// # Errors
    /// [`Error::NoSuchTask`] naming the first id without a record.
    pub async fn known_statuses(&self, ids: &[String]) -> Result<Vec<TaskStatus>> {
        self.statuses(ids)
            .await?
            .into_iter()
            .zip(ids)
            .map(|(status, id)| status.ok_or_else(|| Error::NoSuchTask(id.clone())))
            .collect()
    }

    /// A task's result: `Some` once it succeeded, `None` before or if it ended otherwise
    /// ([`Queue::status`] says how).
    ///
    /// # Errors
    /// As [`Queue::status`].
    pub async fn result(&self, id: &str) -> Result<Option<Value>> {
        Ok(self.status(id).await?.result)
    }

    /// Waits until every task is finished or `timeout` passes; returns their statuses in
    /// the order of `ids` either way (check [`TaskState::is_terminal`]).
    ///
    /// # Errors
    /// As [`Queue::status`].
    pub async fn wait(&self, ids: &[String], timeout: Duration) -> Result<Vec<TaskStatus>> {
        let deadline = Instant::now() + timeout;
        // Polling starts fast (short tasks) and slows down to spare Redis on long ones.
        let mut pause = Duration::from_millis(1);
        loop {
            let statuses = self.known_statuses(ids).await?;
            if statuses.iter().all(|s| s.state.is_terminal()) || Instant::now() >= deadline {
                return Ok(statuses);
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Cancels a task: at once if pending; if running, its worker is told through the cancel
    /// channel (and the flag its heartbeats read) and the task ends `Cancelled` if the handler
    /// stops.
    ///
    /// # Errors
    /// [`Error::NoSuchTask`].
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let mut call = scripts::CANCEL.prepare_invoke();
        call.key(self.keys.task(id)).key(self.keys.delayed()).key(self.keys.stats()).arg(&self.config.group).arg(id);
        let state: String = self.conn.invoke(&call).await?;
        match state.as_str() {
            "" => Err(Error::NoSuchTask(id.to_owned())),
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "cancelling" => {
                self.publish_cancel(id).await;
                Ok(CancelOutcome::Requested)
            }
            other => Ok(CancelOutcome::AlreadyFinished(
                other
                    .strip_prefix("was:")
                    .and_then(TaskState::parse)
                    .ok_or_else(|| Error::Redis(format!("unexpected cancel reply {other:?}")))?,
            )),
        }
    }

    /// Queue lengths, pending entries, consumers, dead letters, live workers and counters,
    /// per queue and for the whole namespace.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn stats(&self) -> Result<Stats> {
        let workers = self.workers().await?;
        let mut queues = Vec::new();
        for name in self.queue_names().await? {
            let mut stats = QueueStats {
                name: name.clone(),
                length: 0,
                pending: 0,
                consumers: 0,
                workers: workers.iter().filter(|w| w.queues().any(|q| q == name)).count() as u64,
                counters: self.conn.query(redis::cmd("HGETALL").arg(self.keys.queue_stats(&name))).await?,
            };
            for stream in self.keys.streams(&name) {
                let length: u64 = self.conn.query(redis::cmd("XLEN").arg(&stream)).await?;
                stats.length += length;
                let Some(group) = self.group_info(&stream).await? else { continue };
                stats.pending += group.get("pending").copied().unwrap_or(0);
                stats.consumers += group.get("consumers").copied().unwrap_or(0);
            }
            queues.push(stats);
        }
        let delayed = self.conn.query(redis::cmd("ZCARD").arg(self.keys.delayed())).await?;
        let dead_letters = self.conn.query(redis::cmd("XLEN").arg(self.keys.dead())).await?;
        let counters: BTreeMap<String, u64> = self.conn.query(redis::cmd("HGETALL").arg(self.keys.stats())).await?;
        Ok(Stats { queues, delayed, dead_letters, workers, counters })
    }

    /// The oldest `count` dead letters.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>> {
        self.dead_letters_after(None, count).await
    }

    /// Up to `count` dead letters following the entry `after` (from the oldest when `None`):
    /// pass the last entry of one page to get the next.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn dead_letters_after(&self, after: Option<&str>, count: usize) -> Result<Vec<DeadLetter>> {
        let start = after.map_or_else(|| "-".to_owned(), |entry| format!("({entry}"));
        let reply: redis::streams::StreamRangeReply = self
            .conn
            .query(redis::cmd("XRANGE").arg(self.keys.dead()).arg(start).arg("+").arg("COUNT").arg(count))
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| {
                let field = |name: &str| entry.get::<String>(name).filter(|v| !v.is_empty());
                let raw = field("task").unwrap_or_default();
                // Read loosely: a dead envelope may be malformed or of another version.
                let envelope: Value = serde_json::from_str(&raw).unwrap_or_default();
                let from_envelope = |name: &str| envelope.get(name).and_then(Value::as_str).map(str::to_owned);
                DeadLetter {
                    id: field("id").or_else(|| from_envelope("id")),
                    kind: from_envelope("kind"),
                    queue: field("stream").and_then(|s| self.keys.queue_of(&s).map(str::to_owned)),
                    deliveries: field("deliveries").and_then(|d| d.parse().ok()),
                    reason: field("reason").unwrap_or_default(),
                    at_ms: field("at_ms").and_then(|t| t.parse().ok()).unwrap_or(0),
                    raw,
                    entry: entry.id,
                }
            })
            .collect())
    }

    /// Puts a dead-lettered task back on its stream with its counters reset.
    ///
    /// # Errors
    /// [`Error::NoSuchTask`]; [`Error::Invalid`] when the task is not dead.
    pub async fn retry_dead(&self, id: &str) -> Result<()> {
        let mut call = scripts::RETRY_DEAD.prepare_invoke();
        call.key(self.keys.task(id)).key(self.keys.dead());
        let done: i64 = self.conn.invoke(&call).await?;
        if done == 1 {
            return Ok(());
        }
        let state = self.status(id).await?.state;
        Err(Error::invalid("task", format!("`{id}` is {state:?}, not dead")))
    }

    /// Reclaims tasks idle past their lease, promotes retries whose backoff passed, and
    /// prunes consumers of dead workers. Every worker runs it periodically; it is atomic per
    /// stream, so any number may run at once.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let mut call = scripts::PROMOTE.prepare_invoke();
        call.key(self.keys.delayed()).arg(self.keys.task_prefix()).arg(100);
        report.promoted = self.conn.invoke(&call).await?;
        // A consumer idle this long has neither read nor heartbeated: its worker is gone.
        let idle_ms = self.config.lease.max(self.config.block).as_millis() as u64 * 5;
        for name in self.queue_names().await? {
            for stream in self.keys.streams(&name) {
                let mut call = scripts::SWEEP.prepare_invoke();
                call.key(&stream)
                    .key(self.keys.dead())
                    .key(self.keys.stats())
                    .arg(&self.config.group)
                    .arg("sweeper")
                    .arg(self.config.lease.as_millis() as u64)
                    .arg(self.config.max_deliveries)
                    .arg(100)
                    .arg(self.keys.task_prefix());
                report.reclaimed += nothing_if_absent(self.conn.invoke::<u64>(&call).await)?;
                report.pruned_consumers += self.prune_consumers(&stream, idle_ms, "").await?;
            }
            if let Some(consumer) = name.strip_prefix(&inbox("")) {
                self.prune_inbox(consumer).await?;
            }
        }
        Ok(report)
    }

    /// Deletes the inbox of a worker that is gone (its record deleted or expired) once it is
    /// empty; tasks still in it wait for their producer to cancel them.
    pub(crate) async fn prune_inbox(&self, consumer: &str) -> Result<()> {
        let name = inbox(consumer);
        let mut call = scripts::PRUNE_INBOX.prepare_invoke();
        call.key(self.keys.worker(consumer))
            .key(self.keys.stream(&name, super::Priority::Normal))
            .key(self.keys.queues())
            .arg(&name);
        self.conn.invoke::<i64>(&call).await.map(drop)
    }

    /// Removes consumers with nothing pending that are idle past `idle_ms`, or named `leaving`.
    pub(crate) async fn prune_consumers(&self, stream: &str, idle_ms: u64, leaving: &str) -> Result<u64> {
        let mut call = scripts::PRUNE_CONSUMERS.prepare_invoke();
        call.key(stream).arg(&self.config.group).arg(idle_ms).arg(leaving);
        nothing_if_absent(self.conn.invoke::<u64>(&call).await)
    }

    /// Creates the consumer groups of a queue's streams if missing (from entry 0, so that
    /// nothing enqueued earlier is skipped).
    pub(crate) async fn ensure_groups(&self, queue: &str) -> Result<()> {
        for stream in self.keys.streams(queue) {
            let created: Result<()> = self
                .conn
                .query(redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg(&self.config.group).arg("0").arg("MKSTREAM"))
                .await;
            match created {
                Err(Error::Redis(e)) if e.contains("BUSYGROUP") => {}
                other => other?,
            }
        }
        self.conn.query::<()>(redis::cmd("SADD").arg(self.keys.queues()).arg(queue)).await
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.conn.query(redis::cmd("SMEMBERS").arg(self.keys.queues())).await?;
        names.sort();
        Ok(names)
    }

    /// XINFO GROUPS of a stream, as the numeric fields of our group.
    async fn group_info(&self, stream: &str) -> Result<Option<HashMap<String, u64>>> {
        let groups: Vec<HashMap<String, RedisValue>> =
            match self.conn.query(redis::cmd("XINFO").arg("GROUPS").arg(stream)).await {
                Err(Error::Redis(e)) if e.contains("no such key") => return Ok(None),
                other => other?,
            };
        Ok(groups
            .into_iter()
            .find(|g| {
                g.get("name").and_then(|n| redis::from_redis_value_ref::<String>(n).ok()).as_deref()
                    == Some(&self.config.group)
            })
            .map(|g| {
                g.iter().filter_map(|(k, v)| Some((k.clone(), redis::from_redis_value_ref::<u64>(v).ok()?))).collect()
            }))
    }

    /// The live workers (records refreshed within the last three leases), forgetting the
    /// ones whose record expired.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let names: Vec<String> = self.conn.query(redis::cmd("ZRANGE").arg(self.keys.workers()).arg(0).arg(-1)).await?;
        let mut workers = Vec::new();
        for consumer in names {
            let key = self.keys.worker(&consumer);
            let mut pipe = redis::pipe();
            pipe.hgetall(&key).pttl(&key);
            let (fields, ttl_ms): (BTreeMap<String, String>, i64) = self.conn.pipeline(&pipe).await?;
            if fields.is_empty() {
                // Its record expired: the worker stopped heartbeating without saying goodbye.
                self.conn.query::<()>(redis::cmd("ZREM").arg(self.keys.workers()).arg(&consumer)).await?;
                continue;
            }
            // The record is rewritten with a TTL of 3 leases at each heartbeat.
            let heartbeat_age_ms = fields
                .get("lease_ms")
                .and_then(|l| l.parse::<u64>().ok())
                .map(|lease_ms| (3 * lease_ms).saturating_sub(ttl_ms.max(0) as u64));
            workers.push(WorkerInfo { consumer, heartbeat_age_ms, fields });
        }
        Ok(workers)
    }

    /// Tasks survive a Redis restart only with AOF, and only `noeviction` stops Redis from
    /// dropping queue keys under memory pressure: say so once, at start.
    async fn warn_about_durability(&self) -> Result<()> {
        let info: String = match self.conn.query(redis::cmd("INFO").arg("persistence").arg("memory")).await {
            Err(Error::Permission(e)) => {
                tracing::warn!(
                    error = e,
                    "this Redis user may not run INFO: cannot check that AOF is on and maxmemory-policy is noeviction"
                );
                return Ok(());
            }
            other => other?,
        };
        let field = |text: &str, name: &str| {
            text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_owned()))
        };
        match field(&info, "maxmemory_policy") {
            Some(policy) if policy != "noeviction" => tracing::warn!(
                policy,
                "Redis maxmemory-policy is not noeviction: under memory pressure Redis may evict queue keys and \
                 silently lose tasks and results; set maxmemory-policy noeviction"
            ),
            _ => {}
        }
        if field(&info, "aof_enabled").as_deref() != Some("1") {
            tracing::warn!(
                "Redis AOF is off: tasks and results enqueued since the last snapshot are lost if Redis restarts; \
                 set appendonly yes (appendfsync everysec loses at most ~1 s on a machine crash)"
            );
        }
        Ok(())
    }
}

/// A client for `url`, with the certificates of `tls` when it is a `rediss://` URL.
fn open_client(url: &str, tls: &TlsFiles) -> Result<Client> {
    let info = url.into_connection_info().map_err(|e| Error::Url(e.to_string()))?;
    if tls.is_empty() {
        return Client::open(info).map_err(|e| Error::Url(e.to_string()));
    }
    if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return Err(Error::Url(format!(
            "TLS certificates are configured ({tls:?}) but the URL does not use TLS: write rediss:// instead of redis://"
        )));
    }
    let read = |path: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>> {
        path.as_ref()
            .map(|p| std::fs::read(p).map_err(|e| Error::Url(format!("cannot read the TLS file {}: {e}", p.display()))))
            .transpose()
    };
    let client_tls = match (read(&tls.cert)?, read(&tls.key)?) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig { client_cert, client_key }),
        _ => None,
    };
    let certificates = redis::TlsCertificates { client_tls, root_cert: read(&tls.ca)? };
    Client::build_with_tls(info, certificates).map_err(|e| Error::Url(e.to_string()))
}

/// A stream or group that does not exist has nothing to sweep or prune: a queue enqueued at
/// one priority has no streams at the others until a worker joins it.
fn nothing_if_absent(outcome: Result<u64>) -> Result<u64> {
    match outcome {
        Err(Error::Redis(e)) if e.contains("NOGROUP") || e.contains("no such key") => Ok(0),
        other => other,
    }
}
