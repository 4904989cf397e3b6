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


def floored_eigenvalues(eig: np.ndarray, floor: float) -> np.ndarray:
    """Eigenvalues made positive (absolute values) and floored at ``floor`` of the
    largest: a quadratic model with them has a maximum, and every step to it climbs."""
    top = float(np.max(np.abs(eig)))
    return np.maximum(np.abs(eig), max(top * floor, 1e-300))


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
        floored = floored_eigenvalues(self.eig, floor)
        z = self.coef / floored
        return (self.scale * (self.V @ z), float(np.sum(self.coef * self.coef / floored)),
                float(np.linalg.norm(z)))

    def _length(self, mu: float) -> float:
        return float(np.linalg.norm(self.coef / (self.eig + mu)))

    def step(self, radius: float) -> tuple[np.ndarray, np.ndarray, float]:
        """The model's maximiser within scaled length ``radius`` (> 0).

        Returns ``(step, z, length)``: the step in free coordinates, in the scaled
        eigenbasis (for :meth:`gain`) and its scaled length.
        """
        eig, coef = self.eig, self.coef
        if eig[0] > 0 and self._length(0.0) <= radius:
            z = coef / eig   # the Newton step lies inside the ball
            return self.scale * (self.V @ z), z, float(np.linalg.norm(z))
        lo = max(0.0, -float(eig[0]))
        tiny = 1e-12 * self.top
        a = lo + tiny
        if self._length(a) > radius:
            # |s(mu)| falls from above radius at a to at most radius at
            # lo + |coef| / radius: bisection, to a precision relative to mu - lo (near
            # the hard case below the root lies just above lo)
            b = lo + float(np.linalg.norm(coef)) / radius + tiny
            for _ in range(200):
                if b - a <= 1e-12 * (b - lo):
                    break
                mid = 0.5 * (a + b)
                if mid in (a, b):  # adjacent floats: as close as the arithmetic gets
                    break
                if self._length(mid) > radius:
                    a = mid
                else:
                    b = mid
            z = coef / (eig + b)
        elif eig[0] < 0:
            # the hard case: the score has (nearly) no part along the lowest eigenvector.
            # The maximiser is the step at mu = lo in the other directions plus a move
            # along the lowest eigenvector out to the ball (the model rises both ways)
            low = eig + lo <= tiny
            z = np.where(low, 0.0, coef / np.where(low, 1.0, eig + lo))
            z[0] = np.copysign(np.sqrt(max(radius * radius - float(z @ z), 0.0)),
                               coef[0] if coef[0] != 0 else 1.0)
        else:
            z = coef / (eig + a)   # a singular, positive semi-definite model
        return self.scale * (self.V @ z), z, float(np.linalg.norm(z))

    def gain(self, z: np.ndarray) -> float:
        """The model's gain along the step ``z`` (scaled eigenbasis)."""
        return float(self.coef @ z - 0.5 * np.sum(self.eig * z * z))


def next_radius(radius: float, length: float, predicted: float, gained: float,
                rounding: float) -> float:
    """The radius after a step taken of scaled ``length`` in a ball of ``radius``.

    ``predicted`` and ``gained`` are the model's and the likelihood's gains (nats);
    ``rounding`` is the size below which a gain is rounding (the ratio of two such
    gains means nothing). The radius shrinks to a quarter of the step when the gain is
    below a quarter of the prediction and doubles when it is above three quarters with
    the step on the boundary. A step on the boundary whose predicted gain is rounding
    also doubles it: near the top the model holds, and a ball that could only shrink
    there would freeze.
    """
    on_boundary = length >= 0.99 * radius
    if predicted <= rounding:
        return 2.0 * radius if on_boundary else radius
    ratio = gained / predicted
    if ratio < SHRINK_BELOW:
        return 0.25 * length
    if ratio > GROW_ABOVE and on_boundary:
        return 2.0 * radius
    return radius
