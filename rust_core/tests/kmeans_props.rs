//! Property tests: any shape, k and data give a clean result or a clean error, never a panic.

use ferrocluster_core::cluster::kmeans::{KMeans, KMeansInit};
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Fitted};
use ndarray::{Array1, Array2};
use proptest::prelude::*;

/// Data with few distinct values, so duplicates and empty clusters are common.
fn data() -> impl Strategy<Value = (Array2<f64>, Option<Array1<f64>>)> {
    (1usize..40, 1usize..6).prop_flat_map(|(n, d)| {
        (
            proptest::collection::vec(-3i8..3, n * d).prop_map(move |v| {
                Array2::from_shape_vec((n, d), v.into_iter().map(|x| f64::from(x) * 1.5).collect()).unwrap()
            }),
            proptest::option::of(
                proptest::collection::vec(0u8..4, n).prop_map(|w| w.into_iter().map(f64::from).collect()),
            ),
        )
    })
}

fn check(
    x: &Array2<f64>,
    w: Option<&Array1<f64>>,
    k: usize,
    model: &ferrocluster_core::cluster::kmeans::KMeansModel<f64>,
) {
    assert_eq!(model.labels.len(), x.nrows());
    assert!(model.labels.iter().all(|&l| l >= 0 && (l as usize) < k));
    assert_eq!(model.centres.dim(), (k, x.ncols()));
    let direct: f64 = x
        .outer_iter()
        .zip(&model.labels)
        .enumerate()
        .map(|(i, (row, &l))| {
            let sq: f64 = row.iter().zip(model.centres.row(l as usize)).map(|(a, b)| (a - b).powi(2)).sum();
            w.map_or(1.0, |w| w[i]) * sq
        })
        .sum();
    assert!((model.inertia - direct).abs() <= 1e-9 * (1.0 + direct), "{} vs {direct}", model.inertia);
    assert_eq!(model.predict(x.view()).unwrap().len(), x.nrows());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn kmeans_never_panics((x, w) in data(), k in 1usize..12, random in any::<bool>(), seed in 0u64..4) {
        let init = if random { KMeansInit::Random } else { KMeansInit::KMeansPlusPlus };
        let km = KMeans { init, random_state: seed, ..KMeans::new(k) };
        let positive = w.as_ref().map_or(x.nrows(), |w| w.iter().filter(|&&v| v > 0.0).count());
        match km.fit(x.view(), w.as_ref().map(|w| w.view())) {
            Ok(model) => check(&x, w.as_ref(), k, &model),
            Err(e) => prop_assert!(k > x.nrows() || positive == 0 || (random && positive < k), "{e}"),
        }
    }

    #[test]
    fn given_centres_never_panic((x, w) in data(), k in 1usize..8, offset in -5.0f64..5.0) {
        let centres = Array2::from_shape_fn((k, x.ncols()), |(j, q)| offset + (j * 3 + q) as f64);
        let km = KMeans { init: KMeansInit::Centres(centres), tol: 0.0, ..KMeans::new(k) };
        match km.fit(x.view(), w.as_ref().map(|w| w.view())) {
            Ok(model) => check(&x, w.as_ref(), k, &model),
            Err(e) => prop_assert!(k > x.nrows(), "{e}"),
        }
    }

    #[test]
    fn minibatch_never_panics((x, w) in data(), k in 1usize..12, batch in 1usize..20) {
        let mb = MiniBatchKMeans { batch_size: batch, max_iter: 5, ..MiniBatchKMeans::new(k) };
        let positive = w.as_ref().map_or(x.nrows(), |w| w.iter().filter(|&&v| v > 0.0).count());
        match mb.fit(x.view(), w.as_ref().map(|w| w.view())) {
            Ok(model) => check(&x, w.as_ref(), k, &model),
            Err(e) => prop_assert!(k > x.nrows() || positive == 0, "{e}"),
        }
    }
}
