//! Local binary patterns, equal to scikit-image 0.26's `skimage.feature.local_binary_pattern`.
//!
//! Sample `i` of `P` sits at `(round(−R·sin(2πi/P), 5), round(R·cos(2πi/P), 5))` from the
//! pixel and is read by bilinear interpolation with 0 outside the image, with scikit-image's
//! exact operations: `top = (1 − dc)·tl + dc·tr`, `(1 − dr)·top + dr·bottom`. Its bit is
//! `sample − centre ≥ 0`. The interpolation is separable, so the horizontal pass is shared by
//! the samples of equal column offset and both passes run over whole rows.

use std::cell::RefCell;
use std::rc::Rc;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::grey::grey;
use super::simd;
use crate::image::{ImageView, Sample};
use crate::{Error, Result};

/// Largest `points` for the methods with 2^P codes.
const MAX_POINTS_WIDE: usize = 24;
/// Largest `points` for the other methods (a pixel's bits fit a `u32`).
const MAX_POINTS: usize = 32;
/// Largest accepted |radius|.
const MAX_RADIUS: f64 = 1e6;
/// Values below this magnitude keep every interpolation finite, so that a weight of exactly
/// 0 or 1 can be skipped without changing any comparison.
const SAFE_MAGNITUDE: f64 = 1e300;

/// How the `P` bits of a pixel become its code (scikit-image's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LbpMethod {
    /// The bits as a number, `Σ bit_i 2^i`: 2^P codes.
    Default,
    /// The smallest rotation of the default code (rotation invariant): at most 2^P codes.
    Ror,
    /// Number of ones for patterns with at most two 0/1 changes (counted without wrapping
    /// around, as scikit-image does), `P + 1` for the others: `P + 2` codes.
    Uniform,
    /// Uniform patterns told apart by rotation too: `P(P − 1) + 3` codes.
    #[serde(rename = "nri_uniform")]
    NriUniform,
}

impl LbpMethod {
    /// Every method.
    pub const ALL: [LbpMethod; 4] = [LbpMethod::Default, LbpMethod::Ror, LbpMethod::Uniform, LbpMethod::NriUniform];

    /// scikit-image's name for the method.
    pub fn name(self) -> &'static str {
        match self {
            LbpMethod::Default => "default",
            LbpMethod::Ror => "ror",
            LbpMethod::Uniform => "uniform",
            LbpMethod::NriUniform => "nri_uniform",
        }
    }
}

impl FromStr for LbpMethod {
    type Err = Error;

    /// scikit-image's names, in any case (`"default"`, `"ror"`, `"uniform"`, `"nri_uniform"`).
    fn from_str(s: &str) -> Result<Self> {
        LbpMethod::ALL.into_iter().find(|method| method.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let hint = if s.eq_ignore_ascii_case("var") { " (\"var\" is not supported)" } else { "" };
            Error::parameter(
                "method",
                format!("unknown method {s:?}{hint}; expected one of default, ror, uniform, nri_uniform"),
            )
        })
    }
}

/// Local binary pattern codes and their histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(default))]
#[serde(default, deny_unknown_fields)]
pub struct Lbp {
    /// Number of samples `P` on the circle: at most 24 for the methods `default` and `ror`
    /// (2^P codes), 32 for the others.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 32))]
    pub points: usize,
    /// Circle radius `R` in pixels (any real; the samples are interpolated).
    #[cfg_attr(feature = "openapi", schema(minimum = -1e6, maximum = 1e6))]
    pub radius: f64,
    /// How bits become codes.
    pub method: LbpMethod,
}

impl Default for Lbp {
    /// 8 points at radius 1, uniform codes.
    fn default() -> Self {
        Lbp { points: 8, radius: 1.0, method: LbpMethod::Uniform }
    }
}

impl Lbp {
    /// Checks the parameters: `1 ≤ P ≤ 24` for default/ror (2^P codes), `≤ 32` otherwise,
    /// `|R| ≤ 10⁶` and finite.
    pub fn validate(&self) -> Result<()> {
        let max = match self.method {
            LbpMethod::Default | LbpMethod::Ror => MAX_POINTS_WIDE,
            LbpMethod::Uniform | LbpMethod::NriUniform => MAX_POINTS,
        };
        if !(1..=max).contains(&self.points) {
            return Err(Error::parameter(
                "points",
                format!("must be between 1 and {max} for method {}, got {}", self.method.name(), self.points),
            ));
        }
        if !self.radius.is_finite() || self.radius.abs() > MAX_RADIUS {
            return Err(Error::parameter(
                "radius",
                format!("must be finite and at most {MAX_RADIUS}, got {}", self.radius),
            ));
        }
        Ok(())
    }

    /// Codes of a grey (1 channel) image, row-major `height × width`, identical to
    /// `skimage.feature.local_binary_pattern(image, P, R, method)`.
    pub fn codes<S: Sample>(&self, image: ImageView<'_, S>) -> Result<Vec<f64>> {
        self.validate()?;
        if image.channels() != 1 {
            return Err(Error::input(format!(
                "local binary patterns need a grey image, got {} channels",
                image.channels()
            )));
        }
        let plan = LbpPlan::cached(self, image.data().len());
        let mut codes = vec![0.0; image.data().len()];
        BUFFERS.with_borrow_mut(|buffers| {
            let outcome = simd::dispatch(CodesKernel { plan: &plan, image, buffers, codes: &mut codes });
            buffers.trim();
            outcome
        })?;
        Ok(codes)
    }

