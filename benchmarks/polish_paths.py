"""Where the polish ends, against another revision's Newton loop, from the same EM results.

Over-specified fits of the reference truth (docs/theory.md, "The reference setting"):
EM results (no polish) of k = 3 from the published start noise at n = 1e4, 3e4, 1e5
(5 restarts, SQUAREM, per-sample stop 1e-8) and at n = 200 to 3000, and of k = 3 and 4
from k-means starts at n = 300 to 1e4; every EM result is then polished by the current
Newton loop and by that of ``--baseline`` (default ``0740c68``: the last polish whose
steps were eigenvalue-modified Newton steps capped at 2 per coordinate, before the
trust-region steps; ``af7985f`` is the step cap that doubled along ridges, tried and
withdrawn), and the two are compared: same point
(log-likelihood within 1e-6 relative), the baseline higher or lower; certified; Newton
steps; seconds, each as current -> baseline. The numbers of "The certified polish" in
docs/performance.md. Certified is what the polish reports: look at the gate
parameters too (a fit near the edge of the model family can pass the score test).

Run by hand: ``python benchmarks/polish_paths.py [--baseline REV] [--quick]``
(``--quick``: one data set per size, about a minute; the full run takes about 3 min).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import gmoe._restarts as restarts
from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em
from gmoe._design import Design
from gmoe.polish import polish

TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])
#: (label, sizes, replications, k values, fit_em arguments)
SETS = [
    ("published start", (10_000, 30_000, 100_000), 3, (3,),
     dict(init="near_truth", init_scale="published", n_init=5, stop="per_sample",
          tol=1e-8, accelerate=True)),
    ("published start", (200, 500, 1000, 3000), 8, (3,),
     dict(init="near_truth", init_scale="published", n_init=5, stop="per_sample",
          tol=1e-8, accelerate=True)),
    ("k-means start", (300, 1000, 3000, 10_000), 6, (3, 4), dict(init="kmeans", n_init=5)),
]


def em_results(quick: bool) -> list[tuple]:
    """(set label, n, EM result inputs) of every restart, caught where fit_em polishes."""
    model = GaussianMoE(SoftmaxGate(), TRUTH)
    caught: list = []
    original = restarts._polish

    def catch(design, gate, params, var_floor, **kwargs):
        caught.append((design.X.copy(), design.y.copy(), params, var_floor, kwargs["gtol"]))
        return original(design, gate, params, var_floor, **kwargs)

    restarts._polish = catch
    out = []
    try:
        for label, sizes, reps, ks, kwargs in SETS:
            for n in sizes:
                for rep in range(1 if quick else reps):
                    for k in ks:
                        X, y = model.sample(n, rng=(rep if label != "k-means start"
                                                    else 100 + rep))
                        caught.clear()
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            truth = TRUTH if kwargs["init"] == "near_truth" else None
                            fit_em(X, y, k, truth=truth, rng=rep, var_floor=0.01,
                                   warn=False, **kwargs)
                        out += [(label, n, item) for item in caught]
    finally:
        restarts._polish = original
    return out


def polish_all(items, newton) -> list[tuple]:
    """(seconds, Newton steps, log-likelihood, certified, certified with a gate parameter
    above 100) of each item's polish, with the given Newton loop in place of the
    current one."""
    import gmoe.polish as module

    current = module._newton
    module._newton = newton
    rows = []
    try:
        for _, _, (X, y, params, var_floor, gtol) in items:
            design = Design(X, y)
            with threadpool_limits(1, user_api="blas"):
                t0 = time.perf_counter()
                res = polish(design, SoftmaxGate(), params, var_floor, gtol=gtol)
                gate = max(np.max(np.abs(res.params.beta0)), np.max(np.abs(res.params.beta1)))
                rows.append((time.perf_counter() - t0, res.n_iter, res.loglik,
                             res.certified, res.certified and gate > 100))
    finally:
        module._newton = current
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="0740c68",
                    help="git revision whose gmoe/polish.py Newton loop is compared")
    ap.add_argument("--quick", action="store_true", help="one data set per size")
    args = ap.parse_args()
    from _baseline import load

    import gmoe.polish as module

    old = load(args.baseline, "gmoe/polish.py")._newton
    items = em_results(args.quick)
    before = polish_all(items, module._newton)   # current
    after = polish_all(items, old)               # baseline
    print(f"# {len(items)} polishes; columns: current -> baseline {args.baseline}")
    print(f"{'set':16s} {'n':>7s} {'fits':>5s} {'same':>5s} {'higher':>7s} {'lower':>6s} "
          f"{'largest lower':>13s} {'certified':>11s} {'|gate|>100':>11s} {'steps':>11s} "
          f"{'seconds':>13s}")
    keys = sorted({(label, n) for label, n, _ in items}, key=lambda t: (t[0], t[1]))
    for label, n in keys:
        idx = [i for i, (lab, m, _) in enumerate(items) if (lab, m) == (label, n)]
        diff = np.array([after[i][2] - before[i][2] for i in idx])
        tol = 1e-6 * np.abs([before[i][2] for i in idx])
        lower = diff < -tol
        print(f"{label:16s} {n:7d} {len(idx):5d} {int(np.sum(np.abs(diff) <= tol)):5d} "
              f"{int(np.sum(diff > tol)):7d} {int(lower.sum()):6d} "
              f"{(-diff[lower].min() if lower.any() else 0.0):13.3g} "
              f"{sum(before[i][3] for i in idx):5d}->{sum(after[i][3] for i in idx):<5d} "
              f"{sum(before[i][4] for i in idx):5d}->{sum(after[i][4] for i in idx):<5d} "
              f"{sum(before[i][1] for i in idx):5d}->{sum(after[i][1] for i in idx):<5d} "
              f"{sum(before[i][0] for i in idx):6.2f}->{sum(after[i][0] for i in idx):<6.2f}")


if __name__ == "__main__":
    main()
