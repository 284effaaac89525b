"""Sample data: scikit-learn's digits (read from an installed scikit-learn, never downloaded)
and seeded synthetic labelled images of any count and size; data in .npy files that the
workers of a cluster read themselves."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

import numpy as np

from ferrocluster import _core


def digits_csv_path() -> Path:
    """Where the installed scikit-learn keeps its digits (1797 8×8 images, 17 grey levels)."""
    try:
        import sklearn
    except ImportError:
        raise ImportError("the digits sample ships with scikit-learn: pip install scikit-learn") from None
    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits as images.

    Returns:
        (images, labels): uint8 array of shape (1797, 8, 8) with the 0–16 grey levels scaled
        to 0–255 (as the CLI's sample writes them), and int64 labels 0–9.
    """
    with gzip.open(digits_csv_path(), "rt") as fh:
        data = np.loadtxt(fh, delimiter=",")
    images = np.round(data[:, :64] * 255.0 / 16.0).astype(np.uint8).reshape(-1, 8, 8)
    return images, data[:, 64].astype(np.int64)


def make_images(
    n: int = 1000, size: tuple[int, int] = (64, 64), classes: int = 8, noise: float = 12.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded synthetic labelled images: striped textures with a per-class orientation,
    frequency and tint. The same arguments always give the same images.

    Returns:
        (images, labels): uint8 array (n, height, width, 3) and int64 labels (i % classes).
    """
    spec = {"n": int(n), "size": [int(size[0]), int(size[1])], "classes": int(classes), "noise": float(noise), "seed": int(seed)}
    return _core.synthetic_images(json.dumps(spec))


class NpyFiles:
    """A matrix stored in .npy files, the rows of each after those of the one before: what a
    cluster fit hands to its workers by path instead of sending the rows. Make one with
    `fc.datasets.npy`.

    Attributes:
        paths: absolute paths of the files, in row order.
        shape: (n_samples, n_features) of the whole matrix.
        dtype: the files' dtype.
        sharable: whether the workers can read the files (little-endian float32, C order).
    """

    def __init__(self, paths: tuple[str, ...], shape: tuple[int, int], dtype: np.dtype, sharable: bool) -> None:
        self.paths, self.shape, self.dtype, self.sharable = paths, shape, dtype, sharable

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        files = self.paths[0] if len(self.paths) == 1 else f"{len(self.paths)} files"
        return f"NpyFiles({files!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The rows read into memory (what an in-process fit or `predict` uses)."""
        parts = [np.load(p, mmap_mode="r") for p in self.paths]
        rows = np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
        return rows if dtype is None else rows.astype(dtype, copy=False)


def _header(path: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(fh)
            return np.lib.format.read_array_header_2_0(fh)
        except ValueError as exc:
            raise ValueError(f"{path} is not a .npy file: {exc}") from None


PathLike = Union[str, "os.PathLike[str]"]


def npy(paths: PathLike | Iterable[PathLike]) -> NpyFiles:
    """A matrix in one .npy file, or in several whose rows follow one another (e.g. one per
    shard written by different machines): `fc.KMeans(...).fit(fc.datasets.npy("x.npy"))` on a
    cluster has every worker read its rows from the files, so the rows never pass through this
    process or Redis. Only the headers are read here; in process the files are loaded.

    For the workers the files must be 2-D, little-endian float32 (`X.astype(np.float32)`),
    C order, and at the same absolute path on every worker (a shared filesystem).

    Args:
        paths: a path, or paths in row order.
    Returns:
        NpyFiles with the paths made absolute and the shape and dtype of the whole.
    Raises:
        FileNotFoundError: a file is missing.
        ValueError: not a .npy file, not 2-D, or the files differ in columns or dtype.

    Example:
        >>> import numpy as np, tempfile, os, ferrocluster as fc
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
        >>> np.save(path, np.zeros((4, 2), dtype=np.float32))
        >>> fc.datasets.npy(path).shape
        (4, 2)
    """
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not given:
        raise ValueError("no .npy file given")
    absolute, rows, first = [], 0, None
    for path in given:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"a path must be a str or os.PathLike, got {type(path).__name__}")
        path = os.path.abspath(os.fspath(path))
        shape, fortran, dtype = _header(path)
        if len(shape) != 2:
            raise ValueError(f"{path} holds a {len(shape)}-D array of shape {shape}: a 2-D (n_samples, n_features) one is needed")
        if dtype.kind not in "fiub":
            raise ValueError(f"{path} holds {dtype} values: numbers are needed")
        if first is not None and (shape[1], dtype) != first[:2]:
            raise ValueError(
                f"{path} holds {shape[1]} columns of {dtype}, {first[2]} holds {first[0]} of {first[1]}: "
                "the files must agree"
            )
        first = first or (shape[1], dtype, path)
        rows += shape[0]
        absolute.append((path, fortran))
    sharable = first[1] == np.dtype("<f4") and not any(f for _, f in absolute)
    return NpyFiles(tuple(p for p, _ in absolute), (rows, first[0]), first[1], sharable)
