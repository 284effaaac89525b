//! DBSCAN: fit only (like scikit-learn, it labels the data it is fitted on).

use ferrocluster_core::cluster::dbscan::Dbscan;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::prelude::*;

use crate::arrays::{fit_weighted, Matrix, Vector};
use crate::errors::json_error;

/// Labels, core sample indices and core sample rows (float64).
type DbscanResult<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<usize>>, Bound<'py, PyArray2<f64>>);

/// Fits DBSCAN; `params` is the core's `Dbscan` as JSON.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, params, n_threads=None))]
pub fn dbscan_fit<'py>(
    py: Python<'py>,
    x: Matrix<'py>,
    sample_weight: Option<Vector<'py>>,
    params: &str,
    n_threads: Option<usize>,
) -> PyResult<DbscanResult<'py>> {
    let algorithm: Dbscan = serde_json::from_str(params).map_err(|e| json_error("DBSCAN parameters", e))?;
    let model = match x {
        Matrix::F32(x) => fit_weighted(py, &algorithm, x, sample_weight, n_threads)?,
        Matrix::F64(x) => fit_weighted(py, &algorithm, x, sample_weight, n_threads)?,
    };
    Ok((
        model.labels.into_pyarray(py),
        model.core_sample_indices.into_pyarray(py),
        PyArray2::from_owned_array(py, model.components),
    ))
}
