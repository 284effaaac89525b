"""fc.DBSCAN and fc.GaussianMixture against scikit-learn, the oracle."""

import warnings

import numpy as np
import pytest
from sklearn import cluster as skc
from sklearn import mixture as skmix
from sklearn.datasets import make_blobs, make_moons

import ferrocluster as fc


def dbscan_cases():
    rng = np.random.default_rng(0)
    x, _ = make_blobs(3000, 2, centers=6, cluster_std=1.0, random_state=0)
    yield "blobs-2d", x, 0.3, 5
    yield "blobs-2d-min1", x, 0.2, 1
    x16, _ = make_blobs(2000, 16, centers=5, cluster_std=1.0, random_state=1)
    yield "blobs-16d", x16, 3.0, 5
    moons, _ = make_moons(1500, noise=0.08, random_state=2)
    yield "moons", moons, 0.1, 8
    yield "uniform-3d", rng.random((2500, 3)), 0.06, 4
    yield "uniform-float32", rng.random((1500, 2)).astype(np.float32), 0.04, 3
    yield "grid-duplicates", np.repeat(np.arange(40.0).reshape(20, 2), 3, axis=0), 3.0, 4


DBSCAN_CASES = list(dbscan_cases())


def assert_dbscan_equal(ours, theirs):
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_array_equal(ours.core_sample_indices_, theirs.core_sample_indices_)
    np.testing.assert_array_equal(np.asarray(ours.components_, dtype=np.float64), theirs.components_)


@pytest.mark.parametrize("name,x,eps,min_samples", DBSCAN_CASES, ids=[c[0] for c in DBSCAN_CASES])
def test_dbscan_labels_equal_sklearn(name, x, eps, min_samples):
    ours = fc.DBSCAN(eps=eps, min_samples=min_samples).fit(x)
    theirs = skc.DBSCAN(eps=eps, min_samples=min_samples).fit(x.astype(np.float64))
    assert_dbscan_equal(ours, theirs)
    np.testing.assert_array_equal(fc.DBSCAN(eps=eps, min_samples=min_samples).fit_predict(x), theirs.labels_)


@pytest.mark.parametrize("weights", ["integers", "floats", "with-negative"])
def test_dbscan_sample_weight_equals_sklearn(weights):
    rng = np.random.default_rng(4)
    x, _ = make_blobs(1500, 2, centers=4, cluster_std=1.2, random_state=5)
    w = {
        "integers": rng.integers(0, 4, len(x)).astype(np.float64),
        "floats": rng.random(len(x)) * 2.0,
        "with-negative": rng.integers(-1, 4, len(x)).astype(np.float64),
    }[weights]
    ours = fc.DBSCAN(eps=0.25, min_samples=6).fit(x, sample_weight=w)
    theirs = skc.DBSCAN(eps=0.25, min_samples=6).fit(x, sample_weight=w)
    assert_dbscan_equal(ours, theirs)


def test_dbscan_without_core_samples_is_all_noise():
    x = np.arange(10.0).reshape(5, 2) * 10
    ours = fc.DBSCAN(eps=0.5, min_samples=2).fit(x)
    np.testing.assert_array_equal(ours.labels_, [-1] * 5)
    assert len(ours.core_sample_indices_) == 0
    assert np.asarray(ours.components_).shape == (0, 2)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: fc.DBSCAN(eps=0.0).fit(np.zeros((5, 2))), "eps"),
        (lambda: fc.DBSCAN(eps=-1.0).fit(np.zeros((5, 2))), "eps"),
        (lambda: fc.DBSCAN(min_samples=0).fit(np.zeros((5, 2))), "min_samples"),
        (lambda: fc.DBSCAN().fit(np.array([[0.0, np.nan]])), "(?i)nan"),
        (lambda: fc.DBSCAN().fit(np.zeros(5)), "2-D"),
        (lambda: fc.DBSCAN().fit(np.zeros((0, 2))), "(?i)empty"),
        (lambda: fc.DBSCAN().fit(np.zeros((5, 2)), sample_weight=np.ones(4)), "sample_weight"),
    ],
)
def test_dbscan_rejects_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def gmm_data():
    x, y = make_blobs(800, 3, centers=4, cluster_std=[1.0, 2.0, 0.5, 1.5], random_state=2)
    return x @ np.random.default_rng(0).normal(size=(3, 3)), y


