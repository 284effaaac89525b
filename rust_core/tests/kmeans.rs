//! KMeans and MiniBatchKMeans through the public API: semantics, errors, determinism.
//! (Agreement with scikit-learn itself is tested in python_api/tests/test_kmeans.py.)

use ferrocluster_core::cluster::kmeans::{kmeans_plusplus, KMeans, KMeansInit, KMeansModel};
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Fitted, Progress};
use ferrocluster_core::{Error, Real};
use ndarray::{array, Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// `n` points around `k` well-separated centres in `d` dimensions.
fn blobs<T: Real>(n: usize, d: usize, k: usize, seed: u64) -> Array2<T> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let centres = Array2::from_shape_fn((k, d), |_| rng.random_range(-20.0..20.0));
    Array2::from_shape_fn((n, d), |(i, q)| T::from_f64_lossy(centres[[i % k, q]] + rng.random_range(-1.0..1.0)))
}

/// `Σ w ‖x − c_label‖²` computed directly in f64.
fn inertia_of<T: Real>(x: ArrayView2<'_, T>, w: Option<&Array1<T>>, m: &KMeansModel<T>) -> f64 {
    x.outer_iter()
        .zip(&m.labels)
        .enumerate()
        .map(|(i, (row, &l))| {
            let c = m.centres.row(l as usize);
            let sq: f64 = row.iter().zip(c).map(|(a, b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2)).sum();
            w.map_or(1.0, |w| w[i].to_f64_exact()) * sq
        })
        .sum()
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn finds_separated_blobs_and_reports_consistent_results() {
    let x = blobs::<f64>(3000, 5, 6, 1);
    let model = KMeans::new(6).fit(x.view(), None).unwrap();
    // Rows i and i + 6 come from the same blob.
    for i in 0..x.nrows() - 6 {
        assert_eq!(model.labels[i], model.labels[i + 6]);
    }
    assert_eq!(model.labels.iter().collect::<std::collections::BTreeSet<_>>().len(), 6);
    assert!((model.inertia - inertia_of(x.view(), None, &model)).abs() <= 1e-9 * model.inertia);
    assert_eq!(model.predict(x.view()).unwrap(), model.labels);
    assert!((model.score(x.view(), None).unwrap() + model.inertia).abs() <= 1e-9 * model.inertia);
    let (labels, dists) = model.predict_with_distances(x.view()).unwrap();
    let t = model.transform(x.view()).unwrap();
    for i in 0..x.nrows() {
        let l = labels[i] as usize;
        assert!((t[[i, l]] * t[[i, l]] - dists[i]).abs() <= 1e-9 * (1.0 + dists[i]));
        assert!(t.row(i).iter().all(|&v| v >= t[[i, l]]));
    }
}

#[test]
fn f32_and_f64_agree_from_the_same_centres() {
    let x = blobs::<f64>(2000, 4, 5, 2);
    let init = x.select(Axis(0), &[0, 1, 2, 3, 4]);
    let km = KMeans { init: KMeansInit::Centres(init), tol: 0.0, ..KMeans::new(5) };
    let m64 = km.fit(x.view(), None).unwrap();
    let m32 = km.fit(x.mapv(|v| v as f32).view(), None).unwrap();
    assert_eq!(m64.labels, m32.labels);
    assert_eq!(m64.n_iter, m32.n_iter);
    assert!((m64.inertia - m32.inertia).abs() <= 1e-5 * m64.inertia);
}

#[test]
fn integer_weights_equal_repeated_rows() {
    let x = blobs::<f64>(400, 3, 4, 3);
    let mut rng = Pcg64Mcg::seed_from_u64(4);
    let w: Array1<f64> = (0..x.nrows()).map(|_| f64::from(rng.random_range(1..4u8))).collect();
    let repeated: Vec<usize> = (0..x.nrows()).flat_map(|i| std::iter::repeat_n(i, w[i] as usize)).collect();
    let xr = x.select(Axis(0), &repeated);
    // Centres that leave some rows ambiguous for the first iterations.
    let init = array![[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-5.0, 3.0, 0.0], [10.0, -10.0, 2.0]];
    let km = KMeans { init: KMeansInit::Centres(init), tol: 0.0, ..KMeans::new(4) };
    let weighted = km.fit(x.view(), Some(w.view())).unwrap();
    let plain = km.fit(xr.view(), None).unwrap();
    assert_eq!(weighted.n_iter, plain.n_iter);
    assert!((weighted.inertia - plain.inertia).abs() <= 1e-9 * plain.inertia);
    assert!(weighted.centres.iter().zip(&plain.centres).all(|(a, b)| (a - b).abs() <= 1e-9));
    assert_eq!(repeated.iter().map(|&i| weighted.labels[i]).collect::<Vec<_>>(), plain.labels);
}

#[test]
fn empty_clusters_take_the_farthest_points() {
    let x = blobs::<f64>(300, 2, 3, 5);
    let init = array![[1000.0, 1000.0], [x[[0, 0]], x[[0, 1]]], [-1000.0, 0.0]];
    let model = KMeans { init: KMeansInit::Centres(init), ..KMeans::new(3) }.fit(x.view(), None).unwrap();
    let mut sizes = [0; 3];
    model.labels.iter().for_each(|&l| sizes[l as usize] += 1);
    assert!(sizes.iter().all(|&s| s > 0), "{sizes:?}");
    assert!((model.inertia - inertia_of(x.view(), None, &model)).abs() <= 1e-9 * model.inertia);
}

#[test]
fn fits_do_not_depend_on_the_thread_count() {
    let x = blobs::<f32>(20_000, 7, 9, 6);
    let w: Array1<f32> = (0..x.nrows()).map(|i| 0.5 + (i % 7) as f32).collect();
    let fits = |threads| {
        in_pool(threads, || {
            let pp = KMeans { random_state: 3, ..KMeans::new(9) }.fit(x.view(), Some(w.view())).unwrap();
            let random =
                KMeans { init: KMeansInit::Random, n_init: Some(3), ..KMeans::new(9) }.fit(x.view(), None).unwrap();
            let mb = MiniBatchKMeans { batch_size: 500, ..MiniBatchKMeans::new(9) }.fit(x.view(), None).unwrap();
            let pp_init = kmeans_plusplus(x.view(), Some(w.view()), 9, None, 7).unwrap();
            (pp, random, mb, pp_init)
        })
    };
    assert_eq!(fits(1), fits(2));
    assert_eq!(fits(2), fits(3));
}

#[test]
fn progress_counts_iterations_of_every_run() {
    let x = blobs::<f64>(500, 2, 3, 7);
    let seen = std::sync::Mutex::new(Vec::new());
    let km = KMeans { init: KMeansInit::Random, n_init: Some(2), max_iter: 50, ..KMeans::new(3) };
    km.fit_observed(x.view(), None, &|p: Progress| seen.lock().unwrap().push(p)).unwrap();
    let seen = seen.into_inner().unwrap();
    assert!(seen.iter().all(|p| p.stage == "iteration" && p.total == 100 && p.done <= 100));
    assert!(seen.windows(2).all(|w| w[0].done < w[1].done));
    assert!(seen.iter().any(|p| p.done > 50), "the second run reports after the first");
}

#[test]
fn kmeans_plusplus_picks_distinct_rows_one_per_blob() {
    let x = blobs::<f64>(1000, 3, 5, 8);
    let (centres, indices) = kmeans_plusplus(x.view(), None, 5, None, 0).unwrap();
    assert_eq!(centres, x.select(Axis(0), &indices));
    let mut blobs: Vec<usize> = indices.iter().map(|i| i % 5).collect();
    blobs.sort_unstable();
    assert_eq!(blobs, [0, 1, 2, 3, 4]);
}

#[test]
fn minibatch_finds_separated_blobs() {
    let x = blobs::<f32>(20_000, 4, 5, 9);
    let model = MiniBatchKMeans::new(5).fit(x.view(), None).unwrap();
    for i in 0..x.nrows() - 5 {
        assert_eq!(model.labels[i], model.labels[i + 5]);
    }
    assert!((model.inertia - inertia_of(x.view(), None, &model)).abs() <= 1e-4 * model.inertia);
    assert!(model.n_iter >= 1 && model.n_iter <= 100);
    let full = KMeans::new(5).fit(x.view(), None).unwrap();
    assert!(model.inertia <= 1.01 * full.inertia);
}

#[test]
fn models_and_parameters_round_trip_through_json() {
    let km = KMeans { init: KMeansInit::Centres(array![[0.0, 1.0]]), n_init: Some(2), ..KMeans::new(1) };
    assert_eq!(serde_json::from_str::<KMeans>(&serde_json::to_string(&km).unwrap()).unwrap(), km);
    assert_eq!(serde_json::from_str::<KMeans>("{\"n_clusters\": 3}").unwrap(), KMeans::new(3));
    let mb = MiniBatchKMeans::new(4);
    assert_eq!(serde_json::from_str::<MiniBatchKMeans>(&serde_json::to_string(&mb).unwrap()).unwrap(), mb);
    let model = KMeans::new(2).fit(blobs::<f32>(50, 2, 2, 1).view(), None).unwrap();
    let back: KMeansModel<f32> = serde_json::from_str(&serde_json::to_string(&model).unwrap()).unwrap();
    assert_eq!(back, model);
}

fn assert_input_error<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str) {
    match r {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains(needle), "{msg:?} lacks {needle:?}"),
        other => panic!("expected an input error mentioning {needle:?}, got {other:?}"),
    }
}

