"""The dendrogram of mixing measures of a fitted softmax-gated mixture of experts.

A fitted model is identified with its mixing measure
``G = sum_i exp(beta0_i) delta_{theta_i}``, ``theta_i = (beta1_i, a_i, b_i, var_i)``
(docs/theory.md, "Mixing measures and Voronoi cells"). Merging, step by step, the two
closest atoms of ``G`` into one gives a path of measures with k, k - 1, ..., 1 atoms;
each is a valid model with a likelihood on the data. The construction, its distance
and the dendrogram selection criterion (DSC) are stated in docs/theory.md, "Choosing
the number of experts".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_positive_float, check_sample_weight, check_X_y
from ..gates import Gate, SoftmaxGate, make_gate
from ..model import GaussianMoE
from ..params import MoEParams
from .atoms import _log_masses, _pairwise, atom_distance, merge_atoms

__all__ = ["Coordinates", "Dendrogram", "DendrogramLevel", "Merge", "dendrogram",
           "merge_atoms", "atom_distance"]


@dataclass(frozen=True)
class Merge:
    """One step of the dendrogram.

    Attributes
    ----------
    step : int
        1 for the first merge (k atoms -> k - 1), up to k - 1.
    left, right : int
        The merged nodes, numbered as in scipy's linkage: leaves ``0..k-1`` are the
        fitted experts, and the node created by step ``s`` is ``k - 1 + s``.
    height : float
        The distance of the two atoms (:func:`atom_distance`) when they merged.
    n_leaves : int
        Fitted experts under the new node.
    """

    step: int
    left: int
    right: int
    height: float
    n_leaves: int


@dataclass(frozen=True)
class DendrogramLevel:
    """The merged mixing measure with ``n_atoms`` atoms.

    Attributes
    ----------
    n_atoms : int
    params : MoEParams
        The level's model in the gate's normal form; atom m comes from the fitted
        experts ``members[m]`` and the atoms are in the order of their first member.
    members : tuple of tuple of int
    loglik : float
        Log-likelihood of the level's model on the data.
    height : float
        Height of the merge that leads from this level to the next one (``n_atoms``
        to ``n_atoms - 1``); NaN for the one-atom level.
    gate : Gate
    """

    n_atoms: int
    params: MoEParams
    members: tuple
    loglik: float
    height: float
    gate: Gate = field(default_factory=SoftmaxGate, repr=False)

    @property
    def model(self) -> GaussianMoE:
        """The level as a :class:`~gmoe.GaussianMoE`."""
        return GaussianMoE(self.gate, self.params)


def default_omega(n: int) -> float:
    """The DSC's weight of the average log-likelihood: ``log n``."""
    return float(np.log(n))


