//! Gaussian mixture models fitted by expectation–maximisation, like scikit-learn's.
//!
//! The EM loop, its convergence test, `n_init` restarts and the final E-step follow
//! `sklearn.mixture.GaussianMixture` step for step, in f64 with Cholesky factors of the
//! precisions and a log-sum-exp normalisation; from the same initial parameters the fitted
//! parameters agree with scikit-learn's to rounding.

mod covariance;
mod init;

pub use covariance::{CovarianceArrays, CovarianceType};
pub use init::GmmInit;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{validate_data, Clusterer, Fitted, Progress};
use crate::{CancelToken, Error, Real, Result};
use covariance::{estimate_parameters, log_gaussian_prob};

/// A Gaussian mixture with `n_components` components, fitted by EM; the parameters and defaults
/// of `sklearn.mixture.GaussianMixture` (without `warm_start` and `verbose`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GaussianMixture {
    /// The number of mixture components (default 1).
    pub n_components: usize,
    /// The covariance structure (default full).
    pub covariance_type: CovarianceType,
    /// EM stops when the mean log-likelihood improves by less than this (default 1e-3).
    pub tol: f64,
    /// Added to the covariances' diagonals so they stay positive definite (default 1e-6).
    pub reg_covar: f64,
    /// The most EM iterations per initialisation (default 100); 0 keeps the initial parameters.
    pub max_iter: usize,
    /// How many initialisations to run; the best lower bound wins (default 1).
    pub n_init: usize,
    /// How the initial responsibilities are drawn (default k-means).
    pub init_params: GmmInit,
    /// The seed of the random draws.
    pub random_state: u64,
    /// Initial component weights (`n_components`, non-negative, summing to 1).
    pub weights_init: Option<Vec<f64>>,
    /// Initial means (`n_components × n_features`).
    pub means_init: Option<Array2<f64>>,
    /// Initial precisions (inverse covariances), in the layout of `covariance_type`.
    pub precisions_init: Option<CovarianceArrays>,
}

impl Default for GaussianMixture {
    fn default() -> Self {
        GaussianMixture {
            n_components: 1,
            covariance_type: CovarianceType::Full,
            tol: 1e-3,
            reg_covar: 1e-6,
            max_iter: 100,
            n_init: 1,
            init_params: GmmInit::Kmeans,
            random_state: 0,
            weights_init: None,
            means_init: None,
            precisions_init: None,
        }
    }
}

/// A fitted Gaussian mixture: scikit-learn's fitted attributes and its scoring methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixtureModel {
    /// The mixing weight of each component (summing to 1).
    pub weights: Vec<f64>,
    /// The mean of each component (`n_components × n_features`).
    pub means: Array2<f64>,
    /// The covariances, in the layout of the covariance type.
    pub covariances: CovarianceArrays,
    /// The Cholesky factors `U` of the precisions (`precision = U Uᵀ`, `U` upper triangular).
    pub precisions_cholesky: CovarianceArrays,
    /// Whether the best initialisation converged within `max_iter`.
    pub converged: bool,
    /// The EM iterations the best initialisation ran.
    pub n_iter: usize,
    /// The mean log-likelihood of the training data at the best initialisation's last
    /// iteration (`-∞` when `max_iter` is 0).
    pub lower_bound: f64,
    /// The most likely component of each training row.
    pub labels: Vec<i64>,
}

/// Weights, means, covariances and precision Cholesky factors: one EM state.
#[derive(Debug, Clone)]
struct Parameters {
    weights: Array1<f64>,
    means: Array2<f64>,
    covariances: CovarianceArrays,
    precisions_cholesky: CovarianceArrays,
}

/// Rows per parallel task in the E-step; fixed so results do not depend on the thread count.
const E_STEP_ROWS: usize = 1024;

impl Parameters {
    /// The M-step from responsibilities, as `_m_step`.
    fn from_responsibilities(x: ArrayView2<'_, f64>, resp: ArrayView2<'_, f64>, gm: &GaussianMixture) -> Result<Self> {
        let (nk, means, covariances) = estimate_parameters(x, resp, gm.reg_covar, gm.covariance_type);
        let precisions_cholesky = covariances.precision_cholesky_of_covariances()?;
        Ok(Parameters { weights: &nk / nk.sum(), means, covariances, precisions_cholesky })
    }

