"""Parameters of a k-expert Gaussian mixture of experts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MoEParams"]


def _as_array(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.array(value, dtype=float)
    if arr.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, "
                         f"but got {arr.shape}")
    # a NaN or inf makes the sum non-finite; only then (or on overflow) look closer.
    # Parameters are built a few times per EM iteration, so this check is kept cheap.
    if not math.isfinite(arr.sum()) and not np.isfinite(arr).all():
        raise ValueError(f"The parameter '{name}' contains NaN or inf")
    arr.setflags(write=False)
    return arr


def _check_cov(value, k: int, d: int) -> np.ndarray:
    """Gate covariances: shape (k, d, d) (d = 1: also (k,)), finite, symmetric,
    positive definite."""
    arr = np.array(value, dtype=float)
    if d == 1 and arr.shape == (k,):
        arr = arr[:, None, None]  # d = 1 given as a flat vector of variances
    cov = _as_array(arr, "gate_cov", (k, d, d))
    if not np.allclose(cov, np.swapaxes(cov, 1, 2), rtol=1e-10, atol=0.0):
        raise ValueError("The parameter 'gate_cov' must hold symmetric matrices, but "
                         f"got {cov.tolist()}")
    eig = np.linalg.eigvalsh(cov)
    if eig.min() <= 0:
        bad = np.flatnonzero(eig.min(axis=1) <= 0).tolist()
        raise ValueError("The parameter 'gate_cov' must hold positive definite matrices, "
                         f"but those of expert(s) {bad} have eigenvalues {eig[bad].tolist()}")
    return cov


@dataclass(frozen=True, eq=False)
class MoEParams:
    """Parameters of a Gaussian mixture of experts with k experts on d features.

    The conditional density is
    ``p(y | x) = sum_i g_i(x) N(y; a_i^T x + b_i, var_i)`` with gate weights ``g_i``
    depending on ``beta0``, ``beta1`` (and ``tau``) through the gate.

    Parameters
    ----------
    beta0 : array-like of shape (k,)
        Gating intercepts.
    beta1 : array-like of shape (k, d)
        Gating slopes.
    a : array-like of shape (k, d)
        Expert slopes.
    b : array-like of shape (k,)
        Expert intercepts.
    var : array-like of shape (k,)
        Expert variances (not standard deviations); all > 0.
    tau : float or None, default=None
        Temperature of temperature and activation gates (> 0), None for gates that
        have none.
    gate_cov : array-like of shape (k, d, d) or None, default=None
        Covariance matrices of the Gaussian gate (``make_gate("gaussian")``:
        ``g_i(x)`` proportional to ``exp(beta0_i) N(x; beta1_i, gate_cov_i)``), each
        symmetric positive definite; None for the other gates. See docs/theory.md,
        "The Gaussian gate".

    Notes
    -----
    The arrays are stored read-only, as given. Gates put parameters in their normal
    form (the last expert's gating parameters fixed to 0, see
    :meth:`gmoe.gates.Gate.normal_form`); models and fit results always hold that form.

    Examples
    --------
    >>> from gmoe import MoEParams
    >>> p = MoEParams(beta0=[-8, 0], beta1=[[25], [0]], a=[[-20], [20]], b=[15, -5],
    ...               var=[0.09, 0.16])
    >>> p.k, p.d
    (2, 1)
    """

    beta0: np.ndarray
    beta1: np.ndarray
    a: np.ndarray
    b: np.ndarray
    var: np.ndarray
    tau: float | None = None
    gate_cov: np.ndarray | None = None

    def __post_init__(self):
        beta0 = np.array(self.beta0, dtype=float)
        if beta0.ndim != 1 or beta0.shape[0] < 1:
            raise ValueError("The parameter 'beta0' should have the shape of (k,) with k >= 1, "
                             f"but got {beta0.shape}")
        k = beta0.shape[0]
        beta1 = np.array(self.beta1, dtype=float)
        if beta1.ndim == 1 and beta1.shape[0] == k:
            beta1 = beta1[:, None]  # d = 1 given as a flat vector
        if beta1.ndim != 2 or beta1.shape[0] != k:
            raise ValueError(f"The parameter 'beta1' should have the shape of ({k}, d), "
                             f"but got {beta1.shape}")
        d = beta1.shape[1]
        a = np.array(self.a, dtype=float)
        if a.ndim == 1 and a.shape[0] == k and d == 1:
            a = a[:, None]
        object.__setattr__(self, "beta0", _as_array(beta0, "beta0", (k,)))
        object.__setattr__(self, "beta1", _as_array(beta1, "beta1", (k, d)))
        object.__setattr__(self, "a", _as_array(a, "a", (k, d)))
        object.__setattr__(self, "b", _as_array(self.b, "b", (k,)))
        var = _as_array(self.var, "var", (k,))
        if var.min() <= 0:
            raise ValueError(f"The parameter 'var' must be > 0 (variances), but got {var}")
        object.__setattr__(self, "var", var)
        if self.tau is not None:
            tau = float(self.tau)
            if not (np.isfinite(tau) and tau > 0):
                raise ValueError(f"The parameter 'tau' must be finite and > 0, but got {tau}")
            object.__setattr__(self, "tau", tau)
        if self.gate_cov is not None:
            object.__setattr__(self, "gate_cov", _check_cov(self.gate_cov, k, d))

    # ------------------------------------------------------------------ shape
    @property
    def k(self) -> int:
        """Number of experts."""
        return self.beta0.shape[0]

    @property
    def d(self) -> int:
        """Number of features."""
        return self.beta1.shape[1]

    @property
    def sd(self) -> np.ndarray:
        """Expert standard deviations, ``sqrt(var)``."""
        return np.sqrt(self.var)

    # ------------------------------------------------------------- transforms
    def replace(self, **changes) -> MoEParams:
        """Return a copy with the named fields replaced (validated again)."""
        fields = {f: getattr(self, f)
                  for f in ("beta0", "beta1", "a", "b", "var", "tau", "gate_cov")}
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValueError(f"unknown MoEParams field(s): {sorted(unknown)}")
        fields.update(changes)
        return MoEParams(**fields)

    def permute(self, order) -> MoEParams:
        """Return the parameters with the experts reordered as ``order``."""
        order = np.asarray(order, dtype=int)
        if sorted(order.tolist()) != list(range(self.k)):
            raise ValueError(f"order must be a permutation of range({self.k}), got {order}")
        cov = None if self.gate_cov is None else self.gate_cov[order]
        return MoEParams(self.beta0[order], self.beta1[order], self.a[order], self.b[order],
                         self.var[order], self.tau, cov)

    def shift_gate(self, t0: float = 0.0, t1=None) -> MoEParams:
        """Add a common shift ``t0`` to every beta0 and ``t1`` (d-vector) to every beta1."""
        beta1 = self.beta1 if t1 is None else self.beta1 + np.asarray(t1, dtype=float)[None, :]
        return self.replace(beta0=self.beta0 + float(t0), beta1=beta1)

    # ------------------------------------------------------------ comparison
    def allclose(self, other: MoEParams, rtol: float = 1e-7, atol: float = 1e-9) -> bool:
        """True if every field of ``other`` matches within the tolerances (same k, d, tau)."""
        if not isinstance(other, MoEParams) or (self.k, self.d) != (other.k, other.d):
            return False
        if (self.tau is None) != (other.tau is None):
            return False
        if (self.gate_cov is None) != (other.gate_cov is None):
            return False
        pairs = [(self.beta0, other.beta0), (self.beta1, other.beta1), (self.a, other.a),
                 (self.b, other.b), (self.var, other.var)]
        if self.tau is not None:
            pairs.append((np.array(self.tau), np.array(other.tau)))
        if self.gate_cov is not None:
            pairs.append((self.gate_cov, other.gate_cov))
        return all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in pairs)

    def __eq__(self, other) -> bool:
        return isinstance(other, MoEParams) and self.allclose(other, rtol=0.0, atol=0.0)

    __hash__ = None  # mutable-looking value object; compare with == or allclose

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """JSON-safe dict of plain lists and floats; inverse of :meth:`from_dict`."""
        out = {"beta0": self.beta0.tolist(), "beta1": self.beta1.tolist(),
               "a": self.a.tolist(), "b": self.b.tolist(), "var": self.var.tolist()}
        if self.tau is not None:
            out["tau"] = self.tau
        if self.gate_cov is not None:
            out["gate_cov"] = self.gate_cov.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> MoEParams:
        """Build parameters from a dict as written by :meth:`to_dict`.

        ``sd`` may be given instead of ``var`` (then ``var = sd**2``).
        """
        data = dict(data)
        if "sd" in data:
            if "var" in data:
                raise ValueError("give either 'var' or 'sd', not both")
            sd = np.asarray(data.pop("sd"), dtype=float)
            if np.any(~np.isfinite(sd)) or np.any(sd <= 0):
                raise ValueError(f"The parameter 'sd' must be finite and > 0, but got {sd}")
            data["var"] = sd**2
        known = {"beta0", "beta1", "a", "b", "var", "tau", "gate_cov"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown parameter key(s) {sorted(unknown)}; expected "
                             f"{sorted(known | {'sd'})}")
        missing = {"beta0", "beta1", "a", "b", "var"} - set(data)
        if missing:
            raise ValueError(f"missing parameter key(s) {sorted(missing)}")
        return cls(**data)

    def __repr__(self) -> str:
        def fmt(x):
            return np.array2string(np.asarray(x), precision=4, separator=", ")
        tau = "" if self.tau is None else f", tau={self.tau:.4g}"
        cov = "" if self.gate_cov is None else f", gate_cov={fmt(self.gate_cov)}"
        return (f"MoEParams(k={self.k}, d={self.d}, beta0={fmt(self.beta0)}, "
                f"beta1={fmt(self.beta1)}, a={fmt(self.a)}, b={fmt(self.b)}, "
                f"var={fmt(self.var)}{tau}{cov})")
