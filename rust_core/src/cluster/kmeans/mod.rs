//! k-means with scikit-learn's semantics on a fused, tiled, SIMD distance kernel.
//!
//! [`KMeans`] follows scikit-learn 1.9's `KMeans(algorithm="lloyd")`: the data is centred,
//! initial centres come from greedy k-means++ (or random rows, or given centres), Lloyd
//! iterations stop when labels are unchanged or the centres move less than `tol` times the mean
//! feature variance, empty clusters take the farthest points, and of `n_init` runs the one with
//! the lowest inertia wins. Every iteration is one pass over X: the kernel computes
//! `‖c‖² − 2 x·c` in registers, keeps the argmin and sums each row into its cluster.
//!
//! ```
//! use ferrocluster_core::cluster::kmeans::KMeans;
//! use ferrocluster_core::cluster::{Clusterer, Fitted};
//! use ndarray::array;
//!
//! let x = array![[0.0f32, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]];
//! let model = KMeans::new(2).fit(x.view(), None).unwrap();
//! assert_eq!(model.labels()[0], model.labels()[1]);
//! assert_ne!(model.labels()[0], model.labels()[2]);
//! assert_eq!(model.predict(array![[5.0f32, 4.9]].view()).unwrap()[0], model.labels()[2]);
//! ```

mod compact;
mod init;
mod kernel;
mod lloyd;

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use init::kmeans_plusplus;
pub(crate) use init::{default_trials, plusplus, random, total_weight};
pub(crate) use kernel::Kernel;
pub(crate) use lloyd::{assign, average, inertia, label_sq_dists, move_point, pass, Data, DataView, Then};

use super::{first_non_finite_row, non_finite, validate_data, validate_shape, Clusterer, Fitted, Progress};
use crate::{CancelToken, Error, Real, Result};

/// How the initial centres are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KMeansInit {
    /// Greedy k-means++ (scikit-learn's default `"k-means++"`).
    KMeansPlusPlus,
    /// `n_clusters` distinct rows drawn with probability proportional to their weight.
    Random,
    /// These centres (`n_clusters × n_features`), used as given (one run).
    Centres(Array2<f64>),
}

/// k-means clustering (Lloyd's algorithm), equal to scikit-learn's `KMeans(algorithm="lloyd")`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KMeans {
    /// Number of clusters (k).
    pub n_clusters: usize,
    /// How the initial centres are chosen.
    pub init: KMeansInit,
    /// Number of runs from different initial centres, the best (lowest inertia) kept; `None`
    /// is scikit-learn's `"auto"`: 1 for k-means++ and given centres, 10 for random.
    pub n_init: Option<usize>,
    /// Maximum number of Lloyd iterations per run.
    pub max_iter: usize,
    /// Convergence when the squared centre shift is at most `tol` times the mean feature
    /// variance (0: only when labels stop changing).
    pub tol: f64,
    /// Seed of the random number generator (fits are deterministic for a seed).
    pub random_state: u64,
}

impl Default for KMeans {
    fn default() -> Self {
        KMeans {
            n_clusters: 8,
            init: KMeansInit::KMeansPlusPlus,
            n_init: None,
            max_iter: 300,
            tol: 1e-4,
            random_state: 0,
        }
    }
}

impl KMeans {
    /// k-means with `n_clusters` clusters and scikit-learn's defaults otherwise.
    pub fn new(n_clusters: usize) -> Self {
        KMeans { n_clusters, ..Self::default() }
    }

    /// Checks the parameters on their own (the data is checked by `fit`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first bad parameter.
    pub fn validate(&self) -> Result<()> {
        check_common(self.n_clusters, &self.init, self.n_init, self.max_iter, self.tol)
    }

    fn runs(&self) -> usize {
        match (&self.init, self.n_init) {
            (KMeansInit::Centres(_), _) => 1,
            (_, Some(n)) => n,
            (KMeansInit::Random, None) => 10,
            (KMeansInit::KMeansPlusPlus, None) => 1,
        }
    }
}

/// The parameter checks KMeans and MiniBatchKMeans share.
pub(crate) fn check_common(
    k: usize,
    init: &KMeansInit,
    n_init: Option<usize>,
    max_iter: usize,
    tol: f64,
) -> Result<()> {
    if k == 0 {
        return Err(Error::parameter("n_clusters", "must be at least 1, got 0"));
    }
    if n_init == Some(0) {
        return Err(Error::parameter("n_init", "must be at least 1 (or None for \"auto\"), got 0"));
    }
    if max_iter == 0 {
        return Err(Error::parameter("max_iter", "must be at least 1, got 0"));
    }
    if !(tol >= 0.0 && tol.is_finite()) {
        return Err(Error::parameter("tol", format!("must be a finite number >= 0, got {tol}")));
    }
    if let KMeansInit::Centres(c) = init {
        if c.nrows() != k {
            return Err(Error::parameter(
                "init",
                format!("the initial centres have {} rows but n_clusters={k}", c.nrows()),
            ));
        }
        if c.iter().any(|v| !v.is_finite()) {
            return Err(Error::parameter("init", "the initial centres contain NaN or infinity"));
        }
    }
    Ok(())
}

