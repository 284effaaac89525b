//! Feature extraction: HOG and LBP on single images (scikit-image's semantics) and whole
//! batches of arrays or files into one float32 matrix.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use ferrocluster_core::features::{BlockNorm, FeatureConfig, Hog, Lbp};
use ferrocluster_core::image::{DecodeLimits, Image, ImageView, Sample};
use ferrocluster_core::pipeline::{extract_files, extract_images};
use ferrocluster_core::Error;
use numpy::{
    Element, IntoPyArray, PyArray2, PyArrayDescrMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString, PyTuple};

use crate::errors::{json_error, to_py};
use crate::progress::with_progress;

/// An image array as numpy holds it: 2-D grey or 3-D RGB, in one of the accepted dtypes.
pub enum ImageArray<'py> {
    U8(PyReadonlyArrayDyn<'py, u8>),
    U16(PyReadonlyArrayDyn<'py, u16>),
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for ImageArray<'py> {
    type Error = PyErr;

    /// Picks the variant from the array's dtype: trying each in turn would build (and throw
    /// away) a TypeError per miss, which cost more than a 64×64 HOG.
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let py = obj.py();
        let array = obj
            .cast::<PyUntypedArray>()
            .map_err(|_| PyTypeError::new_err(format!("an image must be a numpy array, got {}", obj.get_type())))?;
        let dtype = array.dtype();
        if dtype.is_equiv_to(&numpy::dtype::<u8>(py)) {
            Ok(ImageArray::U8(obj.extract()?))
        } else if dtype.is_equiv_to(&numpy::dtype::<u16>(py)) {
            Ok(ImageArray::U16(obj.extract()?))
        } else if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
            Ok(ImageArray::F32(obj.extract()?))
        } else if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
            Ok(ImageArray::F64(obj.extract()?))
        } else {
            Err(PyTypeError::new_err(format!("image arrays must be uint8, uint16, float32 or float64, got {dtype}")))
        }
    }
}

fn shape_of(shape: &[usize]) -> PyResult<(usize, usize, usize)> {
    match *shape {
        [h, w] => Ok((h, w, 1)),
        [h, w, 3] => Ok((h, w, 3)),
        _ => Err(PyValueError::new_err(format!(
            "an image must have shape (height, width) or (height, width, 3), got {shape:?}"
        ))),
    }
}

/// The array's samples, if they are in C order: `as_slice` also takes Fortran order, whose
/// samples are not in the image's order.
fn c_order<'a, T: Element>(array: &'a PyReadonlyArrayDyn<'_, T>) -> Option<&'a [T]> {
    array.as_slice().ok().filter(|_| array.is_c_contiguous())
}

fn view_of<'a, T: Copy + Element>(array: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<ImageView<'a, T>> {
    let (h, w, c) = shape_of(array.shape())?;
    let data = c_order(array).ok_or_else(|| PyValueError::new_err("the image array must be C-contiguous"))?;
    ImageView::new(h, w, c, data)
        .ok_or_else(|| PyValueError::new_err("the image array's size does not match its shape"))
}

impl ImageArray<'_> {
    /// A copy in the pipeline's convention: f32, 0–255 (uint16 and float [0, 1] are rescaled).
    fn to_pipeline_image(&self) -> PyResult<Image<f32>> {
        fn scaled<T: Copy + Element>(a: &PyReadonlyArrayDyn<'_, T>, f: impl Fn(T) -> f32) -> PyResult<Image<f32>> {
            let v = view_of(a)?;
            let data = v.data().iter().map(|&x| f(x)).collect();
            Image::from_vec(v.height(), v.width(), v.channels(), data)
                .ok_or_else(|| PyValueError::new_err("the image array's size does not match its shape"))
        }
        match self {
            ImageArray::U8(a) => scaled(a, f32::from),
            ImageArray::U16(a) => scaled(a, |x| f32::from(x) / 257.0),
            ImageArray::F32(a) => scaled(a, |x| x * 255.0),
            ImageArray::F64(a) => scaled(a, |x| (x * 255.0) as f32),
        }
    }
}

/// A positive int argument: any integer but a bool, as scikit-image takes them.
fn positive_int(value: &Bound<'_, PyAny>) -> Option<usize> {
    if value.is_instance_of::<PyBool>() {
        return None;
    }
    value.extract::<usize>().ok().filter(|&v| v >= 1)
}

