//! The four covariance structures of a Gaussian mixture: estimating them from
//! responsibilities (the M-step), their precision Cholesky factors, and the per-component log
//! densities (the E-step), each computed as scikit-learn's `_gaussian_mixture.py` does.

use std::fmt;
use std::str::FromStr;

use ndarray::{s, Array1, Array2, Array3, ArrayView1, ArrayView2, Axis, Zip};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How each component's covariance is constrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceType {
    /// Each component has its own general covariance matrix.
    #[default]
    Full,
    /// All components share one general covariance matrix.
    Tied,
    /// Each component has its own diagonal covariance matrix.
    Diag,
    /// Each component has its own single variance.
    Spherical,
}

impl CovarianceType {
    /// The name scikit-learn uses (`"full"`, `"tied"`, `"diag"`, `"spherical"`).
    pub fn name(self) -> &'static str {
        match self {
            CovarianceType::Full => "full",
            CovarianceType::Tied => "tied",
            CovarianceType::Diag => "diag",
            CovarianceType::Spherical => "spherical",
        }
    }

    /// The number of free covariance parameters for `k` components in `d` dimensions.
    pub(super) fn n_parameters(self, k: usize, d: usize) -> usize {
        match self {
            CovarianceType::Full => k * d * (d + 1) / 2,
            CovarianceType::Tied => d * (d + 1) / 2,
            CovarianceType::Diag => k * d,
            CovarianceType::Spherical => k,
        }
    }
}

impl fmt::Display for CovarianceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CovarianceType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(CovarianceType::Full),
            "tied" => Ok(CovarianceType::Tied),
            "diag" => Ok(CovarianceType::Diag),
            "spherical" => Ok(CovarianceType::Spherical),
            _ => Err(Error::parameter(
                "covariance_type",
                format!("must be one of 'full', 'tied', 'diag', 'spherical', got '{s}'"),
            )),
        }
    }
}

/// Covariance-shaped parameters of a mixture in the layout of their [`CovarianceType`]:
/// the covariances themselves, or the Cholesky factors of the precisions, or the precisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceArrays {
    /// `n_components × n_features × n_features`.
    Full(Array3<f64>),
    /// `n_features × n_features`.
    Tied(Array2<f64>),
    /// `n_components × n_features`.
    Diag(Array2<f64>),
    /// `n_components`.
    Spherical(Array1<f64>),
}

/// scikit-learn's message for a covariance that is not positive definite.
const ILL_DEFINED: &str = "fitting the mixture model failed because some components have ill-defined empirical \
     covariance (for instance caused by singleton or collapsed samples); try to decrease the number of \
     components, increase reg_covar, or scale the input data";

impl CovarianceArrays {
    /// The covariance type this layout belongs to.
    pub fn covariance_type(&self) -> CovarianceType {
        match self {
            CovarianceArrays::Full(_) => CovarianceType::Full,
            CovarianceArrays::Tied(_) => CovarianceType::Tied,
            CovarianceArrays::Diag(_) => CovarianceType::Diag,
            CovarianceArrays::Spherical(_) => CovarianceType::Spherical,
        }
    }

