"""Per-fit precomputation of the data arrays that every EM iteration reuses."""

from __future__ import annotations

import numpy as np


class Design:
    """Data laid out expert-major for EM: features in rows, samples in columns.

    Built once per fit so that no EM iteration recomputes it.

    Attributes
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    XT : ndarray of shape (d, n), C-contiguous
    ZT : ndarray of shape (d + 1, n)
        ``[X^T; 1]``: the regression design with the intercept row last, so that
        coefficients are ordered ``(slope_1..slope_d, intercept)``.
    moments : ndarray of shape (p*p + p, n), p = d + 1
        Rows ``z_a z_b`` (all a, b) then ``z_a y``: a weighted sum of any of them is one
        matrix product ``R @ moments.T``.
    weight : ndarray of shape (n,) or None
        Sample weights (None: every sample counts once). EM multiplies the
        responsibilities by them, so every M-step sees weighted responsibilities
        whose columns sum to the weights; sums of per-sample log-likelihoods are
        weighted.
    total_weight : float
        ``sum(weight)``, or n without weights.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray | None = None,
                 weight: np.ndarray | None = None):
        self.X = X
        self.n, self.d = X.shape
        self.weight = weight
        self.total_weight = float(self.n if weight is None else np.sum(weight))
        self.XT = np.ascontiguousarray(X.T)
        p = self.d + 1
        self.p = p
        ZT = np.empty((p, self.n))
        ZT[:-1] = self.XT
        ZT[-1] = 1.0
        self.ZT = ZT
        self.y = y
        self._zz = None
        self._moments = None

    def weighted_sum(self, values: np.ndarray) -> float:
        """``sum_n weight_n values_n`` (the plain sum without weights)."""
        return float(values.sum() if self.weight is None else values @ self.weight)

    @property
    def zz(self) -> np.ndarray:
        """Rows ``z_a z_b`` for a, b in 0..p-1: array of shape (p*p, n)."""
        if self._zz is None:
            self._zz = self.moments[: self.p * self.p] if self.y is not None else self._outer()
        return self._zz

    def _outer(self) -> np.ndarray:
        p, ZT = self.p, self.ZT
        return (ZT[:, None, :] * ZT[None, :, :]).reshape(p * p, self.n)

    @property
    def moments(self) -> np.ndarray:
        """Rows ``z_a z_b`` then ``z_a y``: array of shape (p*p + p, n)."""
        if self._moments is None:
            if self.y is None:
                raise ValueError("moments need y")
            p, n = self.p, self.n
            m = np.empty((p * p + p, n))
            m[: p * p] = self._outer()
            m[p * p:] = self.ZT * self.y
            self._moments = m
        return self._moments
