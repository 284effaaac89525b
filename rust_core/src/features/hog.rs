//! Histogram of oriented gradients, equal to scikit-image 0.26's `skimage.feature.hog`.
//!
//! Every step repeats scikit-image's arithmetic so that the output is bit-identical for the
//! same input dtype: gradients in the image's float type, magnitudes as glibc's `hypot`,
//! orientation bins bounded by `(180/n)·i` in double, each cell summed in a float32 in
//! row-major order, blocks normalised in f64 with numpy's pairwise summation.
//!
//! The one shortcut is orientation binning without `atan2`: a pixel's bin is read from a
//! monotone pseudo-angle whenever that pseudo-angle is at least [`MARGIN`] away from every
//! bin bound. That margin is over 10⁵ times the combined error of numpy's
//! `degrees(arctan2(..)) % 180` (glibc's or SVML's `atan2`) and of our pseudo-angles, so the
//! bin is the one numpy picks. Most pixels go through a float32 estimate and a table of
//! buckets that are clear of every bound by the margin plus the estimate's error; the few in
//! other buckets get an f64 pseudo-angle, and those still within the margin (exact 0°, 45°,
//! 90° gradients on a bound, ...) numpy's own formula.

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

use super::simd;
use crate::image::{ImageView, Sample};
use crate::{Error, Real, Result};

/// Largest accepted `orientations`.
const MAX_ORIENTATIONS: usize = 4096;
/// Largest accepted side of a cell (pixels) or of a block (cells).
const MAX_SIDE: usize = 1 << 15;
/// scikit-image's `eps` in the block norms.
const NORM_EPS: f64 = 1e-5;
/// Pseudo-angle distance to a bin boundary below which numpy's exact formula decides.
const MARGIN: f64 = 1e-9;
/// numpy's `rad2deg` factor, `180.0 / NPY_PI`.
const RAD2DEG: f64 = 180.0 / std::f64::consts::PI;
/// The gradients of an 8-bit image lie in `-255..=255`.
const MAX_BYTE_GRADIENT: i32 = 255;
/// Rows (and columns) of the table of the bins of every integer gradient.
const GRADIENT_SPAN: usize = 2 * MAX_BYTE_GRADIENT as usize + 1;
/// Entries of [`ByteTable`]: the `GRADIENT_SPAN²` gradients rounded up to a power of two, so
/// that a masked index needs no bounds check.
const BYTE_TABLE_LEN: usize = (GRADIENT_SPAN * GRADIENT_SPAN).next_power_of_two();
/// The flag of a [`ByteTable`] entry whose glibc `hypot` is not the square root of `gc² + gr²`.
const INEXACT_ROOT: u16 = 1 << 15;

/// Per integer gradient `(gc, gr)`, at `(gr + 255) · 511 + gc + 255`: its orientation bin
/// (`n` for none), with [`INEXACT_ROOT`] set where its magnitude is not `sqrt(gc² + gr²)`.
type ByteTable = [u16; BYTE_TABLE_LEN];

thread_local! {
    /// The bins of the last [`Hog::compute_into`] on this thread: building them costs about a
    /// tenth of a 64×64 image's descriptor.
    static LAST_BINS: RefCell<Option<Rc<OrientationBins>>> = const { RefCell::new(None) };
}

/// How each block of cells is normalised (scikit-image's `block_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BlockNorm {
    /// `v / (Σ|v| + ε)`.
    L1,
    /// `sqrt(v / (Σ|v| + ε))`.
    #[serde(rename = "L1-sqrt")]
    L1Sqrt,
    /// `v / sqrt(Σv² + ε²)`.
    L2,
    /// L2, then clipped at 0.2 and L2-normalised again (Dalal and Triggs' choice).
    #[serde(rename = "L2-Hys")]
    L2Hys,
}

impl BlockNorm {
    /// Every norm, in scikit-image's order.
    pub const ALL: [BlockNorm; 4] = [BlockNorm::L1, BlockNorm::L1Sqrt, BlockNorm::L2, BlockNorm::L2Hys];

    /// scikit-image's name for the norm (`"L2-Hys"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BlockNorm::L1 => "L1",
            BlockNorm::L1Sqrt => "L1-sqrt",
            BlockNorm::L2 => "L2",
            BlockNorm::L2Hys => "L2-Hys",
        }
    }

    /// Normalises every block of `len` (> 0) consecutive `blocks` in place exactly as
    /// `skimage.feature._hog._hog_normalize_block`, each step over all blocks before the next
    /// so that the blocks' sums, roots and divisions do not wait on one another. `FMA`: whether
    /// `f64::mul_add` is one instruction (see [`divide`]).
    #[inline(always)]
    fn apply<const FMA: bool>(self, blocks: &mut [f64], len: usize) {
        match self {
            BlockNorm::L1 | BlockNorm::L1Sqrt => {
                divide_blocks::<FMA>(blocks, len, |block| numpy_sum(block, f64::abs) + NORM_EPS);
                if self == BlockNorm::L1Sqrt {
                    blocks.iter_mut().for_each(|v| *v = v.sqrt());
                }
            }
            BlockNorm::L2 => l2_normalise::<FMA>(blocks, len),
            BlockNorm::L2Hys => {
                l2_normalise::<FMA>(blocks, len);
                for v in blocks.iter_mut() {
                    // np.minimum propagates NaN, f64::min would not.
                    if !(v.is_nan() || *v <= 0.2) {
                        *v = 0.2;
                    }
                }
                l2_normalise::<FMA>(blocks, len);
            }
        }
    }
}

impl fmt::Display for BlockNorm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BlockNorm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        BlockNorm::ALL.into_iter().find(|norm| norm.name() == s).ok_or_else(|| {
            Error::parameter("block_norm", format!("unknown norm {s:?}; expected one of L1, L1-sqrt, L2, L2-Hys"))
        })
    }
}

/// `v / sqrt(np.sum(v**2) + eps**2)`.
#[inline(always)]
fn l2_normalise<const FMA: bool>(blocks: &mut [f64], len: usize) {
    divide_blocks::<FMA>(blocks, len, |block| (numpy_sum(block, |v| v * v) + NORM_EPS * NORM_EPS).sqrt());
}

/// Divides every block of `len` (> 0) consecutive `blocks` by its `norm`, every norm first.
#[inline(always)]
fn divide_blocks<const FMA: bool>(blocks: &mut [f64], len: usize, norm: impl Fn(&[f64]) -> f64) {
    let norms: Vec<f64> = blocks.chunks_exact(len).map(norm).collect();
    for (block, &norm) in blocks.chunks_exact_mut(len).zip(&norms) {
        divide::<FMA>(block, norm);
    }
}

/// `v /= divisor` for every value, a positive `divisor` that is infinite or NaN unless every
/// value is finite (a block's norm). With `FMA` (`f64::mul_add` one instruction), a finite
/// divisor goes through its reciprocal `y = 1/divisor`: `q = v·y`, then twice
/// `q += (v − divisor·q)·y` in fused multiply-adds, a quarter of a division's cost. The first
/// correction leaves `q` within an ulp of `v / divisor`, and from there Markstein's theorem
/// (y the correctly rounded reciprocal, the remainder exact) makes the second one the
/// correctly rounded quotient: the division's result, bit for bit.
#[inline(always)]
fn divide<const FMA: bool>(values: &mut [f64], divisor: f64) {
    if FMA && divisor.is_finite() {
        let y = 1.0 / divisor;
        for v in values.iter_mut() {
            let q = *v * y;
            let q = (-divisor).mul_add(q, *v).mul_add(y, q);
            *v = (-divisor).mul_add(q, *v).mul_add(y, q);
        }
    } else {
        values.iter_mut().for_each(|v| *v /= divisor);
    }
}

