//! A feature pipeline: which extractors run, at which image size, into one vector per image.

use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, ArrayView1, ArrayViewMut2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grey::grey;
use super::hog::{Hog, OrientationBins};
use super::lbp::{Lbp, LbpPlan};
use super::{ColourHistogram, Pixels};
use crate::image::{DecodedImage, ImageView};
use crate::{Error, Result};

/// Largest accepted image side.
const MAX_SIDE: usize = 4096;
/// Images per parallel task, and between two progress reports.
const CHUNK: usize = 64;

/// Which features to extract from images resized to `size`, concatenated in the order HOG,
/// LBP histogram, colour histogram, pixels.
///
/// Every field is optional: an absent one takes the default's value (HOG on, the others off, so
/// `{}` is RGB HOG of 64×64 images) and `null` turns an extractor off. At least one extractor
/// must stay on, and HOG's cells and blocks must fit in `size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(default))]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// `(height, width)` the images are resized to before extraction, each 1..=4096.
    #[cfg_attr(feature = "openapi", schema(min_items = 2, max_items = 2))]
    pub size: [usize; 2],
    /// HOG sees the grey conversion instead of the RGB image (about three times faster).
    pub grey: bool,
    /// Histogram of oriented gradients.
    pub hog: Option<Hog>,
    /// Histogram of local binary patterns (of the grey image).
    pub lbp: Option<Lbp>,
    /// Colour histogram.
    pub colour: Option<ColourHistogram>,
    /// Raw pixels.
    pub pixels: Option<Pixels>,
}

impl Default for FeatureConfig {
    /// 64×64 images, RGB HOG with 9 orientations, 8×8 cells, 2×2 blocks, L2-Hys.
    fn default() -> Self {
        FeatureConfig {
            size: [64, 64],
            grey: false,
            hog: Some(Hog { cells_per_block: [2, 2], ..Hog::default() }),
            lbp: None,
            colour: None,
            pixels: None,
        }
    }
}

impl FeatureConfig {
    /// Checks the size (each side 1..=4096), that at least one extractor is on, and that each
    /// is valid for the size.
    pub fn validate(&self) -> Result<()> {
        let [height, width] = self.size;
        if !(1..=MAX_SIDE).contains(&height) || !(1..=MAX_SIDE).contains(&width) {
            return Err(Error::parameter(
                "size",
                format!("both sides must be between 1 and {MAX_SIDE}, got {:?}", self.size),
            ));
        }
        if self.hog.is_none() && self.lbp.is_none() && self.colour.is_none() && self.pixels.is_none() {
            return Err(Error::parameter("features", "enable at least one of hog, lbp, colour, pixels"));
        }
        if let Some(hog) = &self.hog {
            hog.len(height, width)?;
        }
        if let Some(lbp) = &self.lbp {
            lbp.validate()?;
        }
        if let Some(colour) = &self.colour {
            colour.validate()?;
        }
        Ok(())
    }

    /// Length of one image's feature vector (for a valid configuration).
    pub fn dim(&self) -> usize {
        let [height, width] = self.size;
        [
            self.hog.as_ref().map_or(0, |hog| hog.len(height, width).unwrap_or(0)),
            self.lbp.as_ref().map_or(0, Lbp::n_bins),
            self.colour.as_ref().map_or(0, ColourHistogram::len),
            self.pixels.as_ref().map_or(0, |pixels| pixels.len(height, width)),
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }

    /// An upper bound of the heap one thread allocates while it extracts the features of one
    /// f32 image at `size`, beyond the image itself and its output row (a byte image adds its
    /// f32 copy, `height · width · 12` bytes, when an extractor other than RGB HOG is on): the
    /// grey conversion, then the largest of what the extractors, run one after the other, take
    /// (LBP's buffers stay while the colour histogram and the pixels run). For a valid
    /// configuration. A service multiplies it by its threads to bound a request's memory before
    /// it starts.
    pub fn scratch_bytes(&self) -> u64 {
        let [height, width] = self.size;
        let plane = (height * width) as u64;
        let wants_grey = self.lbp.is_some() || self.grey || self.pixels.as_ref().is_some_and(|p| p.grey);
        let grey = if wants_grey { plane * 4 } else { 0 };
        let channels = if self.grey { 1 } else { 3 };
        let hog = self.hog.as_ref().map_or(0, |hog| hog.scratch_bytes(height, width, channels));
        let lbp = self.lbp.as_ref().map_or(0, |lbp| lbp.scratch_bytes(height, width));
        let colour = self.colour.as_ref().map_or(0, |colour| colour.len() as u64 * 8);
        let pixels = if self.pixels.is_some() { plane * 3 * 4 } else { 0 };
        grey + hog.max(lbp + colour.max(pixels))
    }

    /// Writes the [`FeatureConfig::dim`] features of one RGB image (3 channels, values
    /// 0..=255, exactly `size`) into `out`.
    /// Builds its tables each call: for many images use [`FeatureConfig::extractor`] or
    /// [`FeatureConfig::extract_into`].
    pub fn extract_one(&self, image: ImageView<'_, f32>, out: &mut [f32]) -> Result<()> {
        self.extractor()?.extract(image, out)
    }

    /// The configuration validated and prepared (orientation and LBP tables built once) for
    /// extracting image after image.
    pub fn extractor(&self) -> Result<FeatureExtractor<'_>> {
        FeatureExtractor::new(self)
    }

