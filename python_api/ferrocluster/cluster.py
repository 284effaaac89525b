"""Clustering estimators with scikit-learn's API, computed by the Rust core.

Fitted attributes are plain numpy arrays, so models pickle, copy and clone like
scikit-learn's own.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ferrocluster import _core
from ferrocluster.datasets import NpyFiles, npy
from ferrocluster.runtime import context
from ferrocluster.runtime.remote import BuiltinOp
from ferrocluster._base import BaseEstimator, ClusterMixin, TransformerMixin, check_is_fitted, check_n_features
from ferrocluster._validation import check_matrix, check_weights, seed_from


def _check_threads(n_threads: Any) -> int | None:
    if n_threads is None:
        return None
    if not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise ValueError(f"n_threads must be None or a positive int, got {n_threads!r}")
    return int(n_threads)


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_n_init(n_init: Any) -> int | None:
    if isinstance(n_init, str):
        if n_init != "auto":
            raise ValueError(f"n_init must be 'auto' or a positive int, got {n_init!r}")
        return None
    return _check_positive_int(n_init, "n_init")


class _KMeansBase(ClusterMixin, TransformerMixin, BaseEstimator):
    """What KMeans and MiniBatchKMeans share once fitted: predict, transform, score."""

    def _prepare(
        self, X: Any, sample_weight: Any, inits: tuple[str, ...] = ("k-means++", "random"), keep_files: bool = False
    ) -> tuple[Any, np.ndarray | None, str, np.ndarray | None]:
        """X checked (with `keep_files`, NpyFiles stay files: their shape and dtype are all
        that is checked here), the weights, the init's name and the given centres."""
        _check_positive_int(self.n_clusters, "n_clusters")
        X = X if keep_files and isinstance(X, NpyFiles) else check_matrix(X)
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        w = check_weights(sample_weight, X.shape[0], X.dtype)
        init = self.init
        if isinstance(init, str):
            if init not in inits:
                names = ", ".join(repr(i) for i in inits)
                raise ValueError(f"init must be {names} or an array of shape (n_clusters, n_features), got {init!r}")
            return X, w, init, None
        if callable(init):
            raise ValueError("a callable init is not supported: pass 'k-means++', 'random' or an array of centres")
        centres = np.asarray(init, dtype=np.float64)
        if centres.shape != (self.n_clusters, X.shape[1]):
            raise ValueError(
                f"The shape of the initial centers {centres.shape} does not match the number of clusters "
                f"{self.n_clusters} and features {X.shape[1]}: pass an array of shape ({self.n_clusters}, {X.shape[1]})"
            )
        return X, w, "array", np.ascontiguousarray(centres)

    def _store(self, X: Any, result: tuple[np.ndarray, np.ndarray, float, int]) -> None:
        centres, labels, inertia, n_iter = result
        self.cluster_centers_ = centres
        self.labels_ = labels
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.n_features_in_ = X.shape[1]

    def _check_test_data(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "cluster_centers_")
        X = check_matrix(X, dtype=self.cluster_centers_.dtype)
        check_n_features(self, X)
        return X

    def predict(self, X: Any) -> np.ndarray:
        """The index of the nearest centre for each row of X.

        Args:
            X: array of shape (n_samples, n_features).
        Returns:
            int64 array of shape (n_samples,).
        """
        X = self._check_test_data(X)
        labels, _ = _core.kmeans_predict(X, self.cluster_centers_, _check_threads(self.n_threads))
        return labels

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance from each row of X to each centre, shape (n_samples, n_clusters)."""
        X = self._check_test_data(X)
        return _core.kmeans_transform(X, self.cluster_centers_, _check_threads(self.n_threads))

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Minus the (weighted) sum of squared distances of X to their nearest centres."""
        X = self._check_test_data(X)
        w = check_weights(sample_weight, X.shape[0], X.dtype)
        _, sq = _core.kmeans_predict(X, self.cluster_centers_, _check_threads(self.n_threads))
        return -float(np.dot(sq.astype(np.float64), w.astype(np.float64)) if w is not None else sq.astype(np.float64).sum())


#: With `distributed="auto"`, a fit goes to the cluster from this many rows on.
DISTRIBUTED_MIN_ROWS = 500_000


def _cluster_queue() -> Any:
    """The queue of the cluster `fc.init("redis://...")` connected to, or None."""
    from ferrocluster.runtime import api
    from ferrocluster.runtime.cluster import ClusterBackend

    backend = api._backend
    return backend.queue if isinstance(backend, ClusterBackend) else None


