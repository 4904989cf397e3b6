"""The gate interface: everything EM, losses and sweeps need to know about a gate."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .._design import Design
from .._validation import check_X_y
from ..params import MoEParams

__all__ = ["Gate", "GateStepInfo", "SYMMETRIES"]

#: The translation groups a gate's weights can be invariant under (docs/theory.md,
#: "Models"): no shift at all; a common shift ``t0`` of
#: every intercept ``beta0_i``; or a common shift ``(t0, t1)`` of every
#: ``(beta0_i, beta1_i)``.
SYMMETRIES = ("none", "intercept", "intercept_slope")


@dataclass
class GateStepInfo:
    """What a gating M-step did: objective before/after and the steps it took.

    ``posterior``, when a gate fills it (top-K, which evaluates the observed
    log-likelihood at its new parameters anyway), is ``(resp_T, loglik_n)`` at the
    returned log weights and the ``log_phi_T`` passed, exactly as
    :func:`gmoe.model.joint_log_T` computes them: EM's next E-step, which then is
    not recomputed.
    """

    objective_before: float
    objective_after: float
    n_steps: int = 0
    notes: list[str] = field(default_factory=list)
    posterior: tuple | None = field(default=None, repr=False, compare=False)


class Gate(ABC):
    """Base class of the gating functions g(x) of a Gaussian mixture of experts.

    A gate is the only place that knows how its weights are formed. EM, the losses,
    initialisation, the certified fit and the sweeps talk to it through this class:

    - ``symmetry``: the translation group that leaves the weights unchanged, one of
      :data:`SYMMETRIES`. The normal form, the number of free parameters, the
      layout of certified fits and the losses' translation handling all read it;
    - ``log_weights_T(design, params)``: log g_i(x_n) as an expert-major (k, n)
      array (the EM hot loop's layout); :meth:`log_weights` is the (n, k) view;
    - ``m_step``: the gating M-step on responsibilities, never lowering the
      weighted objective ``sum_n sum_i r_ni log g_i(x_n)``;
    - ``split(params, j)``: expert j made into two copies (``init="split"``);
      exact (the density unchanged) when ``exact_split`` is True;
    - ``free_state``/``free_score``/``free_logit_jacobian``: the score of the
      certified fit (optional: without them a gate is fitted with ``polish=False``).

    A gate with smooth logits derives from :class:`gmoe.gates.SmoothGate`, which
    supplies the M-step, the score and the information from the logits and their
    derivatives. See the guide "Writing a gate" in the docs.
    """

    name: str = "gate"
    #: The translation group of the weights (see :data:`SYMMETRIES`).
    symmetry: str = "intercept_slope"
    #: True if the gate has a temperature carried in ``MoEParams.tau``.
    has_tau: bool = False
    #: True if :meth:`split` leaves the conditional density exactly unchanged.
    exact_split: bool = True
    #: True if the gate is also a model of X (the Gaussian gate): the likelihood is
    #: then the joint one, the conditional plus :meth:`log_marginal_x`, and X is drawn
    #: from :meth:`x_law` (docs/theory.md, "The Gaussian gate").
    models_x: bool = False

    def log_marginal_x(self, design: Design, params: MoEParams) -> np.ndarray:
        """``log p(x_n)``, shape (n,), for a gate that models X (``models_x``)."""
        raise NotImplementedError(f"the {self.name} gate does not model X")

    def x_law(self, params: MoEParams):
        """The law of X (an :class:`gmoe.xlaws.XLaw`) of a gate that models X."""
        raise NotImplementedError(f"the {self.name} gate does not model X")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # a typo here would silently pick another translation group
        if cls.symmetry not in SYMMETRIES:
            raise TypeError(f"{cls.__name__}.symmetry must be one of "
                            + ", ".join(repr(v) for v in SYMMETRIES)
                            + f", but got {cls.symmetry!r}")
        # with only beta0_k fixed, centring would move every intercept by beta1_k^T m,
        # which the standardised fit's Jacobian (gmoe._scaling) does not carry
        if cls.shifts_x is True and cls.symmetry == "intercept":
            raise TypeError(f"{cls.__name__}: shifts_x needs symmetry 'intercept_slope' "
                            "or 'none'")

    @property
    def shifts_intercepts(self) -> bool:
        """True if a common shift of every ``beta0_i`` leaves the weights unchanged."""
        return self.symmetry != "none"

    @property
    def shifts_slopes(self) -> bool:
        """True if the translation group also shifts the slopes (a common ``t1``)."""
        return self.symmetry == "intercept_slope"

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
        """The representative of ``params`` under the gate's translation group.

        The last expert's intercept is shifted to 0 (and its slopes, when the group
        shifts slopes); a gate without a symmetry leaves ``params`` as they are.
        """
        if params.k == 1:   # the gate is constant: its parameters are set to 0
            return params.replace(beta0=np.zeros(1), beta1=np.zeros((1, params.d)))
        if not self.shifts_intercepts:
            return params
        t1 = -params.beta1[-1] if self.shifts_slopes else None
        return params.shift_gate(-params.beta0[-1], t1)

    def n_params(self, k: int, d: int) -> int:
        """Number of free gating parameters (for BIC/AIC): the free layout's length."""
        return len(self.free_layout(k, d))

    def split(self, params: MoEParams, j: int, rng=None, jitter: float = 0.0) -> MoEParams:
        """Make expert ``j`` into two copies that share its gate weight: k -> k + 1 experts.

        The copy is appended as the last expert. For gates whose weights are a
        softmax of logits with the intercept entering as ``beta0_i / tau``, lowering
        both copies' intercept by ``tau log 2`` halves each copy's weight, so with
        ``jitter = 0`` the density is exactly unchanged (``exact_split``; not so for
        the normalised sigmoid, and not for top-K, whose copies compete for the same
        K slots). A gate that models X (Gaussian) halves ``pi_j``: exact too.
        ``jitter`` moves the two copies' expert intercepts ``b`` apart by
        ``+- jitter`` standard deviations of expert j, in a random direction
        (``rng``), to break the symmetry EM would otherwise keep.

        Parameters
        ----------
        params : MoEParams
        j : int
            The expert to split, ``0 <= j < k``.
        rng : None, int or numpy.random.Generator, optional
            Chooses the direction of the jitter (``+`` on the original when None).
        jitter : float, default=0.0

        Returns
        -------
        MoEParams
            k + 1 experts, in the gate's normal form.
        """
        j = expert_index(params, j)
        params = self.prepare(params)
        shift = np.log(2.0) * (params.tau if self.has_tau else 1.0)
        beta0 = np.append(params.beta0, params.beta0[j])
        beta0[[j, -1]] -= shift
        return self.normal_form(copy_expert(params, j, beta0, rng, jitter))

    @property
    def min_experts(self) -> int:
        """Fewest experts the gate can have (top-K: K)."""
        return 1

    def prepare(self, params: MoEParams) -> MoEParams:
        """Fill gate-specific fields (e.g. tau) of starting parameters; default: as is."""
        return params

    #: False if :meth:`rescale_x` cannot express the gate in rescaled covariates
    #: (Laplace: distances; Gaussian: the law of X): ``standardize=True`` then
    #: standardises y only.
    rescales_x: bool = True

    def rescale_x(self, params: MoEParams, scale: np.ndarray) -> MoEParams:
        """The same gate in covariates measured in other units, ``x' = x / scale``.

        Every gate of gmoe sees x only through ``beta1_i^T x``, so column j of
        ``beta1`` is multiplied by ``scale[j]`` and nothing else changes (the normal
        form is kept). Used to fit in standardised units (``fit_em(standardize=True)``).
        A gate with ``rescales_x`` False (its weights depend on x otherwise) takes the
        identity only.
        """
        scale = np.asarray(scale, dtype=float)
        if not self.rescales_x:
            if np.all(scale == 1.0):
                return params
            raise ValueError(f"the {self.name} gate cannot be expressed in rescaled "
                             "covariates (its weights depend on x other than through "
                             "beta1^T x): fit with standardize=False")
        return params.replace(beta1=params.beta1 * scale)

    #: True if the gate sees x only through ``beta1_i^T x + beta0_i`` (a shift of x is
    #: a shift of the intercepts, :meth:`shift_x`): ``standardize=True`` then centres
    #: X. False where the origin of x matters, and for top-K (its maxima sit on
    #: selection boundaries that mapped-back rounding could cross).
    shifts_x: bool = False

    def shift_x(self, params: MoEParams, shift: np.ndarray) -> MoEParams:
        """The same gate in covariates ``x' = x - shift``: each intercept gains
        ``beta1_i^T shift`` (``shifts_x``; otherwise only the zero shift is taken)."""
        shift = np.asarray(shift, dtype=float)
        if not np.any(shift):
            return params
        if not self.shifts_x:
            raise ValueError(f"the {self.name} gate cannot be expressed in shifted "
                             "covariates (its weights depend on the origin of x)")
        return self.normal_form(params.replace(beta0=params.beta0 + params.beta1 @ shift))

    def effective_intercepts(self, params: MoEParams) -> np.ndarray:
        """Intercept of each expert's logit (beta0, or beta0 / tau): atom weights are exp of it."""
        tau = params.tau if self.has_tau else None
        return params.beta0 if tau is None else params.beta0 / tau

    # ------------------------------------------------- free parametrisation
    def free_layout(self, k: int, d: int) -> list[tuple[str, tuple[int, ...]]]:
        """The free gating entries of normal-form parameters, in the free vector's order.

        Each entry is ``(field, index)`` of :class:`MoEParams` (``("tau", ())`` for a
        learned temperature, which the free vector holds as ``log tau``). Expert by
        expert, ``beta1_i`` then ``beta0_i``, for the entries the normal form leaves
        free: all but the last expert's with the symmetry ``"intercept_slope"``, all
        but the last intercept with ``"intercept"``, every entry with ``"none"``. See
        docs/theory.md, "Certified fits and inference".
        """
        layout: list[tuple[str, tuple[int, ...]]] = []
        if k == 1:      # one expert has weight 1 whatever its gating parameters
            return layout
        for i in range(k):
            last = i == k - 1
            if not (last and self.shifts_slopes):
                layout += [("beta1", (i, j)) for j in range(d)]
            if not (last and self.shifts_intercepts):
                layout.append(("beta0", (i,)))
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

    def saturation(self, state, design: Design) -> np.ndarray:
        """How much the data say about each expert's gate, shape (k,).

        ``sum_n g_i(x_n) (1 - g_i(x_n)) c_i(x_n)**2`` with ``c_i`` the derivative of
        expert i's logit in its intercept (1 here, for softmax-type logits): the
        information of that intercept. Below 1/2 the data hold less than one point's
        worth of the expert's transition, and its gate parameters can run off to
        infinity while the score vanishes; the certified fit refuses such a point
        (docs/theory.md, "Certified fits and inference"). ``state`` is a
        :meth:`free_state`.
        """
        w = np.exp(np.asarray(state.log_w))
        return np.einsum("kn,kn->k", w, 1.0 - w)

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

    def free_logit_blocks(self, state, design: Design) -> list | None:
        """The logit Jacobian by experts, when expert i's logit depends on its own
        free coordinates only: a list of k arrays of shape (q_i, n) (None for
        ``q_i = 0``), the blocks of :meth:`free_logit_jacobian` in the order of the
        free vector. None (the default): the Jacobian has no such structure (a shared
        coordinate such as a learned temperature), and the observed information
        takes the general route.
        """
        return None

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


