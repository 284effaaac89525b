//! Colour histograms of 8-bit-range images.

use serde::{Deserialize, Serialize};

use crate::image::ImageView;
use crate::{Error, Result};

/// Largest number of bins per channel.
const MAX_BINS: usize = 256;
/// Largest number of bins per channel of a joint histogram (64³ = 262,144 values).
const MAX_JOINT_BINS: usize = 64;

/// Histogram of pixel values 0..=255: per channel (`3·bins` values, each channel normalised
/// to sum 1) or joint over (r, g, b) (`bins³` values summing to 1). A value `v` falls in bin
/// `⌊v·bins/256⌋` (exact, then clamped to the valid bins), which equals
/// `np.histogram(v, bins, range=(0, 256))` whenever `bins` divides 256 or values are integers.
/// Grey images count as R = G = B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(default))]
#[serde(default, deny_unknown_fields)]
pub struct ColourHistogram {
    /// Bins per channel: at most 256, or 64 when `joint`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 256))]
    pub bins: usize,
    /// One histogram over colour triples instead of one per channel.
    pub joint: bool,
}

impl Default for ColourHistogram {
    /// 16 bins per channel, not joint.
    fn default() -> Self {
        ColourHistogram { bins: 16, joint: false }
    }
}

impl ColourHistogram {
    /// Checks `1 ≤ bins ≤ 256` (≤ 64 when joint).
    pub fn validate(&self) -> Result<()> {
        let max = if self.joint { MAX_JOINT_BINS } else { MAX_BINS };
        if !(1..=max).contains(&self.bins) {
            let kind = if self.joint { "a joint histogram" } else { "a per-channel histogram" };
            return Err(Error::parameter("bins", format!("must be between 1 and {max} for {kind}, got {}", self.bins)));
        }
        Ok(())
    }

    /// Length of the feature vector: `3·bins`, or `bins³` when joint.
    #[allow(clippy::len_without_is_empty)] // a vector length, not a container
    pub fn len(&self) -> usize {
        if self.joint {
            self.bins.saturating_mul(self.bins).saturating_mul(self.bins)
        } else {
            self.bins.saturating_mul(3)
        }
    }

    /// Writes the histogram of a grey or RGB image with values in 0..=255 into `out`
    /// ([`ColourHistogram::len`] long).
    pub fn compute_into(&self, image: ImageView<'_, f32>, out: &mut [f32]) -> Result<()> {
        self.validate()?;
        if out.len() != self.len() {
            return Err(Error::input(format!(
                "the colour histogram output buffer holds {} values, {} are needed",
                out.len(),
                self.len()
            )));
        }
        let pixels = image.height() * image.width();
        if pixels == 0 {
            return Err(Error::input("cannot take the colour histogram of an empty image"));
        }
        let bins = self.bins;
        // v (24 significant bits) times bins (≤ 2^8) is exact in f64, and so is /256; the cast
        // truncates, i.e. floors non-negative values, and sends negative ones and NaN to 0.
        let bin = |v: f32| ((f64::from(v) * bins as f64 / 256.0) as usize).min(bins - 1);
        let mut counts = vec![0u32; out.len()];
        let channels = image.channels();
        for pixel in image.data().chunks_exact(channels) {
            let rgb = if channels == 3 { [pixel[0], pixel[1], pixel[2]] } else { [pixel[0]; 3] };
            let [r, g, b] = rgb.map(bin);
            if self.joint {
                counts[(r * bins + g) * bins + b] += 1;
            } else {
                counts[r] += 1;
                counts[bins + g] += 1;
                counts[2 * bins + b] += 1;
            }
        }
        let total = pixels as f64;
        for (o, &count) in out.iter_mut().zip(&counts) {
            *o = (f64::from(count) / total) as f32;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn per_channel_and_joint_bins() {
        let image = [0.0, 128.0, 255.0, 15.9, 16.0, 300.0];
        let view = ImageView::new(1, 2, 3, &image).unwrap();
        let hist = ColourHistogram::default();
        let mut out = vec![0.0; 48];
        hist.compute_into(view, &mut out).unwrap();
        let hot: Vec<(usize, f32)> = out.iter().copied().enumerate().filter(|&(_, v)| v > 0.0).collect();
        assert_eq!(hot, [(0, 1.0), (16 + 1, 0.5), (16 + 8, 0.5), (32 + 15, 1.0)]);
        let joint = ColourHistogram { bins: 2, joint: true };
        let mut out = vec![0.0; 8];
        joint.compute_into(view, &mut out).unwrap();
        // (0, 128, 255) → (0, 1, 1); (15.9, 16, 300) → (0, 0, 1).
        assert_eq!(out, [0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_bins_and_buffers_are_errors() {
        let image = [1.0f32; 3];
        let view = ImageView::new(1, 1, 3, &image).unwrap();
        assert!(ColourHistogram { bins: 0, joint: false }.validate().is_err());
        assert!(ColourHistogram { bins: 65, joint: true }.validate().is_err());
        assert!(ColourHistogram::default().compute_into(view, &mut [0.0; 47]).is_err());
        assert!(ColourHistogram::default()
            .compute_into(ImageView::new(0, 1, 3, &[]).unwrap(), &mut [0.0; 48])
            .is_err());
    }

    proptest! {
        #[test]
        fn histograms_are_normalised(bins in 1usize..40, joint in any::<bool>(), grey in any::<bool>(),
                                     values in proptest::collection::vec(-10.0f32..300.0, 3..60)) {
            let hist = ColourHistogram { bins, joint };
            let channels = if grey { 1 } else { 3 };
            let n = values.len() / channels;
            let view = ImageView::new(n, 1, channels, &values[..n * channels]).unwrap();
            let mut out = vec![0.0; hist.len()];
            hist.compute_into(view, &mut out).unwrap();
            let expected = if joint { 1.0 } else { 3.0 };
            prop_assert!((out.iter().map(|&v| f64::from(v)).sum::<f64>() - expected).abs() < 1e-5);
        }
    }
}
