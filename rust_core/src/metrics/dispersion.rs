//! Internal cluster-quality indices built on cluster centroids: Calinski–Harabasz and
//! Davies–Bouldin, equal to scikit-learn's.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::labels::{encode_for_data, EncodedLabels};
use crate::{Real, Result};

/// The Calinski–Harabasz index (variance ratio criterion): between-cluster dispersion over
/// within-cluster dispersion, each divided by its degrees of freedom. Higher is better; 1.0
/// when every cluster is a single repeated point. Equal to
/// `sklearn.metrics.calinski_harabasz_score` (computed in f64 for f32 input too).
///
/// Errors on NaN/infinite values, mismatched lengths, or fewer than 2 or more than `n − 1`
/// distinct labels.
pub fn calinski_harabasz_score<T: Real>(x: ArrayView2<'_, T>, labels: &[i64]) -> Result<f64> {
    let encoded = encode_for_data(x, labels)?;
    let x = x.mapv(Real::to_f64_exact);
    let centroids = centroids(x.view(), &encoded);
    let mean = x.mean_axis(Axis(0)).expect("X has rows");
    let extra: f64 =
        centroids.outer_iter().zip(&encoded.counts).map(|(c, &size)| size as f64 * sq_dist(c, mean.view())).sum();
    let intra: f64 = x.outer_iter().zip(&encoded.codes).map(|(row, &c)| sq_dist(row, centroids.row(c))).sum();
    let (n, k) = (labels.len() as f64, encoded.n_labels() as f64);
    Ok(if intra == 0.0 { 1.0 } else { extra * (n - k) / (intra * (k - 1.0)) })
}

/// The Davies–Bouldin index: the mean over clusters of the worst ratio of summed within-cluster
/// scatter to centroid separation. Lower is better, 0 is the minimum. Equal to
/// `sklearn.metrics.davies_bouldin_score`, including its 0.0 for all-zero scatters or
/// all-coincident centroids.
///
/// Errors as [`calinski_harabasz_score`].
pub fn davies_bouldin_score<T: Real>(x: ArrayView2<'_, T>, labels: &[i64]) -> Result<f64> {
    let encoded = encode_for_data(x, labels)?;
    let x = x.mapv(Real::to_f64_exact);
    let centroids = centroids(x.view(), &encoded);
    let k = encoded.n_labels();
    let mut scatter = Array1::<f64>::zeros(k);
    for (row, &c) in x.outer_iter().zip(&encoded.codes) {
        scatter[c] += sq_dist(row, centroids.row(c)).sqrt();
    }
    scatter /= &encoded.counts.iter().map(|&n| n as f64).collect::<Array1<f64>>();
    let separation = Array2::from_shape_fn((k, k), |(i, j)| sq_dist(centroids.row(i), centroids.row(j)).sqrt());
    // np.allclose(v, 0) in scikit-learn: every |v| ≤ 1e-8.
    if scatter.iter().all(|d| d.abs() <= 1e-8) || separation.iter().all(|d| d.abs() <= 1e-8) {
        return Ok(0.0);
    }
    let worst: f64 = (0..k)
        .map(|i| {
            (0..k)
                .map(|j| {
                    let sep = if separation[[i, j]] == 0.0 { f64::INFINITY } else { separation[[i, j]] };
                    (scatter[i] + scatter[j]) / sep
                })
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum();
    Ok(worst / k as f64)
}

/// The mean of each cluster's rows.
fn centroids(x: ArrayView2<'_, f64>, labels: &EncodedLabels) -> Array2<f64> {
    let mut sums = Array2::<f64>::zeros((labels.n_labels(), x.ncols()));
    for (row, &c) in x.outer_iter().zip(&labels.codes) {
        let mut s = sums.row_mut(c);
        s += &row;
    }
    for (mut s, &n) in sums.outer_iter_mut().zip(&labels.counts) {
        s /= n as f64;
    }
    sums
}

fn sq_dist(a: ArrayView1<'_, f64>, b: ArrayView1<'_, f64>) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn scikit_learn_values() {
        // Printed by scikit-learn 1.9 for this data and labeling.
        let x = array![[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [6.0, 5.0], [0.0, 4.0]];
        let labels = [0, 0, 1, 1, 0];
        assert!((calinski_harabasz_score(x.view(), &labels).unwrap() - CH).abs() < 1e-12);
        assert!((davies_bouldin_score(x.view(), &labels).unwrap() - DB).abs() < 1e-12);
    }

    const CH: f64 = 16.243_636_363_636_366;
    const DB: f64 = 0.319_619_391_590_895_6;

    #[test]
    fn degenerate_clusters() {
        let x = array![[1.0], [1.0], [3.0], [3.0]];
        assert_eq!(calinski_harabasz_score(x.view(), &[0, 0, 1, 1]).unwrap(), 1.0);
        assert_eq!(davies_bouldin_score(x.view(), &[0, 0, 1, 1]).unwrap(), 0.0);
        assert!(davies_bouldin_score(x.view(), &[0, 0, 0, 0]).is_err());
    }
}
