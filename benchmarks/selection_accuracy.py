"""How often does each criterion choose the true number of experts? Reference truth.

For ``--reps`` data sets of size ``--n`` from the reference truth (docs/theory.md,
"The reference setting"; k* = 2), fit k = 1..``--k-max`` experts (near-truth start
with noise c = 1, certified by the polish, the variance floor 0.01 of the softmax-over
config) and record the number of experts chosen by the dendrogram selection
criterion (DSC, from the k_max-expert fit alone; in the data's standardised
coordinates, gmoe's default, and in the model's raw parametrisation, the published
construction) and by AIC, BIC and ICL (from the fits of every k). With
``--outliers`` a share of y is replaced by outliers (:func:`gmoe.sweep.contaminate`,
scale 10) after the clean sample is drawn, so both runs see the same clean data.

Every criterion is lower-is-better (docs/theory.md, "Choosing the number of
experts"). Prints one line per data set and the counts of each choice.

Run by hand (background it: about 30 s per data set at n = 2e4 on one free core):
``python benchmarks/selection_accuracy.py [--n 20000] [--reps 20] [--k-max 5]
[--outliers 0.05] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em
from gmoe.selection import aic, bic, dendrogram, icl, n_parameters, responsibility_entropy
from gmoe.sweep import contaminate

TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])
METHODS = ("dsc", "dsc_raw", "aic", "bic", "icl")


def one_rep(rep: int, args) -> dict:
    seq = np.random.SeedSequence(args.seed, spawn_key=(rep,))
    data_seed, fit_seed = seq.spawn(2)
    data_rng = np.random.default_rng(data_seed)
    X, y = GaussianMoE(SoftmaxGate(), TRUTH).sample(args.n, rng=data_rng)
    y = contaminate(y, args.outliers, 10.0, data_rng)
    fits = {}
    start = time.perf_counter()
    for k, stream in zip(range(1, args.k_max + 1), fit_seed.spawn(args.k_max), strict=True):
        fits[k] = fit_em(X, y, k, init="near_truth", truth=TRUTH, rng=np.random.default_rng(stream),
                         stop="per_sample", tol=1e-8, accelerate=True, var_floor=0.01,
                         warn=False)
    top = fits[args.k_max]
    row = {"rep": rep, "n": args.n, "outliers": args.outliers,
           "params": top.params.to_dict(),
           "certified": [bool(fits[k].certified) for k in sorted(fits)],
           "dsc": dendrogram(top, X, y).select(),
           "dsc_raw": dendrogram(top, X, y, standardize=False).select()}
    crit = {"aic": [], "bic": [], "icl": []}
    for k in sorted(fits):
        f = fits[k]
        p = n_parameters(f.params, f.gate)
        crit["aic"].append(aic(f.loglik, p))
        crit["bic"].append(bic(f.loglik, p, args.n))
        crit["icl"].append(icl(f.loglik, p, args.n, responsibility_entropy(f.model, X, y)))
    for name, values in crit.items():
        ok = np.array([fits[k].success for k in sorted(fits)])
        row[name] = int(np.nanargmin(np.where(ok, values, np.nan))) + 1
    row["seconds"] = time.perf_counter() - start
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--k-max", type=int, default=5)
    ap.add_argument("--outliers", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=20251014)
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    rows = []
    wall = time.perf_counter()
    for rep in range(args.reps):
        row = one_rep(rep, args)
        rows.append(row)
        print(f"rep {rep:2d}: " + "  ".join(f"{m}={row[m]}" for m in METHODS)
              + f"  certified={''.join('y' if c else 'n' for c in row['certified'])}"
              f"  {row['seconds']:.1f} s", flush=True)
    print(f"\nn = {args.n}, k_max = {args.k_max}, outliers = {args.outliers}, "
          f"{args.reps} data sets, {time.perf_counter() - wall:.0f} s wall")
    for m in METHODS:
        counts = Counter(row[m] for row in rows)
        print(f"{m:8s} chooses k = 2 in {counts.get(2, 0):2d} of {args.reps}; all choices: "
              + ", ".join(f"k={k}: {c}" for k, c in sorted(counts.items())))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