    /// The Cholesky factors of the precisions from covariances: `(L⁻¹)ᵀ` for `cov = L Lᵀ`,
    /// `1/√σ²` for variances. Errors when a covariance is not positive definite.
    pub(super) fn precision_cholesky_of_covariances(&self) -> Result<CovarianceArrays> {
        let factor = |cov: ArrayView2<'_, f64>| -> Result<Array2<f64>> {
            let l = cholesky(cov).ok_or_else(|| Error::input(ILL_DEFINED))?;
            Ok(invert_lower(l.view()).reversed_axes())
        };
        Ok(match self {
            CovarianceArrays::Full(c) => {
                let factors: Vec<Array2<f64>> = c.outer_iter().map(factor).collect::<Result<_>>()?;
                CovarianceArrays::Full(stack(&factors))
            }
            CovarianceArrays::Tied(c) => CovarianceArrays::Tied(factor(c.view())?),
            CovarianceArrays::Diag(c) => CovarianceArrays::Diag(inverse_sqrt(c)?),
            CovarianceArrays::Spherical(c) => CovarianceArrays::Spherical(inverse_sqrt(c)?),
        })
    }

    /// The Cholesky factors of precisions given the precisions: the upper-triangular `U` with
    /// `P = U Uᵀ` (scikit-learn flips rows and columns around a lower Cholesky factorisation),
    /// `√p` for diagonal ones. Errors when a precision is not positive definite.
    pub(super) fn precision_cholesky_of_precisions(&self) -> Result<CovarianceArrays> {
        let factor = |p: ArrayView2<'_, f64>| -> Result<Array2<f64>> {
            let flipped = p.slice(s![..;-1, ..;-1]);
            let l = cholesky(flipped).ok_or_else(|| {
                Error::parameter("precisions_init", "each precision must be symmetric, positive-definite")
            })?;
            Ok(l.slice(s![..;-1, ..;-1]).to_owned())
        };
        Ok(match self {
            CovarianceArrays::Full(p) => {
                let factors: Vec<Array2<f64>> = p.outer_iter().map(factor).collect::<Result<_>>()?;
                CovarianceArrays::Full(stack(&factors))
            }
            CovarianceArrays::Tied(p) => CovarianceArrays::Tied(factor(p.view())?),
            CovarianceArrays::Diag(p) => CovarianceArrays::Diag(p.mapv(f64::sqrt)),
            CovarianceArrays::Spherical(p) => CovarianceArrays::Spherical(p.mapv(f64::sqrt)),
        })
    }

    /// The covariances whose precision Cholesky factors are `self`: `(U Uᵀ)⁻¹ = U⁻ᵀ U⁻¹`.
    pub(super) fn covariances_of_precision_cholesky(&self) -> CovarianceArrays {
        let inverse = |u: ArrayView2<'_, f64>| {
            let u_inv_t = invert_lower(u.t());
            u_inv_t.dot(&u_inv_t.t())
        };
        match self {
            CovarianceArrays::Full(u) => {
                CovarianceArrays::Full(stack(&u.outer_iter().map(inverse).collect::<Vec<_>>()))
            }
            CovarianceArrays::Tied(u) => CovarianceArrays::Tied(inverse(u.view())),
            CovarianceArrays::Diag(u) => CovarianceArrays::Diag(u.mapv(|v| 1.0 / (v * v))),
            CovarianceArrays::Spherical(u) => CovarianceArrays::Spherical(u.mapv(|v| 1.0 / (v * v))),
        }
    }

    /// The precisions `U Uᵀ` (or `u²`) from their Cholesky factors.
    pub fn precisions_of_cholesky(&self) -> CovarianceArrays {
        let square = |u: ArrayView2<'_, f64>| u.dot(&u.t());
        match self {
            CovarianceArrays::Full(u) => CovarianceArrays::Full(stack(&u.outer_iter().map(square).collect::<Vec<_>>())),
            CovarianceArrays::Tied(u) => CovarianceArrays::Tied(square(u.view())),
            CovarianceArrays::Diag(u) => CovarianceArrays::Diag(u.mapv(|v| v * v)),
            CovarianceArrays::Spherical(u) => CovarianceArrays::Spherical(u.mapv(|v| v * v)),
        }
    }

    /// Checks the shape against `k` components in `d` dimensions; `what` names the parameter.
    pub(super) fn check_shape(&self, k: usize, d: usize, what: &'static str) -> Result<()> {
        let (found, expected): (Vec<usize>, Vec<usize>) = match self {
            CovarianceArrays::Full(a) => (a.shape().to_vec(), vec![k, d, d]),
            CovarianceArrays::Tied(a) => (a.shape().to_vec(), vec![d, d]),
            CovarianceArrays::Diag(a) => (a.shape().to_vec(), vec![k, d]),
            CovarianceArrays::Spherical(a) => (a.shape().to_vec(), vec![k]),
        };
        if found != expected {
            return Err(Error::parameter(what, format!("must have shape {expected:?}, got {found:?}")));
        }
        Ok(())
    }

    /// Every value of the arrays.
    pub(super) fn values(&self) -> Box<dyn Iterator<Item = f64> + '_> {
        match self {
            CovarianceArrays::Full(a) => Box::new(a.iter().copied()),
            CovarianceArrays::Tied(a) | CovarianceArrays::Diag(a) => Box::new(a.iter().copied()),
            CovarianceArrays::Spherical(a) => Box::new(a.iter().copied()),
        }
    }
}

