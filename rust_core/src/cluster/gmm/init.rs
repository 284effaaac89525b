//! Initial responsibilities for EM, as scikit-learn's `BaseMixture._initialize_parameters`
//! draws them (with this crate's random generator, so the draws differ from NumPy's).

use ndarray::{Array2, ArrayView1, ArrayView2};
use rand::Rng;
use rand_pcg::Pcg64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::{Error, Result};

/// How the initial responsibilities are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum GmmInit {
    /// One-hot responsibilities from a k-means clustering (scikit-learn's default).
    #[default]
    #[serde(rename = "kmeans")]
    Kmeans,
    /// One-hot responsibilities on the k-means++ seeds, one seed per component.
    #[serde(rename = "k-means++")]
    KMeansPlusPlus,
    /// Uniform random responsibilities, normalised per sample.
    #[serde(rename = "random")]
    Random,
    /// One-hot responsibilities on distinct samples drawn uniformly.
    #[serde(rename = "random_from_data")]
    RandomFromData,
}

impl FromStr for GmmInit {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "kmeans" => Ok(GmmInit::Kmeans),
            "k-means++" => Ok(GmmInit::KMeansPlusPlus),
            "random" => Ok(GmmInit::Random),
            "random_from_data" => Ok(GmmInit::RandomFromData),
            _ => Err(Error::parameter(
                "init_params",
                format!("must be one of 'kmeans', 'k-means++', 'random', 'random_from_data', got '{s}'"),
            )),
        }
    }
}

/// The `n × k` initial responsibilities of `x` for `k` components.
pub(super) fn initial_responsibilities(
    x: ArrayView2<'_, f64>,
    k: usize,
    init: GmmInit,
    rng: &mut Pcg64,
) -> Array2<f64> {
    let n = x.nrows();
    let mut resp = Array2::zeros((n, k));
    match init {
        GmmInit::Kmeans => {
            for (i, &label) in kmeans_labels(x, k, rng).iter().enumerate() {
                resp[[i, label]] = 1.0;
            }
        }
        GmmInit::KMeansPlusPlus => {
            for (c, i) in kmeans_plusplus(x, k, rng).into_iter().enumerate() {
                resp[[i, c]] = 1.0;
            }
        }
        GmmInit::Random => {
            resp.mapv_inplace(|_| rng.random::<f64>());
            for mut row in resp.rows_mut() {
                let sum = row.sum();
                row /= sum;
            }
        }
        GmmInit::RandomFromData => {
            for (c, i) in rand::seq::index::sample(rng, n, k).into_iter().enumerate() {
                resp[[i, c]] = 1.0;
            }
        }
    }
    resp
}

fn sq_dist(a: ArrayView1<'_, f64>, b: ArrayView1<'_, f64>) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum()
}

/// Greedy k-means++ seeding (scikit-learn's: `2 + ⌊ln k⌋` candidates per seed, keep the one
/// that lowers the potential most); returns the seeds' row indices.
fn kmeans_plusplus(x: ArrayView2<'_, f64>, k: usize, rng: &mut Pcg64) -> Vec<usize> {
    let n = x.nrows();
    let n_trials = 2 + (k as f64).ln() as usize;
    let distances_to =
        |c: usize| -> Vec<f64> { x.outer_iter().into_par_iter().map(|row| sq_dist(row, x.row(c))).collect() };
    let mut seeds = vec![rng.random_range(0..n)];
    let mut closest = distances_to(seeds[0]);
    while seeds.len() < k {
        let total: f64 = closest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..n_trials {
            // Sample a row with probability proportional to its squared distance to the seeds.
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            let candidate = closest.iter().position(|&d| {
                acc += d;
                acc > target
            });
            let candidate = candidate.unwrap_or(n - 1);
            let merged: Vec<f64> = distances_to(candidate).iter().zip(&closest).map(|(a, b)| a.min(*b)).collect();
            let potential: f64 = merged.iter().sum();
            if best.as_ref().is_none_or(|b| potential < b.0) {
                best = Some((potential, candidate, merged));
            }
        }
        let (_, seed, merged) = best.expect("at least two trials");
        seeds.push(seed);
        closest = merged;
    }
    seeds
}

/// A small Lloyd's k-means from k-means++ seeds, until the labels settle (at most 300 rounds).
// TODO(lead): replace with `crate::cluster::kmeans::KMeans` (n_init = 1) once it is merged.
fn kmeans_labels(x: ArrayView2<'_, f64>, k: usize, rng: &mut Pcg64) -> Vec<usize> {
    let mut centres = x.select(ndarray::Axis(0), &kmeans_plusplus(x, k, rng));
    let mut labels: Vec<usize> = Vec::new();
    for _ in 0..300 {
        let nearest: Vec<usize> = x
            .outer_iter()
            .into_par_iter()
            .map(|row| {
                let dists = centres.outer_iter().map(|c| sq_dist(row, c));
                dists.enumerate().fold((0, f64::INFINITY), |b, (c, d)| if d < b.1 { (c, d) } else { b }).0
            })
            .collect();
        if nearest == labels {
            break;
        }
        labels = nearest;
        let mut sums = Array2::<f64>::zeros(centres.dim());
        let mut counts = vec![0usize; k];
        for (row, &c) in x.outer_iter().zip(&labels) {
            let mut s = sums.row_mut(c);
            s += &row;
            counts[c] += 1;
        }
        // An emptied cluster keeps its previous centre.
        for (c, &count) in counts.iter().enumerate().filter(|(_, &count)| count > 0) {
            centres.row_mut(c).assign(&(&sums.row(c) / count as f64));
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_init_gives_stochastic_responsibilities() {
        let x = Array2::from_shape_fn((40, 2), |(i, k)| (i % 4) as f64 * 10.0 + ((i * 7 + k) % 5) as f64 * 0.1);
        for init in [GmmInit::Kmeans, GmmInit::KMeansPlusPlus, GmmInit::Random, GmmInit::RandomFromData] {
            let resp = initial_responsibilities(x.view(), 4, init, &mut Pcg64::seed_from_u64(3));
            assert_eq!(resp.dim(), (40, 4));
            let col_sums = resp.sum_axis(ndarray::Axis(0));
            assert!(col_sums.iter().all(|&s| s > 0.0), "{init:?}: empty component {col_sums}");
            if init == GmmInit::Random || init == GmmInit::Kmeans {
                assert!(resp.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-12));
            }
        }
        // Four well-separated groups: k-means finds them.
        let labels = kmeans_labels(x.view(), 4, &mut Pcg64::seed_from_u64(0));
        for i in 0..40 {
            assert_eq!(labels[i], labels[i % 4]);
        }
        assert_eq!("k-means++".parse::<GmmInit>().unwrap(), GmmInit::KMeansPlusPlus);
        assert!("kmeans++".parse::<GmmInit>().is_err());
    }
}
