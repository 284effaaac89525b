//! [`Consumer`]: one member of a queue's consumer group — fetches tasks and makes the fenced
//! transitions (heartbeat, complete, fail, release, reject). [`super::Worker`] drives one;
//! other runtimes (the Python worker) can too.

use std::collections::VecDeque;
use std::time::Duration;

use redis::streams::{StreamId, StreamReadReply};
use serde_json::Value;
use tokio::sync::Mutex;

use super::connection::{eval_cmd, Connection};
use super::envelope::check_size;
use super::scripts;
use super::{Envelope, Error, Queue, Result};

/// A task fetched and started by a consumer. Its lease lasts while the consumer heartbeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The stream it came from.
    pub stream: String,
    /// Its stream entry id: the fence of every transition.
    pub entry: String,
    /// The task.
    pub envelope: Envelope,
    /// Times it was started, this time included.
    pub deliveries: u32,
    /// Errors before this run.
    pub attempts: u32,
}

/// Whether the consumer still holds a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Extended; `cancel_requested` when a caller asked to cancel the task.
    Held {
        /// A cancel was asked.
        cancel_requested: bool,
    },
    /// Reclaimed by a sweeper (this worker paused or lost Redis past the lease): another
    /// worker may run it now, and this one's completion will be refused.
    Lost,
}

/// What a fenced transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Applied (or had already been applied by this same call before a lost reply).
    Applied,
    /// Refused: the consumer no longer owns the entry. Nothing was written.
    Refused,
}

/// One consumer of a queue's streams.
#[derive(Debug)]
pub struct Consumer {
    queue: Queue,
    name: String,
    queues: Vec<String>,
    /// Blocking reads get their own connection, whose reply timeout exceeds the block time,
    /// so they neither time out nor stall other commands.
    reader: Connection,
    /// Entries read but not yet started because Redis failed mid-batch: they are in this
    /// consumer's pending list, so the next fetch starts them first rather than leaving them
    /// to wait out the lease.
    unstarted: Mutex<VecDeque<Entry>>,
}

/// A stream entry as read, with the stream it came from.
type Entry = (String, StreamId);

