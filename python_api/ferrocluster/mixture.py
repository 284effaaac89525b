"""Gaussian mixture models with scikit-learn's API and results, computed by the Rust core."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from ferrocluster import _core
from ferrocluster._base import BaseEstimator, check_is_fitted, check_n_features
from ferrocluster._validation import check_matrix, seed_from

try:
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover - exercised only where scikit-learn is absent

    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """An iterative fit stopped before converging."""


_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_INITS = ("kmeans", "k-means++", "random", "random_from_data")


class GaussianMixture(BaseEstimator):
    """A mixture of Gaussians fitted by expectation–maximisation, equal to scikit-learn's.

    Args:
        n_components: number of mixture components.
        covariance_type: "full", "tied", "diag" or "spherical".
        tol: convergence threshold on the change of the mean log-likelihood lower bound.
        reg_covar: added to the covariance diagonals so they stay positive definite.
        max_iter: most EM iterations per initialisation.
        n_init: initialisations tried, the best lower bound kept.
        init_params: "kmeans", "k-means++", "random" or "random_from_data".
        weights_init, means_init, precisions_init: optional starting parameters.
        random_state: seed (int), None for a fresh one each fit, or a numpy RandomState.
        n_threads: threads to use; None = all cores.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        n_threads: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any = None) -> "GaussianMixture":
        """Estimates the mixture's parameters from X (n_samples, n_features)."""
        if self.covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {', '.join(_COVARIANCE_TYPES)}; got {self.covariance_type!r}")
        if self.init_params not in _INITS:
            raise ValueError(f"init_params must be one of {', '.join(_INITS)}; got {self.init_params!r}")
        for name in ("n_components", "max_iter", "n_init"):
            value = getattr(self, name)
            minimum = 0 if name == "max_iter" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        X = check_matrix(X)
        if X.shape[0] < 2:
            raise ValueError(f"Expected n_samples >= 2, got n_samples={X.shape[0]}: a mixture needs at least two samples")
        params = {
            "n_components": int(self.n_components),
            "covariance_type": self.covariance_type,
            "tol": float(self.tol),
            "reg_covar": float(self.reg_covar),
            "max_iter": int(self.max_iter),
            "n_init": int(self.n_init),
            "init_params": self.init_params,
            "random_state": seed_from(self.random_state),
        }

        def optional(value: Any) -> np.ndarray | None:
            return None if value is None else np.ascontiguousarray(value, dtype=np.float64)

        fitted = _core.gmm_fit(
            X,
            json.dumps(params),
            optional(self.weights_init),
            optional(self.means_init),
            optional(self.precisions_init),
            self.n_threads,
        )
        for name, value in fitted.items():
            setattr(self, name, value)
        self.n_features_in_ = X.shape[1]
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, or increase "
                "max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fits and returns the component of each sample (the final E-step's labels)."""
        return self.fit(X).labels_

    def _apply(self, X: Any, what: str) -> Any:
        check_is_fitted(self, "means_")
        X = check_matrix(X)
        check_n_features(self, X)
        return _core.gmm_apply(
            X, self.covariance_type, self.weights_, self.means_, self.covariances_, self.precisions_cholesky_, what
        )

    def predict(self, X: Any) -> np.ndarray:
        """The most probable component of each sample."""
        return self._apply(X, "predict")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component for each sample, shape (n_samples, n_components)."""
        return self._apply(X, "predict_proba")

    def score_samples(self, X: Any) -> np.ndarray:
        """Log density of the mixture at each sample."""
        return self._apply(X, "score_samples")

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log density of the mixture over X."""
        return float(np.mean(self.score_samples(X)))

    def _n_parameters(self, X: np.ndarray) -> int:
        return int(self._apply(X[:1], "n_parameters"))

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on X (lower is better)."""
        X = check_matrix(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters(X) * np.log(X.shape[0])

    def aic(self, X: Any) -> float:
        """Akaike information criterion on X (lower is better)."""
        X = check_matrix(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters(X)
