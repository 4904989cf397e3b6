"""Activation gate: g_i(x) = softmax_i((sigma(beta1_i^T x) + beta0_i) / tau)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, ndtr

from .._design import Design
from .._validation import check_choice, check_positive_float, check_positive_int
from ..params import MoEParams
from .smooth import TemperedGate
from .temperature import _check_learn_tau

__all__ = ["ActivationGate", "ACTIVATIONS"]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _tanh(h):
    return np.tanh(h)


def _tanh_prime(h, s):
    return 1.0 - s * s


def _sigmoid(h):
    return expit(h)


def _sigmoid_prime(h, s):
    return s * (1.0 - s)


def _gelu(h):
    return h * ndtr(h)


def _gelu_prime(h, s):
    return ndtr(h) + h * _INV_SQRT_2PI * np.exp(-0.5 * h * h)


def _relu(h):
    return np.maximum(h, 0.0)


def _relu_prime(h, s):
    return (h > 0).astype(float)


def _identity(h):
    return h.copy()


def _identity_prime(h, s):
    return np.ones_like(h)


#: Activation name -> (sigma(h), sigma'(h, sigma(h))). gelu is the exact x * Phi(x).
_FUNCTIONS = {
    "tanh": (_tanh, _tanh_prime),
    "sigmoid": (_sigmoid, _sigmoid_prime),
    "gelu": (_gelu, _gelu_prime),
    "relu": (_relu, _relu_prime),
    "identity": (_identity, _identity_prime),
}

#: Names of the known activations.
ACTIVATIONS = tuple(_FUNCTIONS)


class ActivationGate(TemperedGate):
    """Activation gating: ``g_i(x) = softmax_i((sigma(beta1_i^T x) + beta0_i) / tau)``.

    ``sigma`` is applied to the slope term only, before the intercept and the shared
    temperature ``tau``. A bounded, non-linear ``sigma`` (tanh, sigmoid) breaks the
    ``(beta, tau)`` scaling symmetry of the plain temperature gate, so tau becomes
    identifiable; identity and relu do not break it.

    Because ``sigma`` is non-linear, adding a common vector to every ``beta1`` changes
    the gate: the normal form only fixes the last expert's ``beta0`` to 0 (all ``beta1``
    are free; its ``symmetry`` is ``"intercept"``).

    The gating M-step is Fisher scoring (Gauss-Newton on the multinomial) with step
    halving on the weighted objective, with tau on the log scale; it never decreases
    the objective.

    Notes
    -----
    With k = 2 and an odd-symmetric sigma (tanh, sigmoid, identity), the slopes
    ``(beta1_1, beta1_2)`` and ``(-beta1_2, -beta1_1)`` give the same gate for every
    x (the logit difference ``sigma(beta1_1^T x) - sigma(beta1_2^T x)`` is unchanged),
    so the slopes are identified only up to this swap; compare fits with both.
    With tanh and ``beta1_2 = 0`` a second exact copy exists,
    ``(beta1_1, -beta1_1, 2 beta0_1, 2 tau)``. Truths with slopes of order 1 are
    estimated with standard errors of about 0.1 at n = 20000.

    Parameters
    ----------
    activation : {"tanh", "sigmoid", "gelu", "relu", "identity"}, default="tanh"
        ``gelu`` is the exact ``x * Phi(x)``.
    tau : float, default=1.0
        The temperature (> 0): the fixed value, or the starting value when learned.
    learn_tau : bool, default=True
        Learn tau by maximum likelihood (on the log scale) or keep it fixed.
    max_iter : int, default=5
        Largest number of scoring steps per M-step. Each step changes no parameter
        by more than 1 (a trust region): the objective is not concave and a long
        step can land where sigma saturates and the gradient vanishes.
    tol : float, default=1e-10
        Stop when the predicted gain of the objective per sample is below it.

    Raises
    ------
    ValueError
        For an unknown activation (the message lists the known ones) or tau <= 0.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams
    >>> from gmoe.gates import ActivationGate
    >>> p = MoEParams([0.0, 0.0], [[2.0], [0.0]], [[1.0], [-1.0]], [0.0, 0.0], [1.0, 1.0])
    >>> gate = ActivationGate("tanh", tau=0.5)
    >>> gate.weights(np.array([[0.0], [10.0]]), gate.prepare(p)).round(4)
    array([[0.5   , 0.5   ],
           [0.8808, 0.1192]])
    """

    name = "activation"
    symmetry = "intercept"
    max_step = 1.0

    def __init__(self, activation: str = "tanh", tau: float = 1.0, learn_tau: bool = True,
                 max_iter: int = 5, tol: float = 1e-10):
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        self.tau = check_positive_float(tau, "tau")
        self.learn_tau = _check_learn_tau(learn_tau)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.tol = check_positive_float(tol, "tol")
        self._sigma, self._sigma_prime = _FUNCTIONS[activation]

    def get_config(self) -> dict:
        return {"name": self.name, "activation": self.activation, "tau": self.tau,
                "learn_tau": self.learn_tau, "max_iter": self.max_iter, "tol": self.tol}

    # ---------------------------------------------------------------- hooks
    def _theta(self, params: MoEParams) -> np.ndarray:
        free = np.column_stack([params.beta1[:-1], params.beta0[:-1]]).ravel()
        return np.concatenate([free, params.beta1[-1], self._tau_theta(params)])

    def _arrays(self, theta, k, d):
        p = d + 1
        coef = theta[: (k - 1) * p].reshape(k - 1, p)
        beta1 = np.vstack([coef[:, :-1], theta[(k - 1) * p: (k - 1) * p + d][None, :]])
        beta0 = np.append(coef[:, -1], 0.0)
        return beta0, beta1, self._tau_from(theta)

    def _eta(self, beta0, beta1, tau, design: Design):
        h = beta1 @ design.XT
        s = self._sigma(h)
        eta = s + beta0[:, None]
        eta /= tau
        return eta, (h, s)

    def _jacobian(self, beta0, beta1, tau, design, eta, cache):
        h, s = cache
        k = eta.shape[0]
        slope = self._sigma_prime(h, s) / tau           # d eta_i / d (beta1_i^T x)
        blocks = []
        for i in range(k):
            rows = design.XT * slope[i]
            if i < k - 1:
                rows = np.vstack([rows, np.full((1, design.n), 1.0 / tau)])
            blocks.append(rows)
        t = -eta if self.learn_tau else None
        return blocks, t
