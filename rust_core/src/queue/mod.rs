//! A reliable work queue on Redis Streams, and the worker that runs its tasks.
//!
//! - **Streams and a consumer group**: a stream per queue and priority
//!   (`{ns}:q:{queue}:{high|normal|low}`); workers share one consumer group and fetch with
//!   `XREADGROUP` (blocking reads on their own connection, its reply timeout above the block).
//! - **Leases**: a fetched entry stays in the worker's pending list; the worker extends its
//!   lease by heartbeating (`XCLAIM` to itself, fenced). A sweeper (every worker runs one)
//!   reclaims entries idle past the lease with `XAUTOCLAIM` and puts them back as fresh
//!   entries, or dead-letters a task that lost its worker `max_deliveries` times.
//! - **Fenced completion**: every transition is a Lua script that first checks the consumer
//!   still owns the entry, then writes the outcome once, acks and deletes the entry. A late
//!   worker (paused past its lease) is refused; a retried call whose reply was lost is
//!   recognised and not applied twice. Delivery is at least once; outcomes are recorded
//!   exactly once.
//! - **Ids**: caller-given or a hash of kind and payload; enqueue is a no-op for an id that
//!   exists, so retried enqueues are de-duplicated.
//! - **Envelopes**: versioned JSON ([`Envelope`]), capped in size; large data goes by
//!   reference ([`DataRef`], and [`BlobRef`] for bytes kept in Redis).
//! - **Notifications**: a task enqueued with a `notify` channel pushes its id there when it
//!   finishes; a [`Listener`] waits on it with a blocking read instead of polling.
//!
//! - **Cancels**: a running task's cancel is flagged in its record and published on
//!   `{ns}:cancels`; workers subscribe, so the handler sees it at its next check, and read the
//!   flag with each heartbeat should a message be missed.
//!
//! - **Inboxes**: every worker also reads its own queue ([`inbox`]), so a producer can send
//!   a task to the one worker that holds the data it needs.
//!
//! See `docs/queue.md` for the keys, the lifecycle and how to run workers.

mod blob;
mod cancels;
mod client;
mod config;
mod connection;
mod consumer;
mod data_ref;
mod envelope;
mod error;
mod file_range;
mod keys;
mod listener;
mod scripts;
mod status;
mod worker;

pub use blob::BlobRef;
pub use client::{CancelOutcome, Queue, SweepReport};
pub use config::{QueueConfig, TlsFiles};
pub use consumer::{Consumer, Delivery, Lease, Transition};
pub use data_ref::{DataRef, MatrixRef};
pub use envelope::{Envelope, Priority, TaskSpec, ENVELOPE_VERSION};
pub use error::{Error, Result};
pub use file_range::FileRange;
pub use keys::inbox;
pub use listener::{Finished, Listener, Outcome};
pub use status::{DeadLetter, QueueStats, Stats, TaskState, TaskStatus, WorkerInfo};
pub use worker::{Handler, Registry, TaskContext, TaskError, Worker, WorkerConfig};

/// For other modules' scripts run in pipelines.
pub(crate) use connection::eval_cmd;
