//! Bundled and generated data sets: scikit-learn's digits and a seeded synthetic generator,
//! plus writing a labelled set out as a folder of PNG files with a `labels.csv`.

mod digits;
mod folder;
mod synthetic;

pub use digits::read_digits_csv;
pub use folder::{read_labels, write_labelled, LABELS_FILE};
pub use synthetic::{synthetic, SyntheticSpec};

use crate::image::Image;

/// Images with a ground-truth class each.
#[derive(Debug, Clone, Default)]
pub struct LabelledImages {
    /// The images, RGB or grey, f32 in 0–255.
    pub images: Vec<Image<f32>>,
    /// The class of each image.
    pub labels: Vec<i64>,
}