/// numpy's pairwise summation works on blocks of this many values.
const SUM_BLOCK: usize = 128;

/// `np.sum` of `f` of every value of a contiguous f64 array (the temporary array numpy
/// would sum): numpy's pairwise summation, bit for bit.
#[inline(always)]
fn numpy_sum(values: &[f64], f: impl Fn(f64) -> f64 + Copy) -> f64 {
    // Blocks (HOG's are at most 128 values in practice) are summed inline, longer arrays
    // split in a function of their own since it recurses.
    if values.len() <= SUM_BLOCK {
        numpy_sum_block(values, f)
    } else {
        numpy_sum_halves(values, f)
    }
}

/// [`numpy_sum`] of more than [`SUM_BLOCK`] values: the sums of two halves.
fn numpy_sum_halves(values: &[f64], f: impl Fn(f64) -> f64 + Copy) -> f64 {
    let half = values.len() / 2;
    let split = half - half % 8;
    numpy_sum(&values[..split], f) + numpy_sum(&values[split..], f)
}

/// [`numpy_sum`] of at most [`SUM_BLOCK`] values: eight interleaved running sums.
#[inline(always)]
fn numpy_sum_block(values: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let n = values.len();
    if n < 8 {
        values.iter().fold(-0.0, |acc, &v| acc + f(v))
    } else {
        let mut acc = [0.0; 8];
        for (a, &v) in acc.iter_mut().zip(values) {
            *a = f(v);
        }
        let full = n - n % 8;
        for chunk in values[8..full].chunks_exact(8) {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += f(v);
            }
        }
        let head = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        values[full..].iter().fold(head, |acc, &v| acc + f(v))
    }
}

/// Histogram of oriented gradients, scikit-image's `hog` parameters and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(default))]
#[serde(default, deny_unknown_fields)]
pub struct Hog {
    /// Orientation bins over [0°, 180°).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4096))]
    pub orientations: usize,
    /// Cell size in pixels, `(rows, columns)`, each 1..=32768.
    #[cfg_attr(feature = "openapi", schema(min_items = 2, max_items = 2))]
    pub pixels_per_cell: [usize; 2],
    /// Block size in cells, `(rows, columns)`, each 1..=32768; blocks overlap with a stride of
    /// one cell. The image (`size`) must hold at least one block.
    #[cfg_attr(feature = "openapi", schema(min_items = 2, max_items = 2))]
    pub cells_per_block: [usize; 2],
    /// How blocks are normalised.
    pub block_norm: BlockNorm,
    /// Take the square root of the image first (power-law compression).
    pub transform_sqrt: bool,
}

impl Default for Hog {
    /// scikit-image's defaults: 9 orientations, 8×8 cells, 3×3 blocks, L2-Hys, no sqrt.
    fn default() -> Self {
        Hog {
            orientations: 9,
            pixels_per_cell: [8, 8],
            cells_per_block: [3, 3],
            block_norm: BlockNorm::L2Hys,
            transform_sqrt: false,
        }
    }
}

