"""Temperature (dense-to-sparse) gate: g_i(x) = softmax_i((beta1_i^T x + beta0_i) / tau)."""

from __future__ import annotations

import numpy as np

from .._design import Design
from .._validation import check_positive_float, check_positive_int
from ..params import MoEParams
from .smooth import TemperedGate

__all__ = ["TemperatureGate"]


def _check_learn_tau(value) -> bool:
    """Return ``value`` if it is a bool, else raise ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"learn_tau must be True or False, but got {value!r}")
    return bool(value)


class TemperatureGate(TemperedGate):
    """Temperature gating: ``g_i(x) = softmax_i((beta1_i^T x + beta0_i) / tau)``.

    One temperature ``tau > 0`` is shared by all experts. It is either held fixed at
    the constructor's value or learned by maximum likelihood on the log scale, starting
    from ``params.tau`` (or the constructor's value when the parameters have none).
    The fitted temperature is carried in :attr:`MoEParams.tau`.

    With a learned tau the gate is not identifiable: ``(beta0, beta1, tau)`` and
    ``(c beta0, c beta1, c tau)`` give the same weights for every ``c > 0``. The
    likelihood only sees ``beta / tau``; EM stops somewhere on that ridge (the
    gating M-step takes no step along it), which is the behaviour the simulations
    of this gate are meant to expose.

    The normal form fixes the last expert's ``(beta0, beta1)`` to 0, as for softmax.
    The gating M-step is Fisher scoring with step halving on the weighted objective
    (exactly Newton's method when tau is fixed); it never decreases the objective.

    Parameters
    ----------
    tau : float, default=1.0
        The temperature (> 0): the fixed value, or the starting value when learned.
    learn_tau : bool, default=True
        Learn tau by maximum likelihood (on the log scale) or keep it fixed.
    max_iter : int, default=20
        Largest number of scoring steps per M-step.
    tol : float, default=1e-10
        Stop when the predicted gain of the objective per sample is below it.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams
    >>> from gmoe.gates import TemperatureGate
    >>> p = MoEParams([0.0, 0.0], [[1.0], [0.0]], [[1.0], [-1.0]], [0.0, 0.0], [1.0, 1.0],
    ...               tau=0.5)
    >>> TemperatureGate().weights(np.array([[0.0], [1.0]]), p).round(4)
    array([[0.5   , 0.5   ],
           [0.8808, 0.1192]])
    """

    name = "temperature"
    symmetry = "intercept_slope"
    shifts_x = True

    def __init__(self, tau: float = 1.0, learn_tau: bool = True, max_iter: int = 20,
                 tol: float = 1e-10):
        self.tau = check_positive_float(tau, "tau")
        self.learn_tau = _check_learn_tau(learn_tau)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.tol = check_positive_float(tol, "tol")

    @property
    def linear_logits(self) -> bool:
        """Linear in the free vector unless log tau is part of it."""
        return not self.learn_tau

    def get_config(self) -> dict:
        return {"name": self.name, "tau": self.tau, "learn_tau": self.learn_tau,
                "max_iter": self.max_iter, "tol": self.tol}

    # ---------------------------------------------------------------- hooks
    def _theta(self, params: MoEParams) -> np.ndarray:
        free = np.column_stack([params.beta1[:-1], params.beta0[:-1]]).ravel()
        return np.concatenate([free, self._tau_theta(params)])

    def _arrays(self, theta, k, d):
        p = d + 1
        coef = np.zeros((k, p))
        coef[:-1] = theta[: (k - 1) * p].reshape(k - 1, p)
        return coef[:, -1], coef[:, :-1], self._tau_from(theta)

    def _eta(self, beta0, beta1, tau, design: Design):
        eta = beta1 @ design.XT
        eta += beta0[:, None]
        eta /= tau
        return eta, None

    def _jacobian(self, beta0, beta1, tau, design, eta, cache):
        k = eta.shape[0]
        Z = design.ZT / tau
        blocks = [Z] * (k - 1) + [None]
        t = -eta if self.learn_tau else None
        return blocks, t
