"""Top-K EM iteration against the softmax EM iteration on the same data (issue 16).

Run by hand: ``python benchmarks/topk_speed.py [--n 100000] [--repeats 3]
[--baseline REV]``. For each ranking rule, the top-K truth of the topk-exact setting
(k = 3, K = 2, d = 2, X ~ U[-1, 1]^2) is sampled, and the EM loop runs a fixed number
of iterations (``tol < 0``: no stopping) from the same perturbed start with the
softmax gate, the top-K gate and, with ``--baseline``, the top-K gate of that git
revision. The three runs alternate within each repeat, so every ratio is measured in
one run on the same load; medians over repeats. Single-threaded BLAS, as in
``fit_em``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from threadpoolctl import threadpool_limits

from gmoe import GaussianMoE, MoEParams, SoftmaxGate
from gmoe._design import Design
from gmoe._em_loop import _run_em
from gmoe.gates import TopKGate
from gmoe.settings import FitSettings

TRUTH = MoEParams([0.5, -0.5, 0.0], [[2.0, 1.0], [-1.0, 2.0], [0.0, 0.0]],
                  [[1.0, -1.0], [-1.0, 1.0], [2.0, 2.0]], [-4.0, 0.0, 4.0], [0.09] * 3)
START = TRUTH.replace(b=TRUTH.b + 0.3, beta0=TRUTH.beta0 + np.array([0.3, -0.2, 0.0]))


def per_iteration(design, gate, iters: int) -> tuple[float, float]:
    """(ms per iteration, final log-likelihood) of ``iters`` EM iterations from START."""
    t0 = time.perf_counter()
    run = _run_em(design, gate, START, FitSettings(tol=0.0, max_iter=iters), 1e-8)
    return 1e3 * (time.perf_counter() - t0) / run["n_iter"], float(run["loglik"])


def load_old(rev: str):
    """The TopKGate class of ``rev``, with that revision's ``gmoe/gates/_topk_search.py``
    (when it has one: the gate's observed-likelihood methods live there)."""
    import subprocess
    import sys

    from _baseline import ROOT, load

    has_search = subprocess.run(["git", "cat-file", "-e", f"{rev}:gmoe/gates/_topk_search.py"],
                                cwd=ROOT, capture_output=True).returncode == 0
    if not has_search:
        return load(rev, "gmoe/gates/topk.py").TopKGate
    name = "gmoe.gates._topk_search"
    current = sys.modules[name]
    sys.modules[name] = load(rev, "gmoe/gates/_topk_search.py")
    try:        # the old topk.py imports the old search module
        return load(rev, "gmoe/gates/topk.py").TopKGate
    finally:
        sys.modules[name] = current


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None,
                        help="git revision whose top-K gate is timed too (e.g. f50420f)")
    args = parser.parse_args()
    old = load_old(args.baseline) if args.baseline else None
    print(f"# top-K vs softmax EM iteration, n = {args.n}, k = 3, K = 2, d = 2, "
          f"{args.iters} iterations, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'rank_by':>8} {'softmax ms':>11} {'top-K ms':>9} {'ratio':>6}"
          + (f" {'old ms':>9} {'old ratio':>9} {'ll new - old':>13}" if old else ""))
    with threadpool_limits(1, user_api="blas"):
        for rank in ("slope", "logit"):
            X, y = GaussianMoE(TopKGate(2, rank_by=rank), TRUTH).sample(args.n, rng=0)
            design = Design(X, y)
            rows = []
            for _ in range(args.repeats):
                soft, _ = per_iteration(design, SoftmaxGate(), args.iters)
                new, ll_new = per_iteration(design, TopKGate(2, rank_by=rank), args.iters)
                row = [soft, new, new / soft]
                if old:
                    was, ll_old = per_iteration(design, old(2, rank_by=rank), args.iters)
                    row += [was, was / soft, ll_new - ll_old]
                rows.append(row)
            med = np.median(np.array(rows), axis=0)
            line = f"{rank:>8} {med[0]:>11.1f} {med[1]:>9.1f} {med[2]:>6.2f}"
            if old:
                line += f" {med[3]:>9.1f} {med[4]:>9.2f} {med[5]:>13.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