    /// Number of distinct codes: `2^P` (default, ror), `P + 2` (uniform), `P(P − 1) + 3`
    /// (nri_uniform).
    /// An upper bound of the heap the histogram of one `height × width` grey image takes on a
    /// thread: the image padded in f64 by the widest column shift, one interpolated f64 plane
    /// per distinct column offset (two planes two rows taller for P = 8, R = 1), the row
    /// buffers, the counts and the code table (for a valid configuration).
    pub fn scratch_bytes(&self, height: usize, width: usize) -> u64 {
        let plan = LbpPlan::new(self, 0);
        let (h, w) = (height as u64, width as u64);
        let pad = plan.columns.iter().map(|group| group.offset.abs().ceil() as u64).max().unwrap_or(0).clamp(1, w + 1);
        let planes = (plan.columns.len() as u64).max(2);
        let table = if LbpPlan::wants_table(self.points, height * width) { 4 << self.points } else { 0 };
        (h + 2) * (w + 2 * pad) * 8 + planes * (h + 2) * w * 8 + w * 32 + self.n_bins() as u64 * 4 + table
    }

    pub fn n_bins(&self) -> usize {
        let p = self.points;
        match self.method {
            LbpMethod::Default | LbpMethod::Ror => 1usize.checked_shl(p as u32).unwrap_or(usize::MAX),
            LbpMethod::Uniform => p.saturating_add(2),
            LbpMethod::NriUniform => p.saturating_mul(p.saturating_sub(1)).saturating_add(3),
        }
    }

    /// Histogram of the codes of a grey or RGB image (RGB is first turned grey with
    /// `skimage.color.rgb2gray`'s weights, see [`grey`]), normalised to sum 1. `out` must be
    /// [`Lbp::n_bins`] long.
    pub fn histogram_into(&self, image: ImageView<'_, f32>, out: &mut [f32]) -> Result<()> {
        self.validate()?;
        let grey = grey(image);
        LbpPlan::cached(self, grey.len()).histogram(&grey, image.height(), image.width(), out)
    }
}

thread_local! {
    /// The plan of the last [`Lbp`] used on this thread outside a [`super::FeatureExtractor`]:
    /// building it (offsets, code table) costs a good part of a small image's codes.
    static LAST_PLAN: RefCell<Option<Rc<LbpPlan>>> = const { RefCell::new(None) };
    /// Per-thread buffers, so that no image allocates or zeroes them (large short-lived
    /// allocations make the allocator give pages back to the system and fault them in again on
    /// every call). They grow up to [`RETAINED_BYTES`] and are given back past it (a thread of a
    /// long-running service would otherwise keep the planes of its largest image for good), and
    /// every value read is written first.
    static BUFFERS: RefCell<Buffers> = RefCell::default();
}

/// Most bytes a buffer of [`BUFFERS`] keeps between images: the planes of a 512×512 image at
/// P = 16 stay, those of a 4096×4096 one are freed after it.
const RETAINED_BYTES: usize = 64 << 20;

impl Buffers {
    /// Frees the buffers past [`RETAINED_BYTES`].
    fn trim(&mut self) {
        fn trim<T>(buffer: &mut Vec<T>) {
            if buffer.capacity() * size_of::<T>() > RETAINED_BYTES {
                *buffer = Vec::new();
            }
        }
        trim(&mut self.padded);
        trim(&mut self.horizontal);
        trim(&mut self.zeros);
        trim(&mut self.masks);
        trim(&mut self.bytes);
        trim(&mut self.counts);
    }
}

/// The buffers of [`LbpPlan::for_each_row_of_masks`].
#[derive(Debug, Default)]
struct Buffers {
    /// The image in f64, row-major, with zero columns on both sides.
    padded: Vec<f64>,
    /// The image interpolated along rows, one `height × width` plane per column offset that
    /// needs interpolating.
    horizontal: Vec<f64>,
    /// One row of zeros, for the rows above and below the image.
    zeros: Vec<f64>,
    /// The masks of one row: bit `i` per sample.
    masks: Vec<u64>,
    /// The masks of one row when they fit a byte (`P = 8`).
    bytes: Vec<u8>,
    /// The column weights of the last image width and plan, kept while they fit.
    weights: Vec<ColumnWeights>,
    /// Code counts of one histogram.
    counts: Vec<u32>,
}

/// The samples that share a column offset, and so one interpolation along rows.
#[derive(Debug, Clone)]
struct ColumnGroup {
    offset: f64,
    samples: Vec<usize>,
}

/// An [`Lbp`] prepared for many images: sample offsets and, for small `P`, a code table.
#[derive(Debug, Clone)]
pub(crate) struct LbpPlan {
    points: usize,
    /// The radius the offsets were computed from.
    radius: f64,
    method: LbpMethod,
    n_bins: usize,
    /// `(row, column)` offset of each sample.
    offsets: Vec<(f64, f64)>,
    /// Samples grouped by equal column offset (`0.0` and `−0.0` give the same columns).
    columns: Vec<ColumnGroup>,
    /// The code of every mask, when there are few masks for the pixels to be coded.
    table: Option<Vec<u32>>,
}

