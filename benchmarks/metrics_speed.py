"""Per-task metric cost: Hellinger distance and Voronoi losses, new against a baseline.

Run by hand: ``python benchmarks/metrics_speed.py [--baseline f50420f] [--repeats 3]``.
Fits of the reference setting (docs/theory.md, "The reference setting") at several n,
exact (k = 2) and over-specified (k = 3); per fit, what a sweep task computes: the
Voronoi loss under "mass" and "infimum", the parameter errors at the loss's shift and
the Hellinger distance over 1000 evaluation rows. Each metric is timed with the
current code and with the code of the baseline revision, alternating, in one run;
medians over repeats, and the largest difference of the values. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import time

import numpy as np
from _baseline import load

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, density, fit_em, losses

# the module (gmoe.parameter_errors, the attribute, is the function of that name)
parameter_errors = importlib.import_module("gmoe.parameter_errors")
TRUTH = MoEParams([-8, 0], [[25], [0]], [[-20], [20]], [15, -5], [0.09, 0.16])


def metrics(dens, loss, perr, fitted, truth, kind, x_eval):
    """The values a sweep task records, and the ms each took."""
    out, ms = {}, {}
    t0 = time.perf_counter()
    mass = loss.voronoi_loss(fitted, truth, kind=kind)
    t1 = time.perf_counter()
    inf = loss.voronoi_loss(fitted, truth, kind=kind, translation="infimum")
    t2 = time.perf_counter()
    errs = perr.parameter_errors(fitted, truth, shift=mass, kind=kind)
    t3 = time.perf_counter()
    h = dens.hellinger(fitted, truth, x_eval)
    t4 = time.perf_counter()
    out = {"loss_mass": mass.value, "loss_infimum": inf.value,
           "errors": np.nan_to_num(np.concatenate([errs.beta1, errs.a, errs.b, errs.var])),
           "hellinger": h}
    ms = {"loss_mass": t1 - t0, "loss_infimum": t2 - t1, "parameter_errors": t3 - t2,
          "hellinger": t4 - t3}
    return out, {key: 1e3 * v for key, v in ms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="f50420f")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-x", type=int, default=1000)
    args = parser.parse_args()
    old_density = load(args.baseline, "gmoe/density.py")
    old_losses = load(args.baseline, "gmoe/losses.py")
    try:
        old_perr = load(args.baseline, "gmoe/parameter_errors.py")
    except subprocess.CalledProcessError:   # before the module split: in losses.py
        old_perr = old_losses
    truth = GaussianMoE(SoftmaxGate(), TRUTH)
    x_eval = np.random.default_rng(1).uniform(0, 1, (args.n_x, 1))
    names = ("loss_mass", "loss_infimum", "parameter_errors", "hellinger")
    print(f"# metrics per task, {args.n_x} evaluation rows, baseline {args.baseline}")
    print(f"{'n':>7} {'k':>2} " + " ".join(f"{m + ' old/new ms':>29}" for m in names)
          + f" {'total old':>10} {'total new':>10} {'ratio':>6} {'max |diff|':>10}")
    totals = []
    for n in (1_000, 10_000, 100_000):
        X, y = truth.sample(n, rng=0)
        for k in (2, 3):
            fit = fit_em(X, y, k, init="near_truth", truth=TRUTH, rng=1, warn=False)
            kind = "exact" if k == 2 else "over"
            old_ms, new_ms = [], []
            for _ in range(args.repeats):
                v_old, t_old = metrics(old_density, old_losses, old_perr, fit.model, truth, kind,
                                       x_eval)
                v_new, t_new = metrics(density, losses, parameter_errors, fit.model, truth, kind,
                                       x_eval)
                old_ms.append([t_old[m] for m in names])
                new_ms.append([t_new[m] for m in names])
            diff = max(float(np.max(np.abs(np.asarray(v_new[key]) - np.asarray(v_old[key]))))
                       for key in v_new)
            o, w = np.median(old_ms, axis=0), np.median(new_ms, axis=0)
            totals.append((o.sum(), w.sum()))
            cells = " ".join(f"{a:>14.1f} / {b:<12.1f}" for a, b in zip(o, w, strict=True))
            print(f"{n:>7} {k:>2} {cells} {o.sum():>10.1f} {w.sum():>10.1f} "
                  f"{o.sum() / w.sum():>6.2f} {diff:>10.1e}", flush=True)
    t = np.array(totals)
    print(f"# median per task: old {np.median(t[:, 0]):.1f} ms, new {np.median(t[:, 1]):.1f} ms")


if __name__ == "__main__":
    main()
