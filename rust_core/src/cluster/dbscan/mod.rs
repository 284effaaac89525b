//! DBSCAN: density-based clusters with noise, equal to scikit-learn's.
//!
//! Neighbourhoods come from exact radius searches in a k-d tree of distance tiles, one
//! rayon task per tile of rows (no `n × n` matrix: memory is `O(n · mean neighbourhood
//! size)`); the clusters are then grown exactly as scikit-learn's `dbscan_inner` grows them, so
//! the labels are numbered identically.

mod kdtree;

use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{validate_data, Clusterer, Fitted, Progress};
use crate::metrics::distance::Panels;
use crate::{CancelToken, Error, Real, Result};
use kdtree::{BoundingBox, KdTree};

/// DBSCAN with the Euclidean metric: points with at least `min_samples` (weighted) points
/// within `eps` — themselves included — are core points; clusters are the connected groups of
/// core points plus the points within `eps` of them; the rest is noise (`-1`).
///
/// Equal to `sklearn.cluster.DBSCAN(eps, min_samples=min_samples)`, including `sample_weight`
/// (a point's weight counts toward the `min_samples` of each neighbourhood it is in; negative
/// weights are allowed, as in scikit-learn).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dbscan {
    /// The neighbourhood radius (inclusive); must be positive and finite.
    pub eps: f64,
    /// The (weighted) number of points within `eps` that makes a point core; at least 1.
    pub min_samples: usize,
}

impl Default for Dbscan {
    fn default() -> Self {
        Dbscan { eps: 0.5, min_samples: 5 }
    }
}

/// A fitted DBSCAN: the training labels and the core samples that define the clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbscanModel {
    /// The cluster of each training row, numbered as scikit-learn numbers them; `-1` is noise.
    pub labels: Vec<i64>,
    /// The indices of the core samples, increasing.
    pub core_sample_indices: Vec<usize>,
    /// The core samples' rows (`core_sample_indices.len() × n_features`), in f64.
    pub components: Array2<f64>,
    /// The radius the model was fitted with, used by [`Fitted::predict`].
    pub eps: f64,
}

impl<T: Real> Clusterer<T> for Dbscan {
    type Model = DbscanModel;

    fn fit_cancellable(
        &self,
        x: ArrayView2<'_, T>,
        sample_weight: Option<ArrayView1<'_, T>>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &CancelToken,
    ) -> Result<DbscanModel> {
        self.validate()?;
        validate_data(x, None, 1)?;
        let n = x.nrows();
        if u32::try_from(n).is_err() {
            return Err(Error::input(format!("DBSCAN handles at most {} samples, got {n}", u32::MAX)));
        }
        let weights = match sample_weight {
            None => None,
            Some(w) if w.len() != n => {
                return Err(Error::input(format!("sample_weight has {} values but X has {n} rows", w.len())))
            }
            Some(w) if w.iter().any(|v| !v.is_finite()) => {
                return Err(Error::input("sample_weight must be finite"));
            }
            Some(w) => Some(w.mapv(Real::to_f64_exact)),
        };

        let neighbourhoods = radius_neighbourhoods(&KdTree::new(x), self.eps * self.eps, progress, cancel)?;
        let min_samples = self.min_samples as f64;
        let is_core: Vec<bool> = neighbourhoods
            .iter()
            .map(|nb| match &weights {
                None => nb.len() as f64 >= min_samples,
                Some(w) => nb.iter().map(|&j| w[j as usize]).sum::<f64>() >= min_samples,
            })
            .collect();
        let labels = grow_clusters(&is_core, &neighbourhoods);
        let core_sample_indices: Vec<usize> = (0..n).filter(|&i| is_core[i]).collect();
        let components = x.select(Axis(0), &core_sample_indices).mapv(Real::to_f64_exact);
        Ok(DbscanModel { labels, core_sample_indices, components, eps: self.eps })
    }
}

impl Dbscan {
    fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::parameter("eps", format!("must be a positive finite number, got {}", self.eps)));
        }
        if self.min_samples == 0 {
            return Err(Error::parameter("min_samples", "must be at least 1"));
        }
        Ok(())
    }
}

