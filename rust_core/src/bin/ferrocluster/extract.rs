//! `ferrocluster extract`: features of a folder of images into a .npy file.

use std::path::{Path, PathBuf};

use clap::Args;
use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::image::{list_images, DecodeLimits};
use ferrocluster_core::pipeline::{extract_files, Extracted};
use ferrocluster_core::Error;
use ndarray::Array2;

use crate::progress::Bars;
use crate::FeatureArgs;

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Folder of images (searched recursively).
    dir: PathBuf,
    /// Where to write the features (.npy, float32, one row per image); a .files.txt beside it lists the images.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    features: FeatureArgs,
}

/// The image files of `dir`, or a clear error when there are none.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let paths = list_images(dir)?;
    if paths.is_empty() {
        return Err(Error::input(format!("no images (PNG, JPEG, BMP, GIF, TIFF, WebP) found under {}", dir.display())));
    }
    Ok(paths)
}

/// Feature rows of the image files that could be read, and why the others could not:
/// computed here, or gathered from the workers of a queue.
#[derive(Debug)]
pub struct FileFeatures {
    /// One row per file read, in file order.
    pub features: Array2<f32>,
    /// The index of each row's file.
    pub rows: Vec<usize>,
    /// Files skipped: index and reason.
    pub skipped: Vec<(usize, String)>,
}

impl FileFeatures {
    /// Warns about the skipped files of `paths`; fails when none could be read.
    pub fn checked(self, paths: &[PathBuf]) -> Result<Self, Error> {
        for (i, e) in &self.skipped {
            eprintln!("warning: skipped {}: {e}", paths[*i].display());
        }
        if self.rows.is_empty() {
            return Err(Error::input("none of the images could be read"));
        }
        Ok(self)
    }
}

/// Extracts features from `paths` in this process with a progress bar, warning about files
/// that failed.
pub fn features_of(paths: &[PathBuf], config: &FeatureConfig, bars: &Bars) -> Result<FileFeatures, Error> {
    let bar = bars.bar(paths.len(), "features");
    let Extracted { features, rows, failures } =
        extract_files(paths, config, &DecodeLimits::default(), &|n| bar.set_position(n as u64))?;
    bar.finish();
    let skipped = failures.into_iter().map(|(i, e)| (i, e.to_string())).collect();
    FileFeatures { features, rows, skipped }.checked(paths)
}

pub fn run(args: ExtractArgs, bars: &Bars) -> Result<(), Error> {
    let config = args.features.load()?;
    let paths = images_in(&args.dir)?;
    let extracted = features_of(&paths, &config, bars)?;
    ferrocluster_core::npy::write_f32(&args.output, extracted.features.view())?;
    let list_path = args.output.with_extension("files.txt");
    let list: String = extracted.rows.iter().map(|&i| format!("{}\n", paths[i].display())).collect();
    std::fs::write(&list_path, list).map_err(|e| Error::io(&list_path, e))?;
    let (n, d) = extracted.features.dim();
    println!("wrote {n} × {d} features to {} (files listed in {})", args.output.display(), list_path.display());
    Ok(())
}