    /// Writes the features of image `i` into row `i` of `out` (`images.len() × dim`), in
    /// parallel over images; `progress(n)` is called with the number of images done so far
    /// every few dozen images.
    pub fn extract_into(
        &self,
        images: &[ImageView<'_, f32>],
        mut out: ArrayViewMut2<'_, f32>,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<()> {
        let extractor = self.extractor()?;
        if out.dim() != (images.len(), extractor.dim) {
            return Err(Error::input(format!(
                "the output matrix is {:?}, {} images need ({}, {})",
                out.dim(),
                images.len(),
                images.len(),
                extractor.dim
            )));
        }
        for (index, image) in images.iter().enumerate() {
            extractor.check(index, *image)?;
        }
        let done = AtomicUsize::new(0);
        out.axis_chunks_iter_mut(Axis(0), CHUNK).into_par_iter().zip(images.par_chunks(CHUNK)).try_for_each(
            |(mut rows, chunk)| {
                let mut scratch = Vec::new();
                for (mut row, image) in rows.outer_iter_mut().zip(chunk) {
                    match row.as_slice_mut() {
                        Some(slice) => extractor.extract_checked(Rgb::Floats(*image), slice)?,
                        None => {
                            scratch.resize(extractor.dim, 0.0);
                            extractor.extract_checked(Rgb::Floats(*image), &mut scratch)?;
                            row.assign(&ArrayView1::from(&scratch));
                        }
                    }
                }
                progress(done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len());
                Ok(())
            },
        )
    }

    /// The `images.len() × dim` feature matrix of `images` (see [`FeatureConfig::extract_into`]).
    pub fn extract(&self, images: &[ImageView<'_, f32>]) -> Result<Array2<f32>> {
        let mut out = Array2::zeros((images.len(), self.dim()));
        self.extract_into(images, out.view_mut(), &|_| {})?;
        Ok(out)
    }
}

/// The RGB pixels of one image.
#[derive(Clone, Copy)]
enum Rgb<'a> {
    Floats(ImageView<'a, f32>),
    /// 8-bit samples, converted to f32 only for the features that need it.
    Bytes(ImageView<'a, u8>),
}

/// A validated [`FeatureConfig`] with its per-parameter tables built once, for extracting
/// many images one at a time (from several threads if need be).
#[derive(Debug)]
pub struct FeatureExtractor<'a> {
    config: &'a FeatureConfig,
    orientation_bins: Option<OrientationBins>,
    lbp: Option<LbpPlan>,
    dim: usize,
}

impl<'a> FeatureExtractor<'a> {
    fn new(config: &'a FeatureConfig) -> Result<Self> {
        config.validate()?;
        let [height, width] = config.size;
        Ok(FeatureExtractor {
            config,
            orientation_bins: config.hog.as_ref().map(|hog| OrientationBins::new(hog.orientations)),
            lbp: config.lbp.as_ref().map(|lbp| LbpPlan::new(lbp, height * width)),
            dim: config.dim(),
        })
    }

    /// Image `index` must be RGB at exactly the configured size.
    fn check<T: Copy>(&self, index: usize, image: ImageView<'_, T>) -> Result<()> {
        let [height, width] = self.config.size;
        if (image.height(), image.width(), image.channels()) != (height, width, 3) {
            return Err(Error::input(format!(
                "image {index} is {}×{}×{}; features need {height}×{width}×3 (resize it and convert it to RGB first)",
                image.height(),
                image.width(),
                image.channels()
            )));
        }
        Ok(())
    }

    /// Length of one image's feature vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Writes the [`FeatureExtractor::dim`] features of one RGB image (3 channels, values
    /// 0..=255, exactly the configured size) into `out`.
    pub fn extract(&self, image: ImageView<'_, f32>, out: &mut [f32]) -> Result<()> {
        self.check(0, image)?;
        self.extract_checked(Rgb::Floats(image), out)
    }

    /// [`FeatureExtractor::extract`] of a decoded image: the same features, with 8-bit pixels
    /// given to HOG as they are rather than through their f32 values.
    pub fn extract_decoded(&self, image: &DecodedImage, out: &mut [f32]) -> Result<()> {
        match image {
            DecodedImage::Floats(image) => self.extract(image.view(), out),
            DecodedImage::Bytes(image) => {
                self.check(0, image.view())?;
                self.extract_checked(Rgb::Bytes(image.view()), out)
            }
        }
    }

    /// [`FeatureExtractor::extract`] of an image already [checked](FeatureExtractor::check).
    fn extract_checked(&self, source: Rgb<'_>, out: &mut [f32]) -> Result<()> {
        if out.len() != self.dim {
            return Err(Error::input(format!(
                "the feature buffer holds {} values, {} are needed",
                out.len(),
                self.dim
            )));
        }
        let config = self.config;
        let [height, width] = config.size;
        // HOG computes on bytes as on their f32 values, but for `transform_sqrt` (the root is
        // taken in the image's float type) and the grey image (f32).
        let hog_bytes = match source {
            Rgb::Bytes(bytes) if !config.grey && config.hog.as_ref().is_some_and(|hog| !hog.transform_sqrt) => {
                Some(bytes)
            }
            _ => None,
        };
        let wants_grey = config.lbp.is_some()
            || (config.grey && config.hog.is_some())
            || config.pixels.as_ref().is_some_and(|pixels| pixels.grey);
        let wants_floats = wants_grey
            || config.colour.is_some()
            || config.pixels.is_some()
            || (config.hog.is_some() && hog_bytes.is_none());
        let converted: Vec<f32>;
        let image = match source {
            Rgb::Floats(image) => Some(image),
            Rgb::Bytes(bytes) if wants_floats => {
                converted = bytes.data().iter().map(|&v| f32::from(v)).collect();
                Some(bytes.with_data(&converted))
            }
            Rgb::Bytes(_) => None,
        };
        let image = || image.ok_or_else(|| Error::input("the image's f32 values were not converted"));
        let grey_values = if wants_grey { grey(image()?) } else { Vec::new() };
        let grey_image = ImageView::new(height, width, 1, &grey_values);
        let grey_image = || grey_image.ok_or_else(|| Error::input("grey conversion lost pixels"));
        let mut rest = out;
        let mut next = |len: usize| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            head
        };
        if let (Some(hog), Some(bins)) = (&config.hog, &self.orientation_bins) {
            let out = next(hog.len(height, width)?);
            match hog_bytes {
                Some(bytes) => {
                    // A byte image's descriptor is float64, the f32 one its rounding.
                    let mut wide = vec![0.0; out.len()];
                    hog.compute_with(bins, bytes, &mut wide)?;
                    for (o, &w) in out.iter_mut().zip(&wide) {
                        *o = w as f32;
                    }
                }
                None => hog.compute_with(bins, if config.grey { grey_image()? } else { image()? }, out)?,
            }
        }
        if let Some(lbp) = &self.lbp {
            lbp.histogram(&grey_values, height, width, next(config.lbp.as_ref().map_or(0, Lbp::n_bins)))?;
        }
        if let Some(colour) = &config.colour {
            colour.compute_into(image()?, next(colour.len()))?;
        }
        if let Some(pixels) = &config.pixels {
            let source = if pixels.grey { grey_image()? } else { image()? };
            pixels.compute_into(source, next(pixels.len(height, width)))?;
        }
        Ok(())
    }
}
