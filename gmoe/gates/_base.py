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

    Subclasses implement ``_log_weights_T`` (expert-major (k, n) layout, used in the
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
        return self._log_weights_T(Design(X), params).T

    def weights(self, X, params: MoEParams) -> np.ndarray:
        """Gate weights ``g_i(x_n)``, array of shape (n_samples, k); rows sum to 1."""
        return np.exp(self.log_weights(X, params))

    @abstractmethod
    def _log_weights_T(self, design: Design, params: MoEParams) -> np.ndarray:
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
        return free + int(self.has_tau and getattr(self, "learn_tau", False))

    @property
    def min_experts(self) -> int:
        """Fewest experts the gate can have (top-K: K)."""
        return 1

    def prepare(self, params: MoEParams) -> MoEParams:
        """Fill gate-specific fields (e.g. tau) of starting parameters; default: as is."""
        return params

    def effective_intercepts(self, params: MoEParams) -> np.ndarray:
        """Intercept of each expert's logit (beta0, or beta0 / tau): atom weights are exp of it."""
        return params.beta0 if params.tau is None else params.beta0 / params.tau

    @abstractmethod
    def m_step(self, design: Design, resp_T: np.ndarray, params: MoEParams,
               log_w_T: np.ndarray, log_phi_T: np.ndarray | None = None
               ) -> tuple[MoEParams, np.ndarray, GateStepInfo]:
        """Gating M-step.

        Parameters
        ----------
        design : Design
        resp_T : ndarray of shape (k, n)
            Responsibilities; each column sums to 1.
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
