//! Models: the core's saved model (`model.json`), the training features (for nearest
//! examples), the names of the training images, and a record of how it was trained.

use std::path::PathBuf;
use std::time::SystemTime;

use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::model::SavedModel;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{read_json, write_atomic, write_json, Store};
use crate::training::{Algorithm, ModelMetrics};

/// How a model was trained, and on what.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelMeta {
    /// Its id.
    #[schema(value_type = super::ModelId)]
    pub id: String,
    /// The job that trained it.
    #[schema(value_type = super::JobId)]
    pub job_id: String,
    /// The dataset it was trained on.
    #[schema(value_type = super::DatasetId)]
    pub dataset_id: String,
    /// The clustering algorithm.
    pub algorithm: Algorithm,
    /// Number of clusters.
    pub k: usize,
    /// The random seed.
    #[schema(format = "uint64")]
    pub seed: u64,
    /// The feature configuration.
    pub features: FeatureConfig,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Training rows.
    pub n_samples: usize,
    /// Feature dimensions.
    pub n_features: usize,
    /// Size of each cluster on the training data.
    pub cluster_sizes: Vec<usize>,
    /// Quality metrics.
    pub metrics: ModelMetrics,
}

/// Everything stored for one model.
#[derive(Debug)]
pub struct ModelFiles {
    /// The record.
    pub meta: ModelMeta,
    /// The fitted model.
    pub saved: SavedModel,
    /// The training features, one row per training image.
    pub train: Array2<f32>,
    /// The names of the training images.
    pub names: Vec<String>,
}

impl Store {
    fn model_dir(&self, id: &str) -> PathBuf {
        self.dir("models").join(id)
    }

    /// Stores a model (all or nothing). An existing model of the same id is replaced whole.
    pub fn save_model(&self, files: &ModelFiles) -> std::io::Result<()> {
        let id = &files.meta.id;
        let staged = self.staging(id)?;
        files.saved.save(&staged.join("model.json")).map_err(std::io::Error::other)?;
        let raw: Vec<u8> = files.train.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_atomic(&staged.join("train.f32"), &raw)?;
        write_json(&staged.join("names.json"), &files.names)?;
        write_json(&staged.join("meta.json"), &files.meta)?;
        let dest = self.model_dir(id);
        if dest.exists() {
            self.unpublish(&dest)?;
        }
        Store::publish(&staged, &dest)
    }

    /// Whether the model `id` exists.
    pub fn has_model(&self, id: &str) -> bool {
        self.model_dir(id).join("meta.json").exists()
    }

    /// The record of model `id`, or `None`.
    pub fn model_meta(&self, id: &str) -> std::io::Result<Option<ModelMeta>> {
        let path = self.model_dir(id).join("meta.json");
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// When model `id` was last stored (its version, for the cache), or `None`.
    pub fn model_version(&self, id: &str) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(self.model_dir(id).join("model.json")).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Reads all of model `id`, or `None` if it does not exist.
    pub fn load_model(&self, id: &str) -> std::io::Result<Option<ModelFiles>> {
        let Some(meta) = self.model_meta(id)? else {
            return Ok(None);
        };
        let dir = self.model_dir(id);
        let saved = SavedModel::load(&dir.join("model.json")).map_err(std::io::Error::other)?;
        let raw = std::fs::read(dir.join("train.f32"))?;
        let values: Vec<f32> =
            raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4"))).collect();
        let train = Array2::from_shape_vec((meta.n_samples, meta.n_features), values)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("model {id}: train.f32: {e}")))?;
        let names = read_json(&dir.join("names.json"))?;
        Ok(Some(ModelFiles { meta, saved, train, names }))
    }

    /// Every model, oldest first.
    pub fn models(&self) -> std::io::Result<Vec<ModelMeta>> {
        let mut all: Vec<ModelMeta> = Vec::new();
        for entry in std::fs::read_dir(self.dir("models"))? {
            let meta = entry?.path().join("meta.json");
            if meta.exists() {
                all.push(read_json(&meta)?);
            }
        }
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(all)
    }

    /// Deletes model `id`; `false` if there was none.
    pub fn delete_model(&self, id: &str) -> std::io::Result<bool> {
        let dir = self.model_dir(id);
        if !dir.exists() {
            return Ok(false);
        }
        self.unpublish(&dir).map(|()| true)
    }
}
