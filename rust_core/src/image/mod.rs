//! Images in memory, decoding from bytes and files, resizing, and parallel batch loading.
//!
//! An [`Image`] is row-major with interleaved channels (height × width × channels), one or
//! three channels, in the value range of an 8-bit image (0–255) whatever the source depth.

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

    /// The sample at row `r`, column `c`, channel `ch`.
    #[inline]
    pub fn get(&self, r: usize, c: usize, ch: usize) -> T {
        self.data[(r * self.width + c) * self.channels + ch]
    }
}

mod batch;
mod decode;
mod resize;

pub use batch::{list_images, load_batch, LoadedBatch, IMAGE_EXTENSIONS};
pub use decode::{decode, decode_dynamic, load, to_rgb, DecodeLimits};
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
