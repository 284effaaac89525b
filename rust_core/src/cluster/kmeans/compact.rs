//! An 8-bit copy of the data for k-means++: one byte per value, a quarter of the bytes of an f32
//! row, so that the rows no candidate can bring closer are found by reading the copy instead of X.
//!
//! Column `q` of a row is stored as a code `a_q` (0..=255, `a_q ≈ (x_q − lo_q) / step_q`) and
//! stands for `x̂_q = lo_q + a_q · step_q`. Per row the copy keeps `‖x̂‖²`, an upper bound `e`
//! of `‖x − x̂‖` and `‖a − 128‖`. A candidate `t` is reduced to signed 8-bit weights
//! `m_q = round(step_q t_q / σ)`; with `δ_q = step_q t_q − σ m_q`,
//! `x̂·t = Σ lo_q t_q + 128 Σ δ_q + σ Σ a_q m_q + Σ (a_q − 128) δ_q`, the last term at most
//! `‖a − 128‖ ‖δ‖`: so an exact integer dot product of the codes with the weights bounds
//! `‖x̂ − t‖²` from below, and the triangle inequality (`‖x − t‖ ≥ ‖x̂ − t‖ − e`) bounds the
//! distance of the row itself, whatever the rounding of the codes.
//!
//! Rows are stored in blocks of [`SCREEN_ROWS`], each block group by group (4 columns) and row by
//! row within a group, which is the layout [`Kernel::screen`] reads with one load per group.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::kernel::{Kernel, Probe, SCREEN_ROWS};
use super::lloyd::DataView;
use crate::Real;

/// Rows per block when the copy is made (a multiple of [`SCREEN_ROWS`]).
const BLOCK_ROWS: usize = 256;
/// Rows sampled for the range of the codes.
const RANGE_ROWS: usize = 8192;
/// The relative margin of the screen's `f32` arithmetic: far above its rounding (a few ε of
/// the magnitudes it adds), far below the gaps it tests.
pub(super) const MARGIN: f32 = 1e-5;

/// The 8-bit copy of the rows of a [`DataView`] (as it reads them, shifted if it is).
pub(super) struct Compact {
    groups: usize,
    codes: Vec<u8>,
    lo: Vec<f64>,
    step: Vec<f64>,
    /// The largest `‖a − 128‖` a row can have.
    spread_max: f64,
    /// Per row, padded to whole blocks: `‖x̂‖²`.
    pub(super) norms: Vec<f32>,
    /// Per row: an upper bound of `‖x − x̂‖`.
    pub(super) err: Vec<f32>,
    /// Per row: an upper bound of `‖a − 128‖`.
    pub(super) spread: Vec<f32>,
}

