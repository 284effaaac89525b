//! The service's working memory: one budget of `max_working_bytes` shared by every request that
//! decodes images or extracts features and every training job this process runs.
//!
//! Each piece of work reserves the most it can take ([`Need`]: its images, its feature matrix,
//! what it sends back, and per thread the core's [`FeatureConfig::scratch_bytes`]) before it
//! starts, and gives it back when it ends (the [`Reservation`] is dropped). Work that alone needs
//! more than the budget is refused (422); work that fits, but not beside what runs now, is
//! answered 503 with `Retry-After` (requests) or waits for room (training jobs). So no mix of
//! concurrent requests can take the process past its budget, where the system would kill it and
//! every request and job in it with it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ferrocluster_core::features::FeatureConfig;

use crate::error::{ApiError, ApiResult, ProblemKind};

/// Bytes of one f32 written as JSON text, at most (`-1.2345678e-38` and a comma).
const JSON_BYTES_PER_VALUE: u64 = 16;

/// What a piece of work may need at most, and what it is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Bytes.
    pub bytes: u64,
    what: &'static str,
    n_images: usize,
    size: [usize; 2],
}

impl Need {
    /// `POST /v1/features`: the images decoded and resized, their feature matrix, the rows
    /// copied into the answer and its JSON text, and the extraction's scratch per thread.
    pub fn features(n_images: usize, config: &FeatureConfig) -> Need {
        let answer = config.dim() as u64 * (4 + JSON_BYTES_PER_VALUE);
        Need::of("images, their features and the answer", n_images, config, resized(config) + answer)
    }

    /// A predict request: the images decoded and resized, their features, and the scratch.
    pub fn predict(n_images: usize, config: &FeatureConfig) -> Need {
        Need::of("resized images and their features", n_images, config, resized(config))
    }

    /// A training job run here: the feature matrix of the dataset, and per thread an image
    /// decoded (with its byte copy) and the scratch.
    pub fn training(n_images: usize, config: &FeatureConfig) -> Need {
        let mut need = Need::of("feature matrix", n_images, config, 0);
        need.bytes = need.bytes.saturating_add(threads(n_images).saturating_mul(resized(config) * 2));
        need
    }

    fn of(what: &'static str, n_images: usize, config: &FeatureConfig, per_image: u64) -> Need {
        let rows = (n_images as u64).saturating_mul(per_image.saturating_add(config.dim() as u64 * 4));
        let scratch = threads(n_images).saturating_mul(config.scratch_bytes());
        Need { bytes: rows.saturating_add(scratch), what, n_images, size: config.size }
    }
}

/// An image at the config's size, decoded as RGB f32.
fn resized(config: &FeatureConfig) -> u64 {
    let [height, width] = config.size.map(|side| side as u64);
    height * width * 3 * 4
}

/// Threads that extract at once for `n_images` images: the core's pool, or fewer images.
fn threads(n_images: usize) -> u64 {
    rayon::current_num_threads().min(n_images.max(1)) as u64
}

/// The budget and what is reserved of it now.
#[derive(Debug)]
pub struct WorkingMemory {
    limit: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl WorkingMemory {
    /// A budget of `limit` bytes (`max_working_bytes`).
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(WorkingMemory { limit, used: Mutex::new(0), freed: Condvar::new() })
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        *self.lock()
    }

    /// The budget.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses (422) work that needs more than the whole budget.
    pub fn check(&self, need: Need) -> ApiResult<()> {
        if need.bytes > self.limit {
            let [height, width] = need.size;
            return Err(ApiError::new(
                ProblemKind::InvalidInput,
                format!(
                    "the {} of {} images at size {height}×{width} would take up to {} bytes, over the service's \
                     limit of {} (max_working_bytes): send fewer images or ask for a smaller size",
                    need.what, need.n_images, need.bytes, self.limit
                ),
            ));
        }
        Ok(())
    }

    /// Reserves `need` now: 422 if it is over the whole budget, 503 with `Retry-After` if other
    /// work holds too much of it at the moment.
    pub fn reserve(self: &Arc<Self>, need: Need) -> ApiResult<Reservation> {
        self.check(need)?;
        let mut used = self.lock();
        if *used + need.bytes > self.limit {
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    ProblemKind::Overloaded,
                    format!(
                        "the service is busy: other requests hold {} of its {} bytes of working memory \
                         (max_working_bytes) and this one needs up to {}; retry later",
                        *used, self.limit, need.bytes
                    ),
                )
            });
        }
        *used += need.bytes;
        Ok(Reservation { memory: self.clone(), bytes: need.bytes })
    }

    /// Reserves `need` once there is room, waiting for other work to give memory back;
    /// `stop()` is asked between waits and ends the wait with `None`. Work over the whole
    /// budget is the caller's to refuse first ([`WorkingMemory::check`]); it would wait forever.
    pub fn reserve_waiting(self: &Arc<Self>, need: Need, stop: impl Fn() -> bool) -> Option<Reservation> {
        let mut used = self.lock();
        while *used + need.bytes > self.limit {
            if stop() {
                return None;
            }
            used = self.freed.wait_timeout(used, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
        *used += need.bytes;
        Some(Reservation { memory: self.clone(), bytes: need.bytes })
    }
}

/// Reserved working memory, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    memory: Arc<WorkingMemory>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = self.memory.lock();
        *used -= self.bytes;
        drop(used);
        self.memory.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(bytes: u64) -> Need {
        Need { bytes, what: "test", n_images: 1, size: [1, 1] }
    }

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let memory = WorkingMemory::new(100);
        let first = memory.reserve(need(60)).unwrap();
        let busy = memory.reserve(need(50)).unwrap_err();
        assert_eq!((busy.kind, busy.retry_after), (ProblemKind::Overloaded, Some(1)));
        let too_big = memory.reserve(need(101)).unwrap_err();
        assert_eq!((too_big.kind, too_big.retry_after), (ProblemKind::InvalidInput, None));
        let second = memory.reserve(need(40)).unwrap();
        assert_eq!(memory.in_use(), 100);
        drop(first);
        assert_eq!(memory.in_use(), 40);
        drop(second);
        assert_eq!(memory.in_use(), 0);
    }

    #[test]
    fn a_waiting_reservation_starts_when_memory_is_given_back_or_stops() {
        let memory = WorkingMemory::new(100);
        let held = memory.reserve(need(80)).unwrap();
        assert!(memory.reserve_waiting(need(30), || true).is_none());
        let waiter = {
            let memory = memory.clone();
            std::thread::spawn(move || memory.reserve_waiting(need(30), || false).map(|r| r.bytes))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(memory.in_use(), 80, "it waits while there is no room");
        drop(held);
        assert_eq!(waiter.join().unwrap(), Some(30));
        assert_eq!(memory.in_use(), 0);
    }

    #[test]
    fn the_features_answer_is_counted_and_threads_are_bounded_by_images() {
        let config = FeatureConfig::default();
        let (one, two) = (Need::features(1, &config).bytes, Need::features(2, &config).bytes);
        let per_image = config.dim() as u64 * (4 + 4 + JSON_BYTES_PER_VALUE) + 64 * 64 * 12;
        assert!(one >= per_image + config.scratch_bytes(), "{one}");
        assert!(two >= 2 * per_image + threads(2) * config.scratch_bytes(), "{two}");
        assert!(Need::predict(1, &config).bytes < one);
    }
}
