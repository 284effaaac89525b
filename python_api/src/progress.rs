//! Long core work run on a helper thread while the calling thread reports progress to a
//! Python callback and stays responsive to Ctrl-C.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrocluster_core::Result;
use pyo3::prelude::*;

use crate::compute::in_pool;
use crate::errors::to_py;

const POLL: Duration = Duration::from_millis(100);

/// Runs `work` (which bumps the counter it is given as it goes) without the GIL, in a pool
/// of `n_threads` (all cores if None); meanwhile calls `callback(done)` about ten times a
/// second, and raises KeyboardInterrupt once the work is over if Ctrl-C was pressed.
pub fn with_progress<T: Send>(
    py: Python<'_>,
    callback: Option<&Bound<'_, PyAny>>,
    n_threads: Option<usize>,
    work: impl FnOnce(&AtomicUsize) -> Result<T> + Send,
) -> PyResult<T> {
    let counter = AtomicUsize::new(0);
    let Some(callback) = callback else {
        return py.detach(|| in_pool(n_threads, || work(&counter))).map_err(to_py);
    };
    let outcome = std::thread::scope(|scope| -> PyResult<Result<T>> {
        let handle = scope.spawn(|| in_pool(n_threads, || work(&counter)));
        let mut reported = usize::MAX;
        let mut interrupted = None;
        while !handle.is_finished() {
            py.detach(|| std::thread::sleep(POLL));
            let done = counter.load(Ordering::Relaxed);
            if done != reported && interrupted.is_none() {
                reported = done;
                if let Err(e) = callback.call1((done,)) {
                    interrupted = Some(e);
                }
            }
            if interrupted.is_none() {
                interrupted = py.check_signals().err();
            }
        }
        let result = py.detach(|| handle.join()).map_err(|_| {
            pyo3::exceptions::PyRuntimeError::new_err("the feature extraction thread stopped unexpectedly")
        })?;
        match interrupted {
            Some(e) => Err(e),
            None => Ok(result),
        }
    })?;
    let value = outcome.map_err(to_py)?;
    callback.call1((counter.load(Ordering::Relaxed),))?;
    Ok(value)
}
