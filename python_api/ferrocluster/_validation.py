"""Turning user input into the arrays the native core accepts, with errors that say what to fix."""

from __future__ import annotations

from typing import Any

import numpy as np

_FLOATS = (np.float32, np.float64)


def check_matrix(X: Any, name: str = "X", dtype: Any = None) -> np.ndarray:
    """A 2-D, C-contiguous float32/float64 array; zero-copy when X already is one.

    Other numeric dtypes are converted to float64, like scikit-learn does. NaN and infinity
    are checked by the core, which names the first bad row.
    """
    if "scipy.sparse" in type(X).__module__ or hasattr(X, "tocsr"):
        raise TypeError(
            f"Sparse data was passed for {name}, but dense data is required: use {name}.toarray() to convert it"
        )
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} holds complex numbers, pass real-valued data")
    if arr.dtype == object or arr.dtype.kind in "USV":
        try:
            arr = arr.astype(np.float64)
        except ValueError:
            raise ValueError(f"{name} must contain numbers, got dtype {arr.dtype} with non-numeric values") from None
    if arr.ndim != 2:
        hint = " Reshape your data with X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample." if arr.ndim == 1 else ""
        raise ValueError(f"Expected a 2-D array for {name}, got {arr.ndim}-D with shape {arr.shape}.{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required: {name} is empty")
    if arr.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    target = dtype if dtype is not None else (arr.dtype if arr.dtype in _FLOATS else np.float64)
    return np.ascontiguousarray(arr, dtype=target)


def check_weights(sample_weight: Any, n: int, dtype: Any) -> np.ndarray | None:
    """None, or one finite, non-negative weight per sample in X's dtype."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=dtype)
    if w.ndim == 0:
        w = np.full(n, w, dtype=dtype)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must have one value per sample: expected shape ({n},), got {w.shape}")
    if not np.any(w):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return np.ascontiguousarray(w)


def check_labels(labels: Any, name: str) -> np.ndarray:
    """A 1-D int64 label array (any hashable labels are mapped to integers)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "iub":
        return np.ascontiguousarray(arr, dtype=np.int64)
    _, codes = np.unique(arr, return_inverse=True)
    return np.ascontiguousarray(codes, dtype=np.int64)


def seed_from(random_state: Any) -> int:
    """A 64-bit seed from scikit-learn-style random_state (None, int or RandomState)."""
    if random_state is None:
        return int(np.random.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {type(random_state).__name__}")