impl LbpPlan {
    /// Prepares `lbp` (already validated) for about `pixels` pixels.
    pub(crate) fn new(lbp: &Lbp, pixels: usize) -> Self {
        let p = lbp.points;
        // rr = -R * sin(2 * pi * arange(P) / P), then np.round(.., 5) = rint(x * 1e5) / 1e5.
        let round5 = |x: f64| (x * 1e5).round_ties_even() / 1e5;
        let offsets: Vec<(f64, f64)> = (0..p)
            .map(|i| {
                let angle = 2.0 * std::f64::consts::PI * i as f64 / p as f64;
                (round5(-lbp.radius * angle.sin()), round5(lbp.radius * angle.cos()))
            })
            .collect();
        let mut by_column: Vec<usize> = (0..p).collect();
        by_column.sort_by(|&a, &b| offsets[a].1.total_cmp(&offsets[b].1));
        let mut columns: Vec<ColumnGroup> = Vec::new();
        for i in by_column {
            match columns.last_mut() {
                Some(group) if group.offset == offsets[i].1 => group.samples.push(i),
                _ => columns.push(ColumnGroup { offset: offsets[i].1, samples: vec![i] }),
            }
        }
        let mut plan = LbpPlan {
            points: p,
            radius: lbp.radius,
            method: lbp.method,
            n_bins: lbp.n_bins(),
            offsets,
            columns,
            table: None,
        };
        if Self::wants_table(p, pixels) {
            plan.table = Some((0..1u32 << p).map(|mask| plan.code_of_mask(mask)).collect());
        }
        plan
    }

    /// Whether a table of the `2^points` codes pays off for images of `pixels` pixels.
    fn wants_table(points: usize, pixels: usize) -> bool {
        points <= 8 || (points <= 16 && (1 << points) <= pixels / 8)
    }

    /// The plan of `lbp` (already validated) for about `pixels` pixels, the last one built
    /// on this thread if it fits.
    fn cached(lbp: &Lbp, pixels: usize) -> Rc<LbpPlan> {
        LAST_PLAN.with_borrow_mut(|last| {
            let fits = |plan: &LbpPlan| {
                (plan.points, plan.radius.to_bits(), plan.method, plan.table.is_some())
                    == (lbp.points, lbp.radius.to_bits(), lbp.method, Self::wants_table(lbp.points, pixels))
            };
            match last {
                Some(plan) if fits(plan) => Rc::clone(plan),
                _ => Rc::clone(last.insert(Rc::new(LbpPlan::new(lbp, pixels)))),
            }
        })
    }

    /// The code table when the masks are bytes (`P = 8`).
    fn byte_table(&self) -> Option<&[u32; 256]> {
        self.table.as_deref().and_then(|table| table.try_into().ok())
    }

    /// `_local_binary_pattern`'s code for one mask (bit `i` set when sample `i` is at least
    /// the centre).
    fn code_of_mask(&self, mask: u32) -> u32 {
        let p = self.points as u32;
        let low_bits = u32::MAX >> (32 - p);
        // Changes between neighbours 0–1, 1–2, …, (P−2)–(P−1): no wrap-around.
        let changes = ((mask ^ (mask >> 1)) & (low_bits >> 1)).count_ones();
        let ones = mask.count_ones();
        match self.method {
            LbpMethod::Default => mask,
            LbpMethod::Ror => {
                let rotate = |v: u32| (v >> 1) | ((v & 1) << (p - 1));
                (0..p).scan(mask, |v, _| Some(std::mem::replace(v, rotate(*v)))).min().unwrap_or(mask)
            }
            LbpMethod::Uniform if changes <= 2 => ones,
            LbpMethod::Uniform => p + 1,
            LbpMethod::NriUniform if changes > 2 => p * (p - 1) + 2,
            LbpMethod::NriUniform if ones == 0 => 0,
            LbpMethod::NriUniform if ones == p => p * (p - 1) + 1,
            LbpMethod::NriUniform => {
                let first_one = mask.trailing_zeros();
                let rotation = if first_one == 0 { ones - (!mask).trailing_zeros() } else { p - first_one };
                1 + (ones - 1) * p + rotation
            }
        }
    }

    /// Normalised histogram of the codes of a grey image into `out` (`n_bins` long).
    pub(crate) fn histogram(&self, grey: &[f32], height: usize, width: usize, out: &mut [f32]) -> Result<()> {
        let n_bins = self.n_bins;
        if out.len() != n_bins {
            return Err(Error::input(format!("the LBP output buffer holds {} values, {n_bins} are needed", out.len())));
        }
        if grey.is_empty() {
            return Err(Error::input("cannot take the LBP histogram of an empty image"));
        }
        let image = ImageView::new(height, width, 1, grey)
            .ok_or_else(|| Error::input(format!("{} grey values are not a {height}×{width} image", grey.len())))?;
        // The buffers are borrowed outside the kernel: code inside `LocalKey::with` would not
        // be inlined into the wider builds.
        BUFFERS.with_borrow_mut(|buffers| {
            let mut counts = std::mem::take(&mut buffers.counts);
            counts.clear();
            counts.resize(n_bins, 0);
            let outcome = simd::dispatch(HistogramKernel { plan: self, image, buffers, counts: &mut counts });
            let total = grey.len() as f64;
            for (o, &count) in out.iter_mut().zip(&counts) {
                *o = (f64::from(count) / total) as f32;
            }
            buffers.counts = counts;
            buffers.trim();
            outcome
        })
    }

    /// Makes `weights` those of `self.columns` for images `width` pixels wide, keeping them
    /// when they already are.
    #[inline(always)]
    fn fit_weights(&self, weights: &mut Vec<ColumnWeights>, width: usize) -> Result<()> {
        let fits = weights.len() == self.columns.len()
            && weights
                .iter()
                .zip(&self.columns)
                .all(|(w, group)| w.offset.to_bits() == group.offset.to_bits() && w.frac.len() == width);
        if !fits {
            weights.clear();
            for group in &self.columns {
                weights.push(ColumnWeights::new(group.offset, width)?);
            }
        }
        Ok(())
    }

