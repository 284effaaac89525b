//! [`KeptKeys`]: the Redis keys of a job, expiring unless their owner renews them.
//!
//! Data a job puts in Redis (matrices, shards, manifests) is written with a TTL and renewed
//! while the process that needs it lives, so a coordinator killed without a chance to clean
//! up leaves nothing behind for longer than the TTL; one that finishes deletes them at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::queue::{Queue, Result};

/// How long a job's data outlives its owner: the TTL of the keys, renewed every third of it.
pub const DATA_TTL: Duration = Duration::from_secs(600);

/// Keys per command of a renewal or deletion, so no reply or request grows without bound.
const BATCH: usize = 1000;

/// A set of keys whose TTL is renewed every `ttl / 3` until [`KeptKeys::delete`] (or drop,
/// which stops renewing and leaves them to expire).
#[derive(Debug)]
pub struct KeptKeys {
    queue: Queue,
    ttl: Duration,
    keys: Arc<Mutex<Vec<String>>>,
    renewer: JoinHandle<()>,
}

impl KeptKeys {
    /// Starts renewing, on `runtime`, the keys that will be added.
    pub fn new(queue: &Queue, runtime: &Handle, ttl: Duration) -> Self {
        let keys: Arc<Mutex<Vec<String>>> = Arc::default();
        let renewer = runtime.spawn(renew(queue.clone(), keys.clone(), ttl));
        KeptKeys { queue: queue.clone(), ttl, keys, renewer }
    }

    /// The TTL to write the keys with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Keeps these keys too (ones that do not exist yet are renewed once they do).
    pub fn add(&self, keys: impl IntoIterator<Item = String>) {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).extend(keys);
    }

    /// Deletes every key kept so far.
    ///
    /// # Errors
    /// Redis errors (the keys then expire on their own).
    pub async fn delete(&self) -> Result<()> {
        let keys = std::mem::take(&mut *self.keys.lock().unwrap_or_else(PoisonError::into_inner));
        for batch in keys.chunks(BATCH) {
            self.queue.conn.query::<()>(redis::cmd("DEL").arg(batch)).await?;
        }
        Ok(())
    }
}

impl Drop for KeptKeys {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn renew(queue: Queue, keys: Arc<Mutex<Vec<String>>>, ttl: Duration) {
    let ms = ttl.as_millis().max(1) as u64;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let now: Vec<String> = keys.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for batch in now.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for key in batch {
                pipe.cmd("PEXPIRE").arg(key).arg(ms).ignore();
            }
            if let Err(e) = queue.conn.pipeline::<()>(&pipe).await {
                tracing::warn!(error = %e, "renewing the TTL of a job's keys failed; retrying at the next renewal");
                break;
            }
        }
    }
}
