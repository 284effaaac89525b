//! The service's settings: read by Rocket's figment from `Rocket.toml` and `ROCKET_*`
//! environment variables, beside Rocket's own (address, port, limits, tls, shutdown).

use std::path::PathBuf;

use ferrocluster_core::image::DecodeLimits;
use rocket::data::{ByteUnit, Limits, ToByteUnit};
use serde::Deserialize;

use crate::auth::KeyConfig;

/// Everything the service reads from its configuration; each field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where datasets, models and job records live (`ROCKET_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// API keys and their roles (`ROCKET_API_KEYS='[{key="...", role="admin"}]'`); none by
    /// default, so every protected route answers 401 until keys are configured.
    pub api_keys: Vec<KeyConfig>,
    /// Redis URL: when set, training jobs run as tasks on this Redis work queue, served by
    /// `ferrocluster-worker` processes, and `/readyz` requires Redis and a live worker
    /// (default: none, training threads in this process).
    pub redis_url: Option<String>,
    /// The queue training tasks go to (default `default`, what workers serve by default).
    pub training_queue: String,
    /// Key prefix of that queue, as the workers' `--namespace` (default `fc`).
    pub queue_namespace: String,
    /// Dynamic batching of predict requests on (default) or off.
    pub batching: bool,
    /// Most images in one inference batch (default 16).
    pub max_batch_size: usize,
    /// While `max_concurrent_batches` batches run, how long the next may wait for more requests
    /// after its first, in milliseconds (default 5); with fewer running, a batch starts at once.
    pub batch_wait_timeout_ms: u64,
    /// Batches computed at once (default: the machine's cores); the next one gathers requests
    /// meanwhile.
    pub max_concurrent_batches: usize,
    /// Most predict requests in flight; more get 503 with `Retry-After` (default 64).
    pub max_in_flight: usize,
    /// Threads training models at once (default 1).
    pub training_workers: usize,
    /// Training examples returned with each prediction, nearest first (default 5).
    pub nearest_examples: usize,
    /// Bounds on uploaded images (decompression bombs are refused from their header).
    pub decode_limits: DecodeLimits,
    /// Bounds on what a tar or zip upload inflates to (zip bombs, sparse tar members).
    pub archive_limits: ArchiveLimits,
    /// Most bytes the requests and training jobs running at once may take (default 4 GiB):
    /// each reserves what it needs at most (its images resized, their features, its answer, the
    /// extraction's scratch per thread) before any work (see [`crate::memory`]). Work past it
    /// alone is refused (422); work that does not fit beside what runs now gets 503 with
    /// `Retry-After` (training jobs wait): a small body of tiny images at a large `size` could
    /// otherwise ask for far more than the machine has.
    pub max_working_bytes: u64,
    /// Origins allowed to call the API from a browser (`["https://app.example"]`, or `["*"]`
    /// for any); none by default, so no CORS headers are sent.
    pub cors_allowed_origins: Vec<String>,
}

/// Bounds on the inflated size of an archive upload; past either the upload is refused (413).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ArchiveLimits {
    /// Largest inflated member (default 64 MiB).
    pub max_member_bytes: u64,
    /// Largest sum of the inflated members (default 1 GiB).
    pub max_total_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits { max_member_bytes: 64 * 1024 * 1024, max_total_bytes: 1024 * 1024 * 1024 }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("data"),
            api_keys: Vec::new(),
            redis_url: None,
            training_queue: "default".to_owned(),
            queue_namespace: "fc".to_owned(),
            batching: true,
            max_batch_size: 16,
            batch_wait_timeout_ms: 5,
            max_concurrent_batches: std::thread::available_parallelism().map_or(1, usize::from),
            max_in_flight: 64,
            training_workers: 1,
            nearest_examples: 5,
            decode_limits: DecodeLimits { max_file_bytes: 32 * 1024 * 1024, ..DecodeLimits::default() },
            archive_limits: ArchiveLimits::default(),
            max_working_bytes: 4 << 30,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Body limits by route, each overridable under Rocket's `limits` (e.g. `ROCKET_LIMITS={datasets="1GiB"}`).
#[derive(Debug, Clone, Copy)]
pub enum BodyLimit {
    /// `POST /v1/features` (default 32 MiB).
    Features,
    /// `POST /v1/datasets` (default 512 MiB).
    Datasets,
    /// `POST /v1/models` (default 64 KiB).
    Models,
    /// `POST /v1/models/{id}/predict` (default 16 MiB).
    Predict,
}

impl BodyLimit {
    /// The limit's name under Rocket's `limits`.
    pub fn name(self) -> &'static str {
        match self {
            BodyLimit::Features => "features",
            BodyLimit::Datasets => "datasets",
            BodyLimit::Models => "models",
            BodyLimit::Predict => "predict",
        }
    }

    fn default_size(self) -> ByteUnit {
        match self {
            BodyLimit::Features => 32.mebibytes(),
            BodyLimit::Datasets => 512.mebibytes(),
            BodyLimit::Models => 64.kibibytes(),
            BodyLimit::Predict => 16.mebibytes(),
        }
    }

    /// The configured limit, or the default.
    pub fn of(self, limits: &Limits) -> ByteUnit {
        limits.get(self.name()).unwrap_or_else(|| self.default_size())
    }
}

impl Settings {
    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_batch_size == 0 {
            return Err("max_batch_size must be at least 1".to_owned());
        }
        if self.max_concurrent_batches == 0 {
            return Err("max_concurrent_batches must be at least 1".to_owned());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".to_owned());
        }
        if self.training_workers == 0 {
            return Err("training_workers must be at least 1".to_owned());
        }
        if let Some(origin) = self.cors_allowed_origins.iter().find(|o| !crate::cors::is_origin_pattern(o)) {
            return Err(format!("cors_allowed_origins: `{origin}` is not an origin (scheme://host[:port], or `*`)"));
        }
        Ok(())
    }
}