impl Hog {
    /// Checks the parameters alone (see [`Hog::output_shape`] for the image size).
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_ORIENTATIONS).contains(&self.orientations) {
            return Err(Error::parameter(
                "orientations",
                format!("must be between 1 and {MAX_ORIENTATIONS}, got {}", self.orientations),
            ));
        }
        for (name, sides) in [("pixels_per_cell", self.pixels_per_cell), ("cells_per_block", self.cells_per_block)] {
            if sides.iter().any(|side| !(1..=MAX_SIDE).contains(side)) {
                return Err(Error::parameter(
                    name,
                    format!("both sides must be between 1 and {MAX_SIDE}, got {sides:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `(blocks_r, blocks_c, cells_per_block_r, cells_per_block_c, orientations)`, the shape of
    /// scikit-image's output before `ravel`; an error if the image is too small for one block.
    pub fn output_shape(&self, height: usize, width: usize) -> Result<[usize; 5]> {
        self.validate()?;
        let [cell_r, cell_c] = self.pixels_per_cell;
        let [block_r, block_c] = self.cells_per_block;
        let (cells_r, cells_c) = (height / cell_r, width / cell_c);
        if cells_r < block_r || cells_c < block_c {
            return Err(Error::input(format!(
                "a {height}×{width} image is too small for HOG with pixels_per_cell {:?} and cells_per_block {:?}: \
                 it needs at least {} rows and {} columns",
                self.pixels_per_cell,
                self.cells_per_block,
                cell_r * block_r,
                cell_c * block_c,
            )));
        }
        Ok([cells_r - block_r + 1, cells_c - block_c + 1, block_r, block_c, self.orientations])
    }

    /// Length of the feature vector of a `height × width` image.
    pub fn len(&self, height: usize, width: usize) -> Result<usize> {
        self.output_shape(height, width)?
            .iter()
            .try_fold(1usize, |len, &side| len.checked_mul(side))
            .ok_or_else(|| Error::input(format!("the HOG of a {height}×{width} image is too long to allocate")))
    }

    /// An upper bound of the heap the descriptor of one `height × width` image of `channels`
    /// channels takes on a thread: the cells and blocks in f64, the f64 descriptor of a byte
    /// image, the square roots with `transform_sqrt`, the per-row gradients, and the orientation
    /// table of byte images (for a valid configuration).
    pub fn scratch_bytes(&self, height: usize, width: usize, channels: usize) -> u64 {
        let len = self.len(height, width).unwrap_or(0) as u64;
        let [cell_r, cell_c] = self.pixels_per_cell.map(|side| side.max(1));
        let cells = ((height / cell_r) * (width / cell_c) * self.orientations) as u64;
        let (plane, row) = ((height * width * channels) as u64, (width * channels) as u64);
        let roots = if self.transform_sqrt { plane * 4 } else { 0 };
        // Byte images take the table path only for RGB without square roots; building the
        // table takes about four times its size.
        let table = if channels == 3 && !self.transform_sqrt { BYTE_TABLE_LEN as u64 * 8 } else { 0 };
        cells * 8 + len * 16 + roots + row * 64 + table
    }

    /// Writes the flattened descriptor of a grey (1 channel) or RGB (3 channels) image into
    /// `out`, which must be [`Hog::len`] long. RGB uses, per pixel, the channel with the
    /// largest gradient magnitude, like scikit-image with `channel_axis=-1`. Computes exactly
    /// as scikit-image does for an input array of the same dtype (`u8`: in f64).
    pub fn compute_into<S: Sample>(&self, image: ImageView<'_, S>, out: &mut [S::Float]) -> Result<()> {
        self.validate()?;
        let bins = LAST_BINS.with_borrow_mut(|last| match last {
            Some(bins) if bins.orientations == self.orientations => Rc::clone(bins),
            _ => Rc::clone(last.insert(Rc::new(OrientationBins::new(self.orientations)))),
        });
        self.compute_with(&bins, image, out)
    }

    /// [`Hog::compute_into`] into a new vector.
    pub fn compute<S: Sample>(&self, image: ImageView<'_, S>) -> Result<Vec<S::Float>> {
        let mut out = vec![<S::Float as num_traits::Zero>::zero(); self.len(image.height(), image.width())?];
        self.compute_into(image, &mut out)?;
        Ok(out)
    }

    /// [`Hog::compute_into`] with the orientation bins prepared once for many images.
    pub(crate) fn compute_with<S: Sample>(
        &self,
        bins: &OrientationBins,
        image: ImageView<'_, S>,
        out: &mut [S::Float],
    ) -> Result<()> {
        let shape = self.output_shape(image.height(), image.width())?;
        let len = self.len(image.height(), image.width())?;
        if out.len() != len {
            return Err(Error::input(format!("the HOG output buffer holds {} values, {len} are needed", out.len())));
        }
        debug_assert_eq!(bins.orientations, self.orientations);
        // Integer pixels (8-bit images, and float images holding them) have integer gradients,
        // whose bins come from a table and magnitudes from one square root; the square root
        // of an image is no longer integer.
        let bytes = if self.transform_sqrt { None } else { S::to_bytes(image.data()) };
        let floats;
        let samples = match (&bytes, bytes.as_ref().and_then(|_| bins.byte_table())) {
            (Some(bytes), Some(table)) => Samples::Bytes(image.with_data(bytes), table),
            _ => {
                floats = S::to_floats(image.data());
                Samples::Floats(image.with_data(&floats))
            }
        };
        simd::dispatch_fused(HogKernel { hog: self, bins, samples, shape, out });
        Ok(())
    }

    /// `orientation_histogram` of `_hoghistogram.hog_histograms`: cells × orientations, f64
    /// holding float32 values, from the votes of `rows`.
    #[inline(always)]
    fn cell_histograms(&self, height: usize, width: usize, rows: &mut impl RowVotes) -> Vec<f64> {
        let [cell_r, cell_c] = self.pixels_per_cell;
        let (cells_r, cells_c) = (height / cell_r, width / cell_c);
        let n = self.orientations;
        // `total / (cell_rows * cell_columns)` in C: an int product converted to float.
        let area = (cell_r * cell_c) as f32;
        let mut totals = vec![0f32; cells_c * (n + 1)];
        let mut hist = Vec::with_capacity(cells_r * cells_c * n);
        for r in 0..cells_r * cell_r {
            rows.vote_row(r, &mut totals);
            if (r + 1) % cell_r == 0 {
                for cell_totals in totals.chunks_exact(n + 1) {
                    hist.extend(cell_totals[..n].iter().map(|&total| f64::from(total / area)));
                }
                totals.fill(0.0);
            }
        }
        hist
    }

    /// [`Hog::cell_histograms`] of a float image, with the gradients of `RowGradients`.
    #[inline(always)]
    fn float_cell_histograms<T: Real>(&self, bins: &OrientationBins, image: ImageView<'_, T>) -> Vec<f64> {
        let (height, width, channels) = (image.height(), image.width(), image.channels());
        let cell_c = self.pixels_per_cell[1];
        let cols = width / cell_c * cell_c;
        let data: Cow<'_, [T]> = if self.transform_sqrt {
            Cow::Owned(image.data().iter().map(|v| v.sqrt()).collect())
        } else {
            Cow::Borrowed(image.data())
        };
        let mut rows =
            FloatRows { grad: RowGradients::new(cols, channels, cell_c, self.orientations), data, image, bins };
        self.cell_histograms(height, width, &mut rows)
    }

    /// [`Hog::cell_histograms`] of an image of bytes, all in integers: `gc² + gr²` is exact,
    /// and for RGB the channel of the largest `gc² + gr²` is the one of the largest magnitude
    /// in float32 (distinct sums up to 2·255² have distinct float32 roots) or float64 (glibc's
    /// `hypot` is within an ulp, far below the gaps between roots); `table` holds the bin of
    /// every gradient and marks the few whose magnitude is not `sqrt(gc² + gr²)`.
    #[inline(always)]
    fn byte_cell_histograms(&self, table: &ByteTable, image: ImageView<'_, u8>) -> Vec<f64> {
        let cell_c = self.pixels_per_cell[1];
        let cols = image.width() / cell_c * cell_c;
        let channels = image.channels();
        let mut rows = ByteRows {
            image,
            table,
            orientations: self.orientations,
            cell_c,
            gc: vec![0; cols * channels],
            gr: vec![0; cols * channels],
            index: vec![0; cols],
            magnitude: vec![0.0; cols],
        };
        self.cell_histograms(image.height(), image.width(), &mut rows)
    }

    /// Normalises every block of `cells` (`cells_r × cells_c × orientations`) into `out`.
    #[inline(always)]
    fn normalise_blocks<T: Real, const FMA: bool>(
        &self,
        cells: &[f64],
        cells_c: usize,
        shape: [usize; 5],
        out: &mut [T],
    ) {
        let [_, blocks_c, block_r, block_c, n] = shape;
        let row_len = block_c * n;
        let len = block_r * row_len;
        let mut blocks = vec![0.0; out.len()];
        for (index, block) in blocks.chunks_exact_mut(len).enumerate() {
            let (r, c) = (index / blocks_c, index % blocks_c);
            for (i, block_row) in block.chunks_exact_mut(row_len).enumerate() {
                let start = ((r + i) * cells_c + c) * n;
                block_row.copy_from_slice(&cells[start..start + row_len]);
            }
        }
        self.block_norm.apply::<FMA>(&mut blocks, len);
        for (o, &v) in out.iter_mut().zip(&blocks) {
            *o = T::from_f64_lossy(v);
        }
    }
}

/// The pixels a descriptor is computed from.
enum Samples<'a, T> {
    /// In the output's float type.
    Floats(ImageView<'a, T>),
    /// Integers in 0..=255, with the bins of every integer gradient.
    Bytes(ImageView<'a, u8>, &'a ByteTable),
}

/// One image's descriptor, [`Hog::cell_histograms`] then [`Hog::normalise_blocks`].
struct HogKernel<'a, T> {
    hog: &'a Hog,
    bins: &'a OrientationBins,
    samples: Samples<'a, T>,
    shape: [usize; 5],
    out: &'a mut [T],
}

impl<T: Real> simd::FusedKernel for HogKernel<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let HogKernel { hog, bins, samples, shape, out } = self;
        let (cells, width) = match samples {
            Samples::Floats(image) => (hog.float_cell_histograms(bins, image), image.width()),
            Samples::Bytes(image, table) => (hog.byte_cell_histograms(table, image), image.width()),
        };
        hog.normalise_blocks::<T, FMA>(&cells, width / hog.pixels_per_cell[1], shape, out);
    }
}

/// The magnitudes of an image's rows added to their cells' orientation bins.
trait RowVotes {
    /// Adds row `r`'s magnitudes to the float32 totals of its row of cells as `cell_hog` does
    /// (`orientations + 1` totals per cell, the last for angles past the last bin, which count
    /// nowhere), each total seeing its pixels in column order. Implementations must be
    /// `#[inline(always)]` (see [`simd::Kernel`]).
    fn vote_row(&mut self, r: usize, totals: &mut [f32]);
}

/// The rows of a float image.
struct FloatRows<'a, T: Clone> {
    grad: RowGradients<T>,
    /// The image's samples, square-rooted if asked.
    data: Cow<'a, [T]>,
    image: ImageView<'a, T>,
    bins: &'a OrientationBins,
}

impl<T: Real> RowVotes for FloatRows<'_, T> {
    #[inline(always)]
    fn vote_row(&mut self, r: usize, totals: &mut [f32]) {
        let image = self.image;
        self.grad.compute(&self.data, image.height(), image.width(), image.channels(), r, self.bins);
        self.grad.vote(self.bins, totals);
    }
}

