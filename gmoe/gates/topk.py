"""Top-K sparse softmax gate: softmax over the K experts with the largest scores."""

from __future__ import annotations

import warnings
import weakref

import numpy as np
import scipy.optimize

from .._design import Design
from .._validation import check_choice, check_positive_float, check_positive_int, check_X_y
from ..exceptions import IdentifiabilityWarning
from ..params import MoEParams
from ._base import GateStepInfo, weighted_objective
from .smooth import SmoothGate, _Point, masked_log_softmax_T
from .softmax import log_softmax_T

__all__ = ["TopKGate", "RANK_BY", "top_k_mask"]

#: Selection scores: ``"slope"`` ranks by ``beta1_i^T x``, ``"logit"`` by ``beta1_i^T x + beta0_i``.
RANK_BY = ("slope", "logit")

# designs already warned about (one warning of each kind per data set / fit)
_WARNED_CONSTANT: weakref.WeakSet = weakref.WeakSet()
_WARNED_UNSELECTED: weakref.WeakSet = weakref.WeakSet()


def top_k_mask(score: np.ndarray, K: int) -> np.ndarray:
    """Selection of the K largest scores in each column, ties to the lower index.

    Parameters
    ----------
    score : ndarray of shape (k, n)
    K : int

    Returns
    -------
    ndarray of bool, shape (k, n)
        True for the selected experts; exactly K per column.
    """
    k = score.shape[0]
    if K >= k:
        return np.ones(score.shape, dtype=bool)
    if K == 1 or K == k - 1:
        # one winner (the largest, first among ties) or one loser (the smallest, last
        # among ties): a pass over the k rows, cheaper than a reduction with argmax
        best = score.max(axis=0) if K == 1 else score.min(axis=0)
        hit = np.zeros(score.shape, dtype=bool)
        found = np.zeros(score.shape[1], dtype=bool)
        for i in (range(k) if K == 1 else range(k - 1, -1, -1)):
            np.logical_and(score[i] == best, ~found, out=hit[i])
            found |= hit[i]
        return hit if K == 1 else ~hit
    # rank_i = #{j : s_j > s_i} + #{j < i : s_j == s_i}: the position of i in a stable
    # descending sort; selected iff rank_i < K
    rank = np.zeros(score.shape, dtype=np.int32)
    for i in range(k):
        for j in range(k):
            if j == i:
                continue
            beats = score[j] >= score[i] if j < i else score[j] > score[i]
            rank[i] += beats
    return rank < K


