"""scikit-learn style estimator for Gaussian mixture-of-experts regression."""

from __future__ import annotations

import numpy as np

from ._validation import check_X_y
from .em import fit_em
from .gates import Gate, SoftmaxGate
from .model import GaussianMoE
from .params import MoEParams

__all__ = ["MoERegressor"]


class MoERegressor:
    """Gaussian mixture-of-experts regression fitted by EM.

    Constructor arguments are stored as given; :meth:`fit` sets the attributes
    ending in an underscore.

    Parameters
    ----------
    n_experts : int, default=2
    gate : Gate, str or dict, default=SoftmaxGate()
    init : {"auto", "kmeans", "split", "random", "near_truth"} or MoEParams, \
default="auto"
        ``"auto"``: ``n_init`` k-means starts plus starts grown from the fit with one
        expert fewer (see :func:`gmoe.fit_em`), so that with the same
        ``random_state`` a fit never has a lower likelihood than the fit with fewer
        experts: BIC/AIC comparisons across k are then meaningful.
    n_init : int, default=5
        k-means restarts; the best log-likelihood wins.
    tol : float, default=1e-6
    max_iter : int, default=2000
    stop : {"relative", "per_sample"}, default="relative"
    random_state : None, int or numpy.random.Generator
    accelerate : bool, default=False
        SQUAREM-accelerated EM (see :func:`gmoe.fit_em`).
    truth : MoEParams, optional
        Needed by ``init="near_truth"``.
    polish : bool, default=True
        Certify the fit: Newton steps after EM to a zero score (see
        :func:`gmoe.fit_em` and docs/theory.md, "Certified fits and inference").
        Standard errors (:meth:`cov_params`, :attr:`bse`, :meth:`conf_int`) need it.
    gtol : float, default=1e-8
        Certification tolerance on the score per sample.
    var_floor : float, optional
        Lower bound of the variances (default ``1e-6 var(y)``); a fit at the bound is
        degenerate.

    Attributes
    ----------
    params_ : MoEParams
    model_ : GaussianMoE
    result_ : FitResult
    loglik_ : float
    n_iter_ : int
    converged_ : bool
        Whether EM met its stopping rule.
    certified_ : bool
        Whether the polish reached a certified maximum.
    loglik_trace_ : ndarray
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoERegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(1000, 1))
    >>> y = np.where(X[:, 0] > 0, 2 * X[:, 0], -1 - X[:, 0]) + 0.1 * rng.standard_normal(1000)
    >>> reg = MoERegressor(n_experts=2, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    def __init__(self, n_experts: int = 2, gate: Gate | str | dict | None = None,
                 init: str | MoEParams = "auto", n_init: int = 5, tol: float = 1e-6,
                 max_iter: int = 2000, stop: str = "relative", random_state=None,
                 truth: MoEParams | None = None, accelerate: bool = False,
                 polish: bool = True, gtol: float = 1e-8, var_floor: float | None = None):
        self.n_experts = n_experts
        self.gate = gate
        self.init = init
        self.n_init = n_init
        self.tol = tol
        self.max_iter = max_iter
        self.stop = stop
        self.random_state = random_state
        self.truth = truth
        self.accelerate = accelerate
        self.polish = polish
        self.gtol = gtol
        self.var_floor = var_floor

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in
                ("n_experts", "gate", "init", "n_init", "tol", "max_iter", "stop",
                 "random_state", "truth", "accelerate", "polish", "gtol", "var_floor")}

    def set_params(self, **params) -> MoERegressor:
        """Set constructor arguments (scikit-learn protocol)."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for MoERegressor")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"MoERegressor(n_experts={self.n_experts!r}, gate={self.gate!r}, init={self.init!r})"

    # ------------------------------------------------------------------- fit
    def fit(self, X, y) -> MoERegressor:
        """Fit by EM with restarts; returns self."""
        X, y = check_X_y(X, y)
        result = fit_em(X, y, self.n_experts, gate=self.gate or SoftmaxGate(), init=self.init,
                        n_init=self.n_init, tol=self.tol, max_iter=self.max_iter,
                        rng=self.random_state, truth=self.truth, stop=self.stop,
                        accelerate=self.accelerate, polish=self.polish, gtol=self.gtol,
                        var_floor=self.var_floor)
        self.result_ = result
        self.params_ = result.params
        self.model_ = result.model
        self.loglik_ = result.loglik
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.certified_ = result.certified
        self.loglik_trace_ = result.loglik_trace
        self.n_features_in_ = X.shape[1]
        self.n_samples_fit_ = X.shape[0]
        return self

    def _check_fitted(self) -> GaussianMoE:
        if not hasattr(self, "model_"):
            raise ValueError("this MoERegressor is not fitted yet; call fit(X, y) first")
        return self.model_

    # --------------------------------------------------------------- predict
    def predict(self, X) -> np.ndarray:
        """Conditional mean E[y | x], array of shape (n_samples,)."""
        return self._check_fitted().predict(X)

    def predict_experts(self, X) -> np.ndarray:
        """Most probable expert under the gate alone, array of shape (n_samples,)."""
        return self._check_fitted().log_weights(X).argmax(axis=1)

    def posterior(self, X, y) -> np.ndarray:
        """Responsibilities P(expert | x, y), array of shape (n_samples, k)."""
        return self._check_fitted().posterior(X, y)

    def score_samples(self, X, y) -> np.ndarray:
        """Per-sample log-likelihood, array of shape (n_samples,)."""
        return self._check_fitted().score_samples(X, y)

    def score(self, X, y) -> float:
        """Mean log-likelihood per sample (higher is better)."""
        return float(np.mean(self.score_samples(X, y)))

    def bic(self, X, y) -> float:
        """BIC on (X, y): ``-2 loglik + p log n`` (lower is better)."""
        model = self._check_fitted()
        n = np.shape(X)[0]
        return -2 * model.log_likelihood(X, y) + self.result_.n_parameters() * np.log(n)

    def aic(self, X, y) -> float:
        """AIC on (X, y): ``-2 loglik + 2 p``."""
        model = self._check_fitted()
        return -2 * model.log_likelihood(X, y) + 2 * self.result_.n_parameters()

    def sample(self, n: int, rng=None, x=None):
        """Draw (X, y) from the fitted model (see :meth:`GaussianMoE.sample`)."""
        return self._check_fitted().sample(n, rng=rng, x=x)

    def summary(self, alpha: float = 0.05) -> str:
        """The fit report of :meth:`FitResult.summary`, with standard errors."""
        self._check_fitted()
        return self.result_.summary(alpha)

    def cov_params(self) -> np.ndarray:
        """Covariance of the estimates (see :meth:`FitResult.cov_params`)."""
        self._check_fitted()
        return self.result_.cov_params()

    @property
    def bse(self):
        """Standard errors in the parameters' shapes (see :attr:`FitResult.bse`)."""
        self._check_fitted()
        return self.result_.bse

    def conf_int(self, alpha: float = 0.05):
        """Wald intervals ``(lower, upper)`` (see :meth:`FitResult.conf_int`)."""
        self._check_fitted()
        return self.result_.conf_int(alpha)
