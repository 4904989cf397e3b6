"""The atoms of a mixing measure: their masses, the weighted distance between two
atoms and their merge (docs/theory.md, "Choosing the number of experts"); the
steps from which :func:`gmoe.selection.dendrogram` builds its tree."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logsumexp

from .._validation import check_X_y
from ..params import MoEParams

__all__ = ["atom_distance", "merge_atoms"]


def _log_masses(params: MoEParams, X: np.ndarray | None = None,
                weight: np.ndarray | None = None) -> np.ndarray:
    """Log atom masses, normalised to sum 1.

    With covariates ``X``: the atoms' shares of the data, ``log mean_n g_i(x_n)`` (the
    softmax gate's weights; with sample weights the weighted mean); without:
    ``beta0_i - logsumexp(beta0)``.
    """
    if X is None:
        return params.beta0 - logsumexp(params.beta0)
    eta = params.beta0[:, None] + params.beta1 @ X.T
    log_g = eta - logsumexp(eta, axis=0)
    if weight is None:
        return logsumexp(log_g, axis=1) - np.log(X.shape[0])
    return logsumexp(log_g, axis=1, b=weight) - np.log(weight.sum())


def atom_distance(params: MoEParams, i: int, j: int, X=None) -> float:
    """The weighted distance between atoms ``i`` and ``j`` of a mixing measure.

    ``d(i, j) = pi_i pi_j / (pi_i + pi_j) * (|db|^2 + |(da, dvar)|)``
    with ``pi`` the atom masses and Euclidean norms
    (docs/theory.md, "Choosing the number of experts"). The gate slopes ``beta1`` do
    not enter: between atoms with (nearly) equal experts the likelihood hardly
    depends on them.

    Parameters
    ----------
    params : MoEParams
        A softmax-gated model (any translation of its gating parameters: the
        distance does not depend on it).
    i, j : int
        Two distinct expert indices.
    X : array-like of shape (n_samples, n_features), optional
        With covariates, the masses are the atoms' shares of the data,
        ``pi_i = mean_n g_i(x_n)`` (what :func:`dendrogram` uses); without, the
        intercepts' ``exp(beta0_i)`` normalised to sum 1.

    Returns
    -------
    float
    """
    if i == j:
        raise ValueError(f"atom_distance needs two distinct atoms, got i = j = {i}")
    X = None if X is None else check_X_y(X)
    return float(_pairwise(params, _log_masses(params, X))[i, j])


def _pairwise(params: MoEParams, log_pi: np.ndarray) -> np.ndarray:
    """All pairwise distances of :func:`atom_distance` as a (k, k) array (inf on the
    diagonal)."""
    def diff2(v):
        v = v.reshape(v.shape[0], -1)
        return ((v[:, None, :] - v[None, :, :]) ** 2).sum(axis=-1)

    # b counts once, a and var twice (docs/theory.md, "Choosing the number of experts");
    # beta1 is left out: it is the flat direction between atoms of one true expert
    fast = diff2(params.b)
    slow = np.sqrt(diff2(params.a) + diff2(params.var))
    # pi_i pi_j / (pi_i + pi_j) on the log scale: masses of exp(-800) do not underflow
    # to 0 / 0
    li, lj = log_pi[:, None], log_pi[None, :]
    weight = np.exp(li + lj - np.logaddexp(li, lj))
    dist = weight * (fast + slow)
    np.fill_diagonal(dist, np.inf)
    return dist


def merge_atoms(params: MoEParams, i: int, j: int) -> MoEParams:
    """Merge atoms ``i`` and ``j`` of a mixing measure into one.

    The merged atom has gate weight ``exp(beta0_i) + exp(beta0_j)`` (so
    ``beta0 = logaddexp(beta0_i, beta0_j)``), and ``beta1``, ``a`` and ``b`` the
    averages of the two atoms' values with the weights ``w = exp(beta0) / (exp(beta0_i)
    + exp(beta0_j))``; its variance is that of the two Gaussians' mixture at ``x = 0``,
    ``w_i var_i + w_j var_j + w_i w_j (b_i - b_j)**2`` (equal atoms merge into
    themselves). It takes the place of the lower index; the other atom is removed. The
    result is not put in a normal form (the caller's gate does that).

    Parameters
    ----------
    params : MoEParams
        k >= 2 experts of a softmax-gated model (no temperature).
    i, j : int
        Two distinct expert indices.

    Returns
    -------
    MoEParams
        k - 1 experts.
    """
    k = params.k
    if params.tau is not None:
        raise ValueError("merge_atoms is defined for the softmax gate (no temperature)")
    for name, idx in (("i", i), ("j", j)):
        if not (isinstance(idx, (int, np.integer)) and 0 <= idx < k):
            raise ValueError(f"{name} must be an expert index in [0, {k}), got {idx!r}")
    if i == j:
        raise ValueError(f"merge_atoms needs two distinct atoms, got i = j = {i}")
    lo, hi = (int(i), int(j)) if i < j else (int(j), int(i))
    b0 = params.beta0
    total = float(np.logaddexp(b0[lo], b0[hi]))
    # shares of the merged mass from the difference of the log masses: no overflow for
    # large beta0, and exactly 1/2 each for equal masses (halves merge back exactly)
    w_lo, w_hi = float(expit(b0[lo] - b0[hi])), float(expit(b0[hi] - b0[lo]))
    keep = [m for m in range(k) if m != hi]

    def merged(field_values: np.ndarray) -> np.ndarray:
        out = np.array(field_values, dtype=float)
        out[lo] = w_lo * field_values[lo] + w_hi * field_values[hi]
        return out[keep]

    beta0 = np.array(b0, dtype=float)
    beta0[lo] = total
    var = merged(params.var)
    spread = w_lo * w_hi * (params.b[lo] - params.b[hi]) ** 2
    var[lo] = var[lo] + spread   # the merged atom sits at position lo of ``keep``
    return MoEParams(beta0[keep], merged(params.beta1), merged(params.a), merged(params.b),
                     var)
