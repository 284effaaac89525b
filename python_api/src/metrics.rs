//! Clustering quality metrics.

use ferrocluster_core::metrics;
use ferrocluster_core::Real;
use numpy::{Element, IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::arrays::Matrix;
use crate::compute::compute;

/// Adjusted Rand index between two labelings.
#[pyfunction]
pub fn adjusted_rand_score(
    py: Python<'_>,
    a: PyReadonlyArray1<'_, i64>,
    b: PyReadonlyArray1<'_, i64>,
) -> PyResult<f64> {
    let (a, b) = (a.as_array().to_vec(), b.as_array().to_vec());
    compute(py, None, || metrics::adjusted_rand_score(&a, &b))
}

/// Normalised mutual information (arithmetic mean normalisation) between two labelings.
#[pyfunction]
pub fn normalized_mutual_info_score(
    py: Python<'_>,
    a: PyReadonlyArray1<'_, i64>,
    b: PyReadonlyArray1<'_, i64>,
) -> PyResult<f64> {
    let (a, b) = (a.as_array().to_vec(), b.as_array().to_vec());
    compute(py, None, || metrics::normalized_mutual_info_score(&a, &b))
}

fn with_matrix<'py, R: Send>(
    py: Python<'py>,
    x: Matrix<'py>,
    f32_case: impl FnOnce(ndarray::ArrayView2<'_, f32>) -> ferrocluster_core::Result<R> + Send,
    f64_case: impl FnOnce(ndarray::ArrayView2<'_, f64>) -> ferrocluster_core::Result<R> + Send,
) -> PyResult<R> {
    match x {
        Matrix::F32(x) => {
            let view = x.as_array();
            compute(py, None, || f32_case(view))
        }
        Matrix::F64(x) => {
            let view = x.as_array();
            compute(py, None, || f64_case(view))
        }
    }
}

fn labels_of(labels: &PyReadonlyArray1<'_, i64>) -> Vec<i64> {
    labels.as_array().to_vec()
}

/// Mean silhouette coefficient (euclidean), on a random sample of `sample_size` rows if given.
#[pyfunction]
#[pyo3(signature = (x, labels, sample_size=None, seed=0))]
pub fn silhouette_score(
    py: Python<'_>,
    x: Matrix<'_>,
    labels: PyReadonlyArray1<'_, i64>,
    sample_size: Option<usize>,
    seed: u64,
) -> PyResult<f64> {
    let labels = labels_of(&labels);
    with_matrix(
        py,
        x,
        |x| metrics::silhouette_score(x, &labels, sample_size, seed),
        |x| metrics::silhouette_score(x, &labels, sample_size, seed),
    )
}

/// Silhouette coefficient of each row (euclidean).
#[pyfunction]
pub fn silhouette_samples<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    labels: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let labels = labels_of(&labels);
    let values =
        with_matrix(py, x, |x| metrics::silhouette_samples(x, &labels), |x| metrics::silhouette_samples(x, &labels))?;
    Ok(values.into_pyarray(py))
}

fn score_by<T: Real + Element>(
    f: fn(ndarray::ArrayView2<'_, T>, &[i64]) -> ferrocluster_core::Result<f64>,
    labels: &[i64],
) -> impl FnOnce(ndarray::ArrayView2<'_, T>) -> ferrocluster_core::Result<f64> + Send + '_ {
    move |x| f(x, labels)
}

/// Calinski–Harabasz index (variance ratio).
#[pyfunction]
pub fn calinski_harabasz_score(py: Python<'_>, x: Matrix<'_>, labels: PyReadonlyArray1<'_, i64>) -> PyResult<f64> {
    let labels = labels_of(&labels);
    with_matrix(
        py,
        x,
        score_by(metrics::calinski_harabasz_score::<f32>, &labels),
        score_by(metrics::calinski_harabasz_score::<f64>, &labels),
    )
}

/// Davies–Bouldin index.
#[pyfunction]
pub fn davies_bouldin_score(py: Python<'_>, x: Matrix<'_>, labels: PyReadonlyArray1<'_, i64>) -> PyResult<f64> {
    let labels = labels_of(&labels);
    with_matrix(
        py,
        x,
        score_by(metrics::davies_bouldin_score::<f32>, &labels),
        score_by(metrics::davies_bouldin_score::<f64>, &labels),
    )
}
