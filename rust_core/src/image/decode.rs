//! Decoding PNG, JPEG, BMP, GIF, TIFF and WebP into RGB images, with limits against
//! decompression bombs checked from the header before any pixel is allocated.
//!
//! PNG, the common case, is read with the `png` crate directly: the decoder and the
//! transformations `image` itself uses, so the pixels are the same, but the header is parsed
//! once and 8-bit pixels go straight to RGB f32 without an intermediate image.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageReader};
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

/// The first bytes of every PNG file.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Refuses empty files and files over the size limit.
fn check_file_size(source_name: &str, len: u64, limits: &DecodeLimits) -> Result<()> {
    if len == 0 {
        return Err(image_error(source_name, "empty file"));
    }
    if len > limits.max_file_bytes {
        return Err(image_error(
            source_name,
            format!("file of {len} bytes is over the limit of {} bytes", limits.max_file_bytes),
        ));
    }
    Ok(())
}

/// What a decoder may allocate: room for the decoded pixels in their widest layout (RGBA,
/// 32-bit float) plus the decoder's own buffers.
fn decoder_allocation(limits: &DecodeLimits) -> u64 {
    limits.max_pixels.saturating_mul(16).saturating_add(64 << 20)
}

/// Decodes an encoded image (format guessed from its first bytes) into a [`DynamicImage`].
pub fn decode_dynamic(bytes: &[u8], source_name: &str, limits: &DecodeLimits) -> Result<DynamicImage> {
    check_file_size(source_name, bytes.len() as u64, limits)?;
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
    decoder_limits.max_alloc = Some(decoder_allocation(limits));
    reader.limits(decoder_limits);
    reader.decode().map_err(|e| image_error(source_name, e.to_string()))
}

/// A decoded image, made RGB: 8-bit pixels at the size asked for stay bytes (what HOG's integer
/// path takes), the others are f32 (0–255).
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedImage {
    /// 8-bit RGB.
    Bytes(Image<u8>),
    /// RGB f32, 0–255.
    Floats(Image<f32>),
}

impl DecodedImage {
    /// The image as RGB f32 (0–255).
    pub fn into_floats(self) -> Image<f32> {
        match self {
            DecodedImage::Bytes(image) => {
                let data = image.data.iter().map(|&v| f32::from(v)).collect();
                Image { height: image.height, width: image.width, channels: image.channels, data }
            }
            DecodedImage::Floats(image) => image,
        }
    }
}

/// Decodes a PNG into RGB, resized to `size` if given, exactly as [`decode_dynamic`] then
/// [`to_rgb`] would.
fn decode_png(
    bytes: &[u8],
    source_name: &str,
    size: Option<[usize; 2]>,
    limits: &DecodeLimits,
) -> Result<DecodedImage> {
    let failed = |e: png::DecodingError| image_error(source_name, format!("invalid PNG: {e}"));
    let allocation = usize::try_from(decoder_allocation(limits)).unwrap_or(usize::MAX);
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: allocation });
    // Text chunks never change the pixels.
    decoder.set_ignore_text_chunk(true);
    let header = decoder.read_header_info().map_err(failed)?;
    let (width, height) = (header.width, header.height);
    check_dimensions(source_name, width, height, limits)?;
    // `image`'s PNG decoder: palettes to RGB(A), fewer than 8 bits to 8, tRNS to alpha.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(failed)?;
    let len = reader.output_buffer_size().ok_or_else(|| image_error(source_name, "image too large to decode"))?;
    let mut pixels = vec![0u8; len];
    reader.next_frame(&mut pixels).map_err(failed)?;
    let (colour, depth) = reader.output_color_type();
    let (h, w) = (height as usize, width as usize);
    if depth == png::BitDepth::Eight && size.is_none_or(|size| size == [h, w]) {
        let data = rgb_from_8_bit(pixels, colour.samples());
        return Ok(DecodedImage::Bytes(Image { height: h, width: w, channels: 3, data }));
    }
    let image = dynamic_from_png(pixels, colour, depth, width, height)
        .ok_or_else(|| image_error(source_name, format!("unsupported PNG pixels ({colour:?}, {depth:?})")))?;
    Ok(DecodedImage::Floats(to_rgb(&image, size)))
}

/// RGB of 8-bit grey, grey + alpha, RGB or RGBA samples (`channels` a pixel).
fn rgb_from_8_bit(pixels: Vec<u8>, channels: usize) -> Vec<u8> {
    if channels == 3 {
        return pixels;
    }
    let mut rgb = vec![0; pixels.len() / channels * 3];
    for (out, pixel) in rgb.chunks_exact_mut(3).zip(pixels.chunks_exact(channels)) {
        let colour = if channels < 3 { [pixel[0]; 3] } else { [pixel[0], pixel[1], pixel[2]] };
        out.copy_from_slice(&colour);
    }
    rgb
}

/// The [`DynamicImage`] `image` makes of a PNG's expanded pixels (16-bit samples are big-endian).
fn dynamic_from_png(
    pixels: Vec<u8>,
    colour: png::ColorType,
    depth: png::BitDepth,
    width: u32,
    height: u32,
) -> Option<DynamicImage> {
    use png::ColorType as C;
    match depth {
        png::BitDepth::Eight => match colour {
            C::Grayscale => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8),
            C::GrayscaleAlpha => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageLumaA8),
            C::Rgb => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8),
            C::Rgba => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8),
            C::Indexed => None,
        },
        png::BitDepth::Sixteen => {
            let samples: Vec<u16> = pixels.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
            match colour {
                C::Grayscale => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageLuma16),
                C::GrayscaleAlpha => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageLumaA16),
                C::Rgb => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageRgb16),
                C::Rgba => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageRgba16),
                C::Indexed => None,
            }
        }
        _ => None,
    }
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
    decode_pixels(bytes, source_name, size, limits).map(DecodedImage::into_floats)
}

/// [`decode`], with 8-bit pixels kept as bytes where no resize was needed.
pub fn decode_pixels(
    bytes: &[u8],
    source_name: &str,
    size: Option<[usize; 2]>,
    limits: &DecodeLimits,
) -> Result<DecodedImage> {
    if bytes.starts_with(PNG_SIGNATURE) {
        check_file_size(source_name, bytes.len() as u64, limits)?;
        return decode_png(bytes, source_name, size, limits);
    }
    decode_dynamic(bytes, source_name, limits).map(|img| DecodedImage::Floats(to_rgb(&img, size)))
}

/// Reads and decodes an image file into RGB f32 (0–255), resized to `size` if given.
pub fn load(path: &Path, size: Option<[usize; 2]>, limits: &DecodeLimits) -> Result<Image<f32>> {
    load_pixels(path, size, limits).map(DecodedImage::into_floats)
}

/// [`load`], with 8-bit pixels kept as bytes where no resize was needed.
pub fn load_pixels(path: &Path, size: Option<[usize; 2]>, limits: &DecodeLimits) -> Result<DecodedImage> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    check_file_size(&name, len, limits)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // One byte past the limit is enough to tell a file that grew past it since.
    file.take(limits.max_file_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    decode_pixels(&bytes, &name, size, limits)
}
