"""Run every built-in simulation and redraw its figures: ``gmoe reproduce``."""

from __future__ import annotations

import shutil
from pathlib import Path

from .config import list_configs
from .plots import plot_sweep
from .records import results_folder
from .sweep import run_sweep
from .tables import rate_table, write_rates

__all__ = ["reproduce"]


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
        Also copy the PNG/PDF figures and a compact ``NAME.rates.csv`` there.
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
        files = plot_sweep(out)
        if figures is not None:
            dest = Path(figures)
            dest.mkdir(parents=True, exist_ok=True)
            for path in files:
                shutil.copy2(path, dest / path.name)
            table.to_csv(dest / f"{name}.rates.csv", index=False)
        print(f"{name}: {out}")
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
