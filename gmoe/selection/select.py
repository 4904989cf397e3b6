"""``select_experts``: choose the number of experts of a softmax-gated model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .._information_criteria import bic
from .._validation import check_choice, check_sample_weight, check_X_y
from ..exceptions import FitFailedError, SelectionWarning
from ..gates import SoftmaxGate, make_gate
from .criteria import CriteriaTable, aic, n_parameters, responsibility_entropy
from .dendrogram import Dendrogram, dendrogram

__all__ = ["METHODS", "SelectionResult", "select_experts"]

#: The selection methods of :func:`select_experts`.
METHODS = ("bic", "aic", "icl", "dendrogram")

#: Arguments of fit_em that select_experts sets itself.
_RESERVED = ("n_experts", "gate", "rng", "X", "y", "truth")


@dataclass
class SelectionResult:
    """What :func:`select_experts` chose and why.

    Attributes
    ----------
    k : int
        The chosen number of experts.
    method : str
    fit : FitResult or DendrogramLevel
        The chosen model: the FitResult of the k-expert fit for ``"aic"``, ``"bic"``
        and ``"icl"``; the dendrogram level with k atoms for ``"dendrogram"`` (a merged
        model, not a fit). Both have ``params``, ``loglik`` and ``model``.
    table : CriteriaTable
        Criteria per number of experts (lower is better), with ``summary()`` and
        ``to_dict()``.
    fits : dict of int to FitResult
        Every fit made: k = 1..k_max for the information criteria, k_max alone for
        the dendrogram.
    tree : Dendrogram or None
        The dendrogram of the k_max-expert fit (softmax gate only).
    """

    k: int
    method: str
    fit: object
    table: CriteriaTable
    fits: dict = field(default_factory=dict)
    tree: Dendrogram | None = None

    @property
    def params(self):
        """Parameters of the chosen model (MoEParams, normal form)."""
        return self.fit.params

    def summary(self) -> str:
        """The method, the table of criteria and the chosen k, as text."""
        k_max = max(self.fits) if self.fits else self.k
        head = (f"Choosing the number of experts: method = {self.method}, "
                f"k_max = {k_max}, n = {next(iter(self.fits.values()))._n_text()}"
                if self.fits else f"method = {self.method}")
        return head + "\n" + self.table.summary()

    def to_dict(self) -> dict:
        """JSON-safe: the method, the chosen k and its parameters, the table, the tree."""
        return {"method": self.method, "k": int(self.k), "params": self.params.to_dict(),
                "table": self.table.to_dict(),
                "tree": None if self.tree is None else self.tree.to_dict()}

    def plot(self, ax=None):
        """The dendrogram of the k_max-expert fit (merge heights, leaves labelled by
        expert), its chosen level marked; without a dendrogram (a gate other than
        softmax) the criterion against k.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .plots import plot_criteria, plot_dendrogram

        if self.tree is not None:
            chosen = self.k if self.method == "dendrogram" else None
            return plot_dendrogram(self.tree, ax=ax, chosen=chosen,
                                   title=f"dendrogram of the {self.tree.k}-expert fit; "
                                         f"{self.method} chooses k = {self.k}")
        return plot_criteria(self.table, ax=ax)

    def __repr__(self) -> str:
        return f"SelectionResult(method={self.method!r}, k={self.k})"


