"""Internal units of a fit: each covariate and the response divided by its scale.

EM, its stopping tolerances and the polish's certificate are not invariant under a
change of units: with x in units of 1e6 the gate slopes are 1e6 times smaller, the
Newton steps and trust regions see other numbers, and the fit ends elsewhere. Fitting
in standardised units and mapping the parameters back makes the fit scale-free:
rescaling a covariate changes only its own slopes, rescaling the response its
coefficients and variances (and the log-likelihood by the log-Jacobian).

The covariates are divided by their scale, and centred for the gates that see x only
through the logits ``beta1_i^T x + beta0_i`` (``Gate.shifts_x``): with x far from 0 (a
year, a time stamp) the intercepts and slopes are nearly collinear and the polish
cannot certify the maximum it stands on. The top-K gate with slope ranking and the
activation gate see ``beta1_i^T x`` itself, where a shift of x would change the model,
and top-K maxima sit on selection boundaries that the rounding of the mapped-back
intercepts could cross: their covariates are not centred. The response is centred and
scaled (every expert has an intercept).
"""

from __future__ import annotations

import numpy as np

from .gates import Gate
from .params import MoEParams

__all__ = ["Scaling", "response_scale"]

#: The response counts as constant when its spread is below this share of its size
#: (12 significant digits: float64 holds about 16, so a spread of 1e-12 of the values'
#: size is still resolved to 4 digits, and y = 1e9 + noise of sd 1.5 is data).
CONSTANT_RESPONSE = 1e-12


def _weighted_mean(values: np.ndarray, weight: np.ndarray | None, axis=0):
    return np.average(values, axis=axis, weights=weight)


def response_scale(y: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, bool]:
    """``(s, constant)``: the scale of y and whether y is constant.

    ``s**2`` is the (weighted) variance of y, but at least ``(1e-12 max|y|)**2`` (values
    that agree to 12 significant digits are a constant, not data); ``s = 1`` when y is
    identically 0.
    """
    mean = _weighted_mean(y, weight)
    var = float(_weighted_mean((y - mean) ** 2, weight))
    resolution = (CONSTANT_RESPONSE * float(np.max(np.abs(y)))) ** 2
    constant = var <= resolution
    scale2 = max(var, resolution)
    return (float(np.sqrt(scale2)) if scale2 > 0 else 1.0), constant


