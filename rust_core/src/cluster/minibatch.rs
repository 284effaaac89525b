//! Mini-batch k-means, like scikit-learn's MiniBatchKMeans.
//!
//! Centres are initialised on a random subset (`init_size` rows, best of `n_init` by inertia on
//! a validation subset), then moved towards the means of random batches with per-centre
//! learning rates (counts), low-count centres being reassigned to random batch rows; an
//! exponentially weighted average of the batch inertia decides early stopping. Final labels
//! and inertia are computed over all the data, as scikit-learn's `compute_labels=True`.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::kmeans::{
    assign, check_common, default_trials, given_centres, inertia, plusplus, random, rows_of, total_weight, Data,
    KMeansInit, KMeansModel, Kernel,
};
use super::{validate_data, Clusterer, Progress};
use crate::{CancelToken, Error, Real, Result};

/// Mini-batch k-means, equal in algorithm to scikit-learn's `MiniBatchKMeans`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MiniBatchKMeans {
    /// Number of clusters (k).
    pub n_clusters: usize,
    /// How the initial centres are chosen (on `init_size` random rows).
    pub init: KMeansInit,
    /// Maximum number of passes over the data (in batches).
    pub max_iter: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Early stop when the squared centre change of a batch is at most `tol` times the mean
    /// feature variance (0 disables it).
    pub tol: f64,
    /// Early stop after this many batches without improvement of the smoothed inertia
    /// (`None` disables it).
    pub max_no_improvement: Option<usize>,
    /// Rows used to initialise (`None`: 3 × batch size, at least 3 × k).
    pub init_size: Option<usize>,
    /// Number of initialisations tried (`None` is "auto": 3 for random, 1 otherwise).
    pub n_init: Option<usize>,
    /// Centres with fewer than this fraction of the largest count are reassigned.
    pub reassignment_ratio: f64,
    /// Seed of the random number generator.
    pub random_state: u64,
}

impl Default for MiniBatchKMeans {
    fn default() -> Self {
        MiniBatchKMeans {
            n_clusters: 8,
            init: KMeansInit::KMeansPlusPlus,
            max_iter: 100,
            batch_size: 1024,
            tol: 0.0,
            max_no_improvement: Some(10),
            init_size: None,
            n_init: None,
            reassignment_ratio: 0.01,
            random_state: 0,
        }
    }
}

impl MiniBatchKMeans {
    /// Mini-batch k-means with `n_clusters` clusters and scikit-learn's defaults otherwise.
    pub fn new(n_clusters: usize) -> Self {
        MiniBatchKMeans { n_clusters, ..Self::default() }
    }

    /// Checks the parameters on their own (the data is checked by `fit`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first bad parameter.
    pub fn validate(&self) -> Result<()> {
        check_common(self.n_clusters, &self.init, self.n_init, self.max_iter, self.tol)?;
        if self.batch_size == 0 {
            return Err(Error::parameter("batch_size", "must be at least 1, got 0"));
        }
        if self.init_size == Some(0) {
            return Err(Error::parameter("init_size", "must be at least 1 (or None), got 0"));
        }
        if !(self.reassignment_ratio >= 0.0 && self.reassignment_ratio.is_finite()) {
            return Err(Error::parameter(
                "reassignment_ratio",
                format!("must be a finite number >= 0, got {}", self.reassignment_ratio),
            ));
        }
        Ok(())
    }

    fn runs(&self) -> usize {
        match (&self.init, self.n_init) {
            (KMeansInit::Centres(_), _) => 1,
            (_, Some(n)) => n,
            (KMeansInit::Random, None) => 3,
            (KMeansInit::KMeansPlusPlus, None) => 1,
        }
    }
}

/// Mean over the columns of their variance (two passes, f64).
fn mean_variance<T: Real>(x: ArrayView2<'_, T>) -> f64 {
    let n = x.nrows() as f64;
    let mean: Vec<f64> = x.axis_iter(Axis(1)).map(|c| c.iter().map(|v| v.to_f64_exact()).sum::<f64>() / n).collect();
    let var: f64 = x
        .axis_iter(Axis(1))
        .zip(&mean)
        .map(|(c, m)| c.iter().map(|v| (v.to_f64_exact() - m).powi(2)).sum::<f64>() / n)
        .sum();
    var / x.ncols() as f64
}

/// The rows `indices` of `data` (and their weights) as contiguous owned data.
fn subset<T: Real>(data: &Data<'_, T>, indices: &[usize]) -> (Array2<T>, Option<Vec<T>>) {
    (rows_of(data, indices), data.w.map(|w| indices.iter().map(|&i| w[i]).collect()))
}

