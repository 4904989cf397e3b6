"""Sampling speed: time to draw n = 1e3 ... 1e6 samples from the reference model.

The model is the truth of docs/theory.md, "The reference setting".

Run by hand: ``python benchmarks/sampling_speed.py [--repeats 21]``. Prints a table
of the median (and the minimum) wall time of ``GaussianMoE(SoftmaxGate(), truth)
.sample(n, rng=...)`` over repeats, the throughput, and for scale the time numpy
itself needs to draw the raw random numbers (n uniforms for X, n uniforms for the
expert labels, n normals for the noise) with the same generator. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from gmoe import GaussianMoE, MoEParams, SoftmaxGate

#: docs/theory.md, "The reference setting": d = 1, k* = 2, X ~ U[0, 1].
TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])


def _median_min(fn, repeats: int) -> tuple[float, float]:
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21, help="repeats per n (median)")
    parser.add_argument("--n", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    args = parser.parse_args()
    model = GaussianMoE(SoftmaxGate(), TRUTH)
    model.sample(1000, rng=0)  # warm-up (imports, first-call overheads)

    def raw(n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        rng.random(n)
        rng.random(n)
        rng.standard_normal(n)

    print(f"# gmoe sampling speed, reference model (d = 1, k = 2, X ~ U[0,1]); "
          f"numpy {np.__version__}, python {platform.python_version()}; "
          f"median of {args.repeats} repeats; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'n':>9} {'median ms':>10} {'min ms':>9} {'ns/sample':>10} "
          f"{'Msamples/s':>11} {'numpy raw ms':>13} {'ratio':>6}")
    for n in args.n:
        med, low = _median_min(lambda r, n=n: model.sample(n, rng=r), args.repeats)
        raw_med, _ = _median_min(lambda r, n=n: raw(n, r), args.repeats)
        print(f"{n:>9} {1e3 * med:>10.3f} {1e3 * low:>9.3f} {1e9 * med / n:>10.1f} "
              f"{n / med / 1e6:>11.2f} {1e3 * raw_med:>13.3f} {med / raw_med:>6.1f}")


if __name__ == "__main__":
    main()
