//! k-means and mini-batch k-means: fit, predict, transform.

use std::path::PathBuf;

use ferrocluster_core::cluster::kmeans::{KMeans, KMeansInit, KMeansModel};
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Fitted};
use ferrocluster_core::distributed::kmeans::{ClusterData, ClusterFit, ShardedKMeans};
use ferrocluster_core::CancelToken;
use ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::arrays::{fit_weighted, Float, Matrix, Vector};
use crate::compute::compute;
use crate::errors::{distributed_to_py, json_error};
use crate::queue::{runtime, PyCancelFlag, PyQueue};

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

/// The data of a fit over shards: an array in this process, or .npy files the workers read.
#[derive(FromPyObject)]
pub enum ShardedData<'py> {
    Matrix(Matrix<'py>),
    Files(Vec<PathBuf>),
}

/// Fits k-means over shards of rows (k-means|| initialisation, then Lloyd): in this process, or
/// on the `ferrocluster-worker` processes of `queue`, with the same result for the same seed.
/// `params` is the core's `ShardedKMeans` as JSON; `init_centres` overrides k-means||.
///
/// Args:
///     x: float32 (float64 too in process) array of shape (n_samples, n_features), or, on a
///         cluster, paths of float32 .npy files every worker reads (their rows one after the other).
///     params: the parameters as JSON.
///     init_centres: initial centres instead of k-means||, or None.
///     queue: a `Queue` whose workers run the shards, or None to fit in this process.
///     timeout_s: on a cluster, how long the fit may take.
///     n_threads: in process, threads to use; None = all cores.
///     cancel: a `CancelFlag`: once set, the fit stops before its next step (KeyboardInterrupt
///         in process, RuntimeError on a cluster), cleaning up on the workers.
/// Returns:
///     (centres, labels, inertia, iterations).
#[pyfunction]
#[pyo3(signature = (x, params, init_centres, queue=None, timeout_s=3600.0, n_threads=None, cancel=None))]
#[allow(clippy::too_many_arguments)]
pub fn sharded_kmeans_fit<'py>(
    py: Python<'py>,
    x: ShardedData<'py>,
    params: &str,
    init_centres: Option<PyReadonlyArray2<'py, f64>>,
    queue: Option<PyRef<'py, PyQueue>>,
    timeout_s: f64,
    n_threads: Option<usize>,
    cancel: Option<PyRef<'py, PyCancelFlag>>,
) -> PyResult<FitResult<'py>> {
    let mut algorithm: ShardedKMeans =
        serde_json::from_str(params).map_err(|e| json_error("ShardedKMeans parameters", e))?;
    algorithm.init = init_centres.map(|c| c.as_array().to_owned());
    let token = cancel.map(|c| c.token()).unwrap_or_default();
    let Some(queue) = queue else {
        let ShardedData::Matrix(x) = x else {
            return Err(PyTypeError::new_err("files are fitted on a cluster: load them to fit in process"));
        };
        return match x {
            Matrix::F32(x) => Ok(to_py(py, fit_local(py, &algorithm, x, n_threads, &token)?)),
            Matrix::F64(x) => Ok(to_py(py, fit_local(py, &algorithm, x, n_threads, &token)?)),
        };
    };
    let timeout = std::time::Duration::try_from_secs_f64(timeout_s)
        .map_err(|_| pyo3::exceptions::PyValueError::new_err(format!("timeout_s must be >= 0, got {timeout_s}")))?;
    let data = match &x {
        ShardedData::Matrix(Matrix::F32(x)) => ClusterData::Matrix(x.as_array()),
        ShardedData::Matrix(Matrix::F64(_)) => {
            return Err(PyTypeError::new_err("a fit on a cluster takes float32 X: pass X.astype(np.float32)"))
        }
        ShardedData::Files(paths) => ClusterData::Npy(paths.clone()),
    };
    let (rt, queue) = (runtime()?, queue.inner());
    let model = py
        .detach(|| {
            let (stop, watched) = tokio::sync::watch::channel(false);
            // The flag is set from Python; the fit waits on a channel: relay every 20 ms.
            let relay = rt.spawn(async move {
                while !token.is_cancelled() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                stop.send(true).ok();
                stop.closed().await;
            });
            let fit = ClusterFit { timeout, progress: &|_| {}, stop: Some(&watched) };
            let fitted = algorithm.fit_on_cluster_with(queue, rt.handle(), data, fit);
            relay.abort();
            fitted
        })
        .map_err(distributed_to_py)?;
    Ok(to_py(py, model))
}

/// Fits over shards in this process, stopping between steps once `cancel` is set.
fn fit_local<T: Float>(
    py: Python<'_>,
    algorithm: &ShardedKMeans,
    x: PyReadonlyArray2<'_, T>,
    n_threads: Option<usize>,
    cancel: &CancelToken,
) -> PyResult<KMeansModel<T>> {
    let xv = x.as_array();
    compute(py, n_threads, || algorithm.fit_cancellable(xv, None, &|_| {}, cancel))
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
