//! The state every route shares.

use std::sync::Arc;

use crate::auth::ApiKeys;
use crate::config::Settings;
use crate::inference::{ModelCache, Predictor};
use crate::memory::WorkingMemory;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::training::Jobs;

/// The service: settings, storage, the job runner, the model cache and the predictor.
#[derive(Debug)]
pub struct Service {
    /// The settings it started with.
    pub settings: Settings,
    /// The hashed API keys.
    pub keys: ApiKeys,
    /// The data directory.
    pub store: Store,
    /// Training jobs.
    pub jobs: Arc<Jobs>,
    /// Models in memory.
    pub cache: Arc<ModelCache>,
    /// Batched inference.
    pub predictor: Predictor,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The working memory requests and training jobs reserve.
    pub memory: Arc<WorkingMemory>,
}

impl Service {
    /// Opens the data directory, starts the training executor (resuming unfinished jobs) and
    /// readies the predictor.
    pub fn start(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        let keys = ApiKeys::new(&settings.api_keys)?;
        if keys.is_empty() {
            tracing::warn!("no API keys are configured: every protected route answers 401 (see `api_keys`)");
        }
        let store = Store::open(&settings.data_dir)
            .map_err(|e| format!("data directory {}: {e}", settings.data_dir.display()))?;
        let memory = WorkingMemory::new(settings.max_working_bytes);
        let jobs = Jobs::start(store.clone(), &settings, memory.clone())
            .map_err(|e| format!("loading the job records: {e}"))?;
        let cache = Arc::new(ModelCache::new(store.clone()));
        let metrics = Arc::new(Metrics::default());
        let predictor = Predictor::new(&settings, cache.clone(), metrics.clone(), memory.clone());
        Ok(Service { settings, keys, store, jobs, cache, predictor, metrics, memory })
    }
}
