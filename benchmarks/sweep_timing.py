"""Sweep timing: wall time of a built-in config on this machine, with the split
between EM and the metrics, extrapolated to the config's full size.

Run by hand: ``python benchmarks/sweep_timing.py softmax-exact --num 20 --reps 4``.
The sub-sample keeps the config's n range (log-spaced), so the mean task time is
representative of the full grid.

``--set KEY=VALUE`` (repeatable, dotted keys, TOML values) changes the config,
``--no-grid`` drops its ``[grid]`` sub-sweeps, and ``--target NUM REPS`` extrapolates
to another size than the config's. The published over-specified protocol, plain and
accelerated::

    python benchmarks/sweep_timing.py softmax-over --no-grid --target 200 40
    python benchmarks/sweep_timing.py softmax-over --no-grid --target 200 40 \
        --set fit.accelerate=true
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tomllib

import numpy as np

from gmoe.config import expand, read_config
from gmoe.sweep import load_results, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", default="softmax-exact")
    parser.add_argument("--num", type=int, default=20, help="sizes in the sub-sample")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (dotted, TOML value)")
    parser.add_argument("--no-grid", action="store_true", help="drop the [grid] table")
    parser.add_argument("--target", type=int, nargs=2, metavar=("NUM", "REPS"),
                        help="extrapolate to NUM sizes x REPS replications")
    args = parser.parse_args()
    data = read_config(args.config)
    data.pop("quick", None)
    if args.no_grid:
        data.pop("grid", None)
    for item in args.set:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[last] = tomllib.loads(f"v = {value}")["v"]
    full = expand(data)
    subs = len(full)
    n_full = (subs * args.target[0] * args.target[1] if args.target
              else sum(len(c.n_values) * c.reps for c in full))
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
    changes = " ".join(args.set + (["--no-grid"] if args.no_grid else []))
    print(f"# {args.config} {changes}: {tasks} tasks (n {df['n'].min()}..{df['n'].max()}), "
          f"{os.cpu_count()} cores, n_jobs={args.n_jobs}")
    print(f"wall {wall:.1f} s = {per_task:.3f} s/task; per task (one worker): "
          f"{total:.3f} s of which EM {fit:.3f} s, metrics {total - fit:.3f} s")
    print(f"extrapolated full config ({n_full} tasks): {n_full * per_task / 60:.1f} min")


if __name__ == "__main__":
    main()
