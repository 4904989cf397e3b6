"""Parallel, seeded, resumable sweeps over sample size and replications."""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from .config import SimConfig, load_config
from .em import fit_em
from .model import GaussianMoE
from .records import (
    RESULTS_FILE,
    SWEEP_FILE,
    ResultsFolder,
    ResultsMismatchError,
    _jsonable,
    load_results,
)

# the results folder's files are gmoe.records'; their names are re-exported here
__all__ = ["run_sweep", "load_results", "SweepResult", "RESULTS_FILE", "SWEEP_FILE",
           "ResultsMismatchError", "contaminate"]


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
    from .losses import parameter_errors, voronoi_loss

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
    record = {"task": task.key, "sub": task.sub, "label": cfg.label, "n": task.n,
              "n_index": task.n_index, "rep": task.rep, "config_hash": cfg.hash}
    start = time.perf_counter()
    try:
        # one BLAS thread per task: same numbers whatever the number of workers
        with threadpool_limits(1), warnings.catch_warnings():
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
                record.update(grad_norm=fit.grad_norm, polish_gain=fit.polish_gain,
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
    return _jsonable(record)


def sweep_hash(configs: list[SimConfig]) -> str:
    """Hash of the sub-sweeps' config hashes, stored in ``sweep.json``."""
    return hashlib.sha256("|".join(c.hash for c in configs).encode()).hexdigest()[:16]


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the folder, counts and timing."""

    out_dir: Path
    configs: list
    n_tasks: int
    n_run: int
    n_skipped: int
    n_failed: int
    seconds: float

    def results(self):
        """The results as a DataFrame (see :func:`load_results`)."""
        return load_results(self.out_dir)

    def summary(self) -> str:
        return (f"{self.out_dir}: {self.n_tasks} tasks ({self.n_run} run now, "
                f"{self.n_skipped} already recorded), {self.n_failed} failed or errored now, "
                f"{self.seconds:.1f} s")


def _dask_stream(pending: list[Task], configs: list[SimConfig], x_evals: list,
                 n_jobs: int, scheduler: str | None):
    """Run tasks on a Dask cluster; yield each task's record once, as it finishes.

    With no scheduler address a LocalCluster bound to 127.0.0.1 is started (one
    single-threaded worker process per job). A task whose worker dies is retried by
    the scheduler; one that keeps failing is recorded as an error. The driver writes
    the records, so resume works as with joblib.
    """
    from dask.distributed import Client, LocalCluster, as_completed  # checked by run_sweep

    cluster = None
    if scheduler is None:
        workers = (os.cpu_count() or 1) if n_jobs in (None, -1) else max(int(n_jobs), 1)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        by_future = {}
        for t in pending:
            future = client.submit(run_task, configs[t.sub], t, x_evals[t.sub],
                                   key=f"gmoe-{configs[t.sub].hash}-{t.key}", pure=False,
                                   retries=2)
            by_future[future] = t
        for future in as_completed(list(by_future)):
            task = by_future.pop(future)
            try:
                record = future.result()
            except Exception as exc:  # e.g. KilledWorker after repeated worker deaths
                cfg = configs[task.sub]
                record = _jsonable({"task": task.key, "sub": task.sub, "label": cfg.label,
                                    "n": task.n, "n_index": task.n_index, "rep": task.rep,
                                    "config_hash": cfg.hash, "status": "error",
                                    "reason": f"{type(exc).__name__}: {exc}",
                                    "seconds": None})
            yield record
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _as_configs(config, quick: bool, grid: dict | None) -> list[SimConfig]:
    if isinstance(config, SimConfig):
        return [config]
    if isinstance(config, list):
        out = []
        for item in config:
            out.extend(_as_configs(item, quick, grid))
        return out
    return load_config(config, quick=quick, grid=grid)


def run_sweep(config, out_dir, n_jobs: int = -1, resume: bool = True, quick: bool = False,
              grid: dict | None = None, progress: bool = True,
              backend: str = "loky", scheduler: str | None = None) -> SweepResult:
    """Run every (sub-sweep, n, replication) task of a config, appending results durably.

    Parameters
    ----------
    config : str, path, dict, SimConfig or list of them
        Built-in name, TOML file, dict, or several (each becomes a sub-sweep).
    out_dir : str or Path
        Folder for ``results.jsonl`` (one JSON line per finished task, flushed and
        fsync'ed as it arrives) and ``sweep.json`` (the resolved configs and the
        profile, ``"quick"``). One sweep at a time writes a folder: it holds a lock
        on ``out_dir/.lock`` while it runs (see :class:`gmoe.records.ResultsFolder`).
    n_jobs : int, default=-1
        joblib workers (-1: all cores). Results do not depend on it.
    resume : bool, default=True
        Skip tasks already in the results file (a torn last line is dropped). With
        False, an existing results file is replaced.
    quick : bool, default=False
        Apply the config's ``[quick]`` profile to a name, path or dict, and record
        it in ``sweep.json``. :class:`SimConfig` objects are run as they are: pass
        ``quick=True`` with configs loaded by ``load_config(..., quick=True)`` so that
        the record says so.
    grid : dict, optional
        Extra ``{"dotted.key": [values]}`` settings to sweep.
    progress : bool, default=True
        Show a progress bar (tasks, failures, ETA) on stderr.
    backend : {"loky", "threading", "dask"}, default="loky"
        joblib backend on this machine, or ``"dask"`` for a Dask cluster (needs
        ``pip install 'gmoe[dask]'``).
    scheduler : str, optional
        With ``backend="dask"``: the scheduler address (``tcp://host:port``) of an
        existing cluster; default: a LocalCluster on 127.0.0.1 with ``n_jobs`` workers.

    Returns
    -------
    SweepResult

    Raises
    ------
    ResultsMismatchError
        The folder holds results of another config.
    gmoe.records.ResultsLockedError
        Another sweep is writing the folder.
    gmoe.records.ResultsNotWritableError
        The folder or a file in it cannot be written.
    gmoe.records.DamagedResultsError
        A line of the results file before the last is damaged; the message says how
        to recover (``gmoe repair``).
    """
    if backend not in ("loky", "threading", "multiprocessing", "dask"):
        raise ValueError(f"unknown backend {backend!r}; expected 'loky', 'threading', "
                         "'multiprocessing' or 'dask'")
    if backend == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ImportError("the dask backend needs the optional dependency "
                              "dask[distributed]: pip install 'gmoe[dask]'") from None
    configs = _as_configs(config, quick, grid)
    out = Path(out_dir)
    meta = {"sweep_hash": sweep_hash(configs), "quick": bool(quick),
            "configs": [c.to_dict() for c in configs]}
    tasks = [Task(s, i, r, n) for s, c in enumerate(configs)
             for i, n in enumerate(c.n_values) for r in range(c.reps)]
    x_evals = [evaluation_x(c) for c in configs]
    bar = None
    # one writer per folder: a second sweep into it stops here (ResultsLockedError)
    with ResultsFolder(out) as folder:
        done = folder.start(meta, {c.hash for c in configs}, resume)
        pending = [t for t in tasks if t.key not in done]
        pending.sort(key=lambda t: -t.n)  # longest first: better load balance
        start = time.perf_counter()
        n_failed = 0
        if progress and pending:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pending), desc=configs[0].name, unit="fit",
                       dynamic_ncols=True)
        try:
            if backend == "dask":
                stream = _dask_stream(pending, configs, x_evals, n_jobs, scheduler)
            elif n_jobs == 1:
                stream = (run_task(configs[t.sub], t, x_evals[t.sub]) for t in pending)
            else:
                jobs = (delayed(run_task)(configs[t.sub], t, x_evals[t.sub]) for t in pending)
                stream = Parallel(n_jobs=n_jobs, backend=backend,
                                  return_as="generator_unordered")(jobs)
            for record in stream:
                folder.append(record)
                if record["status"] != "ok":
                    n_failed += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=n_failed, refresh=False)
        finally:
            if bar is not None:
                bar.close()
    return SweepResult(out, configs, len(tasks), len(pending), len(tasks) - len(pending),
                       n_failed, time.perf_counter() - start)
