//! k-means and mini-batch k-means: fit, predict, transform.

use ferrocluster_core::cluster::kmeans::{KMeans, KMeansInit, KMeansModel};
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Fitted};
use ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::arrays::{fit_weighted, Float, Matrix, Vector};
use crate::compute::compute;
use crate::errors::json_error;

/// What a k-means fit gives Python: centres, labels, inertia, iterations.
type FitResult<'py> = (Bound<'py, PyAny>, Bound<'py, PyArray1<i64>>, f64, usize);

fn init_from(name: &str, centres: Option<PyReadonlyArray2<'_, f64>>) -> PyResult<KMeansInit> {
    match (name, centres) {
        ("k-means++", _) => Ok(KMeansInit::KMeansPlusPlus),
        ("random", _) => Ok(KMeansInit::Random),
        ("array", Some(c)) => Ok(KMeansInit::Centres(c.as_array().to_owned())),
        (other, _) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "init must be 'k-means++', 'random' or an array of centres, got {other:?}"
        ))),
    }
}

fn to_py<'py, T: Float>(py: Python<'py>, model: KMeansModel<T>) -> FitResult<'py> {
    let labels = model.labels().to_vec().into_pyarray(py);
    (model.centres.into_pyarray(py).into_any(), labels, model.inertia, model.n_iter)
}

fn fit_any<'py, C: Clusterer<f32, Model = KMeansModel<f32>> + Clusterer<f64, Model = KMeansModel<f64>> + Sync>(
    py: Python<'py>,
    algorithm: &C,
    x: Matrix<'py>,
    w: Option<Vector<'py>>,
    n_threads: Option<usize>,
) -> PyResult<FitResult<'py>> {
    Ok(match x {
        Matrix::F32(x) => to_py(py, fit_weighted(py, algorithm, x, w, n_threads)?),
        Matrix::F64(x) => to_py(py, fit_weighted(py, algorithm, x, w, n_threads)?),
    })
}

/// Fits k-means. `params` is the core's `KMeans` as JSON; `init` and `init_centres` override its init.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, params, init, init_centres, n_threads))]
pub fn kmeans_fit<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    sample_weight: Option<Vector<'py>>,
    params: &str,
    init: &str,
    init_centres: Option<PyReadonlyArray2<'py, f64>>,
    n_threads: Option<usize>,
) -> PyResult<FitResult<'py>> {
    let mut algorithm: KMeans = serde_json::from_str(params).map_err(|e| json_error("KMeans parameters", e))?;
    algorithm.init = init_from(init, init_centres)?;
    fit_any(py, &algorithm, x, sample_weight, n_threads)
}

/// Fits mini-batch k-means. `params` is the core's `MiniBatchKMeans` as JSON.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, params, init, init_centres, n_threads))]
pub fn minibatch_kmeans_fit<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    sample_weight: Option<Vector<'py>>,
    params: &str,
    init: &str,
    init_centres: Option<PyReadonlyArray2<'py, f64>>,
    n_threads: Option<usize>,
) -> PyResult<FitResult<'py>> {
    let mut algorithm: MiniBatchKMeans =
        serde_json::from_str(params).map_err(|e| json_error("MiniBatchKMeans parameters", e))?;
    algorithm.init = init_from(init, init_centres)?;
    fit_any(py, &algorithm, x, sample_weight, n_threads)
}

fn model_of<T: Float>(centres: &PyReadonlyArray2<'_, T>) -> KMeansModel<T> {
    KMeansModel { centres: centres.as_array().to_owned(), labels: Vec::new(), inertia: 0.0, n_iter: 0 }
}

/// Nearest centre of each row of `x` and the squared distance to it.
#[pyfunction]
#[pyo3(signature = (x, centres, n_threads=None))]
pub fn kmeans_predict<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    centres: Matrix<'py>,
    n_threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyAny>)> {
    fn typed<'py, T: Float>(
        py: Python<'py>,
        x: PyReadonlyArray2<'py, T>,
        c: PyReadonlyArray2<'py, T>,
        n_threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyAny>)> {
        let (model, xv) = (model_of(&c), x.as_array());
        let (labels, distances) = compute(py, n_threads, || model.predict_with_distances(xv))?;
        Ok((labels.into_pyarray(py), distances.into_pyarray(py).into_any()))
    }
    match (x, centres) {
        (Matrix::F32(x), Matrix::F32(c)) => typed(py, x, c, n_threads),
        (Matrix::F64(x), Matrix::F64(c)) => typed(py, x, c, n_threads),
        _ => Err(PyTypeError::new_err("X and the centres must have the same dtype")),
    }
}

/// Euclidean distance of each row of `x` to each centre.
#[pyfunction]
#[pyo3(signature = (x, centres, n_threads=None))]
pub fn kmeans_transform<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    centres: Matrix<'py>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    fn typed<'py, T: Float>(
        py: Python<'py>,
        x: PyReadonlyArray2<'py, T>,
        c: PyReadonlyArray2<'py, T>,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (model, xv) = (model_of(&c), x.as_array());
        let distances: Array2<T> = compute(py, n_threads, || model.transform(xv))?;
        Ok(PyArray2::from_owned_array(py, distances).into_any())
    }
    match (x, centres) {
        (Matrix::F32(x), Matrix::F32(c)) => typed(py, x, c, n_threads),
        (Matrix::F64(x), Matrix::F64(c)) => typed(py, x, c, n_threads),
        _ => Err(PyTypeError::new_err("X and the centres must have the same dtype")),
    }
}
