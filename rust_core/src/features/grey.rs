//! RGB to grey, the one conversion every grey feature shares.

use super::simd;
use crate::image::ImageView;

/// `skimage.color.rgb2gray`'s weights (ITU-R 709 luma).
pub const GREY_WEIGHTS: [f32; 3] = [0.2125, 0.7154, 0.0721];

/// The grey values of an image, row-major: a copy of a grey image, or for RGB
/// `(0.2125·r + 0.7154·g) + 0.0721·b` computed in f32 in that order (numpy reproduces it
/// exactly with float32 arrays; `rgb2gray` itself goes through a matrix product).
pub fn grey(image: ImageView<'_, f32>) -> Vec<f32> {
    match image.channels() {
        3 => simd::dispatch(GreyKernel(image.data())),
        _ => image.data().to_vec(),
    }
}

/// The grey conversion of interleaved RGB values.
struct GreyKernel<'a>(&'a [f32]);

impl simd::Kernel for GreyKernel<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn run(self) -> Vec<f32> {
        let [wr, wg, wb] = GREY_WEIGHTS;
        let mut grey = vec![0.0; self.0.len() / 3];
        for (g, p) in grey.iter_mut().zip(self.0.chunks_exact(3)) {
            *g = (wr * p[0] + wg * p[1]) + wb * p[2];
        }
        grey
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_grey_is_copied() {
        let white = [255.0f32; 3];
        assert!((grey(ImageView::new(1, 1, 3, &white).unwrap())[0] - 255.0).abs() < 1e-4);
        assert_eq!(grey(ImageView::new(1, 2, 1, &[3.0, 4.0]).unwrap()), vec![3.0, 4.0]);
    }
}
