"""What five k-means restarts cost next to one (issue 16, target 2).

For the reference truth (docs/theory.md, "The reference setting") at n = 1e5, fit
k = 2 (exact) and k = 3 (over-specified) experts with ``fit_em(init="kmeans")`` and
``n_init = 1`` and ``5``, with and without the certified polish, timing the two in
the same round (interleaved, so that a shared machine's load weighs on both alike).
Prints per (k, polish) the median seconds of each, the median of the per-round ratios,
the number of distinct EM runs among the five restarts (a restart whose k-means
partition repeats an earlier one is not run again, see docs/performance.md,
"Restarts") and the log-likelihoods.

Run by hand: ``python benchmarks/restart_cost.py [--n 100000] [--reps 3] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em

TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])


def timed(X, y, k, n_init, seed, polish):
    t0 = time.perf_counter()
    fit = fit_em(X, y, k, init="kmeans", n_init=n_init, rng=seed, polish=polish, warn=False)
    return fit, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3, help="data sets")
    ap.add_argument("--rounds", type=int, default=3, help="timings per data set")
    ap.add_argument("--json", help="append one JSON line per (data set, k, polish)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    model = GaussianMoE(SoftmaxGate(), TRUTH)
    print(f"{'k':>2} {'polish':>6} {'rep':>3} {'n_init=1 s':>10} {'n_init=5 s':>10} "
          f"{'ratio':>6} {'distinct':>8} {'ll1':>14} {'ll5':>14}", flush=True)
    for rep in range(args.reps):
        X, y = model.sample(args.n, rng=rep)
        for k in (2, 3):
            for polish in (False, True):
                t1, t5, ratios = [], [], []
                for _ in range(args.rounds):
                    f1, s1 = timed(X, y, k, 1, rep, polish)
                    f5, s5 = timed(X, y, k, 5, rep, polish)
                    t1.append(s1)
                    t5.append(s5)
                    ratios.append(s5 / s1)
                distinct = len(set(f5.restart_logliks))
                row = dict(n=args.n, rep=rep, k=k, polish=polish, t1=float(np.median(t1)),
                           t5=float(np.median(t5)), ratio=float(np.median(ratios)),
                           distinct=distinct, ll1=f1.loglik, ll5=f5.loglik,
                           cert1=f1.certified, cert5=f5.certified)
                print(f"{k:2d} {str(polish):>6} {rep:3d} {row['t1']:10.3f} {row['t5']:10.3f} "
                      f"{row['ratio']:6.2f} {distinct:8d} {f1.loglik:14.4f} {f5.loglik:14.4f}",
                      flush=True)
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
