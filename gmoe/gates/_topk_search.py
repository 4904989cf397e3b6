"""The top-K gate's selection mask (:func:`top_k_mask`) and its search across
selection boundaries: the observed log-likelihood
(``log sum over the selected experts``, -inf weights outside the selection), the
quadratic surrogate of its boundary band and the polish that climbs it. Mixed into
:class:`gmoe.gates.topk.TopKGate`, whose gating M-step uses it (docs/theory.md,
"Over-specified top-K: select enough experts")."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.optimize

from .._design import Design
from ._base import weighted_objective
from .smooth import _Point, masked_log_softmax_T
from .softmax import log_softmax_T, logit_gram

#: Radius, in the boundary search's whitened coordinates (about standard errors),
#: within which its surrogate holds the selection of the points far from a boundary.
_POLISH_RADIUS = 3.0


def top_k_mask(score: np.ndarray, K: int) -> np.ndarray:
    """Selection of the K largest scores in each column, ties to the lower index.

    Parameters
    ----------
    score : ndarray of shape (k, n)
    K : int

    Returns
    -------
    ndarray of bool, shape (k, n)
        True for the selected experts; exactly K per column.
    """
    k = score.shape[0]
    if K >= k:
        return np.ones(score.shape, dtype=bool)
    if K == 1 or K == k - 1:
        # one winner (the largest, first among ties) or one loser (the smallest, last
        # among ties): a pass over the k rows, cheaper than a reduction with argmax
        best = score.max(axis=0) if K == 1 else score.min(axis=0)
        hit = np.zeros(score.shape, dtype=bool)
        found = np.zeros(score.shape[1], dtype=bool)
        for i in (range(k) if K == 1 else range(k - 1, -1, -1)):
            np.logical_and(score[i] == best, ~found, out=hit[i])
            found |= hit[i]
        return hit if K == 1 else ~hit
    # rank_i = #{j : s_j > s_i} + #{j < i : s_j == s_i}: the position of i in a stable
    # descending sort; selected iff rank_i < K
    rank = np.zeros(score.shape, dtype=np.int32)
    for i in range(k):
        for j in range(k):
            if j == i:
                continue
            beats = score[j] >= score[i] if j < i else score[j] > score[i]
            rank[i] += beats
    return rank < K


def _masked_lse(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``log sum_{i in mask} exp(a_i)`` per column of a (k, n) array.

    Avoids exp of -inf and of huge negative numbers (slow paths of exp): terms below
    exp(-60) of the largest cannot change the sum in double precision.
    """
    m = a.max(axis=0) if mask is None else np.where(mask, a, -np.inf).max(axis=0)
    b = a - m
    np.clip(b, -60.0, 0.0, out=b)
    np.exp(b, out=b)
    if mask is not None:
        b *= mask
    return m + np.log(b.sum(axis=0))


def _observed_loglik(log_w_T: np.ndarray, log_phi_T: np.ndarray,
                     weight: np.ndarray | None = None) -> float:
    """``sum_n weight_n logsumexp_i(log_w + log_phi)`` (log weights may be -inf)."""
    ll_n = _masked_lse(log_w_T + log_phi_T, log_w_T > -np.inf)
    return float(np.sum(ll_n) if weight is None else ll_n @ weight)


