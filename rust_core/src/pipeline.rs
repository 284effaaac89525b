//! End-to-end extraction: images (in memory or files) → resized RGB → one feature row each,
//! written in place into an `n × d` matrix, in parallel, keeping going past bad inputs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, Axis};
use rayon::prelude::*;

use crate::features::{FeatureConfig, FeatureExtractor};
use crate::image::{load_pixels, resize_rgb, DecodeLimits, ImageView};
use crate::{Error, Result};

/// Feature rows for the inputs that could be read, and the reasons the others could not.
#[derive(Debug)]
pub struct Extracted {
    /// One row per input that succeeded, in input order.
    pub features: Array2<f32>,
    /// The input index of each row of `features`.
    pub rows: Vec<usize>,
    /// Inputs that failed, with their index and the error.
    pub failures: Vec<(usize, Error)>,
}

/// Runs `one(i, row)` for every input in parallel, each writing its own row of an `n × d`
/// matrix, then drops the rows of inputs that failed.
fn extract_rows(
    n: usize,
    config: &FeatureConfig,
    progress: &(dyn Fn(usize) + Sync),
    one: impl Fn(&FeatureExtractor<'_>, usize, &mut [f32]) -> Result<()> + Sync,
) -> Result<Extracted> {
    // Validates the config and builds its lookup tables once for all images.
    let extractor = config.extractor()?;
    let d = config.dim();
    let mut features = Array2::<f32>::zeros((n, d));
    let done = AtomicUsize::new(0);
    let outcomes: Vec<Result<()>> = features
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let row = row.as_slice_mut().expect("rows of a standard-layout matrix are contiguous");
            let outcome = one(&extractor, i, row);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            outcome
        })
        .collect();
    let mut rows = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(()) => rows.push(i),
            Err(e) => failures.push((i, e)),
        }
    }
    if !failures.is_empty() {
        features = features.select(Axis(0), &rows);
    }
    Ok(Extracted { features, rows, failures })
}

/// Extracts features from images in memory (any size, grey or RGB, 0–255), resizing each to
/// `config.size`. `progress(n)` reports how many images are done.
pub fn extract_images(
    images: &[ImageView<'_, f32>],
    config: &FeatureConfig,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Extracted> {
    extract_rows(images.len(), config, progress, |extractor, i, row| {
        let image = resize_rgb(images[i], config.size);
        extractor.extract(image.view(), row).map_err(|e| Error::input(format!("image {i}: {e}")))
    })
}

/// Reads, decodes and extracts features from image files in one parallel pass (no image is
/// kept in memory past its own row). `progress(n)` reports how many files are done.
pub fn extract_files(
    paths: &[PathBuf],
    config: &FeatureConfig,
    limits: &DecodeLimits,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Extracted> {
    extract_rows(paths.len(), config, progress, |extractor, i, row| {
        let image = load_pixels(&paths[i], Some(config.size), limits)?;
        extractor.extract_decoded(&image, row)
    })
}