impl Compact {
    /// Makes the copy: one read of the data, which also gives the squared norms of the rows as
    /// [`row_norms`](super::init::row_norms) computes them (returned with the copy).
    pub(super) fn new<T: Real>(kernel: Kernel, data: &DataView<'_, T>) -> (Self, Vec<T>) {
        let (n, d) = (data.n(), data.d);
        let groups = d.div_ceil(4);
        let padded = n.div_ceil(SCREEN_ROWS) * SCREEN_ROWS;
        // The range of each column over a sample of rows, not a read of all of X: a row outside
        // it saturates its codes, which only widens its own bound `e`.
        let (mut lo, mut hi) = (vec![f64::INFINITY; d], vec![f64::NEG_INFINITY; d]);
        for i in (0..n).step_by(n.div_ceil(RANGE_ROWS).max(1)) {
            for (q, (l, h)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                let v = data.value(i, q).to_f64_exact();
                *l = l.min(v);
                *h = h.max(v);
            }
        }
        // A constant column (or no rows) keeps step 1: every code is 0 and stands for lo exactly.
        // `lo` and `step` are f32 values, so that the copy is made in f32 arithmetic.
        let step: Vec<f32> = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| ((h - l) / 255.0) as f32)
            .map(|s| if s > 0.0 && s.is_finite() { s } else { 1.0 })
            .collect();
        let lo: Vec<f32> = lo.into_iter().map(|l| if l.is_finite() { l as f32 } else { 0.0 }).collect();
        let inv: Vec<f32> = step.iter().map(|s| 1.0 / s).collect();
        // Each `x̂_q` is computed in f32 within `2ε (|lo_q| + 255 step_q)` of its value: the
        // bounds below allow for that, and for the rounding of the f32 sums.
        let eps = f64::from(f32::EPSILON);
        let slip =
            lo.iter().zip(&step).map(|(&l, &s)| (2.0 * eps * (f64::from(l.abs()) + 255.0 * f64::from(s))).powi(2));
        let slip = slip.sum::<f64>().sqrt() * (1.0 + 1e-6);
        let sums = 1.0 + 4.0 * d as f64 * eps;
        // Padding (columns past d, rows past n) holds the code 128: no weight, no spread.
        let mut codes = vec![128u8; padded * groups * 4];
        let (mut norms, mut err, mut spread) = (vec![0.0; padded], vec![0.0; padded], vec![0.0; padded]);
        let mut row_norms = vec![T::zero(); n];
        codes
            .par_chunks_mut(BLOCK_ROWS * groups * 4)
            .zip(norms.par_chunks_mut(BLOCK_ROWS))
            .zip(err.par_chunks_mut(BLOCK_ROWS))
            .zip(spread.par_chunks_mut(BLOCK_ROWS))
            .zip(row_norms.par_chunks_mut(BLOCK_ROWS))
            .enumerate()
            .for_each_init(
                || (vec![T::zero(); BLOCK_ROWS * d], vec![128u8; groups * 4], vec![T::zero(); d]),
                |(buf, row_codes, zeros), (b, ((((codes, norms), err), spread), row_norms))| {
                    let len = BLOCK_ROWS.min(n - b * BLOCK_ROWS);
                    let rows = data.block(kernel, b * BLOCK_ROWS, len, buf);
                    for (i, row) in rows.chunks_exact(d).enumerate() {
                        let sum = encode_row(row, &lo, &step, &inv, &mut row_codes[..d]);
                        let block = &mut codes[i / SCREEN_ROWS * SCREEN_ROWS * groups * 4..];
                        for (g, group) in row_codes.chunks_exact(4).enumerate() {
                            block[(g * SCREEN_ROWS + i % SCREEN_ROWS) * 4..][..4].copy_from_slice(group);
                        }
                        let [sq_err, norm, sq_row, sq_spread] = sum.map(f64::from);
                        // ‖x − x̂‖ ≤ ‖x₃₂ − x̂₃₂‖ + ‖x̂₃₂ − x̂‖ + ‖x − x₃₂‖ (x₃₂: x as f32), rounded up.
                        let e = (sq_err * sums).sqrt() * (1.0 + 2.0 * eps) + slip + eps * (sq_row * sums).sqrt();
                        err[i] = (e * (1.0 + 1e-6)) as f32;
                        // ‖x̂‖ ≥ ‖x̂₃₂‖ − ‖x̂₃₂ − x̂‖, rounded down.
                        let low = ((norm / sums).sqrt() - slip).max(0.0);
                        norms[i] = (low * low * (1.0 - 1e-6)) as f32;
                        spread[i] = ((sq_spread * sums).sqrt() * (1.0 + 1e-6)) as f32;
                        row_norms[i] = kernel.sq_dist(row, zeros);
                    }
                },
            );
        let (lo, step) = (lo.into_iter().map(f64::from).collect(), step.into_iter().map(f64::from).collect());
        let spread_max = 128.0 * ((groups * 4) as f64).sqrt();
        (Compact { groups, codes, lo, step, spread_max, norms, err, spread }, row_norms)
    }

    /// The codes of the `blocks` blocks from row `start` (a multiple of [`SCREEN_ROWS`]).
    pub(super) fn codes(&self, start: usize, blocks: usize) -> &[u8] {
        let len = SCREEN_ROWS * self.groups * 4;
        &self.codes[start / SCREEN_ROWS * len..][..blocks * len]
    }

    /// The candidates (rows as the data reads them) for [`Kernel::screen`]: for a row whose
    /// bias is `‖x̂‖² − τ` (less a margin), a candidate excludes it only if
    /// `‖x̂ − t‖² ≥ τ` (see the module's documentation for the bound).
    pub(super) fn probe<T: Real>(&self, candidates: ArrayView2<'_, T>) -> Probe {
        let (count, groups) = (candidates.nrows(), self.groups);
        let mut probe = Probe {
            count,
            groups,
            weights: vec![0; groups * count],
            offset: Vec::with_capacity(count),
            scale: Vec::with_capacity(count),
            slack: Vec::with_capacity(count),
        };
        for (t, c) in candidates.outer_iter().enumerate() {
            let c: Vec<f64> = c.iter().map(|v| v.to_f64_exact()).collect();
            let u: Vec<f64> = c.iter().zip(&self.step).map(|(c, s)| c * s).collect();
            let largest = u.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let sigma = if largest > 0.0 { largest / 127.0 } else { 1.0 };
            let mut m = vec![0i8; groups * 4];
            for (m, u) in m.iter_mut().zip(&u) {
                *m = (u / sigma).round().clamp(-127.0, 127.0) as i8;
            }
            let delta: Vec<f64> = u.iter().zip(&m).map(|(u, &m)| u - sigma * f64::from(m)).collect();
            let delta_norm = delta.iter().map(|v| v * v).sum::<f64>().sqrt() * (1.0 + 1e-9);
            let norm: f64 = c.iter().map(|v| v * v).sum();
            let constant = c.iter().zip(&self.lo).map(|(c, l)| c * l).sum::<f64>() + 128.0 * delta.iter().sum::<f64>();
            let dot_max = 255.0 * m.iter().map(|&m| f64::from(m).abs()).sum::<f64>();
            // Every term the screen adds is at most this in magnitude: its rounding in f32 is a
            // few ε of it.
            let magnitude = norm + 2.0 * constant.abs() + 2.0 * sigma * dot_max + 2.0 * delta_norm * self.spread_max;
            probe.offset.push((norm - 2.0 * constant - f64::from(MARGIN) * magnitude) as f32);
            probe.scale.push((-2.0 * sigma) as f32);
            probe.slack.push((-2.0 * delta_norm) as f32);
            for (g, m) in m.chunks_exact(4).enumerate() {
                probe.weights[g * count + t] = i32::from_le_bytes([m[0] as u8, m[1] as u8, m[2] as u8, m[3] as u8]);
            }
        }
        probe
    }

    /// Row `i` as the copy stands for it (`x̂`).
    #[cfg(test)]
    fn read_back(&self, i: usize, d: usize) -> Vec<f64> {
        let block = self.codes(i / SCREEN_ROWS * SCREEN_ROWS, 1);
        (0..d)
            .map(|q| self.lo[q] + f64::from(block[(q / 4 * SCREEN_ROWS + i % SCREEN_ROWS) * 4 + q % 4]) * self.step[q])
            .collect()
    }
}

