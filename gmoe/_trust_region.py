"""The quadratic model of the log-likelihood that the polish steps on.

At a point with score ``g`` and observed information ``I`` the model is
``g's - s'Is / 2``. It is kept in the Jacobi-scaled coordinates (``I`` scaled to a
unit diagonal, ``D = diag(I)^(1/2)``) with the eigen-decomposition of the scaled
matrix, so that every length below is measured in the curvature's own units and no
verdict depends on the units of y or of the parameters.

Two steps are taken from it:

- the *trust-region step* ``s(mu) = (I + mu D^2)^-1 g``, the model's maximiser within
  the ball ``|D s| <= radius``, with the smallest ``mu >= 0`` that makes ``I + mu D^2``
  positive definite and keeps the step in the ball (More and Sorensen 1983; Nocedal
  and Wright, *Numerical Optimization*, 2nd ed., ch. 4). Where ``I`` is not positive
  definite (the curved ridges of over-specified fits) it goes as far as the ball
  allows along the directions of negative curvature, where the likelihood rises
  fastest;
- the *eigenvalue-modified Newton step* (eigenvalues replaced by their absolute
  values, floored), which the step test of the certificate measures.
"""

from __future__ import annotations

import numpy as np

#: Ratio of the actual to the predicted gain below which the radius shrinks to a
#: quarter of the step, and above which (with the step on the boundary) it doubles.
SHRINK_BELOW, GROW_ABOVE = 0.25, 0.75


class ScaledModel:
    """The information at one point, scaled to a unit diagonal and decomposed.

    Parameters
    ----------
    info : ndarray of shape (m, m)
        Observed information (symmetric, finite) in the free coordinates.

    Attributes
    ----------
    scale : ndarray of shape (m,)
        ``1 / sqrt(diag(info))``; 1 for coordinates the data hardly inform (diagonal
        below 1e-20 of the largest), where dividing by the root of a vanishing
        diagonal would blow up rounding.
    eig, V : ndarray
        Eigenvalues (ascending) and eigenvectors of the scaled information.
    coef : ndarray of shape (m,)
        The scaled score in the eigenbasis (set by :meth:`at_score`).
    """

    def __init__(self, info: np.ndarray):
        diag = np.diag(info)
        informed = diag > 1e-20 * max(float(np.max(diag, initial=0.0)), 1e-300)
        self.scale = 1.0 / np.sqrt(np.where(informed, diag, 1.0))
        self.eig, self.V = np.linalg.eigh(info * self.scale[:, None] * self.scale[None, :])
        self.top = max(float(np.max(np.abs(self.eig))), 1e-300)
        self.coef = np.zeros(len(self.eig))

    def at_score(self, grad: np.ndarray) -> ScaledModel:
        """Set the score (a chord step reuses the information at a new point)."""
        self.coef = self.V.T @ (self.scale * grad)
        return self

    @property
    def lowest(self) -> float:
        """Smallest eigenvalue of the scaled information over its largest in absolute
        value (negative: not a maximum)."""
        return float(self.eig[0]) / self.top

    def modified_step(self, floor: float) -> tuple[np.ndarray, float, float]:
        """The eigenvalue-modified Newton step, eigenvalues floored at ``floor`` of the
        largest.

        Returns ``(step, promise, scaled length)``: the step in free coordinates, the
        model's gain along it in nats (``g' |I|^-1 g``) and its length in the scaled
        coordinates.
        """
        z = self.coef / np.maximum(np.abs(self.eig), max(floor * self.top, 1e-300))
        return (self.scale * (self.V @ z), float(self.coef @ z),
                float(np.linalg.norm(z)))

    def _length(self, mu: float) -> float:
        return float(np.linalg.norm(self.coef / (self.eig + mu)))

    def step(self, radius: float) -> tuple[np.ndarray, np.ndarray, float]:
        """The model's maximiser within scaled length ``radius``.

        Returns ``(step, z, length)``: the step in free coordinates, in the scaled
        eigenbasis (for :meth:`gain`) and its scaled length.
        """
        lo = max(0.0, -float(self.eig[0]))
        if self.eig[0] > 0 and self._length(0.0) <= radius:
            mu = 0.0   # the Newton step lies inside the ball
        else:
            # |s(mu)| falls from +inf just above lo to at most radius at
            # lo + |coef| / radius: bisection on that bracket. If the score has no part
            # along the lowest eigenvector (the "hard case") the step stays shorter
            # than the ball; it still climbs.
            a = lo + 1e-12 * self.top
            b = lo + float(np.linalg.norm(self.coef)) / radius + 1e-12 * self.top
            if self._length(a) <= radius:
                b = a
            while b - a > 1e-12 * b:
                mid = 0.5 * (a + b)
                if self._length(mid) > radius:
                    a = mid
                else:
                    b = mid
            mu = b
        z = self.coef / (self.eig + mu)
        return self.scale * (self.V @ z), z, float(np.linalg.norm(z))

    def gain(self, z: np.ndarray, t: float = 1.0) -> float:
        """The model's gain along ``t`` times the step ``z`` (scaled eigenbasis)."""
        return float(t * (self.coef @ z) - 0.5 * t * t * np.sum(self.eig * z * z))
