"""Run every built-in simulation and redraw its figures: ``gmoe reproduce``."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from .config import list_configs
from .plots import plot_sweep
from .records import RESULTS_FILE, SWEEP_FILE, results_folder
from .sweep import run_sweep
from .tables import RATES_CSV, RATES_TXT, rate_table, write_rates

__all__ = ["archive_figures", "reproduce"]


def archive_figures(results, dest) -> Path:
    """Copy a finished sweep's figures, rate table, resolved config and results into
    ``dest``, the layout of the committed ``figures/NAME`` folders.

    ``dest`` receives the PNG/PDF figures, ``rates.txt``, ``rates.csv``,
    ``sweep.json`` and ``results.jsonl.gz`` (the results, gzipped with no time stamp,
    so the same results give the same bytes), which ``gmoe rates`` and ``gmoe plot``
    read without refitting.

    Returns
    -------
    Path
        ``dest``.
    """
    results, dest = Path(results), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(results.iterdir()):
        if path.suffix in (".png", ".pdf") or path.name in (RATES_TXT, RATES_CSV, SWEEP_FILE):
            shutil.copy2(path, dest / path.name)
    with open(results / RESULTS_FILE, "rb") as src, \
            gzip.GzipFile(dest / (RESULTS_FILE + ".gz"), "wb", mtime=0) as out:
        shutil.copyfileobj(src, out)
    return dest


def reproduce(quick: bool = False, n_jobs: int = -1, out_root: Path | str = "results",
              figures: Path | str | None = None, names=None, progress: bool = True):
    """Run the built-in configs (resumable), write their rate tables and figures.

    Parameters
    ----------
    quick : bool, default=False
        Use each config's ``[quick]`` profile.
    n_jobs : int, default=-1
    out_root : path, default="results"
        Each config writes to ``out_root/NAME[-quick]`` (its results, ``rates.csv``,
        ``rates.txt`` and figures).
    figures : path, optional
        Also archive each config's figures, rate table, resolved config and results
        in ``figures/NAME`` (``figures/NAME-quick`` with ``quick``;
        :func:`archive_figures`: the layout of the committed figures).
    names : list of str, optional
        A subset of the built-in configs (default: all).

    Returns
    -------
    pandas.DataFrame
        The rate table of every config, with a ``config`` column.
    """
    import pandas as pd

    names = list(list_configs()) if names is None else list(names)
    tables = []
    for name in names:
        out = results_folder(name, quick, out_root)
        run_sweep(name, out, quick=quick, n_jobs=n_jobs, progress=progress)
        table = rate_table(out)
        table.insert(0, "config", name)
        write_rates(out, table)
        tables.append(table)
        plot_sweep(out)
        if figures is not None:
            # NAME-quick for the quick profile: never over a full run's archive
            archive_figures(out, Path(figures) / out.name)
        print(f"{name}: {out}")
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
