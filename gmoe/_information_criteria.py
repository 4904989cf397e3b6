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


def bic(loglik: float, n_params: int, n_samples: float) -> float:
    """Schwarz's criterion ``-2 loglik + p log n`` (lower is better).

    ``n_samples`` is the number of observations: the rows, or the sum of frequency
    weights. A count not above ``n_params`` gives a warning (see
    :func:`warn_few_observations`).
    """
    warn_few_observations(n_samples, n_params, stacklevel=3)
    return bic_value(loglik, n_params, n_samples)


def bic_value(loglik: float, n_params: int, n_samples: float) -> float:
    """:func:`bic` without the check, for callers that made it once already."""
    return -2.0 * float(loglik) + n_params * float(np.log(n_samples))


def warn_few_observations(n_samples: float, n_params: int, stacklevel: int = 3) -> None:
    """Warn when BIC's ``n`` does not exceed the number of free parameters.

    BIC's penalty ``p log n`` is a large-sample approximation; with ``n <= p`` it says
    little, and with sample weights normalised to sum 1 (``log n = 0``) it vanishes.
    ``stacklevel`` is passed to :func:`warnings.warn`, counted from here: 2 names the
    function that called this one, 3 (the default of gmoe's callers) its caller.
    """
    if n_samples <= n_params:
        warnings.warn(f"BIC with n = {n_samples:.6g} observations for {n_params} free "
                      "parameters: its large-sample penalty p log n is not meaningful "
                      "here. With sample weights n is their sum (frequency weights); "
                      "weights normalised to sum 1 give log n = 0.", UserWarning,
                      stacklevel=stacklevel)
