"""Gaussian gate: g_i(x) proportional to pi_i N(x; mu_i, Sigma_i) (a joint mixture on (x, y))."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg import solve_triangular

from .._design import Design
from .._validation import check_positive_float
from ..params import MoEParams
from ..xlaws import GaussianMixture
from ._base import Gate, GateStepInfo
from .softmax import log_softmax_T

__all__ = ["GaussianGate"]

_LOG_2PI = float(np.log(2 * np.pi))


def _log_normal_T(XT: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``log N(x_n; mu_i, cov_i)`` as a (k, n) array; NaN rows where cov_i is not
    positive definite (or not finite)."""
    k, d = mu.shape
    out = np.empty((k, XT.shape[1]))
    for i in range(k):
        try:
            L = np.linalg.cholesky(cov[i])
        except np.linalg.LinAlgError:
            out[i] = np.nan
            continue
        z = solve_triangular(L, XT - mu[i][:, None], lower=True, check_finite=False)
        logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
        out[i] = -0.5 * (np.einsum("dn,dn->n", z, z) + d * _LOG_2PI + logdet)
    return out


def _log_joint_T(XT: np.ndarray, beta0: np.ndarray, mu: np.ndarray,
                 cov: np.ndarray) -> np.ndarray:
    """``log pi_i + log N(x_n; mu_i, cov_i)`` with ``pi = softmax(beta0)``, (k, n)."""
    m = float(np.max(beta0))
    log_pi = beta0 - (m + np.log(np.sum(np.exp(beta0 - m))))
    out = _log_normal_T(XT, mu, cov)
    out += log_pi[:, None]
    return out


class _GaussianState(NamedTuple):
    """The gate at one free vector (see :meth:`Gate.free_state`)."""

    #: conditional log weights log g_i(x_n), (k, n)
    log_w: np.ndarray
    #: log p(x_n) under the gate's mixture, (n,): the likelihood adds it
    log_px: np.ndarray
    pi: np.ndarray
    mu: np.ndarray
    prec: np.ndarray


