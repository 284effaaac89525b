//! Every clusterer stops at its next safe point once its [`CancelToken`] is cancelled and
//! returns [`Error::Cancelled`]: after the iteration (batch, EM step) that saw the cancel,
//! between k-means++ centres, between DBSCAN panels.

use std::sync::Mutex;

use ferrocluster_core::cluster::dbscan::Dbscan;
use ferrocluster_core::cluster::gmm::GaussianMixture;
use ferrocluster_core::cluster::kmeans::KMeans;
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Progress};
use ferrocluster_core::{CancelToken, Error};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Uniform noise: no cluster structure, so a fit takes many iterations to settle.
fn noise(n: usize, d: usize) -> Array2<f64> {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    Array2::from_shape_fn((n, d), |_| rng.random_range(0.0..1.0))
}

/// Fits with a token cancelled once `after` steps were reported; returns the steps reported
/// and the outcome.
fn fit_cancelled_after<C: Clusterer<f64>>(clusterer: &C, x: &Array2<f64>, after: usize) -> (Vec<usize>, bool) {
    let cancel = CancelToken::new();
    let seen = Mutex::new(Vec::new());
    let report = |p: Progress| {
        let mut seen = seen.lock().unwrap();
        seen.push(p.done);
        if seen.len() >= after {
            cancel.cancel();
        }
    };
    if after == 0 {
        cancel.cancel();
    }
    let outcome = clusterer.fit_cancellable(x.view(), None, &report, &cancel);
    let cancelled = matches!(outcome, Err(Error::Cancelled));
    (seen.into_inner().unwrap(), cancelled)
}

#[test]
fn lloyd_stops_after_the_iteration_that_saw_the_cancel() {
    let x = noise(2000, 4);
    let km = KMeans { n_clusters: 20, tol: 0.0, random_state: 1, ..KMeans::default() };
    let whole = km.fit(x.view(), None).unwrap();
    assert!(whole.n_iter > 3, "the uncancelled fit takes {} iterations", whole.n_iter);
    assert_eq!(fit_cancelled_after(&km, &x, 2), (vec![1, 2], true));
}

#[test]
fn kmeans_plusplus_stops_between_centres() {
    // Cancelled before the fit: k-means++ stops before its second centre, so no Lloyd
    // iteration runs (an iteration would be reported before the check after it).
    let km = KMeans { n_clusters: 20, random_state: 1, ..KMeans::default() };
    assert_eq!(fit_cancelled_after(&km, &noise(2000, 4), 0), (vec![], true));
    let mb = MiniBatchKMeans { n_clusters: 20, random_state: 1, ..MiniBatchKMeans::default() };
    assert_eq!(fit_cancelled_after(&mb, &noise(2000, 4), 0), (vec![], true));
}

#[test]
fn minibatch_stops_after_the_batch_that_saw_the_cancel() {
    let mb = MiniBatchKMeans { n_clusters: 5, batch_size: 64, random_state: 1, ..MiniBatchKMeans::default() };
    assert_eq!(fit_cancelled_after(&mb, &noise(2000, 4), 3), (vec![1, 2, 3], true));
}

#[test]
fn gmm_stops_after_the_em_step_that_saw_the_cancel() {
    let gmm = GaussianMixture { n_components: 3, tol: 0.0, random_state: 1, ..GaussianMixture::default() };
    assert_eq!(fit_cancelled_after(&gmm, &noise(500, 3), 2), (vec![1, 2], true));
}

#[test]
fn dbscan_skips_the_panels_left_once_cancelled() {
    let (seen, cancelled) = fit_cancelled_after(&Dbscan { eps: 0.05, min_samples: 5 }, &noise(5000, 2), 0);
    assert!(cancelled && seen.is_empty(), "{seen:?}");
}

#[test]
fn an_uncancelled_token_changes_nothing() {
    let x = noise(600, 3);
    let km = KMeans { n_clusters: 4, random_state: 2, ..KMeans::default() };
    let with_token = km.fit_cancellable(x.view(), None, &|_| {}, &CancelToken::new()).unwrap();
    assert_eq!(with_token, km.fit(x.view(), None).unwrap());
}
