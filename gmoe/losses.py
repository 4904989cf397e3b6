"""Voronoi losses between mixing measures, and per-parameter errors per Voronoi cell.

A model with parameters ``(beta0_i, theta_i)``, ``theta_i = (beta1_i, a_i, b_i, var_i)``,
is the mixing measure ``G = sum_i exp(w_i) delta_{theta_i}`` with ``w_i`` the effective
intercept of expert i's logit (``beta0_i``, or ``beta0_i / tau`` for gates with a
temperature). The losses compare a fitted measure G with the true G* through the
Voronoi cells of the true atoms. The gating parameters are identified only up to the
gate's translation group (a common shift ``t0`` of every beta0 and, for gates whose
weights do not change under it, ``t1`` of every beta1), so the fitted measure is first
shifted by one of three conventions (``translation=``): ``"mass"`` (the default; t0
pinned by the total weight, the infimum over t1), ``"infimum"`` (over t0 and t1) or
``"none"``. See docs/theory.md, "Translation conventions".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ._validation import check_choice
from .params import MoEParams

__all__ = ["TRANSLATIONS", "ParameterErrors", "VoronoiLoss", "parameter_errors",
           "voronoi_cells", "voronoi_loss"]

#: Translation conventions of the losses, the default first (docs/theory.md,
#: "Translation conventions").
TRANSLATIONS = ("mass", "infimum", "none")

_METRICS = ("euclidean", "l1")
_KINDS = ("exact", "over")
#: Over-specified exponent rbar(|A_j|) by cell size; cells of >= 4 atoms have none.
_RBAR = {2: 4, 3: 6}
#: Nelder-Mead settings of the infimum over the shift.
_XATOL, _FATOL = 1e-10, 1e-14
_N_LOCAL = 3  # local searches from the best starting slope shifts


# ----------------------------------------------------------------- inputs
@dataclass(frozen=True)
class _Measure:
    """One side of the comparison: parameters and effective intercepts ``eff0`` (at no
    shift); a shift t0 of every beta0 moves them to ``eff0 + t0 * slope``."""

    params: MoEParams
    eff0: np.ndarray
    slope: float


def _effective(params: MoEParams, gate) -> np.ndarray:
    if gate is not None:
        return np.asarray(gate.effective_intercepts(params), dtype=float)
    return params.beta0 if params.tau is None else params.beta0 / params.tau


def _unpack(obj, name: str) -> tuple[MoEParams, object | None]:
    """(params, gate) of a MoEParams, a GaussianMoE / FitResult, or a fitted MoERegressor."""
    if isinstance(obj, MoEParams):
        return obj, None
    if not hasattr(obj, "params") and hasattr(obj, "model_"):
        obj = obj.model_
    params = getattr(obj, "params", None)
    if isinstance(params, MoEParams):
        return params, getattr(obj, "gate", None)
    raise ValueError(f"{name} must be a MoEParams or a model with .params and .gate "
                     f"(GaussianMoE, FitResult, fitted MoERegressor), got {type(obj).__name__}")


def _cov_norms(pf: MoEParams, pt: MoEParams) -> tuple[np.ndarray, np.ndarray]:
    """Frobenius and l1 norms of ``Sigma_i - Sigma*_j``, (k, k*), for parameters that
    carry gate covariances (the Gaussian gate, docs/theory.md, "The Gaussian gate");
    zeros otherwise."""
    if pf.gate_cov is None or pt.gate_cov is None:
        zeros = np.zeros((pf.k, pt.k))
        return zeros, zeros
    diff = pf.gate_cov[:, None] - pt.gate_cov[None, :]
    return np.sqrt(np.sum(diff**2, axis=(2, 3))), np.sum(np.abs(diff), axis=(2, 3))


def _measure(params: MoEParams, gate, name: str) -> _Measure:
    eff0 = np.array(_effective(params, gate), dtype=float)
    if eff0.shape != (params.k,):
        raise ValueError(f"effective intercepts of {name} should have the shape of "
                         f"({params.k},), but got {eff0.shape}")
    slopes = _effective(params.shift_gate(1.0), gate) - eff0
    back = _effective(params.shift_gate(-1.0), gate)
    slope = float(np.mean(slopes))
    if not (slope > 0 and np.allclose(slopes, slope, rtol=1e-9, atol=0)
            and np.allclose(back, eff0 - slopes, rtol=1e-9, atol=1e-9)):
        raise ValueError(f"the gate of {name} has effective intercepts that are not "
                         "beta0 (or beta0 / tau) up to a common increasing affine map; "
                         "the Voronoi losses need that form")
    return _Measure(params, eff0, slope)


def _resolve(fitted, truth, gate):
    """Both measures, whether the fitted gate has a translation symmetry at all, and
    whether its translation group also shifts the slopes.

    Plain parameters have the softmax's group (t0 and t1). A gate declares its group
    by its ``symmetry`` (:data:`gmoe.gates.SYMMETRIES`); a gate without one is never
    shifted."""
    pf, gf = _unpack(fitted, "fitted")
    pt, gt = _unpack(truth, "truth")
    if pf.d != pt.d:
        raise ValueError(f"fitted and truth have different numbers of features: "
                         f"d = {pf.d} (fitted) and d = {pt.d} (truth)")
    gf = gf if gf is not None else (gate if gate is not None else gt)
    gt = gt if gt is not None else (gate if gate is not None else gf)
    symmetric = True if gf is None else gf.shifts_intercepts
    shifts_slopes = True if gf is None else gf.shifts_slopes
    return (_measure(pf, gf, "fitted"), _measure(pt, gt, "truth"), symmetric,
            shifts_slopes)


def _check_shift(shift, d: int, shifts_slopes: bool, symmetric: bool = True) -> np.ndarray:
    """Shift as the full vector (t0, t1_1..t1_d), or (t0,) for intercept-only groups.

    t0 may be -inf (the limit of vanishing fitted weights); t1 must be finite. A gate
    without a translation symmetry takes the shift 0 only."""
    s = np.atleast_1d(np.asarray(shift, dtype=float))
    if not symmetric and (s.ndim != 1 or np.any(s != 0)):
        raise ValueError("The parameter 'shift' must be 0 for a gate without a "
                         f"translation symmetry, but got {np.asarray(shift).tolist()!r}")
    dim = 1 + d if shifts_slopes else 1
    if (s.ndim != 1 or s.shape[0] not in (1, dim) or np.isnan(s).any()
            or s[0] == np.inf or not np.all(np.isfinite(s[1:]))):
        what = "(t0,) or (t0, t1_1, ..., t1_d)" if shifts_slopes else "(t0,)"
        raise ValueError(f"The parameter 'shift' should be a vector {what} of length "
                         f"1 or {dim} (finite, t0 may be -inf), but got "
                         f"{np.asarray(shift).tolist()!r}")
    if s.shape[0] < dim:
        s = np.concatenate([s, np.zeros(dim - 1)])
    return s


def _jsonable(x):
    """Plain Python floats / lists with non-finite numbers as None."""
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ------------------------------------------------------------------ core
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


# ------------------------------------------------------------- public API
def voronoi_cells(fitted, truth, metric: str = "euclidean", *, shift=None) -> list[list[int]]:
    """Voronoi cells of the true atoms.

    The cell of true atom j is ``A_j = {i : |theta_i - theta*_j| <= |theta_i - theta*_l|
    for all l}`` with ``theta = (beta1, a, b, var)`` stacked; every fitted atom lies in
    exactly one cell (ties go to the lower true index).

    Parameters
    ----------
    fitted, truth : MoEParams or GaussianMoE (or anything with ``.params``)
        Fitted and true parameters; the same d.
    metric : {"euclidean", "l1"}, default="euclidean"
        Atom distance: Euclidean norm or sum of absolute values of the stacked difference.
    shift : array-like, optional
        Common gating shift ``(t0, t1_1, ..., t1_d)`` applied to the fitted atoms first
        (only t1 moves the cells); default none.

    Returns
    -------
    list of k* lists of int
        ``cells[j]`` holds the (sorted) indices of the fitted atoms in the cell of true
        atom j; it may be empty.

    Raises
    ------
    ValueError
        If the numbers of features differ or ``metric`` is unknown.

    Examples
    --------
    >>> from gmoe import MoEParams
    >>> from gmoe.losses import voronoi_cells
    >>> truth = MoEParams([-8, 0], [[25], [0]], [[-20], [20]], [15, -5], [0.09, 0.16])
    >>> fit = MoEParams([-8, 0, 0], [[25], [0.1], [0]], [[-20], [20], [20]], [15, -5, -5],
    ...                 [0.09, 0.16, 0.16])
    >>> voronoi_cells(fit, truth)
    [[0], [1, 2]]
    """
    metric = check_choice(metric, "metric", _METRICS)
    fit, true, _, _ = _resolve(fitted, truth, None)
    problem = _Problem(fit, true, True, "exact", metric)
    s = np.zeros(1 + fit.params.d)
    if shift is not None:
        s = _check_shift(shift, fit.params.d, True)
    cell = problem.assign(s[1:])[0]
    return [np.flatnonzero(cell == j).tolist() for j in range(true.params.k)]


@dataclass(frozen=True, eq=False)
class VoronoiLoss:
    """A Voronoi loss D1 (``kind="exact"``) or D2 (``kind="over"``) and its parts.

    Attributes
    ----------
    value : float
        The loss of the fitted measure shifted by ``shift``: the infimum over the
        shifts the translation convention allows, or the loss at the given shift.
    kind : str
        ``"exact"`` (D1) or ``"over"`` (D2).
    metric : str
        Atom distance of the Voronoi cells.
    shift : ndarray of shape (d + 1,) or (1,)
        The minimising shift ``(t0, t1_1, ..., t1_d)`` (``(t0,)`` for gates whose
        translation group moves only the intercepts), applied to the fitted atoms.
    cells : tuple of tuples of int
        ``cells[j]``: the fitted atoms in the cell of true atom j at ``shift``.
    weight_terms : ndarray of shape (k*,)
        ``|sum_{i in A_j} exp(w_i) - exp(w*_j)|``.
    param_terms : ndarray of shape (k*,)
        ``sum_{i in A_j} exp(w_i) (|dbeta1|^r + |da|^(r/2) + |db|^r + |dvar|^(r/2))`` with
        ``r = 1`` (and r/2 read as 1) for D1 and cells of one atom, ``rbar(|A_j|)``
        otherwise.
    tau_term : float
        ``|tau - tau*|`` when both carry a temperature, else 0.
    unshifted : float
        The loss at shift 0 (``inf`` where undefined): the value without translation.
    translation : str
        The translation convention, ``"mass"``, ``"infimum"`` or ``"none"``; ``"none"``
        also when a gate without a translation symmetry was never shifted, and
        ``"given"`` when the shift was passed in.
    """

    value: float
    kind: str
    metric: str
    shift: np.ndarray
    cells: tuple[tuple[int, ...], ...]
    weight_terms: np.ndarray
    param_terms: np.ndarray
    tau_term: float
    unshifted: float
    translation: str = "mass"

    @property
    def cell_sizes(self) -> np.ndarray:
        """Number of fitted atoms in each true atom's cell, shape (k*,)."""
        return np.array([len(c) for c in self.cells], dtype=int)

    @property
    def saturated(self) -> bool:
        """True if the shift is the limit t0 -> -inf (all fitted weights vanishing), which
        only ``translation="infimum"`` reaches: the loss is then ``sum_j exp(w*_j)``
        (+ the tau term), the cap of that convention."""
        return bool(self.shift[0] == -np.inf)

    @property
    def cell_terms(self) -> np.ndarray:
        """Per true atom: weight term + parameter term, shape (k*,); sums to value - tau_term."""
        return self.weight_terms + self.param_terms

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        """JSON-safe dict (non-finite numbers as None)."""
        return {"value": _jsonable(float(self.value)), "kind": self.kind,
                "metric": self.metric, "shift": _jsonable(self.shift),
                "cells": [list(c) for c in self.cells],
                "cell_sizes": self.cell_sizes.tolist(),
                "weight_terms": _jsonable(self.weight_terms),
                "param_terms": _jsonable(self.param_terms),
                "tau_term": _jsonable(float(self.tau_term)),
                "unshifted": _jsonable(float(self.unshifted)),
                "translation": self.translation, "saturated": self.saturated}

    def __repr__(self) -> str:
        return (f"VoronoiLoss(kind={self.kind!r}, value={self.value:.6g}, "
                f"translation={self.translation!r}, "
                f"shift={np.array2string(self.shift, precision=4)}, "
                f"cell_sizes={self.cell_sizes.tolist()})")


