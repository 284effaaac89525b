//! Training as a queue task: what the REST service enqueues, what `ferrocluster-worker`
//! returns, and how the stage travels in the task's progress.
//!
//! The images go by path: the service's data directory must be mounted at the same path on
//! every worker (read-only is enough). The model comes back by reference: the worker stores
//! the fitted model and the training features as blobs in Redis ([`BlobRef`]), expiring with
//! the task's outcome, and the service fetches them, stores the model itself (so the
//! service stays the only writer of its data directory) and deletes them.

use std::path::PathBuf;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{ModelMetrics, Stage, Trained};
use crate::cluster::kmeans::KMeansModel;
use crate::image::DecodeLimits;
use crate::queue::{BlobRef, Error, Queue, Result};

/// The task kind.
pub const KIND: &str = "train";

/// Bits of a progress value that hold the step count; the stage sits above them.
const STEP_BITS: u32 = 40;

/// A dataset's images on shared storage: file `i` is `dir/{i:06}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFiles {
    /// The directory (an absolute path every worker sees).
    pub dir: PathBuf,
    /// How many images.
    pub count: usize,
}

impl ImageFiles {
    /// The name of image `i` in the directory.
    pub fn file_name(i: usize) -> String {
        format!("{i:06}")
    }

    /// The image files, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        (0..self.count).map(|i| self.dir.join(Self::file_name(i))).collect()
    }
}

/// The payload of a `train` task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTask {
    /// What to train.
    pub request: super::TrainRequest,
    /// On what.
    pub images: ImageFiles,
    /// Bounds on decoding.
    #[serde(default)]
    pub limits: DecodeLimits,
    /// Seconds the result blobs are kept (as long as the task's outcome).
    pub result_ttl_s: u64,
}

/// The result of a `train` task: the fit by reference, the rest inline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutput {
    /// The fitted [`KMeansModel`] as JSON.
    pub model: BlobRef,
    /// The training features: `n_samples × n_features` float32, little-endian, row-major.
    pub features: BlobRef,
    /// Rows of `features`.
    pub n_samples: usize,
    /// Columns of `features`.
    pub n_features: usize,
    /// Quality metrics.
    pub metrics: ModelMetrics,
    /// Size of each cluster.
    pub cluster_sizes: Vec<usize>,
    /// Milliseconds spent in each stage.
    pub timings_ms: std::collections::BTreeMap<String, u64>,
}

impl TrainOutput {
    /// Stores the model and features of `trained` as blobs kept `ttl_s` seconds.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn store(queue: &Queue, trained: Trained, ttl_s: u64) -> Result<Self> {
        let model = serde_json::to_vec(&trained.model).map_err(|e| Error::Data(e.to_string()))?;
        let features: Vec<u8> = trained.features.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(TrainOutput {
            model: queue.put_blob(&model, ttl_s).await?,
            features: queue.put_blob(&features, ttl_s).await?,
            n_samples: trained.features.nrows(),
            n_features: trained.features.ncols(),
            metrics: trained.metrics,
            cluster_sizes: trained.cluster_sizes,
            timings_ms: trained.timings_ms,
        })
    }

    /// Deletes the blobs (once fetched, or when nobody will fetch them).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn discard(&self, queue: &Queue) -> Result<()> {
        queue.delete_blobs(&[&self.model, &self.features]).await
    }

    /// Fetches the blobs back into what [`super::train`] returned.
    ///
    /// # Errors
    /// [`Error::Data`] when a blob expired or does not hold what it should; Redis errors.
    pub async fn fetch(self, queue: &Queue) -> Result<Trained> {
        let gone = |what: &str| Error::Data(format!("the {what} of the trained model expired from Redis"));
        let model = queue.get_blob(&self.model).await?.ok_or_else(|| gone("centres"))?;
        let model: KMeansModel<f32> = serde_json::from_slice(&model).map_err(|e| Error::Data(e.to_string()))?;
        let raw = queue.get_blob(&self.features).await?.ok_or_else(|| gone("features"))?;
        let values = crate::npy::le_f32(&raw).collect();
        let features = Array2::from_shape_vec((self.n_samples, self.n_features), values)
            .map_err(|e| Error::Data(format!("training features: {e}")))?;
        Ok(Trained {
            model,
            features,
            metrics: self.metrics,
            cluster_sizes: self.cluster_sizes,
            timings_ms: self.timings_ms,
        })
    }
}

/// A task's progress holds two numbers: the stage rides in the high bits of both.
pub fn pack_progress(stage: Stage, done: usize, total: usize) -> (u64, u64) {
    let index = Stage::ALL.iter().position(|&s| s == stage).expect("every stage is in ALL") as u64;
    let mask = (1u64 << STEP_BITS) - 1;
    let high = index << STEP_BITS;
    (high | (done as u64 & mask), high | (total as u64 & mask))
}

/// The stage, steps done and steps in all of a progress written by [`pack_progress`].
pub fn unpack_progress((done, total): (u64, u64)) -> Option<(Stage, usize, usize)> {
    let stage = *Stage::ALL.get((total >> STEP_BITS) as usize)?;
    let mask = (1u64 << STEP_BITS) - 1;
    Some((stage, (done & mask) as usize, (total & mask) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_keeps_its_stage_through_the_queue() {
        for stage in Stage::ALL {
            for (done, total) in [(0, 0), (3, 900), (300, 300)] {
                assert_eq!(unpack_progress(pack_progress(stage, done, total)), Some((stage, done, total)));
            }
        }
        assert_eq!(unpack_progress((0, 7 << STEP_BITS)), None);
    }
}