/// The rows of an image of bytes, with integer gradients.
struct ByteRows<'a> {
    image: ImageView<'a, u8>,
    /// [`OrientationBins::byte_table`].
    table: &'a ByteTable,
    orientations: usize,
    /// Cell width in pixels.
    cell_c: usize,
    /// Column and row gradients of every channel, interleaved like the image.
    gc: Vec<i32>,
    gr: Vec<i32>,
    /// Per pixel, the index of its (winning channel's) gradient in `table`.
    index: Vec<u32>,
    /// Per pixel, `sqrt(gc² + gr²)`: its magnitude unless `table` says otherwise.
    magnitude: Vec<f64>,
}

impl RowVotes for ByteRows<'_> {
    #[inline(always)]
    fn vote_row(&mut self, r: usize, totals: &mut [f32]) {
        let (height, width, channels) = (self.image.height(), self.image.width(), self.image.channels());
        let pixels = self.image.data();
        let stride = width * channels;
        let row = &pixels[r * stride..(r + 1) * stride];
        if r > 0 && r + 1 < height {
            let (up, down) = (&pixels[(r - 1) * stride..r * stride], &pixels[(r + 1) * stride..]);
            for ((g, &u), &d) in self.gr.iter_mut().zip(up).zip(down) {
                *g = i32::from(d) - i32::from(u);
            }
        } else {
            self.gr.fill(0);
        }
        self.gc.fill(0);
        // Columns 1..interior_end have both horizontal neighbours.
        let interior_end = self.index.len().min(width.saturating_sub(1)).max(1) * channels;
        let interior = &mut self.gc[channels.min(interior_end)..interior_end];
        for ((g, &right), &left) in interior.iter_mut().zip(row.get(2 * channels..).unwrap_or_default()).zip(row) {
            *g = i32::from(right) - i32::from(left);
        }
        let outputs = self.index.iter_mut().zip(self.magnitude.iter_mut());
        if channels == 1 {
            for ((index, magnitude), (&gc, &gr)) in outputs.zip(self.gc.iter().zip(&self.gr)) {
                (*index, *magnitude) = byte_gradient(gc, gr, gc * gc + gr * gr);
            }
        } else {
            for ((index, magnitude), (gc, gr)) in outputs.zip(self.gc.chunks_exact(3).zip(self.gr.chunks_exact(3))) {
                // g_magn.argmax(axis=2): the first largest, without branches so that rows vectorise.
                let (mut best_c, mut best_r) = (gc[0], gr[0]);
                let mut best = best_c * best_c + best_r * best_r;
                for ch in 1..3 {
                    let square = gc[ch] * gc[ch] + gr[ch] * gr[ch];
                    let better = square > best;
                    best = if better { square } else { best };
                    best_c = if better { gc[ch] } else { best_c };
                    best_r = if better { gr[ch] } else { best_r };
                }
                (*index, *magnitude) = byte_gradient(best_c, best_r, best);
            }
        }
        // A zero magnitude adds nothing to whichever total it is added to.
        let n = self.orientations;
        let cells = totals.chunks_exact_mut(n + 1).zip(self.index.chunks_exact(self.cell_c));
        for ((cell, indices), magnitudes) in cells.zip(self.magnitude.chunks_exact(self.cell_c)) {
            for (&index, &magnitude) in indices.iter().zip(magnitudes) {
                let entry = self.table[index as usize & (BYTE_TABLE_LEN - 1)];
                let magnitude = if entry & INEXACT_ROOT == 0 { magnitude } else { byte_hypot(index) };
                if let Some(total) = cell.get_mut(usize::from(entry & !INEXACT_ROOT)) {
                    add_vote(total, magnitude);
                }
            }
        }
    }
}

/// The index in [`ByteTable`] of an integer gradient and the square root of its `square`,
/// `gc² + gr²` (exact in f64): its magnitude, but for the gradients the table marks.
#[inline(always)]
fn byte_gradient(gc: i32, gr: i32, square: i32) -> (u32, f64) {
    let offset = MAX_BYTE_GRADIENT * (GRADIENT_SPAN as i32 + 1);
    ((gr * GRADIENT_SPAN as i32 + gc + offset) as u32, f64::from(square).sqrt())
}

/// The gradient at `index` in [`ByteTable`].
fn byte_gradient_at(index: u32) -> (i32, i32) {
    let (span, index) = (GRADIENT_SPAN as i32, index as i32);
    (index % span - MAX_BYTE_GRADIENT, index / span - MAX_BYTE_GRADIENT)
}

/// glibc's `hypot` of the integer gradient at `index` in [`ByteTable`], which is not always the
/// correctly rounded `sqrt(gc² + gr²)` (300 of the 511² gradients differ).
#[cold]
fn byte_hypot(index: u32) -> f64 {
    let (gc, gr) = byte_gradient_at(index);
    glibc_hypot_unscaled(f64::from(gc), f64::from(gr))
}

/// One image row's gradients (as f64, like `_hoghistogram`'s inputs) with their magnitudes and
/// orientation buckets, computed in bulk so that the loops vectorise.
struct RowGradients<T> {
    /// Column gradient `I[r, c+1] − I[r, c−1]`.
    gc: Vec<f64>,
    /// Row gradient `I[r+1, c] − I[r−1, c]`.
    gr: Vec<f64>,
    /// glibc `hypot`, or NaN where libm itself must be asked.
    magnitude: Vec<f64>,
    /// [`OrientationBins::bucket`].
    bucket: Vec<u32>,
    /// Where the totals of each column's cell start in a row of cells' totals.
    totals_start: Vec<usize>,
    /// RGB only: every channel's gradients and magnitudes in the image's type, interleaved
    /// like the image.
    rgb: Option<[Vec<T>; 3]>,
}

impl<T: Real> RowGradients<T> {
    /// Rows of `cols` columns in cells `cell_c` wide, for `n` orientations.
    fn new(cols: usize, channels: usize, cell_c: usize, n: usize) -> Self {
        let zeros = vec![0.0; cols];
        RowGradients {
            gc: zeros.clone(),
            gr: zeros.clone(),
            magnitude: zeros,
            bucket: vec![0; cols],
            totals_start: (0..cols).map(|c| c / cell_c * (n + 1)).collect(),
            rgb: (channels == 3).then(|| std::array::from_fn(|_| vec![T::zero(); 3 * cols])),
        }
    }

