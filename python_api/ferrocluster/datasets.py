"""Sample data: scikit-learn's digits (read from an installed scikit-learn, never downloaded)
and seeded synthetic labelled images of any count and size."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

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
