"""Parallel, seeded, resumable sweeps over sample size and replications: the
scheduling (joblib or Dask, progress, resume). What one task does is
:mod:`gmoe.tasks`; the results folder is :mod:`gmoe.records`."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from joblib import Parallel, delayed

from ._json import jsonable
from .config import SimConfig, load_config
from .records import (
    RESULTS_FILE,
    SWEEP_FILE,
    ResultsFolder,
    ResultsMismatchError,
    load_results,
)
from .tasks import Task, contaminate, evaluation_x, run_task

# the results folder's files are gmoe.records', a task's record gmoe.tasks'; their
# public names are re-exported here
__all__ = ["run_sweep", "load_results", "SweepResult", "RESULTS_FILE", "SWEEP_FILE",
           "ResultsMismatchError", "contaminate"]


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
                record = jsonable(task.record(configs[task.sub], status="error",
                                              reason=f"{type(exc).__name__}: {exc}",
                                              seconds=None))
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