    /// [`LbpPlan::for_each_row_of_masks`] for `P = 8, R = 1`, with the masks as bytes, when
    /// every pixel is below [`SAFE_MAGNITUDE`]; `Ok(false)` (nothing emitted) otherwise.
    ///
    /// Samples 0, 2, 4, 6 are the pixels right, above, left and below; samples 1, 3 (above)
    /// and 5, 7 (below) interpolate between two rows of the image interpolated along rows at
    /// column offsets ±0.70711. Those two planes are computed once, then each row of masks in
    /// one pass that keeps the eight samples of a pixel in registers: the same operations as
    /// the general path, in the same order, so the same bits.
    #[inline(always)]
    fn rows_of_masks_8_1<S: Sample>(
        &self,
        image: ImageView<'_, S>,
        buffers: &mut Buffers,
        mut emit: impl FnMut(&[u8]),
    ) -> Result<bool> {
        if self.points != 8 || self.radius != 1.0 {
            return Ok(false);
        }
        let (height, width, data) = (image.height(), image.width(), image.data());
        if data.is_empty() {
            return Ok(true);
        }
        let Buffers { padded, horizontal, weights, bytes, .. } = buffers;
        // The image with one zero row and column on each side.
        let padded_width = width + 2;
        padded.resize((height + 2) * padded_width, 0.0);
        let (first, rest) = padded.split_at_mut(padded_width);
        first.fill(0.0);
        let (middle, last) = rest.split_at_mut(height * padded_width);
        last.fill(0.0);
        let mut safe = true;
        for (dst, src) in middle.chunks_exact_mut(padded_width).zip(data.chunks_exact(width)) {
            dst[0] = 0.0;
            dst[width + 1] = 0.0;
            for (d, s) in dst[1..=width].iter_mut().zip(src) {
                *d = s.to_f64();
                safe &= d.abs() < SAFE_MAGNITUDE;
            }
        }
        if !safe {
            return Ok(false);
        }
        self.fit_weights(weights, width)?;
        let weights_of = |sample: usize| {
            let offset = self.offsets[sample].1;
            weights.iter().find(|w| w.offset == offset)
        };
        // Column offset 0.70711 reads columns c and c + 1, −0.70711 columns c − 1 and c.
        let (Some(plus), Some(minus)) = (weights_of(1), weights_of(3)) else { return Ok(false) };
        if (plus.low, plus.high, minus.low, minus.high) != (0, 1, -1, 0) {
            return Ok(false);
        }
        // Both planes, `height + 2` rows of `width` (the first and last from the zero rows).
        let plane = (height + 2) * width;
        horizontal.resize(2 * plane, 0.0);
        let (plus_plane, minus_plane) = horizontal.split_at_mut(plane);
        for (w, h_plane, low) in [(plus, plus_plane, 1), (minus, minus_plane, 0)] {
            for (h_row, p_row) in h_plane.chunks_exact_mut(width).zip(padded.chunks_exact(padded_width)) {
                let (left, right) = (&p_row[low..low + width], &p_row[low + 1..low + 1 + width]);
                for ((((h, &one_minus), &frac), &left), &right) in
                    h_row.iter_mut().zip(&w.one_minus).zip(&w.frac).zip(left).zip(right)
                {
                    *h = one_minus * left + frac * right;
                }
            }
        }
        let (plus_plane, minus_plane) = horizontal.split_at(plane);
        bytes.resize(width, 0);
        // The row weights of samples 1, 3, 5, 7: rows r − 1 and r above, r and r + 1 below.
        let row_weight = |r: usize, sample: usize| {
            let y = r as f64 + self.offsets[sample].0;
            let dr = y - floor_ceil(y).0;
            (1.0 - dr, dr)
        };
        for r in 0..height {
            let padded_row = |k: usize| &padded[(r + k) * padded_width..][..padded_width];
            let plus_row = |k: usize| &plus_plane[(r + k) * width..][..width];
            let minus_row = |k: usize| &minus_plane[(r + k) * width..][..width];
            let (above, row, below) = (padded_row(0), padded_row(1), padded_row(2));
            let (centre, right, left) = (&row[1..=width], &row[2..width + 2], &row[..width]);
            let (above, below) = (&above[1..=width], &below[1..=width]);
            let (plus_above, plus_row, plus_below) = (plus_row(0), plus_row(1), plus_row(2));
            let (minus_above, minus_row, minus_below) = (minus_row(0), minus_row(1), minus_row(2));
            let [(a1, b1), (a3, b3), (a5, b5), (a7, b7)] = [1, 3, 5, 7].map(|sample| row_weight(r, sample));
            let masks = &mut bytes[..width];
            for c in 0..width {
                let x = centre[c];
                // For finite values below SAFE_MAGNITUDE, `t − x ≥ 0` is `t ≥ x` (a
                // difference rounds to zero only when the two are equal).
                let samples = [
                    right[c],
                    a1 * plus_above[c] + b1 * plus_row[c],
                    above[c],
                    a3 * minus_above[c] + b3 * minus_row[c],
                    left[c],
                    a5 * minus_row[c] + b5 * minus_below[c],
                    below[c],
                    a7 * plus_row[c] + b7 * plus_below[c],
                ];
                masks[c] = samples.iter().enumerate().fold(0u8, |mask, (i, &t)| mask | (u8::from(t >= x) << i));
            }
            emit(bytes);
        }
        Ok(true)
    }

