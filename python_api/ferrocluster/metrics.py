"""Clustering quality metrics, equal to scikit-learn's, computed by the Rust core."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrocluster import _core
from ferrocluster._validation import check_labels, check_matrix, seed_from


def _pair(labels_true: Any, labels_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = check_labels(labels_true, "labels_true"), check_labels(labels_pred, "labels_pred")
    if a.shape != b.shape:
        raise ValueError(f"labels_true and labels_pred must have the same length, got {a.shape[0]} and {b.shape[0]}")
    return a, b


def adjusted_rand_score(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index: 1 for identical partitions, about 0 for random ones."""
    return _core.adjusted_rand_score(*_pair(labels_true, labels_pred))


def normalized_mutual_info_score(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information (arithmetic normalisation), in [0, 1]."""
    return _core.normalized_mutual_info_score(*_pair(labels_true, labels_pred))


def _data_and_labels(X: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    X, labels = check_matrix(X), check_labels(labels, "labels")
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} values but X has {X.shape[0]} rows")
    return X, labels


def silhouette_score(X: Any, labels: Any, *, sample_size: int | None = None, random_state: Any = None) -> float:
    """Mean silhouette coefficient (euclidean), on a random sample of rows if sample_size is given."""
    X, labels = _data_and_labels(X, labels)
    return _core.silhouette_score(X, labels, sample_size, seed_from(random_state) if sample_size else 0)


def silhouette_samples(X: Any, labels: Any) -> np.ndarray:
    """Silhouette coefficient of every row (euclidean)."""
    return _core.silhouette_samples(*_data_and_labels(X, labels))


def calinski_harabasz_score(X: Any, labels: Any) -> float:
    """Calinski–Harabasz index: between- over within-cluster dispersion (higher is better)."""
    return _core.calinski_harabasz_score(*_data_and_labels(X, labels))


def davies_bouldin_score(X: Any, labels: Any) -> float:
    """Davies–Bouldin index: mean similarity of each cluster to its closest one (lower is better)."""
    return _core.davies_bouldin_score(*_data_and_labels(X, labels))