@dataclass
class Dendrogram:
    """The merge path of a fitted mixing measure, with its selection criterion.

    Build with :func:`dendrogram`.

    Attributes
    ----------
    levels : list of DendrogramLevel
        ``levels[0]`` is the fit (k atoms), ``levels[-1]`` the single merged atom.
    merges : list of Merge
        The k - 1 merges, in order.
    n_samples : float
        The number of observations: the rows, or the sum of the sample weights.
    omega : float
        The weight ``omega_n`` of the average log-likelihood in the DSC.
    labels : list of str
        Names of the leaves (the fitted experts).
    standardized : bool
        Whether the atoms were compared in the data's standardised coordinates.
    """

    levels: list
    merges: list
    n_samples: float
    omega: float
    labels: list
    standardized: bool = True

    @property
    def k(self) -> int:
        """Number of atoms of the fit (leaves)."""
        return self.levels[0].n_atoms

    def level(self, n_atoms: int) -> DendrogramLevel:
        """The level with ``n_atoms`` atoms (1 to k)."""
        if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)) \
                or not 1 <= n_atoms <= self.k:
            raise ValueError(f"n_atoms must be an integer in [1, {self.k}], got {n_atoms!r}")
        return self.levels[self.k - int(n_atoms)]

    @property
    def heights(self) -> np.ndarray:
        """Merge heights in merge order (step 1 first), shape (k - 1,)."""
        return np.array([m.height for m in self.merges], dtype=float)

    def dsc(self) -> np.ndarray:
        """The dendrogram selection criterion per number of atoms (lower is better).

        ``DSC(kappa) = -(h(kappa) + omega_n * loglik(kappa) / n)`` for kappa = 2..k,
        with ``h(kappa)`` the height of the merge from kappa to kappa - 1 atoms
        (docs/theory.md, "Choosing the number of experts"). Entry ``kappa - 1`` of the
        returned array (shape (k,)) is ``DSC(kappa)``; ``DSC(1)`` is NaN: the one-atom
        level has no merge height, and the criterion does not choose it.
        """
        out = np.full(self.k, np.nan)
        for lev in self.levels[:-1]:
            out[lev.n_atoms - 1] = -(lev.height + self.omega * lev.loglik / self.n_samples)
        return out

    def select(self) -> int:
        """The number of atoms minimising the DSC (the fewest on a tie); 1 if k = 1."""
        if self.k == 1:
            return 1
        values = self.dsc()
        return int(np.nanargmin(values)) + 1

    def linkage(self) -> np.ndarray:
        """The merges as a scipy linkage matrix ``[left, right, height, n_leaves]``.

        Heights need not increase along the path (a merged atom can be closer to a
        third one than its parts were), so scipy's monotonicity checks may fail.
        """
        return np.array([[m.left, m.right, m.height, m.n_leaves] for m in self.merges],
                        dtype=float).reshape(-1, 4)

    def to_dict(self) -> dict:
        """JSON-safe summary: merges, and each level's parameters, members, log-likelihood,
        height and DSC."""
        dsc = self.dsc()
        return {"n_samples": int(self.n_samples), "omega": float(self.omega),
                "standardized": bool(self.standardized),
                "labels": list(self.labels),
                "merges": [{"step": m.step, "left": m.left, "right": m.right,
                            "height": float(m.height), "n_leaves": m.n_leaves}
                           for m in self.merges],
                "levels": [{"n_atoms": lev.n_atoms, "params": lev.params.to_dict(),
                            "members": [list(mm) for mm in lev.members],
                            "loglik": float(lev.loglik),
                            "height": None if np.isnan(lev.height) else float(lev.height),
                            "dsc": None if np.isnan(dsc[lev.n_atoms - 1])
                            else float(dsc[lev.n_atoms - 1])}
                           for lev in self.levels]}

    def plot(self, ax=None, chosen: int | None = None):
        """Draw the dendrogram: merge heights, leaves labelled by fitted expert.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        chosen : int, optional
            A number of atoms to mark with a cut line (default: :meth:`select`).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .plots import plot_dendrogram

        return plot_dendrogram(self, ax=ax, chosen=self.select() if chosen is None else chosen)


class Coordinates:
    """The coordinates the atoms are compared and merged in.

    With the data's means ``mx``, ``my`` and standard deviations ``sx`` (per column),
    ``sy``, the model in the centred and scaled variables ``x' = (x - mx) / sx``,
    ``y' = (y - my) / sy`` has the parameters

    ``beta0' = beta0 + beta1 . mx``, ``beta1' = beta1 * sx``, ``a' = a * sx / sy``,
    ``b' = (a . mx + b - my) / sy``, ``var' = var / sy**2``

    (the same model: only its parametrisation changes). The identity map leaves
    parameters as they are.

    Parameters
    ----------
    mx, sx : ndarray of shape (d,)
    my, sy : float
    """

    def __init__(self, mx, sx, my: float = 0.0, sy: float = 1.0):
        self.mx = np.asarray(mx, dtype=float)
        self.sx = np.asarray(sx, dtype=float)
        self.my, self.sy = float(my), float(sy)

    @classmethod
    def identity(cls, d: int) -> Coordinates:
        return cls(np.zeros(d), np.ones(d))

    @classmethod
    def standardized(cls, X: np.ndarray, y: np.ndarray,
                     weight: np.ndarray | None = None) -> Coordinates:
        """Centred and scaled by the data, weighted by ``weight`` if given (a constant
        column or response: scale 1)."""
        if weight is None:
            mx, sx, my, sy = X.mean(axis=0), X.std(axis=0), float(y.mean()), float(y.std())
        else:
            mx = np.average(X, axis=0, weights=weight)
            sx = np.sqrt(np.average((X - mx) ** 2, axis=0, weights=weight))
            my = float(np.average(y, weights=weight))
            sy = float(np.sqrt(np.average((y - my) ** 2, weights=weight)))
        return cls(mx, np.where(sx > 0, sx, 1.0), my, sy if sy > 0 else 1.0)

    def to_internal(self, p: MoEParams) -> MoEParams:
        return MoEParams(p.beta0 + p.beta1 @ self.mx, p.beta1 * self.sx,
                         p.a * self.sx / self.sy, (p.a @ self.mx + p.b - self.my) / self.sy,
                         p.var / self.sy**2)

    def to_user(self, p: MoEParams) -> MoEParams:
        beta1 = p.beta1 / self.sx
        a = p.a * self.sy / self.sx
        return MoEParams(p.beta0 - beta1 @ self.mx, beta1, a,
                         p.b * self.sy + self.my - a @ self.mx, p.var * self.sy**2)


def dendrogram(fit, X, y, *, gate: Gate | str | dict | None = None,
               omega: float | None = None, standardize: bool = True,
               sample_weight=None) -> Dendrogram:
    """The dendrogram of the mixing measure of a fitted softmax-gated model.

    At each step the two atoms with the smallest weighted distance
    (:func:`atom_distance`, the masses being the atoms' shares of the data,
    ``mean_n g_i(x_n)``) are merged (:func:`merge_atoms`), until one atom is left;
    each level is put in the gate's normal form and its log-likelihood computed on
    ``(X, y)``. See docs/theory.md, "Choosing the number of experts".

    Parameters
    ----------
    fit : FitResult, GaussianMoE or MoEParams
        The fitted model (usually over-specified). With plain MoEParams the gate is
        ``gate`` (default softmax).
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        The data the levels' log-likelihoods (and so the DSC) are computed on,
        normally the data of the fit.
    gate : Gate, str or dict, optional
        Only with plain MoEParams; must be a softmax gate.
    omega : float, optional
        The DSC's weight ``omega_n`` of the average log-likelihood; default ``log n``.
    standardize : bool, default=True
        Compare and merge the atoms in the centred and scaled coordinates of the data
        (:class:`Coordinates`), so that the tree, its heights and the DSC do not
        depend on the origin or the units of X and y (the merged variance is then
        that of the two Gaussians at the data's centre). ``False``: in the model's
        own parametrisation, as the published construction (at ``x = 0``). The levels
        are reported in the units of X and y either way.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights (those of a weighted fit): the masses are weighted shares,
        the standardisation is weighted, the levels' log-likelihoods are weighted
        sums and ``n`` in the DSC is the weights' sum, so an integer weight counts as
        a repeated row.

    Returns
    -------
    Dendrogram

    Raises
    ------
    ValueError
        If the gate is not a softmax gate, or on malformed data.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams, SoftmaxGate
    >>> from gmoe.selection import dendrogram
    >>> p = MoEParams([0.5, 0.0], [[2.0], [0.0]], [[1.0], [-1.0]], [0.0, 1.0], [0.2, 0.3])
    >>> X = np.linspace(0, 1, 50)[:, None]
    >>> y = np.linspace(-1, 1, 50)
    >>> tree = dendrogram(SoftmaxGate().split(p, 0), X, y)   # expert 0 in two halves
    >>> tree.merges[0].height, tree.level(2).params.allclose(p)
    (0.0, True)
    """
    X, y = check_X_y(X, y)
    weight = check_sample_weight(sample_weight, X.shape[0])
    params, fit_gate = _unpack_fit(fit, gate)
    if not isinstance(fit_gate, SoftmaxGate):
        raise ValueError("the dendrogram of mixing measures is defined for the softmax gate "
                         f"(docs/theory.md, 'Choosing the number of experts'), got "
                         f"{fit_gate!r}")
    fit_gate.check_params(params, d=X.shape[1])
    n = X.shape[0] if weight is None else float(weight.sum())
    omega = default_omega(n) if omega is None else check_positive_float(omega, "omega")
    coords = (Coordinates.standardized(X, y, weight) if standardize
              else Coordinates.identity(X.shape[1]))
    k = params.k
    Xs = (X - coords.mx) / coords.sx   # the covariates of the internal parametrisation
    current = coords.to_internal(params)
    members: list[tuple[int, ...]] = [(i,) for i in range(k)]
    nodes = list(range(k))
    raw_levels = []
    merges: list[Merge] = []
    for step in range(1, k):
        dist = _pairwise(current, _log_masses(current, Xs, weight))
        flat = int(np.argmin(dist))          # the first minimum: ties to the lower pair
        i, j = divmod(flat, dist.shape[1])
        i, j = min(i, j), max(i, j)
        height = float(dist[i, j])
        raw_levels.append((current, tuple(members), height))
        new_members = members[i] + members[j]
        merges.append(Merge(step, nodes[i], nodes[j], height, len(new_members)))
        current = merge_atoms(current, i, j)
        members = [tuple(sorted(new_members)) if m == i else members[m]
                   for m in range(len(members)) if m != j]
        nodes = [k - 1 + step if m == i else nodes[m] for m in range(len(nodes)) if m != j]
    raw_levels.append((current, tuple(members), math.nan))
    levels = []
    for internal, mem, h in raw_levels:
        p = fit_gate.normal_form(coords.to_user(internal))
        model = GaussianMoE(fit_gate, p)
        loglik = (model.log_likelihood(X, y) if weight is None
                  else float(model.score_samples(X, y) @ weight))
        levels.append(DendrogramLevel(p.k, p, mem, loglik, h, fit_gate))
    return Dendrogram(levels, merges, n, omega, [f"expert {i}" for i in range(k)],
                      bool(standardize))


def _unpack_fit(fit, gate) -> tuple[MoEParams, Gate]:
    """``(params, gate)`` of a FitResult, GaussianMoE or MoEParams."""
    if isinstance(fit, MoEParams):
        return fit, SoftmaxGate() if gate is None else make_gate(gate)
    if gate is not None:
        raise ValueError("give 'gate' only with plain MoEParams: a fit or a model has its own")
    params = getattr(fit, "params", None)
    fit_gate = getattr(fit, "gate", None)
    if not isinstance(params, MoEParams) or not isinstance(fit_gate, Gate):
        raise ValueError("fit must be a FitResult, a GaussianMoE or MoEParams, got "
                         f"{type(fit).__name__}")
    return params, fit_gate
