"""One EM run: the E- and M-steps of every gate, the stopping rule and SQUAREM."""

from __future__ import annotations

import numpy as np

from ._design import Design
from .experts import expert_log_density_T, experts_m_step
from .gates import Gate
from .model import joint_log_T
from .params import MoEParams
from .settings import FitSettings


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
        # (log_w, log_phi, (resp, loglik_n)) from the last gating M-step, if it
        # computed the E-step at its result (GateStepInfo.posterior)
        self._posterior = None

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
        cached = self._posterior
        if cached is not None and cached[0] is log_w and cached[1] is log_phi:
            # the gate's M-step computed exactly this (its arrays, used once)
            self._posterior = None
            resp, ll_n = cached[2]
        else:
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
        params, log_w, info = self.gate.m_step(self.design, resp, params, log_w, log_phi)
        posterior = getattr(info, "posterior", None)
        # (a gate that models X adds log p(x) to log_phi below: not the same E-step)
        self._posterior = (None if posterior is None or getattr(self.gate, "models_x", False)
                           else (log_w, log_phi, posterior))
        return params, log_w, self._with_x(log_phi, params)


_SQUAREM_STEP_FACTOR = 4.0


def _run_em(design: Design, gate: Gate, params: MoEParams, settings: FitSettings,
            var_floor: float, *, max_iter: int | None = None, offset: float = 0.0,
            var_unit: float = 1.0, progress=None) -> dict:
    """One EM run from ``params``; never raises on numerical failure.

    ``settings`` gives the stopping rule (``tol``, ``stop``, ``max_iter``, unless
    ``max_iter`` overrides it) and ``accelerate``; ``var_floor`` is in the units of
    the design. ``offset`` is added to every log-likelihood of the trace and of the stopping rule
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
    tol, stop, accelerate = settings.tol, settings.stop, settings.accelerate
    max_iter = settings.max_iter if max_iter is None else max_iter
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
