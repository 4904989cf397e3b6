"""Per-parameter errors of a fit in the Voronoi cell of each true atom, and the
results columns they flatten into (:meth:`ParameterErrors.columns`, read back by
:meth:`ParameterErrors.parse_column`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._json import jsonable as _jsonable
from ._shift_search import _Problem
from ._validation import check_choice
from .losses import _METRICS, TRANSLATIONS, VoronoiLoss, _check_shift, _resolve, voronoi_loss

__all__ = ["ParameterErrors", "parameter_errors", "Column", "COLUMN_PARAMS"]

#: The errors of each true atom, as results columns name them (``weight`` is the
#: ``weight_error`` of :class:`ParameterErrors`).
COLUMN_PARAMS = ("weight", "beta1", "a", "b", "var")
_COLUMN = re.compile(r"^(weight|beta1|a|b|var|light_share|size)_"
                     r"(?:atom(\d+)|size(\d+)(?:_(heavy|light))?)$")


class Column(NamedTuple):
    """A results column of the per-parameter errors: ``param`` (one of
    :data:`COLUMN_PARAMS`, ``"light_share"``, or ``"size"`` for a cell's size), and
    either the true ``atom`` or the cell ``size`` with ``part`` (``""``, ``"heavy"``
    or ``"light"``)."""

    param: str
    atom: int | None
    size: int | None
    part: str


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

    @staticmethod
    def columns(errors: dict) -> dict:
        """The results columns of a record's ``parameter_errors`` (the :meth:`to_dict`
        form): ``{param}_atom{j}`` and ``size_atom{j}`` for true atom j; ``{param}_size{s}``,
        the largest error over true atoms whose cell has s fitted atoms;
        ``{param}_size{s}_heavy`` and ``_light``, the same for the cell's heaviest and
        lightest atom; ``light_share_size{s}``; and ``tau_error`` (param in
        ``weight``, ``beta1``, ``a``, ``b``, ``var``). :meth:`parse_column` reads the
        names back."""
        row: dict = {}
        by_size: dict = {}
        for j, atom in enumerate(errors.get("atoms", [])):
            size = atom.get("cell_size", 0)
            for key in COLUMN_PARAMS:
                value = atom.get("weight_error" if key == "weight" else key)
                row[f"{key}_atom{j}"] = value
                if size and value is not None:
                    by_size.setdefault((key, size), []).append(value)
            row[f"size_atom{j}"] = size
            # the heaviest and the lightest atom of a cell of two or more
            for part in ("heavy", "light"):
                for key, value in (atom.get(part) or {}).items():
                    if value is not None:
                        by_size.setdefault((key, f"{size}_{part}"), []).append(value)
            if atom.get("light_share") is not None:
                by_size.setdefault(("light_share", size), []).append(atom["light_share"])
        for (key, size), values in by_size.items():
            row[f"{key}_size{size}"] = max(values)
        if errors.get("tau_error") is not None:
            row["tau_error"] = errors["tau_error"]
        return row

    @staticmethod
    def parse_column(name: str) -> Column | None:
        """What a column of :meth:`columns` holds, or None for another name.

        Examples
        --------
        >>> ParameterErrors.parse_column("beta1_size2_heavy")
        Column(param='beta1', atom=None, size=2, part='heavy')
        >>> ParameterErrors.parse_column("loss") is None
        True
        """
        match = _COLUMN.match(name)
        if match is None:
            return None
        param, atom, size, part = match.groups()
        return Column(param, None if atom is None else int(atom),
                      None if size is None else int(size), part or "")

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
    >>> from gmoe.parameter_errors import parameter_errors
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
