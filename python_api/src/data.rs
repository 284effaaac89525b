//! Generated data sets.

use ferrocluster_core::data::{synthetic, SyntheticSpec};
use numpy::{IntoPyArray, PyArray1, PyArray4};
use pyo3::prelude::*;

use crate::compute::compute;
use crate::errors::json_error;

/// Images (n, h, w, 3) as uint8 and their int64 labels.
type LabelledArrays<'py> = (Bound<'py, PyArray4<u8>>, Bound<'py, PyArray1<i64>>);

/// Seeded synthetic labelled images: (uint8 array (n, h, w, 3), int64 labels).
#[pyfunction]
pub fn synthetic_images<'py>(py: Python<'py>, spec: &str) -> PyResult<LabelledArrays<'py>> {
    let spec: SyntheticSpec = serde_json::from_str(spec).map_err(|e| json_error("synthetic image spec", e))?;
    let set = compute(py, None, || synthetic(&spec))?;
    let [h, w] = spec.size;
    let pixels: Vec<u8> = set.images.iter().flat_map(|im| im.data().iter().map(|v| v.round() as u8)).collect();
    let array = ndarray::Array4::from_shape_vec((set.images.len(), h, w, 3), pixels)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    Ok((PyArray4::from_owned_array(py, array), set.labels.into_pyarray(py)))
}
