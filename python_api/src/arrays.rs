//! numpy arrays in either float type, borrowed without copying (read-only arrays accepted).

use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

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