    /// Gradients of row `r` over the first `self.gc.len()` columns, in `T` like
    /// `_hog_channel_gradient`; borders are 0. RGB keeps the channel of largest magnitude.
    #[inline(always)]
    fn compute(&mut self, data: &[T], height: usize, width: usize, channels: usize, r: usize, bins: &OrientationBins) {
        let stride = width * channels;
        let row = &data[r * stride..(r + 1) * stride];
        let vertical =
            (r > 0 && r + 1 < height).then(|| (&data[(r - 1) * stride..r * stride], &data[(r + 1) * stride..]));
        // Columns 1..interior_end have both horizontal neighbours.
        let interior_end = self.gc.len().min(width.saturating_sub(1)).max(1);
        if channels == 1 {
            match vertical {
                Some((up, down)) => {
                    for ((g, &u), &d) in self.gr.iter_mut().zip(up).zip(down) {
                        *g = (d - u).to_f64_exact();
                    }
                }
                None => self.gr.fill(0.0),
            }
            self.gc.fill(0.0);
            for (c, g) in self.gc.iter_mut().enumerate().take(interior_end).skip(1) {
                *g = (row[c + 1] - row[c - 1]).to_f64_exact();
            }
        } else if let Some([gr, gc, magnitude]) = &mut self.rgb {
            match vertical {
                Some((up, down)) => {
                    for ((g, &u), &d) in gr.iter_mut().zip(up).zip(down) {
                        *g = d - u;
                    }
                }
                None => gr.fill(T::zero()),
            }
            gc.fill(T::zero());
            for (i, g) in gc.iter_mut().enumerate().take(3 * interior_end).skip(3) {
                *g = row[i + 3] - row[i - 3];
            }
            for ((m, &r), &c) in magnitude.iter_mut().zip(gr.iter()).zip(gc.iter()) {
                *m = numpy_hypot_unscaled(r, c);
            }
            for ((m, &r), &c) in magnitude.iter_mut().zip(gr.iter()).zip(gc.iter()) {
                if m.is_nan() {
                    *m = numpy_hypot(r, c);
                }
            }
            // g_magn.argmax(axis=2): the first maximum, or the first NaN.
            let pixels = magnitude.chunks_exact(3).zip(gr.chunks_exact(3)).zip(gc.chunks_exact(3));
            for ((gr_out, gc_out), ((m, r), c)) in self.gr.iter_mut().zip(self.gc.iter_mut()).zip(pixels) {
                // Values picked rather than an index kept, so that the loop has no branches
                // (the winning channel of a noisy image is unpredictable) and vectorises.
                let (mut best_m, mut best_r, mut best_c) = (m[0], r[0], c[0]);
                for ch in 1..3 {
                    let better = !best_m.is_nan() & (m[ch].is_nan() | (m[ch] > best_m));
                    best_m = if better { m[ch] } else { best_m };
                    best_r = if better { r[ch] } else { best_r };
                    best_c = if better { c[ch] } else { best_c };
                }
                *gr_out = best_r.to_f64_exact();
                *gc_out = best_c.to_f64_exact();
            }
        }
        self.derive(bins);
    }

    /// Magnitudes and orientation buckets of the gradients.
    #[inline(always)]
    fn derive(&mut self, bins: &OrientationBins) {
        for ((&gc, &gr), magnitude) in self.gc.iter().zip(&self.gr).zip(self.magnitude.iter_mut()) {
            *magnitude = glibc_hypot_unscaled(gc, gr);
        }
        for ((&gc, &gr), bucket) in self.gc.iter().zip(&self.gr).zip(self.bucket.iter_mut()) {
            *bucket = bins.bucket(gc, gr);
        }
    }

    /// Adds the magnitudes to their orientation bins in their cell's `totals` (`n + 1` per
    /// cell, the last for angles past the last bin, which count nowhere) as `cell_hog` does:
    /// a float32 running total that each f64 magnitude is added to in double precision. Each
    /// total sees its row's pixels in column order, so the whole row goes in one pass.
    #[inline(always)]
    fn vote(&self, bins: &OrientationBins, totals: &mut [f32]) {
        let n = bins.orientations;
        let pixels = self.magnitude.iter().zip(&self.bucket).zip(&self.totals_start).enumerate();
        for (c, ((&magnitude, &bucket), &start)) in pixels {
            // The common case: a positive glibc magnitude in a bucket clear of every bound.
            let k = bins.buckets.get(bucket as usize).copied().unwrap_or(UNSURE);
            if k != UNSURE && magnitude > 0.0 {
                if let Some(total) = totals.get_mut(start + usize::from(k)) {
                    add_vote(total, magnitude);
                }
            } else if magnitude != 0.0 {
                // A zero magnitude (both gradients 0) leaves every total unchanged.
                let (gc, gr) = (self.gc[c], self.gr[c]);
                let magnitude = if magnitude.is_nan() { gc.hypot(gr) } else { magnitude };
                let cell = &mut totals[start..start + n + 1];
                match bins.bin_exactly(gc, gr) {
                    k if k <= n => add_vote(&mut cell[k], magnitude),
                    _ => cell[..n].iter_mut().for_each(|total| add_vote(total, magnitude)),
                }
            }
        }
    }
}

/// `cell_hog`'s `total += magnitude` with a float32 total and a double magnitude.
#[inline(always)]
fn add_vote(total: &mut f32, magnitude: f64) {
    *total = (f64::from(*total) + magnitude) as f32;
}

/// `np.hypot` in the image's float type (glibc's `hypotf` or `hypot`).
fn numpy_hypot<T: Real>(a: T, b: T) -> T {
    let h = numpy_hypot_unscaled(a, b);
    if h.is_nan() {
        T::from_f64_lossy(a.to_f64_exact().hypot(b.to_f64_exact()))
    } else {
        h
    }
}

/// [`numpy_hypot`] without branches, NaN where libm must be asked (f64 only: glibc's
/// `hypotf` is squares and sum in double then one rounding to float, and infinite when
/// either side is, even NaN).
#[inline]
fn numpy_hypot_unscaled<T: Real>(a: T, b: T) -> T {
    let (a64, b64) = (a.to_f64_exact(), b.to_f64_exact());
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        let h = select(a.is_infinite() | b.is_infinite(), f64::INFINITY, (a64 * a64 + b64 * b64).sqrt());
        T::from_f64_lossy(f64::from(h as f32))
    } else {
        T::from_f64_lossy(glibc_hypot_unscaled(a64, b64))
    }
}

/// glibc ≥ 2.35's `hypot` (Borges' corrected algorithm, the non-FMA kernel that x86-64 builds
/// use) for the inputs it handles without rescaling; NaN for the others (non-finite, huge or
/// tiny), which must go to libm's `hypot` itself. Branch-free so that rows vectorise.
#[inline]
fn glibc_hypot_unscaled(x: f64, y: f64) -> f64 {
    const LARGE: f64 = 6.703903964971299e153; // 0x1p+511
    const TINY: f64 = 6.717876107567089e-139; // 0x1p-459
    let (x, y) = (x.abs(), y.abs());
    let swap = x < y;
    let (ax, ay) = (select(swap, y, x), select(swap, x, y));
    let h = (ax * ax + ay * ay).sqrt();
    let near = h <= 2.0 * ay;
    let delta = h - select(near, ay, ax);
    let t1 = select(near, ax * (2.0 * delta - ax), 2.0 * delta * (ax - 2.0 * ay));
    let t2 = select(near, (delta - 2.0 * (ax - ay)) * delta, (4.0 * delta - ay) * ay + delta * delta);
    let kernel = h - (t1 + t2) / (2.0 * h);
    // glibc returns ax + ay when ay ≤ ax·2^-54; the kernel then rounds to ax as well (h = ax,
    // the correction is below half an ulp), except for ay = 0 where it divides 0 by 0.
    let result = select(ay == 0.0, ax, kernel);
    select((ax <= LARGE) & ((ay >= TINY) | (ay == 0.0)), result, f64::NAN)
}