/// Given initial centres as `T`, checked against the data's width.
pub(crate) fn given_centres<T: Real>(c: &Array2<f64>, d: usize) -> Result<Array2<T>> {
    if c.ncols() != d {
        return Err(Error::parameter("init", format!("the initial centres have {} features but X has {d}", c.ncols())));
    }
    Ok(c.mapv(T::from_f64_lossy))
}

/// Rows `indices` of the data as a centre matrix.
pub(crate) fn rows_of<'a, T: Real>(data: impl Into<DataView<'a, T>>, indices: &[usize]) -> Array2<T> {
    let data = data.into();
    Array2::from_shape_fn((indices.len(), data.d), |(j, q)| data.value(indices[j], q))
}

/// Whether two labellings are equal up to a renaming of the clusters (scikit-learn's
/// `_is_same_clustering`).
fn same_clustering(a: &[u32], b: &[u32], k: usize) -> bool {
    let mut map = vec![u32::MAX; k];
    a.iter().zip(b).all(|(&a, &b)| {
        let m = &mut map[a as usize];
        if *m == u32::MAX {
            *m = b;
        }
        *m == b
    })
}

/// The column mean of `x` (summed in f64, rounded to `T`) and the mean of the column variances
/// of `x − mean` as the fit sees it; two reads of X, no copy. The first read also checks the
/// values: NaN and infinities carry into its sums, so only a chunk whose sums are not finite
/// is searched for the row to name.
///
/// # Errors
/// [`crate::Error::InvalidInput`] naming the first row that holds NaN or an infinity.
fn centre<T: Real>(x: &[T], d: usize) -> Result<(Vec<T>, f64)> {
    let n = x.len() / d;
    // Slices of whole rows, zipped lane by lane, so that the loops vectorise.
    let rows_per_chunk = lloyd::chunk_rows::<f64>(n, d);
    let chunk = rows_per_chunk * d;
    let sums: Vec<Vec<f64>> = x
        .par_chunks(chunk)
        .map(|rows| {
            let mut s = vec![0.0; d];
            for row in rows.chunks_exact(d) {
                s.iter_mut().zip(row).for_each(|(s, v)| *s += v.to_f64_exact());
            }
            s
        })
        .collect();
    for (ci, (s, rows)) in sums.iter().zip(x.chunks(chunk)).enumerate() {
        // A chunk of finite f64 values can still sum past f64's range: then no row is named.
        if let Some(r) = s.iter().any(|v| !v.is_finite()).then(|| first_non_finite_row(rows, d)).flatten() {
            return Err(non_finite(ci * rows_per_chunk + r));
        }
    }
    let mean: Vec<T> = (0..d).map(|q| T::from_f64_lossy(sums.iter().map(|s| s[q]).sum::<f64>() / n as f64)).collect();
    let moments: Vec<(Vec<f64>, Vec<f64>)> = x
        .par_chunks(chunk)
        .map(|rows| {
            let (mut s1, mut s2) = (vec![0.0; d], vec![0.0; d]);
            for row in rows.chunks_exact(d) {
                for ((&v, &m), (s1, s2)) in row.iter().zip(&mean).zip(s1.iter_mut().zip(s2.iter_mut())) {
                    let c = (v - m).to_f64_exact();
                    *s1 += c;
                    *s2 += c * c;
                }
            }
            (s1, s2)
        })
        .collect();
    let var = (0..d)
        .map(|q| {
            let m1 = moments.iter().map(|m| m.0[q]).sum::<f64>() / n as f64;
            moments.iter().map(|m| m.1[q]).sum::<f64>() / n as f64 - m1 * m1
        })
        .sum::<f64>()
        / d as f64;
    Ok((mean, var))
}

impl<T: Real> Clusterer<T> for KMeans {
    type Model = KMeansModel<T>;

    /// Fits; `progress` sees stage `"iteration"` with `total = max_iter × runs`.
    fn fit_cancellable(
        &self,
        x: ArrayView2<'_, T>,
        sample_weight: Option<ArrayView1<'_, T>>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &CancelToken,
    ) -> Result<KMeansModel<T>> {
        self.validate()?;
        // The values are checked by the first read of X, in `centre`.
        validate_shape(x, sample_weight, self.n_clusters)?;
        let (k, d) = (self.n_clusters, x.ncols());
        let given = match &self.init {
            KMeansInit::Centres(c) => Some(given_centres::<T>(c, d)?),
            _ => None,
        };
        let kernel = Kernel::detect();
        let x = x.as_standard_layout();
        let (mean, var) = centre(x.as_slice().expect("standard layout"), d)?;
        let w = sample_weight.map(|w| w.to_vec());
        let data = DataView::shifted(Data::new(x.view(), w.as_deref()), &mean);
        let mean = ArrayView1::from(&mean[..]);
        let tol = if self.tol == 0.0 { 0.0 } else { self.tol * var };
        let runs = self.runs();
        let total = self.max_iter * runs;
        let mut rng = Pcg64Mcg::seed_from_u64(self.random_state);
        let mut best: Option<lloyd::Run<T>> = None;
        for run in 0..runs {
            let centres = match (&self.init, &given) {
                (_, Some(c)) => c - &mean,
                (KMeansInit::Random, _) => rows_of(data, &random(&data, k, &mut rng)?),
                _ => rows_of(data, &plusplus(kernel, data, k, default_trials(k), &mut rng, cancel)?),
            };
            let report = |i: usize| progress(Progress { done: run * self.max_iter + i, total, stage: "iteration" });
            let r = lloyd::lloyd(kernel, data, centres, (self.max_iter, tol), &report, cancel)?;
            if best.as_ref().is_none_or(|b| r.inertia < b.inertia && !same_clustering(&r.labels, &b.labels, k)) {
                best = Some(r);
            }
        }
        let best = best.expect("at least one run");
        Ok(KMeansModel {
            centres: best.centres + mean,
            labels: best.labels.iter().map(|&l| i64::from(l)).collect(),
            inertia: best.inertia,
            n_iter: best.n_iter,
        })
    }
}

