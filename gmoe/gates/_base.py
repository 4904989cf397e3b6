"""The gate interface: everything EM, losses and sweeps need to know about a gate."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .._design import Design
from .._validation import check_X_y
from ..params import MoEParams

__all__ = ["Gate", "GateStepInfo"]


@dataclass
class GateStepInfo:
    """What a gating M-step did: objective before/after and the steps it took."""

    objective_before: float
    objective_after: float
    n_steps: int = 0
    notes: list[str] = field(default_factory=list)


class Gate(ABC):
    """Base class of the gating functions g(x) of a Gaussian mixture of experts.

    A gate is the only place that knows how its weights are formed. It supplies

    - ``log_weights(X, params)``: log g_i(x_n), array of shape (n, k);
    - ``m_step``: the gating M-step on responsibilities, never lowering the
      weighted objective ``sum_n sum_i r_ni log g_i(x_n)``;
    - ``normal_form``: the representative of the parameters under the gate's
      translation group (the last expert's gating parameters fixed to 0);
    - ``shifts_slopes``: whether the translation group also shifts the slopes
      (beta1), or only the intercepts (beta0);
    - ``n_params(k, d)``: the number of free gating parameters.

    Subclasses implement ``log_weights_T`` (expert-major (k, n) layout, used in the
    EM hot loop) and ``m_step``.
    """

    name: str = "gate"
    #: True if adding a common t1 to every beta1 leaves the gate unchanged.
    shifts_slopes: bool = True
    #: True if the gate has a temperature carried in ``MoEParams.tau``.
    has_tau: bool = False

    # ------------------------------------------------------------------ weights
    def log_weights(self, X, params: MoEParams) -> np.ndarray:
        """Log gate weights ``log g_i(x_n)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        params : MoEParams

        Returns
        -------
        ndarray of shape (n_samples, k)
            ``-inf`` where a gate gives an expert zero weight (top-K).
        """
        X = check_X_y(X)
        self.check_params(params, d=X.shape[1])
        return self.log_weights_T(Design(X), params).T

    def weights(self, X, params: MoEParams) -> np.ndarray:
        """Gate weights ``g_i(x_n)``, array of shape (n_samples, k); rows sum to 1."""
        return np.exp(self.log_weights(X, params))

    @abstractmethod
    def log_weights_T(self, design: Design, params: MoEParams) -> np.ndarray:
        """Log weights as a C-contiguous (k, n) array."""

    # --------------------------------------------------------------- structure
    def check_params(self, params: MoEParams, d: int | None = None) -> None:
        """Raise ValueError if ``params`` cannot be used with this gate."""
        if not isinstance(params, MoEParams):
            raise ValueError(f"params must be a MoEParams, got {type(params).__name__}")
        if d is not None and params.d != d:
            raise ValueError(f"params have d = {params.d} features but X has {d} columns")
        if self.has_tau and params.tau is None:
            raise ValueError(f"the {self.name} gate needs a temperature: params.tau is None")

    def normal_form(self, params: MoEParams) -> MoEParams:
        """Shift the gating parameters so that the last expert's are 0."""
        t1 = -params.beta1[-1] if self.shifts_slopes else None
        return params.shift_gate(-params.beta0[-1], t1)

    def n_params(self, k: int, d: int) -> int:
        """Number of free gating parameters (for BIC/AIC)."""
        free = (k - 1) * (d + 1) if self.shifts_slopes else (k - 1) + k * d
        return free + int(self.learns_tau)

    @property
    def min_experts(self) -> int:
        """Fewest experts the gate can have (top-K: K)."""
        return 1

    def prepare(self, params: MoEParams) -> MoEParams:
        """Fill gate-specific fields (e.g. tau) of starting parameters; default: as is."""
        return params

    def rescale_x(self, params: MoEParams, scale: np.ndarray) -> MoEParams:
        """The same gate in covariates measured in other units, ``x' = x / scale``.

        Every gate of gmoe sees x only through ``beta1_i^T x``, so column j of
        ``beta1`` is multiplied by ``scale[j]`` and nothing else changes (the normal
        form is kept). Used to fit in standardised units (``fit_em(standardize=True)``).
        """
        return params.replace(beta1=params.beta1 * np.asarray(scale, dtype=float))

    def effective_intercepts(self, params: MoEParams) -> np.ndarray:
        """Intercept of each expert's logit (beta0, or beta0 / tau): atom weights are exp of it."""
        return params.beta0 if params.tau is None else params.beta0 / params.tau

    # ------------------------------------------------- free parametrisation
    def free_layout(self, k: int, d: int) -> list[tuple[str, tuple[int, ...]]]:
        """The free gating entries of normal-form parameters, in the free vector's order.

        Each entry is ``(field, index)`` of :class:`MoEParams` (``("tau", ())`` for a
        learned temperature, which the free vector holds as ``log tau``). Expert by
        expert, ``beta1_i`` then ``beta0_i`` for the experts whose gating parameters
        the normal form leaves free; a gate whose symmetry shifts intercepts only
        also frees the last expert's slopes. See docs/theory.md, "Certified fits and
        inference".
        """
        layout: list[tuple[str, tuple[int, ...]]] = []
        for i in range(k - 1):
            layout += [("beta1", (i, j)) for j in range(d)]
            layout.append(("beta0", (i,)))
        if not self.shifts_slopes:
            layout += [("beta1", (k - 1, j)) for j in range(d)]
        if self.learns_tau:
            layout.append(("tau", ()))
        return layout

    @property
    def learns_tau(self) -> bool:
        """True if the temperature is a free parameter (estimated by maximum likelihood)."""
        return bool(self.has_tau and getattr(self, "learn_tau", False))

    def free_vector(self, params: MoEParams) -> np.ndarray:
        """The free gating parameters of ``params`` (put in normal form), 1-d array."""
        params = self.normal_form(self.prepare(params))
        out = [np.log(params.tau) if name == "tau" else getattr(params, name)[index]
               for name, index in self.free_layout(params.k, params.d)]
        return np.array(out, dtype=float)

    def from_free_vector(self, theta: np.ndarray, params: MoEParams) -> MoEParams:
        """``params`` with the gating part replaced by the free vector ``theta``."""
        k, d = params.k, params.d
        beta0, beta1 = np.zeros(k), np.zeros((k, d))
        tau = self.prepare(params).tau
        for value, (name, index) in zip(theta, self.free_layout(k, d), strict=True):
            if name == "tau":
                tau = float(np.exp(value))
            else:
                (beta0 if name == "beta0" else beta1)[index] = value
        return params.replace(beta0=beta0, beta1=beta1, tau=tau)

    def is_sparse(self, k: int) -> bool:
        """True if some experts get weight exactly 0 at some x (top-K with K < k): the
        likelihood is then not differentiable where the selection changes."""
        return False

    def selection_mask(self, design: Design, params: MoEParams) -> np.ndarray | None:
        """Experts each point may use, bool (k, n); None when every expert is (dense gates)."""
        return None

    def free_state(self, theta: np.ndarray, design: Design, k: int,
                   mask: np.ndarray | None = None):
        """Everything the score needs at the free vector ``theta``.

        Returns an object with attribute ``log_w`` (the log weights, (k, n), ``-inf``
        outside ``mask``); pass it to :meth:`free_score`. With a ``mask`` (top-K) the
        selection is held at it instead of recomputed from ``theta``.

        Every gate shipped with gmoe supplies it; a gate without it can be sampled
        and fitted by EM, but not polished (``fit_em(polish=False)``).
        """
        raise NotImplementedError(f"the {self.name} gate does not supply its score "
                                  "(free_state/free_score): fit it with polish=False")

    #: True when the logits are linear in the free vector (their second derivatives
    #: vanish): the observed information then needs no second-derivative term.
    linear_logits: bool = False

    def free_logit_jacobian(self, state, design: Design) -> np.ndarray:
        """Derivatives of the logits in the free vector, array of shape (k, m, n).

        ``J[i, :, n]`` is the gradient of expert i's logit at x_n (for a masked
        selection, the logits before masking). With the weights ``P`` the gradient of
        ``log g_i`` is ``J_i - sum_l P_l J_l``. Needed for the analytic observed
        information; a gate without it is polished with finite differences.
        """
        raise NotImplementedError(f"the {self.name} gate does not supply its logit Jacobian")

    def free_score(self, state, design: Design, resp_T: np.ndarray,
                   mask: np.ndarray | None = None) -> np.ndarray:
        """Gradient of ``sum_n sum_i r_ni log g_i(x_n)`` in the free vector.

        ``resp_T`` (k, n) may carry sample weights (columns summing to the weight);
        with posterior responsibilities this is the gating part of the score of the
        observed log-likelihood (Fisher's identity).
        """
        raise NotImplementedError(f"the {self.name} gate does not supply its score "
                                  "(free_state/free_score): fit it with polish=False")

    @abstractmethod
    def m_step(self, design: Design, resp_T: np.ndarray, params: MoEParams,
               log_w_T: np.ndarray, log_phi_T: np.ndarray | None = None
               ) -> tuple[MoEParams, np.ndarray, GateStepInfo]:
        """Gating M-step.

        Parameters
        ----------
        design : Design
        resp_T : ndarray of shape (k, n)
            Responsibilities times the sample weights: each column sums to the
            sample's weight (to 1 without weights). The step must use these column
            sums, not assume 1.
        params : MoEParams
            Current parameters (the expert parts are left unchanged).
        log_w_T : ndarray of shape (k, n)
            Log weights at ``params`` (reused, not recomputed).
        log_phi_T : ndarray of shape (k, n), optional
            Expert log densities, for gates whose step must check the observed
            log-likelihood (top-K).

        Returns
        -------
        params : MoEParams
            In normal form, with weighted objective not lower than at the input.
        log_w_T : ndarray of shape (k, n)
            Log weights at the returned parameters.
        info : GateStepInfo
        """

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict:
        """The gate's constructor arguments, JSON-safe (``{"name": ..., **kwargs}``)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        cfg = self.get_config()
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


def weighted_objective(resp_T: np.ndarray, log_w_T: np.ndarray) -> float:
    """``sum_n sum_i r_ni log g_i(x_n)`` with the convention 0 * log 0 = 0."""
    mask = resp_T > 0
    return float(np.sum(resp_T[mask] * log_w_T[mask]))
