"""The observed log-likelihood in the free parametrisation: value, score and information.

The free vector stacks the gate's free parameters (its normal form removes the
entries its symmetry fixes; a learned temperature enters as ``log tau``, see
:meth:`gmoe.gates.Gate.free_layout`), then the experts' slopes ``a`` (row by row),
intercepts ``b`` and log-variances ``log var``. See docs/theory.md, "Certified fits
and inference".

The score is analytic (Fisher's identity: the gradient of the observed
log-likelihood is the gradient of the complete-data log-likelihood weighted by the
posterior responsibilities), and so is the observed information (Louis' identity),
checked in the tests against central differences of the score (:meth:`hessian`).
"""

from __future__ import annotations

import numpy as np

from ._design import Design
from ._information import block_information
from .experts import _LOG_2PI
from .gates import Gate
from .model import joint_log_T
from .params import MoEParams

__all__ = ["FreeLikelihood", "free_layout"]

#: Rows per chunk of the value, score and information: the (k, rows) and (m, rows)
#: temporaries of a chunk fit in a core's L2 cache, and are small enough for the
#: allocator to keep (at n = 1e5, k = 3 the information cost 16-18 ms in chunks of
#: 8192 rows against 42-46 ms in chunks of 50 000, where glibc handed the larger
#: temporaries back to the system and faulted them in again on every call).
CHUNK = 8192


def free_layout(gate: Gate, k: int, d: int) -> list[tuple[str, tuple[int, ...]]]:
    """``(field, index)`` of every free coordinate: the gate's, then ``a``, ``b``, ``var``
    (``var`` and ``tau`` on the log scale)."""
    experts = [("a", (i, j)) for i in range(k) for j in range(d)]
    experts += [("b", (i,)) for i in range(k)] + [("var", (i,)) for i in range(k)]
    return gate.free_layout(k, d) + experts


