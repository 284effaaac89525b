//! The silhouette coefficient (Euclidean), equal to scikit-learn's `silhouette_samples` and
//! `silhouette_score`, without ever holding the `n × n` distance matrix.

use ndarray::{ArrayView2, Axis};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use rayon::prelude::*;

use super::distance::{Panels, LANES};
use super::labels::{encode_for_data, EncodedLabels};
use crate::{Error, Real, Result};

/// The silhouette coefficient of every sample: `(b − a) / max(a, b)` with `a` the mean distance
/// to the other members of its cluster and `b` the smallest mean distance to another cluster;
/// 0 for members of singleton clusters. Equal to `sklearn.metrics.silhouette_samples`.
///
/// Memory is `O(n · d)`: distances are computed tile by tile (rayon over blocks of rows) and
/// folded into per-cluster sums at once.
///
/// Errors on NaN/infinite values, a label count that differs from the row count, or fewer
/// than 2 or more than `n − 1` distinct labels.
pub fn silhouette_samples<T: Real>(x: ArrayView2<'_, T>, labels: &[i64]) -> Result<Vec<f64>> {
    let encoded = encode_for_data(x, labels)?;
    Ok(silhouette_of_encoded(&Panels::new(x), &encoded))
}

/// The mean silhouette coefficient over all samples, or over `sample_size` samples drawn
/// without replacement (seeded by `seed`) to bound the `O(n²)` cost on large data.
///
/// Without `sample_size` it equals `sklearn.metrics.silhouette_score`; the sampled estimate
/// draws different samples than scikit-learn's NumPy generator would.
pub fn silhouette_score<T: Real>(
    x: ArrayView2<'_, T>,
    labels: &[i64],
    sample_size: Option<usize>,
    seed: u64,
) -> Result<f64> {
    let samples = match sample_size {
        None => silhouette_samples(x, labels)?,
        Some(0) => return Err(Error::parameter("sample_size", "must be at least 1")),
        Some(m) if m >= labels.len() => silhouette_samples(x, labels)?,
        Some(m) => {
            encode_for_data(x, labels)?;
            let mut rng = Pcg64::seed_from_u64(seed);
            let mut picked = rand::seq::index::sample(&mut rng, labels.len(), m).into_vec();
            picked.sort_unstable();
            let sub_labels: Vec<i64> = picked.iter().map(|&i| labels[i]).collect();
            silhouette_samples(x.select(Axis(0), &picked).view(), &sub_labels)?
        }
    };
    Ok(samples.iter().sum::<f64>() / samples.len() as f64)
}

fn silhouette_of_encoded(panels: &Panels, labels: &EncodedLabels) -> Vec<f64> {
    let k = labels.n_labels();
    let per_panel: Vec<Vec<f64>> = (0..panels.n_panels())
        .into_par_iter()
        .map(|a| {
            // Sum of distances from each row of panel `a` to each cluster, folded over all rows
            // in index order so the result does not depend on the thread count.
            let mut sums = vec![0.0; LANES * k];
            for b in 0..panels.n_panels() {
                let tile = panels.tile(a, panels, b, f64::INFINITY).expect("no cutoff");
                for (r, tile_r) in tile.iter().enumerate() {
                    let sums_r = &mut sums[r * k..][..k];
                    for (j, &d2) in panels.rows(b).zip(tile_r) {
                        sums_r[labels.codes[j]] += d2.sqrt();
                    }
                }
            }
            panels.rows(a).map(|i| silhouette_of(i, &sums[(i % LANES) * k..][..k], labels)).collect()
        })
        .collect();
    per_panel.concat()
}

/// One sample's coefficient from its summed distances to each cluster.
fn silhouette_of(i: usize, sums: &[f64], labels: &EncodedLabels) -> f64 {
    let own = labels.codes[i];
    let size = labels.counts[own];
    if size == 1 {
        return 0.0;
    }
    let a = sums[own] / (size - 1) as f64;
    let b = sums
        .iter()
        .zip(&labels.counts)
        .enumerate()
        .filter(|&(c, _)| c != own)
        .map(|(_, (s, &n))| s / n as f64)
        .fold(f64::INFINITY, f64::min);
    let s = (b - a) / a.max(b);
    // scikit-learn maps 0/0 (duplicate points) to 0 with `nan_to_num`.
    if s.is_nan() {
        0.0
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};
    use proptest::prelude::*;

    /// The definition, literally: O(n²) memory, no tiling.
    fn reference(x: &Array2<f64>, labels: &[i64]) -> Vec<f64> {
        let n = labels.len();
        let dist = |i: usize, j: usize| (&x.row(i) - &x.row(j)).mapv(|v| v * v).sum().sqrt();
        (0..n)
            .map(|i| {
                let mean_to = |l: i64, skip_self: bool| {
                    let members: Vec<usize> = (0..n).filter(|&j| labels[j] == l && !(skip_self && j == i)).collect();
                    members.iter().map(|&j| dist(i, j)).sum::<f64>() / members.len() as f64
                };
                if labels.iter().filter(|&&l| l == labels[i]).count() == 1 {
                    return 0.0;
                }
                let a = mean_to(labels[i], true);
                let mut others: Vec<i64> = labels.iter().copied().filter(|&l| l != labels[i]).collect();
                others.dedup();
                let b = others.iter().map(|&l| mean_to(l, false)).fold(f64::INFINITY, f64::min);
                let s = (b - a) / a.max(b);
                if s.is_nan() {
                    0.0
                } else {
                    s
                }
            })
            .collect()
    }

    #[test]
    fn scikit_learn_value() {
        let x = array![[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [0.0, 4.0]];
        let s = silhouette_samples(x.view(), &[0, 0, 1, 0]).unwrap();
        // Printed by sklearn.metrics.silhouette_samples 1.9.
        let expected = [0.646_446_609_406_726_3, 0.687_652_476_222_787_9, 0.0, 0.313_593_527_016_355_84];
        for (a, b) in s.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-15, "{s:?} vs {expected:?}");
        }
    }

    #[test]
    fn sampling_all_rows_is_the_exact_score() {
        let x = Array2::from_shape_fn((30, 3), |(i, k)| ((i * 7 + k * 3) % 11) as f64);
        let labels: Vec<i64> = (0..30).map(|i| i % 3).collect();
        let exact = silhouette_score(x.view(), &labels, None, 0).unwrap();
        assert_eq!(silhouette_score(x.view(), &labels, Some(30), 1).unwrap(), exact);
        let sampled = silhouette_score(x.view(), &labels, Some(20), 1).unwrap();
        assert!((-1.0..=1.0).contains(&sampled));
        assert!(silhouette_score(x.view(), &labels, Some(0), 1).is_err());
    }

    proptest! {
        #[test]
        fn equals_the_definition_and_stays_in_range(
            values in prop::collection::vec(-5.0f64..5.0, 2 * 40),
            labels in prop::collection::vec(0i64..4, 40),
            n in 3usize..40,
        ) {
            let x = Array2::from_shape_vec((40, 2), values).unwrap().slice(ndarray::s![..n, ..]).to_owned();
            let labels = &labels[..n];
            match silhouette_samples(x.view(), labels) {
                Ok(s) => {
                    for (a, b) in s.iter().zip(reference(&x, labels)) {
                        prop_assert!((a - b).abs() < 1e-12);
                        prop_assert!((-1.0..=1.0).contains(a));
                    }
                }
                Err(_) => {
                    let mut distinct = labels.to_vec();
                    distinct.sort_unstable();
                    distinct.dedup();
                    prop_assert!(distinct.len() < 2 || distinct.len() >= n);
                }
            }
        }
    }
}