def select_experts(X, y, k_max: int, method: str = "bic", gate="softmax", rng=None,
                   *, omega: float | None = None, tree_standardize: bool = True,
                   sample_weight=None, **fit_kwargs) -> SelectionResult:
    """Choose the number of experts of a mixture of experts.

    ``"bic"`` (the default), ``"aic"`` and ``"icl"`` fit every k = 1..k_max and choose
    the minimum of the criterion. ``"dendrogram"`` fits k_max experts once and walks the
    merge path of its mixing measure, choosing the level that minimises the dendrogram
    selection criterion (DSC): one fit instead of k_max, but it needs the over-fitted
    experts to sit near the true ones (a near-truth start, or large n), and it often
    chooses k_max itself when they do not (then a :class:`~gmoe.SelectionWarning` says
    so). Every criterion is lower-is-better; the formulas and their sources are in
    docs/theory.md, "Choosing the number of experts".

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    k_max : int
        The largest number of experts considered (>= 1); the dendrogram's fit has
        k_max experts and should over-fit (k_max above the number you expect).
    method : {"bic", "aic", "icl", "dendrogram"}, default="bic"
    gate : Gate, str or dict, default="softmax"
        The fitted gate; ``"dendrogram"`` needs the softmax gate.
    rng : None, int or numpy.random.Generator
        Seeds the fits (each k gets a stream of its own).
    omega : float, optional
        The DSC's weight of the average log-likelihood (default ``log n``).
    tree_standardize : bool, default=True
        Build the dendrogram in the data's standardised coordinates (the
        ``standardize`` option of :func:`gmoe.selection.dendrogram`): the tree and the
        DSC then do not depend on the origin or units of X and y.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights, for every fit, the dendrogram (weighted masses and
        log-likelihoods), the entropy and the criteria, whose ``n`` is the weights'
        sum: an integer weight counts as a repeated row.
    **fit_kwargs
        Passed to :func:`gmoe.fit_em` for every fit (``init``, ``n_init``, ``tol``,
        ``accelerate``, ...). ``n_experts``, ``gate``, ``rng`` and ``truth`` are not
        accepted.

    Returns
    -------
    SelectionResult

    Raises
    ------
    ValueError
        k_max not an integer >= 1 or above the number of samples, an unknown method
        (the message lists the methods), a gate other than softmax with
        ``"dendrogram"``, a reserved fit argument, or malformed data.
    FitFailedError
        (a ValueError) With ``"aic"``, ``"bic"`` or ``"icl"``, when the fit of every k
        failed.

    Notes
    -----
    The DSC does not choose k = 1 (the one-atom level has no merge height); with
    ``k_max = 1`` every method returns 1.

    Examples
    --------
    >>> from gmoe import GaussianMoE, MoEParams, select_experts
    >>> truth = MoEParams([0.0, 0.0], [[4.0], [0.0]], [[3.0], [-3.0]], [-1.0, 1.0],
    ...                   [0.05, 0.05])
    >>> X, y = GaussianMoE("softmax", truth).sample(2000, rng=0)
    >>> res = select_experts(X, y, k_max=3, method="bic", rng=1, n_init=2)
    >>> res.k
    2
    """
    from ..em import fit_em

    X, y = check_X_y(X, y)
    if isinstance(k_max, bool) or not isinstance(k_max, (int, np.integer)) or k_max < 1:
        raise ValueError(f"k_max must be an integer >= 1, but got {k_max!r}")
    k_max = int(k_max)
    if k_max > X.shape[0]:
        raise ValueError(f"k_max = {k_max} is more than the {X.shape[0]} samples")
    check_choice(method, "method", METHODS)
    weight = check_sample_weight(sample_weight, X.shape[0])
    gate = make_gate(gate)
    reserved = sorted(set(fit_kwargs) & set(_RESERVED))
    if reserved:
        raise ValueError(f"select_experts sets {reserved[0]!r} itself; do not pass it "
                         "(fit arguments it takes: init, n_init, tol, max_iter, stop, "
                         "accelerate, polish, gtol, var_floor, standardize, ...)")
    softmax = isinstance(gate, SoftmaxGate)
    if method == "dendrogram" and not softmax:
        raise ValueError("method 'dendrogram' needs the softmax gate (the dendrogram of "
                         f"mixing measures is defined for it), got {gate!r}; use 'aic', "
                         "'bic' or 'icl'")
    streams = np.random.default_rng(rng).spawn(k_max)
    ks = [k_max] if method == "dendrogram" else list(range(1, k_max + 1))
    fits = {k: fit_em(X, y, k, gate=gate, rng=streams[k - 1], sample_weight=weight,
                      **fit_kwargs) for k in ks}
    top = fits[k_max]
    tree = (dendrogram(top, X, y, omega=omega, standardize=tree_standardize,
                       sample_weight=weight) if softmax else None)
    n = X.shape[0] if weight is None else float(weight.sum())
    if method == "dendrogram":
        k = tree.select()
        dsc = tree.dsc()
        if k == k_max > 2:
            warnings.warn(
                f"the dendrogram chose k = k_max = {k_max}, its largest level: every "
                f"merged level fits worse than the {k_max}-expert fit it starts from "
                "(its experts do not sit in clusters around fewer ones), so the DSC "
                "cannot tell whether fewer experts suffice; method='bic' fits every k",
                SelectionWarning, stacklevel=2)
        levels = [tree.level(kk) for kk in range(1, k_max + 1)]
        table = CriteriaTable(
            {"k": np.arange(1, k_max + 1),
             "loglik": np.array([lev.loglik for lev in levels]),
             "height": np.array([lev.height for lev in levels]),
             "dsc": dsc},
            criterion="dsc", chosen=k,
            note=(f"dsc = -(height + omega * loglik / n), omega = {tree.omega:.4g}; height: "
                  f"of the merge from k to k - 1 atoms of the {k_max}-expert fit "
                  f"(certified: {'yes' if top.certified else 'no'})"))
        return SelectionResult(k, method, tree.level(k), table, fits, tree)
    rows = {"k": np.array(ks), "loglik": [], "n_params": [], "entropy": [], "aic": [],
            "bic": [], "icl": [], "certified": [], "success": []}
    for kk in ks:
        f = fits[kk]
        p = n_parameters(f.params, f.gate)
        ent = responsibility_entropy(f.model, X, y, weight)
        rows["loglik"].append(f.loglik)
        rows["n_params"].append(p)
        rows["entropy"].append(ent)
        rows["aic"].append(aic(f.loglik, p))
        # ICL from this BIC: its few-observations warning once per k
        rows["bic"].append(bic(f.loglik, p, n, stacklevel=3))
        rows["icl"].append(rows["bic"][-1] + 2.0 * ent)
        rows["certified"].append(bool(f.certified))
        rows["success"].append(bool(f.success))
    columns = {name: np.asarray(v) for name, v in rows.items()}
    values = np.where(columns["success"], columns[method].astype(float), np.nan)
    if np.all(np.isnan(values)):
        raise FitFailedError("no fit succeeded: every k from 1 to k_max failed (see the fits' "
                         "'reason'); try other fit arguments")
    k = int(np.nanargmin(values)) + 1
    table = CriteriaTable(columns, criterion=method, chosen=k,
                          note="entropy: of the responsibilities; icl = bic + 2 entropy; "
                               "failed fits are not chosen")
    return SelectionResult(k, method, fits[k], table, fits, tree)