/// The M-step: component weights (unnormalised sums of responsibilities), means and
/// covariances from the responsibilities `resp` (`n × k`), as `_estimate_gaussian_parameters`.
pub(super) fn estimate_parameters(
    x: ArrayView2<'_, f64>,
    resp: ArrayView2<'_, f64>,
    reg_covar: f64,
    covariance_type: CovarianceType,
) -> (Array1<f64>, Array2<f64>, CovarianceArrays) {
    // The 10·eps keeps empty components from dividing by zero.
    let nk = resp.sum_axis(Axis(0)) + 10.0 * f64::EPSILON;
    let means = resp.t().dot(&x) / nk.view().insert_axis(Axis(1));
    let d = x.ncols();
    let covariances = match covariance_type {
        CovarianceType::Full => {
            let covs: Vec<Array2<f64>> = (0..means.nrows())
                .into_par_iter()
                .map(|k| {
                    let diff = &x - &means.row(k);
                    let weighted = &diff * &resp.column(k).insert_axis(Axis(1));
                    let mut cov = weighted.t().dot(&diff) / nk[k];
                    cov.diag_mut().mapv_inplace(|v| v + reg_covar);
                    cov
                })
                .collect();
            CovarianceArrays::Full(stack(&covs))
        }
        CovarianceType::Tied => {
            let avg_x2 = x.t().dot(&x);
            let avg_means2 = (&means.t() * &nk.view().insert_axis(Axis(0))).dot(&means);
            let mut cov = (avg_x2 - avg_means2) / nk.sum();
            cov.diag_mut().mapv_inplace(|v| v + reg_covar);
            CovarianceArrays::Tied(cov)
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            let avg_x2 = resp.t().dot(&x.mapv(|v| v * v)) / nk.view().insert_axis(Axis(1));
            let diag = avg_x2 - means.mapv(|v| v * v) + reg_covar;
            if covariance_type == CovarianceType::Diag {
                CovarianceArrays::Diag(diag)
            } else {
                CovarianceArrays::Spherical(diag.sum_axis(Axis(1)) / d as f64)
            }
        }
    };
    (nk, means, covariances)
}

/// `log N(xᵢ | μₖ, Σₖ)` for every row and component (`n × k`), from the precision Cholesky
/// factors, as `_estimate_log_gaussian_prob`.
pub(super) fn log_gaussian_prob(
    x: ArrayView2<'_, f64>,
    means: ArrayView2<'_, f64>,
    precisions_cholesky: &CovarianceArrays,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let k = means.nrows();
    let mahalanobis_full = |mu: ArrayView1<'_, f64>, u: ArrayView2<'_, f64>| {
        let y = x.dot(&u) - mu.dot(&u);
        y.mapv(|v| v * v).sum_axis(Axis(1))
    };
    let (mut log_prob, log_det) = match precisions_cholesky {
        CovarianceArrays::Full(u) => {
            let mut lp = Array2::zeros((n, k));
            for (c, mut col) in lp.axis_iter_mut(Axis(1)).enumerate() {
                col.assign(&mahalanobis_full(means.row(c), u.slice(s![c, .., ..])));
            }
            let log_det = Array1::from_shape_fn(k, |c| u.slice(s![c, .., ..]).diag().mapv(f64::ln).sum());
            (lp, log_det)
        }
        CovarianceArrays::Tied(u) => {
            let mut lp = Array2::zeros((n, k));
            for (c, mut col) in lp.axis_iter_mut(Axis(1)).enumerate() {
                col.assign(&mahalanobis_full(means.row(c), u.view()));
            }
            (lp, Array1::from_elem(k, u.diag().mapv(f64::ln).sum()))
        }
        CovarianceArrays::Diag(u) => {
            let precisions = u.mapv(|v| v * v);
            let lp = (&means.mapv(|v| v * v) * &precisions).sum_axis(Axis(1)).insert_axis(Axis(0)).to_owned()
                - 2.0 * x.dot(&(&means * &precisions).t())
                + x.mapv(|v| v * v).dot(&precisions.t());
            (lp, u.mapv(f64::ln).sum_axis(Axis(1)))
        }
        CovarianceArrays::Spherical(u) => {
            let precisions = u.mapv(|v| v * v);
            let row_norms = x.mapv(|v| v * v).sum_axis(Axis(1));
            let mean_norms = means.mapv(|v| v * v).sum_axis(Axis(1));
            let mut lp = x.dot(&means.t()) * &precisions * -2.0;
            Zip::from(lp.rows_mut()).and(&row_norms).for_each(|mut row, &rn| {
                Zip::from(&mut row).and(&mean_norms).and(&precisions).for_each(|v, &mn, &p| {
                    *v = mn * p + *v + rn * p;
                });
            });
            (lp, u.mapv(|v| d as f64 * v.ln()))
        }
    };
    let constant = d as f64 * (2.0 * std::f64::consts::PI).ln();
    Zip::from(log_prob.rows_mut()).for_each(|mut row| {
        Zip::from(&mut row).and(&log_det).for_each(|v, &ld| *v = -0.5 * (constant + *v) + ld);
    });
    log_prob
}

