"""The search of the gating shift of a Voronoi loss (docs/theory.md, "Translation
conventions"): the loss at a shift (:class:`_Problem`), t0 exactly for each t1, and
the infimum over t1: exactly for one feature (d = 1), by Nelder-Mead from the best
starting shifts otherwise. Used by
:mod:`gmoe.losses` and :mod:`gmoe.parameter_errors`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from .params import MoEParams

#: Over-specified exponent rbar(|A_j|) by cell size; cells of >= 4 atoms have none.
_RBAR = {2: 4, 3: 6}
#: Nelder-Mead settings of the infimum over the shift.
_XATOL, _FATOL = 1e-10, 1e-14
_N_LOCAL = 3  # local searches from the best starting slope shifts
_NEWTON = 100  # safeguarded Newton steps of the exact d = 1 search (stops at rounding)


@dataclass(frozen=True)
class _Measure:
    """One side of the comparison: parameters and effective intercepts ``eff0`` (at no
    shift); a shift t0 of every beta0 moves them to ``eff0 + t0 * slope``."""

    params: MoEParams
    eff0: np.ndarray
    slope: float


def _cov_norms(pf: MoEParams, pt: MoEParams) -> tuple[np.ndarray, np.ndarray]:
    """Frobenius and l1 norms of ``Sigma_i - Sigma*_j``, (k, k*), for parameters that
    carry gate covariances (the Gaussian gate, docs/theory.md, "The Gaussian gate");
    zeros otherwise."""
    if pf.gate_cov is None or pt.gate_cov is None:
        zeros = np.zeros((pf.k, pt.k))
        return zeros, zeros
    diff = pf.gate_cov[:, None] - pt.gate_cov[None, :]
    return np.sqrt(np.sum(diff**2, axis=(2, 3))), np.sum(np.abs(diff), axis=(2, 3))


class _Problem:
    """Loss of the shifted fitted measure against the truth, for any shift.

    The cells depend on t1 only. For fixed t1 the loss is, in ``u = exp(t0 * slope)``,
    ``sum_j |u S_j - w*_j| + u C + |tau - tau*|``: convex and piecewise linear on
    u >= 0, so its minimum over t0 is at u = 0 or at a kink ``u = w*_j / S_j``
    (:meth:`profile`, exact). Only t1 is left to a numerical search.
    """

    def __init__(self, fit: _Measure, true: _Measure, shifts_slopes: bool, kind: str,
                 metric: str, pin_mass: bool = False):
        pf, pt = fit.params, true.params
        self.pin_mass = pin_mass
        self.fit, self.true = fit, true
        self.k, self.kstar, self.d = pf.k, pt.k, pf.d
        self.shifts_slopes, self.kind, self.metric = shifts_slopes, kind, metric
        self.dim = 1 + self.d if shifts_slopes else 1
        self.w_true = np.exp(true.eff0)
        self.beta1_t = pt.beta1
        # shift-free parts: norms |da_ij|, |db_ij|, |dvar_ij| of shape (k, k*)
        da = pf.a[:, None, :] - pt.a[None, :, :]
        self.na = np.sqrt(np.sum(da**2, axis=2))
        self.nb = np.abs(pf.b[:, None] - pt.b[None, :])
        self.nv = np.abs(pf.var[:, None] - pt.var[None, :])
        if metric == "euclidean":
            self.rest = self.na**2 + self.nb**2 + self.nv**2
        else:
            self.rest = np.sum(np.abs(da), axis=2) + self.nb + self.nv
        # the Gaussian gate's atoms also carry the gate covariance Sigma_i
        self.ns, ns_l1 = _cov_norms(pf, pt)
        self.rest = self.rest + (self.ns**2 if metric == "euclidean" else ns_l1)
        both_tau = pf.tau is not None and pt.tau is not None
        self.tau_term = abs(pf.tau - pt.tau) if both_tau else 0.0
        # fitted weights at t0 = 0 as exp(m) * E_i (no overflow for large intercepts)
        self.m = float(np.max(fit.eff0))
        self.E = np.exp(fit.eff0 - self.m)

    def assign(self, t1: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Cell of each fitted atom (ties: lower true index) and the |dbeta1| norms."""
        beta1 = self.fit.params.beta1 if t1 is None else self.fit.params.beta1 + t1
        db1 = beta1[:, None, :] - self.beta1_t[None, :, :]
        nb1 = np.sqrt(np.sum(db1**2, axis=2))
        if self.metric == "euclidean":
            dist = nb1**2 + self.rest  # squared distance: same argmin
        else:
            dist = np.sum(np.abs(db1), axis=2) + self.rest
        return np.argmin(dist, axis=1), nb1

    def _atom_costs(self, t1):
        """(cell, sizes, per-atom parameter cost without its weight; None if undefined)."""
        cell, nb1 = self.assign(t1)
        sizes = np.bincount(cell, minlength=self.kstar)
        rows = np.arange(self.k)
        nb1, na = nb1[rows, cell], self.na[rows, cell]
        nb, nv = self.nb[rows, cell], self.nv[rows, cell]
        ns = self.ns[rows, cell]
        if self.kind == "exact":
            return cell, sizes, nb1 + na + nb + nv + ns
        size = sizes[cell]
        if np.any(size > 3):
            return cell, sizes, None
        r = np.where(size == 1, 1.0, np.where(size == 2, 4.0, 6.0))
        half = np.where(size == 1, 1.0, r / 2)
        return cell, sizes, nb1**r + na**half + nb**r + nv**half + ns**half

    def _t1(self, s: np.ndarray):
        return s[1:] if self.shifts_slopes else None

    def terms(self, s: np.ndarray):
        """(value, cell of each fitted atom, weight terms, parameter terms, cell sizes) at
        the full shift s; value is inf where the loss is undefined (kind="over" with a
        cell of four or more atoms)."""
        cell, sizes, cost = self._atom_costs(self._t1(s))
        log_u = s[0] * self.fit.slope
        with np.errstate(over="ignore", invalid="ignore"):
            w = self.E * np.exp(log_u + self.m) if log_u > -np.inf else np.zeros(self.k)
            weight_terms = np.abs(np.bincount(cell, weights=w, minlength=self.kstar)
                                  - self.w_true)
            if cost is None:
                param_terms = np.full(self.kstar, np.nan)
                return math.inf, cell, weight_terms, param_terms, sizes
            param_terms = np.bincount(cell, weights=w * cost, minlength=self.kstar)
            value = float(weight_terms.sum() + param_terms.sum() + self.tau_term)
        return (value if math.isfinite(value) else math.inf), cell, weight_terms, \
            param_terms, sizes

    def profile(self, t1) -> tuple[float, float]:
        """Minimum over t0 of the loss at slope shift t1, and the minimising t0."""
        cell, _, cost = self._atom_costs(t1)
        if cost is None:
            return math.inf, 0.0
        S = np.bincount(cell, weights=self.E, minlength=self.kstar)
        C = float(np.dot(self.E, cost))
        nonempty = S > 0
        with np.errstate(over="ignore", invalid="ignore"):
            if self.pin_mass:  # t0 fixed: fitted total weight = true total weight
                u = np.array([self.w_true.sum() / self.E.sum()])
            else:
                u = np.append(self.w_true[nonempty] / S[nonempty], 0.0)  # u = 0 last
            vals = np.abs(u[:, None] * S[None, :] - self.w_true).sum(axis=1) + u * C
        vals[np.isnan(vals)] = np.inf
        best = int(np.argmin(vals))
        with np.errstate(divide="ignore"):
            t0 = (math.log(u[best]) - self.m) / self.fit.slope if u[best] > 0 else -math.inf
        value = float(vals[best]) + self.tau_term
        return (value if math.isfinite(value) else math.inf), t0

    def value_t1(self, t1: np.ndarray) -> float:
        return self.profile(t1)[0]

    def profiles(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`profile`'s value at many slope shifts at once, ``T`` of shape (m, d):
        the values (m,), the cells (m, k) and the cell sizes (m, k*)."""
        db1 = (self.fit.params.beta1[None, :, None, :] + T[:, None, None, :]
               - self.beta1_t[None, None, :, :])
        nb1 = np.sqrt(np.sum(db1**2, axis=3))  # (m, k, k*)
        if self.metric == "euclidean":
            dist = nb1**2 + self.rest
        else:
            dist = np.sum(np.abs(db1), axis=3) + self.rest
        cell = np.argmin(dist, axis=2)
        member = cell[:, :, None] == np.arange(self.kstar)  # (m, k, k*)
        sizes = member.sum(axis=1)
        rows = np.arange(self.k)
        nb1 = np.take_along_axis(nb1, cell[:, :, None], axis=2)[:, :, 0]
        na, nb, nv, ns = (x[rows, cell] for x in (self.na, self.nb, self.nv, self.ns))
        if self.kind == "exact":
            cost = nb1 + na + nb + nv + ns
        else:
            size = np.take_along_axis(sizes, cell, axis=1)
            r = np.where(size == 1, 1.0, np.where(size == 2, 4.0, 6.0))
            half = np.where(size == 1, 1.0, r / 2)
            cost = nb1**r + na**half + nb**r + nv**half + ns**half
            cost[np.any(size > 3, axis=1)] = np.inf
        S = np.einsum("mkj,k->mj", member, self.E)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # a cell of four or more atoms costs inf; an underflowed weight E_i = 0
            # makes 0 * inf = NaN there, mapped to inf below
            C = cost @ self.E
            if self.pin_mass:
                u = np.full((T.shape[0], 1), self.w_true.sum() / self.E.sum())
            else:
                u = np.where(S > 0, self.w_true / S, np.nan)
                u = np.concatenate([u, np.zeros((T.shape[0], 1))], axis=1)
            vals = (np.abs(u[:, :, None] * S[:, None, :] - self.w_true).sum(axis=2)
                    + u * C[:, None])
        vals[np.isnan(vals)] = np.inf
        values = vals.min(axis=1) + self.tau_term
        values[~np.isfinite(values)] = np.inf
        return values, cell, sizes

    def t1_starts(self) -> list[np.ndarray]:
        """0, the slope shifts aligning each fitted atom's beta1 with each true atom's
        (the reference, last, atom only when there are many), and a scan of the box
        they span (a grid for d = 1, fixed pseudo-random points otherwise)."""
        pf = self.fit.params
        targets = range(self.kstar) if self.k * self.kstar <= 100 else [self.kstar - 1]
        starts = [np.zeros(self.d)]
        starts += [self.beta1_t[j] - pf.beta1[i] for j in targets for i in range(self.k)]
        lo = np.min(starts, axis=0) - 1.0
        hi = np.max(starts, axis=0) + 1.0
        if self.d == 1:
            scan = np.linspace(lo, hi, 201)
        else:
            scan = lo + (hi - lo) * np.random.default_rng(0).random((100 * self.d, self.d))
        return starts + list(scan)


def _nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float):
    dim = x0.shape[0]
    simplex = np.vstack([x0] + [x0 + step * e for e in np.eye(dim)])
    res = minimize(f, x0, method="Nelder-Mead",
                   options={"xatol": _XATOL, "fatol": _FATOL, "maxfev": 500 * (dim + 1),
                            "initial_simplex": simplex})
    return np.asarray(res.x, dtype=float), float(res.fun)


def _line_breakpoints(problem: _Problem) -> np.ndarray:
    """d = 1: the sorted slope shifts where a fitted atom's distance to a true atom has
    a kink (``t1 = c_ij``, beta1 aligned) or two true atoms tie for one fitted atom.
    Between two of them every cell is constant and every ``|dbeta1_ij|`` is affine."""
    c = problem.beta1_t[None, :, 0] - problem.fit.params.beta1[:, None, 0]  # (k, k*)
    j, jj = np.triu_indices(problem.kstar, 1)
    cj, cjj, dr = c[:, j], c[:, jj], problem.rest[:, j] - problem.rest[:, jj]
    with np.errstate(divide="ignore", invalid="ignore"):
        if problem.metric == "euclidean":
            # (t - cj)^2 + rj = (t - cjj)^2 + rjj is linear in t: one root
            ties = (cj**2 - cjj**2 + dr) / (2.0 * (cj - cjj))
        else:
            # |t - cj| - |t - cjj| + dr changes sign only between cj and cjj
            ties = 0.5 * (cj + cjj - dr * np.sign(cjj - cj))
            ties[(ties < np.minimum(cj, cjj)) | (ties > np.maximum(cj, cjj))] = np.nan
    points = np.concatenate([c.ravel(), ties.ravel()])
    return np.unique(points[np.isfinite(points)])


def _line_minimisers(lo: np.ndarray, hi: np.ndarray, centre: np.ndarray,
                     weight: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Minimiser over [lo_m, hi_m] of ``F_m(t) = sum_i weight_i |t - centre_mi|^power_mi``
    (powers 1, 4 or 6) for each interval m, to rounding.

    F is convex and smooth between its kinks (the centres), so the minimiser is the
    first sorted, clipped centre where the derivative F' turns non-negative, or the
    root of F' (a polynomial there) in the gap just before it, found by safeguarded
    Newton steps.
    """
    w1, w4, w6 = (np.where(power == p, p * weight, 0.0)[:, None, :] for p in (1.0, 4.0, 6.0))

    def slope(t, sign=None):
        """F' at the points t (m, q); sign(0) = 0 gives a value between the one-sided
        limits at a kink; ``sign`` (m, 1, k) fixes the signs of t - centre instead."""
        gap = t[:, :, None] - centre[:, None, :]
        sq = gap * gap
        sign = np.sign(gap) if sign is None else sign
        return np.sum(w1 * sign + (w4 + w6 * sq) * sq * gap, axis=2)

    knots = np.sort(np.clip(centre, lo[:, None], hi[:, None]), axis=1)  # (m, k)
    rows = np.arange(knots.shape[0])
    turn = np.argmax(slope(knots) >= 0, axis=1)  # first knot where F' >= 0 (else 0)
    none = slope(knots[:, -1:])[:, 0] < 0  # F' < 0 everywhere: the right end
    right = np.where(none, knots[:, -1], knots[rows, turn])
    left = np.where(turn > 0, knots[rows, turn - 1], right)
    # on the open gap (left, right) every t - centre has a fixed sign: F' is a
    # polynomial there; its root is inside unless a one-sided limit is already >= 0
    sign = np.sign(0.5 * (left + right)[:, None, None] - centre[:, None, :])
    at_left = slope(left[:, None], sign)[:, 0] >= 0
    open_gap = (left < right) & (slope(right[:, None], sign)[:, 0] > 0) & ~at_left
    x = 0.5 * (left + right)
    for _ in range(_NEWTON):
        f = slope(x[:, None], sign)[:, 0]
        sq = (x[:, None] - centre) ** 2
        df = np.sum((3.0 * w4[:, 0] + 5.0 * w6[:, 0] * sq) * sq, axis=1)
        left = np.where(f < 0, x, left)
        right = np.where(f > 0, x, right)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - f / df
        new = np.where((step > left) & (step < right), step, 0.5 * (left + right))
        done = ~open_gap | (new == x) | (f == 0)
        x = np.where(done, x, new)
        if np.all(done):
            break
    return np.where(open_gap, x, np.where(at_left, left, right))


def _line_infimum(problem: _Problem) -> np.ndarray:
    """d = 1, exactly: between consecutive breakpoints (:func:`_line_breakpoints`)
    the cells are fixed and, for every t0, the loss is a positive multiple of a convex
    ``F(t1) = sum_i E_i |t1 - c_i|^r_i`` plus terms free of t1; so its infimum there is
    at the minimiser of F. Each interval's minimiser (moved just inside when it is an
    endpoint, where the cells may change) is a candidate, with 0 and the breakpoints;
    the best is returned."""
    points = _line_breakpoints(problem)
    c = problem.beta1_t[None, :, 0] - problem.fit.params.beta1[:, None, 0]
    lo = np.concatenate([[-np.inf], points])
    hi = np.concatenate([points, [np.inf]])
    inner = np.where(np.isfinite(lo) & np.isfinite(hi), 0.5 * (lo + hi),
                     np.where(np.isfinite(lo), lo + 1.0, hi - 1.0))
    values, cell, sizes = problem.profiles(inner[:, None])
    keep = np.isfinite(values)  # else a cell of four or more atoms: undefined there
    candidates = [np.zeros(1), points]
    if np.any(keep):
        lo, hi, inner, cell, sizes = lo[keep], hi[keep], inner[keep], cell[keep], sizes[keep]
        if problem.kind == "exact":
            power = np.ones(cell.shape)
        else:
            size = np.take_along_axis(sizes, cell, axis=1)
            power = np.where(size == 1, 1.0, np.where(size == 2, 4.0, 6.0))
        best = _line_minimisers(lo, hi, c[np.arange(problem.k), cell], problem.E, power)
        eps = 1e-12 * np.maximum(1.0, np.abs(best))
        nudged = np.where(best <= lo, np.minimum(lo + eps, inner),
                          np.where(best >= hi, np.maximum(hi - eps, inner), best))
        candidates += [best, nudged]
    candidates = np.concatenate(candidates)
    values = problem.profiles(candidates[:, None])[0]
    return candidates[int(np.argmin(values))][None]


def _search_infimum(problem: _Problem) -> np.ndarray:
    """The best slope shift t1 of the starting shifts (:meth:`_Problem.t1_starts`),
    improved by Nelder-Mead from the best few of them (the profile is piecewise
    smooth, with jumps where the cells change): any d, not exact."""
    f = problem.value_t1
    starts = problem.t1_starts()
    scale = float(np.max(np.ptp(np.array(starts), axis=0)))
    values = problem.profiles(np.array(starts))[0]
    cands = sorted(((float(v), i, t)
                    for i, (v, t) in enumerate(zip(values, starts, strict=True))),
                   key=lambda c: c[:2])
    best_v, _, best_t = cands[0]
    seen: list[np.ndarray] = []
    for v, _, t in cands:
        if len(seen) == _N_LOCAL or not math.isfinite(v):
            break
        if any(np.allclose(t, u, rtol=0, atol=1e-6) for u in seen):
            continue
        seen.append(t)
        x, fx = _nelder_mead(f, t, max(0.05 * scale, 1e-2))
        x, fx = _nelder_mead(f, x, 1e-3)  # restart: Nelder-Mead can stall at a kink
        if fx < best_v:
            best_v, best_t = fx, x
    return best_t


def _infimum(problem: _Problem) -> np.ndarray:
    """The minimising shift (t0, t1): t0 exactly for each t1 (:meth:`_Problem.profile`);
    t1 exactly for d = 1 (:func:`_line_infimum`), by a local search for d > 1
    (:func:`_search_infimum`)."""
    if not problem.shifts_slopes:
        return np.array([problem.profile(None)[1]])
    best_t = _line_infimum(problem) if problem.d == 1 else _search_infimum(problem)
    return np.concatenate([[problem.profile(best_t)[1]], best_t])