fn assert_parameter_error<T: std::fmt::Debug>(r: Result<T, Error>, param: &str) {
    match r {
        Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, param),
        other => panic!("expected a parameter error for {param}, got {other:?}"),
    }
}

#[test]
fn bad_input_and_parameters_are_errors() {
    let x = blobs::<f64>(10, 2, 2, 1);
    assert_input_error(KMeans::new(11).fit(x.view(), None), "at least 11");
    assert_input_error(MiniBatchKMeans::new(11).fit(x.view(), None), "at least 11");
    assert_input_error(kmeans_plusplus(x.view(), None, 11, None, 0), "at least 11");
    let mut nan = x.clone();
    nan[[3, 1]] = f64::NAN;
    assert_input_error(KMeans::new(2).fit(nan.view(), None), "NaN");
    assert_input_error(KMeans::new(2).fit(Array2::<f64>::zeros((0, 2)).view(), None), "empty");
    assert_input_error(KMeans::new(2).fit(x.view(), Some(Array1::zeros(10).view())), "sum");
    assert_input_error(KMeans::new(2).fit(x.view(), Some(Array1::ones(3).view())), "sample_weight");
    assert_parameter_error(KMeans::new(0).fit(x.view(), None), "n_clusters");
    assert_parameter_error(KMeans { n_init: Some(0), ..KMeans::new(2) }.fit(x.view(), None), "n_init");
    assert_parameter_error(KMeans { tol: -1.0, ..KMeans::new(2) }.fit(x.view(), None), "tol");
    assert_parameter_error(KMeans { max_iter: 0, ..KMeans::new(2) }.fit(x.view(), None), "max_iter");
    let three_by_two = KMeansInit::Centres(Array2::zeros((3, 2)));
    assert_parameter_error(KMeans { init: three_by_two, ..KMeans::new(2) }.fit(x.view(), None), "init");
    let two_by_three = KMeansInit::Centres(Array2::zeros((2, 3)));
    assert_parameter_error(KMeans { init: two_by_three.clone(), ..KMeans::new(2) }.fit(x.view(), None), "init");
    assert_parameter_error(
        MiniBatchKMeans { init: two_by_three, ..MiniBatchKMeans::new(2) }.fit(x.view(), None),
        "init",
    );
    assert_parameter_error(
        MiniBatchKMeans { batch_size: 0, ..MiniBatchKMeans::new(2) }.fit(x.view(), None),
        "batch_size",
    );
    assert_parameter_error(
        MiniBatchKMeans { reassignment_ratio: f64::NAN, ..MiniBatchKMeans::new(2) }.fit(x.view(), None),
        "reassignment_ratio",
    );
    assert_parameter_error(kmeans_plusplus(x.view(), None, 2, Some(0), 0), "n_local_trials");
    let model = KMeans::new(2).fit(x.view(), None).unwrap();
    assert_input_error(model.predict(Array2::zeros((4, 3)).view()), "3 features");
    assert_input_error(model.transform(Array2::zeros((4, 1)).view()), "1 features");
    assert_input_error(model.score(nan.view(), None), "NaN");
}

#[test]
fn duplicate_points_and_one_cluster_are_fine() {
    let x = Array2::<f32>::ones((20, 3));
    let model = KMeans::new(4).fit(x.view(), None).unwrap();
    assert_eq!(model.inertia, 0.0);
    let model = MiniBatchKMeans::new(4).fit(x.view(), None).unwrap();
    assert_eq!(model.inertia, 0.0);
    let x = blobs::<f64>(100, 2, 2, 3);
    let model = KMeans::new(1).fit(x.view(), None).unwrap();
    let mean = x.mean_axis(Axis(0)).unwrap();
    assert!(model.centres.row(0).iter().zip(&mean).all(|(a, b)| (a - b).abs() <= 1e-12));
}
