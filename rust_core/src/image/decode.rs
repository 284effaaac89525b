//! Decoding PNG, JPEG, BMP, GIF, TIFF and WebP into RGB images, with limits against
//! decompression bombs checked from the header before any pixel is allocated.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader};
use serde::{Deserialize, Serialize};

use super::Image;
use crate::{Error, Result};

/// Bounds on what a decoder may allocate: an image past them is refused, not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeLimits {
    /// Widest and tallest image accepted, in pixels.
    pub max_side: u32,
    /// Most pixels (width × height) accepted.
    pub max_pixels: u64,
    /// Largest encoded file accepted, in bytes.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_side: 16_384, max_pixels: 64 * 1024 * 1024, max_file_bytes: 256 * 1024 * 1024 }
    }
}

fn image_error(source_name: &str, reason: impl Into<String>) -> Error {
    Error::Image { source_name: source_name.to_owned(), reason: reason.into() }
}

/// Decodes an encoded image (format guessed from its first bytes) into a [`DynamicImage`].
pub fn decode_dynamic(bytes: &[u8], source_name: &str, limits: &DecodeLimits) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(image_error(source_name, "empty file"));
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(image_error(
            source_name,
            format!("file of {} bytes is over the limit of {} bytes", bytes.len(), limits.max_file_bytes),
        ));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_error(source_name, e.to_string()))?;
    if reader.format().is_none() {
        return Err(image_error(source_name, "unrecognised image format (expected PNG, JPEG, BMP, GIF, TIFF or WebP)"));
    }
    let (width, height) = reader.into_dimensions().map_err(|e| image_error(source_name, e.to_string()))?;
    check_dimensions(source_name, width, height, limits)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_error(source_name, e.to_string()))?;
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // Room for the decoded pixels in their widest layout (RGBA, 32-bit float) plus the decoder's own buffers.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16).saturating_add(64 << 20));
    reader.limits(decoder_limits);
    reader.decode().map_err(|e| image_error(source_name, e.to_string()))
}

fn check_dimensions(source_name: &str, width: u32, height: u32, limits: &DecodeLimits) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(image_error(source_name, format!("image has no pixels ({width}×{height})")));
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(image_error(
            source_name,
            format!(
                "image of {width}×{height} pixels is over the limit ({} per side, {} pixels): refusing to decode it",
                limits.max_side, limits.max_pixels
            ),
        ));
    }
    Ok(())
}

/// Converts any decoded image to RGB f32 in 0–255 (16-bit and float sources are rescaled,
/// alpha is dropped), optionally resized to `size = (height, width)` first.
pub fn to_rgb(image: &DynamicImage, size: Option<[usize; 2]>) -> Image<f32> {
    let resized;
    let source = match size {
        Some([h, w]) if (h, w) != (image.height() as usize, image.width() as usize) => {
            resized = image.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
            &resized
        }
        _ => image,
    };
    let (width, height) = (source.width() as usize, source.height() as usize);
    let data: Vec<f32> = match source {
        DynamicImage::ImageRgb8(buf) => buf.as_raw().iter().map(|&v| f32::from(v)).collect(),
        DynamicImage::ImageLuma8(buf) => buf.as_raw().iter().flat_map(|&v| [f32::from(v); 3]).collect(),
        other => other.to_rgb32f().into_raw().into_iter().map(|v| v * 255.0).collect(),
    };
    Image { height, width, channels: 3, data }
}

/// Decodes an encoded image into RGB f32 (0–255), resized to `size` if given.
pub fn decode(bytes: &[u8], source_name: &str, size: Option<[usize; 2]>, limits: &DecodeLimits) -> Result<Image<f32>> {
    decode_dynamic(bytes, source_name, limits).map(|img| to_rgb(&img, size))
}

/// Reads and decodes an image file into RGB f32 (0–255), resized to `size` if given.
pub fn load(path: &Path, size: Option<[usize; 2]>, limits: &DecodeLimits) -> Result<Image<f32>> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > limits.max_file_bytes {
        return Err(image_error(
            &name,
            format!("file of {} bytes is over the limit of {} bytes", meta.len(), limits.max_file_bytes),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, &name, size, limits)
}