/// scikit-learn's early-stopping heuristics (`_mini_batch_convergence`) and their state.
#[derive(Debug)]
struct Convergence {
    /// Smoothing factor of the average inertia: `2 × batch / (n + 1)`, at most 1.
    alpha: f64,
    /// Absolute tolerance on the squared centre shift of a batch (0: off).
    tol: f64,
    max_no_improvement: Option<usize>,
    ewa_inertia: Option<f64>,
    ewa_inertia_min: Option<f64>,
    no_improvement: usize,
}

impl Convergence {
    fn new(n: usize, batch: usize, tol: f64, max_no_improvement: Option<usize>) -> Self {
        let alpha = (batch as f64 * 2.0 / (n as f64 + 1.0)).min(1.0);
        Convergence { alpha, tol, max_no_improvement, ewa_inertia: None, ewa_inertia_min: None, no_improvement: 0 }
    }

    /// Whether to stop after batch `step` (0-based) with squared centre shift `shift` and mean
    /// inertia `batch_inertia`.
    fn stop(&mut self, step: usize, shift: f64, batch_inertia: f64) -> bool {
        // The first batch's inertia comes from the initialisation: ignored.
        if step == 0 {
            return false;
        }
        let ewa = self.ewa_inertia.map_or(batch_inertia, |e| e * (1.0 - self.alpha) + batch_inertia * self.alpha);
        self.ewa_inertia = Some(ewa);
        if self.tol > 0.0 && shift <= self.tol {
            return true;
        }
        if self.ewa_inertia_min.is_none_or(|m| ewa < m) {
            self.no_improvement = 0;
            self.ewa_inertia_min = Some(ewa);
        } else {
            self.no_improvement += 1;
        }
        self.max_no_improvement.is_some_and(|m| self.no_improvement >= m)
    }
}

impl<T: Real> Clusterer<T> for MiniBatchKMeans {
    type Model = KMeansModel<T>;

    /// Fits; `progress` sees stage `"batch"` with `total` the maximum number of batches.
    fn fit_cancellable(
        &self,
        x: ArrayView2<'_, T>,
        sample_weight: Option<ArrayView1<'_, T>>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &CancelToken,
    ) -> Result<KMeansModel<T>> {
        self.validate()?;
        validate_data(x, sample_weight, self.n_clusters)?;
        let (n, d, k) = (x.nrows(), x.ncols(), self.n_clusters);
        let given = match &self.init {
            KMeansInit::Centres(c) => Some(given_centres::<T>(c, d)?),
            _ => None,
        };
        let kernel = Kernel::detect();
        let xs = x.as_standard_layout();
        let w = sample_weight.map(|w| w.to_vec());
        let data = Data::new(xs.view(), w.as_deref());
        let total_weight = total_weight(&data)?;
        let batch = self.batch_size.min(n);
        let init_size = match self.init_size {
            None if 3 * batch < k => 3 * k,
            None => 3 * batch,
            Some(s) if s < k => 3 * k,
            Some(s) => s,
        }
        .min(n);
        let tol = if self.tol > 0.0 { self.tol * mean_variance(xs.view()) } else { 0.0 };
        let mut rng = Pcg64Mcg::seed_from_u64(self.random_state);

        // Initialisation: the best of `runs` on random subsets, judged on a validation subset.
        let valid: Vec<usize> = (0..init_size).map(|_| rng.random_range(0..n)).collect();
        let (x_valid, w_valid) = subset(&data, &valid);
        let valid = Data::new(x_valid.view(), w_valid.as_deref());
        let mut best: Option<(f64, Array2<T>)> = None;
        for _ in 0..self.runs() {
            let centres = if let Some(c) = &given {
                c.clone()
            } else {
                let rows: Vec<usize> = (0..init_size).map(|_| rng.random_range(0..n)).collect();
                let (xi, wi) = subset(&data, &rows);
                // A small subset may hold fewer than k positively weighted rows: initialise it
                // unweighted then, rather than fail where the full data is fine.
                let wi = wi.filter(|w| w.iter().filter(|&&v| v > T::zero()).count() >= k);
                let sub = Data::new(xi.view(), wi.as_deref());
                let chosen = match self.init {
                    KMeansInit::Random => random(&sub, k, &mut rng)?,
                    _ => plusplus(kernel, &sub, k, default_trials(k), &mut rng, cancel)?,
                };
                rows_of(&sub, &chosen)
            };
            let labels = assign(kernel, &valid, &centres);
            let score = inertia(kernel, &valid, &centres, &labels);
            if best.as_ref().is_none_or(|(b, _)| score < *b) {
                best = Some((score, centres));
            }
        }
        let mut centres = best.expect("at least one run").1;

        // Batches are drawn with probability proportional to the weights, then count once each.
        let cumulative: Option<Vec<f64>> = w.as_ref().map(|w| {
            w.iter()
                .scan(0.0, |s, v| {
                    *s += v.to_f64_exact();
                    Some(*s)
                })
                .collect()
        });
        let draw = |rng: &mut Pcg64Mcg| match &cumulative {
            None => rng.random_range(0..n),
            Some(c) => {
                let target = rng.random::<f64>() * total_weight;
                c.partition_point(|&s| s <= target).min(n - 1)
            }
        };
        let n_steps = self.max_iter * n / batch;
        let mut counts = vec![0.0f64; k];
        let mut since_reassign = 0;
        let mut conv = Convergence::new(n, batch, tol, self.max_no_improvement);
        let mut xb = Array2::<T>::zeros((batch, d));
        let mut steps = 0;
        for step in 0..n_steps {
            steps = step + 1;
            for mut row in xb.outer_iter_mut() {
                row.assign(&x.row(draw(&mut rng)));
            }
            since_reassign += batch;
            let reassign = counts.contains(&0.0) || since_reassign >= 10 * k;
            if reassign {
                since_reassign = 0;
            }
            let batch_data = Data::new(xb.view(), None);
            let labels = assign(kernel, &batch_data, &centres);
            let batch_inertia = inertia(kernel, &batch_data, &centres, &labels);
            let mut new = update_centres(&centres, &xb, &labels, &mut counts);
            if reassign && self.reassignment_ratio > 0.0 {
                reassign_low_counts(&mut new, &xb, &mut counts, self.reassignment_ratio, &mut rng);
            }
            let shift = if tol > 0.0 {
                new.iter().zip(&centres).map(|(a, b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2)).sum()
            } else {
                0.0
            };
            centres = new;
            progress(Progress { done: steps, total: n_steps, stage: "batch" });
            cancel.check()?;
            if conv.stop(step, shift, batch_inertia / batch as f64) {
                break;
            }
        }
        let labels = assign(kernel, &data, &centres);
        let inertia = inertia(kernel, &data, &centres, &labels);
        Ok(KMeansModel {
            centres,
            labels: labels.iter().map(|&l| i64::from(l)).collect(),
            inertia,
            n_iter: (steps * batch).div_ceil(n),
        })
    }
}

