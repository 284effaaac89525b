//! Tunables of a queue: namespace, leases, caps and timeouts.

use std::path::PathBuf;
use std::time::Duration;

use super::{Error, Result};

/// How a [`super::Queue`] and its workers behave. Every process using one queue must agree
/// on `namespace`, `group`, `lease` and `max_deliveries`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Prefix of every Redis key the queue writes (`{namespace}:task:{id}`, ...).
    pub namespace: String,
    /// The consumer group the workers share on each stream.
    pub group: String,
    /// How long a worker may hold a task without a heartbeat before it is reclaimed.
    /// Workers extend it every `lease / 3`, so it must exceed the longest pause expected of a
    /// live worker (GC-free Rust: mostly network hiccups).
    pub lease: Duration,
    /// Times a task may be started and then lost (its worker crashed or hung past the lease)
    /// before it is dead-lettered as poison.
    pub max_deliveries: u32,
    /// Largest serialized envelope (payload included) accepted by `enqueue`, and largest
    /// result a worker may record. Larger data goes by reference.
    pub max_envelope_bytes: usize,
    /// How long a worker's blocking read waits for new tasks before looping.
    pub block: Duration,
    /// Reply timeout of ordinary commands (the blocking read gets `block` on top of it).
    pub response_timeout: Duration,
    /// How long a command keeps being retried, reconnecting with capped backoff, while Redis
    /// is unreachable, before it fails with [`Error::Unavailable`].
    pub reconnect_timeout: Duration,
    /// First delay before retrying a task that returned an error; doubled per attempt.
    pub retry_base: Duration,
    /// Cap on that delay.
    pub retry_max: Duration,
    /// Certificates for `rediss://` URLs (TLS).
    pub tls: TlsFiles,
}

/// Certificates (PEM files) for a TLS connection to Redis (`rediss://`). Without any, the
/// system's trusted CAs verify the server and no client certificate is sent.
///
/// The default reads them from the environment, so every command and the Python package
/// take them the same way: `FERROCLUSTER_REDIS_CA` (a CA to trust, besides the system's),
/// `FERROCLUSTER_REDIS_CERT` and `FERROCLUSTER_REDIS_KEY` (a client certificate and its
/// PKCS#8 key, for a Redis with `tls-auth-clients yes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// CA certificate(s) that sign the server's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate, for servers that verify their clients.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8 PEM, `BEGIN PRIVATE KEY`).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The files named by `FERROCLUSTER_REDIS_CA`, `FERROCLUSTER_REDIS_CERT` and
    /// `FERROCLUSTER_REDIS_KEY` (unset or empty: none).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        TlsFiles {
            ca: var("FERROCLUSTER_REDIS_CA"),
            cert: var("FERROCLUSTER_REDIS_CERT"),
            key: var("FERROCLUSTER_REDIS_KEY"),
        }
    }

    /// Whether no file is given.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            namespace: "fc".to_owned(),
            group: "workers".to_owned(),
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            max_envelope_bytes: 512 * 1024,
            block: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            reconnect_timeout: Duration::from_secs(60),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            tls: TlsFiles::from_env(),
        }
    }
}

impl QueueConfig {
    /// Checks the values make sense together.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.namespace.is_empty() || self.namespace.contains(char::is_whitespace) {
            return Err(Error::invalid("namespace", "must be non-empty, without spaces"));
        }
        if self.group.is_empty() {
            return Err(Error::invalid("group", "must be non-empty"));
        }
        if self.lease < Duration::from_millis(100) {
            return Err(Error::invalid("lease", "must be at least 100 ms"));
        }
        if self.max_deliveries == 0 {
            return Err(Error::invalid("max_deliveries", "must be at least 1"));
        }
        if self.block.is_zero() {
            return Err(Error::invalid("block", "must be positive (0 would block forever)"));
        }
        if self.retry_base > self.retry_max {
            return Err(Error::invalid("retry_base", "must not exceed retry_max"));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(Error::invalid("tls", "a client certificate and its key go together: give both or neither"));
        }
        Ok(())
    }

    /// The delay before retry number `attempt` (0-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so that tasks failing together do not retry together.
    pub fn retry_delay(&self, attempt: u32, unit_random: f64) -> Duration {
        let exp = self.retry_base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        let capped = exp.min(self.retry_max);
        capped.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0))
    }
}