class FreeLikelihood:
    """Observed log-likelihood of one data set as a function of the free vector.

    Parameters
    ----------
    design : Design
        The data (with ``y``).
    gate : Gate
    like : MoEParams
        Parameters fixing k, d and any fixed temperature.
    mask : ndarray of bool, shape (k, n), "track" or None
        Selection held fixed (top-K); ``"track"`` recomputes it at every point, so
        the value is the likelihood itself and the score its derivative with the
        selection held (it exists wherever no point sits on a selection boundary);
        None for dense gates.
    sample_weight : ndarray of shape (n,), optional
        Weights of the samples in the log-likelihood.
    """

    def __init__(self, design: Design, gate: Gate, like: MoEParams,
                 mask: np.ndarray | None = None, sample_weight: np.ndarray | None = None):
        self.design, self.gate, self.mask = design, gate, mask
        self.like = gate.normal_form(gate.prepare(like))
        self.k, self.d = like.k, like.d
        self.gate_layout = gate.free_layout(self.k, self.d)
        self.m_gate = len(self.gate_layout)
        self.m = self.m_gate + self.k * (self.d + 2)
        self.weight = None if sample_weight is None else np.asarray(sample_weight, float)
        #: slice of the log-variances in the free vector
        self.logvar = slice(self.m - self.k, self.m)
        #: the information by the per-expert logit blocks where the gate has them
        #: (:mod:`gmoe._information`); False: Louis' identity term by term
        self._blocks = True
        #: (:meth:`_key`, per-chunk (gate state, residuals, responsibilities)) of the
        #: last evaluate() with the score: the information at that point reuses it
        self._kept = None

    # ------------------------------------------------------------ layout
    @property
    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(field, index)`` of every free coordinate (see :func:`free_layout`)."""
        return free_layout(self.gate, self.k, self.d)

    @property
    def names(self) -> list[str]:
        """Readable names of the free coordinates, e.g. ``beta1[0,0]``, ``log var[2]``."""
        out = []
        for field, index in self.layout:
            idx = ",".join(str(i) for i in index)
            out.append(f"log {field}" + (f"[{idx}]" if idx else "") if field in ("var", "tau")
                       else f"{field}[{idx}]")
        return out

    def pack(self, params: MoEParams) -> np.ndarray:
        """The free vector of ``params``."""
        return np.concatenate([self.gate.free_vector(params), params.a.ravel(), params.b,
                               np.log(params.var)])

    def unpack(self, theta: np.ndarray) -> MoEParams:
        """Normal-form parameters from the free vector (raises ValueError if not finite)."""
        gate_part, a, b, logvar = self._split(theta)
        with np.errstate(over="ignore"):
            expert = self.like.replace(a=a, b=b, var=np.exp(logvar))
        return self.gate.from_free_vector(gate_part, expert)

    def _split(self, theta):
        k, d, mg = self.k, self.d, self.m_gate
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.m,):
            raise ValueError(f"the free vector should have the shape of ({self.m},), "
                             f"but got {theta.shape}")
        a = theta[mg:mg + k * d].reshape(k, d)
        b = theta[mg + k * d:mg + k * d + k]
        return theta[:mg], a, b, theta[self.logvar]

    # ------------------------------------------------------------ values
    def evaluate(self, theta: np.ndarray, score: bool = True):
        """Log-likelihood and (optionally) its gradient at ``theta``.

        Samples are processed in chunks of :data:`CHUNK` rows, so that the (k, rows)
        temporaries stay in the CPU cache and memory does not grow with n.

        Returns
        -------
        loglik : float
            ``-inf`` when it is not finite.
        grad : ndarray of shape (m,) or None
            The score (None when ``score`` is False or the value is not finite).
        """
        gate_part, a, b, logvar = self._split(theta)
        design = self.design
        ll, grad = 0.0, (np.zeros(self.m) if score else None)
        kept = [] if score else None
        for start in range(0, design.n, CHUNK):
            part = _Chunk(design, start, min(start + CHUNK, design.n))
            ll_p, grad_p = self._evaluate_part(gate_part, a, b, logvar, part, score, kept)
            ll += ll_p
            if grad_p is not None:
                grad += grad_p
        if not np.isfinite(ll):
            return -np.inf, None
        if score:  # the information at this point starts from its E-step
            self._kept = (self._key(theta), kept)
        return ll, grad

    def _evaluate_part(self, gate_part, a, b, logvar, design, score: bool, kept=None):
        """:meth:`evaluate` on the rows of ``design`` (the whole data or a chunk);
        appends the chunk's gate state, residuals and responsibilities to ``kept``."""
        mask = self._chunk_mask(design, gate_part)
        weight = None if self.weight is None else self.weight[design.rows]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            state = self.gate.free_state(gate_part, design, self.k, mask)
            inv_var = np.exp(-logvar)
            resid = a @ design.XT
            resid += b[:, None]
            np.subtract(design.y, resid, out=resid)
            sq = resid * resid
            log_phi = sq * (-0.5 * inv_var)[:, None]
            log_phi -= (0.5 * (_LOG_2PI + logvar))[:, None]
            resp, ll_n = joint_log_T(state.log_w, log_phi)
            # a gate that models X (the Gaussian gate) adds log p(x_n): the joint
            # likelihood, whose gate score its free_score gives
            log_px = getattr(state, "log_px", None)
            if log_px is not None:
                ll_n = ll_n + log_px
            ll = float(ll_n.sum() if weight is None else ll_n @ weight)
        if not score or not np.isfinite(ll):
            return ll, None
        kept.append((state, resid, resp))
        if weight is not None:
            resp = resp * weight
        grad = np.empty(self.m)
        grad[:self.m_gate] = self.gate.free_score(state, design, resp, mask)
        k, d, mg = self.k, self.d, self.m_gate
        R = resp * resid
        R *= inv_var[:, None]
        grad[mg:mg + k * d] = (R @ design.XT.T).ravel()
        grad[mg + k * d:mg + k * d + k] = R.sum(axis=1)
        grad[self.logvar] = 0.5 * (np.einsum("kn,kn->k", resp, sq) * inv_var
                                   - resp.sum(axis=1))
        return ll, grad

    def loglik(self, theta: np.ndarray) -> float:
        """The log-likelihood at ``theta`` (``-inf`` if not finite)."""
        return self.evaluate(theta, score=False)[0]

    def score(self, theta: np.ndarray) -> np.ndarray:
        """The analytic score at ``theta`` (NaN where the likelihood is not finite)."""
        ll, grad = self.evaluate(theta)
        return grad if grad is not None else np.full(self.m, np.nan)

    def information(self, theta: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Observed information (negative Hessian of the log-likelihood), analytic.

        Louis' identity per sample: with ``l_ni = log g_i(x_n) + log phi_i(y_n)``,
        responsibilities ``r_ni`` and ``s_n = sum_i r_ni grad l_ni``,

            -hess log p_n = -sum_i r_ni hess l_ni - sum_i r_ni grad l_ni grad l_ni^T
                            + s_n s_n^T.

        The gate's part of ``grad l_ni`` comes from its logit Jacobian
        (:meth:`gmoe.gates.Gate.free_logit_jacobian`); for logits that are not linear
        in the free vector the second-derivative term is a central difference of the
        Jacobian (gate evaluations only). Samples are processed in chunks (``chunk``
        rows, default :data:`CHUNK`), so memory stays O(chunk k m) and the
        temporaries stay in the CPU cache. Falls back on :meth:`hessian` for a gate without a logit
        Jacobian.
        """
        gate, design = self.gate, self.design
        try:
            gate.free_logit_jacobian(gate.free_state(theta[:self.m_gate], _Chunk(design, 0, 1),
                                                     self.k), _Chunk(design, 0, 1))
        except NotImplementedError:
            return -self.hessian(theta)
        # the E-step of the last evaluate() with the score, when it was at theta
        kept = None
        if chunk is None and self._kept is not None and self._same(self._kept[0], theta):
            kept = self._kept[1]
        chunk = CHUNK if chunk is None else int(chunk)
        info = np.zeros((self.m, self.m))
        for index, start in enumerate(range(0, design.n, chunk)):
            part = _Chunk(design, start, min(start + chunk, design.n))
            info += self._information_part(theta, part,
                                            None if kept is None else kept[index])
        return 0.5 * (info + info.T)

    def _information_part(self, theta, design, kept=None) -> np.ndarray:
        k, d, mg, m = self.k, self.d, self.m_gate, self.m
        gate_part, a, b, logvar = self._split(theta)
        inv_var = np.exp(-logvar)
        # the selection: for the E-step, and for the curvature of non-linear logits
        mask = (self._chunk_mask(design, gate_part)
                if kept is None or not self.gate.linear_logits else None)
        if kept is None:
            state = self.gate.free_state(gate_part, design, k, mask)
            e = design.y - (a @ design.XT + b[:, None])          # residuals (k, n)
            log_phi = (-0.5 * e * e * inv_var[:, None]
                       - (0.5 * (_LOG_2PI + logvar))[:, None])
            resp, _ = joint_log_T(state.log_w, log_phi)
        else:
            state, e, resp = kept
        blocks = self.gate.free_logit_blocks(state, design) if self._blocks else None
        if blocks is not None:
            weight = None if self.weight is None else self.weight[design.rows]
            info = block_information(design.ZT, weight, resp, state.P, e, inv_var, blocks,
                                     mg)
            if not self.gate.linear_logits:
                info[:mg, :mg] -= self._logit_curvature(
                    gate_part, design, mask, resp - state.P if weight is None
                    else (resp - state.P) * weight)
            return info
        w = np.ones(design.n) if self.weight is None else self.weight[design.rows]
        P = np.exp(state.log_w)
        z = design.ZT                                          # (d + 1, n), 1 last
        ev = e * inv_var[:, None]
        u = e * ev                                             # e^2 / v
        rw = resp * w
        # S_n = sum_i r_ni grad l_ni, laid out as the free vector; grad l_ni is the
        # gate's D_i = J_i - sum_l P_l J_l and expert i's own g_i = (z ev_i, (u_i - 1) / 2)
        S = np.empty((m, design.n))
        rev = resp * ev
        S[mg:mg + k * d] = (rev[:, None, :] * design.XT[None]).reshape(k * d, design.n)
        S[mg + k * d:mg + k * d + k] = rev
        S[self.logvar] = 0.5 * resp * (u - 1.0)
        if mg:
            J = self.gate.free_logit_jacobian(state, design)
            D = J - np.einsum("lmn,ln->mn", J, P)[None]
            S[:mg] = np.einsum("kmn,kn->mn", D, resp)
        info = (S * w) @ S.T
        # minus sum_i r_ni (grad l_ni grad l_ni^T + hess l_ni), block by block: the gate
        # block (with the expected complete-data Hessian sum_i P_i D_i D_i^T), the
        # gate-expert i blocks, and expert i's own block (no expert-expert cross terms)
        if mg:
            for i in range(k):
                info[:mg, :mg] += (D[i] * ((P[i] - resp[i]) * w)) @ D[i].T
            if not self.gate.linear_logits:
                info[:mg, :mg] -= self._logit_curvature(gate_part, design, mask,
                                                        (resp - P) * w)
        for i in range(k):
            idx = ([mg + i * d + j for j in range(d)] + [mg + k * d + i]
                   + [mg + k * d + k + i])
            if mg:
                g = np.empty((d + 2, design.n))
                g[:d + 1] = z * ev[i]
                g[d + 1] = 0.5 * (u[i] - 1.0)
                cross = (D[i] * rw[i]) @ g.T
                info[:mg, idx] -= cross
                info[idx, :mg] -= cross.T
            # -hess log phi_i = [z z^T / v, z e / v; e z^T / v, e^2 / (2 v)] minus g_i g_i^T
            zr = z * rw[i]
            block = np.empty((d + 2, d + 2))
            block[:d + 1, :d + 1] = (zr * (inv_var[i] - ev[i] * ev[i])) @ z.T
            block[:d + 1, d + 1] = block[d + 1, :d + 1] = zr @ (ev[i] * (1.5 - 0.5 * u[i]))
            block[d + 1, d + 1] = np.dot(rw[i], 0.5 * u[i] - 0.25 * (u[i] - 1.0) ** 2)
            info[np.ix_(idx, idx)] += block
        return info

    def _key(self, theta) -> tuple:
        """What an E-step depends on: the point, and the selection and weights held."""
        return (np.asarray(theta, dtype=float).tobytes(), self.mask, self.weight)

    def _same(self, key: tuple, theta) -> bool:
        """Whether ``key`` is that of ``theta`` now (the selection and the weights
        compared by identity: replacing either invalidates a kept E-step)."""
        point, mask, weight = key
        return (mask is self.mask and weight is self.weight
                and point == np.asarray(theta, dtype=float).tobytes())

    def _chunk_mask(self, design, gate_part):
        if self.mask is None:
            return None
        if isinstance(self.mask, str):
            return self.gate.selection_mask(design, self.gate.from_free_vector(gate_part,
                                                                               self.like))
        return self.mask[:, design.rows]

    def _logit_curvature(self, gate_part, design, mask, G, rel_step: float = 1e-5):
        """``sum_n sum_i G_ni hess eta_ni`` by central differences of the logit Jacobian."""
        mg = self.m_gate
        out = np.empty((mg, mg))

        def contracted(th):
            J = self.gate.free_logit_jacobian(self.gate.free_state(th, design, self.k, mask),
                                              design)
            return np.einsum("kmn,kn->m", J, G)

        for j in range(mg):
            h = rel_step * max(1.0, abs(gate_part[j]))
            up, down = gate_part.copy(), gate_part.copy()
            up[j] += h
            down[j] -= h
            out[:, j] = (contracted(up) - contracted(down)) / (2 * h)
        return 0.5 * (out + out.T)

    def hessian(self, theta: np.ndarray, rel_step: float = 1e-5) -> np.ndarray:
        """Hessian of the log-likelihood: central differences of the analytic score.

        Steps are ``rel_step * max(1, |theta_j|)``; the result is symmetrised. Its
        error is about ``rel_step**2`` relative (1e-10), far below what standard errors
        or Newton steps need.
        """
        theta = np.asarray(theta, dtype=float)
        H = np.empty((self.m, self.m))
        for j in range(self.m):
            h = rel_step * max(1.0, abs(theta[j]))
            up, down = theta.copy(), theta.copy()
            up[j] += h
            down[j] -= h
            H[:, j] = (self.score(up) - self.score(down)) / (2 * h)
        return 0.5 * (H + H.T)


class _Chunk:
    """The rows ``start:stop`` of a design, with the attributes the likelihood uses."""

    def __init__(self, design: Design, start: int, stop: int):
        self.rows = slice(start, stop)
        self.n, self.d, self.p = stop - start, design.d, design.p
        self.XT = design.XT[:, self.rows]
        self.ZT = design.ZT[:, self.rows]
        self.y = design.y[self.rows]
        self.X = design.X[self.rows]
