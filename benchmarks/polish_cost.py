"""What the certified polish costs next to the EM it follows.

For the reference truth (docs/theory.md, "The reference setting") at n = 1e3, 1e4 and
1e5, fit k = 2 (exact) and k = 3 (over-specified) experts from one near-truth start
(SQUAREM, per-sample stop 1e-8), then time the polish alone on the EM result. Prints
EM seconds and iterations, polish milliseconds and Newton steps, their ratio, and
whether the fit was certified. A certified polish includes the observed information
at its end (the step test computes it; inference reuses it).

Run by hand: ``python benchmarks/polish_cost.py [--reps 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em
from gmoe._design import Design
from gmoe.polish import polish

TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = ap.parse_args()
    model = GaussianMoE(SoftmaxGate(), TRUTH)
    print(f"{'n':>7} {'k':>2} {'EM s':>8} {'EM it':>6} {'polish ms':>10} {'Newton':>7} "
          f"{'polish/EM':>10} certified")
    for n in args.sizes:
        for k in (2, 3):
            em_s, em_it, pol_ms, steps, ratio, cert = [], [], [], [], [], []
            for rep in range(args.reps):
                X, y = model.sample(n, rng=rep)
                t0 = time.perf_counter()
                fit = fit_em(X, y, k, init="near_truth", truth=TRUTH, rng=rep,
                             stop="per_sample", tol=1e-8, max_iter=5000, accelerate=True,
                             var_floor=0.01, polish=False, warn=False)
                em = time.perf_counter() - t0
                design = Design(X, y)
                t0 = time.perf_counter()
                with threadpool_limits(1, user_api="blas"):
                    res = polish(design, fit.gate, fit.params, 0.01)
                pol = time.perf_counter() - t0
                em_s.append(em)
                em_it.append(fit.n_iter)
                pol_ms.append(1e3 * pol)
                steps.append(res.n_iter)
                ratio.append(pol / em)
                cert.append(res.certified)
            print(f"{n:7d} {k:2d} {np.median(em_s):8.3f} {np.median(em_it):6.0f} "
                  f"{np.median(pol_ms):10.1f} {np.median(steps):7.0f} "
                  f"{np.median(ratio):10.2f} {sum(cert)}/{len(cert)}", flush=True)


if __name__ == "__main__":
    main()
