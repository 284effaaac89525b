use super::*;
use ndarray::{array, Array3};

fn toy() -> Array2<f64> {
    array![[0., 0.], [1., 0.5], [0.5, 1.2], [1.5, 1.], [6., 5.], [7., 6.5], [6.5, 5.], [5.5, 6.], [7., 5.], [3., 3.]]
}

fn started(covariance_type: CovarianceType, precisions: CovarianceArrays) -> GaussianMixture {
    GaussianMixture {
        n_components: 2,
        covariance_type,
        tol: 1e-10,
        weights_init: Some(vec![0.5, 0.5]),
        means_init: Some(array![[0., 0.], [5., 5.]]),
        precisions_init: Some(precisions),
        ..GaussianMixture::default()
    }
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < tol, "{a:?} vs {b:?}");
    }
}

#[test]
fn equals_scikit_learn_from_the_same_start() {
    // sklearn.mixture.GaussianMixture(2, means_init=..., weights_init=..., precisions_init=...,
    // tol=1e-10).fit(toy()) with scikit-learn 1.9.
    let full = CovarianceArrays::Full(Array3::from_shape_fn((2, 2, 2), |(k, i, j)| {
        f64::from(u8::from(i == j)) * (k + 1) as f64
    }));
    let m = started(CovarianceType::Full, full).fit(toy().view(), None).unwrap();
    assert_close(&m.weights, &[0.399_854_918_053_005_4, 0.600_145_081_946_994_6], 1e-12);
    assert_close(
        m.means.as_slice().unwrap(),
        &[0.749_905_038_541_916_1, 0.674_882_394_186_608, 5.832_167_733_360_549, 5.082_345_998_207_295],
        1e-12,
    );
    assert!((m.lower_bound - -2.859_821_384_352_249).abs() < 1e-12);
    assert_eq!((m.n_iter, m.converged), (7, true));
    assert_eq!(m.labels, vec![0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);

    let spherical = CovarianceArrays::Spherical(array![1., 2.]);
    let m = started(CovarianceType::Spherical, spherical).fit(toy().view(), None).unwrap();
    assert_close(&m.weights, &[0.399_999_053_287_259_54, 0.600_000_946_712_740_5], 1e-12);
    assert_close(
        m.means.as_slice().unwrap(),
        &[0.749_998_548_992_972_2, 0.674_999_511_163, 5.833_326_279_919_471, 5.083_326_703_525_469],
        1e-12,
    );
    assert!((m.lower_bound - -3.240_273_800_396_365_4).abs() < 1e-12);
    assert_eq!(m.n_iter, 5);
}

#[test]
fn em_never_lowers_the_likelihood() {
    for covariance_type in [CovarianceType::Full, CovarianceType::Tied, CovarianceType::Diag, CovarianceType::Spherical]
    {
        let bounds: Vec<f64> = (1..8)
            .map(|max_iter| {
                let gm = GaussianMixture { n_components: 3, covariance_type, max_iter, tol: 0.0, ..Default::default() };
                gm.fit(toy().view(), None).unwrap().lower_bound
            })
            .collect();
        assert!(bounds.windows(2).all(|w| w[1] >= w[0] - 1e-12), "{covariance_type}: {bounds:?}");
    }
}

#[test]
fn scoring_methods_agree_with_each_other() {
    let x = toy();
    let m = GaussianMixture { n_components: 2, covariance_type: CovarianceType::Diag, ..Default::default() }
        .fit(x.view(), None)
        .unwrap();
    assert_eq!(Fitted::<f64>::predict(&m, x.view()).unwrap(), m.labels);
    let proba = m.predict_proba(x.view()).unwrap();
    assert!(proba.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-12));
    let samples = m.score_samples(x.view()).unwrap();
    let score = m.score(x.view()).unwrap();
    assert!((score - samples.iter().sum::<f64>() / 10.0).abs() < 1e-12);
    assert!((score - m.lower_bound).abs() < 1e-2);
    // diag, 2 components in 2-d: 4 variances + 4 means + 1 weight.
    assert_eq!(m.n_parameters(), 9);
    let (bic, aic) = (m.bic(x.view()).unwrap(), m.aic(x.view()).unwrap());
    assert!((bic - aic - 9.0 * (10f64.ln() - 2.0)).abs() < 1e-9);
    assert!(m.score(array![[0f32, 0., 0.]].view()).is_err());
}