    /// Calls `emit(masks)` for each row of `image` in order, where bit `i` of `masks[c]` is
    /// set when sample `i` of pixel `(r, c)` minus the pixel is ≥ 0. One row's masks stay in
    /// the first cache level while every sample ORs its bit into them.
    #[inline(always)]
    fn for_each_row_of_masks<S: Sample>(
        &self,
        image: ImageView<'_, S>,
        buffers: &mut Buffers,
        mut emit: impl FnMut(&[u64]),
    ) -> Result<()> {
        let (height, width, data) = (image.height(), image.width(), image.data());
        if data.is_empty() {
            return Ok(());
        }
        let Buffers { padded, horizontal, zeros, masks, weights, .. } = buffers;
        self.fit_weights(weights, width)?;
        // Zero padding wide enough for every column shift (those of column 0, which
        // `ColumnWeights` checks hold for all); a shift past it reads only zeros.
        let pad = weights.iter().map(|w| w.low.abs().max(w.high.abs())).max().unwrap_or(0).min(width as i64 + 1);
        let shifted = |shift: i64| (pad + shift.clamp(-pad, pad)) as usize;
        let margin = pad as usize;
        let padded_width = width + 2 * margin;
        padded.resize(height * padded_width, 0.0);
        for (dst, src) in padded.chunks_exact_mut(padded_width).zip(data.chunks_exact(width)) {
            let (left, rest) = dst.split_at_mut(margin);
            let (middle, right) = rest.split_at_mut(width);
            left.fill(0.0);
            right.fill(0.0);
            for (d, s) in middle.iter_mut().zip(src) {
                *d = s.to_f64();
            }
        }
        let safe = padded.iter().fold(true, |safe, v| safe & (v.abs() < SAFE_MAGNITUDE));
        // Samples at whole columns read `padded` shifted; the others an interpolated plane.
        let interpolated = |w: &&ColumnWeights| !(safe && w.whole);
        let plane = height * width;
        horizontal.resize(weights.iter().filter(interpolated).count() * plane, 0.0);
        for (h_plane, w) in horizontal.chunks_exact_mut(plane).zip(weights.iter().filter(interpolated)) {
            let (low, high) = (shifted(w.low), shifted(w.high));
            for (h_row, p_row) in h_plane.chunks_exact_mut(width).zip(padded.chunks_exact(padded_width)) {
                for (((h, &one_minus), &frac), (&left, &right)) in h_row
                    .iter_mut()
                    .zip(&w.one_minus)
                    .zip(&w.frac)
                    .zip(p_row[low..low + width].iter().zip(&p_row[high..high + width]))
                {
                    *h = one_minus * left + frac * right;
                }
            }
        }
        zeros.resize(width, 0.0);
        masks.resize(width, 0);
        for r in 0..height {
            let centre_row = &padded[r * padded_width + margin..][..width];
            masks.fill(0);
            let mut planes = horizontal.chunks_exact(plane);
            for (group, w) in self.columns.iter().zip(weights.iter()) {
                // The horizontally interpolated image: rows of `padded` from a shift, or a plane.
                let h_plane = if interpolated(&w) { planes.next() } else { None };
                let (source, stride, start) = match h_plane {
                    Some(h_plane) => (h_plane, width, 0),
                    None => (&padded[..], padded_width, shifted(w.low)),
                };
                let row = |y: f64| interpolated_row(source, stride, start, height, y, zeros);
                for &i in &group.samples {
                    let y = r as f64 + self.offsets[i].0;
                    let (low, high) = floor_ceil(y);
                    let dr = y - low;
                    let (top, bottom) = (row(low), row(high));
                    let bit = 1u64 << i;
                    if safe && dr == 0.0 {
                        for ((m, &t), &centre) in masks.iter_mut().zip(top).zip(centre_row) {
                            *m |= if t - centre >= 0.0 { bit } else { 0 };
                        }
                    } else {
                        let one_minus = 1.0 - dr;
                        for (((m, &t), &b), &centre) in masks.iter_mut().zip(top).zip(bottom).zip(centre_row) {
                            let texture = one_minus * t + dr * b;
                            *m |= if texture - centre >= 0.0 { bit } else { 0 };
                        }
                    }
                }
            }
            emit(masks);
        }
        Ok(())
    }
}

/// Row `r` of an interpolated image whose `zeros.len()` values a row are found from `start`
/// every `stride` in `source`, or `zeros` outside its `height` rows.
#[inline(always)]
fn interpolated_row<'a>(
    source: &'a [f64],
    stride: usize,
    start: usize,
    height: usize,
    r: f64,
    zeros: &'a [f64],
) -> &'a [f64] {
    let width = zeros.len();
    if r < 0.0 || r >= height as f64 {
        zeros
    } else {
        let start = r as usize * stride + start;
        &source[start..start + width]
    }
}

/// The codes of one grey image, row-major, into `codes` (as long as the image).
struct CodesKernel<'a, S> {
    plan: &'a LbpPlan,
    image: ImageView<'a, S>,
    buffers: &'a mut Buffers,
    codes: &'a mut [f64],
}