def given_start(covariance_type, x, y, k=4):
    d = x.shape[1]
    precisions = {
        "full": np.array([np.eye(d) * (c + 1) for c in range(k)]),
        "tied": np.eye(d) * 0.5,
        "diag": np.ones((k, d)) * np.arange(1, k + 1)[:, None],
        "spherical": np.arange(1.0, k + 1),
    }[covariance_type]
    return dict(
        means_init=np.array([x[y == c].mean(axis=0) for c in range(k)]) + 0.3,
        weights_init=np.array([0.1, 0.2, 0.3, 0.4]),
        precisions_init=precisions,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("max_iter", [100, 3])
def test_gmm_from_the_same_start_equals_sklearn(covariance_type, max_iter):
    x, y = gmm_data()
    params = dict(n_components=4, covariance_type=covariance_type, tol=1e-8, max_iter=max_iter, **given_start(covariance_type, x, y))
    with warnings.catch_warnings():
        # max_iter=3 stops before convergence on purpose (a ConvergenceWarning, if any).
        warnings.simplefilter("ignore")
        ours = fc.GaussianMixture(**params).fit(x)
        theirs = skmix.GaussianMixture(**params).fit(x)
    for attr in ["weights_", "means_", "covariances_", "precisions_cholesky_"]:
        np.testing.assert_allclose(getattr(ours, attr), getattr(theirs, attr), rtol=1e-6, atol=1e-6, err_msg=attr)
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, abs=1e-6)
    assert (ours.n_iter_, ours.converged_) == (theirs.n_iter_, theirs.converged_)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=1e-6)
    np.testing.assert_allclose(ours.score_samples(x), theirs.score_samples(x), atol=1e-6)
    assert ours.score(x) == pytest.approx(theirs.score(x), abs=1e-6)
    assert ours.bic(x) == pytest.approx(theirs.bic(x), abs=1e-5)
    assert ours.aic(x) == pytest.approx(theirs.aic(x), abs=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_gmm_default_init_reaches_a_comparable_likelihood(covariance_type, init_params):
    # Different random draws than NumPy's: compare the optimum reached, not the path.
    x, _ = make_blobs(1000, 2, centers=3, random_state=7)
    params = dict(n_components=3, covariance_type=covariance_type, init_params=init_params, n_init=3, random_state=0)
    ours = fc.GaussianMixture(**params).fit(x)
    theirs = skmix.GaussianMixture(**params).fit(x)
    assert ours.converged_
    assert ours.score(x) == pytest.approx(theirs.score(x), abs=0.02)
    np.testing.assert_array_equal(ours.predict(x), ours.fit(x).predict(x))


def test_gmm_labels_match_predict_and_probabilities_sum_to_one():
    x, _ = gmm_data()
    gm = fc.GaussianMixture(n_components=4, random_state=1).fit(x)
    np.testing.assert_allclose(gm.predict_proba(x).sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(gm.predict(x), np.argmax(gm.predict_proba(x), axis=1))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda x: fc.GaussianMixture(n_components=801).fit(x), "n_components"),
        (lambda x: fc.GaussianMixture(covariance_type="banana").fit(x), "covariance_type"),
        (lambda x: fc.GaussianMixture(init_params="banana").fit(x), "init_params"),
        (lambda x: fc.GaussianMixture(reg_covar=-1.0).fit(x), "reg_covar"),
        (lambda x: fc.GaussianMixture(n_components=2, weights_init=[0.5, 0.6]).fit(x), "weights_init"),
        (lambda x: fc.GaussianMixture(n_components=2, means_init=np.zeros((3, 3))).fit(x), "means_init"),
        (lambda x: fc.GaussianMixture().fit(np.where(x > 1, np.nan, x)), "(?i)nan"),
        (lambda x: fc.GaussianMixture().fit(x[:1]), "n_samples"),
        (lambda x: fc.GaussianMixture().fit(x[:, 0]), "2-D"),
        (lambda x: fc.GaussianMixture(reg_covar=0.0).fit(np.ones((5, 3))), "reg_covar"),
    ],
)
def test_gmm_rejects_bad_input(make, match):
    x, _ = gmm_data()
    with pytest.raises(ValueError, match=match):
        make(x)
