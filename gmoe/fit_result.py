"""The outcome of :func:`gmoe.fit_em`: estimates, certification and inference."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._information_criteria import aic, bic
from .exceptions import InferenceWarning
from .gates import Gate
from .inference import ParamArrays, covariance, standard_errors, wald_intervals
from .likelihood import free_layout
from .model import GaussianMoE
from .params import MoEParams

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """Outcome of :func:`fit_em` (the best of its restarts).

    Attributes
    ----------
    params : MoEParams
        Fitted parameters in the gate's normal form (the last finite iterate when a
        fit failed).
    gate : Gate
    loglik : float
        Total log-likelihood at ``params``.
    n_iter : int
        Number of EM iterations (M-steps).
    converged : bool
        Whether the stopping rule was met before ``max_iter``.
    loglik_trace : ndarray
        Log-likelihood before each M-step and at the end.
    reason : str or None
        Why the fit failed (non-finite likelihood, degenerate variance), None if it
        did not.
    stopped_by : str
        ``"relative"``, ``"per_sample"``, ``"max_iter"`` or ``"failure"``.
    n_samples : int
        Rows the fit used (rows of weight 0 are dropped).
    nobs : float or None
        Number of observations the information criteria count: the sum of the
        sample weights (frequency weights, as statsmodels' ``freq_weights``), or
        None for an unweighted fit, where it is ``n_samples``.
    restart_logliks : list of float
        Final log-likelihood of each restart.
    best_restart : int
    floor_hits : int
        Number of M-steps in which the variance floor bound.
    seconds : float
        Wall time of all restarts.
    em_loglik : float
        Log-likelihood where EM stopped (before the polish).
    polished : bool
        Whether the Newton polish ran (``fit_em(polish=True)``).
    grad_norm : float
        Largest component of the score per sample at ``params`` (free coordinates
        not held at the variance floor); NaN without the polish.
    newton_step : float
        Largest component of the Newton step at ``params``, in the fit's internal
        free coordinates (standardised with ``standardize``; variances on the log
        scale): how far the quadratic model puts the maximum. At most 1e-4 at a
        certified fit unless the step is worthless (a flat ridge); long at a fit
        that climbs towards the edge of the gate family. NaN where the score was not
        small enough to test it.
    polish_gain : float
        Log-likelihood the polish added to EM's.
    polish_iter : int
        Newton steps of the polish.
    certified : bool
        The polish reached a zero score (``grad_norm <= gtol``) and a Newton step
        of at most 1e-4 (``newton_step``, or one worth at most ``gtol * 1e-4`` nats
        per sample: a flat ridge), at no saddle, with every variance above the floor
        and no separating gate: ``params`` is a local maximum of the likelihood.
    degenerate : bool
        Some variance sits at the floor (a component collapsed onto a few points),
        an expert holds fewer effective rows than its regression coefficients plus
        two (the data do not determine it), or the response is constant; ``reason``
        says which.
    separated : bool
        A separating gate: the likelihood rises as some gate parameters run off to
        infinity (no finite maximum; warned with a SeparationWarning).
    polish_message : str
        How the polish ended.
    var_floor : float
        The variance lower bound used.
    information : ndarray of shape (m, m) or None
        Observed information at a certified maximum (free parametrisation, see
        ``param_names``).
    param_names : list of str
        Names of the free coordinates (variances and tau on the log scale).
    standardized : bool
        The fit ran in standardised units (``fit_em(standardize=True)``); every
        number here is in the units of X and y, except ``grad_norm`` and
        ``newton_step``, which are in the standardised ones.
    information_internal, information_jacobian : ndarray of shape (m, m) or None
        When the fit centred X: the observed information in its internal
        (standardised, centred) free coordinates and ``J`` with ``theta_internal = J
        theta + const`` (``information = J^T information_internal J``).
        :meth:`cov_params` inverts in the internal coordinates, where a covariate
        far from 0 does not make intercepts and slopes collinear, and maps back.
    """

    params: MoEParams
    gate: Gate
    loglik: float
    n_iter: int
    converged: bool
    loglik_trace: np.ndarray
    reason: str | None = None
    stopped_by: str = "relative"
    n_samples: int = 0
    nobs: float | None = None
    restart_logliks: list = field(default_factory=list)
    best_restart: int = 0
    floor_hits: int = 0
    seconds: float = 0.0
    em_loglik: float = np.nan
    polished: bool = False
    grad_norm: float = np.nan
    newton_step: float = np.nan
    polish_gain: float = 0.0
    polish_iter: int = 0
    certified: bool = False
    degenerate: bool = False
    separated: bool = False
    polish_message: str = ""
    var_floor: float = np.nan
    information: np.ndarray | None = field(default=None, repr=False)
    param_names: list = field(default_factory=list)
    standardized: bool = False
    information_internal: np.ndarray | None = field(default=None, repr=False)
    information_jacobian: np.ndarray | None = field(default=None, repr=False)

    # -------------------------------------------------------------- inference
    def _layout(self):
        return free_layout(self.gate, self.params.k, self.params.d)

    def _why_no_information(self) -> str | None:
        if self.information is not None:
            if self.gate.is_sparse(self.params.k):
                return ("the top-K selection makes the likelihood non-differentiable in "
                        "the gate parameters; Wald intervals do not apply")
            return None
        if not self.polished:
            return "the fit was not polished (fit_em(polish=False)); no certified maximum"
        if self.degenerate:
            return f"degenerate fit ({self.reason or 'a variance at the floor'})"
        return f"the fit is not certified ({self.polish_message})"

    def cov_params(self, warn: bool = True) -> np.ndarray:
        """Covariance of the estimates in the free parametrisation (inverse observed
        information), array of shape (m, m) in the order of ``param_names``.

        NaN, with an :class:`~gmoe.exceptions.InferenceWarning`, when the fit is not
        certified or the information is singular or ill-conditioned.
        """
        why = self._why_no_information()
        m = len(self._layout())
        if why is not None:
            if warn:
                warnings.warn(f"no standard errors: {why}", InferenceWarning, stacklevel=2)
            return np.full((m, m), np.nan)
        if self.information_internal is not None and self.information_jacobian is not None:
            return covariance(self.information_internal, warn=warn,
                              jacobian=self.information_jacobian)
        return covariance(self.information, warn=warn)

    @property
    def bse(self) -> ParamArrays:
        """Standard errors in the parameters' shapes (NaN where the normal form fixes
        an entry, or when :meth:`cov_params` is NaN)."""
        return standard_errors(self.params, self._layout(), self.cov_params())

    def conf_int(self, alpha: float = 0.05) -> tuple[ParamArrays, ParamArrays]:
        """Wald intervals ``(lower, upper)`` of level ``1 - alpha`` in the parameters'
        shapes; variances and tau get the interval of their log, mapped back."""
        return wald_intervals(self.params, self._layout(), self.cov_params(), alpha)

    @property
    def success(self) -> bool:
        """True unless the fit failed (see ``reason``)."""
        return self.reason is None

    @property
    def model(self) -> GaussianMoE:
        """The fitted :class:`GaussianMoE`."""
        return GaussianMoE(self.gate, self.params)

    def n_parameters(self) -> int:
        """Free parameters: k (d + 2) expert parameters plus the gate's."""
        k, d = self.params.k, self.params.d
        return k * (d + 2) + self.gate.n_params(k, d)

    def _nobs(self) -> float:
        return self.n_samples if self.nobs is None else self.nobs

    def _n_text(self) -> str:
        if self.nobs is None:
            return str(self.n_samples)
        return f"{self.nobs:.6g} (sum of the weights of {self.n_samples} rows)"

    def bic(self) -> float:
        """Bayesian information criterion ``-2 loglik + p log n`` (lower is better);
        ``n`` is the sum of the sample weights in a weighted fit (``nobs``: frequency
        weights; weights normalised to sum 1 would make the penalty vanish, and warn)."""
        return bic(self.loglik, self.n_parameters(), self._nobs(), stacklevel=3)

    def aic(self) -> float:
        """Akaike information criterion ``-2 loglik + 2 p``."""
        return aic(self.loglik, self.n_parameters())

    def to_dict(self) -> dict:
        """JSON-safe summary (no trace)."""
        return {"params": self.params.to_dict(), "gate": self.gate.get_config(),
                "loglik": float(self.loglik), "n_iter": int(self.n_iter),
                "converged": bool(self.converged), "reason": self.reason,
                "stopped_by": self.stopped_by, "n_samples": int(self.n_samples),
                "nobs": None if self.nobs is None else float(self.nobs),
                "restart_logliks": [float(v) for v in self.restart_logliks],
                "best_restart": int(self.best_restart), "floor_hits": int(self.floor_hits),
                "seconds": float(self.seconds), "em_loglik": float(self.em_loglik),
                "polished": bool(self.polished), "grad_norm": float(self.grad_norm),
                "newton_step": float(self.newton_step),
                "polish_gain": float(self.polish_gain), "polish_iter": int(self.polish_iter),
                "certified": bool(self.certified), "degenerate": bool(self.degenerate),
                "separated": bool(self.separated),
                "polish_message": self.polish_message, "var_floor": float(self.var_floor),
                "standardized": bool(self.standardized)}

    def summary(self, alpha: float = 0.05) -> str:
        """A statsmodels-style report: fit, certification and a parameter table with
        standard errors and ``1 - alpha`` Wald intervals (where they exist)."""
        p = self.params
        status = "converged" if self.converged else "NOT converged"
        lines = [f"Gaussian MoE fit: {p.k} experts, d = {p.d}, gate = {self.gate!r}",
                 f"  n = {self._n_text()}, log-likelihood = {self.loglik:.6g} "
                 f"({self.loglik / max(self._nobs(), 1e-300):.6g} per sample)",
                 f"  EM {status} after {self.n_iter} iterations (stopped by {self.stopped_by}); "
                 f"{len(self.restart_logliks)} restart(s), best #{self.best_restart}; "
                 f"{self.seconds:.3g} s",
                 f"  BIC = {self.bic():.6g}, AIC = {self.aic():.6g}"]
        if self.polished:
            state = ("CERTIFIED maximum" if self.certified
                     else "DEGENERATE" if self.degenerate else "NOT certified")
            lines.append(f"  {state}: score max-norm per sample {self.grad_norm:.2g}, Newton "
                         f"step {self.newton_step:.2g}; polish gained {self.polish_gain:.3g} "
                         f"nats in {self.polish_iter} Newton steps ({self.polish_message})")
        if self.reason:
            lines.append(f"  FAILED: {self.reason}")
        why = self._why_no_information()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InferenceWarning)
            cov = self.cov_params(warn=False)
            if why is None and not np.isfinite(cov).all():
                why = "singular or ill-conditioned observed information"
            se = standard_errors(p, self._layout(), cov)
            low, high = wald_intervals(p, self._layout(), cov, alpha)
        level = f"{100 * (1 - alpha):g}%"
        lines.append(f"  {'parameter':<14}{'estimate':>11}{'std err':>11}"
                     f"{'[' + level:>12}{'interval]':>11}")

        def row(name, value, s, lo, hi):
            if not np.isfinite(s):
                fixed = name.startswith("beta") and self._is_fixed(name)
                tail = f"{'(fixed)' if fixed else '':>11}"
                return f"  {name:<14}{value:>11.5g}{tail}"
            return f"  {name:<14}{value:>11.5g}{s:>11.3g}{lo:>12.5g}{hi:>11.5g}"

        for field_name in ("beta0", "beta1", "a", "b", "var"):
            values = getattr(p, field_name)
            for index in np.ndindex(values.shape):
                name = f"{field_name}[{','.join(str(i) for i in index)}]"
                lines.append(row(name, values[index], getattr(se, field_name)[index],
                                 getattr(low, field_name)[index],
                                 getattr(high, field_name)[index]))
        if p.tau is not None:
            tau_se = np.nan if se.tau is None else se.tau
            lines.append(row("tau", p.tau, tau_se, low.tau or np.nan, high.tau or np.nan))
        if why is not None:
            lines.append(f"  no standard errors: {why}")
        return "\n".join(lines)

    def _is_fixed(self, name: str) -> bool:
        """Whether the normal form fixes the entry ``name`` (e.g. ``beta0[2]``)."""
        free = {f"{f}[{','.join(str(i) for i in idx)}]"
                for f, idx in self.gate.free_layout(self.params.k, self.params.d)}
        return name not in free

    def __repr__(self) -> str:
        return (f"FitResult(k={self.params.k}, loglik={self.loglik:.6g}, n_iter={self.n_iter}, "
                f"converged={self.converged}, reason={self.reason!r})")
