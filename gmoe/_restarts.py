"""Restart bookkeeping for :func:`gmoe.em.fit_em`: progress reports and repeated starts."""

from __future__ import annotations

import sys
import time

import numpy as np

from .params import MoEParams


def start_key(params: MoEParams) -> tuple:
    """A key that two k-means starts share when they come from the same partition.

    A start is one M-step from the partition's (smoothed) labels; each expert's
    regression depends only on its own cluster, so two labellings of the same partition
    give the same experts (bit for bit) in another order. The key is the sorted
    rows ``(a, b, var)`` of the experts: a restart whose key was seen before starts
    from the same mixture relabelled, and EM (permutation-equivariant) ends at the same
    fit, so :meth:`gmoe.em._Context.run` does not run it again (see
    docs/performance.md, "Restarts").
    """
    rows = np.column_stack([params.a, params.b, params.var])
    return (params.k, params.d) + tuple(sorted(row.tobytes() for row in rows))


class Progress:
    """Progress of a fit: one line per EM run (and per polish) on stderr with
    ``verbose >= 1``, one per 100 EM iterations with ``verbose >= 2``, and
    ``callback(done, total, label)`` after each step."""

    def __init__(self, total: int, verbose: int, callback, k: int):
        self.total, self.verbose, self.callback, self.k = total, verbose, callback, k
        self.done, self.label = 0, ""
        self.start = time.perf_counter()

    def _line(self, text: str) -> None:
        print(f"gmoe fit_em (k={self.k}): {text}", file=sys.stderr, flush=True)

    def begin(self, label: str) -> None:
        self.label = label

    def iteration(self, n_iter: int, loglik: float) -> None:
        if self.verbose >= 2:
            self._line(f"  {self.label}: iteration {n_iter}, log-likelihood {loglik:.10g}")

    def step_done(self, text: str) -> None:
        self.done += 1
        if self.verbose >= 1:
            elapsed = time.perf_counter() - self.start
            self._line(f"[{self.done}/{self.total}] {self.label}: {text} ({elapsed:.1f} s)")
        if self.callback is not None:
            self.callback(self.done, self.total, self.label)