impl Consumer {
    /// Joins the consumer group of each queue's streams (creating them if needed) as `name`,
    /// which must be unique among live consumers.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn join(queue: &Queue, name: &str, queues: &[String]) -> Result<Self> {
        if queues.is_empty() {
            return Err(Error::invalid("queues", "give at least one queue"));
        }
        for q in queues {
            queue.ensure_groups(q).await?;
        }
        let config = &queue.config;
        let reader =
            Connection::new(queue.client.clone(), config.block + config.response_timeout, config.reconnect_timeout);
        Ok(Consumer {
            queue: queue.clone(),
            name: name.to_owned(),
            queues: queues.to_vec(),
            reader,
            unstarted: Mutex::default(),
        })
    }

    /// Its consumer name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fetches and starts up to `max` tasks, most urgent priority first, blocking up to
    /// `block` when there are none. Entries that are not runnable tasks (malformed envelope,
    /// no task record, a record Redis cannot read) are dead-lettered with the reason; stale
    /// ones are dropped.
    ///
    /// When Redis fails partway through a batch, the tasks already started are returned (their
    /// handlers must run: they are marked running) and the rest are started first by the next
    /// call; when a read fails, the entries read before it (or kept from an earlier call) are
    /// still started. The error is returned only when nothing could be started.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when Redis stays unreachable past the reconnect timeout.
    pub async fn fetch(&self, max: usize, block: Duration) -> Result<Vec<Delivery>> {
        let mut entries: VecDeque<Entry> = {
            let mut unstarted = self.unstarted.lock().await;
            let n = unstarted.len().min(max);
            unstarted.drain(..n).collect()
        };
        if let Err(e) = self.read_into(&mut entries, max, block).await {
            // Entries kept from an earlier fetch, or read before the failing read, are in this
            // consumer's pending list: start them now rather than leave them to the lease.
            if entries.is_empty() {
                return Err(e);
            }
            tracing::warn!(error = %e, entries = entries.len(), "reading new tasks failed; starting those already read");
        }
        if let Some(started) = self.start_batch(&entries).await {
            return Ok(started);
        }
        let mut started = Vec::with_capacity(entries.len());
        while let Some((stream, entry)) = entries.pop_front() {
            match self.start(&stream, &entry).await {
                Ok(Some(delivery)) => started.push(delivery),
                Ok(None) => {}
                Err(e) => {
                    entries.push_front((stream, entry));
                    let mut unstarted = self.unstarted.lock().await;
                    for kept in entries.into_iter().rev() {
                        unstarted.push_front(kept);
                    }
                    if started.is_empty() {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, started = started.len(), left = unstarted.len(), "starting fetched tasks failed partway; the rest are started at the next fetch");
                    break;
                }
            }
        }
        Ok(started)
    }

    /// Reads new entries into `entries` up to `max`: the streams in turn, most urgent first (one
    /// script, one round trip), then a blocking read of one entry over all when none was found. What was
    /// read stays in `entries` when a later read fails.
    async fn read_into(&self, entries: &mut VecDeque<Entry>, max: usize, block: Duration) -> Result<()> {
        let streams: Vec<String> = self.queues.iter().flat_map(|q| self.queue.keys.streams(q)).collect();
        if entries.len() < max {
            entries.extend(self.read(&streams, max - entries.len(), None).await?);
        }
        if entries.is_empty() {
            // Woken from an empty queue, take one task: tasks enqueued together (one script
            // call) then spread over the idle consumers instead of queueing behind each other.
            entries.extend(self.read(&streams, 1, Some(block)).await?);
        }
        Ok(())
    }

    /// New entries: by the READ script (most urgent stream first), or, with `block`, by one
    /// XREADGROUP over all the streams. Recreates the groups if Redis lost them.
    async fn read(&self, streams: &[String], count: usize, block: Option<Duration>) -> Result<Vec<Entry>> {
        let reply: Result<Option<StreamReadReply>> = match block {
            None => {
                let mut call = scripts::READ.prepare_invoke();
                for stream in streams {
                    call.key(stream);
                }
                call.arg(&self.queue.config.group).arg(&self.name).arg(count);
                self.reader.invoke(&call).await
            }
            Some(block) => {
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP").arg(&self.queue.config.group).arg(&self.name).arg("COUNT").arg(count);
                cmd.arg("BLOCK").arg(block.as_millis() as u64).arg("STREAMS").arg(streams);
                for _ in streams {
                    cmd.arg(">");
                }
                self.reader.query(&cmd).await
            }
        };
        let reply = match reply {
            Err(Error::Redis(e)) if e.contains("NOGROUP") => {
                for q in &self.queues {
                    self.queue.ensure_groups(q).await?;
                }
                return Ok(Vec::new());
            }
            other => other?,
        };
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids.into_iter().map(move |id| (k.key.clone(), id)))
            .collect())
    }

    /// Turns a fetched entry into a running delivery, or disposes of it. An entry whose task
    /// record is not a hash is poison: dead-lettered with Redis's error, so that it cannot hold
    /// up the entries behind it. (Other errors may pass, so those entries are kept.)
    async fn start(&self, stream: &str, entry: &StreamId) -> Result<Option<Delivery>> {
        match self.try_start(stream, entry).await {
            Err(Error::Redis(e)) if e.contains("WRONGTYPE") => {
                let raw: String = entry.get("task").unwrap_or_default();
                let reason = format!("Redis refused to start it: {e}");
                self.reject_entry(stream, &entry.id, &reason, None, &raw).await?;
                Ok(None)
            }
            other => other,
        }
    }

    async fn try_start(&self, stream: &str, entry: &StreamId) -> Result<Option<Delivery>> {
        let (envelope, raw) = match envelope_of(entry) {
            Ok(parsed) => parsed,
            Err(Malformed { id, reason, raw }) => {
                self.reject_entry(stream, &entry.id, &reason, id.as_deref(), &raw).await?;
                return Ok(None);
            }
        };
        let replies = self.start_all(&[(stream, entry.id.as_str(), envelope.id.as_str())]).await?;
        let reply = replies.into_iter().next().unwrap_or_default();
        self.settle(stream, &entry.id, envelope, &raw, &reply).await
    }

    /// Starts every entry in one round trip (the START script, which takes many). `None` when
    /// an entry is not a well-formed task or Redis refused the batch: the caller then goes
    /// entry by entry, which pins each refusal on its own entry.
    async fn start_batch(&self, entries: &VecDeque<Entry>) -> Option<Vec<Delivery>> {
        let mut parsed = Vec::with_capacity(entries.len());
        for (stream, entry) in entries {
            let (envelope, raw) = envelope_of(entry).ok()?;
            parsed.push((stream, &entry.id, envelope, raw));
        }
        let calls: Vec<(&str, &str, &str)> = parsed
            .iter()
            .map(|(stream, entry, envelope, _)| (stream.as_str(), entry.as_str(), envelope.id.as_str()))
            .collect();
        let replies = self.start_all(&calls).await.ok()?;
        let mut started = Vec::with_capacity(parsed.len());
        for ((stream, entry, envelope, raw), reply) in parsed.into_iter().zip(replies) {
            match self.settle(stream, entry, envelope, &raw, &reply).await {
                Ok(Some(delivery)) => started.push(delivery),
                Ok(None) => {}
                // Started but not dead-lettered: the sweeper hands it on after the lease.
                Err(e) => tracing::warn!(error = %e, entry, "could not dead-letter an entry without a task record"),
            }
        }
        Some(started)
    }

    /// START of each (stream, entry, task id), [`scripts::BATCH`] per script call, all in one
    /// round trip; its replies in order.
    async fn start_all(&self, entries: &[(&str, &str, &str)]) -> Result<Vec<Vec<String>>> {
        let mut pipe = redis::pipe();
        for chunk in entries.chunks(scripts::BATCH) {
            let keys: Vec<String> =
                chunk.iter().flat_map(|&(stream, _, id)| [stream.to_owned(), self.queue.keys.task(id)]).collect();
            let mut cmd = eval_cmd(&scripts::START, &keys);
            cmd.arg(&self.queue.config.group).arg(&self.name);
            for &(_, entry, _) in chunk {
                cmd.arg(entry);
            }
            pipe.add_command(cmd);
        }
        let replies: Vec<Vec<Vec<String>>> = self.queue.conn.invoke_all(&scripts::START, &pipe).await?;
        Ok(replies.into_iter().flatten().collect())
    }

    /// What START's reply makes of a fetched entry: a running delivery, a dead letter (no
    /// task record), or nothing (a stale entry).
    async fn settle(
        &self,
        stream: &str,
        entry: &str,
        envelope: Envelope,
        raw: &str,
        reply: &[String],
    ) -> Result<Option<Delivery>> {
        match reply.first().map(String::as_str) {
            Some("run") => Ok(Some(Delivery {
                stream: stream.to_owned(),
                entry: entry.to_owned(),
                deliveries: reply.get(1).and_then(|d| d.parse().ok()).unwrap_or(1),
                attempts: reply.get(2).and_then(|d| d.parse().ok()).unwrap_or(0),
                envelope,
            })),
            Some("missing") => {
                let reason = "no task record: the entry was not enqueued through the queue API, or its record expired";
                self.reject_entry(stream, entry, reason, None, raw).await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Extends the lease and reports progress; tells whether the lease is still held and
    /// whether a cancel was asked.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn heartbeat(&self, delivery: &Delivery, progress: (u64, u64)) -> Result<Lease> {
        let mut call = scripts::HEARTBEAT.prepare_invoke();
        self.fence(&mut call, delivery).arg(progress.0).arg(progress.1);
        let reply: i64 = self.queue.conn.invoke(&call).await?;
        Ok(match reply {
            -1 => Lease::Lost,
            flag => Lease::Held { cancel_requested: flag == 1 },
        })
    }

    /// Records the result, once. A result over the size cap is recorded as a failure saying so.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn complete(&self, delivery: &Delivery, result: &Value) -> Result<Transition> {
        Ok(self.complete_many(&[(delivery, result)]).await?[0])
    }

    /// Records the results of many deliveries in one round trip, each as by
    /// [`Consumer::complete`]; returns what each transition did, in order.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn complete_many(&self, done: &[(&Delivery, &Value)]) -> Result<Vec<Transition>> {
        let outcomes: Vec<(&Delivery, &str, &str, String)> = done
            .iter()
            .map(|&(delivery, result)| {
                let text = result.to_string();
                match check_size("the task result", text.len(), self.queue.config.max_envelope_bytes) {
                    Ok(()) => (delivery, "succeeded", "result", text),
                    Err(e) => (delivery, "failed", "error", e.to_string()),
                }
            })
            .collect();
        self.finish_many(&outcomes).await
    }

    /// Records an error: retried after a backoff when `retryable`, the task allows it and it
    /// has retries left; otherwise the task ends `Failed`.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn fail(&self, delivery: &Delivery, error: &str, retryable: bool) -> Result<Transition> {
        let envelope = &delivery.envelope;
        if !(retryable && envelope.retry_on_error && delivery.attempts < envelope.max_retries) {
            return self.finish(delivery, "failed", "error", error).await;
        }
        let delay = self.queue.config.retry_delay(delivery.attempts, rand::random::<f64>());
        let mut call = scripts::RETRY.prepare_invoke();
        self.fence(&mut call, delivery)
            .key(self.queue.keys.delayed())
            .key(self.queue.keys.stats())
            .arg(error)
            .arg(delay.as_millis() as u64)
            .arg(&envelope.id);
        self.transition(&call).await
    }

    /// Records that the task stopped because it was cancelled.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn cancelled(&self, delivery: &Delivery) -> Result<Transition> {
        self.finish(delivery, "cancelled", "error", "cancelled while running").await
    }

    /// Dead-letters a task this consumer cannot run (e.g. a kind it does not know).
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn reject(&self, delivery: &Delivery, reason: &str) -> Result<Transition> {
        let raw = serde_json::to_string(&delivery.envelope)?;
        self.reject_entry(&delivery.stream, &delivery.entry, reason, Some(&delivery.envelope.id), &raw).await
    }

    /// Hands a task back at once, as a fresh entry any worker can fetch.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn release(&self, delivery: &Delivery) -> Result<Transition> {
        self.release_entry(&delivery.stream, &delivery.entry, &delivery.envelope.id).await
    }

    /// Hands back everything this consumer still holds: running tasks and entries fetched
    /// but not started (a read cut short by shutdown). Returns how many.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn release_all(&self) -> Result<usize> {
        let mut released = 0;
        for stream in self.queues.iter().flat_map(|q| self.queue.keys.streams(q)) {
            let pending: Vec<(String, String, u64, u64)> = self
                .queue
                .conn
                .query(
                    redis::cmd("XPENDING")
                        .arg(&stream)
                        .arg(&self.queue.config.group)
                        .arg("-")
                        .arg("+")
                        .arg(1000)
                        .arg(&self.name),
                )
                .await?;
            for (entry, ..) in pending {
                let reply: redis::streams::StreamRangeReply =
                    self.queue.conn.query(redis::cmd("XRANGE").arg(&stream).arg(&entry).arg(&entry)).await?;
                let id: Option<String> = reply.ids.first().and_then(|e| e.get("id"));
                let raw: String = reply.ids.first().and_then(|e| e.get("task")).unwrap_or_default();
                match id {
                    Some(id) => self.release_entry(&stream, &entry, &id).await?,
                    None => self.reject_entry(&stream, &entry, "entry without a task id", None, &raw).await?,
                };
                released += 1;
            }
        }
        Ok(released)
    }

    /// Leaves the group: deletes this consumer from each stream once it holds nothing, so
    /// consumer lists stay bounded across worker restarts.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn leave(&self) -> Result<()> {
        for stream in self.queues.iter().flat_map(|q| self.queue.keys.streams(q)) {
            self.queue.prune_consumers(&stream, u64::MAX, &self.name).await?;
        }
        Ok(())
    }

    async fn finish(&self, delivery: &Delivery, state: &str, field: &str, value: &str) -> Result<Transition> {
        Ok(self.finish_many(&[(delivery, state, field, value.to_owned())]).await?[0])
    }

    /// The fenced FINISH of each (delivery, state, field, value): [`scripts::BATCH`] per script
    /// call, all in one round trip.
    async fn finish_many(&self, outcomes: &[(&Delivery, &str, &str, String)]) -> Result<Vec<Transition>> {
        let mut pipe = redis::pipe();
        for chunk in outcomes.chunks(scripts::BATCH) {
            let mut keys = vec![self.queue.keys.stats()];
            for (delivery, ..) in chunk {
                keys.extend([delivery.stream.clone(), self.queue.keys.task(&delivery.envelope.id)]);
            }
            let mut cmd = eval_cmd(&scripts::FINISH, &keys);
            cmd.arg(&self.queue.config.group).arg(&self.name);
            for (delivery, state, field, value) in chunk {
                cmd.arg(&delivery.entry).arg(*state).arg(*field).arg(value);
            }
            pipe.add_command(cmd);
        }
        let replies: Vec<Vec<i64>> = self.queue.conn.invoke_all(&scripts::FINISH, &pipe).await?;
        Ok(replies.into_iter().flatten().map(transition).collect())
    }

    async fn release_entry(&self, stream: &str, entry: &str, id: &str) -> Result<Transition> {
        let mut call = scripts::RELEASE.prepare_invoke();
        call.key(stream).key(self.queue.keys.task(id)).arg(&self.queue.config.group).arg(&self.name).arg(entry);
        self.transition(&call).await
    }

    async fn reject_entry(
        &self,
        stream: &str,
        entry: &str,
        reason: &str,
        id: Option<&str>,
        raw: &str,
    ) -> Result<Transition> {
        tracing::warn!(stream, entry, id, reason, "dead-lettering a task");
        let mut call = scripts::REJECT.prepare_invoke();
        call.key(stream)
            .key(self.queue.keys.dead())
            .key(self.queue.keys.stats())
            .arg(&self.queue.config.group)
            .arg(&self.name)
            .arg(entry)
            .arg(reason)
            .arg(id.unwrap_or(""))
            .arg(raw)
            .arg(self.queue.keys.task_prefix());
        self.transition(&call).await
    }

    /// The keys and arguments every fenced script starts with: stream, task record; group,
    /// consumer, entry.
    fn fence<'a, 'b>(
        &self,
        call: &'b mut redis::ScriptInvocation<'a>,
        delivery: &Delivery,
    ) -> &'b mut redis::ScriptInvocation<'a> {
        call.key(&delivery.stream)
            .key(self.queue.keys.task(&delivery.envelope.id))
            .arg(&self.queue.config.group)
            .arg(&self.name)
            .arg(&delivery.entry)
    }

    async fn transition(&self, call: &redis::ScriptInvocation<'_>) -> Result<Transition> {
        Ok(transition(self.queue.conn.invoke(call).await?))
    }
}

/// A fenced script's reply: 0 refused, 1 applied, 2 applied earlier by this same call.
fn transition(reply: i64) -> Transition {
    if reply == 0 {
        Transition::Refused
    } else {
        Transition::Applied
    }
}

/// Why a stream entry is not a task, with what is known of it.
struct Malformed {
    id: Option<String>,
    reason: String,
    raw: String,
}

/// The envelope of a fetched entry and its raw text.
fn envelope_of(entry: &StreamId) -> std::result::Result<(Envelope, String), Malformed> {
    let id: Option<String> = entry.get("id");
    let Some(raw) = entry.get::<String>("task") else {
        let reason = "the entry has no `task` field: not a ferrocluster task envelope".to_owned();
        return Err(Malformed { id, reason, raw: String::new() });
    };
    match Envelope::parse(&raw) {
        Ok(envelope) if id.as_deref().is_none_or(|id| id == envelope.id) => Ok((envelope, raw)),
        Ok(envelope) => {
            let reason = format!("entry id field {id:?} differs from the envelope's id {:?}", envelope.id);
            Err(Malformed { id: None, reason, raw })
        }
        Err(e) => Err(Malformed { id, reason: e.to_string(), raw }),
    }
}
