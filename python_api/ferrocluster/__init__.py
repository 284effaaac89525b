"""ferrocluster: image features and clustering in Rust, on every core and across machines.

Example:
    >>> import ferrocluster as fc
    >>> images, labels = fc.datasets.make_images(n=64, size=(32, 32), classes=4, seed=0)
    >>> X = fc.extract_features(images, fc.FeatureConfig(size=(32, 32)))
    >>> km = fc.KMeans(n_clusters=4, random_state=0).fit(X)
    >>> fc.metrics.adjusted_rand_score(labels, km.labels_) > 0.9
    True
"""

from ferrocluster import datasets, metrics
from ferrocluster._core import ImageError, ModelFileError, __version__
from ferrocluster.cluster import DBSCAN, KMeans, MiniBatchKMeans, kmeans_predict
from ferrocluster.mixture import GaussianMixture
from ferrocluster.runtime import (
    GetTimeoutError,
    ObjectRef,
    ObjectLostError,
    RemoteTaskError,
    TaskCancelledError,
    cancel,
    check_cancelled,
    get,
    init,
    is_cancelled,
    is_initialized,
    put,
    remote,
    shutdown,
    wait,
)
from ferrocluster.features import (
    ColourHistogram,
    FeatureConfig,
    Hog,
    Lbp,
    Pixels,
    extract_features,
    hog,
    local_binary_pattern,
)

__all__ = [
    "ColourHistogram",
    "DBSCAN",
    "FeatureConfig",
    "GaussianMixture",
    "Hog",
    "ImageError",
    "KMeans",
    "Lbp",
    "MiniBatchKMeans",
    "ModelFileError",
    "Pixels",
    "__version__",
    "datasets",
    "extract_features",
    "get",
    "init",
    "is_cancelled",
    "is_initialized",
    "kmeans_predict",
    "put",
    "remote",
    "shutdown",
    "wait",
    "cancel",
    "check_cancelled",
    "GetTimeoutError",
    "ObjectRef",
    "ObjectLostError",
    "RemoteTaskError",
    "TaskCancelledError",
    "hog",
    "local_binary_pattern",
    "metrics",
]
