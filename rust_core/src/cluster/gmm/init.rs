//! Initial responsibilities for EM, as scikit-learn's `BaseMixture._initialize_parameters`
//! draws them (with this crate's random generator, so the draws differ from NumPy's).

use ndarray::{Array2, ArrayView2};
use rand::Rng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::cluster::kmeans::{kmeans_plusplus, KMeans};
use crate::cluster::Clusterer;
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

/// The `n × k` initial responsibilities of `x` for `k` components. The k-means inits use
/// the crate's [`KMeans`] and [`kmeans_plusplus`], seeded from `rng`, as scikit-learn uses its own.
pub(super) fn initial_responsibilities(
    x: ArrayView2<'_, f64>,
    k: usize,
    init: GmmInit,
    rng: &mut Pcg64,
) -> Result<Array2<f64>> {
    let n = x.nrows();
    let mut resp = Array2::zeros((n, k));
    match init {
        GmmInit::Kmeans => {
            let kmeans = KMeans { n_clusters: k, n_init: Some(1), random_state: rng.random(), ..KMeans::default() };
            for (i, &label) in kmeans.fit(x, None)?.labels.iter().enumerate() {
                resp[[i, label as usize]] = 1.0;
            }
        }
        GmmInit::KMeansPlusPlus => {
            let (_, seeds) = kmeans_plusplus(x, None, k, None, rng.random())?;
            for (c, i) in seeds.into_iter().enumerate() {
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
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_init_gives_stochastic_responsibilities() {
        let x = Array2::from_shape_fn((40, 2), |(i, k)| (i % 4) as f64 * 10.0 + ((i * 7 + k) % 5) as f64 * 0.1);
        for init in [GmmInit::Kmeans, GmmInit::KMeansPlusPlus, GmmInit::Random, GmmInit::RandomFromData] {
            let resp = initial_responsibilities(x.view(), 4, init, &mut Pcg64::seed_from_u64(3)).unwrap();
            assert_eq!(resp.dim(), (40, 4));
            let col_sums = resp.sum_axis(ndarray::Axis(0));
            assert!(col_sums.iter().all(|&s| s > 0.0), "{init:?}: empty component {col_sums}");
            if init == GmmInit::Random || init == GmmInit::Kmeans {
                assert!(resp.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-12));
            }
        }
        // Four well-separated groups: the k-means init gives each its own component.
        let resp = initial_responsibilities(x.view(), 4, GmmInit::Kmeans, &mut Pcg64::seed_from_u64(0)).unwrap();
        for i in 0..40 {
            assert_eq!(resp.row(i), resp.row(i % 4));
        }
        assert_eq!("k-means++".parse::<GmmInit>().unwrap(), GmmInit::KMeansPlusPlus);
        assert!("kmeans++".parse::<GmmInit>().is_err());
    }
}