    /// `log πₖ + log N(xᵢ | k)` for every row and component (`n × k`).
    fn weighted_log_prob(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let log_weights = self.weights.mapv(f64::ln);
        let blocks: Vec<Array2<f64>> = x
            .axis_chunks_iter(Axis(0), E_STEP_ROWS)
            .into_par_iter()
            .map(|xb| log_gaussian_prob(xb, self.means.view(), &self.precisions_cholesky) + &log_weights)
            .collect();
        let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("blocks share their width")
    }

    /// The E-step: the mean log-likelihood and the log responsibilities, as `_e_step`.
    fn e_step(&self, x: ArrayView2<'_, f64>) -> (f64, Array2<f64>) {
        let mut log_resp = self.weighted_log_prob(x);
        let log_norm = log_sum_exp_rows(log_resp.view());
        Zip::from(log_resp.rows_mut()).and(&log_norm).for_each(|mut row, &norm| row -= norm);
        (log_norm.mean().expect("X has rows"), log_resp)
    }
}

/// `log Σₖ exp(aᵢₖ)` per row, with scikit-learn's `_logsumexp` arithmetic (the maximum terms
/// are counted apart and the rest summed through `log1p`).
fn log_sum_exp_rows(a: ArrayView2<'_, f64>) -> Array1<f64> {
    a.rows()
        .into_iter()
        .map(|row| {
            let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let shift = if max.is_finite() { max } else { 0.0 };
            let (mut count, mut sum) = (0.0, 0.0);
            for &v in row {
                if v == max {
                    count += 1.0;
                } else {
                    sum += (v - shift).exp();
                }
            }
            let s = if sum == 0.0 { sum } else { sum / count };
            s.ln_1p() + f64::ln(count) + max
        })
        .collect()
}

