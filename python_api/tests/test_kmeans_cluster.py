"""fc.KMeans on a cluster — a real redis-server and real `ferrocluster-worker` processes —
gives the model of the in-process fit with init="k-means||" for the same seed."""

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

import ferrocluster as fc
from redis_support import redis_server, requires_redis
import ferrocluster.cluster as fc_cluster

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "ferrocluster-worker"
pytestmark = [
    requires_redis,
    pytest.mark.skipif(not WORKER.exists(), reason=f"{WORKER} is not built (make test-rust builds it)"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A redis-server on a free loopback port and two Rust workers (lease 1 s)."""
    tmp = tmp_path_factory.mktemp("redis")
    with redis_server(tmp) as url:
        workers = [
            subprocess.Popen(
                [str(WORKER), "--redis", url, "--concurrency", "2", "--lease-ms", "1000", "--block-ms", "200"],
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        queue = fc._core.Queue(url, lease_ms=1000, block_ms=200)
        deadline = time.monotonic() + 30
        while len(json.loads(queue.stats())["workers"]) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        yield url
        for worker in workers:
            worker.terminate()
        for worker in workers:
            assert worker.wait(10) == 0


def _blobs(n, d, k, seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-6, 6, size=(k, d))
    return (centres[np.arange(n) % k] + rng.normal(size=(n, d))).astype(np.float32)


def _succeeded(url):
    return json.loads(fc._core.Queue(url).stats())["counters"].get("succeeded", 0)


def test_cluster_fit_equals_local_fit(cluster, monkeypatch):
    X = _blobs(140_000, 4, 8, 0)  # three shards of 65,536 rows
    local = fc.KMeans(8, init="k-means||", random_state=3, distributed=False).fit(X)
    monkeypatch.setattr(fc_cluster, "DISTRIBUTED_MIN_ROWS", 100_000)
    fc.init(cluster)
    try:
        before = _succeeded(cluster)
        auto = fc.KMeans(8, random_state=3).fit(X)  # large float32 X: on the cluster, with k-means||
        assert _succeeded(cluster) > before, "the fit did not run on the workers"
        forced = fc.KMeans(8, init="k-means||", random_state=3, distributed=True).fit(X)
        small = fc.KMeans(8, random_state=3).fit(X[:1000])  # below the threshold: in process
    finally:
        fc.shutdown()
    for km in (auto, forced):
        np.testing.assert_array_equal(km.labels_, local.labels_)
        np.testing.assert_array_equal(km.cluster_centers_, local.cluster_centers_)
        assert km.cluster_centers_.dtype == np.float32
        assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-6)
        assert km.n_iter_ == local.n_iter_
        np.testing.assert_array_equal(km.predict(X[:100]), local.labels_[:100])
    expected = fc.KMeans(8, random_state=3, distributed=False).fit(X[:1000])
    np.testing.assert_array_equal(small.labels_, expected.labels_)


def test_kmeans_parallel_is_as_good_as_scikit_learn(rng):
    X = _blobs(20_000, 6, 10, 1)
    ours = fc.KMeans(10, init="k-means||", random_state=0).fit(X)
    theirs = SkKMeans(10, random_state=0, n_init=1).fit(X)
    assert ours.inertia_ <= theirs.inertia_ * 1.01
    assert fc.metrics.adjusted_rand_score(theirs.labels_, ours.labels_) > 0.99


def test_distributed_fit_errors_are_clear(cluster):
    X = _blobs(1000, 3, 4, 2)
    with pytest.raises(RuntimeError, match="fc.init"):
        fc.KMeans(4, distributed=True).fit(X)
    with pytest.raises(ValueError, match="distributed must be"):
        fc.KMeans(4, distributed="yes").fit(X)
    with pytest.raises(ValueError, match="sample_weight"):
        fc.KMeans(4, init="k-means||").fit(X, sample_weight=np.ones(len(X), dtype=np.float32))
    fc.init(cluster)
    try:
        with pytest.raises(TypeError, match="float32"):
            fc.KMeans(4, distributed=True).fit(X.astype(np.float64))
        with pytest.raises(ValueError, match="init='random'"):
            fc.KMeans(4, init="random", distributed=True).fit(X)
        with pytest.raises(ValueError, match="n_clusters"):
            fc.KMeans(2000, distributed=True).fit(X)
        bad = X.copy()
        bad[17, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            fc.KMeans(4, distributed=True).fit(bad)
    finally:
        fc.shutdown()
