//! Images in memory, decoding from bytes and files, resizing, and parallel batch loading.
//!
//! An [`Image`] is row-major with interleaved channels (height × width × channels), one or
//! three channels, in the value range of an 8-bit image (0–255) whatever the source depth.

use std::borrow::Cow;

use crate::Real;

/// An owned image: `height × width × channels` samples, row-major, channels interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Image<T = f32> {
    height: usize,
    width: usize,
    channels: usize,
    data: Vec<T>,
}

/// A borrowed image with the same layout as [`Image`].
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a, T = f32> {
    height: usize,
    width: usize,
    channels: usize,
    data: &'a [T],
}

impl<T: Copy> Image<T> {
    /// Wraps a buffer; `None` if its length is not `height × width × channels` or the
    /// channel count is not 1 or 3.
    pub fn from_vec(height: usize, width: usize, channels: usize, data: Vec<T>) -> Option<Self> {
        (matches!(channels, 1 | 3) && height.checked_mul(width)?.checked_mul(channels)? == data.len())
            .then_some(Image { height, width, channels, data })
    }

    /// Borrows the image.
    pub fn view(&self) -> ImageView<'_, T> {
        ImageView { height: self.height, width: self.width, channels: self.channels, data: &self.data }
    }

    /// Gives the samples back.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
}

impl<'a, T: Copy> ImageView<'a, T> {
    /// Borrows a buffer as an image; `None` on a length or channel-count mismatch.
    pub fn new(height: usize, width: usize, channels: usize, data: &'a [T]) -> Option<Self> {
        (matches!(channels, 1 | 3) && height.checked_mul(width)?.checked_mul(channels)? == data.len())
            .then_some(ImageView { height, width, channels, data })
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// 1 (grey) or 3 (RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// All samples, row-major, channels interleaved.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// The same image in other samples: `data` must be a sample-for-sample conversion of
    /// this image's.
    pub(crate) fn with_data<'b, U: Copy>(&self, data: &'b [U]) -> ImageView<'b, U> {
        debug_assert_eq!(data.len(), self.data.len());
        ImageView { height: self.height, width: self.width, channels: self.channels, data }
    }

    /// The sample at row `r`, column `c`, channel `ch`.
    #[inline]
    pub fn get(&self, r: usize, c: usize, ch: usize) -> T {
        self.data[(r * self.width + c) * self.channels + ch]
    }
}

/// A sample type an image can hold: `u8`, `f32` or `f64`.
pub trait Sample: Copy + Send + Sync + 'static {
    /// The float type scikit-image computes in for an array of this dtype (`uint8` → float64).
    type Float: Real;

    /// The sample as an f64 (exact).
    fn to_f64(self) -> f64;

    /// The samples in [`Sample::Float`] (exact), borrowed when they already are.
    fn to_floats(samples: &[Self]) -> Cow<'_, [Self::Float]>;

    /// The samples as bytes when every one is an integer in 0..=255 (what 8-bit images hold),
    /// else `None`: integer pixels let the feature kernels use exact integer arithmetic.
    fn to_bytes(samples: &[Self]) -> Option<Cow<'_, [u8]>>;
}

impl Sample for u8 {
    type Float = f64;

    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    fn to_floats(samples: &[u8]) -> Cow<'_, [f64]> {
        Cow::Owned(samples.iter().map(|&v| f64::from(v)).collect())
    }

    fn to_bytes(samples: &[u8]) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(samples))
    }
}

/// The bytes of float samples that all hold integers in 0..=255.
fn float_bytes<T: Real>(samples: &[T]) -> Option<Cow<'_, [u8]>> {
    // `as u8` saturates (NaN gives 0), so a sample is a byte exactly when it comes back from
    // the conversion unchanged: two passes without branches or `round` (a libm call on
    // x86-64's baseline), which vectorise.
    let bytes: Vec<u8> = samples.iter().map(|v| v.to_f64_exact() as u8).collect();
    let exact = samples.iter().zip(&bytes).fold(true, |ok, (v, &b)| ok & (v.to_f64_exact() == f64::from(b)));
    exact.then_some(Cow::Owned(bytes))
}

impl Sample for f32 {
    type Float = f32;

    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    fn to_floats(samples: &[f32]) -> Cow<'_, [f32]> {
        Cow::Borrowed(samples)
    }

    fn to_bytes(samples: &[f32]) -> Option<Cow<'_, [u8]>> {
        float_bytes(samples)
    }
}

impl Sample for f64 {
    type Float = f64;

    fn to_f64(self) -> f64 {
        self
    }

    fn to_floats(samples: &[f64]) -> Cow<'_, [f64]> {
        Cow::Borrowed(samples)
    }

    fn to_bytes(samples: &[f64]) -> Option<Cow<'_, [u8]>> {
        float_bytes(samples)
    }
}

mod batch;
mod decode;
mod resize;

pub use batch::{list_images, load_batch, LoadedBatch, IMAGE_EXTENSIONS};
pub use decode::{decode, decode_dynamic, decode_pixels, load, load_pixels, to_rgb, DecodeLimits, DecodedImage};
pub use resize::resize_rgb;

impl<T> Image<T> {
    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// 1 (grey) or 3 (RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// All samples, row-major, channels interleaved.
    pub fn data(&self) -> &[T] {
        &self.data
    }
}