class GaussianGate(Gate):
    """Gaussian gating: ``g_i(x) = pi_i N(x; mu_i, Sigma_i) / sum_j pi_j N(x; mu_j, Sigma_j)``.

    The model of the Gaussian-gated MoE papers (arXiv 2305.07572): the joint
    Gaussian mixture ``p(x, y) = sum_i pi_i N(x; mu_i, Sigma_i) N(y; a_i^T x + b_i,
    nu_i)``, whose conditional ``p(y | x)`` is a mixture of experts with these
    weights. See docs/theory.md, "The Gaussian gate".

    **Parameters.** ``beta0_i = log pi_i`` up to a common shift (the symmetry
    ``"intercept"``: the normal form has ``beta0_k = 0``, so ``exp(beta0_i) =
    pi_i / pi_k``), ``beta1_i = mu_i`` (not shifted by anything: the means are
    identified), and ``MoEParams.gate_cov[i] = Sigma_i`` (symmetric positive
    definite). Parameters without ``gate_cov`` get identity covariances from
    :meth:`prepare`.

    **The likelihood is the joint one.** The gate models X (``models_x = True``):
    the log-likelihood that EM, the polish and :class:`gmoe.GaussianMoE` compute
    is ``sum_n log p(x_n, y_n)``, the conditional one plus
    :meth:`log_marginal_x`, and a model with this gate draws X from the gate's own
    mixture (:meth:`x_law`). The MLE of the joint likelihood is the papers'
    estimator; it is not the maximiser of the conditional likelihood.

    **M-step.** Closed form: ``pi_i`` the mean responsibility, ``mu_i`` and
    ``Sigma_i`` the responsibility-weighted mean and covariance of x (the experts'
    weighted least squares are the shared expert M-step). It maximises the joint
    gate objective ``sum_n sum_i r_ni log(pi_i N(x_n; mu_i, Sigma_i))``, which is
    what makes EM monotone in the joint likelihood; it does not maximise the
    conditional objective ``sum r log g_i`` of the other gates. Each covariance's
    eigenvalues are kept above ``cov_floor`` times the mean variance of X (a
    component collapsing onto a point would make the likelihood unbounded).

    **Certified fits.** The free vector is ``mu_i`` (every expert), ``beta0_i``
    (all but the last), then the upper triangle of every ``Sigma_i`` as it is (no
    log scale); the score is that of the joint likelihood (analytic), the
    information is by central differences of the score. With
    ``standardize=True`` only y is standardised (``rescales_x`` is False: rescaling
    X would need its Jacobian in the joint likelihood).

    **Splitting** an expert halves its ``pi`` between two copies with the same
    ``mu``, ``Sigma`` and expert: the joint density is unchanged (``exact_split``).

    Parameters
    ----------
    cov_floor : float, default=1e-10
        Smallest eigenvalue of a covariance after the M-step, relative to the mean
        (weighted) variance of the covariates.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams
    >>> from gmoe.gates import GaussianGate
    >>> p = MoEParams(beta0=[0.0, 0.0], beta1=[[-1.0], [1.0]], a=[[1.0], [-1.0]],
    ...               b=[0.0, 0.0], var=[0.1, 0.1], gate_cov=[0.25, 0.25])
    >>> GaussianGate().weights(np.array([[0.0]]), p)
    array([[0.5, 0.5]])
    """

    name = "gaussian"
    rescales_x = False
    symmetry = "intercept"
    exact_split = True
    #: the gate is a model of X: the likelihood is the joint one, X is drawn from it
    models_x = True

    def __init__(self, cov_floor: float = 1e-10):
        self.cov_floor = check_positive_float(cov_floor, "cov_floor")

    def get_config(self) -> dict:
        return {"name": self.name, "cov_floor": self.cov_floor}

    # ------------------------------------------------------------ structure
    def prepare(self, params: MoEParams) -> MoEParams:
        """Identity covariances for parameters that carry none; no temperature (a ``tau``
        is dropped: this gate has none)."""
        if params.gate_cov is None:
            params = params.replace(gate_cov=np.broadcast_to(
                np.eye(params.d), (params.k, params.d, params.d)))
        return params if params.tau is None else params.replace(tau=None)

    def check_params(self, params: MoEParams, d: int | None = None) -> None:
        super().check_params(params, d)
        if params.gate_cov is None:
            raise ValueError("the gaussian gate needs covariances: params.gate_cov is None "
                             "(shape (k, d, d))")

    def normal_form(self, params: MoEParams) -> MoEParams:
        """``beta0`` shifted so that the last expert's is 0 (the means are not shifted)."""
        return params.shift_gate(-params.beta0[-1])

    # -------------------------------------------------------------- weights
    def log_weights_T(self, design: Design, params: MoEParams) -> np.ndarray:
        params = self.prepare(params)
        eta = _log_joint_T(design.XT, params.beta0, params.beta1, params.gate_cov)
        return log_softmax_T(eta)[0]

    def log_marginal_x(self, design: Design, params: MoEParams) -> np.ndarray:
        """``log p(x_n)`` under the gate's mixture ``sum_i pi_i N(x; mu_i, Sigma_i)``, (n,).

        Added to the conditional log-likelihood by EM, the polish and the model: the
        joint log-likelihood is what this gate's fits maximise.
        """
        params = self.prepare(params)
        eta = _log_joint_T(design.XT, params.beta0, params.beta1, params.gate_cov)
        return log_softmax_T(eta)[2]

    def x_law(self, params: MoEParams) -> GaussianMixture:
        """The law of X: the gate's mixture ``sum_i pi_i N(mu_i, Sigma_i)``."""
        params = self.prepare(params)
        w = np.exp(params.beta0 - np.max(params.beta0))
        return GaussianMixture(w / w.sum(), params.beta1, params.gate_cov)

    # -------------------------------------------------------------- M-step
    def _objective(self, design, resp_T, beta0, mu, cov) -> float:
        joint = _log_joint_T(design.XT, beta0, mu, cov)
        mask = resp_T > 0
        return float(np.sum(resp_T[mask] * joint[mask]))

    def m_step(self, design, resp_T, params, log_w_T, log_phi_T=None):
        """Closed form: ``pi`` the mean responsibility, ``mu`` and ``Sigma`` the weighted
        mean and covariance of x. Maximises the joint gate objective
        ``sum r log(pi_i N(x; mu_i, Sigma_i))`` (reported in the returned info)."""
        params = self.prepare(params)
        k = params.k
        XT = design.XT
        q0 = self._objective(design, resp_T, params.beta0, params.beta1, params.gate_cov)
        R = resp_T.sum(axis=1)
        W = float(R.sum())
        mu = np.array(params.beta1, dtype=float)
        cov = np.array(params.gate_cov, dtype=float)
        pooled = float(np.mean(np.var(XT, axis=1))) if design.n > 1 else 1.0
        floor = self.cov_floor * (pooled if pooled > 0 else 1.0)
        for i in range(k):
            if not R[i] > 0:
                continue  # no data: keep its mean and covariance
            mu[i] = resp_T[i] @ design.X / R[i]
            diff = XT - mu[i][:, None]
            C = (diff * resp_T[i]) @ diff.T / R[i]
            C = 0.5 * (C + C.T)
            w, V = np.linalg.eigh(C)
            if w.min() < floor:
                C = (V * np.maximum(w, floor)) @ V.T
                C = 0.5 * (C + C.T)
            cov[i] = C
        with np.errstate(divide="ignore"):
            log_pi = np.log(np.maximum(R / W, 1e-300))
        beta0 = log_pi - log_pi[-1]
        new = params.replace(beta0=beta0, beta1=mu, gate_cov=cov)
        eta = _log_joint_T(XT, beta0, mu, cov)
        q1 = float(np.sum(resp_T[resp_T > 0] * eta[resp_T > 0]))
        log_w = log_softmax_T(eta)[0]
        return new, log_w, GateStepInfo(q0, q1, 1, ["joint gate objective (closed form)"])

    # ------------------------------------------------- free parametrisation
    def free_layout(self, k: int, d: int) -> list[tuple[str, tuple[int, ...]]]:
        """``mu_i`` (as ``beta1``) of every expert and ``beta0_i`` of all but the last,
        expert by expert, then the upper triangle of every ``Sigma_i`` (``gate_cov``)."""
        layout: list[tuple[str, tuple[int, ...]]] = []
        for i in range(k):
            layout += [("beta1", (i, j)) for j in range(d)]
            if i < k - 1:
                layout.append(("beta0", (i,)))
        layout += [("gate_cov", (i, j, m)) for i in range(k) for j in range(d)
                   for m in range(j, d)]
        return layout

    def _unflatten(self, theta, k: int, d: int):
        beta0, mu, cov = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
        for value, (name, index) in zip(theta, self.free_layout(k, d), strict=True):
            if name == "beta0":
                beta0[index] = value
            elif name == "beta1":
                mu[index] = value
            else:
                i, j, m = index
                cov[i, j, m] = cov[i, m, j] = value
        return beta0, mu, cov

    def free_vector(self, params: MoEParams) -> np.ndarray:
        params = self.normal_form(self.prepare(params))
        return np.array([getattr(params, name)[index]
                         for name, index in self.free_layout(params.k, params.d)], dtype=float)

    def from_free_vector(self, theta: np.ndarray, params: MoEParams) -> MoEParams:
        beta0, mu, cov = self._unflatten(theta, params.k, params.d)
        return params.replace(beta0=beta0, beta1=mu, gate_cov=cov)

    def free_state(self, theta, design, k, mask=None):
        beta0, mu, cov = self._unflatten(theta, k, design.d)
        eta = _log_joint_T(design.XT, beta0, mu, cov)
        log_w, _, log_px = log_softmax_T(eta)
        pi = np.exp(beta0 - np.max(beta0))
        pi /= pi.sum()
        with np.errstate(all="ignore"):
            try:
                prec = np.linalg.inv(cov)
            except np.linalg.LinAlgError:
                prec = np.full_like(cov, np.nan)
        return _GaussianState(log_w, log_px, pi, mu, prec)

    def free_score(self, state, design, resp_T, mask=None):
        """Gradient of the joint gate objective ``sum_n sum_i r_ni log(pi_i N(x_n; mu_i,
        Sigma_i))``: with posterior responsibilities, the gate's part of the score of
        the joint log-likelihood (Fisher's identity)."""
        k, d = resp_T.shape[0], design.d
        R = resp_T.sum(axis=1)
        W = float(R.sum())
        g_beta0 = R - state.pi * W
        S1 = resp_T @ design.X if hasattr(design, "X") else resp_T @ design.XT.T
        g_mu = np.empty((k, d))
        g_cov = np.empty((k, d, d))
        for i in range(k):
            P = state.prec[i]
            g_mu[i] = P @ (S1[i] - R[i] * state.mu[i])
            diff = design.XT - state.mu[i][:, None]
            M = (diff * resp_T[i]) @ diff.T
            g_cov[i] = 0.5 * (P @ M @ P - R[i] * P)
        out = []
        for name, index in self.free_layout(k, d):
            if name == "beta0":
                out.append(g_beta0[index])
            elif name == "beta1":
                out.append(g_mu[index])
            else:
                i, j, m = index
                out.append(g_cov[i, j, m] * (1.0 if j == m else 2.0))
        return np.array(out, dtype=float)
