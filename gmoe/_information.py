"""The observed information of one chunk of rows when each logit has its own parameters.

For the gates whose free gate coordinates split into one block per expert (expert
i's logit depends on block i only: softmax, top-K with its selection held, the
sigmoid, Laplace and activation gates, the temperature gate at a fixed tau), Louis'
identity (:meth:`gmoe.likelihood.FreeLikelihood.information`) collapses into one
weighted Gram matrix of the score contributions plus a few small corrections. With
``r`` the responsibilities, ``P`` the gate weights, ``w`` the sample weights,
``B_j`` expert j's block of logit derivatives and ``G_i = (z e_i / v_i,
(e_i^2 / v_i - 1) / 2)`` the score of expert i's Gaussian in (coefficients,
log-variance), the information summed over the rows is

* gate j, gate l: ``sum w (r_j r_l - P_j P_l - [j = l] (r_j - P_j)) B_j B_l^T``;
* gate j, expert i: ``sum w r_i (r_j - [i = j]) B_j G_i^T``;
* expert i, expert l: ``sum w (r_i r_l - [i = l] r_i) G_i G_l^T``, plus
  ``sum w r_i (-hess log phi_i)`` when ``i = l``;

(minus the logit curvature when the logits are not linear, added by the caller).
The ``r r`` parts of all three are the single product ``F diag(w) F^T`` with
``F = (r_j B_j, r_i G_i)``; the rest are corrections on the diagonal blocks and the
``P P`` term of the gate block. The formulas are in docs/theory.md, "Certified
fits and inference" (Inference); the tests compare them with Louis' identity term
by term and with central differences of the score.
"""

from __future__ import annotations

import numpy as np

__all__ = ["block_information"]


def block_information(ZT: np.ndarray, weight: np.ndarray | None, resp: np.ndarray,
                      P: np.ndarray, resid: np.ndarray, inv_var: np.ndarray,
                      blocks: list, m_gate: int) -> np.ndarray:
    """Observed information of the rows of one chunk, in the free-vector layout.

    Parameters
    ----------
    ZT : ndarray of shape (d + 1, n)
        The regression design ``[X^T; 1]`` (:attr:`gmoe._design.Design.ZT`).
    weight : ndarray of shape (n,) or None
        Sample weights.
    resp, P, resid : ndarray of shape (k, n)
        Responsibilities, gate weights and residuals ``y - a_i^T x - b_i``.
    inv_var : ndarray of shape (k,)
    blocks : list of k arrays of shape (q_i, n), or None
        Expert i's logit derivatives in its own free gate coordinates (None or
        ``q_i = 0``: no free gate coordinates), in the order of the free vector.
    m_gate : int
        Number of free gate coordinates, ``sum q_i``.

    Returns
    -------
    ndarray of shape (m, m), ``m = m_gate + k (d + 2)``
        Not yet symmetrised (the caller sums chunks, then symmetrises).
    """
    k, n = resp.shape
    p = ZT.shape[0]
    d = p - 1
    XT = ZT[:d]
    m = m_gate + k * (p + 1)
    w = weight
    ev = resid * inv_var[:, None]                 # e / v
    u = resid * ev                                # e^2 / v
    h = u - 1.0
    h *= 0.5                                      # d log phi / d log v
    # rows laid out gate blocks first, then expert by expert (slopes, intercept,
    # log-variance); permuted to the free vector's order at the end
    F = np.empty((m, n))
    gates = []                                    # (expert, first row, rows)
    row = 0
    for j, B in enumerate(blocks):
        if B is None or not B.shape[0]:
            continue
        np.multiply(B, resp[j], out=F[row:row + B.shape[0]])
        gates.append((j, row, B.shape[0]))
        row += B.shape[0]
    if row != m_gate:
        raise ValueError(f"the logit blocks have {row} rows, the gate {m_gate} coordinates")
    FE = F[m_gate:].reshape(k, p + 1, n)
    np.multiply(resp, ev, out=FE[:, d])
    np.multiply(FE[:, d, None, :], XT[None], out=FE[:, :d])
    np.multiply(resp, h, out=FE[:, p])
    Fw = F if w is None else F * w
    info = Fw @ F.T
    if gates:
        PB = np.empty((m_gate, n))
        for j, start, q in gates:
            np.multiply(blocks[j], P[j], out=PB[start:start + q])
        info[:m_gate, :m_gate] -= (PB if w is None else PB * w) @ PB.T
        a = resp - P
        if w is not None:
            a *= w
        for j, start, q in gates:
            B, span = blocks[j], slice(start, start + q)
            own = slice(m_gate + j * (p + 1), m_gate + (j + 1) * (p + 1))
            info[span, span] -= (B * a[j]) @ B.T
            cross = B @ Fw[own].T                 # sum w r_j B_j G_j^T
            info[span, own] -= cross
            info[own, span] -= cross.T
    # expert i's own block: w r_i (-G_i G_i^T - hess log phi_i), entry by entry
    rw = resp if w is None else resp * w
    coef = np.empty((3, k, n))
    np.multiply(ev, ev, out=coef[0])
    np.subtract(inv_var[:, None], coef[0], out=coef[0])      # z z^T
    np.subtract(1.0, h, out=coef[1])
    coef[1] *= ev                                            # z, log-variance
    np.multiply(h, h, out=coef[2])
    np.subtract(0.5 * u, coef[2], out=coef[2])               # log-variance twice
    coef *= rw
    zz = (ZT[:, None, :] * ZT[None, :, :]).reshape(p * p, n)
    A = (coef[0] @ zz.T).reshape(k, p, p)
    Bz = coef[1] @ ZT.T
    C = coef[2].sum(axis=1)
    for i in range(k):
        at = m_gate + i * (p + 1)
        info[at:at + p, at:at + p] += A[i]
        info[at:at + p, at + p] += Bz[i]
        info[at + p, at:at + p] += Bz[i]
        info[at + p, at + p] += C[i]
    order = _free_order(m_gate, k, d)
    return info[np.ix_(order, order)]


def _free_order(m_gate: int, k: int, d: int) -> np.ndarray:
    """Row of the expert-by-expert layout of every free coordinate (``a`` row by row,
    then ``b``, then ``log var``)."""
    p = d + 1
    start = m_gate + (p + 1) * np.arange(k)
    return np.concatenate([np.arange(m_gate), (start[:, None] + np.arange(d)).ravel(),
                           start + d, start + p])
