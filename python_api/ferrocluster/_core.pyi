"""Type stubs of the native module `ferrocluster._core` (hand-written; the public API is in
the pure-Python modules that wrap it)."""

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

class ImageError(ValueError):
    """An image could not be decoded: corrupt, truncated, unsupported or too large."""

class ModelFileError(ValueError):
    """A saved model file could not be read."""

_Float = np.float32 | np.float64
_Matrix = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_Vector = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_Image = npt.NDArray[np.uint8] | npt.NDArray[np.uint16] | npt.NDArray[np.float32] | npt.NDArray[np.float64]
_Progress = Callable[[int], object] | None

def hog(image: _Image, params: str) -> tuple[npt.NDArray[_Float], list[int]]: ...
def local_binary_pattern(image: _Image, params: str) -> npt.NDArray[np.float64]: ...
def feature_dim(config: str) -> int: ...
def extract_arrays(
    images: Sequence[_Image], config: str, progress: _Progress = None, n_threads: int | None = None
) -> npt.NDArray[np.float32]: ...
def extract_paths(
    paths: Sequence[str],
    config: str,
    limits: str | None = None,
    progress: _Progress = None,
    n_threads: int | None = None,
) -> tuple[npt.NDArray[np.float32], list[int], list[tuple[int, str]]]: ...
def kmeans_fit(
    x: _Matrix,
    sample_weight: _Vector | None,
    params: str,
    init: str,
    init_centres: npt.NDArray[np.float64] | None,
    n_threads: int | None,
) -> tuple[_Matrix, npt.NDArray[np.int64], float, int]: ...
def minibatch_kmeans_fit(
    x: _Matrix,
    sample_weight: _Vector | None,
    params: str,
    init: str,
    init_centres: npt.NDArray[np.float64] | None,
    n_threads: int | None,
) -> tuple[_Matrix, npt.NDArray[np.int64], float, int]: ...
def sharded_kmeans_fit(
    x: _Matrix,
    params: str,
    init_centres: npt.NDArray[np.float64] | None,
    queue: Queue | None = None,
    timeout_s: float = 3600.0,
    n_threads: int | None = None,
) -> tuple[_Matrix, npt.NDArray[np.int64], float, int]: ...
def kmeans_predict(
    x: _Matrix, centres: _Matrix, n_threads: int | None = None
) -> tuple[npt.NDArray[np.int64], _Vector]: ...
def kmeans_transform(x: _Matrix, centres: _Matrix, n_threads: int | None = None) -> _Matrix: ...
def dbscan_fit(
    x: _Matrix, sample_weight: _Vector | None, params: str, n_threads: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uintp], npt.NDArray[np.float64]]: ...
def adjusted_rand_score(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> float: ...
def normalized_mutual_info_score(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> float: ...
def silhouette_score(x: _Matrix, labels: npt.NDArray[np.int64], sample_size: int | None = None, seed: int = 0) -> float: ...
def silhouette_samples(x: _Matrix, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]: ...
def calinski_harabasz_score(x: _Matrix, labels: npt.NDArray[np.int64]) -> float: ...
def davies_bouldin_score(x: _Matrix, labels: npt.NDArray[np.int64]) -> float: ...
def synthetic_images(spec: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]: ...
def gmm_fit(
    x: _Matrix,
    params: str,
    weights_init: npt.NDArray[np.float64] | None = None,
    means_init: npt.NDArray[np.float64] | None = None,
    precisions_init: npt.NDArray[np.float64] | None = None,
    n_threads: int | None = None,
) -> dict[str, object]: ...
def gmm_apply(
    x: _Matrix,
    covariance_type: str,
    weights: npt.NDArray[np.float64],
    means: npt.NDArray[np.float64],
    covariances: npt.NDArray[np.float64],
    precisions_cholesky: npt.NDArray[np.float64],
    what: str,
) -> object: ...

class Queue:
    """A connection to the Redis work queue (JSON text in and out)."""
    def __init__(self, url: str, namespace: str = "fc", lease_ms: int = 30000, block_ms: int = 2000) -> None: ...
    def enqueue(
        self,
        queue: str,
        kind: str,
        payload: str,
        id: str | None = None,
        max_retries: int = 3,
        retry_on_error: bool = True,
        priority: str = "normal",
        result_ttl_s: int = 86400,
    ) -> tuple[str, bool]: ...
    def status(self, id: str) -> str: ...
    def wait(self, ids: Sequence[str], timeout_s: float) -> str: ...
    def cancel(self, id: str) -> str: ...
    def stats(self) -> str: ...

class Delivery:
    """A task a Consumer fetched and started."""
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def deliveries(self) -> int: ...

class Consumer:
    """One member of a queue's consumer group: the fenced steps of a worker."""
    def __init__(self, queue: Queue, name: str, queues: Sequence[str]) -> None: ...
    def fetch(self, max: int, block_ms: int) -> list[Delivery]: ...
    def heartbeat(self, delivery: Delivery, done: int = 0, total: int = 0) -> str: ...
    def complete(self, delivery: Delivery, result: str) -> bool: ...
    def fail(self, delivery: Delivery, error: str, retryable: bool) -> bool: ...
    def cancelled(self, delivery: Delivery) -> bool: ...
    def reject(self, delivery: Delivery, reason: str) -> bool: ...
    def release_all(self) -> int: ...
    def leave(self) -> None: ...