impl GaussianMixture {
    fn validate(&self, n: usize, d: usize) -> Result<()> {
        let k = self.n_components;
        if k == 0 {
            return Err(Error::parameter("n_components", "must be at least 1"));
        }
        if n < k {
            return Err(Error::input(format!(
                "expected n_samples >= n_components but got n_components = {k}, n_samples = {n}"
            )));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(Error::parameter("tol", format!("must be a non-negative number, got {}", self.tol)));
        }
        if !(self.reg_covar.is_finite() && self.reg_covar >= 0.0) {
            return Err(Error::parameter(
                "reg_covar",
                format!("must be a non-negative number, got {}", self.reg_covar),
            ));
        }
        if self.n_init == 0 {
            return Err(Error::parameter("n_init", "must be at least 1"));
        }
        if let Some(w) = &self.weights_init {
            if w.len() != k {
                return Err(Error::parameter("weights_init", format!("must have {k} values, got {}", w.len())));
            }
            if w.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err(Error::parameter("weights_init", "must be in the range [0, 1]"));
            }
            let sum: f64 = w.iter().sum();
            if (1.0 - sum).abs() > 1e-8 {
                return Err(Error::parameter("weights_init", format!("must sum to 1, got {sum}")));
            }
        }
        if let Some(m) = &self.means_init {
            if m.dim() != (k, d) {
                return Err(Error::parameter("means_init", format!("must have shape ({k}, {d}), got {:?}", m.dim())));
            }
            if m.iter().any(|v| !v.is_finite()) {
                return Err(Error::parameter("means_init", "must be finite"));
            }
        }
        if let Some(p) = &self.precisions_init {
            if p.covariance_type() != self.covariance_type {
                return Err(Error::parameter(
                    "precisions_init",
                    format!(
                        "has the layout of '{}' but covariance_type is '{}'",
                        p.covariance_type(),
                        self.covariance_type
                    ),
                ));
            }
            p.check_shape(k, d, "precisions_init")?;
            if p.values().any(|v| !v.is_finite()) {
                return Err(Error::parameter("precisions_init", "must be finite"));
            }
            check_symmetric_positive(p)?;
        }
        Ok(())
    }

    /// The parameters EM starts from, as `_initialize_parameters` + `_initialize`: estimated
    /// from initial responsibilities, then overridden by whatever `*_init` is given.
    fn initial_parameters(&self, x: ArrayView2<'_, f64>, rng: &mut Pcg64) -> Result<Parameters> {
        let given_precisions = match &self.precisions_init {
            Some(p) => Some(p.precision_cholesky_of_precisions()?),
            None => None,
        };
        let estimated = match (&self.weights_init, &self.means_init, &given_precisions) {
            // scikit-learn draws nothing when every parameter is given.
            (Some(_), Some(_), Some(_)) => None,
            _ => {
                let resp = init::initial_responsibilities(x, self.n_components, self.init_params, rng)?;
                let (nk, means, covariances) =
                    estimate_parameters(x, resp.view(), self.reg_covar, self.covariance_type);
                Some((nk / x.nrows() as f64, means, covariances))
            }
        };
        let weights = match (&self.weights_init, &estimated) {
            (Some(w), _) => Array1::from(w.clone()),
            (None, Some((w, _, _))) => w.clone(),
            (None, None) => unreachable!("weights are estimated unless given"),
        };
        let means = match (&self.means_init, &estimated) {
            (Some(m), _) => m.clone(),
            (None, Some((_, m, _))) => m.clone(),
            (None, None) => unreachable!("means are estimated unless given"),
        };
        let (covariances, precisions_cholesky) = match (given_precisions, estimated) {
            (Some(u), _) => (u.covariances_of_precision_cholesky(), u),
            (None, Some((_, _, c))) => {
                let u = c.precision_cholesky_of_covariances()?;
                (c, u)
            }
            (None, None) => unreachable!("covariances are estimated unless precisions are given"),
        };
        Ok(Parameters { weights, means, covariances, precisions_cholesky })
    }

    /// Fits on the rows of `x` (f64), as `BaseMixture.fit_predict`.
    fn fit_f64(
        &self,
        x: ArrayView2<'_, f64>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &CancelToken,
    ) -> Result<GaussianMixtureModel> {
        let mut rng = Pcg64::seed_from_u64(self.random_state);
        let total = self.n_init * self.max_iter.max(1);
        let mut best: Option<(f64, Parameters, usize, bool)> = None;
        for init in 0..self.n_init {
            let mut params = self.initial_parameters(x, &mut rng)?;
            let mut lower_bound = f64::NEG_INFINITY;
            let (mut n_iter, mut converged) = (0, false);
            for iter in 1..=self.max_iter {
                let previous = lower_bound;
                let (log_prob_norm, log_resp) = params.e_step(x);
                params = Parameters::from_responsibilities(x, log_resp.mapv(f64::exp).view(), self)?;
                lower_bound = log_prob_norm;
                n_iter = iter;
                progress(Progress { done: init * self.max_iter + iter, total, stage: "EM iteration" });
                cancel.check()?;
                if (lower_bound - previous).abs() < self.tol {
                    converged = true;
                    break;
                }
            }
            // As scikit-learn: while the best bound is -∞ (max_iter = 0) the latest init wins.
            let better = match &best {
                None => true,
                Some((best_bound, ..)) => lower_bound > *best_bound || *best_bound == f64::NEG_INFINITY,
            };
            if better {
                best = Some((lower_bound, params, n_iter, converged));
            }
        }
        let (lower_bound, params, n_iter, converged) = best.expect("n_init ≥ 1");
        // A final E-step so the labels equal `predict` on the training data.
        let labels = argmax_rows(params.e_step(x).1.view());
        Ok(GaussianMixtureModel {
            weights: params.weights.to_vec(),
            means: params.means,
            covariances: params.covariances,
            precisions_cholesky: params.precisions_cholesky,
            converged,
            n_iter,
            lower_bound,
            labels,
        })
    }
}

/// scikit-learn's check of `precisions_init`: symmetric (to `np.isclose`) and positive definite.
fn check_symmetric_positive(p: &CovarianceArrays) -> Result<()> {
    let symmetric = |m: ArrayView2<'_, f64>| {
        m.indexed_iter().all(|((i, j), &v)| (v - m[[j, i]]).abs() <= 1e-8 + 1e-5 * m[[j, i]].abs())
    };
    let all_symmetric = match p {
        CovarianceArrays::Full(a) => a.outer_iter().all(symmetric),
        CovarianceArrays::Tied(a) => symmetric(a.view()),
        CovarianceArrays::Diag(_) | CovarianceArrays::Spherical(_) => true,
    };
    let positive = match p {
        CovarianceArrays::Diag(_) | CovarianceArrays::Spherical(_) => p.values().all(|v| v > 0.0),
        // A Cholesky factorisation exists exactly for the positive definite ones.
        CovarianceArrays::Full(_) | CovarianceArrays::Tied(_) => p.precision_cholesky_of_precisions().is_ok(),
    };
    if !(all_symmetric && positive) {
        return Err(Error::parameter(
            "precisions_init",
            format!("'{}' precisions must be symmetric, positive-definite", p.covariance_type()),
        ));
    }
    Ok(())
}

/// The index of each row's maximum, the first on ties (as `np.argmax`).
fn argmax_rows(a: ArrayView2<'_, f64>) -> Vec<i64> {
    a.rows()
        .into_iter()
        .map(|row| {
            row.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (k, &v)| if v > b.1 { (k, v) } else { b }).0 as i64
        })
        .collect()
}

