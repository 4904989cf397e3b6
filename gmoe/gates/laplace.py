"""Laplace gate: g_i(x) = softmax_i(beta0_i - ||x - beta1_i||) (Euclidean score)."""

from __future__ import annotations

import numpy as np

from .._design import Design
from .smooth import ScoringGate

__all__ = ["LaplaceGate"]


class LaplaceGate(ScoringGate):
    """Laplace gating: ``g_i(x) = softmax_i(beta0_i - ||x - beta1_i||)``.

    Each expert has a centre ``beta1_i`` in covariate space, and its logit falls
    off with the Euclidean distance from it (a Laplace kernel; "Euclidean score"
    routers). Only a common shift of the intercepts leaves the weights unchanged
    (``symmetry = "intercept"``): the normal form fixes the last ``beta0`` to 0 and
    every centre is free.

    The logit is not differentiable in ``beta1_i`` where ``x = beta1_i``; the
    derivative used there is 0 (a subgradient). With d = 1 the log-likelihood is
    piecewise smooth in the centres, with a kink at every data point, so a
    certified fit (zero score) may not exist; fits are then reported as not
    certified. Use d >= 2 for rate studies of the centres.

    Dividing a covariate by a scale changes the Euclidean distance, so the gate
    cannot be fitted in standardised covariates (``standardize=False``).

    Parameters
    ----------
    max_iter : int, default=20
        Largest number of scoring steps per gating M-step.
    tol : float, default=1e-10
        Stop when the predicted gain of the objective per sample is below it.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams
    >>> from gmoe.gates import LaplaceGate
    >>> p = MoEParams([0.0, 0.0], [[0.0], [1.0]], [[1.0], [-1.0]], [0.0, 0.0], [1.0, 1.0])
    >>> LaplaceGate().weights(np.array([[0.0], [0.5]]), p).round(4)
    array([[0.7311, 0.2689],
           [0.5   , 0.5   ]])
    """

    name = "laplace"
    rescales_x = False
    symmetry = "intercept"
    #: every step is capped: the objective is not concave in the centres
    max_step = 1.0

    def logits(self, beta0, beta1, tau, design: Design):
        diff = design.XT[None, :, :] - beta1[:, :, None]          # (k, d, n)
        dist = np.sqrt(np.einsum("kdn,kdn->kn", diff, diff))
        return beta0[:, None] - dist, (diff, dist)

    def logit_derivatives(self, beta0, beta1, tau, design: Design, eta, cache):
        diff, dist = cache
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where(dist[:, None, :] > 0, diff / dist[:, None, :], 0.0)
        return unit, np.ones_like(dist), None
