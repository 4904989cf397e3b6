"""Peak memory of one certified fit at n = 1e6 (target: under 1 GB).

Run by hand: ``python benchmarks/memory_peak.py [--n 1000000] [--k 4] [--d 5]``; prints
the peak resident set size of this process (``ru_maxrss``) before and after the fit
(with the polish) and after its standard errors (the observed information).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--d", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    k, d = args.k, args.d
    beta0 = np.append(rng.normal(0, 1, k - 1), 0.0)
    beta1 = np.vstack([rng.normal(0, 2, (k - 1, d)), np.zeros((1, d))])
    truth = MoEParams(beta0, beta1, rng.normal(0, 3, (k, d)), np.linspace(-6, 6, k),
                      np.full(k, 0.25))
    X, y = GaussianMoE(SoftmaxGate(), truth).sample(args.n, rng=1)
    before = peak_mb()
    t0 = time.perf_counter()
    fit = fit_em(X, y, k, init="kmeans", rng=0, max_iter=50, warn=False)
    seconds = time.perf_counter() - t0
    print(f"n={args.n} k={k} d={d}: data {X.nbytes / 2**20 + y.nbytes / 2**20:.0f} MB, "
          f"peak RSS before fit {before:.0f} MB, after fit {peak_mb():.0f} MB; "
          f"{fit.n_iter} iterations in {seconds:.1f} s; certified {fit.certified} "
          f"({fit.polish_iter} Newton steps: {fit.polish_message})")
    if fit.certified:  # the information is computed when inference first asks for it
        t0 = time.perf_counter()
        se = fit.bse
        print(f"standard errors (observed information) in {time.perf_counter() - t0:.1f} s, "
              f"finite: {bool(np.isfinite(se.b).all())}; peak RSS {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
