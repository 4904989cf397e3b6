"""Voronoi losses between mixing measures (per-parameter errors per Voronoi cell are
:mod:`gmoe.parameter_errors`, the search of the shift :mod:`gmoe._shift_search`).

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

from dataclasses import dataclass

import numpy as np

from ._json import jsonable as _jsonable
from ._shift_search import _infimum, _Measure, _Problem
from ._validation import check_choice
from .params import MoEParams
from .settings import LOSS_KINDS, LOSS_METRICS, TRANSLATIONS

__all__ = ["TRANSLATIONS", "VoronoiLoss", "voronoi_cells", "voronoi_loss"]

_METRICS = LOSS_METRICS
_KINDS = tuple(kind for kind in LOSS_KINDS if kind != "auto")  # "auto" is a config's

# ----------------------------------------------------------------- inputs

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
        If the numbers of features differ or ``metric`` is unknown; if ``shift`` is
        not in the fitted gate's translation group (a slope shift for a gate that
        shifts intercepts only, any non-zero shift for a gate without a symmetry).

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
    fit, true, symmetric, shifts_slopes = _resolve(fitted, truth, None)
    problem = _Problem(fit, true, True, "exact", metric)
    t1 = np.zeros(fit.params.d)
    if shift is not None:
        # a shift outside the fitted gate's translation group is refused, as by the loss
        s = _check_shift(shift, fit.params.d, shifts_slopes, symmetric)
        t1 = s[1:] if shifts_slopes else t1
    cell = problem.assign(t1)[0]
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
      loss near 1 however good it is. Plain :class:`MoEParams` are compared as given,
      models (``GaussianMoE``, fits) in their gate's normal form: two translates of one
      softmax gate as plain parameters are apart under ``"none"``, and the same as
      models.

    A gate without a translation symmetry (``shifts_intercepts`` False) is never
    shifted, whatever ``translation`` says. The cells depend on t1 only, and for
    fixed t1 the loss is convex and piecewise linear in ``exp(t0)``, so the best t0 of
    the infimum is found exactly (a kink where a cell's weight matches its true atom's,
    or t0 -> -inf). With one feature (d = 1) t1 is found exactly too: between the
    shifts where a cell changes or a fitted beta1 meets a true one, the loss is, for
    every t0, a positive multiple of a convex function of t1 plus terms free of t1, so
    each stretch contributes its convex minimiser. With d > 1, t1 is searched by
    Nelder-Mead from the best of several starting shifts (0, the shifts aligning each
    fitted beta1 with each true beta1, and a scan of the box they span). Shift 0 is
    among the candidates, so the infimum is never above the unshifted loss.

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
