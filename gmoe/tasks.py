"""One task of a sweep: its seed, its data, its fit and the metrics it records.

A task is one (sub-sweep, sample size, replication); :func:`run_task` runs it and
returns its record (a JSON-safe dict), which :mod:`gmoe.records` writes and
:mod:`gmoe.sweep` schedules.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._json import jsonable
from ._threads import one_thread
from .config import SimConfig
from .em import fit_em
from .model import GaussianMoE

__all__ = ["Task", "task_seed", "contaminate", "evaluation_x", "compute_metrics",
           "run_task"]


@dataclass(frozen=True)
class Task:
    """One fit: sub-sweep ``sub``, sample size index ``n_index`` (size ``n``), replication."""

    sub: int
    n_index: int
    rep: int
    n: int

    @property
    def key(self) -> str:
        return f"{self.sub}:{self.n_index}:{self.rep}"

    def record(self, cfg: SimConfig, **entries) -> dict:
        """The task's record: which task of which config, and ``entries``."""
        return {"task": self.key, "sub": self.sub, "label": cfg.label, "n": self.n,
                "n_index": self.n_index, "rep": self.rep, "config_hash": cfg.hash,
                **entries}


def task_seed(seed: int, n_index: int, rep: int) -> np.random.SeedSequence:
    """The task's seed: a SeedSequence keyed by (config seed, n index, rep).

    It does not depend on scheduling, on the number of workers, nor on the
    sub-sweep, so sub-sweeps of one grid see the same data (common random numbers).
    """
    return np.random.SeedSequence(seed, spawn_key=(n_index, rep))


def contaminate(y: np.ndarray, share: float, scale: float, rng) -> np.ndarray:
    """``y`` with a share of its entries replaced by outliers (the ``[data]`` table).

    Each entry is replaced, independently with probability ``share``, by a draw from
    ``N(mean(y), (scale * sd(y))**2)``, the mean and standard deviation being those of
    the clean sample: a wide law that no expert of the model produces. ``share = 0``
    returns ``y`` itself and draws nothing.

    Parameters
    ----------
    y : ndarray of shape (n,)
    share : float in [0, 1)
    scale : float > 0
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n,)
    """
    if share == 0:
        return y
    hit = rng.random(y.shape[0]) < share
    wide = y.mean() + scale * y.std() * rng.standard_normal(y.shape[0])
    return np.where(hit, wide, y)


def evaluation_x(cfg: SimConfig) -> np.ndarray:
    """The fixed covariate sample over which density distances are averaged."""
    n_x = cfg.hellinger_n_x
    law = cfg.x_law
    if law.get_config()["name"] == "grid":
        return np.linspace(0.0, 1.0, n_x)[:, None]
    # a stream of its own, apart from every task's (n_index, rep) key
    stream = np.random.SeedSequence(cfg.seed, spawn_key=(2**31,))
    return law.draw(n_x, np.random.default_rng(stream))


