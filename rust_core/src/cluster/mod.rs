//! Clustering: k-means, mini-batch k-means, DBSCAN, Gaussian mixtures, behind one trait.

pub mod dbscan;
pub mod gmm;
pub mod kmeans;
pub mod minibatch;

use ndarray::{ArrayView1, ArrayView2};

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
/// every value finite, and weights (if any) one per row, finite and non-negative.
pub fn validate_data<T: Real>(
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
    if let Some((i, _)) = x.outer_iter().enumerate().find(|(_, row)| row.iter().any(|v| !v.is_finite())) {
        return Err(Error::input(format!("X contains NaN or infinity (first in row {i}): remove or impute them")));
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