def expert_index(params: MoEParams, j) -> int:
    """``j`` as an int if it indexes an expert of ``params``, else ValueError."""
    if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)) \
            or not 0 <= int(j) < params.k:
        raise ValueError(f"The parameter 'j' must be an expert index in [0, {params.k}), "
                         f"but got {j!r}")
    return int(j)


def copy_expert(params: MoEParams, j: int, beta0: np.ndarray, rng=None,
                  jitter: float = 0.0) -> MoEParams:
    """``params`` with expert ``j`` copied as a last expert, the gate intercepts
    ``beta0`` (k + 1 of them) given, and the copies' ``b`` jittered apart.

    The part of :meth:`Gate.split` that is the same for every gate."""
    j = expert_index(params, j)
    b = np.append(params.b, params.b[j])
    if jitter:
        gen = None if rng is None else np.random.default_rng(rng)
        sign = 1.0 if gen is None else float(gen.choice([-1.0, 1.0]))
        delta = sign * jitter * float(np.sqrt(params.var[j]))
        b[j] += delta
        b[-1] -= delta
    cov = params.gate_cov
    return params.replace(beta0=beta0, beta1=np.vstack([params.beta1, params.beta1[j]]),
                          a=np.vstack([params.a, params.a[j]]), b=b,
                          var=np.append(params.var, params.var[j]),
                          gate_cov=None if cov is None else np.concatenate([cov, cov[j:j + 1]]))


def weighted_objective(resp_T: np.ndarray, log_w_T: np.ndarray) -> float:
    """``sum_n sum_i r_ni log g_i(x_n)`` with the convention 0 * log 0 = 0."""
    mask = resp_T > 0
    return float(np.sum(resp_T[mask] * log_w_T[mask]))
