"""Image features: HOG, LBP, colour histograms and raw pixels, computed by the Rust core.

`hog` and `local_binary_pattern` take the same arguments as scikit-image's and return the
same values; `extract_features` turns a batch of images or files into one float32 matrix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from ferrocluster import _core
from ferrocluster.runtime.codec import register_type
from ferrocluster.runtime.context import check_cancelled
from ferrocluster.runtime.remote import BuiltinOp

ImageInput = Union[np.ndarray, str, "os.PathLike[str]"]

_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
_LBP_METHODS = ("default", "ror", "uniform", "nri_uniform")


def _pair(value: Any, name: str) -> list[int]:
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return [int(a), int(b)]


@dataclass(frozen=True)
class Hog:
    """Histogram of oriented gradients, as scikit-image computes it.

    Args:
        orientations: orientation bins over 0–180°.
        pixels_per_cell: cell size (rows, columns).
        cells_per_block: block size in cells (rows, columns).
        block_norm: "L1", "L1-sqrt", "L2" or "L2-Hys".
        transform_sqrt: take the square root of the image first.
    """

    orientations: int = 9
    pixels_per_cell: tuple[int, int] = (8, 8)
    cells_per_block: tuple[int, int] = (2, 2)
    block_norm: str = "L2-Hys"
    transform_sqrt: bool = False

    def to_dict(self) -> dict[str, Any]:
        if self.block_norm not in _BLOCK_NORMS:
            raise ValueError(f"block_norm must be one of {', '.join(_BLOCK_NORMS)}; got {self.block_norm!r}")
        if isinstance(self.orientations, bool) or not isinstance(self.orientations, (int, np.integer)) or self.orientations < 1:
            raise ValueError(f"orientations must be a positive int, got {self.orientations!r}")
        return {
            "orientations": int(self.orientations),
            "pixels_per_cell": _pair(self.pixels_per_cell, "pixels_per_cell"),
            "cells_per_block": _pair(self.cells_per_block, "cells_per_block"),
            "block_norm": self.block_norm,
            "transform_sqrt": bool(self.transform_sqrt),
        }


@dataclass(frozen=True)
class Lbp:
    """Histogram of local binary patterns (codes as scikit-image's local_binary_pattern).

    Args:
        points: number of circularly symmetric neighbours (P).
        radius: radius of the circle (R).
        method: "default", "uniform", "ror" or "nri_uniform".
    """

    points: int = 8
    radius: float = 1.0
    method: str = "uniform"

    def to_dict(self) -> dict[str, Any]:
        if self.method not in _LBP_METHODS:
            raise ValueError(f"method must be one of {', '.join(_LBP_METHODS)}; got {self.method!r}")
        return {"points": int(self.points), "radius": float(self.radius), "method": self.method}


@dataclass(frozen=True)
class ColourHistogram:
    """Colour histogram of 0–255 RGB values: per channel (3 × bins) or joint (bins³), normalised."""

    bins: int = 16
    joint: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"bins": int(self.bins), "joint": bool(self.joint)}


@dataclass(frozen=True)
class Pixels:
    """The resized image's pixels scaled to [0, 1], RGB or grey."""

    grey: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"grey": bool(self.grey)}


@dataclass(frozen=True)
class FeatureConfig:
    """What to extract from each image, after resizing it to `size` (height, width).

    Args:
        size: every image is resized to this (height, width) first.
        grey: HOG sees the grey image instead of the RGB one (faster).
        hog, lbp, colour, pixels: the extractors to run (None to skip one), concatenated in that order.

    Example:
        >>> import ferrocluster as fc
        >>> fc.FeatureConfig(size=(32, 32), hog=fc.Hog(), colour=fc.ColourHistogram(bins=8)).dim
        348
    """

    size: tuple[int, int] = (64, 64)
    grey: bool = False
    hog: Hog | None = field(default_factory=Hog)
    lbp: Lbp | None = None
    colour: ColourHistogram | None = None
    pixels: Pixels | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": _pair(self.size, "size"),
            "grey": bool(self.grey),
            **{name: (None if part is None else part.to_dict()) for name, part in self._parts().items()},
        }

    def _parts(self) -> dict[str, Any]:
        return {"hog": self.hog, "lbp": self.lbp, "colour": self.colour, "pixels": self.pixels}

    def to_json(self) -> str:
        """The configuration as the core's JSON document (what the CLI and REST service read)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        """Reads a configuration written by to_json (or by the CLI)."""
        doc = json.loads(text)
        kinds = {"hog": Hog, "lbp": Lbp, "colour": ColourHistogram, "pixels": Pixels}
        parts = {name: (None if doc.get(name) is None else kind(**doc[name])) for name, kind in kinds.items()}
        for name in ("pixels_per_cell", "cells_per_block"):
            if parts["hog"] is not None:
                parts["hog"] = dataclasses.replace(parts["hog"], **{name: tuple(getattr(parts["hog"], name))})
        return cls(size=tuple(doc.get("size", (64, 64))), grey=bool(doc.get("grey", False)), **parts)

    @property
    def dim(self) -> int:
        """Length of one image's feature vector."""
        return _core.feature_dim(self.to_json())


