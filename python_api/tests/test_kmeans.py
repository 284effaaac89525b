"""fc.KMeans and fc.MiniBatchKMeans against live scikit-learn (the oracle)."""

import numpy as np
import pytest
from sklearn import cluster as skc
from sklearn.datasets import load_digits, make_blobs

import ferrocluster as fc

DTYPES = [np.float64, np.float32]


def _blobs():
    x, _ = make_blobs(n_samples=5000, n_features=8, centers=6, cluster_std=2.0, random_state=0)
    return x, 6


def _digits():
    return load_digits().data, 10


DATASETS = {"blobs": _blobs, "digits": _digits}


def _weights(n, dtype, seed=0):
    return np.random.RandomState(seed).uniform(0.5, 2.0, n).astype(dtype)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_same_initial_centres_give_sklearns_fit(dataset, dtype, weighted, tol):
    x, k = DATASETS[dataset]()
    x = x.astype(dtype)
    w = _weights(len(x), dtype) if weighted else None
    init, _ = skc.kmeans_plusplus(x, k, random_state=1)

    ours = fc.KMeans(k, init=init, n_init=1, tol=tol).fit(x, sample_weight=w)
    ref = skc.KMeans(k, init=init, n_init=1, tol=tol).fit(x, sample_weight=w)

    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
    scale = np.abs(ref.cluster_centers_).max()
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-5 * scale)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)

    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    ref_t = ref.transform(x)
    np.testing.assert_allclose(ours.transform(x), ref_t, rtol=1e-4, atol=1e-4 * ref_t.max())
    assert ours.score(x, sample_weight=w) == pytest.approx(ref.score(x, sample_weight=w), rel=1e-5)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_kmeans_plusplus_is_as_good_as_sklearns(dataset, dtype):
    x, k = DATASETS[dataset]()
    x = x.astype(dtype)
    ours = [fc.KMeans(k, random_state=s).fit(x).inertia_ for s in range(5)]
    ref = [skc.KMeans(k, random_state=s).fit(x).inertia_ for s in range(5)]
    assert np.median(ours) <= 1.01 * np.median(ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_init_with_several_runs_is_as_good_as_sklearns(dtype):
    x, k = _digits()
    x = x.astype(dtype)
    ours = fc.KMeans(k, init="random", random_state=0).fit(x).inertia_
    ref = np.median([skc.KMeans(k, init="random", random_state=s).fit(x).inertia_ for s in range(5)])
    assert ours <= 1.01 * ref


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("weighted", [False, True])
def test_minibatch_inertia_is_comparable_to_sklearns(dataset, weighted):
    x, k = DATASETS[dataset]()
    w = _weights(len(x), x.dtype) if weighted else None
    ours = [fc.MiniBatchKMeans(k, random_state=s).fit(x, sample_weight=w).inertia_ for s in range(5)]
    ref = [skc.MiniBatchKMeans(k, random_state=s).fit(x, sample_weight=w).inertia_ for s in range(5)]
    assert np.median(ours) <= 1.03 * np.median(ref)


def test_minibatch_from_given_centres_labels_all_data():
    x, k = _blobs()
    init, _ = skc.kmeans_plusplus(x, k, random_state=0)
    model = fc.MiniBatchKMeans(k, init=init, batch_size=256, random_state=0).fit(x)
    assert model.cluster_centers_.shape == (k, x.shape[1])
    np.testing.assert_array_equal(model.labels_, model.predict(x))
    assert 1 <= model.n_iter_ <= 100
    assert model.inertia_ == pytest.approx(-model.score(x), rel=1e-6)


@pytest.mark.parametrize("estimator", [fc.KMeans, fc.MiniBatchKMeans])
def test_estimator_api(estimator):
    x, k = _blobs()
    model = estimator(k, random_state=3).fit(x)
    assert model.labels_.shape == (len(x),)
    assert set(np.unique(model.labels_)) == set(range(k))
    np.testing.assert_array_equal(estimator(k, random_state=3).fit_predict(x), model.labels_)
    np.testing.assert_allclose(estimator(k, random_state=3).fit_transform(x), model.transform(x))
    np.testing.assert_array_equal(estimator(k, random_state=3).fit(x).cluster_centers_, model.cluster_centers_)
    assert model.transform(x[:7]).shape == (7, k)
    assert model.score(x) == pytest.approx(-model.inertia_, rel=1e-6)


def test_float32_stays_float32():
    x, k = _blobs()
    model = fc.KMeans(k, random_state=0).fit(x.astype(np.float32))
    assert model.cluster_centers_.dtype == np.float32
    assert model.transform(x[:3].astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("estimator", [fc.KMeans, fc.MiniBatchKMeans])
def test_bad_input_is_a_clear_error(estimator):
    x, _ = _blobs()
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[3, 2] = np.nan
        estimator(3).fit(bad)
    with pytest.raises(ValueError):
        estimator(3).fit(x[:, 0])
    with pytest.raises(ValueError, match="10"):
        estimator(10).fit(x[:4])
    with pytest.raises((TypeError, ValueError)):
        estimator(2).fit(np.array([["a", "b"], ["c", "d"], ["e", "f"]]))
    with pytest.raises(ValueError):
        estimator(0).fit(x)
    model = estimator(3, random_state=0).fit(x)
    with pytest.raises(ValueError, match="features"):
        model.predict(x[:, :3])
    with pytest.raises(ValueError, match="features"):
        model.transform(x[:, :3])


def test_given_centres_of_the_wrong_shape_are_a_clear_error():
    x, _ = _blobs()
    with pytest.raises(ValueError, match="init"):
        fc.KMeans(3, init=np.zeros((4, x.shape[1]))).fit(x)
    with pytest.raises(ValueError, match="init"):
        fc.KMeans(3, init=np.zeros((3, x.shape[1] + 1))).fit(x)
