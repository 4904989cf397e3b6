"""The Gaussian mixture of experts: sampling, likelihood, prediction."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from ._design import Design
from ._validation import check_positive_int, check_X_y
from .experts import expert_log_density_T, expert_means_T
from .gates import Gate, make_gate
from .params import MoEParams
from .xlaws import Uniform, XLaw, make_xlaw

__all__ = ["GaussianMoE", "joint_log_T"]


def joint_log_T(log_w_T: np.ndarray, log_phi_T: np.ndarray, out: np.ndarray | None = None):
    """Posterior responsibilities and per-sample log-likelihood, in log space.

    Returns ``(resp_T, loglik_n)`` with ``resp_T`` of shape (k, n) (written into
    ``out`` if given) and ``loglik_n = logsumexp_i(log_w + log_phi)`` of shape (n,).
    """
    joint = np.add(log_w_T, log_phi_T, out=out)
    m = joint.max(axis=0)
    joint -= m
    np.exp(joint, out=joint)
    s = joint.sum(axis=0)
    joint /= s
    return joint, m + np.log(s)


class GaussianMoE:
    """A Gaussian mixture of experts ``p(y|x) = sum_i g_i(x) N(y; a_i^T x + b_i, var_i)``.

    Parameters
    ----------
    gate : Gate or str or dict
        The gating function (``SoftmaxGate()``, ``"softmax"``, ...).
    params : MoEParams
        Parameters; stored in the gate's normal form.
    x_law : XLaw or dict or str, optional
        Law of X used by :meth:`sample` when no X is given; default ``Uniform(0, 1, d)``.
        A gate that models X (``gate.models_x``, the Gaussian gate) has its own law of
        X, ``gate.x_law(params)``: ``x_law`` must then be None, ``"gate"`` or that law,
        and the log-likelihood is the joint one, ``log p(x, y)``.

    Examples
    --------
    >>> from gmoe import GaussianMoE, MoEParams, SoftmaxGate
    >>> truth = MoEParams(beta0=[-8, 0], beta1=[[25], [0]], a=[[-20], [20]], b=[15, -5],
    ...                   var=[0.09, 0.16])
    >>> model = GaussianMoE(SoftmaxGate(), truth)
    >>> X, y = model.sample(1000, rng=0)
    >>> X.shape, y.shape
    ((1000, 1), (1000,))
    >>> float(model.log_likelihood(X, y)) < 0
    True
    """

    def __init__(self, gate: Gate | str | dict, params: MoEParams, x_law=None):
        self.gate = make_gate(gate)
        params = self.gate.prepare(params)
        self.gate.check_params(params)
        self.params = self.gate.normal_form(params)
        if getattr(self.gate, "models_x", False):
            # the gate is a model of X (docs/theory.md, "The Gaussian gate")
            own = self.gate.x_law(self.params)
            given = x_law if x_law in (None, "gate", {"name": "gate"}) else make_xlaw(x_law)
            if not (given in (None, "gate", {"name": "gate"}) or given == own):
                raise ValueError(f"the {self.gate.name} gate models X, whose law is the gate's "
                                 f"mixture: pass x_law=None (or 'gate'), not {given!r}")
            x_law = own
        self.x_law = Uniform(0.0, 1.0, params.d) if x_law is None else make_xlaw(x_law)
        if self.x_law.d != params.d:
            raise ValueError(f"x_law has d = {self.x_law.d} but params have d = {params.d}")

    @property
    def k(self) -> int:
        return self.params.k

    @property
    def d(self) -> int:
        return self.params.d

    def __repr__(self) -> str:
        return f"GaussianMoE(gate={self.gate!r}, params={self.params!r})"

    # ---------------------------------------------------------------- helpers
    def _design(self, X, y=None) -> Design:
        if y is None:
            X = check_X_y(X)
        else:
            X, y = check_X_y(X, y)
        if X.shape[1] != self.d:
            raise ValueError(f"X has {X.shape[1]} columns but the model has d = {self.d}")
        return Design(X, y)

    def _log_parts_T(self, design: Design):
        p = self.params
        return (self.gate.log_weights_T(design, p),
                expert_log_density_T(design, p.a, p.b, p.var))

    # ---------------------------------------------------------------- sampling
    def sample(self, n: int, rng=None, x=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(X, y)`` from the model.

        Parameters
        ----------
        n : int
            Number of samples.
        rng : None, int or numpy.random.Generator
        x : XLaw, array-like of shape (n, d), or None
            Covariates: drawn from this law, taken as given, or (None) drawn from
            the model's ``x_law``.

        Returns
        -------
        X : ndarray of shape (n, d)
        y : ndarray of shape (n,)
        """
        n = check_positive_int(n, "n")
        rng = np.random.default_rng(rng)
        if x is None or isinstance(x, (XLaw, dict, str)):
            law = self.x_law if x is None else make_xlaw(x)
            X = law.draw(n, rng)
        else:
            X = check_X_y(x)
            if X.shape[0] != n:
                raise ValueError(f"x has {X.shape[0]} rows but n = {n}")
        return X, self.sample_y(X, rng)

    def sample_y(self, X, rng=None) -> np.ndarray:
        """Draw y given the rows of X, array of shape (n,)."""
        rng = np.random.default_rng(rng)
        design = self._design(X)
        w = np.exp(self.gate.log_weights_T(design, self.params))
        np.cumsum(w, axis=0, out=w)
        u = rng.random(design.n)
        # expert index = number of cumulative weights below u (last cap guards rounding)
        z = np.minimum((w[:-1] < u * w[-1]).sum(axis=0), self.k - 1)
        p = self.params
        mean = np.einsum("nd,nd->n", design.X, p.a[z]) + p.b[z]
        return mean + p.sd[z] * rng.standard_normal(design.n)

    # -------------------------------------------------------------- likelihood
    def score_samples(self, X, y) -> np.ndarray:
        """Per-sample log-likelihood ``log p(y_n | x_n)``, array of shape (n,); the joint
        ``log p(x_n, y_n)`` for a gate that models X (``gate.models_x``)."""
        design = self._design(X, y)
        log_w, log_phi = self._log_parts_T(design)
        ll = joint_log_T(log_w, log_phi)[1]
        if getattr(self.gate, "models_x", False):
            ll += self.gate.log_marginal_x(design, self.params)
        return ll

    def log_likelihood(self, X, y) -> float:
        """Total log-likelihood ``sum_n log p(y_n | x_n)`` (conditional), or
        ``sum_n log p(x_n, y_n)`` for a gate that models X: what fits maximise."""
        return float(self.score_samples(X, y).sum())

    def posterior(self, X, y) -> np.ndarray:
        """Responsibilities ``P(expert i | x_n, y_n)``, array of shape (n, k)."""
        log_w, log_phi = self._log_parts_T(self._design(X, y))
        return joint_log_T(log_w, log_phi)[0].T

    def log_weights(self, X) -> np.ndarray:
        """Log gate weights ``log g_i(x_n)``, array of shape (n, k)."""
        return self.gate.log_weights_T(self._design(X), self.params).T

    def expert_means(self, X) -> np.ndarray:
        """Expert means ``a_i^T x_n + b_i``, array of shape (n, k)."""
        return expert_means_T(self._design(X), self.params.a, self.params.b).T

    def predict(self, X) -> np.ndarray:
        """Conditional mean ``E[y | x_n] = sum_i g_i(x_n) (a_i^T x_n + b_i)``, shape (n,)."""
        design = self._design(X)
        w = np.exp(self.gate.log_weights_T(design, self.params))
        return np.einsum("kn,kn->n", w, expert_means_T(design, self.params.a, self.params.b))

    def cdf(self, X, y) -> np.ndarray:
        """Conditional CDF ``F(y_n | x_n)``, array of shape (n,)."""
        design = self._design(X, y)
        w = np.exp(self.gate.log_weights_T(design, self.params))
        means = expert_means_T(design, self.params.a, self.params.b)
        z = (design.y - means) / self.params.sd[:, None]
        return np.einsum("kn,kn->n", w, ndtr(z))
