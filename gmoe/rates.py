"""Empirical convergence rates: OLS of log(loss) on log(n) with a confidence interval."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["RateFit", "fit_rate", "loss_center", "CENTERS"]

CENTERS = ("median", "mean_log", "mean", "q90")


@dataclass(frozen=True)
class RateFit:
    """An empirical rate ``loss ~ constant * n ** slope``.

    Attributes
    ----------
    slope : float
    ci_low, ci_high : float
        Confidence interval of the slope (level ``1 - alpha``).
    constant : float
        ``exp(intercept)``, the loss extrapolated to n = 1.
    r2 : float
    n_points : int
        Points in the regression (sample sizes, or replicate points with
        ``per_replicate=True``).
    n_excluded : int
        Sample sizes left out because their centre was not finite and positive.
    center : str
    method : str
        ``"ols"`` or ``"ols-cluster"`` (replicate points, errors clustered by n).
    alpha : float
    """

    slope: float
    ci_low: float
    ci_high: float
    constant: float
    r2: float
    n_points: int
    n_excluded: int
    center: str
    method: str
    alpha: float = 0.05

    def contains(self, value: float) -> bool:
        """True if ``value`` lies in the confidence interval."""
        return self.ci_low <= value <= self.ci_high

    def to_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        """``n^{-0.49 [-0.55, -0.43]}`` style text for legends."""
        return f"n^{{{self.slope:.2f}}} [{self.ci_low:.2f}, {self.ci_high:.2f}]"

    def summary(self) -> str:
        level = int(round(100 * (1 - self.alpha)))
        return (f"slope {self.slope:.4f}, {level}% CI [{self.ci_low:.4f}, {self.ci_high:.4f}], "
                f"constant {self.constant:.4g}, R^2 {self.r2:.3f}, {self.n_points} points "
                f"({self.center}, {self.method}"
                + (f", {self.n_excluded} excluded" if self.n_excluded else "") + ")")


def loss_center(values, center: str = "median") -> float:
    """Summary of the finite losses at one n: median, mean, 90% quantile ("q90"), or
    exp(mean of logs) ("mean_log", NaN if any loss is not positive). The value that
    :func:`fit_rate` regresses and plots show."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan
    if center == "median":
        return float(np.median(values))
    if center == "mean":
        return float(np.mean(values))
    if center == "q90":
        return float(np.quantile(values, 0.9))
    positive = values[values > 0]
    return float(np.exp(np.mean(np.log(positive)))) if positive.size == values.size else np.nan


def fit_rate(n, loss, center: str = "median", per_replicate: bool = False,
             alpha: float = 0.05) -> RateFit:
    """Fit ``log(loss) = intercept + slope * log(n)`` by OLS (statsmodels).

    Parameters
    ----------
    n : array-like of shape (m,)
        Sample size of each observation (repeated over replications).
    loss : array-like of shape (m,)
        Loss of each observation. Non-finite values (failed tasks) are ignored.
    center : {"median", "mean_log", "mean", "q90"}, default="median"
        How replications at one n are summarised before the regression. The median
        (or the mean of logs) is robust to the occasional failed fit whose loss is
        huge; the mean is not. The 90% quantile ("q90") follows the bad tail: it
        shows whether the worst fits converge too.
    per_replicate : bool, default=False
        Regress every replicate point's log-loss instead of the centres, with
        standard errors clustered by n.
    alpha : float, default=0.05
        1 - confidence level.

    Returns
    -------
    RateFit

    Raises
    ------
    ValueError
        Fewer than 3 usable sample sizes, mismatched lengths or an unknown centre.

    Examples
    --------
    >>> import numpy as np
    >>> n = np.repeat([100, 1000, 10000], 5)
    >>> loss = 2.0 * n ** -0.5
    >>> round(fit_rate(n, loss).slope, 6)
    -0.5
    """
    import statsmodels.api as sm  # deferred: keeps `import gmoe` fast

    n = np.asarray(n, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if n.shape != loss.shape or n.ndim != 1:
        raise ValueError(f"n and loss must be 1-d arrays of the same length, got {n.shape} "
                         f"and {loss.shape}")
    if center not in CENTERS:
        raise ValueError(f"unknown center {center!r}; expected one of {CENTERS}")
    sizes = np.unique(n)
    if per_replicate:
        ok = np.isfinite(loss) & (loss > 0)
        excluded = int(np.sum(~ok))
        x, yv, groups = np.log(n[ok]), np.log(loss[ok]), np.searchsorted(sizes, n[ok])
        if np.unique(groups).size < 3:
            raise ValueError("need at least 3 sample sizes with positive finite losses")
        model = sm.OLS(yv, sm.add_constant(x))
        res = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
        method = "ols-cluster"
    else:
        centers = np.array([loss_center(loss[n == s], center) for s in sizes])
        ok = np.isfinite(centers) & (centers > 0)
        excluded = int(np.sum(~ok))
        if excluded:
            warnings.warn(f"{excluded} sample size(s) excluded from the rate fit: their "
                          f"{center} loss is not finite and positive", RuntimeWarning,
                          stacklevel=2)
        if ok.sum() < 3:
            raise ValueError("need at least 3 sample sizes with positive finite losses")
        x, yv = np.log(sizes[ok]), np.log(centers[ok])
        res = sm.OLS(yv, sm.add_constant(x)).fit()
        method = "ols"
    lo, hi = res.conf_int(alpha=alpha)[1]
    return RateFit(slope=float(res.params[1]), ci_low=float(lo), ci_high=float(hi),
                   constant=float(np.exp(res.params[0])), r2=float(res.rsquared),
                   n_points=int(len(yv)), n_excluded=excluded, center=center, method=method,
                   alpha=alpha)
