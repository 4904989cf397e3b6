"""Gaussian linear experts: log densities and the weighted least-squares M-step."""

from __future__ import annotations

import numpy as np

from ._design import Design

_LOG_2PI = float(np.log(2 * np.pi))


def expert_means_T(design: Design, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Expert means ``a_i^T x_n + b_i`` as a (k, n) array."""
    mu = a @ design.XT
    mu += b[:, None]
    return mu


def log_phi_from_squares(sq_T: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``log N(resid; 0, var_i)`` in place on a (k, n) array of squared residuals."""
    sq_T *= (-0.5 / var)[:, None]
    sq_T -= (0.5 * (_LOG_2PI + np.log(var)))[:, None]
    return sq_T


def expert_log_density_T(design: Design, a, b, var) -> np.ndarray:
    """``log N(y_n; a_i^T x_n + b_i, var_i)`` as a (k, n) array."""
    resid = expert_means_T(design, a, b)
    np.subtract(design.y, resid, out=resid)
    np.square(resid, out=resid)
    return log_phi_from_squares(resid, var)


def experts_m_step(design: Design, resp_T: np.ndarray, a_old, b_old, var_floor: float,
                   var_old=None):
    """Weighted least squares per expert, variance = weighted mean squared residual.

    Parameters
    ----------
    design : Design
    resp_T : ndarray of shape (k, n)
    a_old, b_old : current expert coefficients, kept for an expert whose weighted
        design is singular (no effective data).
    var_old : array of shape (k,), optional
        Current variances, kept for an expert with zero responsibility (instead of
        the floor, which would turn it into a spike wherever it is later selected).
    var_floor : float
        Lower bound for the variances.

    Returns
    -------
    a : (k, d), b : (k,), var : (k,), log_phi_T : (k, n) at the new parameters,
    floored : bool array (k,) where the floor bound, degenerate : bool array (k,)
    where the weighted design was singular.
    """
    p = design.p
    k = resp_T.shape[0]
    sums = resp_T @ design.moments.T  # (k, p*p + p)
    G = sums[:, : p * p].reshape(k, p, p)
    h = sums[:, p * p:]
    nk = G[:, -1, -1]  # sum of responsibilities (z has a constant 1 last)
    coef = np.column_stack([a_old, b_old])
    scale = np.einsum("kii->k", G) / p
    usable = (nk > 0) & (scale > 0)
    A = G[usable]
    A[:, np.arange(p), np.arange(p)] += (1e-13 * scale[usable])[:, None]
    try:
        # one batched solve for every usable expert (no Python loop over experts)
        sols = np.linalg.solve(A, h[usable][:, :, None])[:, :, 0]
        solved = np.ones(len(A), dtype=bool)
    except np.linalg.LinAlgError:
        # some system is singular: solve one by one to find it
        sols = np.zeros((len(A), p))
        solved = np.zeros(len(A), dtype=bool)
        for row, (Ai, hi) in enumerate(zip(A, h[usable], strict=True)):
            try:
                sols[row] = np.linalg.solve(Ai, hi)
                solved[row] = True
            except np.linalg.LinAlgError:
                pass
    solved &= np.isfinite(sols).all(axis=1)
    idx = np.flatnonzero(usable)
    coef[idx[solved]] = sols[solved]
    degenerate = np.ones(k, dtype=bool)
    degenerate[idx[solved]] = False
    resid = coef @ design.ZT
    np.subtract(design.y, resid, out=resid)
    sq = np.square(resid, out=resid)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.einsum("kn,kn->k", resp_T, sq) / nk
    keep = var_floor if var_old is None else np.asarray(var_old, dtype=float)
    var = np.where(np.isfinite(var), var, keep)
    floored = var < var_floor
    var = np.maximum(var, var_floor)
    return coef[:, :-1], coef[:, -1], var, log_phi_from_squares(sq, var), floored, degenerate
