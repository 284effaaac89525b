"""fc.KMeans on a cluster — a real redis-server and real `ferrocluster-worker` processes —
gives the model of the in-process fit with init="k-means||" for the same seed."""

import json
import os
import shutil
import subprocess
import sys
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


def _redis(url, *command):
    return subprocess.run(["redis-cli", "-u", url, "--raw", *command], capture_output=True, text=True).stdout.split()


def _bytes_in(url):
    """Bytes Redis has received from its clients so far."""
    stats = dict(line.split(":", 1) for line in _redis(url, "INFO", "stats") if ":" in line)
    return int(stats["total_net_input_bytes"])


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


def _npy_files(tmp_path, X, bounds):
    """X saved whole, and in parts of rows [a, b) for consecutive bounds."""
    whole = tmp_path / "x.npy"
    np.save(whole, X)
    parts = []
    for lo, hi in zip(bounds, bounds[1:]):
        parts.append(tmp_path / f"x-{lo}.npy")
        np.save(parts[-1], X[lo:hi])
    return whole, parts


def test_a_fit_from_npy_files_read_by_the_workers_equals_the_local_fit(cluster, tmp_path, monkeypatch):
    X = _blobs(140_000, 4, 8, 0)
    # Parts of uneven sizes that shards of 65,536 rows straddle.
    whole, parts = _npy_files(tmp_path, X, [0, 50_000, 50_001, 120_000, 140_000])
    local = fc.KMeans(8, init="k-means||", random_state=3, distributed=False).fit(X)
    monkeypatch.setattr(fc_cluster, "DISTRIBUTED_MIN_ROWS", 100_000)
    fc.init(cluster)
    try:
        before, sent = _succeeded(cluster), _bytes_in(cluster)
        fits = {
            "path": fc.KMeans(8, init="k-means||", random_state=3, distributed=True).fit(str(whole)),
            "parts": fc.KMeans(8, init="k-means||", random_state=3, distributed=True).fit(fc.datasets.npy(parts)),
            "auto": fc.KMeans(8, random_state=3).fit(whole),
        }
        assert _succeeded(cluster) > before, "the fits did not run on the workers"
        # The rows did not go through Redis: three fits would have sent it 3 × 2.2 MB of rows
        # (the labels, as JSON, are about 0.4 MB a fit).
        assert _bytes_in(cluster) - sent < X.nbytes
    finally:
        fc.shutdown()
    fits["in process"] = fc.KMeans(8, init="k-means||", random_state=3, distributed=False).fit(fc.datasets.npy(parts))
    for name, km in fits.items():
        np.testing.assert_array_equal(km.labels_, local.labels_, err_msg=name)
        assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-6), name
        assert km.n_iter_ == local.n_iter_, name
        assert km.n_features_in_ == 4, name
        np.testing.assert_array_equal(km.predict(fc.datasets.npy(whole))[:100], local.labels_[:100])


def test_npy_files_that_cannot_be_fitted_are_clear_errors(cluster, tmp_path):
    X = _blobs(1000, 3, 4, 2)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        fc.KMeans(4).fit(tmp_path / "missing.npy")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        fc.datasets.npy([tmp_path / "missing.npy"])
    with pytest.raises(ValueError, match="no .npy file"):
        fc.datasets.npy([])
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="not a .npy file"):
        fc.datasets.npy(tmp_path / "text.npy")
    np.save(tmp_path / "flat.npy", X[:, 0])
    with pytest.raises(ValueError, match="2-D"):
        fc.KMeans(4).fit(tmp_path / "flat.npy")
    np.save(tmp_path / "wide.npy", _blobs(100, 5, 2, 0))
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="must agree"):
        fc.datasets.npy([tmp_path / "x.npy", tmp_path / "wide.npy"])
    np.save(tmp_path / "f64.npy", X.astype(np.float64))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(X))
    fc.init(cluster)
    try:
        for name in ("f64.npy", "fortran.npy"):
            with pytest.raises(TypeError, match="little-endian float32"):
                fc.KMeans(4, distributed=True).fit(tmp_path / name)
        with pytest.raises(ValueError, match="n_clusters"):
            fc.KMeans(2000, distributed=True).fit(tmp_path / "x.npy")
        bad = X.copy()
        bad[17, 1] = np.nan
        np.save(tmp_path / "nan.npy", bad)
        with pytest.raises(ValueError, match="NaN"):
            fc.KMeans(4, distributed=True).fit(tmp_path / "nan.npy")
    finally:
        fc.shutdown()
    # In process, the files are loaded: float64 and Fortran order are fine there.
    expected = fc.KMeans(4, random_state=0).fit(X.astype(np.float64))
    np.testing.assert_array_equal(fc.KMeans(4, random_state=0).fit(tmp_path / "f64.npy").labels_, expected.labels_)


