"""Accelerated EM (SQUAREM) against plain EM on the softmax over-specified setting.

Run by hand: ``python benchmarks/squarem.py [--seeds 8] [--sizes 1000 3000]``.

For each data set (the truth of docs/theory.md, "The reference setting"; k = 3 fitted,
near-truth start) plain EM runs to its stop at a relative change of 1e-10, and the
accelerated EM is timed by the M-steps it needs to REACH plain EM's final
log-likelihood (within 1e-10 relative): since EM runs are deterministic, the smallest
``max_iter`` at which the accelerated fit's log-likelihood reaches the target is that
count. Prints one row per data set and the median ratio per n. Not part of the test
suite.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em

TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.09, 0.16])


def msteps_to_reach(X, y, target: float, start: int, limit: int) -> int | None:
    """Smallest max_iter at which the accelerated fit reaches ``target`` (bisection)."""
    kw = dict(init="near_truth", truth=TRUTH, rng=1, tol=1e-10, warn=False, accelerate=True)
    if fit_em(X, y, 3, max_iter=limit, **kw).loglik < target:
        return None
    lo, hi = start - 1, limit  # the target is not reached at lo, reached at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fit_em(X, y, 3, max_iter=mid, **kw).loglik >= target:
            hi = mid
        else:
            lo = mid
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--max-iter", type=int, default=20000)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"{'n':>6s} {'seed':>4s} {'plain':>7s} {'SQUAREM':>8s} {'ratio':>6s} "
          f"{'plain s':>8s} {'SQUAREM s':>9s}")
    model = GaussianMoE(SoftmaxGate(), TRUTH)
    for n in args.sizes:
        ratios = []
        for seed in range(args.seeds):
            X, y = model.sample(n, rng=seed)
            t0 = time.perf_counter()
            plain = fit_em(X, y, 3, init="near_truth", truth=TRUTH, rng=1, tol=1e-10,
                           max_iter=args.max_iter, warn=False)
            t_plain = time.perf_counter() - t0
            target = plain.loglik - 1e-10 * abs(plain.loglik)
            reach = int(np.argmax(plain.loglik_trace >= target))
            t0 = time.perf_counter()
            fast = fit_em(X, y, 3, init="near_truth", truth=TRUTH, rng=1, tol=1e-10,
                          max_iter=args.max_iter, warn=False, accelerate=True)
            t_fast = time.perf_counter() - t0
            m = msteps_to_reach(X, y, target, 1, fast.n_iter)
            ratio = np.nan if m is None else m / max(reach, 1)
            ratios.append(ratio)
            print(f"{n:6d} {seed:4d} {reach:7d} {m if m is not None else '-':>8} "
                  f"{ratio:6.3f} {t_plain:8.3f} {t_fast:9.3f}", flush=True)
        print(f"{n:6d} median ratio {np.nanmedian(ratios):.3f} "
              f"(not reached: {int(np.sum(np.isnan(ratios)))})")


if __name__ == "__main__":
    main()