/// For every row, the indices of the rows within squared distance `eps2` (itself included),
/// in no particular order: the cluster growth does not depend on it. Panels not started when
/// `cancel` is cancelled are skipped, and the search ends with [`Error::Cancelled`].
fn radius_neighbourhoods(
    tree: &KdTree,
    eps2: f64,
    progress: &(dyn Fn(Progress) + Sync),
    cancel: &CancelToken,
) -> Result<Vec<Vec<u32>>> {
    let panels = tree.panels();
    let n_panels = panels.n_panels();
    let done = AtomicUsize::new(0);
    let report_every = (n_panels / 100).max(1);
    let per_panel: Vec<Vec<Vec<u32>>> = (0..n_panels)
        .into_par_iter()
        .map(|a| {
            cancel.check()?;
            let mut lists: Vec<Vec<u32>> = panels.rows(a).map(|_| Vec::new()).collect();
            tree.within(panels, a, &tree.panel_bounds(a), eps2, |r, j, _| lists[r].push(j as u32));
            let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
            if finished.is_multiple_of(report_every) || finished == n_panels {
                progress(Progress { done: finished, total: n_panels, stage: "neighbourhoods" });
            }
            Ok(lists)
        })
        .collect::<Result<_>>()?;
    let mut neighbourhoods = vec![Vec::new(); panels.n_rows()];
    for (p, list) in per_panel.into_iter().flatten().enumerate() {
        neighbourhoods[tree.original_index(p)] = list;
    }
    Ok(neighbourhoods)
}

/// Labels clusters as scikit-learn's `dbscan_inner` does: seeds in index order, a depth-first
/// stack, points labelled when popped, only core points' neighbourhoods expanded.
fn grow_clusters(is_core: &[bool], neighbourhoods: &[Vec<u32>]) -> Vec<i64> {
    let mut labels = vec![-1i64; is_core.len()];
    let mut stack: Vec<usize> = Vec::new();
    let mut next_label = 0;
    for seed in 0..is_core.len() {
        if labels[seed] != -1 || !is_core[seed] {
            continue;
        }
        let mut i = seed;
        loop {
            if labels[i] == -1 {
                labels[i] = next_label;
                if is_core[i] {
                    stack.extend(neighbourhoods[i].iter().map(|&v| v as usize).filter(|&v| labels[v] == -1));
                }
            }
            match stack.pop() {
                Some(v) => i = v,
                None => break,
            }
        }
        next_label += 1;
    }
    labels
}

impl<T: Real> Fitted<T> for DbscanModel {
    fn labels(&self) -> &[i64] {
        &self.labels
    }

