"""Softmax gate: g_i(x) = softmax_i(beta1_i^T x + beta0_i)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg.lapack import dposv as _posv

from .._design import Design
from .._validation import check_positive_float, check_positive_int
from ..params import MoEParams
from ._base import Gate, GateStepInfo

__all__ = ["SoftmaxGate", "log_softmax_T"]


def log_softmax_T(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-softmax over axis 0 of an expert-major (k, n) array, in place.

    Returns ``(log_w, P, lse)``: the log weights (written into ``eta``), the weights,
    and the log normaliser of shape (n,). One exp over (k, n), one log over (n,).
    """
    m = eta.max(axis=0)
    eta -= m
    P = np.exp(eta)
    s = P.sum(axis=0)
    P /= s
    log_s = np.log(s)
    eta -= log_s
    return eta, P, m + log_s


def logit_gram(P: np.ndarray, zz: np.ndarray, p: int,
               c: np.ndarray | None = None) -> np.ndarray:
    """Negative Hessian of ``sum_n c_n log softmax`` in the free logits' coefficients.

    Block (i, j) is ``sum_n c_n P_in (delta_ij - P_jn) z_n z_n^T`` for i, j < k - 1
    (``c_n = 1`` when ``c`` is None); all blocks come from one matrix product with the
    precomputed outer products ``zz``.
    """
    km1 = P.shape[0] - 1
    pairs = [(i, j) for i in range(km1) for j in range(i, km1)]
    C = np.empty((len(pairs), P.shape[1]))
    for row, (i, j) in enumerate(pairs):
        np.multiply(P[i], -P[j], out=C[row])
        if i == j:
            C[row] += P[i]
    if c is not None:
        C *= c
    blocks = (C @ zz.T).reshape(len(pairs), p, p)
    H = np.empty((km1 * p, km1 * p))
    for row, (i, j) in enumerate(pairs):
        H[i * p:(i + 1) * p, j * p:(j + 1) * p] = blocks[row]
        H[j * p:(j + 1) * p, i * p:(i + 1) * p] = blocks[row].T
    return H


def newton_solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve ``H delta = g`` for a positive semi-definite H, with a tiny ridge if singular.

    Calls LAPACK's Cholesky solver (posv) directly: the matrices are tiny and this runs
    a few times per EM iteration, where ``scipy.linalg.solve``'s checks cost 15x more.
    """
    m = H.shape[0]
    diag = H.diagonal()
    ridge = 1e-12 * max(float(diag.sum()) / m, 1e-300)
    A = H.copy()
    for _ in range(8):
        A.flat[:: m + 1] = diag + ridge
        _, x, info = _posv(A, g, lower=False, overwrite_a=False, overwrite_b=False)
        if info == 0 and np.isfinite(x).all():
            return x
        ridge *= 1e3
    return np.linalg.lstsq(H, g, rcond=None)[0]


class _SoftmaxState(NamedTuple):
    """Log weights and weights at one free vector (see :meth:`Gate.free_state`)."""

    log_w: np.ndarray
    P: np.ndarray


class SoftmaxGate(Gate):
    """Softmax gating: ``g_i(x) = softmax_i(beta1_i^T x + beta0_i)``.

    The gating M-step is a weighted multinomial logistic regression with the last
    expert as the fixed reference class, solved by Newton's method (IRLS),
    warm-started at the current parameters, with step halving so that the weighted
    objective never decreases.

    Parameters
    ----------
    max_newton : int, default=50
        Largest number of Newton steps per M-step (warm starts usually need 1-3).
    newton_tol : float, default=1e-8
        Stop when half the Newton decrement (the predicted objective gain) is below it.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams, SoftmaxGate
    >>> p = MoEParams([0.0, 0.0], [[1.0], [0.0]], [[1.0], [-1.0]], [0.0, 0.0], [1.0, 1.0])
    >>> SoftmaxGate().weights(np.array([[0.0]]), p)
    array([[0.5, 0.5]])
    """

    name = "softmax"
    symmetry = "intercept_slope"
    shifts_x = True

    def __init__(self, max_newton: int = 50, newton_tol: float = 1e-8):
        self.max_newton = check_positive_int(max_newton, "max_newton")
        self.newton_tol = check_positive_float(newton_tol, "newton_tol")

    def get_config(self) -> dict:
        return {"name": self.name, "max_newton": self.max_newton, "newton_tol": self.newton_tol}

    def log_weights_T(self, design: Design, params: MoEParams) -> np.ndarray:
        eta = params.beta1 @ design.XT
        eta += params.beta0[:, None]
        return log_softmax_T(eta)[0]

    def free_state(self, theta, design, k, mask=None):
        coef = np.zeros((k, design.p))
        coef[:-1] = np.reshape(theta, (k - 1, design.p))
        log_w, P, _ = log_softmax_T(coef @ design.ZT)
        return _SoftmaxState(log_w, P)

    linear_logits = True

    def free_logit_jacobian(self, state, design):
        k, p = state.P.shape[0], design.p
        J = np.zeros((k, (k - 1) * p, design.n))
        for i in range(k - 1):
            J[i, i * p:(i + 1) * p] = design.ZT
        return J

    def free_logit_blocks(self, state, design):
        return [design.ZT] * (state.P.shape[0] - 1) + [None]

    def free_score(self, state, design, resp_T, mask=None):
        G = resp_T[:-1] - state.P[:-1] * resp_T.sum(axis=0)
        return (G @ design.ZT.T).ravel()

    def m_step(self, design, resp_T, params, log_w_T, log_phi_T=None):
        k, p = params.k, design.p
        params = self.normal_form(params)
        if k == 1:
            return params, np.zeros((1, design.n)), GateStepInfo(0.0, 0.0)
        ZT = design.ZT
        theta = np.column_stack([params.beta1[:-1], params.beta0[:-1]])  # (k-1, p)
        RZ = resp_T[:-1] @ ZT.T
        P = np.exp(log_w_T)
        # column sums of the responsibilities: the sample weights (1 without weights)
        c = resp_T.sum(axis=0)
        # logits are 0 for the reference expert, so its log weight is -lse
        q = float(np.sum(theta * RZ) + np.dot(c, log_w_T[-1]))
        q0, n_steps = q, 0
        info = GateStepInfo(q0, q0)
        full = np.zeros((k, p))
        for _ in range(self.max_newton):
            grad = RZ - (P[:-1] * c) @ ZT.T
            H = logit_gram(P, design.zz, p, c)
            delta = newton_solve(H, grad.ravel()).reshape(k - 1, p)
            decrement = float(np.sum(grad * delta))
            if not np.isfinite(decrement) or decrement / 2 <= self.newton_tol:
                break
            step, accepted = 1.0, False
            for _ in range(40):
                trial = theta + step * delta
                full[:-1] = trial
                eta = full @ ZT
                lw, P_new, lse = log_softmax_T(eta)
                q_new = float(np.sum(trial * RZ) - np.dot(c, lse))
                if q_new >= q:
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                info.notes.append("line search found no ascent")
                break
            theta, q, log_w_T, P = trial, q_new, lw, P_new
            n_steps += 1
        info.objective_after, info.n_steps = q, n_steps
        beta0 = np.append(theta[:, -1], 0.0)
        beta1 = np.vstack([theta[:, :-1], np.zeros((1, design.d))])
        return params.replace(beta0=beta0, beta1=beta1), log_w_T, info
