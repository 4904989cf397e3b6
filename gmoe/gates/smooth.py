"""Gating M-step shared by gates whose logits are smooth functions of their parameters.

The temperature, activation and (with its selection held fixed) top-K gates all have
log weights ``log g_i(x) = eta_i(x; theta) - log sum_{j in S(x)} exp(eta_j(x; theta))``
with logits ``eta`` smooth in a parameter vector ``theta``. Their gating M-step
maximises the weighted objective

    Q(theta) = sum_n sum_{i in S(x_n)} r_ni log g_i(x_n)

by Fisher scoring: the curvature used is the Fisher information of the (restricted)
multinomial, ``J^T c (diag P - P P^T) J`` with ``J = d eta / d theta``, which is
positive semi-definite, so every step is an ascent direction, and equals the exact
negative Hessian when the logits are linear in ``theta`` (top-K, temperature with a
fixed tau). Steps are halved until ``Q`` does not decrease, so the step is a
generalized-EM step. The pseudo-inverse of the curvature is used, so flat directions
(the beta/tau scaling of the temperature gate, the common slope shift of the activation
gate with identity activation) are simply not moved along. Gates whose objective is
not concave (activation) also cap each step (``max_step``, a trust region).

Parameter vectors are laid out expert by expert (``beta1_i`` then ``beta0_i``, for the
experts and coordinates that are free in the gate's normal form), with ``log tau``
last when the temperature is learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._design import Design
from .._validation import check_positive_float, check_positive_int
from ..params import MoEParams
from ._base import Gate, GateStepInfo
from .softmax import log_softmax_T

__all__ = ["SmoothGate", "TemperedGate", "masked_log_softmax_T", "psd_solve"]


@dataclass
class _Point:
    """The weighted objective and everything derived from the logits at one theta."""

    theta: np.ndarray
    eta: np.ndarray       # raw logits (k, n), finite
    cache: object         # gate-specific intermediate values for the Jacobian
    log_w: np.ndarray     # log weights (k, n), -inf outside the selection
    P: np.ndarray         # weights (k, n)
    q: float


def masked_exp(eta: np.ndarray, m: np.ndarray, mask: np.ndarray):
    """``P = mask * exp(max(eta - m, -60))`` and its column sums ``s``.

    ``m`` is the largest kept logit per column, so ``P <= 1``; terms below exp(-60) of
    it are taken as exp(-60) before the mask (exp of large negative numbers is slow)
    and, kept, are negligible against the largest term, which is 1.
    """
    P = eta - m
    np.clip(P, -60.0, 0.0, out=P)
    np.exp(P, out=P)
    P *= mask
    return P, P.sum(axis=0)


def masked_log_softmax_T(eta: np.ndarray, mask: np.ndarray | None):
    """Log-softmax over axis 0 of a (k, n) array restricted to ``mask`` (True = kept).

    Returns ``(log_w, P, lse)`` as :func:`log_softmax_T`, with ``log_w = -inf`` and
    ``P = 0`` outside the mask. No exp of -inf or of huge negative numbers is taken
    (slow paths of exp): terms below exp(-60) of the largest only enter P, as 0.
    """
    if mask is None:
        return log_softmax_T(eta.copy())
    m = np.where(mask, eta, -np.inf).max(axis=0)
    P, s = masked_exp(eta, m, mask)
    P /= s
    lse = m + np.log(s)
    log_w = np.where(mask, eta - lse, -np.inf)
    return log_w, P, lse


def psd_solve(H: np.ndarray, g: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
    """Minimum-norm solution of ``H delta = g`` for a symmetric positive semi-definite H.

    Eigenvalues below ``rcond`` times the largest are treated as zero, so directions
    along which the objective is flat get no step.
    """
    if H.size == 0:
        return np.zeros(0)
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    top = w[-1]
    if not (np.isfinite(top) and top > 0):
        return np.zeros_like(g)
    keep = w > rcond * top
    Vk = V[:, keep]
    return Vk @ ((Vk.T @ g) / w[keep])


class SmoothGate(Gate):
    """Base class of gates whose weights are a softmax of logits smooth in their parameters.

    ``g_i(x) = exp(eta_i(x)) / sum_j exp(eta_j(x))`` where expert i's logit
    ``eta_i(x; beta0_i, beta1_i, tau)`` depends on its own gating parameters (and a
    shared temperature). A new smooth gate implements two methods:

    - :meth:`logits` ``(beta0, beta1, tau, design) -> (eta, cache)``: the logits,
      array of shape (k, n), and anything its derivatives reuse;
    - :meth:`logit_derivatives` ``(beta0, beta1, tau, design, eta, cache)``: the
      derivatives of ``eta_i`` in ``beta1_i`` (k, d, n) and in ``beta0_i`` (k, n),
      and in ``log tau`` (k, n, or None when tau is not learned);

    and declares ``name`` and ``symmetry``. The base class supplies the log weights,
    the gating M-step (Fisher scoring with step halving, never lowering the weighted
    objective), the free vector of certified fits, the score and the logit Jacobian
    of the observed information, all laid out by :meth:`Gate.free_layout`.

    Gates with a faster special-purpose parametrisation (temperature, activation,
    top-K) override the private hooks ``_theta``, ``_arrays``, ``_eta`` and
    ``_jacobian`` instead: ``_jacobian`` returns ``(blocks, t)`` with ``blocks[i]``
    of shape (p_i, n), the derivative of ``eta_i`` in expert i's free parameters
    (``p_i`` may be 0), and ``t`` of shape (k, n), the derivative in ``log tau``.
    """

    max_iter: int = 20
    tol: float = 1e-10
    #: Largest change of any parameter in one scoring step (a trust region; the
    #: activation gate, whose objective is not concave, needs one).
    max_step: float = np.inf

    # ----------------------------------------------------------- public hooks
    def logits(self, beta0: np.ndarray, beta1: np.ndarray, tau, design: Design):
        """The logits ``eta_i(x_n)``, array of shape (k, n), and a cache for the derivatives.

        Parameters
        ----------
        beta0 : ndarray of shape (k,)
        beta1 : ndarray of shape (k, d)
        tau : float or None
            The temperature (None for gates without one).
        design : Design
            The covariates; ``design.XT`` is X transposed, shape (d, n).
        """
        raise NotImplementedError(f"the {self.name} gate defines neither logits() nor _eta()")

    def logit_derivatives(self, beta0, beta1, tau, design: Design, eta, cache):
        """Derivatives of the logits: ``(d_slope, d_intercept, d_log_tau)``.

        ``d_slope[i, j, n]`` is the derivative of ``eta_i(x_n)`` in ``beta1[i, j]``,
        shape (k, d, n); ``d_intercept[i, n]`` in ``beta0[i]``, shape (k, n);
        ``d_log_tau`` in ``log tau``, shape (k, n), or None when tau is not learned.
        """
        raise NotImplementedError(f"the {self.name} gate defines neither "
                                  "logit_derivatives() nor _jacobian()")

    # ------------------------------------------------- hooks (layout-generic)
    def _tau_of(self, params: MoEParams):
        """The temperature used with ``params`` (None: the gate has none)."""
        return None

    def _tau_from(self, theta: np.ndarray):
        """The temperature held by a free vector (None: the gate has none)."""
        return None

    def _theta(self, params: MoEParams) -> np.ndarray:
        """Free gating parameters of normal-form, prepared ``params``."""
        return self.free_vector(params)

    def _slots(self, k: int, d: int):
        """Index arrays of the free vector into the flat ``beta1`` and ``beta0``."""
        key = (k, d)
        cached = getattr(self, "_slot_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        layout = self.free_layout(k, d)
        slope = [(pos, idx[0] * d + idx[1]) for pos, (f, idx) in enumerate(layout)
                 if f == "beta1"]
        icpt = [(pos, idx[0]) for pos, (f, idx) in enumerate(layout) if f == "beta0"]
        slots = tuple(np.array(v, dtype=int).reshape(-1, 2).T for v in (slope, icpt))
        self._slot_cache = (key, slots)
        return slots

    def _arrays(self, theta: np.ndarray, k: int, d: int):
        """``(beta0 (k,), beta1 (k, d), tau or None)`` from ``theta``."""
        (s_pos, s_at), (i_pos, i_at) = self._slots(k, d)
        beta1 = np.zeros(k * d)
        beta1[s_at] = theta[s_pos]
        beta0 = np.zeros(k)
        beta0[i_at] = theta[i_pos]
        return beta0, beta1.reshape(k, d), self._tau_from(theta)

    def _eta(self, beta0, beta1, tau, design: Design):
        """Raw logits, array of shape (k, n), and a cache for :meth:`_jacobian`."""
        return self.logits(beta0, beta1, tau, design)

    def _jacobian(self, beta0, beta1, tau, design: Design, eta, cache):
        """``(blocks, t)``: per-expert logit derivatives and the log-tau derivative."""
        d_slope, d_icpt, t = self.logit_derivatives(beta0, beta1, tau, design, eta, cache)
        k, d = beta1.shape
        blocks = []
        for i in range(k):
            rows = []
            if not (i == k - 1 and self.shifts_slopes):
                rows.append(d_slope[i])
            if not (i == k - 1 and self.shifts_intercepts):
                rows.append(d_icpt[i][None, :])
            blocks.append(np.vstack(rows) if rows else None)
        return blocks, t

    def _with_theta(self, theta: np.ndarray, params: MoEParams) -> MoEParams:
        beta0, beta1, tau = self._arrays(theta, params.k, params.d)
        return params.replace(beta0=beta0, beta1=beta1, tau=tau)

    # ------------------------------------------------- weights and M-step
    def log_weights_T(self, design: Design, params: MoEParams) -> np.ndarray:
        eta, _ = self._eta(params.beta0, params.beta1, self._tau_of(params), design)
        return log_softmax_T(eta)[0]

    def m_step(self, design, resp_T, params, log_w_T, log_phi_T=None):
        params = self.normal_form(self.prepare(params))
        if params.k == 1:
            return params, np.zeros((1, design.n)), GateStepInfo(0.0, 0.0)
        theta = self._theta(params)
        point, q0, n_steps, notes = self._maximize(theta, design, resp_T, params.k)
        info = GateStepInfo(q0, point.q, n_steps, notes)
        return self._with_theta(point.theta, params), point.log_w, info

    # ------------------------------------------------------------- objective
    def _point(self, theta, design: Design, resp_T, k: int, mask=None,
               weight=None) -> _Point:
        """Evaluate the weighted objective at ``theta`` (selection ``mask`` held fixed)."""
        beta0, beta1, tau = self._arrays(theta, k, design.d)
        if tau is not None and not (np.isfinite(tau) and tau > 0):
            eta = np.zeros((k, design.n))
            return _Point(theta, eta, None, eta, eta, -np.inf)
        eta, cache = self._eta(beta0, beta1, tau, design)
        log_w, P, lse = masked_log_softmax_T(eta, mask)
        r, c = self._masked_resp(resp_T, mask) if weight is None else weight
        with np.errstate(invalid="ignore", over="ignore"):
            q = float(np.vdot(r, eta) - np.dot(c, lse))
        if not np.isfinite(q):
            q = -np.inf
        return _Point(theta, eta, cache, log_w, P, q)

    @staticmethod
    def _masked_resp(resp_T, mask):
        """Responsibilities inside the selection and their column sums."""
        r = resp_T if mask is None else np.where(mask, resp_T, 0.0)
        return r, r.sum(axis=0)

    def _grad_fisher(self, point: _Point, design: Design, resp_T, mask=None, weight=None,
                     fisher: bool = True):
        """Gradient of the weighted objective and its Fisher curvature at ``point``."""
        k = point.eta.shape[0]
        beta0, beta1, tau = self._arrays(point.theta, k, design.d)
        blocks, t = self._jacobian(beta0, beta1, tau, design, point.eta, point.cache)
        r, c = self._masked_resp(resp_T, mask) if weight is None else weight
        P = point.P
        W = P * c                       # c_n P_in
        G = r - W                       # dQ / d eta
        sizes = [0 if B is None else B.shape[0] for B in blocks]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        m = int(offsets[-1]) + (t is not None)
        grad = np.empty(m)
        for i, B in enumerate(blocks):
            if sizes[i]:
                grad[offsets[i]:offsets[i + 1]] = B @ G[i]
        if t is not None:
            grad[-1] = np.vdot(G, t)
        if not fisher:
            return grad, None
        H = np.empty((m, m))
        for i, Bi in enumerate(blocks):
            if not sizes[i]:
                continue
            si = slice(offsets[i], offsets[i + 1])
            for j in range(i, k):
                if not sizes[j]:
                    continue
                sj = slice(offsets[j], offsets[j + 1])
                C = W[i] * P[j]
                if i == j:
                    np.subtract(W[i], C, out=C)
                else:
                    np.negative(C, out=C)
                block = (Bi * C) @ blocks[j].T
                H[si, sj] = block
                H[sj, si] = block.T
        if t is not None:
            tbar = np.einsum("kn,kn->n", P, t)
            D = W * (t - tbar)
            for i, B in enumerate(blocks):
                if sizes[i]:
                    H[offsets[i]:offsets[i + 1], -1] = B @ D[i]
                    H[-1, offsets[i]:offsets[i + 1]] = H[offsets[i]:offsets[i + 1], -1]
            H[-1, -1] = np.vdot(W, t * t) - np.dot(c, tbar * tbar)
        return grad, H

    def _objective_and_grad(self, theta, design: Design, resp_T, mask=None):
        """Weighted objective ``Q(theta)`` and its analytic gradient (for tests and tools).

        Parameters
        ----------
        theta : ndarray of shape (m,)
            Free gating parameters in the gate's layout (see :meth:`_theta`).
        design : Design
        resp_T : ndarray of shape (k, n)
        mask : ndarray of bool, shape (k, n), optional
            Selection held fixed (top-K); None means every expert is selected.

        Returns
        -------
        q : float
        grad : ndarray of shape (m,)
        """
        theta = np.asarray(theta, dtype=float)
        point = self._point(theta, design, resp_T, resp_T.shape[0], mask)
        grad, _ = self._grad_fisher(point, design, resp_T, mask, fisher=False)
        return point.q, grad

    def _fisher_information(self, theta, design: Design, resp_T, mask=None) -> np.ndarray:
        """The curvature matrix used by the scoring steps, shape (m, m)."""
        point = self._point(np.asarray(theta, dtype=float), design, resp_T,
                            resp_T.shape[0], mask)
        return self._grad_fisher(point, design, resp_T, mask)[1]

    # ------------------------------------------------------------ score
    def free_state(self, theta, design: Design, k: int, mask=None) -> _Point:
        theta = np.asarray(theta, dtype=float)
        beta0, beta1, tau = self._arrays(theta, k, design.d)
        eta, cache = self._eta(beta0, beta1, tau, design)
        log_w, P, _ = masked_log_softmax_T(eta, mask)
        return _Point(theta, eta, cache, log_w, P, np.nan)

    def _state_jacobian(self, state: _Point, design: Design):
        """:meth:`_jacobian` at a state of :meth:`free_state`: ``(blocks, t)``."""
        beta0, beta1, tau = self._arrays(state.theta, state.eta.shape[0], design.d)
        return self._jacobian(beta0, beta1, tau, design, state.eta, state.cache)

    def free_logit_jacobian(self, state: _Point, design: Design) -> np.ndarray:
        k = state.eta.shape[0]
        blocks, t = self._state_jacobian(state, design)
        J = np.zeros((k, state.theta.size, design.n))
        offset = 0
        for i, B in enumerate(blocks):
            if B is not None and B.shape[0]:
                J[i, offset:offset + B.shape[0]] = B
                offset += B.shape[0]
        if t is not None:
            J[:, -1, :] = t
        return J

    def free_logit_blocks(self, state: _Point, design: Design) -> list | None:
        blocks, t = self._state_jacobian(state, design)
        return None if t is not None else blocks

    def free_score(self, state: _Point, design: Design, resp_T, mask=None) -> np.ndarray:
        return self._grad_fisher(state, design, resp_T, mask, fisher=False)[0]

    # ----------------------------------------------------------- maximiser
    def _maximize(self, theta, design: Design, resp_T, k: int,
                  mask=None) -> tuple[_Point, float, int, list]:
        """Fisher scoring with step halving from ``theta``; Q never decreases.

        Returns the final point, the objective at the start, the number of accepted
        steps and notes.
        """
        weight = self._masked_resp(resp_T, mask)
        point = self._point(theta, design, resp_T, k, mask, weight)
        q0, n_steps, notes = point.q, 0, []
        if theta.size == 0:
            return point, q0, 0, notes
        gain_tol = self.tol * design.total_weight
        for _ in range(self.max_iter):
            grad, H = self._grad_fisher(point, design, resp_T, mask, weight)
            delta = psd_solve(H, grad)
            decrement = float(grad @ delta)
            if not np.isfinite(decrement) or decrement / 2 <= gain_tol:
                break
            longest = float(np.max(np.abs(delta)))
            if longest > self.max_step:     # trust region: no jumps into flat regions
                delta *= self.max_step / longest
            step, accepted = 1.0, False
            for _ in range(40):
                trial = self._point(point.theta + step * delta, design, resp_T, k, mask, weight)
                if trial.q >= point.q:
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                notes.append("line search found no ascent")
                break
            improvement = trial.q - point.q
            point = trial
            n_steps += 1
            if improvement <= gain_tol:
                break
        return point, q0, n_steps, notes


class ScoringGate(SmoothGate):
    """A smooth gate whose constructor takes only the scoring steps' ``max_iter`` (the
    largest number of steps per gating M-step) and ``tol`` (the predicted gain per
    sample below which they stop): the sigmoid and Laplace gates."""

    def __init__(self, max_iter: int = 20, tol: float = 1e-10):
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.tol = check_positive_float(tol, "tol")

    def get_config(self) -> dict:
        return {"name": self.name, "max_iter": self.max_iter, "tol": self.tol}


class TemperedGate(SmoothGate):
    """Shared handling of the temperature ``tau`` (fixed, or learned on the log scale)."""

    has_tau = True
    tau: float
    learn_tau: bool

    def prepare(self, params: MoEParams) -> MoEParams:
        """Give ``params`` the gate's tau if they have none (or always, when tau is fixed)."""
        if params.tau is None or (not self.learn_tau and params.tau != self.tau):
            return params.replace(tau=self.tau)
        return params

    def check_params(self, params: MoEParams, d: int | None = None) -> None:
        if isinstance(params, MoEParams):
            params = self.prepare(params)
        super().check_params(params, d)

    def _tau_of(self, params: MoEParams) -> float:
        """The temperature used with ``params``: the fixed one, or ``params.tau``."""
        if not self.learn_tau or params.tau is None:
            return self.tau
        return params.tau

    def _tau_theta(self, params: MoEParams) -> list[float]:
        return [np.log(self._tau_of(params))] if self.learn_tau else []

    def _tau_from(self, theta: np.ndarray) -> float:
        """exp of the last entry (inf or 0 when out of range: the objective is then -inf)."""
        if not self.learn_tau:
            return self.tau
        with np.errstate(over="ignore", under="ignore"):
            return float(np.exp(theta[-1]))
