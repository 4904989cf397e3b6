"""Wald inference from the observed information at a certified maximum.

The observed information (negative Hessian of the log-likelihood in the free
parametrisation, see :class:`gmoe.likelihood.FreeLikelihood`) is inverted for the
covariance of the estimates. Variances and a learned temperature are free on the log
scale: their standard errors follow by the delta method, their intervals are the
log-scale intervals mapped back (so they stay positive). A singular or
ill-conditioned information (over-specified fits, the temperature ridge) gives NaN
and an :class:`~gmoe.exceptions.InferenceWarning`, never numbers that look valid.
See docs/theory.md, "Certified fits and inference".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from .exceptions import InferenceWarning
from .params import MoEParams

__all__ = ["ParamArrays", "covariance", "standard_errors", "wald_intervals",
           "ILL_CONDITIONED"]

#: The information counts as ill-conditioned when, scaled to unit diagonal, its
#: smallest eigenvalue is below this share of its largest.
ILL_CONDITIONED = 1e-6

_FIELDS = ("beta0", "beta1", "a", "b", "var", "tau")


@dataclass(frozen=True, kw_only=True)
class ParamArrays:
    """One number per parameter, in the shapes of :class:`MoEParams`.

    NaN where the normal form fixes an entry (or where no value can be given);
    ``tau`` is None for gates without a temperature.
    """

    tau: float | None = None      # keyword-only fields: the temperature first
    beta0: np.ndarray
    beta1: np.ndarray
    a: np.ndarray
    b: np.ndarray
    var: np.ndarray

    def to_dict(self) -> dict:
        """JSON-safe dict of lists (NaN as None)."""
        def clean(x):
            arr = np.asarray(x, dtype=float)
            return np.where(np.isfinite(arr), arr, None).tolist()
        out = {f: clean(getattr(self, f)) for f in _FIELDS[:-1]}
        if self.tau is not None:
            out["tau"] = clean(self.tau)
        return out


def _empty(params: MoEParams) -> dict:
    k, d = params.k, params.d
    out = {"beta0": np.full(k, np.nan), "beta1": np.full((k, d), np.nan),
           "a": np.full((k, d), np.nan), "b": np.full(k, np.nan), "var": np.full(k, np.nan)}
    out["tau"] = None if params.tau is None else np.full((), np.nan)
    return out


def _finish(arrays: dict) -> ParamArrays:
    tau = arrays.pop("tau")
    return ParamArrays(**arrays, tau=None if tau is None else float(tau))


def covariance(information: np.ndarray | None, why_not: str | None = None,
               warn: bool = True, jacobian: np.ndarray | None = None) -> np.ndarray:
    """Inverse of the observed information, or NaN (with a warning) when it is not usable.

    Parameters
    ----------
    information : ndarray of shape (m, m) or None
        None when the fit is not certified (``why_not`` says why).
    why_not : str, optional
        The reason no information is available.
    warn : bool, default=True
    jacobian : ndarray of shape (m, m), optional
        ``J`` with ``theta_internal = J theta + const``: ``information`` is then the
        one of a fit's internal coordinates, where it is checked and inverted, and
        the covariance is mapped to the user's, ``J^-1 Sigma J^-T``. With a covariate
        far from 0 the user's intercepts and slopes are nearly collinear (a scaled
        condition number of 1e10 at x = 2000 + U[0, 10]) while the centred internal
        ones are not: the same covariance, without a verdict of ill-conditioning that
        only the origin of x causes.

    Returns
    -------
    ndarray of shape (m, m)
    """
    if information is None:
        if warn:
            warnings.warn(f"no standard errors: {why_not or 'no observed information'}",
                          InferenceWarning, stacklevel=3)
        return np.array([[np.nan]])
    info = 0.5 * (information + information.T)
    m = info.shape[0]
    nan = np.full((m, m), np.nan)
    diag = np.diag(info)
    reason = None
    if not np.all(np.isfinite(info)):
        reason = "the observed information is not finite"
    elif np.any(diag <= 0):
        reason = "the observed information is not positive definite"
    else:
        s = np.sqrt(diag)
        w = np.linalg.eigvalsh(info / np.outer(s, s))
        if w[0] <= ILL_CONDITIONED * w[-1]:
            reason = (f"the observed information is singular or ill-conditioned (smallest "
                      f"scaled eigenvalue {w[0]:.2g} of {w[-1]:.2g}): the parameters are not "
                      "locally identifiable (an over-specified fit, the temperature ridge, "
                      "a flat gate)")
    if reason is not None:
        if warn:
            warnings.warn(f"no standard errors: {reason}", InferenceWarning, stacklevel=3)
        return nan
    cov = np.linalg.inv(info)
    if jacobian is not None:
        back = np.linalg.inv(jacobian)
        cov = back @ cov @ back.T
    return 0.5 * (cov + cov.T)


def _free_errors(cov: np.ndarray, m: int) -> np.ndarray:
    """Standard errors of the free coordinates (NaN when ``cov`` is the NaN placeholder)."""
    return np.sqrt(np.diag(cov)) if cov.shape[0] == m else np.full(m, np.nan)


def standard_errors(params: MoEParams, layout, cov: np.ndarray) -> ParamArrays:
    """Standard errors in the parameters' shapes (delta method for var and tau)."""
    out = _empty(params)
    se = _free_errors(cov, len(layout))
    for value, (field, index) in zip(se, layout, strict=True):
        if field not in out:
            continue  # e.g. gate covariances: in cov_params(), not in these shapes
        if field == "var":
            value = value * params.var[index]
        elif field == "tau":
            out["tau"] = np.asarray(value * params.tau)
            continue
        out[field][index] = value
    return _finish(out)


def wald_intervals(params: MoEParams, layout, cov: np.ndarray,
                   alpha: float = 0.05) -> tuple[ParamArrays, ParamArrays]:
    """``(lower, upper)`` Wald intervals of level ``1 - alpha``.

    Variances and the temperature: the interval of the log, mapped back.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), but got {alpha}")
    z = float(ndtri(1 - alpha / 2))  # the normal quantile (scipy.stats costs 0.3 s to import)
    lower, upper = _empty(params), _empty(params)
    se = _free_errors(cov, len(layout))
    for value, (field, index) in zip(se, layout, strict=True):
        if field not in lower:
            continue  # e.g. gate covariances: in cov_params(), not in these shapes
        if field in ("var", "tau"):
            centre = np.log(params.tau if field == "tau" else params.var[index])
            lo, hi = np.exp(centre - z * value), np.exp(centre + z * value)
        else:
            centre = getattr(params, field)[index]
            lo, hi = centre - z * value, centre + z * value
        if field == "tau":
            lower["tau"], upper["tau"] = np.asarray(lo), np.asarray(hi)
        else:
            lower[field][index], upper[field][index] = lo, hi
    return _finish(lower), _finish(upper)