class KMeans(_KMeansBase):
    """k-means clustering (Lloyd) with scikit-learn's semantics, on every core or on a cluster.

    Args:
        n_clusters: number of clusters.
        init: "k-means++" (greedy, 2 + ln k local trials), "k-means||" (Bahmani et al.'s parallel
            k-means++ over shards of 65,536 rows, as a cluster fit runs it), "random", or an array
            of initial centres.
        n_init: runs with different seeds, the best kept; "auto" = 1 for k-means++, k-means|| and
            given centres, 10 for random.
        max_iter: most Lloyd iterations per run.
        tol: relative tolerance on the centre shift (times the mean feature variance) to declare convergence.
        random_state: seed (int), None for a fresh one each fit, or a numpy RandomState.
        n_threads: threads to use; None = all cores.
        distributed: "auto" fits on the `ferrocluster-worker` processes of the cluster that
            `fc.init("redis://...")` connected to when X is float32, unweighted and has at least
            `DISTRIBUTED_MIN_ROWS` rows, and in this process otherwise; True always on the cluster;
            False never. A cluster fit initialises with k-means|| (also for init="k-means++"),
            and equals the in-process fit with init="k-means||" for the same seed.

    Example:
        >>> import numpy as np, ferrocluster as fc
        >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
        >>> km = fc.KMeans(n_clusters=2, random_state=0).fit(X)
        >>> sorted(np.bincount(km.labels_).tolist())
        [2, 2]
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means++",
        n_init: Any = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: Any = None,
        n_threads: int | None = None,
        distributed: Any = "auto",
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_threads = n_threads
        self.distributed = distributed

    def _cluster(self, X: Any, w: np.ndarray | None, init: str) -> Any:
        """The queue to fit on, or None to fit in this process."""
        mode = self.distributed
        if not (isinstance(mode, bool) or mode == "auto"):
            raise ValueError(f"distributed must be 'auto', True or False, got {mode!r}")
        if mode is False:
            return None
        queue = _cluster_queue()
        files = isinstance(X, NpyFiles)
        sharable = X.sharable if files else X.dtype == np.float32
        if mode == "auto":
            large = X.shape[0] >= DISTRIBUTED_MIN_ROWS and sharable
            return queue if large and w is None and init != "random" else None
        if queue is None:
            raise RuntimeError("distributed=True needs a cluster: call fc.init('redis://host:6379/0') first")
        if w is not None:
            raise ValueError("sample_weight is not supported by a distributed fit")
        if init == "random":
            raise ValueError("init='random' is not supported by a distributed fit: use 'k-means||'")
        if files and not sharable:
            raise TypeError(
                f"the workers read little-endian float32 .npy files in C order, {X!r} is not: "
                "save np.ascontiguousarray(X, dtype='<f4')"
            )
        if not sharable:
            raise TypeError("a distributed fit takes float32 X: pass X.astype(np.float32)")
        return queue

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "KMeans":
        """Computes the clustering of X.

        Args:
            X: array of shape (n_samples, n_features), float32 or float64 (others are converted
                to float64); or .npy files: a path, or `fc.datasets.npy(paths)` for several whose
                rows follow one another. On a cluster the workers read the files themselves
                (at the same paths: a shared filesystem); in process they are loaded.
            y: ignored.
            sample_weight: optional weight per sample.
        Returns:
            self, with cluster_centers_, labels_, inertia_ and n_iter_ set.
        Raises:
            TaskCancelledError: inside a task (`@fc.remote`) that was cancelled; a fit with
                init="k-means||" or on a cluster stops before its next step.
        """
        if isinstance(X, (str, os.PathLike)):
            X = npy(X)
        X, w, init, centres = self._prepare(X, sample_weight, ("k-means++", "k-means||", "random"), keep_files=True)
        n_init = _check_n_init(self.n_init)
        max_iter = _check_positive_int(self.max_iter, "max_iter")
        if not np.isfinite(self.tol) or self.tol < 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        params = {
            "n_clusters": int(self.n_clusters),
            "n_init": n_init,
            "max_iter": max_iter,
            "tol": float(self.tol),
            "random_state": seed_from(self.random_state),
        }
        queue = self._cluster(X, w, init)
        data = list(X.paths) if queue is not None and isinstance(X, NpyFiles) else check_matrix(X)
        if queue is not None or init == "k-means||":
            if w is not None:
                raise ValueError("sample_weight is not supported with init='k-means||'")
            sharded = json.dumps({**params, "n_init": n_init or 1})
            task = context.current()
            try:
                result = _core.sharded_kmeans_fit(
                    data, sharded, centres, queue, n_threads=_check_threads(self.n_threads),
                    cancel=task.cancelled if task is not None else None,
                )
            except (KeyboardInterrupt, RuntimeError):
                context.check_cancelled()
                raise
        else:
            result = _core.kmeans_fit(data, w, json.dumps(params), init, centres, _check_threads(self.n_threads))
        self._store(X, result)
        return self


class MiniBatchKMeans(_KMeansBase):
    """Mini-batch k-means with scikit-learn's semantics: fast, approximate k-means for large data.

    Args:
        n_clusters: number of clusters.
        init: "k-means++", "random", or an array of initial centres.
        max_iter: most passes over the data.
        batch_size: samples per mini-batch.
        tol: early stop on small centre changes (0 disables it).
        max_no_improvement: early stop after this many batches without improvement (None disables it).
        init_size: samples used for initialisation (None = 3 × batch_size).
        n_init: initialisations tried on the init sample, the best kept ("auto" = 1 for k-means++, 3 for random).
        reassignment_ratio: how eagerly rarely-used centres are moved to new points.
        random_state: seed (int), None for a fresh one each fit, or a numpy RandomState.
        n_threads: threads to use; None = all cores.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means++",
        max_iter: int = 100,
        batch_size: int = 1024,
        tol: float = 0.0,
        max_no_improvement: int | None = 10,
        init_size: int | None = None,
        n_init: Any = "auto",
        reassignment_ratio: float = 0.01,
        random_state: Any = None,
        n_threads: int | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "MiniBatchKMeans":
        """Computes the clustering of X by mini-batches; see KMeans.fit."""
        X, w, init, centres = self._prepare(X, sample_weight)
        n_init = _check_n_init(self.n_init)
        params = {
            "n_clusters": int(self.n_clusters),
            "max_iter": _check_positive_int(self.max_iter, "max_iter"),
            "batch_size": _check_positive_int(self.batch_size, "batch_size"),
            "tol": float(self.tol),
            "max_no_improvement": None
            if self.max_no_improvement is None
            else _check_positive_int(self.max_no_improvement, "max_no_improvement", 0),
            "init_size": None if self.init_size is None else _check_positive_int(self.init_size, "init_size"),
            "n_init": n_init,
            "reassignment_ratio": float(self.reassignment_ratio),
        }
        if not np.isfinite(params["tol"]) or params["tol"] < 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        if not np.isfinite(params["reassignment_ratio"]) or params["reassignment_ratio"] < 0:
            raise ValueError(f"reassignment_ratio must be a non-negative number, got {self.reassignment_ratio!r}")
        params["random_state"] = seed_from(self.random_state)
        result = _core.minibatch_kmeans_fit(X, w, json.dumps(params), init, centres, _check_threads(self.n_threads))
        self._store(X, result)
        return self