class Scaling:
    """The map between the user's units and a fit's internal units.

    ``x' = (x - x_shift) / x_scale`` (each column), ``y' = (y - y_shift) / y_scale``.
    The identity (``x_scale = 1``, ``x_shift = 0``, ``y_shift = 0``, ``y_scale = 1``)
    leaves everything as it is, bit for bit.

    Parameters
    ----------
    x_scale : ndarray of shape (d,)
    y_shift, y_scale : float
    x_shift : ndarray of shape (d,), optional
        Default 0 (covariates not centred).
    """

    def __init__(self, x_scale: np.ndarray, y_shift: float = 0.0, y_scale: float = 1.0,
                 x_shift: np.ndarray | None = None):
        self.x_scale = np.asarray(x_scale, dtype=float)
        self.x_shift = (np.zeros_like(self.x_scale) if x_shift is None
                        else np.asarray(x_shift, dtype=float))
        self.y_shift, self.y_scale = float(y_shift), float(y_scale)
        self.shifted = bool(np.any(self.x_shift))
        self.identity = bool(np.all(self.x_scale == 1.0) and not self.shifted
                             and self.y_shift == 0.0 and self.y_scale == 1.0)

    @classmethod
    def none(cls, d: int) -> Scaling:
        """The identity map."""
        return cls(np.ones(d))

    @classmethod
    def standardize(cls, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None,
                    scale_x: bool = True, shift_x: bool = False) -> Scaling:
        """Each column of X divided by its (weighted) standard deviation (by its root
        mean square if it is constant, by 1 if it is 0) and, with ``shift_x``
        (``Gate.shifts_x``), centred at its (weighted) mean unless it is constant;
        y centred and divided by :func:`response_scale`. With ``scale_x=False``
        (gates whose weights are not invariant to rescaled covariates,
        ``Gate.rescales_x``) only y is standardised."""
        if not scale_x:
            return cls(np.ones(X.shape[1]), float(_weighted_mean(y, weight)),
                       response_scale(y, weight)[0])
        mean = _weighted_mean(X, weight)
        sd = np.sqrt(_weighted_mean((X - mean) ** 2, weight))
        rms = np.sqrt(_weighted_mean(X * X, weight))
        # constant to 12 digits, as for y (a time stamp in seconds that spans 40 s
        # around 1.7e9 varies by 7e-9 of its size, and is data)
        varies = sd > CONSTANT_RESPONSE * rms
        x_scale = np.where(varies, sd, np.where(rms > 0, rms, 1.0))
        # a constant column stays a constant (centred it would be 0: no column at all)
        x_shift = np.where(varies, mean, 0.0) if shift_x else None
        return cls(x_scale, float(_weighted_mean(y, weight)), response_scale(y, weight)[0],
                   x_shift)

    # ------------------------------------------------------------------ data
    def data(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(X', y')`` in internal units."""
        if self.identity:
            return X, y
        X = (X - self.x_shift) if self.shifted else X
        return X / self.x_scale, (y - self.y_shift) / self.y_scale

    def log_jacobian(self, total_weight: float) -> float:
        """Add to an internal log-likelihood to get the user's: ``-W log(y_scale)``."""
        return -total_weight * float(np.log(self.y_scale))

    # ------------------------------------------------------------ parameters
    def to_internal(self, params: MoEParams, gate: Gate) -> MoEParams:
        """Parameters in the user's units -> internal units."""
        if self.identity:
            return params
        b = params.b + params.a @ self.x_shift if self.shifted else params.b
        params = gate.rescale_x(gate.shift_x(params, self.x_shift), self.x_scale)
        return params.replace(a=params.a * self.x_scale / self.y_scale,
                              b=(b - self.y_shift) / self.y_scale,
                              var=params.var / self.y_scale**2)

    def to_original(self, params: MoEParams, gate: Gate) -> MoEParams:
        """Parameters in internal units -> the user's units."""
        if self.identity:
            return params
        params = gate.shift_x(gate.rescale_x(params, 1.0 / self.x_scale), -self.x_shift)
        a = params.a * self.y_scale / self.x_scale
        b = params.b * self.y_scale + self.y_shift
        return params.replace(a=a, b=b - a @ self.x_shift if self.shifted else b,
                              var=params.var * self.y_scale**2)

    def free_scales(self, layout: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
        """``D`` with ``theta_internal = D * theta_user + const`` in the free layout.

        Variances and tau are free on the log scale (a shift); gate slopes scale with
        their covariate (see :meth:`gmoe.gates.Gate.rescale_x`), expert slopes with
        their covariate over the response, intercepts with the response.
        """
        out = np.ones(len(layout))
        for row, (name, index) in enumerate(layout):
            if name == "beta1":
                out[row] = self.x_scale[index[1]]
            elif name == "a":
                out[row] = self.x_scale[index[1]] / self.y_scale
            elif name == "b":
                out[row] = 1.0 / self.y_scale
        return out

    def jacobian(self, layout: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
        """``J`` with ``theta_internal = J theta_user + const`` in the free layout.

        ``diag(free_scales)``, plus, when the covariates are centred, the intercepts'
        dependence on the slopes: ``beta0_i' = beta0_i + beta1_i^T x_shift`` and
        ``b_i' = (b_i + a_i^T x_shift - y_shift) / y_scale``.
        """
        J = np.diag(self.free_scales(layout))
        if not self.shifted:
            return J
        row_of = {entry: row for row, entry in enumerate(layout)}
        for col, (name, index) in enumerate(layout):
            if name not in ("beta1", "a"):
                continue
            i, j = index
            target = ("beta0", (i,)) if name == "beta1" else ("b", (i,))
            if target not in row_of:
                raise ValueError(f"free {name}[{i},{j}] without a free {target[0]}[{i}]: "
                                 "the covariates cannot be centred for this gate")
            J[row_of[target], col] = self.x_shift[j] * (1.0 if name == "beta1"
                                                        else 1.0 / self.y_scale)
        return J

    def information_to_original(self, information: np.ndarray | None,
                                layout) -> np.ndarray | None:
        """The observed information in the user's free coordinates: ``J^T I J``
        (``D I D`` when the covariates are not centred)."""
        if information is None or self.identity:
            return information
        if not self.shifted:
            D = self.free_scales(layout)
            return information * np.outer(D, D)
        J = self.jacobian(layout)
        return J.T @ information @ J
