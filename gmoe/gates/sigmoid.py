"""Normalised sigmoid gate: g_i(x) = s_i(x) / sum_j s_j(x), s_i = sigmoid(beta1_i^T x + beta0_i)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit

from .._design import Design
from .smooth import ScoringGate

__all__ = ["SigmoidGate"]


class SigmoidGate(ScoringGate):
    """Normalised sigmoid gating: ``g_i(x) = s_i(x) / sum_j s_j(x)``.

    ``s_i(x) = sigmoid(beta1_i^T x + beta0_i)``: each expert's score is a sigmoid,
    and the scores are normalised to sum to 1 (the sigmoid-gating line of work). The
    weights are a softmax of the logits ``log sigmoid(beta1_i^T x + beta0_i)``, which
    are computed as ``log_expit`` (no overflow for large scores).

    No translation leaves the weights unchanged (``symmetry = "none"``): adding a
    common ``t0`` to every intercept changes every ``s_i`` by a different factor.
    With k >= 2 every gating parameter is free, and the losses never shift the
    fitted measure, whatever their ``translation`` option (docs/theory.md,
    "Translation conventions"). With one expert the gate is constant and its
    parameters are set to 0.

    Splitting an expert in two cannot keep the density exactly: no two sigmoids
    sum to a third for every x. :meth:`split` lowers both copies' intercepts by
    ``log 2``, which is exact where the sigmoid is far from saturation (its left
    tail) and within a factor 2 of the expert's weight elsewhere
    (``exact_split = False``; ``init="auto"`` then loses its guarantee of never
    ending below the fit with one expert fewer).

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
    >>> from gmoe.gates import SigmoidGate
    >>> p = MoEParams([0.0, 0.0], [[2.0], [0.0]], [[1.0], [-1.0]], [0.0, 0.0], [1.0, 1.0])
    >>> SigmoidGate().weights(np.array([[0.0], [10.0]]), p).round(4)
    array([[0.5   , 0.5   ],
           [0.6667, 0.3333]])
    """

    name = "sigmoid"
    symmetry = "none"
    shifts_x = True
    exact_split = False

    def logits(self, beta0, beta1, tau, design: Design):
        h = beta1 @ design.XT
        h += beta0[:, None]
        return log_expit(h), h

    def logit_derivatives(self, beta0, beta1, tau, design: Design, eta, cache):
        slope = expit(-cache)                     # d log sigmoid(h) / dh
        return slope[:, None, :] * design.XT[None, :, :], slope, None

    def saturation(self, state, design: Design) -> np.ndarray:
        """As :meth:`gmoe.gates.Gate.saturation`, with the intercept derivative
        ``1 - s_i(x)`` of the logit ``log s_i``: a score saturated at 1 everywhere
        leaves the weights in (0, 1) but its parameters free to run off."""
        w = np.exp(state.log_w)
        return np.einsum("kn,kn->k", w * (1.0 - w), expit(-state.cache) ** 2)
