"""The estimator base: scikit-learn's own when it is installed, a compatible one otherwise."""

from __future__ import annotations

import inspect
from typing import Any

try:  # scikit-learn is optional: with it our estimators are true scikit-learn estimators.
    from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
except ImportError:  # pragma: no cover - exercised only where scikit-learn is absent

    class BaseEstimator:  # type: ignore[no-redef]
        """get_params / set_params over the constructor's keyword arguments, like scikit-learn's."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params: Any) -> "BaseEstimator":
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}. Valid parameters are: {valid}.")
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class ClusterMixin:  # type: ignore[no-redef]
        """fit_predict from fit, like scikit-learn's."""

        def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
            self.fit(X, **kwargs)
            return self.labels_

    class TransformerMixin:  # type: ignore[no-redef]
        """fit_transform from fit and transform, like scikit-learn's."""

        def fit_transform(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
            return self.fit(X, **kwargs).transform(X)




try:
    from sklearn.exceptions import NotFittedError
except ImportError:  # pragma: no cover - exercised only where scikit-learn is absent

    class NotFittedError(ValueError, AttributeError):  # type: ignore[no-redef]
        """Raised when a model is used before fit."""


def check_is_fitted(estimator: Any, attribute: str) -> None:
    """Raises NotFittedError unless `estimator` has the fitted `attribute`."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
            "before using this estimator."
        )


def check_n_features(estimator: Any, X: Any) -> None:
    """Raises ValueError when X's width differs from the training data's."""
    expected = estimator.n_features_in_
    if X.shape[1] != expected:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting {expected} features as input."
        )

__all__ = ["BaseEstimator", "ClusterMixin", "NotFittedError", "TransformerMixin", "check_is_fitted", "check_n_features"]
