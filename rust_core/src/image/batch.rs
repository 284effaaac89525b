//! Finding image files in folders and loading many of them in parallel.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::decode::{load, DecodeLimits};
use super::Image;
use crate::{Error, Result};

/// File extensions treated as images when a folder is scanned.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

/// Lists the image files under `dir` (recursively), sorted by path so runs are repeatable.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| Error::io(&current, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&current, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The outcome of loading a batch: the images that decoded, and why the others did not.
#[derive(Debug, Default)]
pub struct LoadedBatch {
    /// Decoded images, in input order, with the index of the input each came from.
    pub images: Vec<(usize, Image<f32>)>,
    /// Inputs that failed, with their index and the error.
    pub failures: Vec<(usize, Error)>,
}

/// Loads `paths` in parallel into RGB f32 images of `size`, keeping going past bad files.
/// `progress(n)` is called with the number of files finished so far.
pub fn load_batch(
    paths: &[PathBuf],
    size: [usize; 2],
    limits: &DecodeLimits,
    progress: &(dyn Fn(usize) + Sync),
) -> LoadedBatch {
    let done = AtomicUsize::new(0);
    let results: Vec<Result<Image<f32>>> = paths
        .par_iter()
        .map(|path| {
            let result = load(path, Some(size), limits);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            result
        })
        .collect();
    let mut batch = LoadedBatch::default();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(image) => batch.images.push((i, image)),
            Err(e) => batch.failures.push((i, e)),
        }
    }
    batch
}