def compute_metrics(cfg: SimConfig, fit, truth_model: GaussianMoE, X, y,
                    x_eval: np.ndarray) -> dict:
    """The metrics the config asks for, for one finished fit.

    Each metric is computed on its own: one that raises is recorded under
    ``metric_errors`` with its reason, and the others are kept.
    """
    from .density import hellinger
    from .losses import voronoi_loss
    from .parameter_errors import parameter_errors

    metrics = cfg.metrics
    out: dict = {}
    errors: dict = {}
    fitted = fit.model
    translation = cfg.loss_settings.translation
    metric = cfg.loss_settings.metric
    losses: dict = {}  # one loss per translation convention, computed once

    def loss_under(convention: str):
        if convention not in losses:
            losses[convention] = voronoi_loss(fitted, truth_model, kind=cfg.loss_kind,
                                              metric=metric,
                                              translation=convention)
        return losses[convention]

    if "loss" in metrics or "parameter_errors" in metrics:
        try:
            loss = loss_under(translation)
        except (ValueError, ArithmeticError) as exc:
            errors["loss"] = str(exc)
        else:
            if "loss" in metrics:
                out["loss"] = loss.value
                out["loss_kind"] = cfg.loss_kind
                out["loss_translation"] = translation
                out["loss_saturated"] = bool(loss.saturated)
                out["shift"] = np.atleast_1d(loss.shift).tolist()
            if "parameter_errors" in metrics:
                out["parameter_errors"] = parameter_errors(
                    fitted, truth_model, shift=loss, metric=metric,
                    kind=cfg.loss_kind).to_dict()
    # the loss under the other conventions, whatever is configured (docs/theory.md,
    # "Translation conventions"): "mass" has no cap, "infimum" is capped at the true
    # total weight (its capped flag recorded beside it)
    for convention in ("mass", "infimum"):
        key = f"loss_{convention}"
        if key not in metrics:
            continue
        try:
            other = loss_under(convention)
        except (ValueError, ArithmeticError) as exc:
            errors[key] = str(exc)
        else:
            out[key] = other.value
            if convention == "infimum":
                out["loss_infimum_saturated"] = bool(other.saturated)
    if "logit_errors" in metrics:
        # what the likelihood identifies of the gate (the temperature ridge): ratios
        # of logit-coefficient differences, beside the raw ones and tau
        from .logit_errors import logit_errors
        try:
            le = logit_errors(fitted, truth_model)
        except ValueError as exc:
            errors["logit_errors"] = str(exc)
        else:
            out["logit_ratio"], out["logit_raw"] = le.ratio, le.raw
            if le.tau is not None:
                out["tau_error"] = le.tau
    if "hellinger" in metrics:
        try:
            out["hellinger"] = hellinger(fitted, truth_model, x_eval)
        except (ValueError, ArithmeticError) as exc:
            errors["hellinger"] = str(exc)
    if "loglik" in metrics:
        out["loglik"] = fit.loglik
        out["loglik_true"] = truth_model.log_likelihood(X, y)
    # never a silent NaN: a non-finite loss or distance is an error with its reason
    for key in ("loss", "loss_mass", "loss_infimum", "hellinger"):
        if key in out and not np.isfinite(out[key]):
            big = float(np.max(np.abs(np.concatenate([fitted.params.beta0,
                                                      fitted.params.beta1.ravel()]))))
            errors[key] = (f"non-finite value {out.pop(key)!r}: the fitted gating "
                           f"parameters reach {big:.3g} (weights overflow)")
    if "n_iter" in metrics:
        out["n_iter"] = fit.n_iter
    if "converged" in metrics:
        out["converged"] = fit.converged
        out["stopped_by"] = fit.stopped_by
    if errors:
        out["metric_errors"] = errors
    return out


def run_task(cfg: SimConfig, task: Task, x_eval: np.ndarray) -> dict:
    """Run one task; never raises (an exception is recorded with its reason)."""
    record = task.record(cfg)
    start = time.perf_counter()
    try:
        # one BLAS thread per task: same numbers whatever the number of workers
        with one_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data_seed, fit_seed = task_seed(cfg.seed, task.n_index, task.rep).spawn(2)
            truth = GaussianMoE(cfg.truth_gate, cfg.truth_params, cfg.x_law)
            data_rng = np.random.default_rng(data_seed)
            X, y = truth.sample(task.n, rng=data_rng)
            # the clean sample is drawn first: sub-sweeps with and without outliers
            # share it (common random numbers)
            y = contaminate(y, *cfg.contamination, data_rng)
            fit = fit_em(X, y, cfg.n_experts, rng=np.random.default_rng(fit_seed),
                         **cfg.fit_kwargs())
            record["fit_seconds"] = fit.seconds
            record["certified"] = fit.certified
            record["degenerate"] = fit.degenerate
            record["separated"] = fit.separated
            if fit.polished:
                record.update(grad_norm=fit.grad_norm, newton_step=fit.newton_step,
                              polish_gain=fit.polish_gain,
                              polish_iter=fit.polish_iter, em_loglik=fit.em_loglik,
                              polish_message=fit.polish_message)
            record.update(compute_metrics(cfg, fit, truth, X, y, x_eval))
            if "selection" in cfg.metrics:
                # the number of experts chosen by each criterion (fits every smaller k)
                from .selection.sweep import selection_record
                record.update(selection_record(cfg, fit, truth, X, y, fit_seed))
            record["params"] = fit.params.to_dict()
            record["status"] = "ok" if fit.success else "failed"
            record["reason"] = fit.reason
    except Exception as exc:  # a sweep never dies of one task
        record["status"] = "error"
        record["reason"] = f"{type(exc).__name__}: {exc}"
    record["seconds"] = time.perf_counter() - start
    return jsonable(record)
