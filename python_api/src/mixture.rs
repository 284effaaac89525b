//! Gaussian mixtures: fit, and the per-sample methods of a fitted mixture. Python keeps the
//! fitted arrays; they come back here to rebuild the model for each call.

use ferrocluster_core::cluster::gmm::{CovarianceArrays, CovarianceType, GaussianMixture, GaussianMixtureModel};
use ferrocluster_core::cluster::{Clusterer, Fitted};
use ferrocluster_core::Real;
use ndarray::{Array1, Array2, Ix1, Ix2, Ix3};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::Matrix;
use crate::compute::compute;
use crate::errors::{json_error, to_py};

fn covariance_arrays(
    kind: CovarianceType,
    array: PyReadonlyArrayDyn<'_, f64>,
    what: &str,
) -> PyResult<CovarianceArrays> {
    let a = array.as_array().to_owned();
    let shape = a.shape().to_vec();
    let wrong =
        |_| PyValueError::new_err(format!("{what} has the wrong shape {shape:?} for covariance_type {}", kind.name()));
    Ok(match kind {
        CovarianceType::Full => CovarianceArrays::Full(a.into_dimensionality::<Ix3>().map_err(wrong)?),
        CovarianceType::Tied => CovarianceArrays::Tied(a.into_dimensionality::<Ix2>().map_err(wrong)?),
        CovarianceType::Diag => CovarianceArrays::Diag(a.into_dimensionality::<Ix2>().map_err(wrong)?),
        CovarianceType::Spherical => CovarianceArrays::Spherical(a.into_dimensionality::<Ix1>().map_err(wrong)?),
    })
}

fn covariance_to_py<'py>(py: Python<'py>, arrays: CovarianceArrays) -> Bound<'py, PyArrayDyn<f64>> {
    let dynamic = match arrays {
        CovarianceArrays::Full(a) => a.into_dyn(),
        CovarianceArrays::Tied(a) | CovarianceArrays::Diag(a) => a.into_dyn(),
        CovarianceArrays::Spherical(a) => a.into_dyn(),
    };
    dynamic.into_pyarray(py)
}

/// Fits a mixture. `params` is the core's `GaussianMixture` as JSON without the initial
/// arrays, which come separately. Returns a dict of the fitted attributes.
#[pyfunction]
#[pyo3(signature = (x, params, weights_init=None, means_init=None, precisions_init=None, n_threads=None))]
pub fn gmm_fit<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    params: &str,
    weights_init: Option<PyReadonlyArray1<'py, f64>>,
    means_init: Option<PyReadonlyArray2<'py, f64>>,
    precisions_init: Option<PyReadonlyArrayDyn<'py, f64>>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut algorithm: GaussianMixture =
        serde_json::from_str(params).map_err(|e| json_error("GaussianMixture parameters", e))?;
    algorithm.weights_init = weights_init.map(|w| w.as_array().to_vec());
    algorithm.means_init = means_init.map(|m| m.as_array().to_owned());
    algorithm.precisions_init =
        precisions_init.map(|p| covariance_arrays(algorithm.covariance_type, p, "precisions_init")).transpose()?;
    let mut model = match x {
        Matrix::F32(x) => {
            let x = x.as_array();
            compute(py, n_threads, || algorithm.fit(x, None))?
        }
        Matrix::F64(x) => {
            let x = x.as_array();
            compute(py, n_threads, || algorithm.fit(x, None))?
        }
    };
    let out = PyDict::new(py);
    out.set_item("labels_", std::mem::take(&mut model.labels).into_pyarray(py))?;
    out.set_item("precisions_", covariance_to_py(py, model.precisions()))?;
    out.set_item("weights_", model.weights.into_pyarray(py))?;
    out.set_item("means_", PyArray2::from_owned_array(py, model.means))?;
    out.set_item("covariances_", covariance_to_py(py, model.covariances))?;
    out.set_item("precisions_cholesky_", covariance_to_py(py, model.precisions_cholesky))?;
    out.set_item("converged_", model.converged)?;
    out.set_item("n_iter_", model.n_iter)?;
    out.set_item("lower_bound_", model.lower_bound)?;
    Ok(out)
}

/// A fitted mixture rebuilt from the arrays Python holds, and what to compute with it.
#[pyfunction]
#[pyo3(signature = (x, covariance_type, weights, means, covariances, precisions_cholesky, what))]
#[allow(clippy::too_many_arguments)]
pub fn gmm_apply<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    covariance_type: &str,
    weights: PyReadonlyArray1<'py, f64>,
    means: PyReadonlyArray2<'py, f64>,
    covariances: PyReadonlyArrayDyn<'py, f64>,
    precisions_cholesky: PyReadonlyArrayDyn<'py, f64>,
    what: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let kind: CovarianceType = covariance_type.parse().map_err(to_py)?;
    let model = GaussianMixtureModel {
        weights: weights.as_array().to_vec(),
        means: means.as_array().to_owned(),
        covariances: covariance_arrays(kind, covariances, "covariances_")?,
        precisions_cholesky: covariance_arrays(kind, precisions_cholesky, "precisions_cholesky_")?,
        converged: true,
        n_iter: 0,
        lower_bound: f64::NAN,
        labels: Vec::new(),
    };
    fn typed<'py, T: Real + Element>(
        py: Python<'py>,
        model: &GaussianMixtureModel,
        x: ndarray::ArrayView2<'_, T>,
        what: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        match what {
            "predict" => Ok(compute(py, None, || model.predict(x))?.into_pyarray(py).into_any()),
            "predict_proba" => {
                let p: Array2<f64> = compute(py, None, || model.predict_proba(x))?;
                Ok(PyArray2::from_owned_array(py, p).into_any())
            }
            "score_samples" => {
                let s: Vec<f64> = compute(py, None, || model.score_samples(x))?;
                Ok(PyArray1::from_owned_array(py, Array1::from(s)).into_any())
            }
            "n_parameters" => Ok(model.n_parameters().into_pyobject(py)?.into_any()),
            other => Err(PyValueError::new_err(format!("unknown mixture method {other:?}"))),
        }
    }
    match x {
        Matrix::F32(x) => typed(py, &model, x.as_array(), what),
        Matrix::F64(x) => typed(py, &model, x.as_array(), what),
    }
}
