"""fc.metrics against scikit-learn, the oracle: equal to 1e-10 on random labelings, blobs and edge cases."""

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_blobs

import ferrocluster as fc

TOL = 1e-10


def labelings():
    rng = np.random.default_rng(0)
    cases = [
        ([], []),
        ([3], [7]),
        ([0, 0, 1], [0, 0, 0]),
        ([0, 0, 0], [1, 1, 1]),
        ([0, 1, 2, 3], [0, 1, 2, 3]),
        ([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2]),
        ([-1, -1, 5, 5, 10**12], [2, 2, -3, -3, 0]),
    ]
    for n, ka, kb in [(2, 1, 2), (10, 3, 3), (100, 2, 7), (1000, 10, 10), (500, 300, 3), (5000, 50, 40)]:
        cases.append((rng.integers(0, ka, n), rng.integers(0, kb, n)))
    a = rng.integers(0, 5, 300)
    noisy = np.where(rng.random(300) < 0.2, rng.integers(0, 5, 300), a)
    cases += [(a, noisy), (a, (a * 7 + 3) % 11)]
    return [(np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64)) for x, y in cases]


@pytest.mark.parametrize("a,b", labelings())
def test_adjusted_rand_score_equals_sklearn(a, b):
    assert fc.metrics.adjusted_rand_score(a, b) == pytest.approx(skm.adjusted_rand_score(a, b), abs=TOL)
    assert fc.metrics.adjusted_rand_score(b, a) == pytest.approx(skm.adjusted_rand_score(b, a), abs=TOL)


@pytest.mark.parametrize("a,b", labelings())
def test_normalized_mutual_info_score_equals_sklearn(a, b):
    assert fc.metrics.normalized_mutual_info_score(a, b) == pytest.approx(
        skm.normalized_mutual_info_score(a, b), abs=TOL
    )


def test_label_agreement_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        fc.metrics.adjusted_rand_score([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        fc.metrics.normalized_mutual_info_score([0], [0, 1])


def datasets():
    rng = np.random.default_rng(1)
    x, y = make_blobs(600, 5, centers=4, cluster_std=2.0, random_state=0)
    yield "blobs", x, y
    yield "blobs-random-labels", x, rng.integers(0, 6, 600)
    yield "blobs-float32", x.astype(np.float32), y
    x2, y2 = make_blobs(333, 64, centers=7, random_state=3)
    yield "wide", x2 * 100.0, y2
    singletons = y.copy()
    singletons[:3] = [10, 11, 12]
    yield "with-singletons", x, singletons
    yield "duplicates", np.repeat(rng.normal(size=(20, 2)), 5, axis=0), np.repeat(rng.integers(0, 3, 20), 5)
    yield "two-points-each", rng.normal(size=(6, 3)), np.array([0, 0, 1, 1, 2, 2])


DATASETS = list(datasets())
IDS = [name for name, _, _ in DATASETS]


@pytest.mark.parametrize("name,x,labels", DATASETS, ids=IDS)
def test_silhouette_equals_sklearn(name, x, labels):
    # scikit-learn computes float32 input partly in float32; fc computes in float64, so the
    # oracle sees the same values widened exactly.
    x64 = x.astype(np.float64)
    # scikit-learn's ‖x‖² − 2x·y + ‖y‖² distances between identical points are ~1e-8, not 0
    # (fc sums (x − y)² directly), which moves those silhouettes by ~1e-9.
    tol = 1e-7 if name == "duplicates" else TOL
    np.testing.assert_allclose(
        fc.metrics.silhouette_samples(x, labels), skm.silhouette_samples(x64, labels), rtol=0, atol=tol
    )
    assert fc.metrics.silhouette_score(x, labels) == pytest.approx(skm.silhouette_score(x64, labels), abs=tol)


@pytest.mark.parametrize("name,x,labels", DATASETS, ids=IDS)
def test_calinski_harabasz_and_davies_bouldin_equal_sklearn(name, x, labels):
    x64 = x.astype(np.float64)
    expected = skm.calinski_harabasz_score(x64, labels)
    assert fc.metrics.calinski_harabasz_score(x, labels) == pytest.approx(expected, rel=TOL, abs=TOL)
    assert fc.metrics.davies_bouldin_score(x, labels) == pytest.approx(skm.davies_bouldin_score(x64, labels), abs=1e-8)


def test_degenerate_clusters_match_sklearn_special_cases():
    x = np.array([[1.0], [1.0], [3.0], [3.0]])
    labels = [0, 0, 1, 1]
    assert fc.metrics.calinski_harabasz_score(x, labels) == skm.calinski_harabasz_score(x, labels) == 1.0
    assert fc.metrics.davies_bouldin_score(x, labels) == skm.davies_bouldin_score(x, labels) == 0.0


def test_sampled_silhouette_is_seeded_and_close_to_the_exact_score():
    x, y = make_blobs(2000, 4, centers=3, random_state=0)
    exact = skm.silhouette_score(x, y)
    a = fc.metrics.silhouette_score(x, y, sample_size=500, random_state=3)
    assert a == fc.metrics.silhouette_score(x, y, sample_size=500, random_state=3)
    assert a == pytest.approx(exact, abs=0.05)
    assert fc.metrics.silhouette_score(x, y, sample_size=2000, random_state=3) == pytest.approx(exact, abs=TOL)


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y: fc.metrics.silhouette_score(x, y),
        lambda x, y: fc.metrics.silhouette_samples(x, y),
        lambda x, y: fc.metrics.calinski_harabasz_score(x, y),
        lambda x, y: fc.metrics.davies_bouldin_score(x, y),
    ],
    ids=["silhouette_score", "silhouette_samples", "calinski_harabasz", "davies_bouldin"],
)
def test_internal_metrics_reject_bad_input(call):
    x = np.arange(12.0).reshape(6, 2)
    with pytest.raises(ValueError, match="(?i)number of labels is 1"):
        call(x, [0] * 6)
    with pytest.raises(ValueError, match="(?i)number of labels is 6"):
        call(x, list(range(6)))
    with pytest.raises(ValueError, match="(?i)labels has 5 values"):
        call(x, [0, 1, 0, 1, 0])
    x_nan = x.copy()
    x_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="(?i)nan"):
        call(x_nan, [0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError):
        call(np.arange(6.0), [0, 1, 0, 1, 0, 1])
