"""Screened restarts and sampled k-means against full restarts: the final fits.

For data sets of four families, fit ``MoERegressor`` with k = 2 and 3 experts under
the estimator's former default (``init="auto"``, ``n_init=5``, full restarts:
``screen_tol=None, kmeans_sample=None``) and under each candidate setting, with the
same ``random_state``, and compare the final log-likelihoods and the times. The
families (``--families``):

* ``ref``: the reference truth (docs/theory.md, "The reference setting"; k* = 2, so
  k = 3 is over-specified);
* ``k3``: three overlapping experts on one covariate (k = 2 under-specified, k = 3
  exact);
* ``d2``: three experts on two covariates;
* ``switch``: a hard switch at x = 0 between two lines (``benchmarks/auto_cost.py``'s
  data: no softmax gate is exact, k = 3 over-specified).

A candidate is ``name=key=value,key=value`` with MoERegressor arguments (``None``
allowed), e.g. ``default=`` (the estimator's current defaults) or
``tol3=screen_tol=1e-3,kmeans_sample=2000``. Prints one JSON line per fit and a
summary per (n, k, candidate): how many fits end above, at (within ``--same``
nats) and below the full restarts' log-likelihood, the largest shortfall, and the
median CPU-time ratio. Run by hand:

    python benchmarks/screened_restarts.py [--sizes 1000 10000] [--sets 6 4]
        [--candidates default= ...] [--out rows.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np

from gmoe import GaussianMoE, MoEParams, MoERegressor

TRUTHS = {
    "ref": MoEParams([-8.0, 0.0], [[25.0], [0.0]], [[-20.0], [20.0]], [15.0, -5.0],
                     [0.09, 0.16]),
    "k3": MoEParams([0.5, 1.0, 0.0], [[-4.0], [0.0], [0.0]], [[1.0], [-1.0], [0.5]],
                    [0.0, 1.0, -0.5], [0.3**2, 0.4**2, 0.3**2]),
    "d2": MoEParams([0.3, -0.2, 0.0], [[2.0, -1.0], [-1.5, 2.0], [0.0, 0.0]],
                    [[1.5, 0.5], [-1.0, 1.0], [0.2, -1.5]], [0.5, -0.5, 0.0],
                    [0.5**2, 0.4**2, 0.6**2]),
}
FULL = {"screen_tol": None, "kmeans_sample": None}


def make_data(family: str, n: int, seed: int):
    """(X, y) of one data set of a family; seeds differ between families."""
    offset = {"ref": 1000, "k3": 2000, "d2": 3000, "switch": 4000}[family] + seed
    if family == "switch":
        rng = np.random.default_rng(offset)
        X = rng.uniform(-1, 1, size=(n, 1))
        y = (np.where(X[:, 0] > 0, 3 * X[:, 0], -1 - 2 * X[:, 0])
             + 0.2 * rng.standard_normal(n))
        return X, y
    return GaussianMoE("softmax", TRUTHS[family]).sample(n, rng=offset)


def parse_candidate(text: str) -> tuple[str, dict]:
    """``name=key=value,...`` as (name, keyword arguments)."""
    name, _, rest = text.partition("=")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        kwargs[key] = None if value == "None" else json.loads(value)
    return name, kwargs


def fit(X, y, k, seed, kwargs):
    """(MoERegressor, CPU seconds)."""
    cpu = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = MoERegressor(n_experts=k, random_state=seed, **kwargs).fit(X, y)
    return reg, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--sets", type=int, nargs="+", default=[6, 4],
                        help="data sets per size and family (one value per size)")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--families", nargs="+", default=["ref", "k3", "d2", "switch"])
    parser.add_argument("--candidates", nargs="+", default=["default="])
    parser.add_argument("--same", type=float, default=1e-6,
                        help="nats within which two fits count as equal")
    parser.add_argument("--out", default=None, help="append the rows as JSON lines")
    args = parser.parse_args()
    candidates = dict(map(parse_candidate, args.candidates))
    print(f"# load average {os.getloadavg()}; candidates {candidates}", flush=True)
    rows = []
    for n, sets in zip(args.sizes, args.sets, strict=True):
        for family in args.families:
            for seed in range(sets):
                X, y = make_data(family, n, seed)
                for k in args.k:
                    full, t_full = fit(X, y, k, seed, FULL)
                    for name, kwargs in candidates.items():
                        reg, t = fit(X, y, k, seed, kwargs)
                        row = {"n": n, "family": family, "seed": seed, "k": k,
                               "candidate": name, "ll_full": full.loglik_,
                               "ll": reg.loglik_, "diff": reg.loglik_ - full.loglik_,
                               "cpu_full": t_full, "cpu": t,
                               "certified_full": bool(full.certified_),
                               "certified": bool(reg.certified_)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        if args.out:
                            with open(args.out, "a") as fh:
                                fh.write(json.dumps(row) + "\n")
    print(f"# load average {os.getloadavg()}; per (n, k, candidate), all families:")
    for n in args.sizes:
        for k in args.k:
            for name in candidates:
                part = [r for r in rows if (r["n"], r["k"], r["candidate"]) == (n, k, name)]
                diff = np.array([r["diff"] for r in part])
                ratio = np.median([r["cpu"] / r["cpu_full"] for r in part])
                print(f"n={n} k={k} {name}: {len(part)} fits, above {np.sum(diff > args.same)}, "
                      f"equal {np.sum(np.abs(diff) <= args.same)}, below "
                      f"{np.sum(diff < -args.same)} (largest shortfall {-min(diff.min(), 0):.3g} "
                      f"nats, largest gain {max(diff.max(), 0):.3g}); CPU time / full "
                      f"{ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