def hog(
    image: Any,
    orientations: int = 9,
    pixels_per_cell: tuple[int, int] = (8, 8),
    cells_per_block: tuple[int, int] = (3, 3),
    block_norm: str = "L2-Hys",
    visualize: bool = False,
    transform_sqrt: bool = False,
    feature_vector: bool = True,
    *,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Histogram of oriented gradients: the same arguments and values as skimage.feature.hog.

    Args:
        image: 2-D grey image, or a multichannel image with `channel_axis` set (RGB: the
            channel with the largest gradient wins per pixel).
        orientations, pixels_per_cell, cells_per_block, block_norm, transform_sqrt: as scikit-image.
        visualize: not supported (raises ValueError).
        feature_vector: flatten the result.
        channel_axis: the axis of the channels, None for a grey image.
    Returns:
        float64 (float32 for float32 input) array, flat or of shape
        (blocks_row, blocks_col, cells_row, cells_col, orientations).
    """
    if visualize:
        raise ValueError("visualize=True is not supported: use skimage.feature.hog for the picture")
    # Arrays the core takes as they are (any strides; it checks shapes and parameters) skip
    # asarray, moveaxis and the contiguous copy: a quarter of a 64×64 RGB call.
    if type(image) is not np.ndarray or image.dtype not in _CORE_DTYPES or channel_axis not in (None, -1):
        image = _hog_image(image, channel_axis)
    return _core.hog(
        image, orientations, pixels_per_cell, cells_per_block, block_norm, transform_sqrt, feature_vector, channel_axis is not None
    )


_CORE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


def _hog_image(image: Any, channel_axis: int | None) -> np.ndarray:
    """The image as the core's `hog` takes it: in a dtype it computes in as scikit-image does,
    channels last."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "uif":
        raise ValueError(f"image must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    if channel_axis is not None and arr.ndim == 3:
        arr = np.moveaxis(arr, channel_axis, -1)
    return _native(arr)


def _native(arr: np.ndarray) -> np.ndarray:
    """The image as the core takes it, computed on as scikit-image does: uint8 as it is (the core
    computes in float64, exactly on its integers), float32 as it is, anything else in float64."""
    dtype = arr.dtype if arr.dtype == np.uint8 or arr.dtype == np.float32 else np.float64
    return np.ascontiguousarray(arr, dtype=dtype)


_PARAMS: dict[tuple[Any, ...], str] = {}


def local_binary_pattern(image: Any, P: int, R: float, method: str = "default") -> np.ndarray:
    """Local binary pattern codes: the same arguments and values as skimage.feature.local_binary_pattern.

    Args:
        image: 2-D grey image.
        P: number of neighbours; R: radius.
        method: "default", "ror", "uniform" or "nri_uniform".
    Returns:
        float64 array of the image's shape.
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"local_binary_pattern takes a 2-D grey image, got shape {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise ValueError(f"image must be numeric, got dtype {arr.dtype}")
    return _core.local_binary_pattern(_native(arr), _lbp_params(P, R, method))


def _lbp_params(P: Any, R: Any, method: Any) -> str:
    """The core's JSON for `Lbp(int(P), float(R), method)`, validated, memoised: the parameters
    are converted by value, so equal keys of other types give the same document."""
    key = ("lbp", P, R, method)
    try:
        return _PARAMS[key]
    except KeyError:
        params = json.dumps(Lbp(int(P), float(R), method).to_dict())
        if len(_PARAMS) < 256:
            _PARAMS[key] = params
        return params
    except TypeError:  # unhashable arguments
        return json.dumps(Lbp(int(P), float(R), method).to_dict())


def _as_image(image: Any, index: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or arr.ndim == 3 and arr.shape[-1] != 3:
        raise ValueError(f"image {index} must have shape (h, w), (h, w, 3) or (h, w, 4), got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"image {index} is empty (shape {arr.shape})")
    if arr.dtype == np.uint8 or arr.dtype == np.uint16 or arr.dtype == np.float32 or arr.dtype == np.float64:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "ui":
        return np.ascontiguousarray(np.clip(arr, 0, 255).astype(np.uint8))
    if arr.dtype.kind == "b":
        return np.ascontiguousarray(arr.astype(np.float32))
    if arr.dtype.kind == "f":
        return np.ascontiguousarray(arr, dtype=np.float32)
    raise ValueError(f"image {index} must be numeric, got dtype {arr.dtype}")


class _Bar:
    """A text progress bar on stderr for `progress=True`."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = max(total, 1), label

    def __call__(self, done: int) -> None:
        width = 30
        filled = width * min(done, self.total) // self.total
        end = "\n" if done >= self.total else ""
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}{end}")
        sys.stderr.flush()


def _progress_callback(progress: Any, total: int, label: str) -> Callable[[int], None] | None:
    if progress is True:
        return _Bar(total, label)
    if callable(progress):
        return lambda done: progress(done, total)
    if progress in (None, False):
        return None
    raise ValueError("progress must be True, False, None or a callable(done, total)")


def extract_features(
    images: Iterable[ImageInput] | np.ndarray,
    config: FeatureConfig | None = None,
    *,
    progress: bool | Callable[[int, int], None] = False,
    on_error: str = "raise",
    n_threads: int | None = None,
) -> np.ndarray:
    """Feature vectors of many images, one float32 row per image, computed on all cores.

    Args:
        images: a list of image arrays ((h, w) grey or (h, w, 3) RGB; uint8/uint16, or float
            in [0, 1]), a 3-D (n, h, w) or 4-D (n, h, w, 3) array, or a list of image file paths.
        config: what to extract (default: HOG on 64×64 RGB).
        progress: True for a progress bar on stderr, or a callable(done, total).
        on_error: for files, "raise" (default) stops at the first unreadable file naming it;
            "skip" leaves unreadable files out (their rows are dropped).
        n_threads: threads to use; None = all cores.
    Returns:
        float32 array of shape (n_images, config.dim).
    """
    config = config or FeatureConfig()
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(f"an array of images must be 3-D (n, h, w) or 4-D (n, h, w, c), got shape {images.shape}")
        items: Sequence[Any] = list(images)
    else:
        items = list(images)
    if not items:
        raise ValueError("no images given")
    if all(isinstance(item, (str, os.PathLike)) for item in items):
        callback = _progress_callback(progress, len(items), "features")
        matrix, _rows, failures = _core.extract_paths(
            [os.fspath(p) for p in items], config.to_json(), None, callback, n_threads
        )
        if failures and on_error == "raise":
            index, message = failures[0]
            raise _core.ImageError(f"{message} (image {index}; pass on_error='skip' to leave unreadable files out)")
        return matrix
    if any(isinstance(item, (str, os.PathLike)) for item in items):
        raise ValueError("pass either image arrays or file paths, not a mix of both")
    arrays = [_as_image(item, i) for i, item in enumerate(items)]
    callback = _progress_callback(progress, len(arrays), "features")
    return _core.extract_arrays(arrays, config.to_json(), callback, n_threads)


def _extract_in_chunks(
    images: Iterable[ImageInput] | np.ndarray,
    config: FeatureConfig | None = None,
    *,
    on_error: str = "raise",
    n_threads: int | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """`extract_features` as a task: chunk by chunk, stopping at the first chunk boundary
    after the task is cancelled."""
    items = list(images)
    config = config or FeatureConfig()
    parts = []
    for start in range(0, len(items), chunk):
        check_cancelled()
        parts.append(extract_features(items[start : start + chunk], config, on_error=on_error, n_threads=n_threads))
    return np.concatenate(parts) if parts else extract_features(items, config)


extract_features = BuiltinOp(extract_features, _extract_in_chunks)
register_type(FeatureConfig)
