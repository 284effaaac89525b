//! Datasets: uploaded images kept as sent, with a record of their names and sizes.

use std::path::PathBuf;

use ferrocluster_core::training::task::ImageFiles;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{now_ms, read_json, write_json, Store};
use crate::upload::NamedImage;

/// A dataset without its image list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetSummary {
    /// Its id.
    #[schema(value_type = super::DatasetId)]
    pub id: String,
    /// The name given at upload, if any.
    pub name: Option<String>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// How many images it holds.
    pub n_images: usize,
    /// Their encoded size in bytes, summed.
    pub bytes: u64,
}

/// One image of a dataset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetImage {
    /// The name it was uploaded with.
    pub name: String,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
}

/// A dataset with its images, in upload order (the row order of models trained on it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Dataset {
    /// The summary.
    #[serde(flatten)]
    pub summary: DatasetSummary,
    /// The images.
    pub images: Vec<DatasetImage>,
}

impl Store {
    fn dataset_dir(&self, id: &str) -> PathBuf {
        self.dir("datasets").join(id)
    }

    /// Stores already-validated images as a new dataset (all or nothing).
    pub fn create_dataset(
        &self,
        id: &str,
        name: Option<String>,
        images: &[NamedImage],
        sizes: &[(u32, u32)],
    ) -> std::io::Result<Dataset> {
        let staged = self.staging(id)?;
        std::fs::create_dir(staged.join("images"))?;
        for (i, image) in images.iter().enumerate() {
            std::fs::write(staged.join("images").join(ImageFiles::file_name(i)), &image.bytes)?;
        }
        let dataset = Dataset {
            summary: DatasetSummary {
                id: id.to_owned(),
                name,
                created_at_ms: now_ms(),
                n_images: images.len(),
                bytes: images.iter().map(|image| image.bytes.len() as u64).sum(),
            },
            images: images
                .iter()
                .zip(sizes)
                .map(|(image, &(width, height))| DatasetImage { name: image.name.clone(), width, height })
                .collect(),
        };
        write_json(&staged.join("meta.json"), &dataset)?;
        Store::publish(&staged, &self.dataset_dir(id))?;
        Ok(dataset)
    }

    /// The dataset `id`, or `None` if there is none.
    pub fn dataset(&self, id: &str) -> std::io::Result<Option<Dataset>> {
        let path = self.dataset_dir(id).join("meta.json");
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Every dataset, oldest first.
    pub fn datasets(&self) -> std::io::Result<Vec<DatasetSummary>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dir("datasets"))? {
            let meta = entry?.path().join("meta.json");
            if meta.exists() {
                let dataset: Dataset = read_json(&meta)?;
                all.push(dataset.summary);
            }
        }
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(all)
    }

    /// The dataset's image files (under the data directory's absolute path).
    pub fn dataset_images(&self, dataset: &Dataset) -> ImageFiles {
        ImageFiles { dir: self.dataset_dir(&dataset.summary.id).join("images"), count: dataset.images.len() }
    }

    /// The files of the dataset's images, in order.
    pub fn dataset_files(&self, dataset: &Dataset) -> Vec<PathBuf> {
        self.dataset_images(dataset).paths()
    }

    /// Deletes the dataset `id`; `false` if there was none.
    pub fn delete_dataset(&self, id: &str) -> std::io::Result<bool> {
        let dir = self.dataset_dir(id);
        if !dir.exists() {
            return Ok(false);
        }
        self.unpublish(&dir).map(|()| true)
    }
}
