"""The observed log-likelihood in the free parametrisation: value, score and information.

The free vector stacks the gate's free parameters (its normal form removes the
entries its symmetry fixes; a learned temperature enters as ``log tau``, see
:meth:`gmoe.gates.Gate.free_layout`), then the experts' slopes ``a`` (row by row),
intercepts ``b`` and log-variances ``log var``. See docs/theory.md, "Certified fits
and inference".

The score is analytic (Fisher's identity: the gradient of the observed
log-likelihood is the gradient of the complete-data log-likelihood weighted by the
posterior responsibilities). The observed information is the central finite
difference of the analytic score, which works for every gate.
"""

from __future__ import annotations

import numpy as np

from ._design import Design
from .experts import _LOG_2PI
from .gates import Gate
from .model import joint_log_T
from .params import MoEParams

__all__ = ["FreeLikelihood"]


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

    # ------------------------------------------------------------ layout
    @property
    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(field, index)`` of every free coordinate (``var`` and ``tau`` on the log scale)."""
        k, d = self.k, self.d
        experts = [("a", (i, j)) for i in range(k) for j in range(d)]
        experts += [("b", (i,)) for i in range(k)] + [("var", (i,)) for i in range(k)]
        return self.gate_layout + experts

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

        Returns
        -------
        loglik : float
            ``-inf`` when it is not finite.
        grad : ndarray of shape (m,) or None
            The score (None when ``score`` is False or the value is not finite).
        """
        design = self.design
        gate_part, a, b, logvar = self._split(theta)
        mask = self.mask
        if isinstance(mask, str):
            mask = self.gate.selection_mask(
                design, self.gate.from_free_vector(gate_part, self.like))
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
            ll = float(ll_n.sum() if self.weight is None else ll_n @ self.weight)
        if not np.isfinite(ll):
            return -np.inf, None
        if not score:
            return ll, None
        if self.weight is not None:
            resp *= self.weight
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
