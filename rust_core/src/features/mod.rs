//! Feature extractors: HOG, LBP, colour histograms, raw pixels, composed by a [`FeatureConfig`].
//!
//! HOG and LBP reproduce scikit-image 0.26 bit for bit (`skimage.feature.hog` and
//! `local_binary_pattern`), at a few percent of its cost. A [`FeatureConfig`] turns a batch
//! of images of one size into an `n × dim` matrix, in parallel over images.
//!
//! ```
//! use ferrocluster_core::features::FeatureConfig;
//! use ferrocluster_core::image::ImageView;
//!
//! let config = FeatureConfig::default(); // 64×64 RGB, HOG 9 orientations, 8×8 cells, 2×2 blocks
//! let pixels = vec![128f32; 64 * 64 * 3];
//! let image = ImageView::new(64, 64, 3, &pixels).unwrap();
//! let features = config.extract(&[image, image]).unwrap();
//! assert_eq!(features.dim(), (2, config.dim()));
//! assert_eq!(config.dim(), 7 * 7 * 2 * 2 * 9);
//! ```

mod colour;
mod config;
mod grey;
mod hog;
mod lbp;
mod pixels;
mod simd;

pub use colour::ColourHistogram;
pub use config::{FeatureConfig, FeatureExtractor};
pub use grey::{grey, GREY_WEIGHTS};
pub use hog::{BlockNorm, Hog};
pub use lbp::{Lbp, LbpMethod};
pub use pixels::Pixels;
