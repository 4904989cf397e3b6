"""Certified maximum: a Newton polish of the observed log-likelihood after EM.

EM creeps along the flat directions of over-specified models: stopped by any
tolerance, it can sit a fraction of a nat below the maximum with parameters that
depend on the start. This module climbs the rest of the way with Newton steps on
the observed log-likelihood in the free parametrisation (see
:class:`gmoe.likelihood.FreeLikelihood`), and certifies the result when the score's
largest component per sample is at most ``gtol``, the Newton step from there is at
most 1e-4 in every free coordinate (or worth at most ``gtol * 1e-4 * n`` nats: a flat
ridge) and the point is no saddle. See docs/theory.md, "Certified fits and
inference".

- The step test is what tells a maximum from a stage on the way to a supremum at
  the edge of the gate family: there the score also vanishes (it falls like a power
  of the gate parameters), but the quadratic model still points far out, and the
  polish keeps climbing until its steps run out.

- The curvature is the observed information (analytic, Louis' identity, see
  :meth:`gmoe.likelihood.FreeLikelihood.information`); the step test floors the
  absolute values of its scaled eigenvalues.
- Steps are trust-region steps (:mod:`gmoe._trust_region`): the quadratic model's
  maximiser within a ball in the Jacobi-scaled coordinates, the ball growing while
  the likelihood follows the model and shrinking when it does not: no fixed cap on
  a step's length. Where the information is not positive definite the step goes as
  far as the ball allows along the directions in which the likelihood curves
  upwards. A step is taken only if it raises the log-likelihood (or lowers it by
  rounding while shrinking the score): the polish never returns a lower likelihood
  than its start. Top-K gates take capped, halved modified Newton steps instead (see
  :func:`_newton`).
- The log-variances are bounded below by the variance floor (the theory's compact
  parameter space): coordinates at the bound whose score points out of the space
  are held there (projected Newton). A fit with a variance at the floor is
  *degenerate* and never certified.
- Top-K gates: the likelihood is not differentiable where a point changes
  selection. The polish differentiates with the selection held fixed at each
  point and judges steps on the likelihood itself (selection recomputed), so it
  never crosses a boundary to a lower value; "certified" then means a zero score
  with the selection held, a local maximum within the selection region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._design import Design
from ._trust_region import ScaledModel, floored_eigenvalues, next_radius
from .gates import Gate
from .likelihood import FreeLikelihood
from .params import MoEParams

__all__ = ["PolishResult", "polish"]

#: Largest change of any free coordinate in one step along the Newton step of a point
#: whose score is small (the walk towards the edge of the gate family).
_MAX_STEP = 2.0
#: Eigenvalues of the information below this share of the largest are floored.
_EIG_FLOOR = 1e-12
#: Certified only if the Newton step is at most this long in every free coordinate
#: (as well as a score below gtol). On the way to a supremum at the edge of the gate
#: family (a Laplace centre or sigmoid scores off to the softmax limit) the score per
#: sample drops below 1e-8 while the Newton step along the escape direction stays
#: long (167 at the Laplace ridge point of tests/test_polish.py); near a maximum one
#: more Newton step shortens it quadratically.
_XTOL = 1e-4
#: A scaled information with an eigenvalue below minus this share of its largest
#: marks a saddle point (rounding stays many orders below it).
_SADDLE = 1e-6
#: Trial steps per Newton step before the polish gives up (each shrinks the step).
_MAX_TRIALS = 40


@dataclass
class PolishResult:
    """Outcome of :func:`polish`.

    Attributes
    ----------
    params : MoEParams
        The polished parameters (the input when the polish could not improve).
    loglik : float
    grad_norm : float
        Largest absolute component of the score per sample at ``params``, over the
        free coordinates not held at the variance floor.
    gain : float
        Log-likelihood gained over the input.
    n_iter : int
        Newton steps taken.
    certified : bool
        ``grad_norm <= gtol`` and ``newton_step <= 1e-4`` (or a step worth at most
        ``gtol * 1e-4 * n`` nats) at no saddle, no variance
        at the floor, no separating gate, and (top-K) a stable selection.
    degenerate : bool
        Some variance sits at the floor.
    message : str
        How the polish ended.
    information : ndarray of shape (m, m) or None
        The observed information (negative Hessian) at ``params``, free
        parametrisation; for certified fits (the step test computes it).
    names : list of str
        Names of the free coordinates.
    separated : bool
        A separating (or vanishing) gate: some expert's weight is 0 or 1 at (nearly)
        every point, the likelihood rising as its gate parameters run off to infinity.
    theta : ndarray of shape (m,) or None
        The free vector at ``params`` (what the information is computed at).
    newton_step : float
        Largest component of the eigenvalue-modified Newton step at ``params`` (free
        coordinates, with the information scaled to a unit diagonal before its
        eigenvalues are floored): the distance to the maximum the quadratic model
        predicts. Computed where the score is below ``gtol``, else NaN.
    """

    params: MoEParams
    loglik: float
    grad_norm: float
    gain: float
    n_iter: int
    certified: bool
    degenerate: bool
    message: str
    information: np.ndarray | None = None
    names: list | None = None
    separated: bool = False
    theta: np.ndarray | None = None
    newton_step: float = np.nan


def _at_floor(theta: np.ndarray, like: FreeLikelihood, log_floor: float) -> np.ndarray:
    """Bool array (k,): log-variances at the floor (to rounding)."""
    return theta[like.logvar] <= log_floor + 1e-9


#: An expert's gate saturates when sum_n g_i (1 - g_i) is below this.
_SATURATED = 0.5


#: ... and counts as diverging when, still climbing, it is below this.
_DIVERGING = 5.0


def _saturated_experts(like: FreeLikelihood, theta: np.ndarray,
                       threshold: float = _SATURATED) -> list[int]:
    """Experts whose gate weight is 0 or 1 at (nearly) every data point (dense gates).

    Then the gate parameters that set the weight can grow without bound while the
    likelihood still rises (a separating gate, like perfect separation in logistic
    regression, or a vanishing expert): the score goes to 0 without a finite maximum.
    """
    if like.k == 1:
        return []
    state = like.gate.free_state(theta[:like.m_gate], like.design, like.k, None)
    # the information of each expert's logit intercept: below 1/2 the data hold less
    # than one point's worth of transition (a separated or saturated gate)
    spread = like.gate.saturation(state, like.design)
    return [int(i) for i in np.flatnonzero(spread < threshold)]


def _projected_score(like: FreeLikelihood, theta, grad, log_floor: float):
    """Largest score component per sample over the coordinates that may move, and those
    coordinates (a log-variance at the floor whose score points out of the space is
    held there)."""
    held = np.zeros(like.m, dtype=bool)
    held[like.logvar] = _at_floor(theta, like, log_floor) & (grad[like.logvar] < 0)
    free = ~held
    return float(np.max(np.abs(grad[free]), initial=0.0)) / like.design.n, free


def _not_a_maximum(kind: str, n_iter: int, gnorm: float, step_norm: float,
                   promise: float, largest: float) -> str:
    """Why a point with a small score is not certified."""
    where = (f"score per sample {gnorm:.2g} after {n_iter} Newton steps, but the Newton "
             f"step is {step_norm:.2g} long and promises {promise:.2g} nats (largest gate "
             f"parameter {largest:.3g})")
    if kind == "stalled":
        return (f"no ascent along the Newton step: {where}, and no step along it raises "
                "the likelihood")
    return (f"edge of the gate family: {where}; the likelihood keeps rising towards a "
            "supremum, not a finite maximum")


def _ascends(ll_t: float, grad_t, ll: float, grad: np.ndarray, strict: bool) -> bool:
    """Whether a trial point is taken: a higher value, or (unless ``strict``) one lower
    by rounding only with a smaller score (near the top the gains fall below rounding)."""
    if grad_t is None:
        return False
    if strict:
        return ll_t > ll
    return ll_t >= ll or (ll_t >= ll - 1e-13 * abs(ll)
                          and np.max(np.abs(grad_t)) < np.max(np.abs(grad)))


def _halving(like: FreeLikelihood, theta, ll, grad, delta, lv, log_floor, strict: bool):
    """Along ``delta`` capped at ``_MAX_STEP`` per coordinate, halved until the trial
    ascends (:func:`_ascends`); None if no trial does."""
    longest = float(np.max(np.abs(delta)))
    if longest > _MAX_STEP:
        delta = delta * (_MAX_STEP / longest)
    step = 1.0
    for _ in range(_MAX_TRIALS):
        trial = theta + step * delta
        trial[lv] = np.maximum(trial[lv], log_floor)
        ll_t, grad_t = like.evaluate(trial)
        if _ascends(ll_t, grad_t, ll, grad, strict):
            return trial, ll_t, grad_t
        step *= 0.5
    return None


def _trust_region(like: FreeLikelihood, model: ScaledModel, theta, ll, grad, free, lv,
                  log_floor, radius: float):
    """One trust-region step (:meth:`ScaledModel.step`), the ball shrunk until the trial
    ascends; returns ``(trial, ll_t, grad_t, next radius)`` or None."""
    delta = np.zeros(like.m)
    for _ in range(_MAX_TRIALS):
        delta[free], z, length = model.step(radius)
        trial = theta + delta
        trial[lv] = np.maximum(trial[lv], log_floor)
        ll_t, grad_t = like.evaluate(trial)
        if _ascends(ll_t, grad_t, ll, grad, strict=False):
            break
        radius = 0.25 * length
    else:
        return None
    radius = next_radius(radius, length, model.gain(z), ll_t - ll, 1e-12 * abs(ll))
    return trial, ll_t, grad_t, radius


def _floored_eigh(matrix: np.ndarray):
    """Eigen-decomposition with the eigenvalues made positive and floored at
    ``_EIG_FLOOR`` of the largest (every step along it climbs)."""
    w, V = np.linalg.eigh(matrix)
    return floored_eigenvalues(w, _EIG_FLOOR), V


def _newton(like: FreeLikelihood, theta: np.ndarray, ll: float, grad: np.ndarray,
            log_floor: float, gtol: float, max_iter: int):
    """Projected Newton ascent from ``theta``.

    Dense gates take trust-region steps (:func:`_trust_region`): the ball grows while
    the likelihood follows the quadratic model and shrinks when it does not. The
    top-K likelihood has kinks where a point changes selection, across which the
    model's ratio test misjudges every step (the ball shrinks to nothing), so top-K
    gates take eigenvalue-modified Newton steps capped at 2 per coordinate and
    halved until they do not lower the likelihood. Converged means a small score
    *and* a short Newton step at the same point, not at a saddle: the score alone
    also vanishes on the way to a supremum at the edge of the gate family. Where the
    score is small but the step long, the loop climbs along the scaled Newton step,
    taking only steps that raise the likelihood.

    Returns ``(theta, ll, grad, n_iter, converged, message, step, info)``: ``step`` is
    the max-norm of the Newton step at the returned point (NaN where the score was
    not small enough to test it) and ``info`` the observed information there when
    converged with every coordinate free, else None.
    """
    lv = np.arange(like.m)[like.logvar]
    info, model, plain, last_free, last_gnorm, radius = None, None, None, None, np.inf, None
    step_norm = np.nan

    def largest_gate():
        return float(np.max(np.abs(theta[:like.m_gate]), initial=0.0))

    for it in range(max_iter + 1):
        gnorm, free = _projected_score(like, theta, grad, log_floor)
        small = gnorm <= gtol
        if it == max_iter and not small:
            break
        # the information is recomputed only when the last step with it did not halve
        # the score (a chord method: one information costs several score evaluations),
        # and always where the score is small: the step test needs the curvature here
        if (small or info is None or gnorm > 0.5 * last_gnorm
                or not np.array_equal(free, last_free)):
            full = like.information(theta)
            info = full[np.ix_(free, free)]
            if not np.all(np.isfinite(info)):
                return theta, ll, grad, it, False, "non-finite information", np.nan, None
            model, plain = None, None   # decomposed when a step needs them
        if small or like.mask is None:
            if model is None:
                model = ScaledModel(info)
            model.at_score(grad[free])
        if not small:
            last_free, last_gnorm = free, gnorm
            if like.mask is None:
                if radius is None:  # the first ball holds the modified Newton step
                    radius = model.modified_step(_EIG_FLOOR)[2]
                taken = _trust_region(like, model, theta, ll, grad, free, lv, log_floor,
                                      radius)
                if taken is not None:
                    *taken, radius = taken
            else:
                if plain is None:
                    plain = _floored_eigh(info)
                w, V = plain
                delta = np.zeros(like.m)
                delta[free] = V @ ((V.T @ grad[free]) / w)
                taken = _halving(like, theta, ll, grad, delta, lv, log_floor, strict=False)
            if taken is None:
                return theta, ll, grad, it, False, "line search found no ascent", np.nan, None
            theta, ll, grad = taken
            step_norm = np.nan
            continue
        step_free, promise, _ = model.modified_step(_EIG_FLOOR)
        step_norm = float(np.max(np.abs(step_free), initial=0.0))
        if model.lowest < -_SADDLE:
            return theta, ll, grad, it, False, (
                f"saddle point: the score per sample is {gnorm:.2g} but the "
                f"information has a negative eigenvalue ({model.lowest:.2g} of the "
                "largest, unit-diagonal scaling): not a maximum"), step_norm, None
        # a short step, or one worth less than a short step at a score of gtol
        # (a flat ridge: the maximum is not unique, its value is certain)
        if step_norm <= _XTOL or promise <= gtol * _XTOL * like.design.n:
            message = "score below gtol" if step_norm <= _XTOL else (
                f"score below gtol (the Newton step left, {step_norm:.2g} long, is "
                f"worth {promise:.2g} nats: the value is certain, the point may lie "
                "on a flat ridge)")
            return (theta, ll, grad, it, True, message, step_norm,
                    full if free.all() else None)
        # a saturated dense gate is a separating one: polish() says so, and there
        # is no point walking out after it
        if it == max_iter or (like.mask is None and _saturated_experts(like, theta)):
            return (theta, ll, grad, it, False,
                    _not_a_maximum("edge", it, gnorm, step_norm, promise,
                                   largest_gate()), step_norm, None)
        # the score is small but the step long: climb along it, strict ascent only
        delta = np.zeros(like.m)
        delta[free] = step_free
        info, radius = None, None  # the next step starts afresh
        taken = _halving(like, theta, ll, grad, delta, lv, log_floor, strict=True)
        if taken is None:
            return (theta, ll, grad, it, False,
                    _not_a_maximum("stalled", it, gnorm, step_norm, promise,
                                   largest_gate()), step_norm, None)
        theta, ll, grad = taken
        step_norm = np.nan
    return theta, ll, grad, max_iter, False, (
        f"not certified in {max_iter} Newton steps (score max-norm per sample "
        f"{gnorm:.2g}; largest gate parameter {largest_gate():.3g})"), step_norm, None


def polish(design: Design, gate: Gate, params: MoEParams, var_floor: float,
           gtol: float = 1e-8, max_iter: int = 100, sample_weight=None) -> PolishResult:
    """Climb from ``params`` to a maximum of the observed log-likelihood and certify it.

    Parameters
    ----------
    design : Design
    gate : Gate
    params : MoEParams
        Starting point (an EM result).
    var_floor : float
        Lower bound of the variances.
    gtol : float, default=1e-8
        Certify when the score's largest component per sample is at most this (and
        the Newton step there at most 1e-4 or worthless, at no saddle).
    max_iter : int, default=100
        Largest number of Newton steps.
    sample_weight : ndarray of shape (n,), optional

    Returns
    -------
    PolishResult
        Never with a lower log-likelihood than at ``params``.
    """
    params = gate.normal_form(gate.prepare(params))
    log_floor = float(np.log(var_floor))
    # top-K: the selection is recomputed at every point (the value is the likelihood
    # itself, the score its derivative with the selection held)
    mask = "track" if gate.is_sparse(params.k) else None
    like = FreeLikelihood(design, gate, params, mask, sample_weight)
    theta0 = like.pack(params)
    theta0[like.logvar] = np.maximum(theta0[like.logvar], log_floor)
    ll0, grad0 = like.evaluate(theta0)
    if grad0 is None:
        return PolishResult(params, -np.inf, np.inf, 0.0, 0, False, False,
                            "non-finite log-likelihood at the start", names=like.names)
    start_ll = ll0
    theta, ll, grad, total_iter, converged, message, step_norm, info = _newton(
        like, theta0, ll0, grad0, log_floor, gtol, max_iter)
    if mask is not None and not converged and np.isnan(step_norm):
        # the steps cross selection boundaries: climb with the selection held at the
        # current one, and keep the result only if it selects the same experts (then
        # the held likelihood is the likelihood, and its zero score a local maximum);
        # a small score whose step test failed keeps its own verdict
        held_mask = gate.selection_mask(design, like.unpack(theta))
        held = FreeLikelihood(design, gate, params, held_mask, sample_weight)
        th, ll_h, g_h, it_h, conv_h, _, step_h, info_h = _newton(
            held, theta, ll, grad, log_floor, gtol, max_iter)
        total_iter += it_h
        same = np.array_equal(gate.selection_mask(design, held.unpack(th)), held_mask)
        if conv_h and same and ll_h >= ll:
            # the same selection: the held information is the likelihood's
            theta, ll, grad, converged, step_norm, info = th, ll_h, g_h, True, step_h, info_h
            message = "score below gtol (selection held)"
        else:
            message = ("the maximum sits on a selection boundary, where the top-K "
                       "likelihood is not differentiable: not certifiable")
    if ll < start_ll:  # only steps lower by rounding could add up to this: guard it
        theta, ll, grad, message = theta0, ll0, grad0, "no ascent"
        converged, step_norm, info = False, np.nan, None
    result_params = like.unpack(theta)
    floor_hit = _at_floor(theta, like, log_floor)
    degenerate = bool(floor_hit.any())
    gnorm, _ = _projected_score(like, theta, grad, log_floor)
    certified = bool(converged and not degenerate and gnorm <= gtol)
    saturated = _saturated_experts(like, theta) if mask is None else []
    separated = bool(saturated)
    if separated:
        # the score vanishes because the gate saturates, not at a finite maximum
        certified = False
        which = ", ".join(str(i) for i in saturated)
        message = (f"separating gate: the weight of expert(s) {which} is 0 or 1 at every "
                   "point, so the likelihood still rises as the gate parameters run off "
                   "to infinity (no finite maximum)")
    elif not converged and mask is None:
        # still climbing when the steps ran out: a gate that is nearly a hard switch
        # is running off to infinity (its parameters grow, its score shrinks slowly)
        saturated = _saturated_experts(like, theta, _DIVERGING)
        if saturated:
            separated = True
            message = (f"separating gate: the gate parameters of expert(s) "
                       f"{', '.join(str(i) for i in saturated)} are still growing after "
                       f"{total_iter} Newton steps (a switch that sharpens without bound)")
    if degenerate:
        which = ", ".join(str(i) for i in np.flatnonzero(floor_hit))
        message = f"degenerate: variance of expert(s) {which} at the floor {var_floor:.3g}"
    # the step test computed the information at a certified point: it is the one
    # inference needs
    return PolishResult(result_params, ll, gnorm, ll - start_ll, total_iter, certified,
                        degenerate, message, info if certified else None, like.names,
                        separated and not degenerate, theta, step_norm)
