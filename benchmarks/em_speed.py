"""EM speed: milliseconds per EM iteration and seconds per fit (softmax gate).

Run by hand: ``python benchmarks/em_speed.py [--repeats 5]``. Prints a table; the
numbers are medians over repeats. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em
from gmoe._design import Design
from gmoe._em_loop import _run_em
from gmoe.settings import FitSettings


def truth_for(k: int, d: int) -> MoEParams:
    rng = np.random.default_rng(k * 10 + d)
    beta0 = np.append(rng.normal(0, 1, k - 1), 0.0)
    beta1 = np.vstack([rng.normal(0, 3, (k - 1, d)), np.zeros((1, d))])
    return MoEParams(beta0, beta1, rng.normal(0, 5, (k, d)), np.linspace(-10, 10, k),
                     np.full(k, 0.25))


def time_iterations(X, y, truth, iters=30, repeats=5) -> float:
    """Median ms per iteration of the EM loop, fixed iteration count (tol = 0: no early stop)."""
    design = Design(X, y)
    gate = SoftmaxGate()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = _run_em(design, gate, truth, FitSettings(tol=0.0, max_iter=iters), 1e-8)
        times.append((time.perf_counter() - t0) / run["n_iter"])
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"# gmoe EM speed, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'n':>8} {'k':>2} {'d':>2} {'ms/iter':>9} {'s/fit':>8} {'iters':>6}")
    for n in (1_000, 10_000, 100_000):
        for k in (2, 3):
            for d in (1, 5):
                truth = truth_for(k, d)
                X, y = GaussianMoE(SoftmaxGate(), truth).sample(n, rng=0)
                ms = time_iterations(X, y, truth, repeats=args.repeats)
                fits = []
                for r in range(args.repeats):
                    fit = fit_em(X, y, k, init="near_truth", truth=truth, rng=r, warn=False)
                    fits.append((fit.seconds, fit.n_iter))
                sec = float(np.median([f[0] for f in fits]))
                it = int(np.median([f[1] for f in fits]))
                print(f"{n:>8} {k:>2} {d:>2} {ms:>9.2f} {sec:>8.3f} {it:>6}")


if __name__ == "__main__":
    main()
