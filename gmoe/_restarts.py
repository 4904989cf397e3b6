"""The EM runs of one fit (:func:`gmoe.em.fit_em`): the starts (k-means, random,
near-truth, split, auto), screened restarts, repeated starts, the polish of each run
and progress reports. Each run is a dict (``params``, ``loglik``, ``n_iter``,
``converged``, ``trace``, ``reason``, ``stopped_by``, ``floor_hits``, and after the
polish its certificate)."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ._design import Design
from ._em_loop import _run_em
from ._scaling import Scaling
from .experts import expert_log_density_T
from .gates import Gate
from .initialization import (
    kmeans_responsibilities,
    kmeans_rows,
    near_truth_params,
    params_from_responsibilities,
    random_responsibilities,
)
from .model import joint_log_T
from .params import MoEParams
from .polish import polish as _polish
from .settings import FitSettings


def start_key(params: MoEParams) -> tuple:
    """A key that two k-means starts share when they come from the same partition.

    A start is one M-step from the partition's (smoothed) labels; each expert's
    regression depends only on its own cluster, so two labellings of the same partition
    give the same experts (bit for bit) in another order. The key is the sorted
    rows ``(a, b, var)`` of the experts: a restart whose key was seen before starts
    from the same mixture relabelled, and EM (permutation-equivariant) ends at the same
    fit, so :meth:`_Context.run` does not run it again (see
    docs/performance.md, "Restarts").
    """
    rows = np.column_stack([params.a, params.b, params.var])
    return (params.k, params.d) + tuple(sorted(row.tobytes() for row in rows))


class Progress:
    """Progress of a fit: one line per EM run (and per polish) on stderr with
    ``verbose >= 1``, one per 100 EM iterations with ``verbose >= 2``, and
    ``callback(done, total, label)`` after each step."""

    def __init__(self, total: int, verbose: int, callback, k: int):
        self.total, self.verbose, self.callback, self.k = total, verbose, callback, k
        self.done, self.label = 0, ""
        self.start = time.perf_counter()

    def _line(self, text: str) -> None:
        print(f"gmoe fit_em (k={self.k}): {text}", file=sys.stderr, flush=True)

    def begin(self, label: str) -> None:
        self.label = label

    def iteration(self, n_iter: int, loglik: float) -> None:
        if self.verbose >= 2:
            self._line(f"  {self.label}: iteration {n_iter}, log-likelihood {loglik:.10g}")

    def step_done(self, text: str) -> None:
        self.done += 1
        if self.verbose >= 1:
            elapsed = time.perf_counter() - self.start
            self._line(f"[{self.done}/{self.total}] {self.label}: {text} ({elapsed:.1f} s)")
        if self.callback is not None:
            self.callback(self.done, self.total, self.label)


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
    report: Progress | None = None
    truth: MoEParams | None = None
    seen: dict = field(default_factory=dict)
    _rows: tuple = ()       # (the rows of k-means, see kmeans_rows), once drawn

    def kmeans_rows(self) -> np.ndarray | None:
        """The rows every k-means start of the fit runs on (``kmeans_sample``, at
        least k of them), drawn at the first k-means start; None: every row."""
        if not self._rows:
            sample = self.settings.kmeans_sample
            self._rows = (kmeans_rows(self.design.n, None if sample is None
                                      else max(sample, self.k), self.rng),)
        return self._rows[0]

    def run(self, params0: MoEParams, label: str, dedupe: bool = False,
            max_iter: int | None = None, settings: FitSettings | None = None) -> dict:
        """One EM run from ``params0`` (internal units); with ``dedupe``, a start whose
        experts repeat an earlier deduplicated start's (the same k-means partition,
        relabelled) reuses that run (see :func:`start_key`).
        ``max_iter`` and ``settings`` override the fit's (the short runs of screened
        restarts)."""
        report = self.report
        if report is not None:
            report.begin(label)
        key = start_key(params0) if dedupe else None
        if key in self.seen:
            run = dict(self.seen[key], label=label, copy_of=self.seen[key])
            if report is not None:
                report.step_done("the same partition as an earlier start: not run again")
            return run
        run = _run_em(self.design, self.gate, params0,
                      self.settings if settings is None else settings, self.var_floor,
                      max_iter=max_iter,
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


def _count_runs(init, n_init: int, k: int, min_experts: int,
                screened: bool = False) -> tuple[int, int]:
    """``(EM runs, polished runs)`` that :func:`_restarts` makes (with ``screened``
    restarts: one group of ``n_init`` starts is screened, see :func:`_continue_best`)."""
    runs, final = _count_full(init, n_init, k, min_experts)
    if (screened and n_init > 1 and not isinstance(init, MoEParams)
            and not (init in ("auto", "split") and k == 1)):
        # the best short run goes on (one more step) and, unless the group is the
        # smallest fit of "split" (whose runs are not final), the others are not polished
        runs += 1
        final -= 0 if init == "split" else n_init - 1
    return runs, final


def _count_full(init, n_init: int, k: int, min_experts: int) -> tuple[int, int]:
    """``(EM runs, final runs)`` of full restarts (final runs are polished)."""
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
        smaller = n_init if k == 2 else _count_full("split", n_init, k - 1, min_experts)[0]
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
    screened = count > 1 and ctx.settings.screened
    short = _short_settings(ctx.settings) if screened else None
    screen = ctx.settings.screen_iter if screened else None
    for i in range(count):
        if isinstance(init, MoEParams):
            params0, label = gate.prepare(init), "the given start"
        elif init == "near_truth":
            params0 = ctx.scaling.to_internal(
                gate.prepare(near_truth_params(ctx.truth, k, n, ctx.rng,
                                             ctx.settings.init_scale)), gate)
            label = f"near-truth start {i + 1}/{count}"
        else:
            resp = (kmeans_responsibilities(X, y, k, ctx.rng, rows=ctx.kmeans_rows(),
                                            weight=design.weight)
                    if init == "kmeans" else random_responsibilities(n, k, ctx.rng))
            params0 = params_from_responsibilities(design, resp, gate, ctx.var_floor)
            label = f"{'k-means' if init == 'kmeans' else 'random'} start {i + 1}/{count}"
        runs.append(ctx.run(params0, label if k == ctx.k else f"{label} with k={k}",
                            dedupe=init == "kmeans", max_iter=screen, settings=short))
    return _continue_best(ctx, runs) if screened else runs


def _short_settings(settings: FitSettings) -> FitSettings | None:
    """The settings of the short runs of screened restarts: the fit's, with
    ``screen_tol`` (never below ``tol``) in place of ``tol``; None when only
    ``screen_iter`` screens (the fit's own settings, cut by the iteration count)."""
    if settings.screen_tol is None:
        return None
    return dataclasses.replace(settings, tol=max(settings.screen_tol, settings.tol))


def _goes_on(run: dict, settings: FitSettings, total_weight: float) -> bool:
    """Whether a short run must go on to meet the fit's own stopping rule: it stopped
    at ``screen_iter`` (below ``max_iter``) or by ``screen_tol`` with a last change
    above ``tol`` (the rule of :func:`gmoe._em_loop._run_em`, on the same trace)."""
    if run["stopped_by"] == "failure" or run["n_iter"] >= settings.max_iter:
        return False
    if run["stopped_by"] == "max_iter":  # below max_iter: cut at screen_iter
        return True
    trace = run["trace"]
    change = abs(trace[-1] - trace[-2])
    bound = (settings.tol * abs(trace[-1]) if settings.stop == "relative"
             else settings.tol * total_weight)
    return not change <= bound


def _continue_best(ctx: _Context, runs: list[dict]) -> list[dict]:
    """Screened restarts: the best short run (by log-likelihood, among those that did
    not fail; each stopped at ``screen_iter`` iterations or by ``screen_tol``) is run
    on to convergence under the fit's own rule; the others are marked
    ``screened_out`` and are neither polished nor chosen (docs/performance.md,
    "Restarts")."""
    best = _best(runs)
    for run in runs:
        run["screened_out"] = run is not best
    max_iter = ctx.settings.max_iter
    if _goes_on(best, ctx.settings, ctx.design.total_weight):
        more = ctx.run(best["params"], f"{best['label']}, run on",
                       max_iter=max_iter - best["n_iter"])
        # one run: the traces joined (the continuation's first entry repeats the
        # short run's last) and the M-steps added
        more.update(label=best["label"], n_iter=best["n_iter"] + more["n_iter"],
                    trace=np.concatenate([best["trace"], more["trace"][1:]]),
                    floor_hits=best["floor_hits"] + more["floor_hits"],
                    screened_out=False)
        runs = [more if run is best else run for run in runs]
    elif ctx.report is not None:  # the step that progress counted for the run on
        ctx.report.begin(f"{best['label']}, run on")
        ctx.report.step_done("met the fit's stopping rule in its short run")
    return runs


def _polish_run(run: dict, ctx: _Context) -> None:
    """Polish one EM result in place (see :mod:`gmoe.polish`); a failed run is left as is."""
    run["em_loglik"] = run["loglik"]
    if "copy_of" in run and "certified" in run["copy_of"]:  # the same EM result: polished
        run.update({key: val for key, val in run.pop("copy_of").items() if key != "label"})
        return
    if not np.isfinite(run["loglik"]):
        run.update(certified=False, degenerate=False, separated=False, grad_norm=np.nan,
                   newton_step=np.nan, polish_gain=0.0,
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
                      sample_weight=design.weight)
    except NotImplementedError as exc:  # a gate without free_state/free_score
        run.update(certified=False, degenerate=False, separated=False, grad_norm=np.nan,
                   newton_step=np.nan, polish_gain=0.0, polish_iter=0, information=None,
                   param_names=[],
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
               newton_step=res.newton_step,
               polish_gain=res.gain,
               polish_iter=res.n_iter, polish_message=message,
               information=res.information,
               param_names=res.names or [])
    # the variance floor is judged at the polished point, not where EM stopped
    if run["reason"] is None or run["reason"].startswith("degenerate variance"):
        run["reason"] = (f"degenerate variance: expert(s) {floored} at the variance floor "
                         f"{floor:.3g} (a collapsing component)" if res.degenerate else None)


#: An expert needs this many effective rows beyond its regression coefficients:
#: with fewer than two residual degrees of freedom its variance is fitted to the
#: rounding of a few residuals (the likelihood is unbounded as it interpolates them).
MIN_RESIDUAL_ROWS = 2.0


def _flag_thin_experts(run: dict, ctx: _Context) -> None:
    """Mark a run degenerate (in place) when an expert holds fewer effective rows (its
    responsibility mass over the rows of positive weight) than its ``d + 1`` regression
    coefficients plus :data:`MIN_RESIDUAL_ROWS`, but at least one: it is fitted to those
    few rows. An expert with less than one row's worth is a vanishing one, not fitted to
    anything (the fit is in effect a smaller model, whose parameters the identifiability
    warning names)."""
    if run["reason"] is not None or run.get("screened_out") or not np.isfinite(
            run["loglik"]):
        return
    design, params = ctx.design, run["params"]
    resp, _ = joint_log_T(ctx.gate.log_weights_T(design, params),
                          expert_log_density_T(design, params.a, params.b, params.var))
    # rows, not weights (fit_em has dropped the rows of weight 0): a row of weight 5
    # is five copies of one point, and scaling every weight must not change the verdict
    mass = resp.sum(axis=1)
    need = design.d + 1 + MIN_RESIDUAL_ROWS
    thin = np.flatnonzero((mass >= 1.0) & (mass < need))
    if not thin.size:
        return
    which = ", ".join(f"{i} ({mass[i]:.3g} effective rows)" for i in thin)
    run["reason"] = (f"degenerate expert(s) {which}: fewer than the {need:g} an expert "
                     f"with {design.d + 1} regression coefficients needs, so the data do "
                     "not determine its coefficients and variance")
    run["degenerate"] = True
    run["certified"] = False