impl<S: Sample> simd::Kernel for CodesKernel<'_, S> {
    type Output = Result<()>;

    #[inline(always)]
    fn run(self) -> Self::Output {
        let CodesKernel { plan, image, buffers, codes } = self;
        // Each row's codes go to the front of `rest`, which then moves past them.
        let mut rest = codes;
        let mut next_row = |len: usize| {
            let (row, after) = std::mem::take(&mut rest).split_at_mut(len);
            rest = after;
            row
        };
        if let Some(table) = plan.byte_table() {
            // The method is chosen once per row, not per pixel; the uniform codes of bytes are
            // computed rather than looked up, so that the row vectorises.
            let emit = |masks: &[u8]| {
                let row = next_row(masks.len()).iter_mut().zip(masks);
                match plan.method {
                    LbpMethod::Default => row.for_each(|(code, &mask)| *code = f64::from(mask)),
                    LbpMethod::Uniform => row.for_each(|(code, &mask)| *code = f64::from(uniform_code_8(mask))),
                    _ => row.for_each(|(code, &mask)| *code = f64::from(table[usize::from(mask)])),
                }
            };
            if plan.rows_of_masks_8_1(image, buffers, emit)? {
                return Ok(());
            }
        }
        plan.for_each_row_of_masks(image, buffers, |masks| {
            let row = next_row(masks.len()).iter_mut().zip(masks);
            match &plan.table {
                Some(table) => row.for_each(|(code, &mask)| *code = f64::from(table[mask as usize])),
                None => row.for_each(|(code, &mask)| *code = f64::from(plan.code_of_mask(mask as u32))),
            }
        })
    }
}

/// The uniform code of an 8-bit mask: its number of ones when at most two of its seven
/// neighbouring bit pairs differ, 9 otherwise ([`LbpPlan::code_of_mask`] for `P = 8`).
#[inline(always)]
fn uniform_code_8(mask: u8) -> u8 {
    let changes = ((mask ^ (mask >> 1)) & 0x7f).count_ones();
    if changes <= 2 {
        mask.count_ones() as u8
    } else {
        9
    }
}

/// The code counts of one grey image.
struct HistogramKernel<'a> {
    plan: &'a LbpPlan,
    image: ImageView<'a, f32>,
    buffers: &'a mut Buffers,
    counts: &'a mut [u32],
}

impl simd::Kernel for HistogramKernel<'_> {
    type Output = Result<()>;

    #[inline(always)]
    fn run(self) -> Self::Output {
        let HistogramKernel { plan, image, buffers, counts } = self;
        if let Some(table) = plan.byte_table() {
            // Masks are counted first, then added up by code: no code lookup per pixel.
            let mut mask_counts = [0u32; 256];
            let emit = |masks: &[u8]| masks.iter().for_each(|&mask| mask_counts[usize::from(mask)] += 1);
            if plan.rows_of_masks_8_1(image, buffers, emit)? {
                for (&code, &count) in table.iter().zip(&mask_counts) {
                    counts[code as usize] += count;
                }
                return Ok(());
            }
        }
        plan.for_each_row_of_masks(image, buffers, |masks| match &plan.table {
            Some(table) => masks.iter().for_each(|&mask| counts[table[mask as usize] as usize] += 1),
            None => masks.iter().for_each(|&mask| counts[plan.code_of_mask(mask as u32) as usize] += 1),
        })
    }
}

/// Bilinear weights along columns for one column offset: `floor`/`ceil` of `c + offset` are
/// `c + low`/`c + high` for every column, `frac = (c + offset) − floor(c + offset)`.
#[derive(Debug)]
struct ColumnWeights {
    offset: f64,
    low: i64,
    high: i64,
    /// Every `frac` is 0: samples are whole pixels.
    whole: bool,
    frac: Vec<f64>,
    one_minus: Vec<f64>,
}

impl ColumnWeights {
    /// Inlined into the LBP kernel, so that its per-column floors vectorise.
    #[inline(always)]
    fn new(offset: f64, width: usize) -> Result<Self> {
        let (low, high) = floor_ceil(offset);
        let (low, high) = (low as i64, high as i64);
        let mut frac = Vec::with_capacity(width);
        let mut same_shifts = true;
        for c in 0..width {
            let x = c as f64 + offset;
            let (floor, ceil) = floor_ceil(x);
            same_shifts &= floor as i64 - c as i64 == low && ceil as i64 - c as i64 == high;
            frac.push(x - floor);
        }
        // The 5-decimal offsets are ≥ 1e-5 from an integer unless integral, far more than the
        // rounding of `c + offset`, so the shifts are the same for every column.
        if !same_shifts {
            return Err(Error::input(format!("an image {width} pixels wide is too wide for local binary patterns")));
        }
        let whole = frac.iter().all(|&f| f == 0.0);
        let one_minus = frac.iter().map(|f| 1.0 - f).collect();
        Ok(ColumnWeights { offset, low, high, whole, frac, one_minus })
    }
}

