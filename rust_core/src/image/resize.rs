//! Resizing and channel conversion of in-memory images.

use image::{imageops, ImageBuffer, Rgb};

use super::{Image, ImageView};

/// Resizes an image to `size = (height, width)` with a triangle (bilinear, antialiased) filter
/// and makes it RGB (a grey image's channel is replicated). Returns a copy even when no
/// resizing is needed, so callers always own RGB pixels.
pub fn resize_rgb(image: ImageView<'_, f32>, size: [usize; 2]) -> Image<f32> {
    let rgb: Vec<f32> = match image.channels() {
        3 => image.data().to_vec(),
        _ => image.data().iter().flat_map(|&v| [v; 3]).collect(),
    };
    let [h, w] = size;
    if (h, w) == (image.height(), image.width()) {
        return Image { height: h, width: w, channels: 3, data: rgb };
    }
    let buffer: ImageBuffer<Rgb<f32>, Vec<f32>> =
        ImageBuffer::from_raw(image.width() as u32, image.height() as u32, rgb)
            .expect("an ImageView's buffer always has height × width × 3 samples once made RGB");
    let out = imageops::resize(&buffer, w as u32, h as u32, imageops::FilterType::Triangle);
    Image { height: h, width: w, channels: 3, data: out.into_raw() }
}
