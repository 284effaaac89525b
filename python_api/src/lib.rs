//! Python bindings: the native module `ferrocluster._core`.
//!
//! Thin adapters over `ferrocluster-core`: numpy arrays are borrowed without copying
//! (read-only arrays included), work runs with the GIL released, parameters arrive as the
//! core's own serde types in JSON, and core errors map to Python exceptions in one place.

mod arrays;
mod cluster;
mod compute;
mod data;
mod density;
mod errors;
mod features;
mod metrics;
mod mixture;
mod progress;
mod queue;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ImageError", m.py().get_type::<errors::ImageError>())?;
    m.add("ModelFileError", m.py().get_type::<errors::ModelFileError>())?;
    m.add_function(wrap_pyfunction!(features::hog, m)?)?;
    m.add_function(wrap_pyfunction!(features::local_binary_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(features::feature_dim, m)?)?;
    m.add_function(wrap_pyfunction!(features::extract_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(features::extract_paths, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::kmeans_fit, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::minibatch_kmeans_fit, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::sharded_kmeans_fit, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::kmeans_predict, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::kmeans_transform, m)?)?;
    m.add_function(wrap_pyfunction!(data::synthetic_images, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::adjusted_rand_score, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::normalized_mutual_info_score, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::silhouette_score, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::silhouette_samples, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::calinski_harabasz_score, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::davies_bouldin_score, m)?)?;
    m.add_function(wrap_pyfunction!(density::dbscan_fit, m)?)?;
    m.add_function(wrap_pyfunction!(mixture::gmm_fit, m)?)?;
    m.add_function(wrap_pyfunction!(mixture::gmm_apply, m)?)?;
    m.add_class::<queue::PyQueue>()?;
    m.add_class::<queue::PyCancelFlag>()?;
    m.add_class::<queue::PyConsumer>()?;
    m.add_class::<queue::PyDelivery>()?;
    m.add_class::<queue::PyListener>()?;
    Ok(())
}
