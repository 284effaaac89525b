//! Clustering: k-means, mini-batch k-means, DBSCAN, Gaussian mixtures, behind one trait.

pub mod dbscan;
pub mod gmm;
pub mod kmeans;
pub mod minibatch;

use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;

use crate::{CancelToken, Error, Real, Result};

/// How far a long fit has got, for progress bars and job status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Steps done so far (iterations, batches, points visited, ...).
    pub done: usize,
    /// Steps expected in all (an upper bound where the fit may stop early).
    pub total: usize,
    /// What the steps are, e.g. "iteration".
    pub stage: &'static str,
}

/// A clustering algorithm with its parameters: `fit` learns a model from the rows of `x`.
pub trait Clusterer<T: Real> {
    /// What `fit` returns.
    type Model: Fitted<T>;

    /// Fits on the rows of `x` (optionally weighted), reporting progress as it goes and
    /// checking `cancel` after every step it reports (and, for k-means++, between the
    /// choices of two centres).
    ///
    /// # Errors
    /// [`crate::Error::Cancelled`] once `cancel` is cancelled; the algorithm's own errors.
    fn fit_cancellable(
        &self,
        x: ArrayView2<'_, T>,
        sample_weight: Option<ArrayView1<'_, T>>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &CancelToken,
    ) -> Result<Self::Model>;

    /// Fits on the rows of `x` (optionally weighted), reporting progress as it goes.
    fn fit_observed(
        &self,
        x: ArrayView2<'_, T>,
        sample_weight: Option<ArrayView1<'_, T>>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Self::Model> {
        self.fit_cancellable(x, sample_weight, progress, &CancelToken::new())
    }

    /// Fits on the rows of `x` (optionally weighted).
    fn fit(&self, x: ArrayView2<'_, T>, sample_weight: Option<ArrayView1<'_, T>>) -> Result<Self::Model> {
        self.fit_observed(x, sample_weight, &|_| {})
    }
}

/// A fitted clustering model.
pub trait Fitted<T: Real> {
    /// The cluster of each training row (`-1` marks noise where the algorithm has it).
    fn labels(&self) -> &[i64];

    /// The cluster of each row of `x`; an error for algorithms that cannot label new data.
    fn predict(&self, x: ArrayView2<'_, T>) -> Result<Vec<i64>>;
}

/// Checks that a data matrix is usable: at least `min_rows` rows, at least one column,
/// weights (if any) one per row, finite and non-negative, and every value finite.
pub fn validate_data<T: Real>(
    x: ArrayView2<'_, T>,
    sample_weight: Option<ArrayView1<'_, T>>,
    min_rows: usize,
) -> Result<()> {
    validate_shape(x, sample_weight, min_rows)?;
    let first_bad = match x.as_slice() {
        Some(values) => first_non_finite_row(values, x.ncols()),
        None => x.outer_iter().position(|row| row.iter().any(|v| !v.is_finite())),
    };
    first_bad.map_or(Ok(()), |i| Err(non_finite(i)))
}

/// [`validate_data`] but for the values of `x`, for a fit whose first read of X checks them.
pub(crate) fn validate_shape<T: Real>(
    x: ArrayView2<'_, T>,
    sample_weight: Option<ArrayView1<'_, T>>,
    min_rows: usize,
) -> Result<()> {
    let (n, d) = x.dim();
    if n == 0 || d == 0 {
        return Err(Error::input(format!("X is empty (shape {n} × {d}): pass at least one sample with one feature")));
    }
    if n < min_rows {
        return Err(Error::input(format!("X has {n} samples but at least {min_rows} are needed")));
    }
    if let Some(w) = sample_weight {
        if w.len() != n {
            return Err(Error::input(format!("sample_weight has {} values but X has {n} rows", w.len())));
        }
        if w.iter().any(|v| !v.is_finite() || *v < T::zero()) {
            return Err(Error::input("sample_weight must be finite and non-negative"));
        }
    }
    Ok(())
}

/// The error for data whose first non-finite value is in row `row`.
pub(crate) fn non_finite(row: usize) -> Error {
    Error::input(format!("X contains NaN or infinity (first in row {row}): remove or impute them"))
}

/// Rows per block of the finite check: 64 KiB of `f32` rows of 64 values.
const FINITE_BLOCK_ROWS: usize = 256;

/// The first row of the rows of `d` values in `values` that holds NaN or an infinity, checked
/// in parallel blocks, each folded without branches so that the loop vectorises (a fit's check
/// is then a small share of one Lloyd iteration, not a serial read of X); only the block that
/// fails is searched row by row.
pub(crate) fn first_non_finite_row<T: Real>(values: &[T], d: usize) -> Option<usize> {
    let bad = |values: &[T]| values.iter().fold(false, |bad, v| bad | !v.is_finite());
    let d = d.max(1);
    values
        .par_chunks(FINITE_BLOCK_ROWS * d)
        .enumerate()
        .find_first(|(_, block)| bad(block))
        .and_then(|(b, block)| block.chunks(d).position(bad).map(|r| b * FINITE_BLOCK_ROWS + r))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row named is the first that holds any non-finite value, wherever it falls in a
    /// block, for NaN and both infinities, contiguous or not.
    #[test]
    fn the_first_non_finite_row_is_found_in_any_block() {
        let (n, d) = (3 * FINITE_BLOCK_ROWS + 5, 7);
        let clean = ndarray::Array2::from_shape_fn((n, d), |(i, q)| (i * d + q) as f32 * 0.5 - 100.0);
        assert_eq!(first_non_finite_row(clean.as_slice().unwrap(), d), None);
        assert!(validate_data(clean.view(), None, 1).is_ok());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for rows in [vec![0], vec![FINITE_BLOCK_ROWS - 1], vec![2 * FINITE_BLOCK_ROWS + 3, n - 1], vec![n - 1]] {
                let mut x = clean.clone();
                for &r in &rows {
                    x[[r, (r * 3) % d]] = bad;
                }
                assert_eq!(first_non_finite_row(x.as_slice().unwrap(), d), Some(rows[0]), "{bad} in rows {rows:?}");
                let error = validate_data(x.t().t(), None, 1).unwrap_err().to_string();
                assert!(error.contains(&format!("first in row {}", rows[0])), "{error}");
                let fit = kmeans::KMeans::new(2).fit(x.view(), None).unwrap_err().to_string();
                assert!(fit.contains(&format!("first in row {}", rows[0])), "k-means: {fit}");
                let strided = x.slice(ndarray::s![.., ..;2]);
                let expected = rows.iter().copied().find(|&r| ((r * 3) % d) % 2 == 0);
                assert_eq!(validate_data(strided, None, 1).is_err(), expected.is_some(), "{bad} in rows {rows:?}");
            }
        }
    }
}