/// `pixels_per_cell` or `cells_per_block`: a positive int for both sides, or a pair of them.
fn positive_pair(value: &Bound<'_, PyAny>, name: &str) -> PyResult<[usize; 2]> {
    // A tuple first: trying it as an int would build and drop a TypeError.
    let sides: Option<Vec<Bound<'_, PyAny>>> = match value.cast::<PyTuple>() {
        Ok(pair) => Some(pair.iter().take(3).collect()),
        Err(_) => {
            if let Some(side) = positive_int(value) {
                return Ok([side, side]);
            }
            value.try_iter().ok().and_then(|items| items.take(3).collect::<PyResult<_>>().ok())
        }
    };
    match sides.as_deref() {
        Some([a, b]) => match (positive_int(a), positive_int(b)) {
            (Some(a), Some(b)) => Ok([a, b]),
            _ => Err(PyValueError::new_err(format!("{name} must hold positive ints, got {}", value.repr()?))),
        },
        _ => Err(PyValueError::new_err(format!("{name} must be an int or a pair of ints, got {}", value.repr()?))),
    }
}

/// `block_norm` by its scikit-image name.
fn block_norm_of(value: &Bound<'_, PyAny>) -> PyResult<BlockNorm> {
    match value.cast::<PyString>().ok().map(|name| name.to_str()).transpose()? {
        Some(name) => name.parse().map_err(to_py),
        None => Err(PyValueError::new_err(format!("block_norm must be a str, got {}", value.repr()?))),
    }
}

/// The image of `hog`: 2-D grey, or with `multichannel` 3-D with 1 or 3 channels last; a
/// copy in C order when the array is not contiguous.
fn hog_view<'a, T: Copy + Element>(
    array: &'a PyReadonlyArrayDyn<'_, T>,
    multichannel: bool,
    copy: &'a mut Vec<T>,
) -> PyResult<ImageView<'a, T>> {
    let (h, w, c) = match (array.shape(), multichannel) {
        (&[h, w], false) => (h, w, 1),
        (&[h, w, c @ (1 | 3)], true) => (h, w, c),
        (&[_, _, c], true) => {
            return Err(PyValueError::new_err(format!("multichannel images must have 1 or 3 channels, got {c}")))
        }
        (shape, true) => {
            return Err(PyValueError::new_err(format!(
                "with channel_axis set the image must be 3-D, got shape {shape:?}"
            )))
        }
        (shape, false) => {
            return Err(PyValueError::new_err(format!(
                "expected a 2-D grey image, got shape {shape:?}: pass channel_axis=-1 for a colour image"
            )))
        }
    };
    let data = match c_order(array) {
        Some(data) => data,
        None => {
            *copy = array.as_array().iter().copied().collect();
            copy
        }
    };
    ImageView::new(h, w, c, data)
        .ok_or_else(|| PyValueError::new_err("the image array's size does not match its shape"))
}

fn hog_typed<'py, S: Sample + Element>(
    py: Python<'py>,
    hog: &Hog,
    image: &PyReadonlyArrayDyn<'py, S>,
    feature_vector: bool,
    multichannel: bool,
) -> PyResult<Bound<'py, PyAny>>
where
    S::Float: Element,
{
    let mut copy = Vec::new();
    let view = hog_view(image, multichannel, &mut copy)?;
    let shape = hog.output_shape(view.height(), view.width()).map_err(to_py)?;
    let out = py.detach(|| hog.compute(view)).map_err(to_py)?;
    let dims: &[usize] = if feature_vector { &[out.len()] } else { &shape };
    let out = ndarray::ArrayD::from_shape_vec(dims, out).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(out.into_pyarray(py).into_any())
}

/// HOG of one image with scikit-image's parameters (the Python layer's `fc.hog` passes them on
/// as given and checks them here, once per call, without a parameter document): grey 2-D, or
/// with `multichannel` 3-D with channels last. Returns the descriptor (float64 for uint8
/// images, else the image's dtype), flat or of shape
/// `(blocks_row, blocks_col, cells_row, cells_col, orientations)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn hog<'py>(
    py: Python<'py>,
    image: ImageArray<'py>,
    orientations: &Bound<'py, PyAny>,
    pixels_per_cell: &Bound<'py, PyAny>,
    cells_per_block: &Bound<'py, PyAny>,
    block_norm: &Bound<'py, PyAny>,
    transform_sqrt: &Bound<'py, PyAny>,
    feature_vector: &Bound<'py, PyAny>,
    multichannel: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let Some(orientations) = positive_int(orientations) else {
        return Err(PyValueError::new_err(format!(
            "orientations must be a positive int, got {}",
            orientations.repr()?
        )));
    };
    let hog = Hog {
        orientations,
        pixels_per_cell: positive_pair(pixels_per_cell, "pixels_per_cell")?,
        cells_per_block: positive_pair(cells_per_block, "cells_per_block")?,
        block_norm: block_norm_of(block_norm)?,
        transform_sqrt: transform_sqrt.is_truthy()?,
    };
    hog.validate().map_err(to_py)?;
    let feature_vector = feature_vector.is_truthy()?;
    match &image {
        ImageArray::U8(a) => hog_typed(py, &hog, a, feature_vector, multichannel),
        ImageArray::F32(a) => hog_typed(py, &hog, a, feature_vector, multichannel),
        ImageArray::F64(a) => hog_typed(py, &hog, a, feature_vector, multichannel),
        ImageArray::U16(_) => {
            Err(PyValueError::new_err("hog takes uint8, float32 or float64 images (the Python layer converts others)"))
        }
    }
}

