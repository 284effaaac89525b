//! ferrocluster's engine: images in, feature vectors and clusters out, on every core.
//!
//! The pipeline is decode → resize → extract features into a preallocated `n × d` matrix
//! (rayon over images) → cluster. `ferrocluster-core` knows nothing of Python or HTTP; the
//! `python_api` and `rocket_api` crates are thin adapters over it.

pub mod cluster;
pub mod data;
pub mod error;
pub mod features;
pub mod image;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod real;
pub mod report;

pub use error::{Error, Result};
pub use real::Real;
