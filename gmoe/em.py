"""EM / MLE for Gaussian mixtures of experts, shared by every gate: :func:`fit_em`.

The EM loop is :mod:`gmoe._em_loop`, the restarts and the polish of each run
:mod:`gmoe._restarts`, the outcome :class:`~gmoe.fit_result.FitResult`.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ._design import Design
from ._restarts import Progress as _Progress
from ._restarts import _Context, _count_runs, _flag_thin_experts, _polish_run, _restarts
from ._scaling import Scaling, response_scale
from ._threads import one_thread
from ._validation import check_positive_int, check_sample_weight, check_X_y
from .exceptions import (
    ConvergenceWarning,
    DegenerateFitWarning,
    IdentifiabilityWarning,
    SeparationWarning,
)
from .fit_result import FitResult
from .gates import Gate, SoftmaxGate, make_gate
from .likelihood import free_layout
from .params import MoEParams
from .settings import STOP_RULES, FitSettings

__all__ = ["FitResult", "fit_em", "STOP_RULES"]


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
           screen_tol: float | None = _D.screen_tol,
           kmeans_sample: int | None = _D.kmeans_sample,
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
    kmeans_sample : int, optional
        Seed and run k-means (the starts of ``init="kmeans"`` and ``"auto"``) on a
        random subsample of ``kmeans_sample`` rows (at least ``n_experts``), drawn
        once per fit, then label every row by its nearest centre: k-means++ seeding
        and Lloyd's iterations cost O(kmeans_sample) each instead of O(n), and one
        pass over the n rows remains. Restarts that reach the same centres on the
        sample are recognised and not run again, as with the full k-means. Other
        starts than the full k-means' (and other draws from ``rng``); None
        (default), or a sample of at least n rows: k-means on every row.
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
    screen_tol : float, optional
        Screen the restarts by a loose tolerance instead of (or besides) a number
        of iterations: each short run stops when the stopping rule ``stop`` holds
        with ``screen_tol`` in place of ``tol`` (or after ``screen_iter``
        iterations, if given, whichever comes first), and the best short run goes
        on with ``tol``. A run that converges in a few iterations then stops after
        fewer still, and a slow one is not cut at an arbitrary count. A
        ``screen_tol`` below ``tol`` screens at ``tol`` (every short run is a full
        run; only the polish of the best is saved).
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
        data's scale; ``s`` is at least ``1e-12 max|y|`` (a response constant to 12
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
        (score max-norm per sample <= ``gtol`` where the Newton step is at most 1e-4
        or worthless, at no saddle, every variance above ``var_floor``);
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
        nothing (not even the random starts). They are frequency weights: the
        information criteria take their sum as the number of observations
        (``FitResult.nobs``), so rescaling them changes the BIC.
    standardize : bool, default=False
        Fit in standardised units (each column of X divided by its standard
        deviation, and centred where the gate sees x only through its logits,
        ``Gate.shifts_x``: softmax, temperature, sigmoid;
        y centred and divided by its standard deviation) and map the parameters,
        the log-likelihood, the variance floor and the observed information back to
        the units of X and y. The fit is then free of the units and, for those
        gates, of the origin of x: rescaling a covariate changes only its own
        slopes, shifting it only the intercepts. ``MoERegressor`` does this by
        default; sweeps do not (their data are in unit scale). Gates whose weights
        cannot be expressed in rescaled covariates (``rescales_x`` False: Laplace,
        Gaussian) standardise y only.
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
                           standardize=standardize, screen_tol=screen_tol,
                           kmeans_sample=kmeans_sample)
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
    scaling = (Scaling.standardize(X, y, weight, scale_x=gate.rescales_x,
                                   shift_x=gate.shifts_x)
               if settings.standardize
               else Scaling.none(d))
    Xs, ys = scaling.data(X, y)
    design = Design(Xs, ys, weight)
    if isinstance(init, MoEParams):
        init = scaling.to_internal(gate.prepare(init), gate)
    n_runs, n_final = _count_runs(init, settings.n_init, k, gate.min_experts,
                                   settings.screened)
    report = (_Progress(n_runs + n_final * settings.polish, verbose, progress, k)
              if verbose or progress is not None else None)
    ctx = _Context(design, gate, rng, settings, var_floor / scaling.y_scale**2, scaling, k,
                   report, truth)

    start_time = time.perf_counter()
    # The products here are thin ((k, n) by (n, m)): threaded BLAS gains little and,
    # on a loaded machine, spin-waiting threads make it 5-10x slower.
    with one_thread("blas"):
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
        # a degenerate fit never looks like a success: an expert fitted to fewer
        # rows than it has parameters, or a response with nothing to fit
        for run in runs:
            _flag_thin_experts(run, ctx)
            if constant and run["reason"] is None:
                run.update(reason="the response y is constant: there is nothing to fit",
                           certified=False, degenerate=True)
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
        extra = {key: r[key] for key in ("grad_norm", "newton_step", "polish_gain",
                                         "polish_iter",
                                         "certified", "degenerate", "separated",
                                         "polish_message", "param_names")}
        layout = free_layout(gate, k, d)
        extra["information"] = scaling.information_to_original(r["information"], layout)
        if scaling.shifted and r["information"] is not None:
            # inverted where X is centred (FitResult.cov_params)
            extra["information_internal"] = r["information"]
            extra["information_jacobian"] = scaling.jacobian(layout)
    return FitResult(params=r["params"], gate=gate, loglik=r["loglik"], n_iter=r["n_iter"],
                     converged=r["converged"], loglik_trace=r["trace"], reason=r["reason"],
                     stopped_by=r["stopped_by"], n_samples=n,
                     nobs=None if weight is None else float(weight.sum()),
                     restart_logliks=[run["loglik"] for run in runs], best_restart=best,
                     floor_hits=r["floor_hits"], seconds=seconds,
                     em_loglik=r.get("em_loglik", r["loglik"]), polished=settings.polish,
                     var_floor=var_floor, standardized=not scaling.identity, **extra)


def _warn_about_data(constant: bool, y: np.ndarray, n: int, k: int, d: int) -> None:
    """Warn before fitting when the data cannot support the fit."""
    if constant:
        warnings.warn(f"the response y is constant ({y[0]:.12g} to 12 significant digits): "
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
