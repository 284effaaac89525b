//! Exact squared Euclidean distances between all pairs of rows, tiled for the cache and the
//! vector units; shared by the silhouette and DBSCAN.
//!
//! Each distance is `Σₖ (aₖ − bₖ)²` summed in feature order, bit-for-bit the sum scikit-learn's
//! KD-tree computes, so "within eps" decisions agree with it even at the boundary (the
//! `‖a‖² + ‖b‖² − 2a·b` shortcut would not).

use ndarray::ArrayView2;

use crate::Real;

/// Rows per panel: a tile holds `LANES × LANES` distances in registers.
pub(crate) const LANES: usize = 4;

/// How many features are summed between early-exit checks.
const CHECK_EVERY: usize = 16;

/// The rows of a matrix as f64, packed in panels of [`LANES`] rows interleaved feature by
/// feature, so that a tile reads both operands contiguously. The last panel is padded with zeros.
#[derive(Debug, Clone)]
pub(crate) struct Panels {
    data: Vec<f64>,
    n_rows: usize,
    n_features: usize,
}

impl Panels {
    /// Packs the rows of `x`.
    pub fn new<T: Real>(x: ArrayView2<'_, T>) -> Self {
        let (n_rows, n_features) = x.dim();
        let n_panels = n_rows.div_ceil(LANES);
        let mut data = vec![0.0; n_panels * n_features * LANES];
        for (i, row) in x.outer_iter().enumerate() {
            let panel = &mut data[(i / LANES) * n_features * LANES..][..n_features * LANES];
            for (k, v) in row.iter().enumerate() {
                panel[k * LANES + i % LANES] = v.to_f64_exact();
            }
        }
        Panels { data, n_rows, n_features }
    }

    /// The number of rows packed.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// The number of panels (`⌈n_rows / LANES⌉`).
    pub fn n_panels(&self) -> usize {
        self.n_rows.div_ceil(LANES)
    }

    /// The rows `p·LANES .. min((p+1)·LANES, n_rows)` of panel `p`.
    pub fn rows(&self, p: usize) -> std::ops::Range<usize> {
        p * LANES..((p + 1) * LANES).min(self.n_rows)
    }

    fn panel(&self, p: usize) -> &[f64] {
        &self.data[p * self.n_features * LANES..][..self.n_features * LANES]
    }

    /// Squared distances between the rows of panel `a` and those of panel `b` of `other`
    /// (`tile[r][c]` for rows `a·LANES + r` and `b·LANES + c`), which must have as many features.
    /// Returns `None` as soon as every partial sum exceeds `cutoff`: sums of non-negative terms
    /// only grow, so then no distance of the tile is `≤ cutoff`.
    pub fn tile(&self, a: usize, other: &Panels, b: usize, cutoff: f64) -> Option<[[f64; LANES]; LANES]> {
        debug_assert_eq!(self.n_features, other.n_features);
        let (pa, pb) = (self.panel(a), other.panel(b));
        let mut acc = [[0.0; LANES]; LANES];
        let block = CHECK_EVERY * LANES;
        for (ca, cb) in pa.chunks(block).zip(pb.chunks(block)) {
            for (fa, fb) in ca.chunks_exact(LANES).zip(cb.chunks_exact(LANES)) {
                for (acc_r, &ar) in acc.iter_mut().zip(fa) {
                    for (acc_rc, &bc) in acc_r.iter_mut().zip(fb) {
                        let t = ar - bc;
                        *acc_rc += t * t;
                    }
                }
            }
            if acc.iter().flatten().all(|&v| v > cutoff) {
                return None;
            }
        }
        Some(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn naive(x: &Array2<f64>, i: usize, j: usize) -> f64 {
        x.row(i).iter().zip(x.row(j)).map(|(a, b)| (a - b) * (a - b)).fold(0.0, |s, v| s + v)
    }

    #[test]
    fn tiles_equal_the_naive_sum_bitwise() {
        let (n, d) = (11, 37);
        let x = Array2::from_shape_fn((n, d), |(i, k)| ((i * 31 + k * 17) % 23) as f64 * 0.37 - 3.1);
        let p = Panels::new(x.view());
        assert_eq!(p.n_panels(), 3);
        for a in 0..p.n_panels() {
            for b in 0..p.n_panels() {
                let t = p.tile(a, &p, b, f64::INFINITY).unwrap();
                for i in p.rows(a) {
                    for j in p.rows(b) {
                        assert_eq!(t[i % LANES][j % LANES], naive(&x, i, j));
                    }
                }
            }
        }
    }

    #[test]
    fn cutoff_skips_only_far_tiles() {
        let mut x = Array2::zeros((8, 40));
        x.slice_mut(ndarray::s![4.., ..]).fill(1.0);
        let p = Panels::new(x.view());
        assert!(p.tile(0, &p, 1, 39.5).is_none());
        assert!(p.tile(0, &p, 1, 40.0).is_some());
        assert!(p.tile(0, &p, 0, 0.0).is_some());
    }
}