/// Moves each centre with rows in the batch to the mean of its past (weighted by its count)
/// and new rows: scikit-learn's `_minibatch_update_dense` with unit weights.
fn update_centres<T: Real>(centres: &Array2<T>, xb: &Array2<T>, labels: &[u32], counts: &mut [f64]) -> Array2<T> {
    let (k, d) = centres.dim();
    let mut sums = vec![0.0; k * d];
    let mut seen = vec![0.0; k];
    for (row, &l) in xb.outer_iter().zip(labels) {
        let l = l as usize;
        seen[l] += 1.0;
        sums[l * d..(l + 1) * d].iter_mut().zip(row).for_each(|(s, v)| *s += v.to_f64_exact());
    }
    let mut new = centres.clone();
    for j in (0..k).filter(|&j| seen[j] > 0.0) {
        let total = counts[j] + seen[j];
        for (q, c) in new.row_mut(j).iter_mut().enumerate() {
            *c = T::from_f64_lossy((centres[[j, q]].to_f64_exact() * counts[j] + sums[j * d + q]) / total);
        }
        counts[j] = total;
    }
    new
}

/// Moves centres whose count is below `ratio` × the largest to random batch rows (at most half
/// a batch of them, the lowest counts first), resetting their counts to the smallest remaining
/// one: scikit-learn's random reassignment.
fn reassign_low_counts<T: Real>(
    centres: &mut Array2<T>,
    xb: &Array2<T>,
    counts: &mut [f64],
    ratio: f64,
    rng: &mut Pcg64Mcg,
) {
    let max = counts.iter().copied().fold(0.0, f64::max);
    let mut low: Vec<usize> = (0..counts.len()).filter(|&j| counts[j] < ratio * max).collect();
    let limit = xb.nrows() / 2;
    if low.len() > limit {
        low.sort_by(|&a, &b| counts[a].total_cmp(&counts[b]).then(a.cmp(&b)));
        low.truncate(limit);
        low.sort_unstable();
    }
    if low.is_empty() {
        return;
    }
    let rows = rand::seq::index::sample(rng, xb.nrows(), low.len());
    for (&j, i) in low.iter().zip(rows.iter()) {
        centres.row_mut(j).assign(&xb.row(i));
    }
    let kept = (0..counts.len()).filter(|j| !low.contains(j)).map(|j| counts[j]).fold(f64::INFINITY, f64::min);
    if kept.is_finite() {
        for &j in &low {
            counts[j] = kept;
        }
    }
}