class DBSCAN(ClusterMixin, BaseEstimator):
    """Density-based clustering with noise (euclidean), equal to scikit-learn's DBSCAN.

    Args:
        eps: neighbourhood radius (inclusive).
        min_samples: (weighted) points within eps, the point itself included, that make a core point.
        n_threads: threads to use; None = all cores.

    Attributes:
        labels_: cluster of each sample, -1 for noise, numbered as scikit-learn numbers them.
        core_sample_indices_: indices of the core samples.
        components_: the core samples' rows.
    """

    def __init__(self, eps: float = 0.5, *, min_samples: int = 5, n_threads: int | None = None) -> None:
        self.eps = eps
        self.min_samples = min_samples
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> "DBSCAN":
        """Finds the clusters of X.

        Args:
            X: array of shape (n_samples, n_features).
            y: ignored.
            sample_weight: optional weight per sample (counts toward min_samples).
        Returns:
            self.
        """
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float, np.number)) or not np.isfinite(self.eps) or self.eps <= 0:
            raise ValueError(f"eps must be a positive number, got {self.eps!r}")
        min_samples = _check_positive_int(self.min_samples, "min_samples")
        X = check_matrix(X)
        w = check_weights(sample_weight, X.shape[0], X.dtype)
        params = json.dumps({"eps": float(self.eps), "min_samples": min_samples})
        labels, core, components = _core.dbscan_fit(X, w, params, _check_threads(self.n_threads))
        self.labels_ = labels
        self.core_sample_indices_ = core.astype(np.intp)
        self.components_ = components.astype(X.dtype, copy=False)
        self.n_features_in_ = X.shape[1]
        return self


def _predict(centres: Any, X: Any, n_threads: int | None = None) -> np.ndarray:
    """The index of the nearest of `centres` (n_clusters, n_features) for each row of X."""
    centres = check_matrix(centres)
    X = check_matrix(X, dtype=centres.dtype)
    if X.shape[1] != centres.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features, the centres have {centres.shape[1]}")
    labels, _ = _core.kmeans_predict(X, centres, _check_threads(n_threads))
    return labels


#: k-means prediction from centres, e.g. `fc.kmeans_predict.remote(km.cluster_centers_, X)`.
kmeans_predict = BuiltinOp(_predict, _predict)
