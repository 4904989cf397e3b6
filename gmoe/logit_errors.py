"""Errors of the gate's logit differences: what the likelihood identifies of a gate.

A softmax-type gate only sees differences of logits. For the temperature gate
``softmax((beta1_i^T x + beta0_i) / tau)`` with a learned tau, ``(beta, tau)`` and
``(c beta, c tau)`` give the same gate, so beta and tau are not identifiable on their
own, while the ratios of logit-coefficient differences, ``(beta_i - beta_j) / tau``,
are (docs/theory.md, "Rates"). This module measures both, after matching the fitted
experts to the true ones by their expert parameters ``(a, b, var)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from .params import MoEParams

__all__ = ["LogitErrors", "logit_errors"]


@dataclass(frozen=True)
class LogitErrors:
    """Largest errors of the logit-coefficient differences over pairs of experts.

    Attributes
    ----------
    ratio : float
        ``max_{i<j} |(beta_i - beta_j) / tau - (beta*_i - beta*_j) / tau*|`` with
        ``beta_i = (beta1_i, beta0_i)`` (Euclidean norm); identified.
    raw : float
        The same without the temperatures: ``max_{i<j} |(beta_i - beta_j) -
        (beta*_i - beta*_j)|``; not identified when tau is learned.
    tau : float or None
        ``|tau - tau*|`` when both carry a temperature.
    order : tuple of int
        ``order[j]`` is the fitted expert matched to true expert j.
    """

    ratio: float
    raw: float
    tau: float | None
    order: tuple


def _params(model) -> MoEParams:
    return model.params if hasattr(model, "params") else model


def logit_errors(fitted, truth) -> LogitErrors:
    """Errors of the logit differences of an exact-specified fit (k = k*).

    Parameters
    ----------
    fitted, truth : MoEParams or GaussianMoE
        Same k (at most 8: experts are matched by trying every permutation) and d.

    Returns
    -------
    LogitErrors

    Raises
    ------
    ValueError
        If the numbers of experts or features differ, or k > 8.

    Examples
    --------
    >>> from gmoe import MoEParams
    >>> t = MoEParams([0.5, 0.0], [[2.0], [0.0]], [[1.0], [-1.0]], [2.0, -2.0],
    ...               [0.09, 0.09], tau=1.0)
    >>> scaled = t.replace(beta0=[1.0, 0.0], beta1=[[4.0], [0.0]], tau=2.0)
    >>> e = logit_errors(scaled, t)
    >>> round(e.ratio, 12), round(e.raw, 3), e.tau
    (0.0, 2.062, 1.0)
    """
    pf, pt = _params(fitted), _params(truth)
    if (pf.k, pf.d) != (pt.k, pt.d):
        raise ValueError(f"fitted (k = {pf.k}, d = {pf.d}) and true (k = {pt.k}, "
                         f"d = {pt.d}) parameters must have the same k and d")
    if pf.k > 8:
        raise ValueError(f"logit_errors matches experts by permutations: k = {pf.k} > 8")

    def expert(p):
        return np.column_stack([p.a, p.b, p.var])

    ef, et = expert(pf), expert(pt)
    order = min(permutations(range(pf.k)),
                key=lambda o: float(np.sum((ef[list(o)] - et) ** 2)))
    order = tuple(int(i) for i in order)

    def coefficients(p, idx, tau):
        return np.column_stack([p.beta1[idx], p.beta0[idx]]) / tau

    tau_f = 1.0 if pf.tau is None else pf.tau
    tau_t = 1.0 if pt.tau is None else pt.tau
    idx = list(order)
    ratio, raw = 0.0, 0.0
    cf, ct = coefficients(pf, idx, tau_f), coefficients(pt, range(pt.k), tau_t)
    rf, rt = coefficients(pf, idx, 1.0), coefficients(pt, range(pt.k), 1.0)
    for i in range(pf.k):
        for j in range(i + 1, pf.k):
            ratio = max(ratio, float(np.linalg.norm((cf[i] - cf[j]) - (ct[i] - ct[j]))))
            raw = max(raw, float(np.linalg.norm((rf[i] - rf[j]) - (rt[i] - rt[j]))))
    tau = abs(pf.tau - pt.tau) if pf.tau is not None and pt.tau is not None else None
    return LogitErrors(ratio=ratio, raw=raw, tau=tau, order=order)
