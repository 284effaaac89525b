//! Running core work with the interpreter released, on all cores or a pool of a given size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ferrocluster_core::{Error, Result};
use pyo3::prelude::*;

use crate::errors::to_py;

fn pool(n_threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = pools.get(&n_threads) {
        return Ok(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .build()
        .map_err(|e| Error::parameter("n_threads", e.to_string()))?;
    Ok(pools.entry(n_threads).or_insert(Arc::new(pool)).clone())
}

/// Runs `work` in a pool of `n_threads` threads (the global pool if None).
pub fn in_pool<T: Send>(n_threads: Option<usize>, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match n_threads {
        None => work(),
        Some(0) => Err(Error::parameter("n_threads", "must be at least 1")),
        Some(n) => pool(n)?.install(work),
    }
}

/// Runs `work` without the GIL, in a pool of `n_threads` threads (the global pool if None).
pub fn compute<T: Send>(
    py: Python<'_>,
    n_threads: Option<usize>,
    work: impl FnOnce() -> Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| in_pool(n_threads, work)).map_err(to_py)
}