def _blind_worker(url, hidden):
    """A worker on namespace `blind` that cannot see the folder `hidden` (an empty tmpfs is
    mounted over it in its own mount namespace), or None where that is not allowed."""
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "none", str(hidden)], capture_output=True)
    if probe.returncode != 0:
        return None
    script = f'mount -t tmpfs none "{hidden}" && exec "$0" "$@"'
    return subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script, str(WORKER), "--redis", url, "--namespace", "blind", "--lease-ms", "1000"],
        stderr=subprocess.DEVNULL,
    )


def test_files_the_workers_cannot_read_are_a_clear_error(cluster, tmp_path):
    hidden = tmp_path / "only-here"
    hidden.mkdir()
    np.save(hidden / "x.npy", _blobs(1000, 3, 4, 2))
    worker = _blind_worker(cluster, hidden)
    if worker is None:
        pytest.skip("no mount namespaces here (unshare -m) to hide a folder from a worker")
    try:
        fc.init(cluster, namespace="blind")
        deadline = time.monotonic() + 30
        while len(json.loads(fc._core.Queue(cluster, namespace="blind").stats())["workers"]) < 1:
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        with pytest.raises(ValueError, match=r"cannot read the data: .*only-here/x.npy.*same paths"):
            fc.KMeans(4, distributed=True).fit(hidden / "x.npy")
    finally:
        fc.shutdown()
        worker.terminate()
        assert worker.wait(10) == 0


def test_a_cancel_stops_a_fit_on_the_cluster_between_iterations(cluster, tmp_path):
    """A task on a Python worker fits on the Rust workers; cancelling the task stops the fit
    at its next step and releases the shards."""
    rng = np.random.default_rng(0)
    # Uniform rows in 16 dimensions take ~500 strict (tol=0) iterations to settle (100,000 × 4
    # took ~150, which a fast machine ran within the half second before the cancel).
    np.save(tmp_path / "uniform.npy", rng.uniform(size=(200_000, 16)).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    log = tmp_path / "py-worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "ferrocluster", "worker", "--redis", cluster, "--import", "test_runtime_tasks",
             "--lease-ms", "600"],
            env=env, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while "serving queues" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        import test_runtime_tasks as tasks

        fc.init(cluster, lease_ms=600)
        ref = tasks.kmeans_on_cluster.remote(str(tmp_path / "uniform.npy"), 64)
        # Once the shards are loaded, the fit is iterating: cancel it.
        deadline = time.monotonic() + 60
        while not [k for k in _redis(cluster, "KEYS", "fc:kmeans:*:lease:*") if k]:
            assert time.monotonic() < deadline, "the fit did not start"
            time.sleep(0.02)
        time.sleep(0.5)
        fc.cancel(ref)
        cancelled = time.monotonic()
        with pytest.raises(fc.TaskCancelledError):
            fc.get(ref, timeout=30)
        assert time.monotonic() - cancelled < 10
        # The fit cleaned up: its shards were released and its keys deleted.
        deadline = time.monotonic() + 10
        while [k for k in _redis(cluster, "KEYS", "fc:kmeans:*") if k]:
            assert time.monotonic() < deadline, _redis(cluster, "KEYS", "fc:kmeans:*")
            time.sleep(0.05)
    finally:
        fc.shutdown()
        worker.terminate()
        assert worker.wait(10) == 0