#[test]
fn more_initialisations_never_do_worse() {
    // The first initialisation draws the same numbers whatever n_init is.
    for init_params in [GmmInit::Kmeans, GmmInit::KMeansPlusPlus, GmmInit::Random, GmmInit::RandomFromData] {
        let gm = GaussianMixture { n_components: 3, init_params, random_state: 7, ..Default::default() };
        let one = gm.fit(toy().view(), None).unwrap();
        let five = GaussianMixture { n_init: 5, ..gm }.fit(toy().view(), None).unwrap();
        assert!(five.lower_bound >= one.lower_bound, "{init_params:?}");
    }
}

#[test]
fn max_iter_zero_keeps_the_initial_parameters() {
    let spherical = CovarianceArrays::Spherical(array![1., 2.]);
    let m = GaussianMixture { max_iter: 0, ..started(CovarianceType::Spherical, spherical) }
        .fit(toy().view(), None)
        .unwrap();
    assert_eq!((m.n_iter, m.converged, m.lower_bound), (0, false, f64::NEG_INFINITY));
    assert_close(&m.covariances.values().collect::<Vec<_>>(), &[1., 0.5], 1e-15);
    assert_eq!(m.means, array![[0., 0.], [5., 5.]]);
}

#[test]
fn bad_input_and_parameters_are_clear_errors() {
    let x = toy();
    let fit = |gm: GaussianMixture| gm.fit(x.view(), None).unwrap_err().to_string();
    assert!(fit(GaussianMixture { n_components: 11, ..Default::default() }).contains("n_samples >= n_components"));
    assert!(fit(GaussianMixture { n_components: 0, ..Default::default() }).contains("n_components"));
    assert!(fit(GaussianMixture { reg_covar: -1.0, ..Default::default() }).contains("reg_covar"));
    assert!(fit(GaussianMixture { weights_init: Some(vec![0.5, 0.6]), n_components: 2, ..Default::default() })
        .contains("weights_init"));
    assert!(fit(GaussianMixture {
        precisions_init: Some(CovarianceArrays::Spherical(array![1.0])),
        ..Default::default()
    })
    .contains("layout"));
    let not_positive = CovarianceArrays::Tied(array![[1.0, 2.0], [2.0, 1.0]]);
    assert!(fit(GaussianMixture {
        covariance_type: CovarianceType::Tied,
        precisions_init: Some(not_positive),
        ..Default::default()
    })
    .contains("positive-definite"));
    // Collapsed samples without regularisation: a singular covariance.
    let collapsed = array![[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]];
    let err = GaussianMixture { reg_covar: 0.0, ..Default::default() }.fit(collapsed.view(), None).unwrap_err();
    assert!(err.to_string().contains("reg_covar"), "{err}");
    assert!(GaussianMixture::default().fit(array![[f64::NAN, 0.0], [0.0, 0.0]].view(), None).is_err());
    assert!(GaussianMixture::default().fit(array![[0.0]].view(), None).is_err());
    let w = Array1::<f64>::ones(10);
    assert!(GaussianMixture::default().fit(x.view(), Some(w.view())).is_err());
}

#[test]
fn parameters_deserialize_with_scikit_learn_names() {
    let gm: GaussianMixture =
        serde_json::from_str(r#"{"n_components": 3, "covariance_type": "diag", "init_params": "k-means++"}"#).unwrap();
    assert_eq!(gm.covariance_type, CovarianceType::Diag);
    assert_eq!(gm.init_params, GmmInit::KMeansPlusPlus);
    assert_eq!(gm.max_iter, 100);
}