/// The codes `a` of a row `x` and, in f32 (16 sums at a time, so that they vectorise),
/// `‖x − x̂‖²`, `‖x̂‖²`, `‖x‖²` and `‖a − 128‖²`, `x` and `x̂` as computed in f32.
fn encode_row<T: Real>(row: &[T], lo: &[f32], step: &[f32], inv: &[f32], codes: &mut [u8]) -> [f32; 4] {
    const LANES: usize = 16;
    // Adding 1.5 · 2²³ rounds a value in [0, 2²²) to an integer, held in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let mut acc = [[0.0f32; LANES]; 4];
    let mut add = |j: usize, v: T, lo: f32, step: f32, inv: f32, code: &mut u8| {
        let v = v.to_f64_exact() as f32;
        let rounded = ((v - lo) * inv).clamp(0.0, 255.0) + ROUND;
        *code = rounded.to_bits() as u8;
        let a = rounded - ROUND;
        let back = lo + a * step;
        acc[0][j] += (v - back) * (v - back);
        acc[1][j] += back * back;
        acc[2][j] += v * v;
        acc[3][j] += (a - 128.0) * (a - 128.0);
    };
    let full = row.len() / LANES * LANES;
    for q in (0..full).step_by(LANES) {
        let at = q..q + LANES;
        let (row, lo, step, inv) = (&row[at.clone()], &lo[at.clone()], &step[at.clone()], &inv[at.clone()]);
        for (j, code) in codes[at].iter_mut().enumerate() {
            add(j, row[j], lo[j], step[j], inv[j], code);
        }
    }
    for q in full..row.len() {
        add(0, row[q], lo[q], step[q], inv[q], &mut codes[q]);
    }
    acc.map(|lanes| lanes.iter().sum())
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;
    use crate::cluster::kmeans::init;
    use crate::cluster::kmeans::lloyd::Data;

    /// The stored bounds hold for every row, on stored and shifted data with a constant column.
    #[test]
    fn compact_rows_stay_within_their_bound() {
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let (n, d) = (1000, 7);
        let x = Array2::from_shape_fn((n, d), |(_, q)| if q == 2 { 4.0f32 } else { rng.random_range(-30.0..30.0) });
        let shift: Vec<f32> = (0..d).map(|q| q as f32 - 3.5).collect();
        for kernel in Kernel::available() {
            let stored = Data::new(x.view(), None);
            for data in [DataView::from(&stored), DataView::shifted(Data::new(x.view(), None), &shift)] {
                let (compact, row_norms) = Compact::new(kernel, &data);
                assert_eq!(row_norms, init::row_norms(kernel, &data), "{}", kernel.name());
                let mut worst = 0.0f64;
                for i in 0..n {
                    let back = compact.read_back(i, d);
                    let sq: f64 = (0..d).map(|q| (f64::from(data.value(i, q)) - back[q]).powi(2)).sum();
                    assert!(sq.sqrt() <= f64::from(compact.err[i]), "{} row {i}", kernel.name());
                    worst = worst.max(f64::from(compact.err[i]));
                    let norm: f64 = back.iter().map(|v| v * v).sum();
                    let low = f64::from(compact.norms[i]);
                    assert!(low <= norm && norm - low <= 1e-4 * norm.max(1.0), "{} norm of row {i}", kernel.name());
                    assert_eq!(back[2], f64::from(data.value(i, 2)), "a constant column reads back exactly");
                }
                // Half a step of 60 / 255 per varying column at most.
                assert!(worst > 0.0 && worst <= 0.5 * 60.0 / 255.0 * (d as f64).sqrt() * 1.01, "{worst}");
            }
        }
    }

    /// Every variant of the screen excludes a row only if every candidate is at least `τ` away,
    /// and agrees with the others; on clustered data it keeps few rows beyond those with a
    /// candidate truly within `τ`.
    #[test]
    fn screen_excludes_only_rows_beyond_every_candidate() {
        let mut rng = Pcg64Mcg::seed_from_u64(8);
        for (n, d, count) in [(200, 64, 6), (77, 13, 11), (16, 3, 1)] {
            let centres = Array2::from_shape_fn((10, d), |_| rng.random_range(-20.0..20.0));
            let x = Array2::from_shape_fn((n, d), |(i, q)| (centres[[i % 10, q]] + rng.random_range(-1.0..1.0)) as f32);
            let candidates = Array2::from_shape_fn((count, d), |(t, q)| x[[(7 * t + 3) % n, q]]);
            let stored = Data::new(x.view(), None);
            let data = DataView::from(&stored);
            let exact = |i: usize, t: usize| -> f64 {
                (0..d).map(|q| (f64::from(x[[i, q]]) - f64::from(candidates[[t, q]])).powi(2)).sum()
            };
            // τ per row: the distance to a candidate, scaled from half to twice as far.
            let tau: Vec<f64> = (0..n).map(|i| exact(i, i % count) * (0.5 + 1.5 * (i % 5) as f64 / 4.0)).collect();
            let mut masks = Vec::new();
            for kernel in Kernel::available() {
                let compact = Compact::new(kernel, &data).0;
                let probe = compact.probe(candidates.view());
                let blocks = n.div_ceil(SCREEN_ROWS);
                let bias: Vec<f32> = (0..blocks * SCREEN_ROWS)
                    .map(|i| {
                        let (norm, tau) = (compact.norms[i], tau.get(i).copied().unwrap_or(0.0) as f32);
                        let reach = compact.err[i] + tau.sqrt();
                        norm * (1.0 - MARGIN) - reach * reach * (1.0 + MARGIN)
                    })
                    .collect();
                let mut keep = vec![0u16; blocks];
                kernel.screen(compact.codes(0, blocks), &probe, &bias, &compact.spread, &mut keep);
                let (mut kept, mut needed) = (0, 0);
                for i in 0..n {
                    let near = (0..count).any(|t| exact(i, t) < tau[i]);
                    let kept_row = keep[i / SCREEN_ROWS] >> (i % SCREEN_ROWS) & 1 == 1;
                    assert!(kept_row || !near, "{} n={n} row {i} excluded", kernel.name());
                    kept += usize::from(kept_row);
                    needed += usize::from(near);
                }
                assert!(kept <= needed + n / 4, "{} kept {kept} of {n}, {needed} needed", kernel.name());
                masks.push(keep.iter().enumerate().map(|(b, &m)| m & valid(b, n)).collect::<Vec<_>>());
            }
            assert!(masks.windows(2).all(|w| w[0] == w[1]), "the variants disagree (n={n})");
        }
    }

    /// The bits of block `b` that stand for rows below `n`.
    fn valid(b: usize, n: usize) -> u16 {
        let rows = n.saturating_sub(b * SCREEN_ROWS).min(SCREEN_ROWS);
        (((1u32 << rows) - 1) & 0xFFFF) as u16
    }
}
