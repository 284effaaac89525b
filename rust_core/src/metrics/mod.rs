//! Clustering quality metrics, equal to scikit-learn's: label agreement (adjusted Rand index,
//! normalized mutual information) and internal indices (silhouette, Calinski–Harabasz,
//! Davies–Bouldin, inertia).
//!
//! Every metric computes in f64 whatever the input precision.

mod agreement;
mod dispersion;
pub(crate) mod distance;
mod inertia;
mod labels;
mod silhouette;

pub use agreement::{adjusted_rand_score, normalized_mutual_info_score};
pub use dispersion::{calinski_harabasz_score, davies_bouldin_score};
pub use inertia::inertia;
pub use silhouette::{silhouette_samples, silhouette_score};
