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

``--keep DIR`` keeps the results; ``--against DIR`` compares this run's fits with a
kept run of the same sub-sample under other settings, task by task (same data sets:
the task seeds do not depend on the fit settings).
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
    parser.add_argument("--keep", metavar="DIR",
                        help="write the sweep's results to DIR (fresh) instead of a "
                             "temporary folder, e.g. to compare settings task by task")
    parser.add_argument("--against", metavar="DIR",
                        help="a --keep folder of the same sub-sample under other settings: "
                             "compare the fits task by task")
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
    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or scratch
        t0 = time.perf_counter()
        result = run_sweep(data, out, n_jobs=args.n_jobs, progress=False, resume=False)
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
    print(f"certified {int(df['certified'].sum())} / {len(df)}, degenerate "
          f"{int(df['degenerate'].sum())}")
    if args.against:
        compare(df, load_results(args.against))


def compare(df, other, same: float = 1e-6) -> None:
    """Final log-likelihoods of the same tasks under two settings (this run - other)."""
    both = df.merge(other, on=["n", "rep"], suffixes=("", "_other"))
    if not np.allclose(both["loglik_true"], both["loglik_true_other"], rtol=1e-12):
        raise SystemExit("--against: the two runs did not fit the same data sets")
    diff = (both["loglik"] - both["loglik_other"]).to_numpy()
    lower, apart = diff < -same, abs(diff) > same
    cert, cert_other = both["certified"].to_numpy(), both["certified_other"].to_numpy()
    print(f"against {len(both)} tasks: same (within {same:g} nats) {int((~apart).sum())}, "
          f"higher {int((diff > same).sum())} (largest {max(diff.max(), 0):.3g}), "
          f"lower {int(lower.sum())} (largest {max(-diff.min(), 0):.3g}; certified in "
          f"the other run {int(cert_other[lower].sum())}); certified here / there "
          f"{int(cert.sum())} / {int(cert_other.sum())}; both certified and apart "
          f"{int((cert & cert_other & apart).sum())}")


if __name__ == "__main__":
    main()
