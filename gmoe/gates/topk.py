"""Top-K sparse softmax gate: softmax over the K experts with the largest scores."""

from __future__ import annotations

import warnings
import weakref

import numpy as np

from .._design import Design
from .._validation import check_choice, check_positive_float, check_positive_int, check_X_y
from ..exceptions import IdentifiabilityWarning
from ..params import MoEParams
from ._base import GateStepInfo, weighted_objective
from ._topk_search import (
    _BoundarySearch,
    _e_step,
    _Hard,
    _LineBound,
    _masked_lse,
    _masked_softmax,
    _observed_terms,
    top_k_mask,
)
from .smooth import SmoothGate, _Point, masked_log_softmax_T

__all__ = ["TopKGate", "RANK_BY", "top_k_mask"]

#: Selection scores: ``"slope"`` ranks by ``beta1_i^T x``, ``"logit"`` by ``beta1_i^T x + beta0_i``.
RANK_BY = ("slope", "logit")

# designs already warned about (one warning of each kind per data set / fit)
_WARNED_CONSTANT: weakref.WeakSet = weakref.WeakSet()
_WARNED_UNSELECTED: weakref.WeakSet = weakref.WeakSet()


class TopKGate(_BoundarySearch, SmoothGate):
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
        return (masked_log_softmax_T(eta, mask) if mask is None
                else _masked_softmax(eta, mask, pair=self.K == 2))[0], mask

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

    def _point(self, theta, design: Design, resp_T, k: int, mask=None, weight=None) -> _Point:
        """:meth:`SmoothGate._point`, the same arithmetic without ``np.where`` on the
        mask (slow on an irregular one) and without the log weights (``cache`` holds
        ``(slope, lse, penalty)`` for them): Newton's steps evaluate it three to five
        times per M-step."""
        if mask is None:
            return super()._point(theta, design, resp_T, k, mask, weight)
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        eta, slope = self._eta(beta0, beta1, None, design)
        P, lse, pen = _masked_softmax(eta, mask, log_w=False, pair=self.K == 2)
        r, c = self._masked_resp(resp_T, mask) if weight is None else weight
        with np.errstate(invalid="ignore", over="ignore"):
            q = float(np.vdot(r, eta) - np.dot(c, lse))
        # the log weights of the last point only are needed: _hard_state makes them
        return _Point(theta, eta, (slope, lse, pen), None, P, q if np.isfinite(q) else -np.inf)

    @staticmethod
    def _masked_resp(resp_T, mask):
        """Responsibilities inside the selection (a product: the same as ``np.where``
        for finite responsibilities, and faster) and their column sums."""
        r = resp_T if mask is None else resp_T * mask
        return r, r.sum(axis=0)

    # ------------------------------------------- observed log-likelihood
    def _hard_state(self, point: _Point, design: Design, log_phi_T, mask0) -> _Hard:
        """:meth:`_fresh_state` at a Newton point (computed with the selection ``mask0``
        held), reusing its logits and log weights: only the columns whose selection
        moved are recomputed (the same arithmetic, column by column)."""
        eta, (slope, lse, pen) = point.eta, point.cache
        k = eta.shape[0]
        beta0, beta1, _ = self._arrays(point.theta, k, design.d)
        mask = self._mask(beta0, beta1, design, eta, slope)
        log_w, P = eta - lse, point.P          # (as _masked_softmax makes them)
        log_w += pen
        moved = np.flatnonzero(np.any(mask != mask0, axis=0))
        if moved.size:
            P = P.copy()
            log_w[:, moved], P[:, moved], _ = _masked_softmax(eta[:, moved], mask[:, moved],
                                                              pair=self.K == 2)
        return self._with_terms(log_w, mask, eta, slope, P, design, log_phi_T)

    def _observed_value(self, theta, design: Design, log_phi_T, k: int) -> float:
        """Observed log-likelihood at ``theta``, lean path for the polish search."""
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        eta, slope = self._eta(beta0, beta1, None, design)
        mask = self._mask(beta0, beta1, design, eta, slope)
        pair = self.K == 2
        total = design.weighted_sum(_masked_lse(eta + log_phi_T, mask, pair)
                                    - _masked_lse(eta, mask, pair))
        return total if np.isfinite(total) else -np.inf

    def _fresh_state(self, theta, design: Design, log_phi_T, k: int) -> _Hard:
        """Everything the boundary search needs at ``theta``, computed from scratch (its
        value: :func:`_observed_loglik`'s arithmetic)."""
        beta0, beta1, _ = self._arrays(theta, k, design.d)
        eta, slope = self._eta(beta0, beta1, None, design)
        mask = self._mask(beta0, beta1, design, eta, slope)
        log_w, P, _ = _masked_softmax(eta, mask, pair=self.K == 2)
        return self._with_terms(log_w, mask, eta, slope, P, design, log_phi_T)

    def _with_terms(self, log_w, mask, eta, slope, P, design: Design, log_phi_T) -> _Hard:
        value, post, _, raw = _observed_terms(log_w, log_phi_T, mask, design.weight,
                                              self.K == 2)
        value = value if np.isfinite(value) else -np.inf
        return _Hard(value, log_w, mask, eta, slope, P, post, raw)

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
        # the log weights at params come with the call (-inf exactly outside S(x))
        mask0 = None if self.K >= k else log_w_T > -np.inf
        if mask0 is not None and (log_w_T.shape != (k, design.n) or not np.all(
                mask0.sum(axis=0, dtype=np.int32) == self.K)):    # K in every column
            log_w_T, mask0 = self._log_weights_from(params.beta0, params.beta1, design)
        log_w0 = log_w_T

        # 1. Newton on the weighted objective with the selection held at S_old(x)
        point, q0, n_steps, notes = self._maximize(theta0, design, resp_T, k, mask0)
        if mask0 is None:               # K = k: the softmax gate, nothing moves S(x)
            info = GateStepInfo(q0, point.q, n_steps, notes)
            return self._with_theta(point.theta, params), point.log_w, info
        candidates = [point.theta]
        outside = 0.0                   # (an exact 0 after every E-step: test that first)
        if np.any((resp_T > 0) & ~mask0):
            outside = float(np.sum(resp_T, where=~mask0))
        if outside > 1e-12 * design.total_weight:
            # responsibilities on unselected experts (starting values): the dense
            # softmax fit of the same responsibilities is another candidate
            dense, _, _, _ = self._maximize(theta0, design, resp_T, k, None)
            candidates.append(dense.theta)
            notes.append(f"responsibility mass {outside:.3g} outside the selection: "
                         "dense softmax candidate tried")

        # 2. the selection moves with beta: judge candidates on the observed likelihood
        #    (without log_phi_T: on the weighted objective)
        fixed_boundaries = self.rank_by == "slope" and design.d == 1
        search = log_phi_T is not None and self.polish_evals > 0 and not fixed_boundaries
        surrogate = None                # the boundary search's, when built at theta0

        def evaluate(th) -> _Hard:
            if log_phi_T is not None:
                return self._fresh_state(th, design, log_phi_T, k)
            log_w, mask = self._log_weights_from(*self._arrays(th, k, design.d)[:2], design)
            value = weighted_objective(resp_T, log_w)
            return _Hard(value if np.isfinite(value) else -np.inf, log_w, mask)

        direction = point.theta - theta0
        screen = None
        if log_phi_T is None:
            base = weighted_objective(resp_T, log_w0)
            states = [evaluate(point.theta)]
        else:
            base, post0, ll0_n, raw0 = _observed_terms(log_w0, log_phi_T, mask0,
                                                       design.weight, self.K == 2)
            # weights at theta0 (clipped as in the search's state)
            P0 = np.exp(np.maximum(log_w0, -60.0))
            P0 *= mask0
            # the Newton point (t = 1) and the halvings (t = 1/2, ...) are first put to
            # an upper bound: one it puts below base is not evaluated (_LineBound)
            screen = _LineBound(self, theta0, direction, design, log_phi_T, mask0, P0,
                                post0, ll0_n, 0.5 ** np.arange(self.max_backoff + 1))
            upper, margin = screen.bound(1.0)
            states = [_Hard(-np.inf, log_w0, mask0) if upper < base - margin
                      else self._hard_state(point, design, log_phi_T, mask0)]
        states += [evaluate(th) for th in candidates[1:]]
        best = int(np.argmax([st.value for st in states]))
        state, theta = states[best], candidates[best]
        if not state.value >= base:
            accepted = False
            t = 1.0
            for _ in range(self.max_backoff):
                t *= 0.5
                # judged on the exact observed log-likelihood (a surrogate's screening
                # changed the fits' paths, docs/performance.md); the screen only skips
                # trials the exact pass would reject
                trial = theta0 + t * direction
                if screen is not None:
                    upper, margin = screen.bound(t)
                    if upper < base - margin:
                        continue
                state = evaluate(trial)
                if state.value >= base:
                    theta, accepted = trial, True
                    notes.append(f"observed log-likelihood check: step scaled by {t:g}")
                    break
            if not accepted:
                theta = theta0
                state = (_Hard(base, log_w0, mask0) if log_phi_T is None else
                         _Hard(base, log_w0, mask0, post=post0, raw=raw0))
                notes.append("observed log-likelihood check: gating parameters kept")
                if search:
                    # the search starts here, on the surrogate at theta0
                    beta0, beta1, _ = self._arrays(theta0, k, design.d)
                    eta0, slope0 = self._eta(beta0, beta1, None, design)
                    state = state._replace(eta=eta0, slope=slope0, P=P0)
                    surrogate = self._surrogate(theta0, state, design, log_phi_T, k)

        # 3. move the selection boundaries where the data put them, once the step with
        #    the selection held fixed has little left to gain
        #    (with d = 1 and slope ranking the boundaries sit at x = 0 whatever beta
        #    is: only the order of the slopes matters, and step 1 already moves it)
        gain = state.value - base
        if search and not gain > self.polish_gain * design.total_weight:
            polished, nfev, hard = self._polish(theta, state, design, log_phi_T, k,
                                                surrogate)
            if hard is not None:
                theta, state = polished, hard
                notes.append(f"boundary polish: {nfev} evaluations")
        log_w = state.log_w
        self._warn_unselected(design, state.mask)
        # the weighted objective (informational): 0 log 0 = 0, r log 0 = -inf; summed in
        # another order than weighted_objective, without its two boolean gathers
        q1 = (-np.inf if np.any((resp_T > 0) & (log_w == -np.inf))
              else float(np.vdot(resp_T, np.maximum(log_w, -1e300))))
        # EM's E-step at the returned log weights, from the exponentials taken above
        posterior = None if state.raw is None else _e_step(state.raw, state.mask)
        info = GateStepInfo(q0, q1, n_steps, notes, posterior=posterior)
        return self._with_theta(theta, params), log_w, info
