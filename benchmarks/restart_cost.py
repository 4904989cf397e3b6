"""What five restarts cost next to one (issue 16, target 2).

For the reference truth (docs/theory.md, "The reference setting"), fit k = 2 (exact)
and k = 3 (over-specified) experts with ``n_init = 1`` and ``5`` under each of a few
fit settings, timing the two in the same round (interleaved, so that a shared
machine's load weighs on both alike). The settings (``--configs``):

* ``kmeans``: ``fit_em(init="kmeans")``, full restarts (fit_em's default start);
* ``full``: ``MoERegressor(init="auto", screen_tol=None, kmeans_sample=None)``, the
  estimator's default before screened restarts became its default;
* ``default``: ``MoERegressor()`` with its defaults (screened restarts from k-means
  on a sample, see the user guide, "Fitting your own data");
* ``sampled``: ``full`` with ``kmeans_sample=2000`` only;
* ``screened``: ``full`` with ``screen_tol=1e-4`` only.

Each fit is timed by the wall clock and by the process's CPU time (one BLAS thread:
the CPU time is the fit's own work, less sensitive to other jobs on the machine than
the wall time). Prints per (n, data set, k, setting) the medians over rounds of both
times for each ``n_init``, the median of the per-round ratios (CPU and wall), the
number of distinct EM runs among the final runs and both log-likelihoods; then the
medians of the ratios per (n, k, setting).

Run by hand: ``python benchmarks/restart_cost.py [--n 10000 100000] [--reps 2]
[--rounds 3] [--k 2 3] [--configs kmeans full default] [--no-polish]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np

from gmoe import GaussianMoE, MoEParams, MoERegressor, SoftmaxGate, fit_em

TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])
#: MoERegressor's settings before screened restarts were its default
FULL = dict(screen_tol=None, kmeans_sample=None)
CONFIGS = {"full": FULL, "default": {}, "sampled": dict(FULL, kmeans_sample=2000),
           "screened": dict(FULL, screen_tol=1e-4)}


def timed(X, y, k, n_init, seed, config, polish):
    """(fit result, wall seconds, CPU seconds) of one fit."""
    wall, cpu = time.perf_counter(), time.process_time()
    if config == "kmeans":
        fit = fit_em(X, y, k, init="kmeans", n_init=n_init, rng=seed, polish=polish,
                     warn=False)
    else:
        reg = MoERegressor(n_experts=k, n_init=n_init, random_state=seed, polish=polish,
                           **CONFIGS[config])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = reg.fit(X, y).result_
    return fit, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000])
    ap.add_argument("--k", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--reps", type=int, default=2, help="data sets")
    ap.add_argument("--rounds", type=int, default=3, help="timings per data set")
    ap.add_argument("--configs", nargs="+", default=["kmeans", "full", "default"],
                    choices=["kmeans", *CONFIGS])
    ap.add_argument("--no-polish", action="store_true")
    ap.add_argument("--json", help="append one JSON line per (n, data set, k, setting)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    polish = not args.no_polish
    model = GaussianMoE(SoftmaxGate(), TRUTH)
    Xw, yw = model.sample(500, rng=12345)
    fit_em(Xw, yw, 2, warn=False)  # warm-up
    print(f"# load average {os.getloadavg()}, polish {polish}", flush=True)
    print(f"{'n':>6} {'rep':>3} {'k':>1} {'setting':>8} {'cpu1':>7} {'cpu5':>7} {'wall1':>7} "
          f"{'wall5':>7} {'x cpu':>6} {'x wall':>6} {'runs':>4} {'ll1':>14} {'ll5':>14}",
          flush=True)
    rows = []
    for n in args.n:
        for rep in range(args.reps):
            X, y = model.sample(n, rng=rep)
            for k in args.k:
                for config in args.configs:
                    times = {1: [], 5: []}
                    for _ in range(args.rounds):
                        fits = {}
                        for n_init in (1, 5):
                            fits[n_init], wall, cpu = timed(X, y, k, n_init, rep, config,
                                                            polish)
                            times[n_init].append((wall, cpu))
                    t1, t5 = np.array(times[1]), np.array(times[5])
                    ratio = np.median(t5 / t1, axis=0)
                    f1, f5 = fits[1], fits[5]
                    row = dict(n=n, rep=rep, k=k, config=config, polish=polish,
                               wall1=float(np.median(t1[:, 0])), cpu1=float(np.median(t1[:, 1])),
                               wall5=float(np.median(t5[:, 0])), cpu5=float(np.median(t5[:, 1])),
                               ratio_wall=float(ratio[0]), ratio_cpu=float(ratio[1]),
                               runs=len(set(f5.restart_logliks)), ll1=f1.loglik,
                               ll5=f5.loglik, cert5=bool(f5.certified),
                               load=os.getloadavg()[0])
                    rows.append(row)
                    print(f"{n:6d} {rep:3d} {k:1d} {config:>8} {row['cpu1']:7.3f} "
                          f"{row['cpu5']:7.3f} {row['wall1']:7.3f} {row['wall5']:7.3f} "
                          f"{row['ratio_cpu']:6.2f} {row['ratio_wall']:6.2f} {row['runs']:4d} "
                          f"{f1.loglik:14.4f} {f5.loglik:14.4f}", flush=True)
                    if args.json:
                        with open(args.json, "a") as fh:
                            fh.write(json.dumps(row) + "\n")
    print(f"# load average {os.getloadavg()}; medians over data sets:")
    for n in args.n:
        for k in args.k:
            for config in args.configs:
                sel = [r for r in rows if (r["n"], r["k"], r["config"]) == (n, k, config)]
                med = {key: float(np.median([r[key] for r in sel]))
                       for key in ("cpu1", "cpu5", "ratio_cpu", "ratio_wall")}
                print(f"n={n} k={k} {config}: CPU s {med['cpu1']:.3f} / {med['cpu5']:.3f}, "
                      f"ratio CPU {med['ratio_cpu']:.2f}, wall {med['ratio_wall']:.2f}")


if __name__ == "__main__":
    main()