/// LBP codes of a grey image, like skimage.feature.local_binary_pattern; `params` is the
/// core's `Lbp` as JSON.
#[pyfunction]
pub fn local_binary_pattern<'py>(
    py: Python<'py>,
    image: ImageArray<'py>,
    params: &str,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let lbp: Lbp = serde_json::from_str(params).map_err(|e| json_error("LBP parameters", e))?;
    lbp.validate().map_err(to_py)?;
    fn typed<S: Sample + Element>(
        py: Python<'_>,
        lbp: &Lbp,
        a: &PyReadonlyArrayDyn<'_, S>,
    ) -> PyResult<(Vec<f64>, usize, usize)> {
        let view = view_of(a)?;
        if view.channels() != 1 {
            return Err(PyValueError::new_err("local_binary_pattern takes a 2-D grey image"));
        }
        let codes = py.detach(|| lbp.codes(view)).map_err(to_py)?;
        Ok((codes, view.height(), view.width()))
    }
    let (codes, h, w) = match &image {
        ImageArray::U8(a) => typed(py, &lbp, a)?,
        ImageArray::F32(a) => typed(py, &lbp, a)?,
        ImageArray::F64(a) => typed(py, &lbp, a)?,
        ImageArray::U16(_) => {
            return Err(PyValueError::new_err("local_binary_pattern takes uint8, float32 or float64 images"))
        }
    };
    let codes = ndarray::Array2::from_shape_vec((h, w), codes).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyArray2::from_owned_array(py, codes))
}

fn config_from(json: &str) -> PyResult<FeatureConfig> {
    let config: FeatureConfig = serde_json::from_str(json).map_err(|e| json_error("FeatureConfig", e))?;
    config.validate().map_err(to_py)?;
    Ok(config)
}

/// Length of one image's feature vector under a `FeatureConfig` (JSON); validates it.
#[pyfunction]
pub fn feature_dim(config: &str) -> PyResult<usize> {
    Ok(config_from(config)?.dim())
}

/// Features of in-memory images (a list of arrays), one float32 row each.
#[pyfunction]
#[pyo3(signature = (images, config, progress=None, n_threads=None))]
pub fn extract_arrays<'py>(
    py: Python<'py>,
    images: Vec<ImageArray<'py>>,
    config: &str,
    progress: Option<Bound<'py, PyAny>>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let config = config_from(config)?;
    let owned: Vec<Image<f32>> = images.iter().map(ImageArray::to_pipeline_image).collect::<PyResult<_>>()?;
    let views: Vec<ImageView<'_, f32>> = owned.iter().map(Image::view).collect();
    let extracted = with_progress(py, progress.as_ref(), n_threads, |counter| {
        extract_images(&views, &config, &|n| {
            counter.fetch_max(n, Ordering::Relaxed);
        })
    })?;
    if let Some((i, e)) = extracted.failures.into_iter().next() {
        return Err(to_py(Error::input(format!("image {i}: {e}"))));
    }
    Ok(PyArray2::from_owned_array(py, extracted.features))
}

/// The features of the files that could be read, their input indices, and the failures.
type ExtractedPaths<'py> = (Bound<'py, PyArray2<f32>>, Vec<usize>, Vec<(usize, String)>);

/// Features of image files: (matrix, input index of each row, [(index, error)] for files that failed).
#[pyfunction]
#[pyo3(signature = (paths, config, limits=None, progress=None, n_threads=None))]
pub fn extract_paths<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    config: &str,
    limits: Option<&str>,
    progress: Option<Bound<'py, PyAny>>,
    n_threads: Option<usize>,
) -> PyResult<ExtractedPaths<'py>> {
    let config = config_from(config)?;
    let limits: DecodeLimits = match limits {
        Some(json) => serde_json::from_str(json).map_err(|e| json_error("decode limits", e))?,
        None => DecodeLimits::default(),
    };
    let extracted = with_progress(py, progress.as_ref(), n_threads, |counter| {
        extract_files(&paths, &config, &limits, &|n| {
            counter.fetch_max(n, Ordering::Relaxed);
        })
    })?;
    let failures = extracted.failures.into_iter().map(|(i, e)| (i, e.to_string())).collect();
    Ok((PyArray2::from_owned_array(py, extracted.features), extracted.rows, failures))
}