def voronoi_loss(fitted, truth, kind: str = "exact", metric: str = "euclidean", *,
                 gate=None, shift=None, translation: str = "mass") -> VoronoiLoss:
    """Voronoi loss D1 (exact-specified) or D2 (over-specified) of a fit against the truth.

    With ``w_i`` the effective intercepts (``beta0_i``, or ``beta0_i / tau``) and the
    Voronoi cells ``A_j`` of :func:`voronoi_cells`::

        D = sum_j | sum_{i in A_j} exp(w_i) - exp(w*_j) |
          + sum_j sum_{i in A_j} exp(w_i) ( |dbeta1_ij|^r + |da_ij|^(r/2)
                                           + |db_ij|^r + |dvar_ij|^(r/2) )
          + |tau - tau*|            (when both carry a temperature)

    D1 (``kind="exact"``) uses exponent 1 on every term; D2 (``kind="over"``) does so for
    cells of one atom and uses ``r = rbar(|A_j|)``, ``rbar(2) = 4``, ``rbar(3) = 6``, for
    larger cells. The norms of ``dbeta1`` and ``da`` are Euclidean.

    The gating parameters are identified only up to a common shift ``beta0_i + t0,
    beta1_i + t1`` (``t0`` only for gates whose ``symmetry`` is ``"intercept"``), so the
    loss is taken of the shifted fitted measure, with the cells recomputed for each
    shift. ``translation`` chooses the shift (docs/theory.md, "Translation
    conventions"):

    - ``"mass"`` (default): ``t0`` is pinned so that the fitted atoms' total weight
      equals the truth's, and the loss is the infimum over ``t1`` alone. It is zero
      exactly when the fit equals the truth up to translation (a true atom split into
      several fitted ones included) and has no cap.
    - ``"infimum"``: the infimum over ``(t0, t1)``. Since ``t0 -> -inf`` sends every
      fitted weight to 0, it never exceeds ``sum_j exp(w*_j)`` (+ the tau term): a fit
      farther than that from the truth gets exactly that value, with
      ``shift[0] = -inf`` and ``saturated`` True.
    - ``"none"``: no shift (what the published reference code computes). An
      over-specified fit that splits the reference (last) expert in two then keeps a
      loss near 1 however good it is.

    A gate without a translation symmetry (``shifts_intercepts`` False) is never
    shifted, whatever ``translation`` says. The cells depend on t1 only, and for
    fixed t1 the loss is convex and piecewise linear in ``exp(t0)``, so the best t0 of
    the infimum is found exactly (a kink where a cell's weight matches its true atom's,
    or t0 -> -inf); t1 is searched by Nelder-Mead from the best of several starting
    shifts (0, the shifts aligning each fitted beta1 with each true beta1, and a scan of
    the box they span). Shift 0 is among the candidates, so the infimum is never above
    the unshifted loss.

    Parameters
    ----------
    fitted, truth : MoEParams or GaussianMoE (or FitResult, fitted MoERegressor)
        Models carry their gate, which defines the atom weights and the translation
        group. The truth's weights are taken as given (models store the normal form).
    kind : {"exact", "over"}, default="exact"
    metric : {"euclidean", "l1"}, default="euclidean"
        Atom distance of the Voronoi cells.
    gate : Gate, optional
        Gate of arguments given as plain MoEParams; default: the other argument's gate,
        else softmax semantics (weights ``exp(beta0)``, or ``exp(beta0 / tau)`` when the
        parameters carry ``tau``; shifts of ``(t0, t1)``).
    shift : array-like, optional
        Evaluate at this shift ``(t0, t1_1, ..., t1_d)`` (a scalar means ``t0``) instead
        of choosing it by ``translation``; ``shift=0`` is ``translation="none"``.
    translation : {"mass", "infimum", "none"}, default="mass"
        How the shift is chosen, see above.

    Returns
    -------
    VoronoiLoss
        ``.value`` the loss, ``.shift`` the minimising shift, ``.cells``, the per-cell
        terms and ``to_dict()``.

    Raises
    ------
    ValueError
        If the numbers of features differ; if ``kind="over"`` and the truth has more
        atoms than the fit, or every examined shift leaves a cell of four or more atoms
        (rbar is unknown there); for unknown ``kind``, ``metric`` or ``translation``;
        for a non-zero ``shift`` of a gate without a translation symmetry.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams
    >>> from gmoe.losses import voronoi_loss
    >>> truth = MoEParams([-8, 0], [[25], [0]], [[-20], [20]], [15, -5], [0.09, 0.16])
    >>> split = MoEParams([-8 + np.log(2), 0, 0], [[25], [0], [0]], [[-20], [20], [20]],
    ...                   [15, -5, -5], [0.09, 0.16, 0.16])
    >>> loss = voronoi_loss(split, truth, kind="over")
    >>> bool(loss.value < 1e-8), round(float(loss.shift[0]), 6)
    (True, -0.693147)
    >>> round(voronoi_loss(split, truth, kind="over", translation="none").value, 6)
    1.000335
    """
    kind = check_choice(kind, "kind", _KINDS)
    metric = check_choice(metric, "metric", _METRICS)
    translation = check_choice(translation, "translation", TRANSLATIONS)
    fit, true, symmetric, shifts_slopes = _resolve(fitted, truth, gate)
    k, kstar = fit.params.k, true.params.k
    if kind == "over":
        if k < kstar:
            raise ValueError(f"kind='over' needs at least as many fitted atoms as true "
                             f"atoms, but the fit has k = {k} and the truth k* = {kstar}")
        if k > 3 * kstar:
            raise ValueError(f"kind='over' is defined for Voronoi cells of at most 3 atoms "
                             f"(rbar(2) = 4, rbar(3) = 6), but k = {k} fitted atoms in "
                             f"k* = {kstar} cells leave a cell of at least 4")
    problem = _Problem(fit, true, shifts_slopes, kind, metric,
                       pin_mass=translation == "mass")
    zero = np.zeros(problem.dim)
    if shift is not None:
        s = _check_shift(shift, fit.params.d, shifts_slopes, symmetric)
        translation = "given"
    elif translation == "none" or not symmetric:
        s, translation = zero, "none"
    else:
        s = _infimum(problem)
    value, cell, weight_terms, param_terms, sizes = problem.terms(s)
    if kind == "over" and np.any(sizes > 3):
        j = int(np.argmax(sizes > 3))
        raise ValueError(f"kind='over': the Voronoi cell of true atom {j} holds "
                         f"{int(sizes[j])} fitted atoms {np.flatnonzero(cell == j).tolist()}"
                         f" at shift {s.tolist()}; rbar is known only for cells of at most "
                         f"3 atoms (rbar(2) = 4, rbar(3) = 6)")
    return VoronoiLoss(
        value=value, kind=kind, metric=metric, shift=s,
        cells=tuple(tuple(np.flatnonzero(cell == j).tolist()) for j in range(kstar)),
        weight_terms=weight_terms, param_terms=param_terms,
        tau_term=float(problem.tau_term), unshifted=problem.terms(zero)[0],
        translation=translation)