def _observed_terms(log_w_T: np.ndarray, log_phi_T: np.ndarray, mask: np.ndarray,
                    weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """:func:`_observed_loglik` (same arithmetic) and the posterior within the selection.

    ``mask`` must be the selection of ``log_w_T`` (where it is finite). Returns the
    log-likelihood and the responsibilities ``r_ni`` (0 outside the mask), (k, n).
    """
    a = log_w_T + log_phi_T
    m = np.where(mask, a, -np.inf).max(axis=0)
    a -= m
    np.clip(a, -60.0, 0.0, out=a)
    np.exp(a, out=a)
    a *= mask
    s = a.sum(axis=0)
    ll_n = m + np.log(s)
    a /= s
    return float(np.sum(ll_n) if weight is None else ll_n @ weight), a


def _band_terms(XN, log_phi_N, w_N, theta, k, p, K, logit) -> np.ndarray:
    """Per-point observed log-likelihood (times the weights) at ``theta``, (N,)."""
    coef = np.zeros((k, p))
    coef[:-1] = theta.reshape(k - 1, p)
    s = coef[:, :-1] @ XN
    e = s + coef[:, -1][:, None]
    sel = top_k_mask(e if logit else s, K)
    ll = _masked_lse(e + log_phi_N, sel) - _masked_lse(e, sel)
    return ll if w_N is None else ll * w_N


class _Hard(NamedTuple):
    """The observed log-likelihood at one gating point and what it is made of."""

    value: float
    log_w: np.ndarray     # log weights (k, n), -inf outside the selection
    mask: np.ndarray      # selection (k, n)
    eta: np.ndarray       # logits (k, n)
    slope: np.ndarray     # slope scores beta1_i^T x (k, n)
    P: np.ndarray         # weights (k, n)
    post: np.ndarray      # posterior responsibilities within the selection (k, n)


class _BoundarySearch:
    """The observed-likelihood methods of :class:`~gmoe.gates.topk.TopKGate`."""

    def _hard_value(self, theta, design: Design, resp_T, log_phi_T, k: int):
        """Observed log-likelihood at ``theta`` (weighted objective without ``log_phi_T``).

        Returns ``(value, log_w, mask)``; non-finite values are reported as -inf.
        """
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        log_w, mask = self._log_weights_from(beta0, beta1, design)
        if log_phi_T is None:
            value = weighted_objective(resp_T, log_w)
        else:
            value = _observed_loglik(log_w, log_phi_T, design.weight)
        return (value if np.isfinite(value) else -np.inf), log_w, mask

    def _hard_state(self, point: _Point, design: Design, log_phi_T, mask0) -> _Hard:
        """:meth:`_hard_value` at a Newton point (computed with the selection ``mask0``
        held), reusing its logits and log weights: only the columns whose selection
        moved are recomputed (the same arithmetic, column by column)."""
        eta, slope = point.eta, point.cache
        k = eta.shape[0]
        beta0, beta1, _ = self._arrays(point.theta, k, design.d)
        mask = self._mask(beta0, beta1, design, eta, slope)
        log_w, P = point.log_w, point.P
        moved = np.flatnonzero(np.any(mask != mask0, axis=0))
        if moved.size:
            log_w, P = log_w.copy(), P.copy()
            log_w[:, moved], P[:, moved], _ = masked_log_softmax_T(eta[:, moved], mask[:, moved])
        value, post = _observed_terms(log_w, log_phi_T, mask, design.weight)
        value = value if np.isfinite(value) else -np.inf
        return _Hard(value, log_w, mask, eta, slope, P, post)

    def _observed_value(self, theta, design: Design, log_phi_T, k: int) -> float:
        """Observed log-likelihood at ``theta``, lean path for the polish search."""
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        eta, slope = self._eta(beta0, beta1, None, design)
        mask = self._mask(beta0, beta1, design, eta, slope)
        total = design.weighted_sum(_masked_lse(eta + log_phi_T, mask) - _masked_lse(eta, mask))
        return total if np.isfinite(total) else -np.inf

    def _fresh_state(self, theta, design: Design, log_phi_T, k: int) -> _Hard:
        """Everything the boundary search needs at ``theta``, computed from scratch."""
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        eta, slope = self._eta(beta0, beta1, None, design)
        mask = self._mask(beta0, beta1, design, eta, slope)
        log_w, P, _ = masked_log_softmax_T(eta, mask)
        value, post = _observed_terms(log_w, log_phi_T, mask, design.weight)
        return _Hard(value if np.isfinite(value) else -np.inf, log_w, mask, eta, slope, P, post)

    def _surrogate(self, theta, state: _Hard, design: Design, log_phi_T, k: int):
        """The boundary search's objective around ``theta``: ``(fun, T, T_inv, theta)``.

        ``fun(u)`` is minus the (surrogate) observed log-likelihood at
        ``theta + T @ u``; see :meth:`_polish`.
        """
        p, K = design.p, self.K
        value, mask, eta = state.value, state.mask, state.eta
        sw = design.weight
        zz = design.zz
        # whitening: the Fisher information of the dense softmax
        _, P, _ = log_softmax_T(eta.copy())
        H = logit_gram(P, zz, p, sw)
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        floor = max(1e-6 * w[-1], 1e-8 * design.total_weight) if np.isfinite(w[-1]) else 1.0
        scale = np.sqrt(np.maximum(w, floor))
        T = V / scale
        m = theta.size
        radius = _POLISH_RADIUS

        # the points whose selection may change for |u| <= radius: the gap between the
        # K-th and (K+1)-th largest score is at most the largest change of a score
        # difference, |u| * |T^T (z_i - z_j)|, there
        logit = self.rank_by == "logit"
        score = eta if logit else state.slope
        gap = (np.where(mask, score, np.inf).min(axis=0)
               - np.where(mask, -np.inf, score).max(axis=0))
        blocks = np.zeros((k, p, m))
        blocks[:-1] = T.reshape(k - 1, p, m)
        if not logit:
            blocks[:, -1] = 0.0            # intercepts do not move the slope scores
        quads = np.array([(blocks[i] - blocks[j]) @ (blocks[i] - blocks[j]).T
                          for i in range(k) for j in range(i + 1, k)])
        reach = (quads.reshape(len(quads), p * p) @ zz).max(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            safe = np.where(gap > 0, gap / np.sqrt(reach), 0.0)  # selection held for |u| < safe
        idx = np.flatnonzero(safe <= radius)
        idx = idx[np.argsort(safe[idx], kind="stable")]
        safe_band = safe[idx]

        # the other points: selection held, second-order expansion of their part, as
        # gradient g and negative Hessian H in u; the band's points get theirs one by
        # one (cumulated from the end), so that a trial at |u| = r evaluates exactly
        # only the band's points with safe radius <= r
        c_far = np.ones(design.n) if sw is None else sw.copy()
        c_far[idx] = 0.0
        post, P_sel = state.post, state.P
        grad = (((post - P_sel)[:-1] * c_far) @ design.ZT.T).ravel()
        curv = logit_gram(P_sel, zz, p, c_far) - logit_gram(post, zz, p, c_far)
        g_u = T.T @ grad
        H_u = T.T @ curv @ T
        ZN = design.ZT[:, idx]
        cN = np.ones(idx.size) if sw is None else sw[idx]
        rN, PN = post[:-1, idx], P_sel[:-1, idx]
        v = np.einsum("ipm,pn->nim", T.reshape(k - 1, p, m), ZN)      # (N, k-1, m)
        g_n = np.einsum("in,nim->nm", (rN - PN) * cN, v)
        # negative Hessian in the logits: diag(P - r) - P P^T + r r^T
        A = np.einsum("in,jn->nij", rN, rN) - np.einsum("in,jn->nij", PN, PN)
        A[:, np.arange(k - 1), np.arange(k - 1)] += (PN - rN).T
        A *= cN[:, None, None]
        H_n = np.matmul(v.transpose(0, 2, 1), np.matmul(A, v))      # (N, m, m)
        # suffix sums: index j holds the sum over band points j, j+1, ...
        g_tail = np.vstack([np.cumsum(g_n[::-1], axis=0)[::-1], np.zeros((1, m))])
        H_tail = np.concatenate([np.cumsum(H_n[::-1], axis=0)[::-1], np.zeros((1, m, m))])

        XN = np.ascontiguousarray(design.XT[:, idx])
        log_phi_N = np.ascontiguousarray(log_phi_T[:, idx])
        w_N = None if sw is None else sw[idx]
        coef = np.zeros((k, p))

        def band_value(th, j):
            """Exact log-likelihood of the first j band points at th."""
            if j == 0:
                return 0.0
            coef[:-1] = th.reshape(k - 1, p)
            s = coef[:, :-1] @ XN[:, :j]
            e = s + coef[:, -1][:, None]
            sel = top_k_mask(e if logit else s, K)
            ll = _masked_lse(e + log_phi_N[:, :j], sel) - _masked_lse(e, sel)
            return float(ll.sum() if w_N is None else ll @ w_N[:j])

        far0 = value - band_value(theta, idx.size)
        band0 = np.concatenate([[0.0], np.cumsum(_band_terms(
            XN, log_phi_N, w_N, theta, k, p, K, logit))])

        def fun(u):
            th = theta + T @ u
            r2 = float(u @ u)
            if not r2 <= radius * radius:
                return -self._observed_value(th, design, log_phi_T, k)
            j = int(np.searchsorted(safe_band, np.sqrt(r2), side="right"))
            g = g_u + g_tail[j]
            Hq = H_u + H_tail[j]
            total = (band_value(th, j) + far0 + band0[-1] - band0[j]
                     + float(g @ u) - 0.5 * float(u @ Hq @ u))
            return -total if np.isfinite(total) else np.inf

        return fun, T, scale[:, None] * V.T, theta

    def _polish(self, theta, state: _Hard, design: Design, log_phi_T, k: int,
                surrogate=None):
        """Nelder-Mead on the observed log-likelihood, in Fisher-whitened coordinates.

        The observed log-likelihood is piecewise smooth in the gating parameters (it
        jumps when a point changes selection), so this derivative-free search is what
        moves the selection boundaries to where the data put them. Coordinates ``u``
        are whitened with the Fisher information of the dense softmax at ``theta``
        (unit steps are about one standard error).

        The search sees a surrogate that is exact where it matters and cheap: the
        points whose selection can change within ``|u| <= R`` (``R =``
        ``_POLISH_RADIUS``, from a bound per point on how far the score differences
        move there) are evaluated exactly, with their selection recomputed; every
        other point keeps its selection within that ball, and its part of the
        log-likelihood, smooth there, is replaced by its second-order Taylor expansion
        at ``theta``. Trial points beyond ``R`` are evaluated exactly on all the data.
        The search's result is checked on the exact observed log-likelihood and kept
        only if it is above ``state.value``, so the result is never below it; when it
        finds nothing, the same search runs once on the exact observed log-likelihood
        from ``theta`` (so EM stops only where the exact search finds nothing).

        ``state`` is :meth:`_fresh_state` (or :meth:`_hard_state`) at ``theta``,
        ``surrogate`` a :meth:`_surrogate` already built, there or around a point
        within its radius (the search then starts at ``theta`` in its coordinates).
        Returns ``(theta, nfev, hard)`` with ``hard`` the :meth:`_hard_value` of the
        returned theta (None when theta is unchanged).
        """
        fun, T, T_inv, center = (surrogate if surrogate is not None
                                 else self._surrogate(theta, state, design, log_phi_T, k))
        m, value = theta.size, state.value
        u0 = np.zeros(m) if center is theta else T_inv @ (theta - center)
        simplex = np.vstack([u0, u0 + self.polish_step * np.eye(m)])
        with np.errstate(over="ignore", invalid="ignore"):
            res = scipy.optimize.minimize(
                fun, u0, method="Nelder-Mead",
                options={"initial_simplex": simplex, "xatol": 0.2, "fatol": 1e-3,
                         "maxfev": self.polish_evals * m})
        nfev = int(res.nfev)
        if np.all(np.isfinite(res.x)) and -res.fun > value:
            trial = center + T @ res.x
            hard = self._hard_value(trial, design, None, log_phi_T, k)
            if hard[0] > value:
                return trial, nfev, hard
        # nothing found on the surrogate: the search on the exact observed
        # log-likelihood from theta (what EM's stopping then relies on)

        def exact(u):
            return -self._observed_value(theta + T @ u, design, log_phi_T, k)

        with np.errstate(over="ignore", invalid="ignore"):
            res = scipy.optimize.minimize(
                exact, np.zeros(m), method="Nelder-Mead",
                options={"initial_simplex": simplex - simplex[0], "xatol": 0.2,
                         "fatol": 1e-3, "maxfev": self.polish_evals * m})
        nfev += int(res.nfev)
        if np.all(np.isfinite(res.x)) and -res.fun > value:
            trial = theta + T @ res.x
            hard = self._hard_value(trial, design, None, log_phi_T, k)
            if hard[0] > value:
                return trial, nfev, hard
        return theta, nfev, None
