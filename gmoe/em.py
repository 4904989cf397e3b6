"""EM / MLE for Gaussian mixtures of experts, shared by every gate."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from ._design import Design
from ._restarts import Progress as _Progress
from ._restarts import start_key
from ._scaling import Scaling, response_scale
from ._validation import check_positive_int, check_sample_weight, check_X_y
from .exceptions import (
    ConvergenceWarning,
    DegenerateFitWarning,
    IdentifiabilityWarning,
    InferenceWarning,
    SeparationWarning,
)
from .experts import expert_log_density_T, experts_m_step
from .gates import Gate, SoftmaxGate, make_gate
from .inference import ParamArrays, covariance, standard_errors, wald_intervals
from .initialization import (
    kmeans_responsibilities,
    near_truth_params,
    params_from_responsibilities,
    random_responsibilities,
)
from .likelihood import (
    InformationField,
    free_layout,
    lazy_information,
    to_original_information,
)
from .model import GaussianMoE, joint_log_T
from .params import MoEParams
from .polish import polish as _polish
from .settings import STOP_RULES, FitSettings

__all__ = ["FitResult", "fit_em", "STOP_RULES"]



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
    polish_gain : float
        Log-likelihood the polish added to EM's.
    polish_iter : int
        Newton steps of the polish.
    certified : bool
        The polish reached a zero score (``grad_norm <= gtol``) with every variance
        above the floor: ``params`` is a local maximum of the likelihood.
    degenerate : bool
        Some variance sits at the floor (a component collapsed onto a few points).
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
        number here is in the units of X and y, except ``grad_norm``, which is in
        the standardised ones.
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
    restart_logliks: list = field(default_factory=list)
    best_restart: int = 0
    floor_hits: int = 0
    seconds: float = 0.0
    em_loglik: float = np.nan
    polished: bool = False
    grad_norm: float = np.nan
    polish_gain: float = 0.0
    polish_iter: int = 0
    certified: bool = False
    degenerate: bool = False
    separated: bool = False
    polish_message: str = ""
    var_floor: float = np.nan
    information: np.ndarray | None = field(default=InformationField(), repr=False)
    param_names: list = field(default_factory=list)
    standardized: bool = False

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
            return "degenerate fit (a variance at the floor)"
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

    def bic(self) -> float:
        """Bayesian information criterion ``-2 loglik + p log n`` (lower is better)."""
        return -2 * self.loglik + self.n_parameters() * np.log(self.n_samples)

    def aic(self) -> float:
        """Akaike information criterion ``-2 loglik + 2 p``."""
        return -2 * self.loglik + 2 * self.n_parameters()

    def to_dict(self) -> dict:
        """JSON-safe summary (no trace)."""
        return {"params": self.params.to_dict(), "gate": self.gate.get_config(),
                "loglik": float(self.loglik), "n_iter": int(self.n_iter),
                "converged": bool(self.converged), "reason": self.reason,
                "stopped_by": self.stopped_by, "n_samples": int(self.n_samples),
                "restart_logliks": [float(v) for v in self.restart_logliks],
                "best_restart": int(self.best_restart), "floor_hits": int(self.floor_hits),
                "seconds": float(self.seconds), "em_loglik": float(self.em_loglik),
                "polished": bool(self.polished), "grad_norm": float(self.grad_norm),
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
                 f"  n = {self.n_samples}, log-likelihood = {self.loglik:.6g} "
                 f"({self.loglik / max(self.n_samples, 1):.6g} per sample)",
                 f"  EM {status} after {self.n_iter} iterations (stopped by {self.stopped_by}); "
                 f"{len(self.restart_logliks)} restart(s), best #{self.best_restart}; "
                 f"{self.seconds:.3g} s",
                 f"  BIC = {self.bic():.6g}, AIC = {self.aic():.6g}"]
        if self.polished:
            state = ("CERTIFIED maximum" if self.certified
                     else "DEGENERATE" if self.degenerate else "NOT certified")
            lines.append(f"  {state}: score max-norm per sample {self.grad_norm:.2g}, polish "
                         f"gained {self.polish_gain:.3g} nats in {self.polish_iter} Newton "
                         f"steps ({self.polish_message})")
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


def _pack(params: MoEParams) -> np.ndarray:
    """Parameters as one vector for extrapolation: variances and tau on the log scale."""
    parts = [params.beta0, params.beta1.ravel(), params.a.ravel(), params.b, np.log(params.var)]
    if params.tau is not None:
        parts.append([np.log(params.tau)])
    return np.concatenate(parts)


def _unpack(vec: np.ndarray, like: MoEParams) -> MoEParams:
    k, d = like.k, like.d
    sizes = np.cumsum([k, k * d, k * d, k, k])
    beta0, beta1, a, b, logvar, rest = np.split(vec, sizes)
    tau = float(np.exp(rest[0])) if like.tau is not None else None
    # gate covariances (the Gaussian gate) are not extrapolated: kept from ``like``
    return MoEParams(beta0, beta1.reshape(k, d), a.reshape(k, d), b, np.exp(logvar), tau,
                     like.gate_cov)


class _EMSteps:
    """E- and M-steps on one data set, with the per-fit arrays computed once."""

    def __init__(self, design: Design, gate: Gate, var_floor: float):
        self.design, self.gate, self.var_floor = design, gate, var_floor
        self.floor_hits = 0
        self.floored = None

    def evaluate(self, params: MoEParams):
        """Log weights and expert log densities at ``params``, each (k, n)."""
        return (self.gate.log_weights_T(self.design, params),
                self._with_x(expert_log_density_T(self.design, params.a, params.b,
                                                  params.var), params))

    def _with_x(self, log_phi, params: MoEParams):
        """For a gate that models X (the Gaussian gate), ``log p(x_n)`` added to every
        expert's log density: the e-step's log-likelihood is then the joint one and
        the responsibilities are unchanged (docs/theory.md, "The Gaussian gate")."""
        if getattr(self.gate, "models_x", False):
            log_phi += self.gate.log_marginal_x(self.design, params)
        return log_phi

    def e_step(self, log_w, log_phi, out=None):
        """(log-likelihood, responsibilities), both weighted by the sample weights."""
        resp, ll_n = joint_log_T(log_w, log_phi, out=out)
        weight = self.design.weight
        if weight is None:
            return float(ll_n.sum()), resp
        resp *= weight
        return float(ll_n @ weight), resp

    def m_step(self, params: MoEParams, resp, log_w):
        """New parameters with their log weights and log densities (nothing recomputed)."""
        a, b, var, log_phi, floored, _ = experts_m_step(self.design, resp, params.a, params.b,
                                                        self.var_floor, params.var)
        self.floored = floored
        self.floor_hits += int(floored.any())
        params = params.replace(a=a, b=b, var=var)
        params, log_w, _ = self.gate.m_step(self.design, resp, params, log_w, log_phi)
        return params, log_w, self._with_x(log_phi, params)


_SQUAREM_STEP_FACTOR = 4.0


def _run_em(design: Design, gate: Gate, params: MoEParams, tol: float, max_iter: int,
            stop: str, var_floor: float, accelerate: bool = False, *, offset: float = 0.0,
            var_unit: float = 1.0, progress=None) -> dict:
    """One EM run from ``params``; never raises on numerical failure.

    ``offset`` is added to every log-likelihood of the trace and of the stopping rule
    (the log-Jacobian from internal to the user's units), ``var_unit`` converts the
    variance floor to the user's units in messages; ``progress(n_iter, loglik)``, if
    given, is called every 100 M-steps.

    With ``accelerate``, SQUAREM (Varadhan & Roland 2008, scheme S3, with the step
    bound of the R package SQUAREM: it starts at 1 and is multiplied by 4 whenever it
    binds) extrapolates from two EM steps ``theta0 -> theta1 -> theta2`` and takes one
    EM step from the extrapolated point. That point is kept only when its
    log-likelihood is not below the last evaluated EM iterate, otherwise the plain EM
    point ``theta2`` is used, so the trace never decreases. Iterations count M-steps.
    """
    steps = _EMSteps(design, gate, var_floor)
    params = gate.normal_form(params)
    log_w, log_phi = steps.evaluate(params)
    buf = np.empty_like(log_w) if not accelerate else None
    trace: list[float] = []
    reason, converged, stopped_by = None, False, "max_iter"
    total = design.total_weight
    n_msteps = 0
    step_max = 1.0  # SQUAREM's bound on the extrapolation length, adapted as it goes
    next_report = 100

    def record(ll: float) -> bool:
        """Append ll (in the user's units); True when the stopping rule is met."""
        nonlocal next_report
        ll = ll + offset
        trace.append(ll)
        if progress is not None and n_msteps >= next_report:
            progress(n_msteps, ll)
            next_report += 100
        if len(trace) < 2:
            return False
        change = abs(ll - trace[-2])
        return (change <= tol * abs(ll)) if stop == "relative" else (change <= tol * total)

    ll, resp = steps.e_step(log_w, log_phi, out=buf)
    while True:
        if not np.isfinite(ll):
            reason, stopped_by = f"non-finite log-likelihood at iteration {n_msteps}", "failure"
            break
        if record(ll):
            converged, stopped_by = True, stop
            break
        if n_msteps >= max_iter:
            break
        last = params
        params1, log_w1, log_phi1 = steps.m_step(params, resp, log_w)
        n_msteps += 1
        if not accelerate or n_msteps >= max_iter:
            params, log_w, log_phi = params1, log_w1, log_phi1
            ll, resp = steps.e_step(log_w, log_phi, out=buf)
            if not np.isfinite(ll):
                params = last
            continue
        ll1, resp1 = steps.e_step(log_w1, log_phi1)
        if not np.isfinite(ll1):
            params, ll = params1, ll1
            continue
        if record(ll1):
            params, ll, resp = params1, ll1, resp1
            converged, stopped_by = True, stop
            break
        params2, log_w2, log_phi2 = steps.m_step(params1, resp1, log_w1)
        n_msteps += 1
        t0, t1, t2 = _pack(params), _pack(params1), _pack(params2)
        r, v = t1 - t0, t2 - 2 * t1 + t0
        nv = float(np.linalg.norm(v))
        alpha = float(np.linalg.norm(r)) / nv if nv > 0 else 1.0
        alpha = min(max(alpha, 1.0), step_max) if np.isfinite(alpha) else 1.0
        accepted = False
        extrapolate = alpha > 1.01 and n_msteps < max_iter
        if extrapolate:
            try:
                jump = gate.normal_form(_unpack(t0 + 2 * alpha * r + alpha**2 * v, params))
                jump = jump.replace(var=np.maximum(jump.var, var_floor))
            except ValueError:  # non-finite extrapolation
                jump = None
            if jump is not None:
                lw_j, lp_j = steps.evaluate(jump)
                ll_j, resp_j = steps.e_step(lw_j, lp_j)
                if np.isfinite(ll_j):
                    # one EM step from the jump stabilises it (SQUAREM's "mstep")
                    params_s, lw_s, lp_s = steps.m_step(jump, resp_j, lw_j)
                    n_msteps += 1
                    ll_s, resp_s = steps.e_step(lw_s, lp_s)
                    if np.isfinite(ll_s) and ll_s >= ll1:
                        params, log_w, log_phi, ll, resp = params_s, lw_s, lp_s, ll_s, resp_s
                        accepted = True
        if extrapolate and not accepted:
            step_max = max(1.0, step_max / _SQUAREM_STEP_FACTOR)
        elif alpha >= step_max:  # the bound held the step back: let it grow
            step_max *= _SQUAREM_STEP_FACTOR
        if not accepted:
            params, log_w, log_phi = params2, log_w2, log_phi2
            ll, resp = steps.e_step(log_w, log_phi)
    floored = steps.floored
    if reason is None and floored is not None and floored.any():
        which = ", ".join(str(i) for i in np.flatnonzero(floored))
        reason = (f"degenerate variance: expert(s) {which} at the variance floor "
                  f"{var_floor * var_unit:.3g} (a collapsing component)")
    return {"params": params, "loglik": trace[-1] if trace else -np.inf,
            "n_iter": n_msteps, "converged": converged,
            "trace": np.array(trace), "reason": reason, "stopped_by": stopped_by,
            "floor_hits": steps.floor_hits,
            # responsibility mass and variance of each expert: which one to split
            "spread": resp.sum(axis=1) * params.var}


@dataclass
class _Context:
    """Everything the EM runs of one fit share (internal units)."""

    design: Design
    gate: Gate
    rng: np.random.Generator
    settings: FitSettings
    var_floor: float        # in internal units (settings.var_floor is in the user's)
    scaling: Scaling
    k: int
    report: _Progress | None = None
    truth: MoEParams | None = None
    seen: dict = field(default_factory=dict)

    def run(self, params0: MoEParams, label: str, dedupe: bool = False,
            max_iter: int | None = None) -> dict:
        """One EM run from ``params0`` (internal units); with ``dedupe``, a start whose
        experts repeat an earlier deduplicated start's (the same k-means partition,
        relabelled) reuses that run (see :func:`gmoe._restarts.start_key`).
        ``max_iter`` overrides the fit's (the short runs of screened restarts)."""
        report = self.report
        if report is not None:
            report.begin(label)
        key = start_key(params0) if dedupe else None
        if key in self.seen:
            run = dict(self.seen[key], label=label, copy_of=self.seen[key])
            if report is not None:
                report.step_done("the same partition as an earlier start: not run again")
            return run
        settings = self.settings
        run = _run_em(self.design, self.gate, params0, settings.tol,
                      settings.max_iter if max_iter is None else max_iter, settings.stop,
                      self.var_floor, settings.accelerate,
                      offset=self.scaling.log_jacobian(self.design.total_weight),
                      var_unit=self.scaling.y_scale**2,
                      progress=None if report is None else report.iteration)
        run["label"] = label
        if key is not None:
            self.seen[key] = run
        if report is not None:
            state = ("converged" if run["converged"] else
                     "FAILED" if run["stopped_by"] == "failure" else "max_iter")
            report.step_done(f"log-likelihood {run['loglik']:.8g} after {run['n_iter']} "
                             f"iterations ({state})")
        return run


def _best(runs: list[dict]) -> dict:
    """The run with the highest log-likelihood among those that did not fail (and
    were not screened out)."""
    kept = [r for r in runs if not r.get("screened_out")] or runs
    pool = [r for r in kept if r["reason"] is None] or kept
    return max(pool, key=lambda r: r["loglik"])


def _split_runs(ctx: _Context, base: dict, count: int) -> list[dict]:
    """EM from ``base`` with one more expert: ``count`` of its experts split apart (all
    of them in expert order, or those with the largest responsibility mass times
    variance), plus its embedding (never below ``base`` when the gate's ``exact_split`` holds)."""
    params = base["params"]
    k = params.k
    order = (range(k) if count >= k
             else np.argsort(-np.asarray(base["spread"]), kind="stable")[:count])
    starts = [(ctx.gate.split(params, int(j), ctx.rng, jitter=0.5),
               f"expert {int(j)} of the {k}-expert fit split") for j in order]
    starts.append((ctx.gate.split(params, int(np.argmax(params.beta0)), jitter=0.0),
                   f"the {k}-expert fit embedded"))
    return [ctx.run(ctx.gate.prepare(p0), label) for p0, label in starts]


def _greedy(ctx: _Context, k: int) -> dict:
    """The greedy k-expert fit: from the smallest fit the gate allows (one expert: the
    weighted least-squares fit), add one expert at a time, each time splitting the
    expert with the largest responsibility mass times variance."""
    first = max(ctx.gate.min_experts, 1)
    current = _best(_restarts(ctx, "kmeans", 1, first))
    for _ in range(first, k):
        current = _best(_split_runs(ctx, current, 1))
    return current


def _count_runs(init, n_init: int, k: int, min_experts: int) -> tuple[int, int]:
    """``(EM runs, final runs)`` that :func:`_restarts` makes (final runs are polished)."""
    if isinstance(init, MoEParams):
        return 1, 1
    if init == "auto":
        if k == 1:
            return 1, 1
        if k - 1 < min_experts:
            return n_init, n_init
        final = n_init + min(n_init, k - 1) + 1
        first = max(min_experts, 1)
        return final + 1 + 2 * (k - 1 - first), final
    if init == "split":
        if k == 1:
            return 1, 1
        smaller = n_init if k == 2 else _count_runs("split", n_init, k - 1, min_experts)[0]
        return smaller + k, k
    return n_init, n_init


def _restarts(ctx: _Context, init, n_init: int, k: int) -> list[dict]:
    """Run EM from each of the starting points; one result dict per restart."""
    gate, design = ctx.gate, ctx.design
    X, y, n = design.X, design.y, design.n
    if isinstance(init, str) and init == "auto":
        if k == 1:  # one expert: a weighted least-squares fit, restarts are identical
            return _restarts(ctx, "kmeans", 1, 1)
        # k-means first, drawing from rng exactly as init="kmeans" with the same seed
        own = _restarts(ctx, "kmeans", n_init, k)
        if k - 1 < gate.min_experts:
            # a top-K gate cannot have fewer experts than it selects: k-means starts only
            return own
        # then the greedy (k-1)-expert fit, a few of its experts split, and its exact
        # embedding: never below that fit (dense gates), at a cost that grows like k
        # EM runs with few experts instead of n_init k-means restarts at every k
        return own + _split_runs(ctx, _greedy(ctx, k - 1), min(n_init, k - 1))
    if isinstance(init, str) and init == "split":
        if k == 1:
            return _restarts(ctx, "kmeans", 1, 1)
        # the (k-1)-expert fit, drawing from rng exactly as a fit_em call with the same
        # init and seed would, so its best run is that call's result
        smaller = _restarts(ctx, "split" if k > 2 else "kmeans", n_init, k - 1)
        # every expert split apart, plus the exact embedding of the smaller fit: the
        # best of these never ends below the (k-1)-expert fit (dense gates)
        return _split_runs(ctx, _best(smaller), k - 1)
    runs = []
    count = 1 if isinstance(init, MoEParams) else n_init
    screen = ctx.settings.screen_iter if count > 1 else None
    for i in range(count):
        if isinstance(init, MoEParams):
            params0, label = gate.prepare(init), "the given start"
        elif init == "near_truth":
            params0 = ctx.scaling.to_internal(
                gate.prepare(near_truth_params(ctx.truth, k, n, ctx.rng,
                                             ctx.settings.init_scale)), gate)
            label = f"near-truth start {i + 1}/{count}"
        else:
            resp = (kmeans_responsibilities(X, y, k, ctx.rng) if init == "kmeans"
                    else random_responsibilities(n, k, ctx.rng))
            params0 = params_from_responsibilities(design, resp, gate, ctx.var_floor)
            label = f"{'k-means' if init == 'kmeans' else 'random'} start {i + 1}/{count}"
        runs.append(ctx.run(params0, label if k == ctx.k else f"{label} with k={k}",
                            dedupe=init == "kmeans", max_iter=screen))
    return runs if screen is None else _continue_best(ctx, runs)


def _continue_best(ctx: _Context, runs: list[dict]) -> list[dict]:
    """Screened restarts: the best short run (by log-likelihood, among those that did
    not fail) is run on to convergence; the others are marked ``screened_out`` and
    are neither polished nor chosen (docs/performance.md, "Restarts")."""
    best = _best(runs)
    for run in runs:
        run["screened_out"] = run is not best
    max_iter = ctx.settings.max_iter
    if best["stopped_by"] == "max_iter" and max_iter > ctx.settings.screen_iter:
        more = ctx.run(best["params"], f"{best['label']}, run on",
                       max_iter=max_iter - best["n_iter"])
        # one run: the traces joined (the continuation's first entry repeats the
        # short run's last) and the M-steps added
        more.update(label=best["label"], n_iter=best["n_iter"] + more["n_iter"],
                    trace=np.concatenate([best["trace"], more["trace"][1:]]),
                    floor_hits=best["floor_hits"] + more["floor_hits"],
                    screened_out=False)
        runs = [more if run is best else run for run in runs]
    return runs


#: Default variance floor: this share of the response's variance (see
#: :func:`gmoe._scaling.response_scale` for the scale of a constant response).
VAR_FLOOR_SHARE = 1e-6


_D = FitSettings  # the defaults of fit_em's settings are FitSettings'


def fit_em(X, y, n_experts: int, gate: Gate | str | dict | None = None,
           init: str | MoEParams = _D.init, n_init: int = _D.n_init, tol: float = _D.tol,
           max_iter: int = _D.max_iter, rng=None, truth: MoEParams | None = None, *,
           stop: str = _D.stop, var_floor: float | None = _D.var_floor,
           init_scale: float | str = _D.init_scale, accelerate: bool = _D.accelerate,
           polish: bool = _D.polish, gtol: float = _D.gtol, sample_weight=None,
           standardize: bool = _D.standardize, screen_iter: int | None = _D.screen_iter,
           verbose: int = 0, progress=None, warn: bool = True) -> FitResult:
    """Fit a Gaussian mixture of experts by EM, keeping the best of ``n_init`` restarts.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    n_experts : int
        Number of experts k to fit, from 1 to the number of samples.
    gate : Gate, str or dict, default=SoftmaxGate()
    init : {"kmeans", "random", "near_truth", "split", "auto"} or MoEParams, \
default="kmeans"
        ``"near_truth"`` (needs ``truth``) perturbs the truth as in the published
        protocol (see :func:`gmoe.initialization.near_truth_params`); ``"split"``
        fits k - 1 experts first (recursively, k-means at k = 2) and starts from
        each of its experts split in two, plus the exact embedding of that fit, so
        that (for dense gates) the k-expert fit never ends below the (k-1)-expert
        ``"split"`` fit with the same seed; its cost grows like k**2 EM runs.
        ``"auto"``: the ``n_init`` k-means starts of ``init="kmeans"`` (the same
        draws: never below that fit with the same seed), then a greedy
        (k-1)-expert fit grown one expert at a time from one expert (splitting the
        expert with the largest responsibility mass times variance), and from it
        ``min(n_init, k - 1)`` split starts and its exact embedding (so, for dense
        gates, never below that greedy fit). Its cost is that of ``"kmeans"`` plus
        about ``2k`` EM runs with fewer experts: 1.1-2.8x ``"kmeans"`` with
        ``n_init=5`` for k from 2 to 40 (``benchmarks/auto_cost.py``; docs: user
        guide, "Fitting your own data").
        An explicit MoEParams starts from those parameters (in the units of X and y).
    n_init : int, default=1
        Number of restarts; the best final log-likelihood among successful fits wins.
    screen_iter : int, optional
        Screen the restarts (the "short runs" strategy, em-EM of Biernacki, Celeux
        and Govaert 2003): each k-means, random or near-truth start runs
        ``screen_iter`` EM iterations, and only the best of them is run on to
        convergence and polished. The others keep the log-likelihood of their short
        run in ``restart_logliks``. ``n_init`` restarts then cost about one fit plus
        ``n_init * screen_iter`` iterations instead of ``n_init`` fits; how often the
        screened fit is the full restarts' best is measured in docs/performance.md,
        "Restarts". None (default): every restart runs to convergence and is
        polished. The split starts of ``init="split"``/``"auto"`` are never
        screened.
    tol : float, default=1e-6
        Stopping tolerance on the change of the log-likelihood.
    max_iter : int, default=2000
    rng : None, int or numpy.random.Generator
    truth : MoEParams, optional
        True parameters, needed by ``init="near_truth"``.
    stop : {"relative", "per_sample"}, default="relative"
        ``"relative"`` stops when ``|l_t - l_{t-1}| <= tol |l_t|`` (the published
        rule, which loosens with n); ``"per_sample"`` when ``|l_t - l_{t-1}| <= tol n``.
        Both are evaluated on the log-likelihood in the units of y.
    var_floor : float, optional
        Lower bound of the variances, in the units of y squared. Default:
        ``1e-6 s**2`` with ``s**2`` the (weighted) variance of y, relative to the
        data's scale; ``s`` is at least ``1e-8 max|y|`` (a response constant to 8
        significant digits has that scale) and 1 when y is identically 0. A fit with a
        variance at the floor is degenerate.
    init_scale : float or "published", default=1.0
        The constant c of the near-truth noise ``c * n**-0.083`` on every parameter;
        ``"published"`` is the published code's profile (0.005 on the gate
        parameters, 0.05 on the expert means, ``|N(0, 0.005 n**-0.25)|`` added to
        the variances), see :func:`gmoe.initialization.near_truth_params`.
    accelerate : bool, default=False
        Use SQUAREM extrapolation between EM steps (monotone: a jump that lowers the
        log-likelihood falls back to the plain EM step). Worth it for over-specified
        fits, whose plain EM converges sublinearly.
    polish : bool, default=True
        After EM, climb to a maximum of the likelihood by Newton steps and certify it
        (score max-norm per sample <= ``gtol``, every variance above ``var_floor``);
        every restart is polished before the best is chosen. See docs/theory.md,
        "Certified fits and inference".
    gtol : float, default=1e-8
        Certification tolerance on the score per sample (per unit of weight), in the
        fit's internal units (standardised ones with ``standardize``).
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights: sample n counts ``sample_weight[n]`` times in the
        log-likelihood, the stopping rule (``"per_sample"`` divides by their sum),
        every M-step (the responsibilities are multiplied by them) and the polish.
        Samples of weight 0 are left out before anything else, so they change
        nothing (not even the random starts).
    standardize : bool, default=False
        Fit in standardised units (each column of X divided by its standard
        deviation, not centred; y centred and divided by its standard deviation) and
        map the parameters, the log-likelihood, the variance floor and the observed
        information back to the units of X and y. The fit is then scale-free:
        rescaling a covariate changes only its own slopes. ``MoERegressor`` does
        this by default; sweeps do not (their data are in unit scale). Gates whose
        weights cannot be expressed in rescaled covariates (``rescales_x`` False:
        Laplace, Gaussian) standardise y only.
    verbose : int, default=0
        1: one line on stderr per EM run and per polish (with the log-likelihood and
        the time so far); 2: also one line per 100 EM iterations.
    progress : callable, optional
        ``progress(done, total, label)`` after every EM run and every polish (e.g. to
        drive a progress bar).
    warn : bool, default=True
        Emit a :class:`~gmoe.exceptions.ConvergenceWarning` if the best restart did
        not converge (or, polished, is not certified), a
        :class:`~gmoe.exceptions.SeparationWarning` if its gate separates the data
        (a hard switch, infinite maximum-likelihood slope; found by the polish), a
        :class:`~gmoe.exceptions.DegenerateFitWarning` if it failed or is degenerate
        (``reason``), or if the data cannot support the fit (a constant response,
        fewer samples than expert parameters).

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        On malformed input (shapes, NaN/inf, n_experts < 1 or more than the number
        of samples, unknown init, near_truth without truth, ...).

    Examples
    --------
    >>> from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em
    >>> truth = MoEParams([1.0, 0.0], [[-3.0], [0.0]], [[2.0], [-2.0]], [0.0, 1.0],
    ...                   [0.1, 0.1])
    >>> X, y = GaussianMoE(SoftmaxGate(), truth).sample(2000, rng=1)
    >>> fit = fit_em(X, y, 2, n_init=3, rng=0)
    >>> fit.converged
    True
    """
    X, y = check_X_y(X, y)
    weight = check_sample_weight(sample_weight, X.shape[0])
    if weight is not None and np.any(weight == 0):
        keep = weight > 0
        X, y, weight = X[keep], y[keep], weight[keep]
    k = check_positive_int(n_experts, "n_experts")
    gate = SoftmaxGate() if gate is None else make_gate(gate)
    settings = FitSettings(init=init, n_init=n_init, tol=tol, max_iter=max_iter, stop=stop,
                           var_floor=var_floor, init_scale=init_scale, accelerate=accelerate,
                           polish=polish, gtol=gtol, screen_iter=screen_iter,
                           standardize=standardize)
    verbose = check_positive_int(int(verbose) if isinstance(verbose, bool) else verbose,
                                 "verbose", minimum=0)
    n, d = X.shape
    if k > n:
        rows = "samples" if weight is None else "samples of positive weight"
        raise ValueError(f"n_experts = {k} is more than the {n} {rows}: every expert needs "
                         f"data of its own; use n_experts <= {n}")
    if isinstance(init, MoEParams):
        gate.check_params(init, d=d)
        if init.k != k:
            raise ValueError(f"init has {init.k} experts but n_experts = {k}")
    else:
        if init == "split" and k - 1 < gate.min_experts:
            raise ValueError(f"init='split' grows k = {k} experts from a fit with k - 1 = "
                             f"{k - 1}, but the gate selects K = {gate.min_experts} experts; use "
                             "init='auto' or 'kmeans'")
        if init == "near_truth":
            if truth is None:
                raise ValueError("init='near_truth' needs the true parameters: pass truth=")
            gate.check_params(truth, d=d)
    scale, constant = response_scale(y, weight)
    var_floor = VAR_FLOOR_SHARE * scale**2 if var_floor is None else settings.var_floor
    if warn:
        _warn_about_data(constant, y, n, k, d)
    rng = np.random.default_rng(rng)
    scaling = (Scaling.standardize(X, y, weight, scale_x=gate.rescales_x)
               if settings.standardize
               else Scaling.none(d))
    Xs, ys = scaling.data(X, y)
    design = Design(Xs, ys, weight)
    if isinstance(init, MoEParams):
        init = scaling.to_internal(gate.prepare(init), gate)
    n_runs, n_final = _count_runs(init, settings.n_init, k, gate.min_experts)
    report = (_Progress(n_runs + n_final * settings.polish, verbose, progress, k)
              if verbose or progress is not None else None)
    ctx = _Context(design, gate, rng, settings, var_floor / scaling.y_scale**2, scaling, k,
                   report, truth)

    start_time = time.perf_counter()
    # The products here are thin ((k, n) by (n, m)): threaded BLAS gains little and,
    # on a loaded machine, spin-waiting threads make it 5-10x slower.
    with threadpool_limits(1, user_api="blas"):
        runs = _restarts(ctx, init, settings.n_init, k)
        if settings.polish:
            for i, run in enumerate(runs):
                if run.get("screened_out"):
                    continue
                if report is not None:
                    report.begin(f"polish {i + 1}/{len(runs)}")
                _polish_run(run, ctx)
                if report is not None:
                    report.step_done(f"log-likelihood {run['loglik']:.8g}, "
                                     f"{'certified' if run['certified'] else 'not certified'}")
    seconds = time.perf_counter() - start_time
    for run in runs:
        run["params"] = scaling.to_original(run["params"], gate)

    # the best log-likelihood among fits that did not fail and are not degenerate
    kept = [i for i, r in enumerate(runs) if not r.get("screened_out")]
    ok = [i for i in kept if runs[i]["reason"] is None]
    pool = ok if ok else kept
    best = max(pool, key=lambda i: runs[i]["loglik"])
    r = runs[best]
    if warn:
        _warn_about_fit(r, settings)
        _warn_about_duplicates(r["params"])
    extra = {}
    if settings.polish and "certified" in r:
        extra = {key: r[key] for key in ("grad_norm", "polish_gain", "polish_iter",
                                         "certified", "degenerate", "separated",
                                         "polish_message", "param_names")}
        extra["information"] = to_original_information(
            r["information"], scaling, free_layout(gate, k, d))
    return FitResult(params=r["params"], gate=gate, loglik=r["loglik"], n_iter=r["n_iter"],
                     converged=r["converged"], loglik_trace=r["trace"], reason=r["reason"],
                     stopped_by=r["stopped_by"], n_samples=n,
                     restart_logliks=[run["loglik"] for run in runs], best_restart=best,
                     floor_hits=r["floor_hits"], seconds=seconds,
                     em_loglik=r.get("em_loglik", r["loglik"]), polished=settings.polish,
                     var_floor=var_floor, standardized=not scaling.identity, **extra)


def _warn_about_data(constant: bool, y: np.ndarray, n: int, k: int, d: int) -> None:
    """Warn before fitting when the data cannot support the fit."""
    if constant:
        warnings.warn(f"the response y is constant ({y[0]:.8g} to 8 significant digits): "
                      "an expert fits it exactly and its variance collapses onto the "
                      "floor; there is nothing to fit", DegenerateFitWarning, stacklevel=3)
    elif n < k * (d + 2):
        warnings.warn(f"{n} samples for {k} experts with {d + 2} parameters each "
                      f"({k * (d + 2)} in all): the data cannot determine every expert "
                      "(some end up identical or collapsed onto a few points); use fewer "
                      "experts", DegenerateFitWarning, stacklevel=3)


def _warn_about_fit(r: dict, settings: FitSettings) -> None:
    """The warning the best run deserves, if any (see ``fit_em(warn=)``)."""
    polish = settings.polish
    if r["reason"] is not None:
        warnings.warn(f"the fit failed or is degenerate: {r['reason']}",
                      DegenerateFitWarning, stacklevel=3)
    elif polish and not r["certified"]:
        message = r["polish_message"]
        if r.get("separated"):
            warnings.warn(f"{message}. The experts and the predictions are usable; the "
                          "gate slopes have no finite estimate (fewer experts, or data "
                          "across the switch, give one)", SeparationWarning, stacklevel=3)
        else:
            warnings.warn(f"the fit is not a certified maximum: {message}",
                          ConvergenceWarning, stacklevel=3)
    elif not polish and not r["converged"]:
        warnings.warn(f"EM did not converge in {settings.max_iter} iterations "
                      f"(tol={settings.tol}, stop={settings.stop!r}); increase max_iter or "
                      "tol", ConvergenceWarning,
                      stacklevel=3)


def _warn_about_duplicates(params: MoEParams) -> None:
    """Warn when two experts of the fit are the same expert: same regression, variance
    and gate slopes (their gate intercepts only share out one weight), a stationary
    point that is in effect a fit with fewer experts."""
    rows = np.column_stack([params.beta1, params.a, params.b, np.log(params.var)])
    scale = np.maximum(np.abs(rows).max(axis=0), 1e-300)
    first: list[int] = []   # one expert of each group of identical ones
    copies = []
    for i in range(params.k):
        match = [j for j in first if np.all(np.abs(rows[i] - rows[j]) <= 1e-6 * scale)]
        if match:
            copies.append(f"{i} = {match[0]}")
        else:
            first.append(i)
    if copies:
        shown = ", ".join(copies[:4]) + (", ..." if len(copies) > 4 else "")
        m = len(first)
        warnings.warn(f"the fit has identical experts ({shown}): it is the same model as "
                      f"a fit with {m} expert{'s' if m > 1 else ''} (of its {params.k}); use "
                      "fewer experts", IdentifiabilityWarning, stacklevel=3)


def _polish_run(run: dict, ctx: _Context) -> None:
    """Polish one EM result in place (see :mod:`gmoe.polish`); a failed run is left as is."""
    run["em_loglik"] = run["loglik"]
    if "copy_of" in run and "certified" in run["copy_of"]:  # the same EM result: polished
        run.update({key: val for key, val in run.pop("copy_of").items() if key != "label"})
        return
    if not np.isfinite(run["loglik"]):
        run.update(certified=False, degenerate=False, separated=False, grad_norm=np.nan,
                   polish_gain=0.0,
                   polish_iter=0, polish_message="EM failed: not polished",
                   information=None, param_names=[])
        return
    design, scaling = ctx.design, ctx.scaling
    # the polish measures the score per sample (per row); with sample weights the
    # certificate is per unit of weight
    per_row = design.total_weight / design.n
    try:
        res = _polish(design, ctx.gate, run["params"], ctx.var_floor,
                      gtol=ctx.settings.gtol * per_row,
                      sample_weight=design.weight,
                      information=ctx.gate.is_sparse(run["params"].k))
    except NotImplementedError as exc:  # a gate without free_state/free_score
        run.update(certified=False, degenerate=False, separated=False, grad_norm=np.nan,
                   polish_gain=0.0, polish_iter=0, information=None, param_names=[],
                   polish_message=f"not certifiable: the gate supplies no score ({exc})")
        return
    message = res.message
    if res.degenerate:
        # the floor in the user's units (the polish works in the fit's internal ones)
        floored = ", ".join(map(str, np.flatnonzero(res.params.var
                                                    <= ctx.var_floor * (1 + 1e-8))))
        floor = ctx.var_floor * scaling.y_scale**2
        message = f"degenerate: variance of expert(s) {floored} at the floor {floor:.3g}"
    run.update(params=res.params,
               loglik=res.loglik + scaling.log_jacobian(design.total_weight),
               certified=res.certified, degenerate=res.degenerate,
               separated=res.separated, grad_norm=res.grad_norm / per_row,
               polish_gain=res.gain,
               polish_iter=res.n_iter, polish_message=message,
               information=lazy_information(res, design, ctx.gate),
               param_names=res.names or [])
    # the variance floor is judged at the polished point, not where EM stopped
    if run["reason"] is None or run["reason"].startswith("degenerate variance"):
        run["reason"] = (f"degenerate variance: expert(s) {floored} at the variance floor "
                         f"{floor:.3g} (a collapsing component)" if res.degenerate else None)
