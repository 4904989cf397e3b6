"""AIC and BIC from a log-likelihood: the formulas, below every module that reports them.

:mod:`gmoe.fit_result`, :mod:`gmoe.estimator` and :mod:`gmoe.selection.criteria` (which
re-exports :func:`aic` and :func:`bic`) all compute them here. Lower is better; see
docs/theory.md, "Choosing the number of experts".
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["aic", "bic"]


def aic(loglik: float, n_params: int) -> float:
    """Akaike's criterion ``-2 loglik + 2 p`` (lower is better)."""
    return -2.0 * float(loglik) + 2.0 * n_params


def bic(loglik: float, n_params: int, n_samples: float, *, stacklevel: int = 2) -> float:
    """Schwarz's criterion ``-2 loglik + p log n`` (lower is better).

    ``n_samples`` is the number of observations: the rows, or the sum of frequency
    weights. A count not above ``n_params`` gives a warning: BIC's penalty is a
    large-sample approximation that says little there, and vanishes for sample
    weights normalised to sum 1 (``log n = 0``). ``stacklevel`` is that of
    :func:`warnings.warn` counted from here: 2 names the caller of this function, 3
    its caller (what gmoe's own methods pass, so the warning names the user's line).
    """
    if n_samples <= n_params:
        warnings.warn(f"BIC with n = {n_samples:.6g} observations for {n_params} free "
                      "parameters: its large-sample penalty p log n is not meaningful "
                      "here. With sample weights n is their sum (frequency weights); "
                      "weights normalised to sum 1 give log n = 0.", UserWarning,
                      stacklevel=stacklevel)
    return -2.0 * float(loglik) + n_params * float(np.log(n_samples))
