"""The top-K gate's selection mask (:func:`top_k_mask`), its masked softmax and
observed log-likelihood (``log sum over the selected experts``, -inf weights outside
the selection), the bound that screens the M-step's line search, and the search
across selection boundaries (the quadratic surrogate of its boundary band and the
polish that climbs it), mixed into :class:`gmoe.gates.topk.TopKGate` (docs/theory.md,
"Over-specified top-K: select enough experts")."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.optimize

from .._design import Design
from .smooth import masked_exp
from .softmax import log_softmax_T, logit_gram

#: Radius, in the boundary search's whitened coordinates (about standard errors),
#: within which its surrogate holds the selection of the points far from a boundary.
_POLISH_RADIUS = 3.0

#: Relative rounding margin of :class:`_LineBound` (its bound and the exact pass).
_SCREEN_TOL = 1e-9


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


_PENALTY = np.array([-np.inf, 0.0])
_EXP_FLOOR = float(np.exp(-60.0))       # the floor of the clipped exponentials
_FLOOR = np.array([-60.0, -np.inf])     # by mask: unselected floored, selected not


def _penalty(mask: np.ndarray) -> np.ndarray:
    """0.0 where ``mask`` is True, -inf elsewhere: added to finite values, the same as
    ``np.where(mask, a, -inf)``, several times slower on an irregular mask."""
    return np.take(_PENALTY, mask.view(np.uint8))


def _pair_terms(a: np.ndarray, mask: np.ndarray, m: np.ndarray, e: np.ndarray):
    """With two selected per column (K = 2): the masked ``exp(clip(a - m))`` (k, n)
    and its column sums from one exp per column. The larger term is ``exp(0) = 1``,
    the smaller ``e``, and a sum of two non-zero terms is the same in any order: bit
    for bit the values of the k-row exp and sum they stand in for."""
    top = a == m
    top &= mask                     # the larger (both when tied; then e = 1)
    num = np.multiply(mask & ~top, e)
    num += top
    return num, 1.0 + e


def _masked_softmax(eta: np.ndarray, mask: np.ndarray, log_w: bool = True,
                    pair: bool = False):
    """:func:`~gmoe.gates.smooth.masked_log_softmax_T` with a mask, the same arithmetic
    (the same results for finite logits) without ``np.where``; with ``log_w=False``,
    ``(P, lse, penalty)`` (the log weights are ``eta - lse + penalty``). ``pair``: two
    selected per column (:func:`_pair_terms`)."""
    pen = _penalty(mask)
    m = (eta + pen).max(axis=0)
    if pair:
        lo = (eta - pen).min(axis=0)
        P, s = _pair_terms(eta, mask, m, np.exp(np.maximum(lo - m, -60.0)))
    else:
        P, s = masked_exp(eta, m, mask)
    P /= s
    lse = m + np.log(s)
    if not log_w:
        return P, lse, pen
    out = eta - lse
    out += pen
    return out, P, lse


def _masked_lse(a: np.ndarray, mask: np.ndarray | None, pair: bool = False) -> np.ndarray:
    """``log sum_{i in mask} exp(a_i)`` per column of a (k, n) array, without exp of
    -inf or of huge negative numbers (slow paths of exp): terms below exp(-60) of the
    largest cannot change the sum. ``pair``: two per column (:func:`_pair_terms`)."""
    if mask is None:
        m = a.max(axis=0)
    else:
        pen = _penalty(mask)
        m = (a + pen).max(axis=0)
        if pair:
            return m + np.log(1.0 + np.exp(np.maximum((a - pen).min(axis=0) - m, -60.0)))
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
                    weight: np.ndarray | None = None, pair: bool = False):
    """:func:`_observed_loglik` (same arithmetic) and the posterior within the selection.

    ``mask`` must be the selection of ``log_w_T`` (where it is finite). Returns the
    log-likelihood, the responsibilities ``r_ni`` (0 outside the mask), (k, n), the
    per-point log-likelihood (without the weights), (n,), and ``raw`` for
    :func:`_e_step`. The exponentials of the terms ``a = log_w + log_phi`` are taken
    once: ``exp(a - m)`` unclipped in the selection (EM's E-step takes these),
    ``exp(-60)`` outside it (no slow exp of -inf); the search's clipped
    ``exp(max(a - m, -60))`` is ``max(raw, exp(-60))`` (exp is monotone, ``a <= m``).
    """
    a = log_w_T + log_phi_T
    m = a.max(axis=0)           # log_w_T is -inf outside the mask
    if pair:
        with np.errstate(invalid="ignore"):     # -inf - -inf outside: fmin skips nan
            raw = np.exp(np.fmin.reduce(a - _penalty(mask), axis=0) - m)
        post, s = _pair_terms(a, mask, m, np.maximum(raw, _EXP_FLOOR))
        raw = (raw, m, a)
    else:
        a -= m
        np.maximum(a, np.take(_FLOOR, mask.view(np.uint8)), out=a)
        np.exp(a, out=a)
        post = np.maximum(a, _EXP_FLOOR)
        post *= mask
        s = post.sum(axis=0)
        raw = (a, m)
    ll_n = m + np.log(s)
    post /= s
    return float(np.sum(ll_n) if weight is None else ll_n @ weight), post, ll_n, raw


def _e_step(raw: tuple, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(resp_T, loglik_n)`` from :func:`_observed_terms`'s ``raw``: bit for bit what
    :func:`gmoe.model.joint_log_T` computes (exp of -inf is 0 there, masked out here)."""
    if len(raw) == 3:               # a pair: the smaller term's exp, m, the terms
        e, s = _pair_terms(raw[2], mask, raw[1], raw[0])
    else:
        e = raw[0] * mask
        s = e.sum(axis=0)
    e /= s
    return e, raw[1] + np.log(s)


def _band_terms(XN, log_phi_N, theta, k, p, K, logit):
    """Per-point observed log-likelihood (unweighted) at ``theta`` and the selection."""
    coef = np.zeros((k, p))
    coef[:-1] = theta.reshape(k - 1, p)
    s = coef[:, :-1] @ XN
    e = s + coef[:, -1][:, None]
    sel = top_k_mask(e if logit else s, K)
    return _masked_lse(e + log_phi_N, sel, K == 2) - _masked_lse(e, sel, K == 2), sel


class _LineBound:
    """Upper bounds of the observed log-likelihood on the line ``theta0 + t * direction``.

    The gating M-step judges its Newton point (``t = 1``) and step halvings
    (``t = 1/2, 1/4, ...``) on the exact observed log-likelihood; most fail. A trial
    this bound puts below the current value is not evaluated (the exact pass would
    reject it too); the others are, as before: the decisions, and the fits, are
    those of the exact evaluation.

    The logits are affine in ``t``. A point whose selection cannot change on
    ``[0, t]`` (every selected score stays above every unselected one: the margin is
    concave in ``t``, so both ends suffice) has a smooth part ``f(t) = lse_S(eta +
    log phi) - lse_S(eta)``, below its second-order Taylor expansion at 0 plus
    ``t^3 r^3 / 12``: the third derivative is a difference of two third central
    moments of the logit change ``D`` over the selection, each at most
    ``r var <= r^3 / 4``, ``r`` the range of ``D``. The other points (the band) are
    evaluated exactly, near-ties at ``t`` by ``max_i log phi_i`` (which bounds the
    part of any selection). A trial is rejected when the bound is below the current
    value by more than ``_SCREEN_TOL`` of the sums' magnitude (the rounding of both).
    """

    def __init__(self, gate, theta0, direction, design: Design, log_phi_T, mask0, P0,
                 post0, ll0_n, ts):
        k, p = mask0.shape[0], design.p
        self.k, self.p, self.K = k, p, gate.K
        self.logit = gate.rank_by == "logit"
        self.theta0, self.direction = theta0, direction
        self.ts = ts = np.asarray(ts, dtype=float)
        coef = np.zeros((k, p))
        coef[:-1] = direction.reshape(k - 1, p)
        D = coef @ design.ZT                            # change of the logits per unit t
        Ds = D if self.logit else coef[:, :-1] @ design.XT
        beta0, beta1, _ = gate._arrays(theta0, k, design.d)
        s0 = beta1 @ design.XT
        if self.logit:
            s0 += beta0[:, None]
        lo, hi = Ds.min(axis=0), Ds.max(axis=0)
        # rounding of the trial scores against this affine model: far below tol
        self.tol = tol = 1e-10 * (1.0 + max(-s0.min(), s0.max()) + max(-lo.min(), hi.max()))
        # the band at t: the margin min_S s - max_notS s of the scores (at least tol
        # while the selection holds) falls at most by t * (max_notS Ds - min_S Ds); a
        # point is in the band for the t's >= its tau
        pen, off = _penalty(mask0), _penalty(~mask0)
        gap = (s0 - pen).min(axis=0) - (s0 + off).max(axis=0)
        rate = (Ds + off).max(axis=0) - (Ds - pen).min(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.where(gap > tol, np.where(rate > 0, (gap - tol) / rate, np.inf), 0.0)
        self.level_asc = asc = np.sort(ts)
        level = ts.size - np.searchsorted(asc, tau, side="left")    # t's with t >= tau
        band = np.flatnonzero(level)
        self.band_level = level[band]
        # per point Taylor terms of the points off the band (times the weights)
        EP = np.einsum("kn,kn->n", P0, D)
        Er = np.einsum("kn,kn->n", post0, D)
        f2 = np.einsum("kn,kn->n", post0 - P0, D * D)
        f2 += EP * EP - Er * Er
        f2 *= 0.5
        Er -= EP
        r = (hi - lo) if self.logit else D.max(axis=0) - D.min(axis=0)   # >= range over S
        r *= r * r / 12.0
        terms = (ll0_n, Er, f2, r)
        if design.weight is not None:
            terms = tuple(x * design.weight for x in terms)
        self.total = np.array([x.sum() for x in terms])
        self.magnitude = np.array([np.abs(x).sum() for x in terms])
        self.terms_N = np.array([np.take(x, band) for x in terms])
        self.ZN = np.take(design.ZT, band, axis=1)
        self.Ds_N, self.s0_N = np.take(Ds, band, axis=1), np.take(s0, band, axis=1)
        self.log_phi_N = np.take(log_phi_T, band, axis=1)
        self.w_N = None if design.weight is None else design.weight[band]

    def bound(self, t: float) -> tuple[float, float]:
        """(upper bound of the observed log-likelihood at ``theta0 + t direction``, its
        rounding margin); ``t`` one of the ``ts`` given."""
        rank = int(np.searchsorted(self.level_asc, t, side="left"))   # t = level_asc[rank]
        sel = np.flatnonzero(self.band_level >= self.ts.size - rank)  # the band at t
        tt = np.array([1.0, t, t * t, t * t * t])
        far = float(tt @ (self.total - self.terms_N[:, sel].sum(axis=1)))
        margin = _SCREEN_TOL * (1.0 + float(tt @ self.magnitude))
        if sel.size == 0:
            return far, margin
        lp = self.log_phi_N[:, sel]
        ll, mask = _band_terms(self.ZN[:-1, sel], lp, self.theta0 + t * self.direction,
                               self.k, self.p, self.K, self.logit)
        # near-ties at t: whichever selection the exact pass makes, its part is below
        # max_i log phi_i (the weights sum to one)
        st = self.s0_N[:, sel] + t * self.Ds_N[:, sel]
        tie = ((st - _penalty(mask)).min(axis=0) - (st + _penalty(~mask)).max(axis=0)
               <= 2.0 * self.tol)
        ll[tie] = lp[:, tie].max(axis=0)
        if self.w_N is not None:
            ll *= self.w_N[sel]
        return far + float(ll.sum()), margin + _SCREEN_TOL * float(np.abs(ll).sum())


class _Hard(NamedTuple):
    """The observed log-likelihood at one gating point and what it is made of (the
    fields after ``mask`` are None where the weighted objective stands in for it)."""

    value: float
    log_w: np.ndarray     # log weights (k, n), -inf outside the selection
    mask: np.ndarray      # selection (k, n)
    eta: np.ndarray | None = None      # logits (k, n)
    slope: np.ndarray | None = None    # slope scores beta1_i^T x (k, n)
    P: np.ndarray | None = None        # weights (k, n)
    post: np.ndarray | None = None     # posterior within the selection (k, n)
    raw: tuple | None = None           # for EM's E-step there (_e_step)


class _BoundarySearch:
    """The boundary search of :class:`~gmoe.gates.topk.TopKGate`."""

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
        gap = ((score - _penalty(mask)).min(axis=0)          # (penalties: see _penalty)
               - (score + _penalty(~mask)).max(axis=0))
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
        ZN = np.take(design.ZT, idx, axis=1)       # (np.take: faster than [:, idx])
        cN = np.ones(idx.size) if sw is None else sw[idx]
        rN, PN = np.take(post[:-1], idx, axis=1), np.take(P_sel[:-1], idx, axis=1)
        v = np.einsum("ipm,pn->nim", T.reshape(k - 1, p, m), ZN)      # (N, k-1, m)
        g_n = np.einsum("in,nim->nm", (rN - PN) * cN, v)
        # negative Hessian in the logits: diag(P - r) - P P^T + r r^T
        A = np.einsum("in,jn->nij", rN, rN) - np.einsum("in,jn->nij", PN, PN)
        A[:, np.arange(k - 1), np.arange(k - 1)] += (PN - rN).T
        A *= cN[:, None, None]
        H_n = np.matmul(v.transpose(0, 2, 1), np.matmul(A, v))      # (N, m, m)
        # suffix sums: index j holds the sum over band points j, j+1, ... (written
        # backwards into the output: the same sums, without the copies)
        N = idx.size
        g_tail, H_tail = np.zeros((N + 1, m)), np.zeros((N + 1, m, m))
        np.cumsum(g_n[::-1], axis=0, out=g_tail[N - 1::-1] if N else g_tail[:0])
        np.cumsum(H_n[::-1], axis=0, out=H_tail[N - 1::-1] if N else H_tail[:0])

        XN = ZN[:-1]                               # (C-contiguous)
        log_phi_N = np.take(log_phi_T, idx, axis=1)
        w_N = None if sw is None else sw[idx]

        def band_value(th, j):
            """Exact log-likelihood of the first j band points at th."""
            if j == 0:
                return 0.0
            ll = _band_terms(XN[:, :j], log_phi_N[:, :j], th, k, p, K, logit)[0]
            return float(ll.sum() if w_N is None else ll @ w_N[:j])

        ll0 = _band_terms(XN, log_phi_N, theta, k, p, K, logit)[0]
        far0 = value - float(ll0.sum() if w_N is None else ll0 @ w_N)
        band0 = np.concatenate([[0.0], np.cumsum(ll0 if w_N is None else ll0 * w_N)])

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

        The search sees a surrogate, exact where it matters and cheap: the points whose
        selection can change within ``|u| <= R = _POLISH_RADIUS`` (a bound per point on
        how far the score differences move) are evaluated exactly; every other point
        keeps its selection in that ball and enters through its second-order Taylor
        expansion at ``theta``; trials beyond ``R`` are exact. The result is kept only
        if the exact observed log-likelihood there is above ``state.value``; when none
        is, the same search runs once on the exact observed log-likelihood from
        ``theta`` (so EM stops only where the exact search finds nothing).

        ``state`` is :meth:`_fresh_state` (or :meth:`_hard_state`) at ``theta``,
        ``surrogate`` a :meth:`_surrogate` already built, there or around a point in its
        radius. Returns ``(theta, nfev, hard)``, ``hard`` the :meth:`_fresh_state` of
        the returned theta (None when theta is unchanged).
        """
        fun, T, T_inv, center = (surrogate if surrogate is not None
                                 else self._surrogate(theta, state, design, log_phi_T, k))
        m, value, nfev = theta.size, state.value, 0
        u0 = np.zeros(m) if center is theta else T_inv @ (theta - center)
        simplex = np.vstack([u0, u0 + self.polish_step * np.eye(m)])

        def exact(u):
            return -self._observed_value(theta + T @ u, design, log_phi_T, k)

        # on the surrogate; when that finds nothing, on the exact observed
        # log-likelihood from theta (what EM's stopping then relies on)
        for f, origin, start in ((fun, center, simplex), (exact, theta, simplex - simplex[0])):
            with np.errstate(over="ignore", invalid="ignore"):
                res = scipy.optimize.minimize(
                    f, start[0], method="Nelder-Mead",
                    options={"initial_simplex": start, "xatol": 0.2, "fatol": 1e-3,
                             "maxfev": self.polish_evals * m})
            nfev += int(res.nfev)
            if np.all(np.isfinite(res.x)) and -res.fun > value:
                trial = origin + T @ res.x
                hard = self._fresh_state(trial, design, log_phi_T, k)
                if hard.value > value:
                    return trial, nfev, hard
        return theta, nfev, None
