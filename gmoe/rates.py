"""Empirical convergence rates: OLS of log(loss) on log(n) with a confidence interval."""

from __future__ import annotations

import numbers
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
        Sample sizes left out because their centre was not finite and positive
        (replicate points whose loss was not, with ``per_replicate=True``).
    center : str
        The centre regressed, ``"replicates"`` with ``per_replicate=True``.
    method : str
        ``"ols"`` or ``"ols-cluster"`` (replicate points; CRV3 error clustered by n,
        t critical values with G - 1 degrees of freedom, see :func:`fit_rate`).
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


def check_center(center) -> str:
    """``center`` if it is one of ``CENTERS``; a ValueError naming them otherwise."""
    if center not in CENTERS:
        raise ValueError(f"unknown center {center!r}; expected one of {CENTERS}")
    return center


def loss_center(values, center: str = "median") -> float:
    """Summary of the finite losses at one n: median, mean, 90% quantile ("q90"), or
    exp(mean of logs) ("mean_log", NaN if any loss is not positive). The value that
    :func:`fit_rate` regresses and plots show.

    Raises
    ------
    ValueError
        ``center`` is not one of ``CENTERS``.
    """
    check_center(center)
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
        Sample size of each observation (repeated over replications); finite and > 0.
    loss : array-like of shape (m,)
        Loss of each observation. Non-finite values (failed tasks) are ignored.
    center : {"median", "mean_log", "mean", "q90"}, default="median"
        How replications at one n are summarised before the regression. The median
        (or the mean of logs) is robust to the occasional failed fit whose loss is
        huge; the mean is not. The 90% quantile ("q90") follows the bad tail: it
        shows whether the worst fits converge too. Not used with ``per_replicate``
        (a centre other than the default is then a ValueError).
    per_replicate : bool, default=False
        Regress every replicate point's log-loss instead of the centres. The
        interval then rests on the G sample sizes, not on the points: its standard
        error is the leave-one-size-out jackknife (CRV3, clustered by n) and its
        critical value Student's t with G - 1 degrees of freedom. With 12 sizes x 20
        replications of lognormal noise it covers the true slope in about 95% of
        data sets (the usual cluster-robust error with normal critical values:
        about 88%); with few sizes, or noise that differs between sizes, it can
        still cover less than nominal. Points whose loss is not finite and positive
        are left out with a warning (``n_excluded`` counts points).
    alpha : float, default=0.05
        1 - confidence level, in (0, 1).

    Returns
    -------
    RateFit

    Raises
    ------
    ValueError
        Fewer than 3 usable sample sizes, mismatched lengths, a sample size that is
        not finite and positive, ``alpha`` outside (0, 1), an unknown centre, or a
        centre with ``per_replicate``.

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
    check_center(center)
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        bad = n[~(np.isfinite(n) & (n > 0))][0]
        raise ValueError(f"sample sizes must be finite and positive, got n = {bad:g}")
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1):
        raise ValueError(f"alpha must lie in (0, 1) (1 - confidence level), got {alpha!r}")
    sizes = np.unique(n)
    if per_replicate:
        if center != "median":
            raise ValueError(f"center={center!r} is not used with per_replicate=True (every "
                             "replicate point is regressed); leave center at its default")
        ok = np.isfinite(loss) & (loss > 0)
        excluded = int(np.sum(~ok))
        if excluded:
            warnings.warn(f"{excluded} replicate point(s) excluded from the rate fit: their "
                          "loss is not finite and positive", RuntimeWarning, stacklevel=2)
        x, yv, groups = np.log(n[ok]), np.log(loss[ok]), np.searchsorted(sizes, n[ok])
        if np.unique(groups).size < 3:
            raise ValueError("need at least 3 sample sizes with positive finite losses")
        res = sm.OLS(yv, sm.add_constant(x)).fit()
        slope = float(res.params[1])
        half = _cluster_t_halfwidth(x, yv, groups, slope, alpha)
        lo, hi = slope - half, slope + half
        center, method = "replicates", "ols-cluster"
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
        lo, hi = res.conf_int(alpha=alpha)[1]
        method = "ols"
    return RateFit(slope=float(res.params[1]), ci_low=float(lo), ci_high=float(hi),
                   constant=float(np.exp(res.params[0])), r2=float(res.rsquared),
                   n_points=int(len(yv)), n_excluded=excluded, center=center, method=method,
                   alpha=alpha)


def _cluster_t_halfwidth(x, y, groups, slope: float, alpha: float) -> float:
    """Half-width of the slope's interval from replicate points clustered by n: the
    CRV3 standard error (leave-one-cluster-out jackknife around the full estimate,
    times (G - 1) / G) with t(G - 1) critical values. The usual cluster-robust (CRV1)
    error with normal critical values covers far less than nominal with ~10 clusters."""
    from scipy import stats

    clusters = np.unique(groups)
    g = clusters.size
    slopes = np.empty(g)
    for i, c in enumerate(clusters):
        keep = groups != c
        slopes[i] = np.polyfit(x[keep], y[keep], 1)[0]
    se = float(np.sqrt((g - 1) / g * np.sum((slopes - slope) ** 2)))
    return float(stats.t.ppf(1 - alpha / 2, g - 1)) * se
