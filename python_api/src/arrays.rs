//! numpy arrays in either float type, borrowed without copying (read-only arrays accepted).

use ferrocluster_core::cluster::Clusterer;
use ferrocluster_core::Real;
use numpy::{Element, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::compute::compute;

/// A 2-D float32 or float64 array.
#[derive(FromPyObject)]
pub enum Matrix<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

/// A 1-D float32 or float64 array.
#[derive(FromPyObject)]
pub enum Vector<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

/// A float type that numpy and the core share.
pub trait Float: Real + Element {
    /// The vector as this type; `None` when its dtype differs.
    fn typed(v: Vector<'_>) -> Option<PyReadonlyArray1<'_, Self>>;
}

impl Float for f32 {
    fn typed(v: Vector<'_>) -> Option<PyReadonlyArray1<'_, f32>> {
        match v {
            Vector::F32(v) => Some(v),
            Vector::F64(_) => None,
        }
    }
}

impl Float for f64 {
    fn typed(v: Vector<'_>) -> Option<PyReadonlyArray1<'_, f64>> {
        match v {
            Vector::F64(v) => Some(v),
            Vector::F32(_) => None,
        }
    }
}

/// Fits `algorithm` on `x` with optional sample weights of X's dtype, without the GIL.
pub fn fit_weighted<'py, T: Float, C: Clusterer<T> + Sync>(
    py: Python<'py>,
    algorithm: &C,
    x: PyReadonlyArray2<'py, T>,
    sample_weight: Option<Vector<'py>>,
    n_threads: Option<usize>,
) -> PyResult<C::Model>
where
    C::Model: Send,
{
    let w = sample_weight
        .map(|w| T::typed(w).ok_or_else(|| PyTypeError::new_err("sample_weight must have the same dtype as X")))
        .transpose()?;
    let (xv, wv) = (x.as_array(), w.as_ref().map(|w| w.as_array()));
    compute(py, n_threads, || algorithm.fit(xv, wv))
}