    /// Labels new rows with the cluster of their nearest core sample when it lies within `eps`
    /// (the lowest index on ties), else `-1`. scikit-learn's DBSCAN has no `predict`; this is
    /// the usual extension, and it gives every core sample its training label.
    fn predict(&self, x: ArrayView2<'_, T>) -> Result<Vec<i64>> {
        validate_data(x, None, 1)?;
        if x.ncols() != self.components.ncols() {
            return Err(Error::input(format!(
                "X has {} features but the model was fitted with {}",
                x.ncols(),
                self.components.ncols()
            )));
        }
        let queries = Panels::new(x);
        let x = x.mapv(Real::to_f64_exact);
        let cores = KdTree::new(self.components.view());
        let eps2 = self.eps * self.eps;
        let per_panel: Vec<Vec<i64>> = (0..queries.n_panels())
            .into_par_iter()
            .map(|a| {
                let rows = queries.rows(a);
                let mut best = vec![(f64::INFINITY, usize::MAX); rows.len()];
                cores.within(&queries, a, &BoundingBox::of(x.view(), rows), eps2, |r, c, d2| {
                    if (d2, c) < best[r] {
                        best[r] = (d2, c);
                    }
                });
                let label_of = |(_, c): (f64, usize)| self.core_sample_indices.get(c).map_or(-1, |&i| self.labels[i]);
                best.into_iter().map(label_of).collect()
            })
            .collect();
        Ok(per_panel.concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    fn fit(x: ArrayView2<'_, f64>, eps: f64, min_samples: usize, w: Option<ArrayView1<'_, f64>>) -> DbscanModel {
        Dbscan { eps, min_samples }.fit(x, w).unwrap()
    }

    /// DBSCAN from its definition: all pairwise distances, then the same growth.
    fn reference(x: ArrayView2<'_, f64>, eps: f64, min_samples: usize) -> Vec<i64> {
        let n = x.nrows();
        let nb: Vec<Vec<u32>> = (0..n)
            .map(|i| {
                (0..n)
                    .filter(|&j| {
                        x.row(i).iter().zip(x.row(j)).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() <= eps * eps
                    })
                    .map(|j| j as u32)
                    .collect()
            })
            .collect();
        let core: Vec<bool> = nb.iter().map(|l| l.len() >= min_samples).collect();
        grow_clusters(&core, &nb)
    }

    #[test]
    fn scikit_learn_labels() {
        // sklearn.cluster.DBSCAN(eps=1.5, min_samples=2) gives [0, 0, 0, -1, 1, 1, 0] with core
        // samples [0, 1, 2, 4, 5, 6]: the border rule and numbering order are exercised.
        let x = array![[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 10.0], [20.0, 0.0], [21.0, 0.0], [0.0, 1.0]];
        let m = fit(x.view(), 1.5, 2, None);
        assert_eq!(m.labels, vec![0, 0, 0, -1, 1, 1, 0]);
        assert_eq!(m.core_sample_indices, vec![0, 1, 2, 4, 5, 6]);
        assert_eq!(m.components.row(3).to_vec(), vec![20.0, 0.0]);
    }

    #[test]
    fn eps_is_inclusive_and_exact() {
        let x = array![[0.1], [0.4]];
        let eps = ((0.4f64 - 0.1) * (0.4 - 0.1)).sqrt();
        assert_eq!(fit(x.view(), eps, 2, None).labels, vec![0, 0]);
        assert_eq!(fit(x.view(), eps * (1.0 - 1e-15), 2, None).labels, vec![-1, -1]);
    }

    #[test]
    fn weights_count_toward_min_samples() {
        let x = array![[0.0], [0.3], [5.0]];
        let w = array![3.0, 1.0, 5.0];
        assert_eq!(fit(x.view(), 0.5, 4, Some(w.view())).labels, vec![0, 0, 1]);
        let w = array![3.0, -1.0, 5.0];
        let m = fit(x.view(), 0.5, 4, Some(w.view()));
        assert_eq!(m.labels, vec![-1, -1, 0]);
        assert_eq!(m.core_sample_indices, vec![2]);
    }

    #[test]
    fn predict_uses_nearest_core_within_eps() {
        let x = array![[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]];
        let m = fit(x.view(), 0.15, 3, None);
        assert_eq!(m.labels, vec![0, 0, 0, 1, 1, 1]);
        let p = Fitted::<f64>::predict(&m, array![[0.05], [5.22], [2.5], [0.1]].view()).unwrap();
        assert_eq!(p, vec![0, 1, -1, 0]);
        assert!(Fitted::<f64>::predict(&m, array![[0.0, 1.0]].view()).is_err());
    }

    #[test]
    fn bad_parameters_and_input() {
        let x = array![[0.0], [1.0]];
        assert!(Dbscan { eps: 0.0, min_samples: 1 }.fit(x.view(), None).is_err());
        assert!(Dbscan { eps: f64::NAN, min_samples: 1 }.fit(x.view(), None).is_err());
        assert!(Dbscan { eps: 1.0, min_samples: 0 }.fit(x.view(), None).is_err());
        assert!(Dbscan::default().fit(array![[f64::NAN]].view(), None).is_err());
        assert!(Dbscan::default().fit(x.view(), Some(array![1.0].view())).is_err());
    }

    proptest! {
        #[test]
        fn labels_are_a_valid_partition_equal_to_the_definition(
            values in prop::collection::vec(-3.0f64..3.0, 3 * 50),
            n in 1usize..50,
            eps in 0.05f64..2.0,
            min_samples in 1usize..6,
        ) {
            let x = Array2::from_shape_vec((50, 3), values).unwrap();
            let x = x.slice(ndarray::s![..n, ..]);
            let m = fit(x, eps, min_samples, None);
            prop_assert_eq!(&m.labels, &reference(x, eps, min_samples));
            // Labels are -1 or 0..k with every cluster non-empty and holding a core sample.
            let k = m.labels.iter().copied().max().unwrap_or(-1) + 1;
            for c in 0..k {
                prop_assert!(m.core_sample_indices.iter().any(|&i| m.labels[i] == c));
            }
            prop_assert!(m.labels.iter().all(|&l| (-1..k).contains(&l)));
            prop_assert!(m.core_sample_indices.iter().all(|&i| m.labels[i] >= 0));
            let p = Fitted::<f64>::predict(&m, x).unwrap();
            for &i in &m.core_sample_indices {
                prop_assert_eq!(p[i], m.labels[i]);
            }
        }
    }
}