/// A fitted k-means model (also what [`crate::cluster::minibatch::MiniBatchKMeans`] returns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "T: Real + Serialize + serde::de::DeserializeOwned")]
pub struct KMeansModel<T> {
    /// Cluster centres, `n_clusters × n_features` (scikit-learn's `cluster_centers_`).
    pub centres: Array2<T>,
    /// Cluster of each training row (`labels_`).
    pub labels: Vec<i64>,
    /// Sum of weighted squared distances of the training rows to their centre (`inertia_`).
    pub inertia: f64,
    /// Iterations run (`n_iter_`).
    pub n_iter: usize,
}

impl<T: Real> Fitted<T> for KMeansModel<T> {
    fn labels(&self) -> &[i64] {
        &self.labels
    }

    fn predict(&self, x: ArrayView2<'_, T>) -> Result<Vec<i64>> {
        self.check(x, None)?;
        let (kernel, x, centres) = (Kernel::detect(), x.as_standard_layout(), self.standard_centres());
        let labels = assign(kernel, &Data::new(x.view(), None), &centres);
        Ok(labels.iter().map(|&l| i64::from(l)).collect())
    }
}

impl<T: Real> KMeansModel<T> {
    /// The centres in row-major layout (a copy only if they are not).
    fn standard_centres(&self) -> Array2<T> {
        self.centres.as_standard_layout().into_owned()
    }

    fn check(&self, x: ArrayView2<'_, T>, sample_weight: Option<ArrayView1<'_, T>>) -> Result<()> {
        validate_data(x, sample_weight, 1)?;
        if x.ncols() != self.centres.ncols() {
            return Err(Error::input(format!(
                "X has {} features, but the model was fitted with {} features",
                x.ncols(),
                self.centres.ncols()
            )));
        }
        Ok(())
    }

    /// The nearest centre of each row of `x` and its squared euclidean distance.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for empty or non-finite `x` or a feature count unlike the model's.
    pub fn predict_with_distances(&self, x: ArrayView2<'_, T>) -> Result<(Vec<i64>, Vec<T>)> {
        self.check(x, None)?;
        let (kernel, x, centres) = (Kernel::detect(), x.as_standard_layout(), self.standard_centres());
        let data = Data::new(x.view(), None);
        let labels = assign(kernel, &data, &centres);
        let dists = lloyd::label_sq_dists(kernel, &data, &centres, &labels);
        Ok((labels.iter().map(|&l| i64::from(l)).collect(), dists))
    }

    /// Euclidean distance of each row of `x` to each centre, `n × n_clusters` (scikit-learn's
    /// `transform`).
    ///
    /// # Errors
    /// As [`KMeansModel::predict_with_distances`].
    pub fn transform(&self, x: ArrayView2<'_, T>) -> Result<Array2<T>> {
        self.check(x, None)?;
        let kernel = Kernel::detect();
        let x = x.as_standard_layout();
        let centres = self.centres.as_standard_layout();
        let k = centres.nrows();
        let mut out = Array2::zeros((x.nrows(), k));
        out.axis_iter_mut(Axis(0)).into_par_iter().zip(x.axis_iter(Axis(0))).for_each(|(mut out, row)| {
            let row = row.to_slice().expect("standard layout");
            for (o, c) in out.iter_mut().zip(centres.outer_iter()) {
                *o = kernel.sq_dist(row, c.to_slice().expect("standard layout")).sqrt();
            }
        });
        Ok(out)
    }

    /// Minus the weighted inertia of `x` under the model (scikit-learn's `score`).
    ///
    /// # Errors
    /// As [`KMeansModel::predict_with_distances`], and for bad weights.
    pub fn score(&self, x: ArrayView2<'_, T>, sample_weight: Option<ArrayView1<'_, T>>) -> Result<f64> {
        self.check(x, sample_weight)?;
        let (_, dists) = self.predict_with_distances(x)?;
        let w = |i: usize| sample_weight.map_or(1.0, |w| w[i].to_f64_exact());
        Ok(-dists.iter().enumerate().map(|(i, v)| w(i) * v.to_f64_exact()).sum::<f64>())
    }
}
