"""Distributions of the covariate X."""

from __future__ import annotations

from abc import ABC

import numpy as np

from ._validation import build_from_spec, check_positive_float, check_positive_int

__all__ = ["XLaw", "Uniform", "Normal", "Grid", "GaussianMixture", "make_xlaw"]


class XLaw(ABC):
    """A law of the covariate X in R^d; ``draw(n, rng)`` returns an (n, d) array."""

    d: int

    def draw(self, n: int, rng=None) -> np.ndarray:
        """Draw n covariate rows, array of shape (n, d)."""
        return self._sample(np.random.default_rng(rng), check_positive_int(n, "n"))

    def _sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The n rows of :meth:`draw` (laws that do not override ``draw``)."""
        raise NotImplementedError

    #: ``(name, constructor arguments)`` of a law whose arguments are its attributes
    _config: tuple[str, tuple[str, ...]] | None = None

    def get_config(self) -> dict:
        """Constructor arguments, JSON-safe, with ``"name"``."""
        name, args = self._config
        return {"name": name, **{arg: getattr(self, arg) for arg in args}}

    def __repr__(self) -> str:
        cfg = self.get_config()
        return f"{type(self).__name__}(" + ", ".join(
            f"{k}={v!r}" for k, v in cfg.items() if k != "name") + ")"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None


class Uniform(XLaw):
    """Uniform on the box ``[low, high]^d``.

    Examples
    --------
    >>> Uniform(0, 1, d=2).draw(3, rng=0).shape
    (3, 2)
    """

    _config = ("uniform", ("low", "high", "d"))

    def __init__(self, low: float = 0.0, high: float = 1.0, d: int = 1):
        self.low, self.high = float(low), float(high)
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"Uniform needs finite low < high, got low={low}, high={high}")
        self.d = check_positive_int(d, "d")

    def _sample(self, rng, n):
        return rng.uniform(self.low, self.high, size=(n, self.d))



class Normal(XLaw):
    """Independent normal coordinates with the given mean and standard deviation."""

    _config = ("normal", ("mean", "std", "d"))

    def __init__(self, mean: float = 0.0, std: float = 1.0, d: int = 1):
        self.mean = float(mean)
        if not np.isfinite(self.mean):
            raise ValueError(f"Normal mean must be finite, got {mean}")
        self.std = check_positive_float(std, "std")
        self.d = check_positive_int(d, "d")

    def _sample(self, rng, n):
        return rng.normal(self.mean, self.std, size=(n, self.d))



class Grid(XLaw):
    """The fixed equispaced grid ``linspace(0, 1, n)`` (d = 1), as in the published code.

    ``Grid()`` gives as many points as asked for; ``Grid(n)`` insists on n points.
    """

    d = 1

    def __init__(self, n: int | None = None):
        self.n = None if n is None else check_positive_int(n, "n", minimum=2)

    def draw(self, n, rng=None):
        n = check_positive_int(n, "n")
        if self.n is not None and n != self.n:
            raise ValueError(f"Grid({self.n}) cannot give {n} points")
        return np.linspace(0.0, 1.0, n)[:, None]

    def get_config(self):
        return {"name": "grid", "n": self.n}


class GaussianMixture(XLaw):
    """The Gaussian mixture ``sum_i weights_i N(mean_i, cov_i)`` on R^d.

    The law of X under the Gaussian gate (docs/theory.md, "The Gaussian gate"): a
    model with that gate draws X from it (:meth:`gmoe.gates.GaussianGate.x_law`).

    Parameters
    ----------
    weights : array-like of shape (k,)
        Non-negative, normalised to sum 1.
    means : array-like of shape (k, d)
    covs : array-like of shape (k, d, d)
        Symmetric positive definite.

    Examples
    --------
    >>> GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.1]], [[0.1]]]).draw(4, rng=0).shape
    (4, 1)
    """

    def __init__(self, weights, means, covs):
        w = np.asarray(weights, dtype=float)
        if w.ndim != 1 or w.size < 1 or not np.all(np.isfinite(w)) or np.any(w < 0) \
                or w.sum() <= 0:
            raise ValueError(f"GaussianMixture weights must be finite, >= 0 and not all 0, "
                             f"got {weights!r}")
        self.weights = w / w.sum()
        k = w.size
        self.means = np.asarray(means, dtype=float).reshape(k, -1)
        self.d = self.means.shape[1]
        self.covs = np.asarray(covs, dtype=float).reshape(k, self.d, self.d)
        try:
            self._chol = np.linalg.cholesky(self.covs)
        except np.linalg.LinAlgError:
            raise ValueError("GaussianMixture covs must be positive definite") from None
        if not (np.all(np.isfinite(self.means)) and np.all(np.isfinite(self._chol))):
            raise ValueError("GaussianMixture means and covs must be finite")

    def draw(self, n, rng=None):
        rng = np.random.default_rng(rng)
        n = check_positive_int(n, "n")
        z = rng.choice(self.weights.size, size=n, p=self.weights)
        e = rng.standard_normal((n, self.d))
        return self.means[z] + np.einsum("nij,nj->ni", self._chol[z], e)

    def get_config(self):
        return {"name": "gaussian_mixture", "weights": self.weights.tolist(),
                "means": self.means.tolist(), "covs": self.covs.tolist()}


_LAWS = {"uniform": Uniform, "normal": Normal, "grid": Grid,
         "gaussian_mixture": GaussianMixture}


def make_xlaw(spec) -> XLaw:
    """Build an X law from an XLaw, a name or a dict ``{"name": ..., **kwargs}``."""
    return build_from_spec(spec, _LAWS, XLaw, "an X law")