impl<T: Real> Clusterer<T> for GaussianMixture {
    type Model = GaussianMixtureModel;

    /// Fits the mixture. `sample_weight` is not supported (scikit-learn's `GaussianMixture`
    /// has none) and is an error when given.
    fn fit_cancellable(
        &self,
        x: ArrayView2<'_, T>,
        sample_weight: Option<ArrayView1<'_, T>>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &CancelToken,
    ) -> Result<GaussianMixtureModel> {
        if sample_weight.is_some() {
            return Err(Error::parameter("sample_weight", "GaussianMixture does not support sample weights"));
        }
        validate_data(x, None, 2)?;
        self.validate(x.nrows(), x.ncols())?;
        self.fit_f64(x.mapv(Real::to_f64_exact).view(), progress, cancel)
    }
}

impl GaussianMixtureModel {
    /// The number of features the model was fitted on.
    pub fn n_features(&self) -> usize {
        self.means.ncols()
    }

    /// The number of components.
    pub fn n_components(&self) -> usize {
        self.means.nrows()
    }

    /// The covariance type of the model.
    pub fn covariance_type(&self) -> CovarianceType {
        self.covariances.covariance_type()
    }

    /// The precisions (inverse covariances), in the layout of the covariance type.
    pub fn precisions(&self) -> CovarianceArrays {
        self.precisions_cholesky.precisions_of_cholesky()
    }

    fn parameters(&self) -> Parameters {
        Parameters {
            weights: Array1::from(self.weights.clone()),
            means: self.means.clone(),
            covariances: self.covariances.clone(),
            precisions_cholesky: self.precisions_cholesky.clone(),
        }
    }

    /// Validates new data and widens it to f64.
    fn prepare<T: Real>(&self, x: ArrayView2<'_, T>) -> Result<Array2<f64>> {
        validate_data(x, None, 1)?;
        if x.ncols() != self.n_features() {
            return Err(Error::input(format!(
                "X has {} features but the model was fitted with {}",
                x.ncols(),
                self.n_features()
            )));
        }
        Ok(x.mapv(Real::to_f64_exact))
    }

    /// The posterior probability of each component for each row (`n × n_components`).
    pub fn predict_proba<T: Real>(&self, x: ArrayView2<'_, T>) -> Result<Array2<f64>> {
        let x = self.prepare(x)?;
        Ok(self.parameters().e_step(x.view()).1.mapv(f64::exp))
    }

    /// The log density of the mixture at each row.
    pub fn score_samples<T: Real>(&self, x: ArrayView2<'_, T>) -> Result<Vec<f64>> {
        let x = self.prepare(x)?;
        Ok(log_sum_exp_rows(self.parameters().weighted_log_prob(x.view()).view()).to_vec())
    }

    /// The mean log density of the mixture over the rows.
    pub fn score<T: Real>(&self, x: ArrayView2<'_, T>) -> Result<f64> {
        let s = self.score_samples(x)?;
        Ok(s.iter().sum::<f64>() / s.len() as f64)
    }

    /// The number of free parameters: covariances, means and `n_components − 1` weights.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_components(), self.n_features());
        self.covariance_type().n_parameters(k, d) + k * d + k - 1
    }

    /// The Bayesian information criterion on `x`: `−2·n·score + n_parameters·ln n` (lower is better).
    pub fn bic<T: Real>(&self, x: ArrayView2<'_, T>) -> Result<f64> {
        let n = x.nrows() as f64;
        Ok(-2.0 * self.score(x)? * n + self.n_parameters() as f64 * n.ln())
    }

    /// The Akaike information criterion on `x`: `−2·n·score + 2·n_parameters` (lower is better).
    pub fn aic<T: Real>(&self, x: ArrayView2<'_, T>) -> Result<f64> {
        let n = x.nrows() as f64;
        Ok(-2.0 * self.score(x)? * n + 2.0 * self.n_parameters() as f64)
    }
}

impl<T: Real> Fitted<T> for GaussianMixtureModel {
    fn labels(&self) -> &[i64] {
        &self.labels
    }

    /// The most likely component of each row.
    fn predict(&self, x: ArrayView2<'_, T>) -> Result<Vec<i64>> {
        let x = self.prepare(x)?;
        Ok(argmax_rows(self.parameters().weighted_log_prob(x.view()).view()))
    }
}

#[cfg(test)]
mod tests;
