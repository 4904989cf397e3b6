"""Sweep timing: wall time of a built-in config on this machine, with the split
between EM and the metrics, extrapolated to the config's full size.

Run by hand: ``python benchmarks/sweep_timing.py softmax-exact --num 20 --reps 4``.
The sub-sample keeps the config's n range (log-spaced), so the mean task time is
representative of the full grid.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from gmoe.config import load_config, read_config
from gmoe.sweep import load_results, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", default="softmax-exact")
    parser.add_argument("--num", type=int, default=20, help="sizes in the sub-sample")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args()
    full = load_config(args.config)
    n_full = sum(len(c.n_values) * c.reps for c in full)
    data = read_config(args.config)
    data.pop("quick", None)
    grid = data["n_grid"]
    values = np.geomspace(min(full[0].n_values), max(full[0].n_values), args.num)
    data["n_grid"] = {"values": sorted({int(round(v)) for v in values})}
    data["reps"] = args.reps
    if "min" not in grid and "values" not in grid:
        raise SystemExit("config has no n grid")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = run_sweep(data, out, n_jobs=args.n_jobs, progress=False)
        wall = time.perf_counter() - t0
        df = load_results(out)
    tasks = result.n_tasks
    per_task = wall / tasks
    fit = float(df["fit_seconds"].mean())
    total = float(df["seconds"].mean())
    print(f"# {args.config}: {tasks} tasks (n {df['n'].min()}..{df['n'].max()}), "
          f"{os.cpu_count()} cores, n_jobs={args.n_jobs}")
    print(f"wall {wall:.1f} s = {per_task:.3f} s/task; per task (one worker): "
          f"{total:.3f} s of which EM {fit:.3f} s, metrics {total - fit:.3f} s")
    print(f"extrapolated full config ({n_full} tasks): {n_full * per_task / 60:.1f} min")


if __name__ == "__main__":
    main()