def _masked_lse(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``log sum_{i in mask} exp(a_i)`` per column of a (k, n) array.

    Avoids exp of -inf and of huge negative numbers (slow paths of exp): terms below
    exp(-60) of the largest cannot change the sum in double precision.
    """
    m = a.max(axis=0) if mask is None else np.where(mask, a, -np.inf).max(axis=0)
    b = a - m
    np.clip(b, -60.0, 0.0, out=b)
    np.exp(b, out=b)
    if mask is not None:
        b *= mask
    return m + np.log(b.sum(axis=0))


def _observed_loglik(log_w_T: np.ndarray, log_phi_T: np.ndarray,
                     weight: np.ndarray | None = None) -> float:
    """``sum_n weight_n logsumexp_i(log_w + log_phi)`` (log weights may be -inf)."""
    ll_n = _masked_lse(log_w_T + log_phi_T, log_w_T > -np.inf)
    return float(np.sum(ll_n) if weight is None else ll_n @ weight)


class TopKGate(SmoothGate):
    """Top-K sparse softmax gating.

    ``g_i(x) = exp(eta_i) / sum_{j in S(x)} exp(eta_j)`` for ``i in S(x)`` and 0
    otherwise, with ``eta_i = beta1_i^T x + beta0_i`` and ``S(x)`` the K experts with
    the largest score: ``beta1_i^T x`` (``rank_by="slope"``, the default: the
    intercepts are added after the selection) or ``eta_i`` (``rank_by="logit"``).
    Ties go to the lower expert index. Sampling, likelihood and EM all use this one
    selection rule.

    The normal form fixes the last expert's ``(beta0, beta1)`` to 0, as for softmax;
    a common shift of the slopes changes every score by the same amount, so the
    selection is unchanged.

    **Gating M-step** (a generalized-EM step: the observed log-likelihood never
    decreases).

    1. The selection of each data point is held at its current value ``S(x)`` and
       the weighted objective ``sum_n sum_{i in S(x_n)} r_ni log g_i(x_n)`` — a smooth,
       concave problem, a multinomial logistic regression restricted to the selected
       experts — is maximised by Newton's method with step halving. When the
       responsibilities put mass on unselected experts (starting values from
       responsibilities, e.g. k-means), the dense softmax fit of the same
       responsibilities is a second candidate.
    2. The new slopes move ``S(x)``, so candidates are judged on the *observed*
       log-likelihood ``sum_n log sum_i g_i(x_n) phi_i(y_n)`` (expert densities at the
       new expert parameters). If the best is lower than at the current gating
       parameters, the Newton step is halved (``old + t (new - old)``,
       ``t = 1/2, 1/4, ...``, at most ``max_backoff`` times) and, failing that, the
       current gating parameters are kept.
    3. Step 1 cannot see the selection boundaries: a point on the wrong side of one
       has zero responsibility for the expert it needs, and EM alone stalls hundreds
       of nats below the truth. So, once step 2 gains less than ``polish_gain`` per
       sample, a Nelder-Mead search on the observed log-likelihood (piecewise smooth
       in the gating parameters: it jumps where a point changes selection) moves the
       boundaries, in coordinates whitened by the dense softmax Fisher information
       (unit steps of about one standard error), with at most ``polish_evals``
       evaluations per parameter. It only ever returns a better point.

    This is the costly part of the gate: the search takes about ``15 (k-1)(d+1)``
    likelihood evaluations per M-step near convergence. With ``d = 1`` and slope
    ranking it is skipped: the boundaries are at ``x = 0`` whatever the slopes.

    With ``K = 1`` the weights are 0 or 1 and step 1 does nothing: the gating
    parameters move only through the boundary search.

    Warnings
    --------
    IdentifiabilityWarning
        When some expert is selected by no data point (it gets zero responsibility, so
        its parameters are not identifiable and EM leaves its regression unchanged),
        and when ``d = 1``, slope ranking and covariates of one sign make the selection
        the same for every x.

    Parameters
    ----------
    K : int
        Number of selected experts, ``1 <= K <= k`` (``K = k`` is the softmax gate).
    rank_by : {"slope", "logit"}, default="slope"
    max_iter : int, default=20
        Largest number of Newton steps per M-step.
    tol : float, default=1e-10
        Stop the Newton steps when their predicted gain per sample is below it.
    max_backoff : int, default=8
        Largest number of step halvings on the observed log-likelihood.
    polish_evals : int, default=15
        Evaluations per free gating parameter allowed to the boundary search (0
        switches it off).
    polish_step : float, default=1.0
        Size of the search's first simplex, in standard errors.
    polish_gain : float, default=1e-4
        The search runs when steps 1-2 gained less than this per sample.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoEParams
    >>> from gmoe.gates import TopKGate
    >>> p = MoEParams([0.0, 0.0, 0.0], [[1.0], [2.0], [0.0]], np.zeros((3, 1)),
    ...               [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    >>> TopKGate(K=2).weights(np.array([[1.0], [-1.0]]), p).round(4)
    array([[0.2689, 0.7311, 0.    ],
           [0.2689, 0.    , 0.7311]])
    """

    name = "topk"
    symmetry = "intercept_slope"
    #: the two copies compete for the same K slots, so the selection changes
    exact_split = False
    linear_logits = True

    def __init__(self, K: int, rank_by: str = "slope", max_iter: int = 20, tol: float = 1e-10,
                 max_backoff: int = 8, polish_evals: int = 15, polish_step: float = 1.0,
                 polish_gain: float = 1e-4):
        self.K = check_positive_int(K, "K")
        self.rank_by = check_choice(rank_by, "rank_by", RANK_BY)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.tol = check_positive_float(tol, "tol")
        self.max_backoff = check_positive_int(max_backoff, "max_backoff", minimum=0)
        self.polish_evals = check_positive_int(polish_evals, "polish_evals", minimum=0)
        self.polish_step = check_positive_float(polish_step, "polish_step")
        self.polish_gain = check_positive_float(polish_gain, "polish_gain", allow_zero=True)

    def get_config(self) -> dict:
        return {"name": self.name, "K": self.K, "rank_by": self.rank_by,
                "max_iter": self.max_iter, "tol": self.tol, "max_backoff": self.max_backoff,
                "polish_evals": self.polish_evals, "polish_step": self.polish_step,
                "polish_gain": self.polish_gain}

    # ------------------------------------------------------------- structure
    @property
    def min_experts(self) -> int:
        return self.K

    def _check_k(self, k: int) -> None:
        if self.K > k:
            raise ValueError(f"the top-K gate selects K = {self.K} experts but the parameters "
                             f"have only k = {k}; K must be <= k")

    def check_params(self, params: MoEParams, d: int | None = None) -> None:
        super().check_params(params, d)
        self._check_k(params.k)

    def prepare(self, params: MoEParams) -> MoEParams:
        """Drop a temperature the parameters may carry: this gate has none."""
        return params if params.tau is None else params.replace(tau=None)

    # -------------------------------------------------------------- selection
    def _warn_constant_selection(self, design: Design, k: int) -> None:
        if (self.rank_by != "slope" or design.d != 1 or self.K >= k
                or design in _WARNED_CONSTANT):
            return
        x = design.XT[0]
        if x.min() >= 0 or x.max() <= 0:
            _WARNED_CONSTANT.add(design)
            warnings.warn(
                "top-K gate with rank_by='slope', d = 1 and covariates of one sign: the "
                "selection S(x) is the same for every x (the experts with the largest "
                "beta1 when x >= 0), so the gate is an ordinary softmax over those K "
                "experts and the others are never used; use rank_by='logit' or centred X",
                IdentifiabilityWarning, stacklevel=4)

    def _warn_unselected(self, design: Design, mask: np.ndarray | None) -> None:
        if mask is None or design in _WARNED_UNSELECTED:
            return
        unused = np.flatnonzero(~mask.any(axis=1))
        if unused.size:
            _WARNED_UNSELECTED.add(design)
            which = ", ".join(str(i) for i in unused)
            warnings.warn(
                f"top-K gate: expert(s) {which} selected by no data point; they get zero "
                "responsibility, their parameters are not identifiable and EM leaves them "
                "at their current values", IdentifiabilityWarning, stacklevel=4)

    def _mask(self, beta0, beta1, design: Design, eta=None, slope=None) -> np.ndarray | None:
        """Selection S(x_n) as a (k, n) bool array, None when every expert is selected."""
        k = beta0.shape[0]
        self._check_k(k)
        if self.K >= k:
            return None
        if self.rank_by == "slope":
            score = beta1 @ design.XT if slope is None else slope
        else:
            score = (beta1 @ design.XT + beta0[:, None]) if eta is None else eta
        return top_k_mask(score, self.K)

    def is_sparse(self, k: int) -> bool:
        return self.K < k

    def selection_mask(self, design: Design, params: MoEParams) -> np.ndarray | None:
        return self._mask(params.beta0, params.beta1, design)

    def selection(self, X, params: MoEParams) -> np.ndarray:
        """The selected experts S(x_n), bool array of shape (n_samples, k).

        Examples
        --------
        >>> import numpy as np
        >>> from gmoe import MoEParams
        >>> from gmoe.gates import TopKGate
        >>> p = MoEParams([5.0, 0.0, 0.0], [[0.0], [1.0], [0.0]], np.zeros((3, 1)),
        ...               [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
        >>> TopKGate(1).selection([[1.0]], p), TopKGate(1, "logit").selection([[1.0]], p)
        (array([[False,  True, False]]), array([[ True, False, False]]))
        """
        X = check_X_y(X)
        self.check_params(params, d=X.shape[1])
        design = Design(X)
        mask = self._mask(params.beta0, params.beta1, design)
        return np.ones((design.n, params.k), dtype=bool) if mask is None else mask.T.copy()

    # --------------------------------------------------------------- weights
    def _eta(self, beta0, beta1, tau, design: Design):
        slope = beta1 @ design.XT
        eta = slope + beta0[:, None]
        return eta, slope

    def _log_weights_from(self, beta0, beta1, design: Design):
        """Log weights (k, n) and the selection mask at the given gating arrays."""
        eta, slope = self._eta(beta0, beta1, None, design)
        mask = self._mask(beta0, beta1, design, eta, slope)
        return masked_log_softmax_T(eta, mask)[0], mask

    def log_weights_T(self, design: Design, params: MoEParams) -> np.ndarray:
        self._warn_constant_selection(design, params.k)
        return self._log_weights_from(params.beta0, params.beta1, design)[0]

    # ------------------------------------------------------------ parameters
    def _theta(self, params: MoEParams) -> np.ndarray:
        return np.column_stack([params.beta1[:-1], params.beta0[:-1]]).ravel()

    def _arrays(self, theta, k, d):
        p = d + 1
        coef = np.zeros((k, p))
        coef[:-1] = theta.reshape(k - 1, p)
        return coef[:, -1], coef[:, :-1], None

    def _jacobian(self, beta0, beta1, tau, design, eta, cache):
        k = eta.shape[0]
        return [design.ZT] * (k - 1) + [None], None

    # ------------------------------------------------- observed-likelihood polish
    def _hard_value(self, theta, design: Design, resp_T, log_phi_T, k: int):
        """Observed log-likelihood at ``theta`` (weighted objective without ``log_phi_T``).

        Returns ``(value, log_w, mask)``; non-finite values are reported as -inf.
        """
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        log_w, mask = self._log_weights_from(beta0, beta1, design)
        if log_phi_T is None:
            value = weighted_objective(resp_T, log_w)
        else:
            value = _observed_loglik(log_w, log_phi_T, design.weight)
        return (value if np.isfinite(value) else -np.inf), log_w, mask

    def _observed_value(self, theta, design: Design, log_phi_T, k: int) -> float:
        """Observed log-likelihood at ``theta``, lean path for the polish search."""
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        eta, slope = self._eta(beta0, beta1, None, design)
        mask = self._mask(beta0, beta1, design, eta, slope)
        total = design.weighted_sum(_masked_lse(eta + log_phi_T, mask) - _masked_lse(eta, mask))
        return total if np.isfinite(total) else -np.inf

    def _polish(self, theta, value, design: Design, log_phi_T, k: int):
        """Nelder-Mead on the observed log-likelihood, in Fisher-whitened coordinates.

        The observed log-likelihood is piecewise smooth in the gating parameters (it
        jumps when a point changes selection), so this derivative-free search is what
        moves the selection boundaries to where the data put them. Coordinates are
        whitened with the Fisher information of the dense softmax at ``theta`` (unit
        steps are about one standard error); the best vertex never gets worse, so the
        result is never below ``value``.
        """
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        eta, _ = self._eta(beta0, beta1, None, design)
        _, P, _ = log_softmax_T(eta)
        point = _Point(theta, eta, None, None, P, 0.0)
        sw = np.ones(design.n) if design.weight is None else design.weight
        _, H = self._grad_fisher(point, design, P * sw, None, (P * sw, sw))
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        floor = max(1e-6 * w[-1], 1e-8 * design.total_weight) if np.isfinite(w[-1]) else 1.0
        T = V / np.sqrt(np.maximum(w, floor))
        m = theta.size

        def fun(u):
            return -self._observed_value(theta + T @ u, design, log_phi_T, k)

        simplex = np.vstack([np.zeros(m), self.polish_step * np.eye(m)])
        with np.errstate(over="ignore", invalid="ignore"):
            res = scipy.optimize.minimize(
                fun, np.zeros(m), method="Nelder-Mead",
                options={"initial_simplex": simplex, "xatol": 0.2, "fatol": 1e-3,
                         "maxfev": self.polish_evals * m})
        if np.all(np.isfinite(res.x)) and -res.fun > value:
            return theta + T @ res.x, int(res.nfev)
        return theta, int(res.nfev)

    # ---------------------------------------------------------------- M-step
    def m_step(self, design, resp_T, params, log_w_T, log_phi_T=None):
        """Gating M-step; see the class notes. Never lowers the observed log-likelihood."""
        params = self.normal_form(self.prepare(params))
        k = params.k
        self._check_k(k)
        if k == 1:
            return params, np.zeros((1, design.n)), GateStepInfo(0.0, 0.0)
        self._warn_constant_selection(design, k)
        theta0 = self._theta(params)
        log_w0, mask0 = self._log_weights_from(params.beta0, params.beta1, design)

        # 1. Newton on the weighted objective with the selection held at S_old(x)
        point, q0, n_steps, notes = self._maximize(theta0, design, resp_T, k, mask0)
        if mask0 is None:               # K = k: the softmax gate, nothing moves S(x)
            info = GateStepInfo(q0, point.q, n_steps, notes)
            return self._with_theta(point.theta, params), point.log_w, info
        candidates = [point.theta]
        outside = float(np.sum(resp_T, where=~mask0))
        if outside > 1e-12 * design.total_weight:
            # responsibilities on unselected experts (starting values): the dense
            # softmax fit of the same responsibilities is another candidate
            dense, _, _, _ = self._maximize(theta0, design, resp_T, k, None)
            candidates.append(dense.theta)
            notes.append(f"responsibility mass {outside:.3g} outside the selection: "
                         "dense softmax candidate tried")

        # 2. the selection moves with beta: judge candidates on the observed likelihood
        base = (_observed_loglik(log_w0, log_phi_T, design.weight) if log_phi_T is not None
                else weighted_objective(resp_T, log_w0))
        results = [self._hard_value(theta, design, resp_T, log_phi_T, k) for theta in candidates]
        best = int(np.argmax([res[0] for res in results]))
        value, log_w, mask = results[best]
        theta = candidates[best]
        if not value >= base:
            direction = point.theta - theta0
            accepted = False
            t = 1.0
            for _ in range(self.max_backoff):
                t *= 0.5
                trial = theta0 + t * direction
                value, log_w, mask = self._hard_value(trial, design, resp_T, log_phi_T, k)
                if value >= base:
                    theta, accepted = trial, True
                    notes.append(f"observed log-likelihood check: step scaled by {t:g}")
                    break
            if not accepted:
                theta, log_w, mask, value = theta0, log_w0, mask0, base
                notes.append("observed log-likelihood check: gating parameters kept")

        # 3. move the selection boundaries where the data put them, once the step with
        #    the selection held fixed has little left to gain
        #    (with d = 1 and slope ranking the boundaries sit at x = 0 whatever beta
        #    is: only the order of the slopes matters, and step 1 already moves it)
        gain = value - base
        fixed_boundaries = self.rank_by == "slope" and design.d == 1
        if (log_phi_T is not None and self.polish_evals > 0 and not fixed_boundaries
                and not gain > self.polish_gain * design.total_weight):
            polished, nfev = self._polish(theta, value, design, log_phi_T, k)
            if polished is not theta:
                theta = polished
                value, log_w, mask = self._hard_value(theta, design, resp_T, log_phi_T, k)
                notes.append(f"boundary polish: {nfev} evaluations")
        self._warn_unselected(design, mask)
        q1 = weighted_objective(resp_T, log_w)
        info = GateStepInfo(q0, q1, n_steps, notes)
        return self._with_theta(theta, params), log_w, info
