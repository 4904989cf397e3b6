"""The search of the gating shift of a Voronoi loss (docs/theory.md, "Translation
conventions"): the loss at a shift (:class:`_Problem`), t0 exactly for each t1, and
the infimum over t1 by Nelder-Mead from the best starting shifts. Used by
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


def _infimum(problem: _Problem) -> np.ndarray:
    """The minimising shift (t0, t1): t0 exactly for each t1 (:meth:`_Problem.profile`);
    t1 the best of the starting shifts, improved by Nelder-Mead from the best few of
    them (the profile is piecewise smooth, with jumps where the cells change)."""
    if not problem.shifts_slopes:
        return np.array([problem.profile(None)[1]])
    f = problem.value_t1
    starts = problem.t1_starts()
    scale = float(np.max(np.ptp(np.array(starts), axis=0)))
    cands = sorted(((f(t), i, t) for i, t in enumerate(starts)), key=lambda c: c[:2])
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
    return np.concatenate([[problem.profile(best_t)[1]], best_t])