@dataclass(frozen=True, eq=False)
class ParameterErrors:
    """Per true atom, the errors of the fitted atoms in its Voronoi cell.

    Attributes
    ----------
    shift : ndarray
        The common gating shift applied to the fitted atoms.
    cells : tuple of tuples of int
        ``cells[j]``: the fitted atoms in the cell of true atom j.
    weight_error : ndarray of shape (k*,)
        ``|sum_{i in A_j} exp(w_i) - exp(w*_j)|``.
    beta1, a, b, var : ndarray of shape (k*,)
        Largest ``|dbeta1_ij|``, ``|da_ij|`` (Euclidean norms), ``|db_ij|``,
        ``|dvar_ij|`` over the cell; NaN for an empty cell.
    tau_error : float or None
        ``|tau - tau*|`` when both carry a temperature.
    heavy, light : dict of str to ndarray of shape (k*,)
        In cells of two or more atoms, the same four errors of the cell's heaviest and
        of its lightest atom (by gate weight); NaN for cells of fewer than two atoms.
        The theory's slow rates concern atoms whose weight stays bounded away from 0;
        the maximum over the cell mixes them with an atom whose weight may be vanishing.
    light_share : ndarray of shape (k*,)
        The lightest atom's share of its cell's weight (NaN for cells of fewer than two).
    """

    shift: np.ndarray
    cells: tuple[tuple[int, ...], ...]
    weight_error: np.ndarray
    beta1: np.ndarray
    a: np.ndarray
    b: np.ndarray
    var: np.ndarray
    tau_error: float | None
    heavy: dict | None = None
    light: dict | None = None
    light_share: np.ndarray | None = None

    _FIELDS = ("weight_error", "beta1", "a", "b", "var")
    _PARAMS = ("beta1", "a", "b", "var")

    @property
    def cell_sizes(self) -> np.ndarray:
        """Number of fitted atoms in each cell, shape (k*,)."""
        return np.array([len(c) for c in self.cells], dtype=int)

    @property
    def atoms(self) -> list[dict]:
        """One JSON-safe record per true atom (None for the errors of an empty cell)."""
        out = []
        for j, cell in enumerate(self.cells):
            rec = {"atom": j, "cell": list(cell), "cell_size": len(cell)}
            for name in self._FIELDS:
                rec[name] = _jsonable(float(getattr(self, name)[j]))
            if self.light_share is not None and len(cell) >= 2:
                rec["heavy"] = {p: _jsonable(float(self.heavy[p][j])) for p in self._PARAMS}
                rec["light"] = {p: _jsonable(float(self.light[p][j])) for p in self._PARAMS}
                rec["light_share"] = _jsonable(float(self.light_share[j]))
            out.append(rec)
        return out

    def to_dict(self) -> dict:
        """JSON-safe dict: ``shift``, ``tau_error`` and the per-atom records ``atoms``."""
        return {"shift": _jsonable(self.shift), "tau_error": _jsonable(self.tau_error),
                "atoms": self.atoms}

    def to_frame(self):
        """The per-atom records as a pandas DataFrame (one row per true atom)."""
        import pandas as pd

        return pd.DataFrame(self.atoms).set_index("atom")


