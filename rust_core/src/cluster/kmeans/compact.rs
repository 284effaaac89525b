//! An 8-bit copy of the data for k-means++: one byte per value, a quarter of the bytes of an f32
//! row, so that the rows no candidate can bring closer are found by reading the copy instead of X.
//!
//! Column `q` of a row is stored as the code `round((x_q − lo_q) / step_q)` (0..=255) and read
//! back as `x̂_q = lo_q + code · step_q`. Per row the copy keeps `‖x̂‖²` (for the kernel) and an
//! upper bound of `‖x − x̂‖`: the triangle inequality then bounds the distance of `x` to any
//! point from the distance of `x̂`, whatever the rounding of the codes.

use rayon::prelude::*;

use super::kernel::Kernel;
use super::lloyd::DataView;
use crate::Real;

/// Rows per block when the copy is made.
const BLOCK_ROWS: usize = 256;

/// The 8-bit copy of the rows of a [`DataView`] (as it reads them, shifted if it is).
pub(super) struct Compact<T> {
    d: usize,
    codes: Vec<u8>,
    lo: Vec<T>,
    step: Vec<T>,
    /// Per row: `‖x̂‖²` as the kernel computes it.
    pub(super) norms: Vec<T>,
    /// Per row: an upper bound of `‖x − x̂‖`.
    pub(super) err: Vec<f64>,
}

impl<T: Real> Compact<T> {
    /// Makes the copy: one read of the data for the range of each column, one for the codes.
    pub(super) fn new(kernel: Kernel, data: &DataView<'_, T>) -> Self {
        let (n, d) = (data.n(), data.d);
        let blocks = n.div_ceil(BLOCK_ROWS);
        let range = |(lo, hi): (Vec<T>, Vec<T>), (lo2, hi2): (Vec<T>, Vec<T>)| {
            let lo = lo.iter().zip(&lo2).map(|(&a, &b)| a.min(b)).collect();
            let hi = hi.iter().zip(&hi2).map(|(&a, &b)| a.max(b)).collect();
            (lo, hi)
        };
        let empty = || (vec![T::infinity(); d], vec![T::neg_infinity(); d]);
        let (lo, hi) = (0..blocks)
            .into_par_iter()
            .map_init(
                || vec![T::zero(); BLOCK_ROWS * d],
                |buf, b| {
                    let len = BLOCK_ROWS.min(n - b * BLOCK_ROWS);
                    let rows = data.block(kernel, b * BLOCK_ROWS, len, buf);
                    rows.chunks_exact(d).fold(empty(), |(mut lo, mut hi), row| {
                        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                            *l = l.min(v);
                            *h = h.max(v);
                        }
                        (lo, hi)
                    })
                },
            )
            .reduce(empty, range);
        // A constant column (or no rows) keeps step 1: every code is 0 and reads back exactly.
        let step: Vec<T> = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| {
                let s = (h.to_f64_exact() - l.to_f64_exact()) / 255.0;
                if s > 0.0 && s.is_finite() {
                    T::from_f64_lossy(s)
                } else {
                    T::one()
                }
            })
            .collect();
        let lo: Vec<T> = lo.into_iter().map(|l| if l.is_finite() { l } else { T::zero() }).collect();
        let mut codes = vec![0u8; n * d];
        let mut norms = vec![T::zero(); n];
        let mut err = vec![0.0; n];
        codes
            .par_chunks_mut(BLOCK_ROWS * d)
            .zip(norms.par_chunks_mut(BLOCK_ROWS))
            .zip(err.par_chunks_mut(BLOCK_ROWS))
            .enumerate()
            .for_each_init(
                || (vec![T::zero(); BLOCK_ROWS * d], vec![T::zero(); d], vec![T::zero(); d]),
                |(buf, back, zeros), (b, ((codes, norms), err))| {
                    let rows = data.block(kernel, b * BLOCK_ROWS, norms.len(), buf);
                    for (((row, codes), norm), err) in
                        rows.chunks_exact(d).zip(codes.chunks_exact_mut(d)).zip(norms.iter_mut()).zip(err.iter_mut())
                    {
                        for (((c, &v), &l), &s) in codes.iter_mut().zip(row).zip(&lo).zip(&step) {
                            let code = ((v.to_f64_exact() - l.to_f64_exact()) / s.to_f64_exact()).round();
                            *c = code.clamp(0.0, 255.0) as u8;
                        }
                        decode_row(codes, &lo, &step, back);
                        *norm = kernel.sq_dist(back, zeros);
                        let sq: f64 = row
                            .iter()
                            .zip(back.iter())
                            .map(|(&a, &b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2))
                            .sum();
                        // The sum in f64 of exact differences of T values: a relative margin
                        // far above its rounding.
                        *err = sq.sqrt() * (1.0 + 1e-9);
                    }
                },
            );
        Compact { d, codes, lo, step, norms, err }
    }

    /// Rows `start + rows[r]` as read back (`x̂`), into `out` (`rows.len() · d` values).
    pub(super) fn decode(&self, start: usize, rows: &[u32], out: &mut [T]) {
        let d = self.d;
        for (&r, out) in rows.iter().zip(out.chunks_exact_mut(d)) {
            let at = (start + r as usize) * d;
            decode_row(&self.codes[at..at + d], &self.lo, &self.step, out);
        }
    }
}

/// `lo + code · step` per column: the one place a row is read back, so that the bound of
/// `‖x − x̂‖` holds for the values the kernel sees.
#[inline]
fn decode_row<T: Real>(codes: &[u8], lo: &[T], step: &[T], out: &mut [T]) {
    for (((o, &c), &l), &s) in out.iter_mut().zip(codes).zip(lo).zip(step) {
        *o = l + T::from_u8(c).unwrap_or_else(T::zero) * s;
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;
    use crate::cluster::kmeans::lloyd::Data;

    /// The stored bound holds for every row read back, on stored and shifted data with a
    /// constant column, and the stored norms are those of the rows read back.
    #[test]
    fn compact_rows_stay_within_their_bound() {
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let (n, d) = (1000, 7);
        let x = Array2::from_shape_fn((n, d), |(_, q)| if q == 2 { 4.0f32 } else { rng.random_range(-30.0..30.0) });
        let shift: Vec<f32> = (0..d).map(|q| q as f32 - 3.5).collect();
        for kernel in Kernel::available() {
            let stored = Data::new(x.view(), None);
            for data in [DataView::from(&stored), DataView::shifted(Data::new(x.view(), None), &shift)] {
                let compact = Compact::new(kernel, &data);
                let rows: Vec<u32> = (0..n as u32).collect();
                let mut back = vec![0.0f32; n * d];
                compact.decode(0, &rows, &mut back);
                let mut worst = 0.0f64;
                for (i, row) in back.chunks_exact(d).enumerate() {
                    let sq: f64 = (0..d).map(|q| (f64::from(data.value(i, q)) - f64::from(row[q])).powi(2)).sum();
                    assert!(sq.sqrt() <= compact.err[i], "{} row {i}", kernel.name());
                    worst = worst.max(compact.err[i]);
                    let norm: f64 = row.iter().map(|&v| f64::from(v).powi(2)).sum();
                    assert!((f64::from(compact.norms[i]) - norm).abs() <= 1e-5 * norm.max(1.0));
                    assert_eq!(row[2], data.value(i, 2), "a constant column reads back exactly");
                }
                // Half a step of 60 / 255 per varying column at most.
                assert!(worst > 0.0 && worst <= 0.5 * 60.0 / 255.0 * (d as f64).sqrt() * 1.01, "{worst}");
            }
        }
    }
}
