//! Raw pixels as features.

use serde::{Deserialize, Serialize};

use super::grey::grey;
use crate::image::ImageView;
use crate::{Error, Result};

/// The pixels of the (already resized) image scaled to [0, 1] (`v / 255`), row-major: RGB
/// interleaved (grey images repeat their value three times), or one grey value per pixel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(default))]
#[serde(default, deny_unknown_fields)]
pub struct Pixels {
    /// One grey value per pixel (see [`grey`]) instead of three.
    pub grey: bool,
}

impl Pixels {
    /// Values per image of `height × width` pixels.
    pub fn len(&self, height: usize, width: usize) -> usize {
        let per_pixel = if self.grey { 1 } else { 3 };
        height.saturating_mul(width).saturating_mul(per_pixel)
    }

    /// Writes the scaled pixels of a grey or RGB image (values 0..=255) into `out`
    /// ([`Pixels::len`] long).
    pub fn compute_into(&self, image: ImageView<'_, f32>, out: &mut [f32]) -> Result<()> {
        let len = self.len(image.height(), image.width());
        if out.len() != len {
            return Err(Error::input(format!("the pixel output buffer holds {} values, {len} are needed", out.len())));
        }
        let scale = |v: f32| v / 255.0;
        if self.grey {
            for (o, v) in out.iter_mut().zip(grey(image)) {
                *o = scale(v);
            }
        } else if image.channels() == 3 {
            for (o, &v) in out.iter_mut().zip(image.data()) {
                *o = scale(v);
            }
        } else {
            for (o, &v) in out.chunks_exact_mut(3).zip(image.data()) {
                o.fill(scale(v));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_grey_and_grey_as_rgb() {
        let rgb = [0.0, 255.0, 51.0];
        let view = ImageView::new(1, 1, 3, &rgb).unwrap();
        let mut out = [0.0; 3];
        Pixels { grey: false }.compute_into(view, &mut out).unwrap();
        assert_eq!(out, [0.0, 1.0, 0.2]);
        let mut one = [0.0; 1];
        Pixels { grey: true }.compute_into(view, &mut one).unwrap();
        assert_eq!(one[0], ((0.7154f32 * 255.0) + 0.0721 * 51.0) / 255.0);
        Pixels { grey: false }.compute_into(ImageView::new(1, 1, 1, &[51.0]).unwrap(), &mut out).unwrap();
        assert_eq!(out, [0.2; 3]);
        assert!(Pixels { grey: true }.compute_into(view, &mut out).is_err());
    }
}
