//! ferrocluster's engine: images in, feature vectors and clusters out, on every core.
//!
//! The pipeline is decode → resize → extract features into a preallocated `n × d` matrix
//! (rayon over images) → cluster. `ferrocluster-core` knows nothing of Python or HTTP; the
//! `python_api` and `rocket_api` crates are thin adapters over it.
//!
//! ```
//! use ferrocluster_core::cluster::{kmeans::KMeans, Clusterer};
//! use ferrocluster_core::data::{synthetic, SyntheticSpec};
//! use ferrocluster_core::features::FeatureConfig;
//! use ferrocluster_core::metrics::adjusted_rand_score;
//! use ferrocluster_core::pipeline::extract_images;
//!
//! // 120 labelled 32×32 images in 4 classes, then HOG features of each.
//! let set = synthetic(&SyntheticSpec { n: 120, size: [32, 32], classes: 4, ..Default::default() })?;
//! let views: Vec<_> = set.images.iter().map(|image| image.view()).collect();
//! let config = FeatureConfig { size: [32, 32], ..FeatureConfig::default() };
//! let features = extract_images(&views, &config, &|_done| {})?.features;
//! assert_eq!(features.dim(), (120, config.dim()));
//!
//! // k-means with scikit-learn's semantics finds the four classes.
//! let model = KMeans { n_clusters: 4, random_state: 0, ..KMeans::default() }.fit(features.view(), None)?;
//! assert!(adjusted_rand_score(&set.labels, &model.labels)? > 0.9);
//! # Ok::<(), ferrocluster_core::Error>(())
//! ```

pub mod cancel;
pub mod cluster;
pub mod data;
pub mod distributed;
pub mod error;
pub mod features;
pub mod image;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod pipeline;
pub mod queue;
pub mod real;
pub mod report;
pub mod training;

pub use cancel::CancelToken;
pub use error::{Error, Result};
pub use real::Real;