/// `1/√v` of positive variances; an error if any is not positive.
fn inverse_sqrt<D: ndarray::Dimension>(v: &ndarray::Array<f64, D>) -> Result<ndarray::Array<f64, D>> {
    if v.iter().any(|&c| c.is_nan() || c <= 0.0) {
        return Err(Error::input(ILL_DEFINED));
    }
    Ok(v.mapv(|c| 1.0 / c.sqrt()))
}

/// The lower Cholesky factor `L` of a symmetric matrix (`A = L Lᵀ`), or `None` when it is not
/// (numerically) positive definite.
fn cholesky(a: ArrayView2<'_, f64>) -> Option<Array2<f64>> {
    let d = a.nrows();
    let mut l = Array2::<f64>::zeros((d, d));
    for j in 0..d {
        let mut diag = a[[j, j]];
        for p in 0..j {
            diag -= l[[j, p]] * l[[j, p]];
        }
        // What is left of the diagonal must be more than rounding noise: a rank-deficient matrix
        // can leave a tiny positive remainder here where LAPACK's order of operations leaves 0.
        if diag.is_nan() || diag <= a[[j, j]].abs() * d as f64 * f64::EPSILON {
            return None;
        }
        let ljj = diag.sqrt();
        l[[j, j]] = ljj;
        for i in j + 1..d {
            let mut v = a[[i, j]];
            for p in 0..j {
                v -= l[[i, p]] * l[[j, p]];
            }
            l[[i, j]] = v / ljj;
        }
    }
    Some(l)
}

/// The inverse of a lower-triangular matrix with a non-zero diagonal, by forward substitution
/// (what `solve_triangular(L, I, lower=True)` computes).
fn invert_lower(l: ArrayView2<'_, f64>) -> Array2<f64> {
    let d = l.nrows();
    let mut inv = Array2::<f64>::zeros((d, d));
    for c in 0..d {
        for i in c..d {
            let mut v = if i == c { 1.0 } else { 0.0 };
            for p in c..i {
                v -= l[[i, p]] * inv[[p, c]];
            }
            inv[[i, c]] = v / l[[i, i]];
        }
    }
    inv
}

fn stack(matrices: &[Array2<f64>]) -> Array3<f64> {
    let views: Vec<_> = matrices.iter().map(|m| m.view()).collect();
    ndarray::stack(Axis(0), &views).expect("matrices of one shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cholesky_factors_invert_the_covariance() {
        let cov = array![[4.0, 2.0, 0.6], [2.0, 2.0, 0.5], [0.6, 0.5, 3.0]];
        let full = CovarianceArrays::Full(cov.clone().insert_axis(Axis(0)));
        let u = full.precision_cholesky_of_covariances().unwrap();
        let CovarianceArrays::Full(p) = u.precisions_of_cholesky() else { unreachable!() };
        let p0: ArrayView2<'_, f64> = p.slice(s![0, .., ..]);
        let identity = p0.dot(&cov);
        for ((i, j), v) in identity.indexed_iter() {
            assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
        }
        // From the precisions, the same upper factor comes back, and the covariances too.
        let again = CovarianceArrays::Full(p).precision_cholesky_of_precisions().unwrap();
        assert!(again.values().zip(u.values()).all(|(a, b)| (a - b).abs() < 1e-12));
        let back = again.covariances_of_precision_cholesky();
        assert!(back.values().zip(cov.iter().copied()).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn singular_covariance_is_a_clear_error() {
        let full = CovarianceArrays::Tied(array![[1.0, 1.0], [1.0, 1.0]]);
        let err = full.precision_cholesky_of_covariances().unwrap_err().to_string();
        assert!(err.contains("reg_covar"), "{err}");
        assert!(CovarianceArrays::Spherical(array![1.0, 0.0]).precision_cholesky_of_covariances().is_err());
        assert_eq!("diag".parse::<CovarianceType>().unwrap(), CovarianceType::Diag);
        assert!("banana".parse::<CovarianceType>().is_err());
    }
}