/// `(floor(x), ceil(x))` for |x| < 2^52 and x ≠ −0, without the libm calls that x86-64's
/// baseline (no SSE4.1 rounding) would make.
#[inline]
fn floor_ceil(x: f64) -> (f64, f64) {
    let truncated = x as i64 as f64;
    let floor = if truncated > x { truncated - 1.0 } else { truncated };
    let ceil = if truncated < x { truncated + 1.0 } else { truncated };
    (floor, ceil)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `_local_binary_pattern` transcribed pixel by pixel, the oracle of the fast path.
    fn reference_codes(lbp: &Lbp, image: &[f64], height: usize, width: usize) -> Vec<f64> {
        let plan = LbpPlan::new(lbp, 0);
        let pixel = |r: i64, c: i64| {
            if r < 0 || c < 0 || r >= height as i64 || c >= width as i64 {
                0.0
            } else {
                image[r as usize * width + c as usize]
            }
        };
        let mut out = Vec::new();
        for r in 0..height {
            for c in 0..width {
                let mut mask = 0u32;
                for (i, &(rp, cp)) in plan.offsets.iter().enumerate() {
                    let (y, x) = (r as f64 + rp, c as f64 + cp);
                    let (minr, minc, maxr, maxc) = (y.floor(), x.floor(), y.ceil(), x.ceil());
                    let (dr, dc) = (y - minr, x - minc);
                    let (minr, minc, maxr, maxc) = (minr as i64, minc as i64, maxr as i64, maxc as i64);
                    let top = (1.0 - dc) * pixel(minr, minc) + dc * pixel(minr, maxc);
                    let bottom = (1.0 - dc) * pixel(maxr, minc) + dc * pixel(maxr, maxc);
                    let texture = (1.0 - dr) * top + dr * bottom;
                    if texture - image[r * width + c] >= 0.0 {
                        mask |= 1 << i;
                    }
                }
                out.push(f64::from(plan.code_of_mask(mask)));
            }
        }
        out
    }

    #[test]
    fn method_names_round_trip() {
        for method in LbpMethod::ALL {
            assert_eq!(method.name().parse::<LbpMethod>().unwrap(), method);
            assert_eq!(method.name().to_uppercase().parse::<LbpMethod>().unwrap(), method);
            assert_eq!(serde_json::to_string(&method).unwrap(), format!("\"{}\"", method.name()));
        }
        assert!("var".parse::<LbpMethod>().unwrap_err().to_string().contains("not supported"));
    }

    #[test]
    #[allow(clippy::approx_constant)] // skimage rounds the offsets to 5 decimals
    fn offsets_are_rounded_like_skimage() {
        // np.round(-1 * np.sin(2 * np.pi * np.arange(8) / 8), 5) and the cosines.
        let plan = LbpPlan::new(&Lbp::default(), 0);
        let rows: Vec<f64> = plan.offsets.iter().map(|o| o.0).collect();
        let cols: Vec<f64> = plan.offsets.iter().map(|o| o.1).collect();
        assert_eq!(rows, [-0.0, -0.70711, -1.0, -0.70711, -0.0, 0.70711, 1.0, 0.70711]);
        assert_eq!(cols, [1.0, 0.70711, 0.0, -0.70711, -1.0, -0.70711, -0.0, 0.70711]);
    }

    #[test]
    fn uniform_codes_of_a_known_patch() {
        // A bright pixel on black: its samples are all smaller (code 0 → uniform 0); its
        // neighbours see it in one sample only.
        let mut image = vec![0.0f32; 25];
        image[12] = 9.0;
        let codes = Lbp::default().codes(ImageView::new(5, 5, 1, &image).unwrap()).unwrap();
        assert_eq!(codes[12], 0.0);
        assert_eq!(codes[0], 8.0);
    }

    #[test]
    fn codes_need_grey_and_histograms_need_pixels() {
        let rgb = vec![0f32; 12];
        assert!(Lbp::default().codes(ImageView::new(2, 2, 3, &rgb).unwrap()).is_err());
        let mut out = vec![0f32; 10];
        assert!(Lbp::default().histogram_into(ImageView::new(0, 4, 1, &[]).unwrap(), &mut out).is_err());
        assert!(Lbp::default().histogram_into(ImageView::new(2, 2, 3, &rgb).unwrap(), &mut out[..9]).is_err());
        Lbp::default().histogram_into(ImageView::new(2, 2, 3, &rgb).unwrap(), &mut out).unwrap();
        assert_eq!(out.iter().sum::<f32>(), 1.0);
    }

    #[test]
    fn bad_parameters_are_errors() {
        for bad in [
            Lbp { points: 0, ..Lbp::default() },
            Lbp { points: 33, ..Lbp::default() },
            Lbp { points: 25, method: LbpMethod::Default, ..Lbp::default() },
            Lbp { radius: f64::NAN, ..Lbp::default() },
            Lbp { radius: 1e7, ..Lbp::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buffers_reused_across_sizes_and_parameters_give_the_same_codes() {
        // Each thread keeps its buffers and last plan: a smaller image or other parameters
        // after a larger one must not read what the previous image left there.
        let image = |h: usize, w: usize, seed: u64| -> Vec<f64> {
            (0..h * w).map(|i| ((seed.wrapping_mul(2 * i as u64 + 1) >> 29) % 7) as f64).collect()
        };
        let runs =
            [(40, 31, 8, 1.0), (5, 3, 8, 1.0), (17, 60, 8, 2.5), (1, 9, 16, 1.0), (40, 31, 8, 1.0), (2, 2, 4, 7.0)];
        for (k, &(h, w, points, radius)) in runs.iter().enumerate() {
            for method in LbpMethod::ALL {
                let lbp = Lbp { points, radius, method };
                let pixels = image(h, w, k as u64 + 3);
                let codes = lbp.codes(ImageView::new(h, w, 1, &pixels).unwrap()).unwrap();
                assert_eq!(codes, reference_codes(&lbp, &pixels, h, w), "{lbp:?} {h}×{w}");
            }
        }
    }

    #[test]
    fn rows_of_8_1_leave_other_parameters_and_huge_values_to_the_general_rows() {
        let image = [1.0, f64::MAX, 3.0, 0.5];
        let image = ImageView::new(2, 2, 1, &image).unwrap();
        for lbp in [Lbp { radius: 1.5, ..Lbp::default() }, Lbp { points: 7, ..Lbp::default() }, Lbp::default()] {
            let mut emitted = false;
            let plan = LbpPlan::new(&lbp, 4);
            assert!(!plan.rows_of_masks_8_1(image, &mut Buffers::default(), |_| emitted = true).unwrap());
            assert!(!emitted, "{lbp:?}");
            let codes = lbp.codes(image).unwrap();
            assert_eq!(codes, reference_codes(&lbp, &[1.0, f64::MAX, 3.0, 0.5], 2, 2));
        }
    }

    #[test]
    fn uniform_codes_of_bytes_equal_the_table() {
        let plan = LbpPlan::new(&Lbp::default(), 0);
        let table = plan.byte_table().unwrap();
        for mask in 0..=255u8 {
            assert_eq!(u32::from(uniform_code_8(mask)), table[usize::from(mask)], "{mask:08b}");
        }
    }

    #[test]
    fn histograms_count_the_codes() {
        let (h, w) = (23, 29);
        let grey: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 13) as f32 * 19.5).collect();
        for (points, radius) in [(8, 1.0), (8, 1.5), (16, 2.0), (5, 0.7)] {
            for method in LbpMethod::ALL {
                let lbp = Lbp { points, radius, method };
                let mut counts = vec![0usize; lbp.n_bins()];
                for code in lbp.codes(ImageView::new(h, w, 1, &grey).unwrap()).unwrap() {
                    counts[code as usize] += 1;
                }
                let mut histogram = vec![0f32; lbp.n_bins()];
                lbp.histogram_into(ImageView::new(h, w, 1, &grey).unwrap(), &mut histogram).unwrap();
                let expected: Vec<f32> = counts.iter().map(|&c| (c as f64 / (h * w) as f64) as f32).collect();
                assert_eq!(histogram, expected, "{lbp:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn common_parameters_equal_the_transcription(
            h in 1usize..40, w in 1usize..70, shape in 0usize..6, method in 0usize..4, levels in 1u64..300,
            seed in any::<u64>(), scale in prop_oneof![Just(1.0), Just(0.1), Just(1e-3)],
        ) {
            // P = 8, R = 1 (the default) and its neighbours: flat areas and ramps make the
            // interpolated samples land next to the centre, where every rounding counts.
            let (points, radius) = [(8, 1.0), (8, -1.0), (4, 1.0), (16, 1.0), (8, 2.0), (8, 0.5)][shape];
            let lbp = Lbp { points, radius, method: LbpMethod::ALL[method] };
            let image: Vec<f64> = (0..h * w)
                .map(|i| if seed % 3 == 0 { ((i / w + i % w) as u64 % levels) as f64 } else {
                    ((seed.wrapping_mul(2 * i as u64 + 1) >> 33) % levels) as f64
                })
                .map(|v| v * scale)
                .collect();
            let codes = lbp.codes(ImageView::new(h, w, 1, &image).unwrap()).unwrap();
            prop_assert_eq!(codes, reference_codes(&lbp, &image, h, w));
        }

        #[test]
        fn rows_of_8_1_equal_the_general_rows(
            h in 1usize..40, w in 1usize..70, ramp in any::<bool>(), levels in 1u16..257, seed in any::<u64>(),
        ) {
            // The P = 8, R = 1 pass against the general one on the same bytes, row by row.
            let image: Vec<u8> = (0..h * w)
                .map(|i| if ramp { (i / w + 2 * (i % w)) as u64 } else { seed.wrapping_mul(2 * i as u64 + 1) >> 40 })
                .map(|v| (v % u64::from(levels)) as u8)
                .collect();
            let image = ImageView::new(h, w, 1, &image).unwrap();
            let plan = LbpPlan::new(&Lbp::default(), h * w);
            let mut buffers = Buffers::default();
            let mut general = Vec::new();
            plan.for_each_row_of_masks(image, &mut buffers, |masks| general.extend(masks.iter().map(|&m| m as u8)))
                .unwrap();
            let mut fast = Vec::new();
            prop_assert!(plan.rows_of_masks_8_1(image, &mut buffers, |masks| fast.extend_from_slice(masks)).unwrap());
            prop_assert_eq!(fast, general);
        }

        #[test]
        fn fast_codes_equal_the_transcription(
            h in 0usize..12, w in 1usize..12, points in 1usize..25, radius in -4.0f64..6.0,
            method in 0usize..4, levels in 1u64..6, seed in any::<u64>(), huge in any::<bool>(),
        ) {
            let lbp = Lbp { points, radius, method: LbpMethod::ALL[method] };
            let image: Vec<f64> = (0..h * w)
                .map(|i| ((seed.wrapping_mul(2 * i as u64 + 1) >> 33) % levels) as f64 * 0.3)
                .map(|v| if huge && v > 0.5 { f64::MAX } else { v })
                .collect();
            let codes = lbp.codes(ImageView::new(h, w, 1, &image).unwrap()).unwrap();
            prop_assert_eq!(codes, reference_codes(&lbp, &image, h, w));
        }

        #[test]
        fn histograms_sum_to_one(h in 1usize..20, w in 1usize..20, points in 1usize..17, radius in 0.0f64..30.0,
                                 method in 0usize..4, seed in any::<u64>()) {
            let lbp = Lbp { points, radius, method: LbpMethod::ALL[method] };
            let image: Vec<f32> = (0..h * w * 3).map(|i| ((seed.wrapping_mul(i as u64 + 7) >> 40) % 256) as f32).collect();
            let mut out = vec![0f32; lbp.n_bins()];
            lbp.histogram_into(ImageView::new(h, w, 3, &image).unwrap(), &mut out).unwrap();
            prop_assert!((out.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() < 1e-5);
            prop_assert!(out.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
    }
}
