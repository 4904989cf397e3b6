"""The cost of ``init="auto"`` against ``init="kmeans"`` with the same ``n_init``.

Run by hand: ``python benchmarks/auto_cost.py [--k 2 3 5 10 20 40] [--n 300]
[--n-init 5]``.

The data are those of the issue that asked for it: n points of a hard switch at
x = 0 between two lines (``y = 3x`` and ``y = -1 - 2x``, noise sd 0.2), so every
k > 2 is over-specified and EM runs long. Each fit is a ``MoERegressor`` fit (polish
and standardisation on, one BLAS thread), timed once. Prints k, the seconds of both
inits, their ratio, and the final log-likelihoods. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np

from gmoe import MoERegressor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[2, 3, 5, 10, 20, 40])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--n-init", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(args.n, 1))
    y = np.where(X[:, 0] > 0, 3 * X[:, 0], -1 - 2 * X[:, 0]) + 0.2 * rng.standard_normal(args.n)
    print(f"# n = {args.n}, n_init = {args.n_init}; {platform.processor() or platform.machine()}")
    print(f"{'k':>3} {'kmeans s':>9} {'auto s':>8} {'ratio':>6} {'loglik kmeans':>14} "
          f"{'loglik auto':>12}")
    for k in args.k:
        seconds, logliks = [], []
        for init in ("kmeans", "auto"):
            reg = MoERegressor(n_experts=k, init=init, n_init=args.n_init, random_state=0)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reg.fit(X, y)
            seconds.append(time.perf_counter() - start)
            logliks.append(reg.loglik_)
        print(f"{k:>3} {seconds[0]:>9.2f} {seconds[1]:>8.2f} {seconds[1] / seconds[0]:>6.2f} "
              f"{logliks[0]:>14.3f} {logliks[1]:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
