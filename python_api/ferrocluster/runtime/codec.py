"""The JSON codec of task arguments and results (version 1). Never pickle: a worker decodes
only plain data, numpy arrays and the few ferrocluster types registered here.

Plain JSON values pass as they are. Everything else is an object tagged ``"__fc__"``:

- ``ndarray``: ``dtype`` (numpy's ``dtype.str``, e.g. ``"<f4"``), ``shape``, and ``data``
  (base64 of the C-order bytes) or, for large arrays, ``blob`` (a reference to the bytes kept
  in Redis, made by the ``store`` given to `encode`); numpy scalars are 0-d arrays and come
  back as scalars.
- ``bytes``: ``data`` (base64) or ``blob``, as arrays.
- ``tuple``, ``float`` (non-finite: JSON has no NaN), ``dict`` (keys that are not
  all strings, or a key named ``__fc__``), as ``items``.
- ``object``: a registered type with ``to_json``/``from_json`` (``FeatureConfig``).
- ``ref``: an ObjectRef, by task id.

Example:
    >>> import numpy as np
    >>> from ferrocluster.runtime import codec
    >>> codec.decode(codec.encode((1, np.arange(3, dtype=np.float32))))
    (1, array([0., 1., 2.], dtype=float32))
"""

import base64
import math
from typing import Any, Callable

import numpy as np

VERSION = 1
TAG = "__fc__"

_TYPES: dict[str, type] = {}


def register_type(cls: type) -> type:
    """Lets instances of `cls` (which has `to_json()` and a `from_json(text)` classmethod)
    travel in tasks, by `module:qualname`.

    Returns:
        `cls`, so that it can be used as a decorator.
    """
    _TYPES[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return cls


Store = Callable[[bytes], Any]
"""Keeps bytes out of line: returns a JSON reference to them, or None to send them inline."""

Load = Callable[[Any], bytes | bytearray]
"""Reads back the bytes of a reference made by a `Store`."""


def encode(value: Any, ref_id: Callable[[Any], str | None] = lambda _: None, store: Store | None = None) -> Any:
    """A JSON-ready form of `value`.

    Args:
        value: plain data, numpy arrays or scalars, tuples, bytes, registered types.
        ref_id: gives the task id of an ObjectRef (None for anything else).
        store: where the bytes of arrays and `bytes` values go when it takes them (large
            ones); None sends every byte inline.
    Returns:
        a value `json.dumps` accepts with `allow_nan=False`.
    Raises:
        TypeError: a value of a type the codec does not carry.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {TAG: "float", "repr": repr(value)}
    if isinstance(value, (np.ndarray, np.generic)):
        # ascontiguousarray would turn a scalar into shape (1,); tobytes is C-order anyway.
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"arrays of dtype {array.dtype} cannot travel in tasks (numbers and booleans only)")
        return {TAG: "ndarray", "dtype": array.dtype.str, "shape": list(array.shape), **_bytes(array.tobytes(), store)}
    if isinstance(value, list):
        return [encode(v, ref_id, store) for v in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v, ref_id, store) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode(v, ref_id, store) for k, v in value.items()}
        return {TAG: "dict", "items": [[encode(k, ref_id, store), encode(v, ref_id, store)] for k, v in value.items()]}
    if isinstance(value, bytes):
        return {TAG: "bytes", **_bytes(value, store)}
    task_id = ref_id(value)
    if task_id is not None:
        return {TAG: "ref", "id": task_id}
    name = f"{type(value).__module__}:{type(value).__qualname__}"
    if name in _TYPES:
        return {TAG: "object", "type": name, "json": value.to_json()}
    raise TypeError(f"values of type {name} cannot travel in tasks (no pickle): pass plain data or numpy arrays")


def _bytes(data: bytes, store: Store | None) -> dict[str, Any]:
    blob = store(data) if store is not None else None
    return {"data": base64.b64encode(data).decode("ascii")} if blob is None else {"blob": blob}


def decode(value: Any, make_ref: Callable[[str], Any] = lambda task_id: task_id, load: Load | None = None) -> Any:
    """The inverse of `encode`.

    Args:
        value: what `encode` produced, after a JSON round trip.
        make_ref: builds an ObjectRef from a task id.
        load: reads the bytes of a blob reference (needed when `encode` had a `store`).
    Returns:
        the original value.
    Raises:
        ValueError: an unknown tag or type, or a blob reference without `load`.
    """
    if isinstance(value, list):
        return [decode(v, make_ref, load) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {k: decode(v, make_ref, load) for k, v in value.items()}
    if tag == "ndarray":
        data = _unbytes(value, load)
        # Arrays must be writable (tasks may write to their inputs): base64 gives immutable
        # bytes, so those are copied; a loaded blob is a fresh bytearray, used as it is.
        array = np.frombuffer(data, dtype=np.dtype(value["dtype"])).reshape(value["shape"])
        array = array if array.flags.writeable else array.copy()
        return array[()] if array.ndim == 0 else array
    if tag == "tuple":
        return tuple(decode(v, make_ref, load) for v in value["items"])
    if tag == "dict":
        return {decode(k, make_ref, load): decode(v, make_ref, load) for k, v in value["items"]}
    if tag == "bytes":
        return bytes(_unbytes(value, load))
    if tag == "float":
        return float(value["repr"])
    if tag == "ref":
        return make_ref(value["id"])
    if tag == "object" and value.get("type") in _TYPES:
        return _TYPES[value["type"]].from_json(value["json"])
    raise ValueError(f"cannot decode a task value tagged {tag!r} (type {value.get('type')!r})")


def _unbytes(value: dict[str, Any], load: Load | None) -> bytes | bytearray:
    if "blob" not in value:
        return base64.b64decode(value["data"])
    if load is None:
        raise ValueError("a value passed by reference (blob) cannot be read without a store")
    return load(value["blob"])