def parameter_errors(fitted, truth, *, gate=None, metric: str = "euclidean",
                     kind: str = "exact", shift=None,
                     translation: str = "mass") -> ParameterErrors:
    """Per-parameter errors of a fit in the Voronoi cell of each true atom.

    For true atom j with cell ``A_j``: the cell size, the weight error
    ``|sum_{i in A_j} exp(w_i) - exp(w*_j)|`` and the largest ``|dbeta1_ij|``,
    ``|da_ij|``, ``|db_ij|``, ``|dvar_ij|`` over ``i in A_j``; and ``|tau - tau*|``.
    Computed at the shift :func:`voronoi_loss` chooses with the same ``kind`` and
    ``translation`` (or at ``shift``).

    Parameters
    ----------
    fitted, truth : MoEParams or GaussianMoE (or FitResult, fitted MoERegressor)
    gate : Gate, optional
        As in :func:`voronoi_loss`.
    metric : {"euclidean", "l1"}, default="euclidean"
    kind : {"exact", "over"}, default="exact"
        Loss whose minimising shift is used when ``shift`` is None. D1 is defined for
        every cell configuration, D2 matches the over-specified rates.
    shift : array-like or VoronoiLoss, optional
        The shift to use (a :class:`VoronoiLoss` gives its shift); overrides
        ``translation``.
    translation : {"mass", "infimum", "none"}, default="mass"
        Translation convention of the shift, as in :func:`voronoi_loss`.

    Returns
    -------
    ParameterErrors
        With ``to_dict()`` for JSON and ``to_frame()`` for a table.

    Raises
    ------
    ValueError
        As :func:`voronoi_loss`.

    Examples
    --------
    >>> from gmoe import MoEParams
    >>> from gmoe.losses import parameter_errors
    >>> truth = MoEParams([-1, 0], [[2], [0]], [[-1], [1]], [1, -1], [0.5, 0.5])
    >>> fit = truth.replace(b=[1.1, -1])
    >>> errs = parameter_errors(fit, truth)
    >>> errs.b.round(6).tolist()
    [0.1, 0.0]
    """
    metric = check_choice(metric, "metric", _METRICS)
    translation = check_choice(translation, "translation", TRANSLATIONS)
    fit, true, symmetric, shifts_slopes = _resolve(fitted, truth, gate)
    if shift is None:
        s = voronoi_loss(fitted, truth, kind=kind, metric=metric, gate=gate,
                         translation=translation).shift
    else:
        given = shift.shift if isinstance(shift, VoronoiLoss) else shift
        s = _check_shift(given, fit.params.d, shifts_slopes, symmetric)
    problem = _Problem(fit, true, shifts_slopes, "exact", metric)
    _, cell, weight_error, _, _ = problem.terms(s)
    nb1 = problem.assign(problem._t1(s))[1]
    kstar = true.params.k
    names = ParameterErrors._PARAMS
    errs = {name: np.full(kstar, np.nan) for name in names}
    heavy = {name: np.full(kstar, np.nan) for name in names}
    light = {name: np.full(kstar, np.nan) for name in names}
    light_share = np.full(kstar, np.nan)
    tables = dict(zip(names, (nb1, problem.na, problem.nb, problem.nv), strict=True))
    for j in range(kstar):
        members = np.flatnonzero(cell == j)
        if members.size:
            for name, table in tables.items():
                errs[name][j] = float(np.max(table[members, j]))
        if members.size >= 2:
            # relative gate weights: the same at every shift, since t0 scales them all
            weights = problem.E[members]
            order = np.argsort(-weights, kind="stable")
            for store, i in ((heavy, members[order[0]]), (light, members[order[-1]])):
                for name, table in tables.items():
                    store[name][j] = float(table[i, j])
            total = float(weights.sum())
            light_share[j] = float(weights[order[-1]]) / total if total > 0 else np.nan
    pf, pt = fit.params, true.params
    tau_error = (abs(pf.tau - pt.tau) if pf.tau is not None and pt.tau is not None
                 else None)
    return ParameterErrors(
        shift=s, cells=tuple(tuple(np.flatnonzero(cell == j).tolist()) for j in range(kstar)),
        weight_error=weight_error, tau_error=tau_error, heavy=heavy, light=light,
        light_share=light_share, **errs)
