"""Screened restarts (``fit_em(screen_iter=...)``) against full restarts.

For each data set of the reference truth (docs/theory.md, "Reference setting"):
the time of ``n_init = 1``, of ``n_init = 5`` full restarts and of ``n_init = 5``
screened restarts (20 EM iterations each, the best run on), and whether the
screened fit reaches the full restarts' best log-likelihood (to 1e-6 nats per
1000 samples). Run by hand; prints one line per fit and a summary per (n, k).

    python benchmarks/screened_restarts.py [--sizes 10000 100000] [--sets 10 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gmoe import GaussianMoE, MoEParams, fit_em

TRUTH = MoEParams([-8.0, 0.0], [[25.0], [0.0]], [[-20.0], [20.0]], [15.0, -5.0],
                  [0.09, 0.16])


def timed(**kwargs):
    t0 = time.perf_counter()
    fit = fit_em(warn=False, **kwargs)
    return fit, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--sets", type=int, nargs="+", default=[10, 3],
                        help="data sets per size (one value per size)")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--screen", type=int, default=20)
    parser.add_argument("--out", default=None, help="write the rows as JSON lines")
    args = parser.parse_args()
    rows = []
    for n, sets in zip(args.sizes, args.sets, strict=True):
        for k in args.k:
            for seed in range(sets):
                X, y = GaussianMoE("softmax", TRUTH).sample(n, rng=1000 + seed)
                one, t1 = timed(X=X, y=y, n_experts=k, n_init=1, rng=seed)
                full, t5 = timed(X=X, y=y, n_experts=k, n_init=5, rng=seed)
                scr, ts = timed(X=X, y=y, n_experts=k, n_init=5, rng=seed,
                                screen_iter=args.screen)
                same = abs(scr.loglik - full.loglik) <= 1e-6 * n / 1000
                row = {"n": n, "k": k, "seed": seed, "t1": t1, "t5": t5, "t5_screened": ts,
                       "ll_full": full.loglik, "ll_screened": scr.loglik,
                       "ll_one": one.loglik, "same": bool(same),
                       "certified_full": bool(full.certified),
                       "certified_screened": bool(scr.certified)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            part = [r for r in rows if r["n"] == n and r["k"] == k]
            med = {key: float(np.median([r[key] for r in part]))
                   for key in ("t1", "t5", "t5_screened")}
            gap = [r["ll_full"] - r["ll_screened"] for r in part]
            print(f"n={n} k={k}: median s n_init=1 {med['t1']:.2f}, n_init=5 {med['t5']:.2f} "
                  f"({med['t5'] / med['t1']:.2f}x), screened {med['t5_screened']:.2f} "
                  f"({med['t5_screened'] / med['t1']:.2f}x); screened reaches the full best "
                  f"in {sum(r['same'] for r in part)}/{len(part)} (largest shortfall "
                  f"{max(gap):.3g} nats)", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