/// `if condition { a } else { b }` through bit masks, which LLVM keeps branch-free.
#[inline]
fn select(condition: bool, a: f64, b: f64) -> f64 {
    let mask = 0u64.wrapping_sub(u64::from(condition));
    f64::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

/// A monotone stand-in for the orientation `atan2(gr, gc) mod π`: `gr/(|gc|+gr)` on [0°, 90°],
/// `2 − gr/(|gc|+gr)` on (90°, 180°), after turning the vector into the upper half-plane.
/// Its slope is between ½ and 1 per radian, and it is computed to within 1e-15.
/// −1 when the vector is too close to 0°/180° (or not finite) for it to decide.
#[inline]
fn pseudo_angle(gc: f64, gr: f64) -> f64 {
    let (x, y) = if gr < 0.0 { (-gc, -gr) } else { (gc, gr) };
    let sum = x.abs() + y;
    let q = y / sum;
    let p = if x >= 0.0 { q } else { 2.0 - q };
    if y > 0.0 && sum < f64::INFINITY && (MARGIN..=2.0 - MARGIN).contains(&p) {
        p
    } else {
        -1.0
    }
}

/// The pseudo-angle of a direction given in degrees in [0, 180).
fn pseudo_angle_of_degrees(degrees: f64) -> f64 {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let q = sin / (cos.abs() + sin);
    if degrees <= 90.0 {
        q
    } else {
        2.0 - q
    }
}

/// numpy's `np.rad2deg(np.arctan2(gr, gc)) % 180`.
fn numpy_orientation(gc: f64, gr: f64) -> f64 {
    let degrees = gr.atan2(gc) * RAD2DEG;
    // npy_remainder: fmod, then moved into the divisor's sign.
    let m = degrees % 180.0;
    if m == 0.0 {
        0.0
    } else if m < 0.0 {
        m + 180.0
    } else {
        m
    }
}

/// The orientation bins of `_hoghistogram`: bin `k` is `[bound_k, bound_k+1)` in degrees with
/// bounds `(180.0/n) * k` in double, located through pseudo-angles. A bin index `n` means
/// "past the last bound" (no vote), `n + 1` "NaN orientation" (a vote in every bin).
#[derive(Debug, Clone)]
pub(crate) struct OrientationBins {
    orientations: usize,
    /// `bound_1 ..= bound_n` in degrees.
    bounds: Vec<f64>,
    /// Pseudo-angles of `bound_0 ..= bound_n`, then +∞ (also for bounds ≥ 180°).
    pseudo: Vec<f64>,
    /// Per pseudo-angle bucket `[j − ½, j + ½] / scale`, its bin if every angle whose float32
    /// estimate falls in it is at least [`MARGIN`] from any bound, else [`UNSURE`].
    buckets: Vec<u16>,
    /// Buckets per unit of pseudo-angle.
    scale: f32,
    /// The [`ByteTable`] of these bins, from [`BYTE_TABLES`] on first use.
    byte_table: OnceLock<Arc<[u16]>>,
}

/// The [`ByteTable`]s of the last few orientation counts used in this process: a table costs
/// about as much as ten 64×64 images' descriptors, which every batch (and every thread,
/// waiting on the one building it) would otherwise pay again.
static BYTE_TABLES: Mutex<Vec<(usize, Arc<[u16]>)>> = Mutex::new(Vec::new());
/// How many orientation counts [`BYTE_TABLES`] keeps (half a megabyte each).
const CACHED_TABLES: usize = 8;

/// A bucket that straddles or nears a bound.
const UNSURE: u16 = u16::MAX;
/// The bucket of gradients whose estimate is not trusted (past every bucket).
const NO_BUCKET: u32 = (1 << 23) - 1;
/// Largest error of the float32 pseudo-angle estimate (≈ 4e-7, see [`OrientationBins::bucket`]).
const ESTIMATE_SLACK: f64 = 1e-6;

impl OrientationBins {
    pub(crate) fn new(orientations: usize) -> Self {
        let width = 180.0 / orientations as f64;
        let bounds: Vec<f64> = (1..=orientations).map(|i| width * i as f64).collect();
        let mut pseudo = vec![0.0];
        pseudo.extend(bounds.iter().map(|&b| if b < 180.0 { pseudo_angle_of_degrees(b) } else { f64::INFINITY }));
        pseudo.push(f64::INFINITY);
        // A bin spans at least π/(2n) ≈ 1.57/n of pseudo-angle: with 16n buckets per unit
        // about one bucket in twenty-five is unsure.
        let per_unit = 16 * orientations.max(4);
        let scale = per_unit as f64;
        let mut k = 0;
        let buckets = (0..=2 * per_unit)
            .map(|j| {
                let (low, high) =
                    ((j as f64 - 0.5) / scale - ESTIMATE_SLACK, (j as f64 + 0.5) / scale + ESTIMATE_SLACK);
                while pseudo[k + 1] <= low {
                    k += 1;
                }
                let clear = pseudo[k] + MARGIN <= low && high <= pseudo[k + 1] - MARGIN && high <= 2.0 - MARGIN;
                if clear {
                    k as u16
                } else {
                    UNSURE
                }
            })
            .collect();
        OrientationBins { orientations, bounds, pseudo, buckets, scale: per_unit as f32, byte_table: OnceLock::new() }
    }

    /// The [`ByteTable`] of these bins (always `Some`).
    fn byte_table(&self) -> Option<&ByteTable> {
        let table = self.byte_table.get_or_init(|| {
            let mut tables = BYTE_TABLES.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, table)) = tables.iter().find(|(orientations, _)| *orientations == self.orientations) {
                return Arc::clone(table);
            }
            // Bins are at most MAX_ORIENTATIONS, below the flag (integers have no NaN bin); the
            // entries past the last gradient are never read.
            let n = self.orientations as u16;
            let mut entries: Vec<u16> = (0..(GRADIENT_SPAN * GRADIENT_SPAN) as u32)
                .map(|index| {
                    let (gc, gr) = byte_gradient_at(index);
                    let bin = u16::try_from(self.bin_of(f64::from(gc), f64::from(gr))).map_or(n, |bin| bin.min(n));
                    let root = f64::from(gc * gc + gr * gr).sqrt();
                    let inexact = glibc_hypot_unscaled(f64::from(gc), f64::from(gr)) != root;
                    bin | if inexact { INEXACT_ROOT } else { 0 }
                })
                .collect();
            entries.resize(BYTE_TABLE_LEN, n);
            let table: Arc<[u16]> = entries.into();
            if tables.len() == CACHED_TABLES {
                tables.remove(0);
            }
            tables.push((self.orientations, Arc::clone(&table)));
            table
        });
        table.as_ref().try_into().ok()
    }

    /// The bin `RowGradients::vote` adds a finite, non-zero gradient's magnitude to (`n` for
    /// none).
    #[inline]
    fn bin_of(&self, gc: f64, gr: f64) -> usize {
        match self.buckets.get(self.bucket(gc, gr) as usize) {
            Some(&k) if k != UNSURE => usize::from(k),
            _ => self.bin_exactly(gc, gr),
        }
    }

    /// The bucket of the gradient's pseudo-angle, `round(p · scale)`, estimated in float32 so
    /// that rows vectorise; [`NO_BUCKET`] when the estimate cannot be trusted. While both
    /// gradients are 0 or in [2^−100, 2^100], the float32 conversions, sum, quotient, `2 − q`
    /// and the scaling each add at most a few 2^−24 relative, under [`ESTIMATE_SLACK`] in all.
    #[inline]
    fn bucket(&self, gc: f64, gr: f64) -> u32 {
        const LOW: f64 = 7.888609052210118e-31; // 2^-100
        const HIGH: f64 = 1.2676506002282294e30; // 2^100

        // Adding 2^23 to a float in [0, 2^22) leaves its nearest integer in the mantissa bits:
        // a rounding conversion that vectorises, unlike `as`.
        const ROUNDER: f32 = 8388608.0;
        let in_range = |v: f64| (v == 0.0) | ((v.abs() >= LOW) & (v.abs() <= HIGH));
        let flip = gr < 0.0;
        let (x, y) = (select(flip, -gc, gc) as f32, select(flip, -gr, gr) as f32);
        let q = y / (x.abs() + y);
        let p = if x >= 0.0 { q } else { 2.0 - q };
        let bucket = (p * self.scale + ROUNDER).to_bits() & NO_BUCKET;
        let trusted = in_range(gc) & in_range(gr) & (y > 0.0);
        let mask = 0u32.wrapping_sub(u32::from(trusted));
        (bucket & mask) | (NO_BUCKET & !mask)
    }

    /// The bin of `(gc, gr)` from its f64 pseudo-angle when that is clear of every bound by
    /// [`MARGIN`], else from numpy's orientation formula.
    fn bin_exactly(&self, gc: f64, gr: f64) -> usize {
        // atan2(±0, x) is ±0 or ±π exactly and rad2deg(±π) is ±180: horizontal gradients are
        // at 0° (a common case worth sparing atan2).
        if gr == 0.0 && gc.is_finite() {
            return self.bin_of_degrees(0.0);
        }
        let p = pseudo_angle(gc, gr);
        if p >= 0.0 {
            let k = self.pseudo.partition_point(|&bound| bound <= p) - 1;
            if p - self.pseudo[k] >= MARGIN && self.pseudo[k + 1] - p >= MARGIN {
                return k;
            }
        }
        self.bin_of_degrees(numpy_orientation(gc, gr))
    }

    /// The bin of an orientation as numpy computes it, in [0, 180] or NaN.
    fn bin_of_degrees(&self, degrees: f64) -> usize {
        if degrees.is_nan() {
            self.orientations + 1
        } else {
            self.bounds.partition_point(|&b| b <= degrees)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view<T: Copy>(h: usize, w: usize, c: usize, data: &[T]) -> ImageView<'_, T> {
        ImageView::new(h, w, c, data).unwrap()
    }

    /// A xorshift64 generator from `state`.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn block_norm_names_round_trip() {
        for norm in BlockNorm::ALL {
            assert_eq!(norm.name().parse::<BlockNorm>().unwrap(), norm);
            assert_eq!(serde_json::to_string(&norm).unwrap(), format!("\"{norm}\""));
        }
        let err = "L3".parse::<BlockNorm>().unwrap_err().to_string();
        assert!(err.contains("L1-sqrt") && err.contains("L2-Hys"), "{err}");
    }

    #[test]
    fn numpy_sum_is_pairwise() {
        // repr(np.sum(1 / np.arange(1, n + 1))) with numpy 2.4; a left-to-right sum differs.
        let harmonic = |n: usize| numpy_sum(&(1..=n).map(|i| 1.0 / i as f64).collect::<Vec<_>>(), |v| v);
        assert_eq!(harmonic(5), 2.283333333333333);
        assert_eq!(harmonic(24), 3.775958177753507);
        assert_eq!(harmonic(27), 3.8914567532520827);
        assert_eq!(harmonic(200), 5.878030948121444);
        assert_eq!(harmonic(1000), 7.485470860550345);
    }

    #[test]
    fn divisions_through_the_reciprocal_are_exact() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut values = Vec::new();
        let mut divisors = Vec::new();
        for _ in 0..3000 {
            // Block values: float32 sums (finite, as a finite norm implies) and the quotients
            // of L2-Hys' second pass, and norms from 1e-5 up, with mantissas anywhere and at
            // their extremes.
            let mantissa = match next() % 4 {
                0 => 0x000f_ffff_ffff_ffff,
                1 => 0,
                _ => next() & 0x000f_ffff_ffff_ffff,
            };
            divisors.push(f64::from_bits(mantissa | (1006 + next() % 160) << 52));
            let value = f64::from_bits(next() & 0x000f_ffff_ffff_ffff | (900 + next() % 250) << 52);
            values.push(if next().is_multiple_of(2) { f64::from(value as f32) } else { value });
        }
        values.extend([0.0, 0.2, 1.0, 3.0, f32::MAX.into(), f32::MIN_POSITIVE.into(), 1.401298464324817e-45]);
        for &divisor in divisors.iter().chain(&[1e-5, 3.0, 0.2, 1.0 - f64::EPSILON / 2.0, 7.0]) {
            let mut fused = values.clone();
            divide::<true>(&mut fused, divisor);
            for (&q, &v) in fused.iter().zip(&values) {
                assert_eq!(q, v / divisor, "{v:e} / {divisor:e}");
            }
        }
        let mut special = vec![f64::INFINITY, 1.0, f64::NAN];
        divide::<true>(&mut special, f64::INFINITY);
        assert!(special[0].is_nan() && special[1] == 0.0 && special[2].is_nan());
    }

    #[test]
    fn glibc_hypot_kernel_equals_libm() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..200_000 {
            let a = f64::from_bits(next() % (0x7fe0 << 48));
            let b = a * (next() % 4096) as f64 / 777.0;
            let fast = glibc_hypot_unscaled(a, b);
            assert!(fast.is_nan() || fast == a.hypot(b), "{a:e} {b:e}");
        }
        for x in -510..=510 {
            for y in -510..=510 {
                assert_eq!(glibc_hypot_unscaled(x as f64, y as f64), (x as f64).hypot(y as f64));
            }
        }
    }

    #[test]
    fn integer_gradients_have_distinct_float32_magnitudes_in_the_order_of_their_squares() {
        // hypotf is the double square root of x² + y² rounded to float: distinct squares must
        // keep distinct roots, so that the RGB channel of the largest square is the one of the
        // largest float32 magnitude.
        let roots: Vec<f32> = (0..=2 * MAX_BYTE_GRADIENT.pow(2)).map(|n| f64::from(n).sqrt() as f32).collect();
        assert!(roots.windows(2).all(|w| w[0] < w[1]));
        for x in [-255, -254, -3, 0, 7, 255] {
            for y in -MAX_BYTE_GRADIENT..=MAX_BYTE_GRADIENT {
                let (x32, y32) = (x as f32, y as f32);
                assert_eq!(numpy_hypot_unscaled(x32, y32), roots[(x * x + y * y) as usize]);
            }
        }
    }

    #[test]
    fn byte_table_holds_every_integer_gradient_bin_and_glibc_magnitude() {
        for n in [4, 9, 300] {
            let bins = OrientationBins::new(n);
            let table = bins.byte_table().unwrap();
            let mut inexact = 0;
            for gr in -MAX_BYTE_GRADIENT..=MAX_BYTE_GRADIENT {
                for gc in -MAX_BYTE_GRADIENT..=MAX_BYTE_GRADIENT {
                    let (index, root) = byte_gradient(gc, gr, gc * gc + gr * gr);
                    assert_eq!(byte_gradient_at(index), (gc, gr));
                    let entry = table[index as usize];
                    let (x, y) = (f64::from(gc), f64::from(gr));
                    let magnitude = if entry & INEXACT_ROOT == 0 { root } else { byte_hypot(index) };
                    assert_eq!(magnitude, x.hypot(y), "gc={gc} gr={gr}");
                    assert_eq!(usize::from(entry & !INEXACT_ROOT), bins.bin_of(x, y).min(n), "gc={gc} gr={gr}");
                    inexact += usize::from(entry & INEXACT_ROOT != 0);
                }
            }
            // glibc's hypot is not the correctly rounded root of a few hundred of them.
            assert!((1..2000).contains(&inexact), "{inexact}");
        }
    }

    #[test]
    fn byte_path_equals_float_path() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for (h, w, channels, orientations) in
            [(64, 64, 1, 9), (37, 53, 3, 9), (40, 33, 1, 4), (24, 30, 3, 8), (16, 19, 1, 81), (16, 16, 3, 300)]
        {
            let bytes: Vec<u8> = (0..h * w * channels).map(|_| (next() >> 56) as u8).collect();
            let floats: Vec<f64> = bytes.iter().map(|&b| f64::from(b)).collect();
            let hog = Hog { orientations, pixels_per_cell: [4, 4], ..Hog::default() };
            let bins = OrientationBins::new(orientations);
            let from_bytes = hog.byte_cell_histograms(bins.byte_table().unwrap(), view(h, w, channels, &bytes));
            let from_floats = hog.float_cell_histograms(&bins, view(h, w, channels, &floats));
            assert_eq!(from_bytes, from_floats, "{h}×{w}×{channels}, {orientations} orientations");
            assert_eq!(
                hog.compute(view(h, w, channels, &bytes)).unwrap(),
                hog.compute(view(h, w, channels, &floats)).unwrap()
            );
        }
    }

    /// The bins `RowGradients::vote` adds a single gradient to.
    fn voted_bins(bins: &OrientationBins, gc: f64, gr: f64) -> Vec<usize> {
        let mut row = RowGradients::<f64>::new(1, 1, 1, bins.orientations);
        (row.gc[0], row.gr[0]) = (gc, gr);
        row.derive(bins);
        row.magnitude[0] = 1.0; // so that zero gradients vote too
        let mut totals = vec![0.0f32; bins.orientations + 1];
        row.vote(bins, &mut totals);
        (0..bins.orientations).filter(|&k| totals[k] != 0.0).collect()
    }

    /// The bins a pixel of bin `k` (as [`OrientationBins::bin_of_degrees`] numbers them) votes in.
    fn bins_of(bins: &OrientationBins, k: usize) -> Vec<usize> {
        match k {
            k if k < bins.orientations => vec![k],
            k if k == bins.orientations => vec![],
            _ => (0..bins.orientations).collect(),
        }
    }

    #[test]
    fn pseudo_angle_bins_equal_numpy_formula_bins() {
        for n in [1, 2, 3, 4, 6, 7, 8, 9, 12, 16, 18, 36, 100] {
            let bins = OrientationBins::new(n);
            for gr in -40i32..=40 {
                for gc in -40i32..=40 {
                    let (gc, gr) = (gc as f64 * 0.75, gr as f64 * 0.75);
                    let exact = bins.bin_of_degrees(numpy_orientation(gc, gr));
                    assert_eq!(voted_bins(&bins, gc, gr), bins_of(&bins, exact), "n={n} gc={gc} gr={gr}");
                    assert_eq!(bins.bin_exactly(gc, gr), exact, "n={n} gc={gc} gr={gr}");
                }
            }
        }
    }

    #[test]
    fn special_orientations() {
        // numpy: 0° for horizontal gradients either way, 90°, 45°, 135°; NaN votes everywhere.
        for gc in [-3.0, -1e-300, 1e-300, 7.5, f64::MAX] {
            assert_eq!(numpy_orientation(gc, 0.0), 0.0);
            assert_eq!(numpy_orientation(gc, -0.0), 0.0);
        }
        assert_eq!(numpy_orientation(3.0, -0.0), 0.0);
        assert_eq!(numpy_orientation(0.0, -2.0), 90.0);
        assert_eq!(numpy_orientation(5.0, 5.0), 45.0);
        assert_eq!(numpy_orientation(-5.0, 5.0), 135.0);
        let bins = OrientationBins::new(4);
        assert_eq!(voted_bins(&bins, 5.0, 5.0), [1]);
        assert_eq!(voted_bins(&bins, f64::NAN, 1.0), [0, 1, 2, 3]);
        // The last bound is 180 for 9 bins, just below for 39, just above for 169.
        assert_eq!(OrientationBins::new(9).bin_of_degrees(180.0), 9);
        assert_eq!(OrientationBins::new(39).bin_of_degrees(179.99999999999997), 39);
        assert_eq!(OrientationBins::new(169).bin_of_degrees(180.0), 168);
        // Bounds are doubles: 173.33334010909863° is past 180/81·78 = 173.33333333333334 (its
        // float32 rounding, 173.33334350585938, is not).
        assert_eq!(voted_bins(&OrientationBins::new(81), -154.0, 18.0), [78]);
    }

    #[test]
    fn too_small_images_are_errors() {
        let hog = Hog::default();
        let data = vec![0f32; 23 * 40];
        let err = hog.compute(view(23, 40, 1, &data)).unwrap_err().to_string();
        assert!(err.contains("at least 24 rows and 24 columns"), "{err}");
        assert!(hog.compute(view(0, 0, 1, &[] as &[f32])).is_err());
        let one = Hog { pixels_per_cell: [1, 1], cells_per_block: [1, 1], ..Hog::default() };
        assert_eq!(one.compute(view(1, 1, 1, &[7.0f64])).unwrap(), vec![0.0; 9]);
    }

    #[test]
    fn wrong_buffer_and_parameters_are_errors() {
        let data = vec![1f32; 16 * 16];
        let hog = Hog { cells_per_block: [2, 2], ..Hog::default() };
        assert!(hog.compute_into(view(16, 16, 1, &data), &mut [0.0; 3]).is_err());
        for bad in [
            Hog { orientations: 0, ..Hog::default() },
            Hog { orientations: usize::MAX, ..Hog::default() },
            Hog { pixels_per_cell: [0, 8], ..Hog::default() },
            Hog { cells_per_block: [usize::MAX, 1], ..Hog::default() },
        ] {
            assert!(bad.validate().is_err());
            assert!(bad.compute(view(16, 16, 1, &data)).is_err());
        }
    }

    #[test]
    fn vertical_edge_votes_into_bin_zero() {
        // A step along columns: gradient along columns only, orientation 0°.
        let (h, w) = (16, 16);
        let data: Vec<f64> = (0..h * w).map(|i| if i % w < 8 { 0.0 } else { 100.0 }).collect();
        let hog = Hog { cells_per_block: [1, 1], pixels_per_cell: [16, 16], ..Hog::default() };
        let out = hog.compute(view(h, w, 1, &data)).unwrap();
        assert!(out[0] > 0.0 && out[1..].iter().all(|&v| v == 0.0), "{out:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_input_gives_finite_features_or_an_error(
            h in 0usize..40, w in 0usize..40, rgb in any::<bool>(),
            orientations in 0usize..20, cell in (0usize..12, 0usize..12), block in (0usize..5, 0usize..5),
            norm in 0usize..4, sqrt in any::<bool>(), seed in any::<u64>(),
        ) {
            let channels = if rgb { 3 } else { 1 };
            let data: Vec<f32> = (0..h * w * channels)
                .map(|i| ((seed.wrapping_mul(i as u64 + 1) >> 40) % 256) as f32)
                .collect();
            let hog = Hog {
                orientations,
                pixels_per_cell: [cell.0, cell.1],
                cells_per_block: [block.0, block.1],
                block_norm: BlockNorm::ALL[norm],
                transform_sqrt: sqrt,
            };
            match hog.compute(view(h, w, channels, &data)) {
                Ok(out) => {
                    prop_assert_eq!(out.len(), hog.len(h, w).unwrap());
                    prop_assert!(out.iter().all(|v| v.is_finite() && *v >= 0.0));
                }
                Err(_) => prop_assert!(hog.len(h, w).is_err()),
            }
        }
    }
}
