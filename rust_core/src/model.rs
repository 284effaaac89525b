//! Saved models: a versioned JSON document holding the fitted model and the feature
//! configuration it was trained with, so `predict` on new images needs nothing else.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cluster::kmeans::KMeansModel;
use crate::features::FeatureConfig;
use crate::{Error, Result};

/// The `format` field of every saved model.
pub const MODEL_FORMAT: &str = "ferrocluster-model";
/// The version written now; older versions are read while they can be, newer ones refused.
pub const MODEL_VERSION: u32 = 1;

/// A fitted model that can label new data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum Model {
    /// k-means or mini-batch k-means centres (f32, as features are).
    KMeans(KMeansModel<f32>),
}

/// A model as stored on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedModel {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// The format version it was written with.
    pub version: u32,
    /// The features the model was trained on, when it was trained on images.
    pub features: Option<FeatureConfig>,
    /// The fitted model.
    pub model: Model,
}

impl SavedModel {
    /// Wraps a model for saving, stamped with the current format version.
    pub fn new(model: Model, features: Option<FeatureConfig>) -> Self {
        SavedModel { format: MODEL_FORMAT.to_owned(), version: MODEL_VERSION, features, model }
    }

    /// Writes the model atomically (a temporary file renamed into place), so a crash never
    /// leaves half a model where a good one was.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(|e| model_error(path, e.to_string()))?;
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads a model, checking its format and version before its contents.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_slice(&bytes).map_err(|reason| model_error(path, reason))
    }

    fn from_slice(bytes: &[u8]) -> std::result::Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a ferrocluster model (not valid JSON: {e})"))?;
        if doc.get("format").and_then(|f| f.as_str()) != Some(MODEL_FORMAT) {
            return Err(format!("not a ferrocluster model (no \"format\": \"{MODEL_FORMAT}\" field)"));
        }
        match doc.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(MODEL_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "written by format version {v}, this build reads version {MODEL_VERSION}: upgrade ferrocluster"
                ))
            }
            None => return Err("the \"version\" field is missing".to_owned()),
        }
        let saved: SavedModel = serde_json::from_value(doc).map_err(|e| format!("corrupt model: {e}"))?;
        saved.check()?;
        Ok(saved)
    }

    /// Checks invariants serde cannot: shapes agree and values are finite.
    fn check(&self) -> std::result::Result<(), String> {
        let Model::KMeans(m) = &self.model;
        if m.centres.nrows() == 0 || m.centres.ncols() == 0 {
            return Err("corrupt model: it has no centres".to_owned());
        }
        if m.centres.iter().any(|v| !v.is_finite()) {
            return Err("corrupt model: a centre holds NaN or infinity".to_owned());
        }
        if let Some(features) = &self.features {
            features.validate().map_err(|e| format!("corrupt model: {e}"))?;
            if features.dim() != m.centres.ncols() {
                return Err(format!(
                    "corrupt model: its features have {} dimensions but its centres {}",
                    features.dim(),
                    m.centres.ncols()
                ));
            }
        }
        Ok(())
    }
}

fn model_error(path: &Path, reason: String) -> Error {
    Error::Model { path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    fn sample() -> SavedModel {
        let model =
            KMeansModel { centres: array![[0.0f32, 1.5], [2.0, -3.25]], labels: vec![0, 1], inertia: 1.5, n_iter: 3 };
        SavedModel::new(Model::KMeans(model), None)
    }

    #[test]
    fn round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        sample().save(&path).unwrap();
        assert_eq!(SavedModel::load(&path).unwrap(), sample());
    }

    #[test]
    fn wrong_version_corrupt_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut doc = serde_json::to_value(sample()).unwrap();
        doc["version"] = 99.into();
        std::fs::write(&path, doc.to_string()).unwrap();
        assert!(SavedModel::load(&path).unwrap_err().to_string().contains("format version 99"));

        std::fs::write(&path, b"{\"format\": \"ferrocluster-model\", \"version\": 1, \"model\": 3}").unwrap();
        assert!(SavedModel::load(&path).unwrap_err().to_string().contains("corrupt model"));

        std::fs::write(&path, b"\x89PNG garbage").unwrap();
        assert!(SavedModel::load(&path).unwrap_err().to_string().contains("not valid JSON"));

        std::fs::write(&path, b"{\"hello\": 1}").unwrap();
        assert!(SavedModel::load(&path).unwrap_err().to_string().contains("not a ferrocluster model"));

        let mut doc = serde_json::to_value(sample()).unwrap();
        doc["model"]["centres"]["data"][0] = serde_json::Value::Null;
        std::fs::write(&path, doc.to_string()).unwrap();
        assert!(SavedModel::load(&path).is_err());
    }
}
