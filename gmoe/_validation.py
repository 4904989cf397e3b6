"""Input checks shared by the public API: each error names the offending argument."""

from __future__ import annotations

import numbers

import numpy as np


def check_X_y(X, y=None, *, name_X: str = "X", name_y: str = "y"):
    """Return X as a float (n, d) array and y as a float (n,) array, or raise ValueError."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"{name_X} must be a 2-d array of shape (n_samples, n_features), "
                         f"but got an array with {X.ndim} dimensions")
    if X.shape[0] == 0:
        raise ValueError(f"{name_X} has no rows")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name_X} contains NaN or inf")
    if y is None:
        return X
    y = np.asarray(y, dtype=float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name_y} must be a 1-d array of shape (n_samples,), "
                         f"but got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{name_X} and {name_y} have different numbers of samples: "
                         f"{X.shape[0]} and {y.shape[0]}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name_y} contains NaN or inf")
    return X, y


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return value as int if it is an integer >= minimum, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, but got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, but got {value}")
    return int(value)


def check_positive_float(value, name: str, *, allow_zero: bool = False) -> float:
    """Return value as float if it is finite and > 0 (>= 0 with allow_zero), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, but got {value!r}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (np.isfinite(value) and ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, but got {value}")
    return value


def check_choice(value, name: str, choices) -> str:
    """Return value if it is one of choices, else raise ValueError listing them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of "
                         + ", ".join(repr(c) for c in choices))
    return value


def check_sample_weight(sample_weight, n: int):
    """Sample weights as a float array of shape (n,), or None for unit weights.

    Raises ValueError if they do not have n entries, are negative, not finite, or all
    zero. Weights that are all 1 are returned as None (the unweighted fit, exactly).
    """
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=float)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"sample_weight should have the shape of ({n},), but got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or inf")
    if np.any(w < 0):
        raise ValueError(f"sample_weight must be >= 0, but got {w[w < 0][:3]} (negative)")
    if not np.any(w > 0):
        raise ValueError("sample_weight is 0 for every sample: nothing to fit")
    return None if np.all(w == 1.0) else w


def build_from_spec(spec, registry: dict, base: type, what: str):
    """An object of ``registry`` from an instance of ``base`` (returned as is), a name,
    or a dict ``{"name": ..., **kwargs}``; ``what`` names the kind ("a gate"). Raises
    ValueError for a malformed spec, an unknown name or arguments the class refuses."""
    if isinstance(spec, base):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    noun = what.split(" ", 1)[1]
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"{what} is given as {'an' if base.__name__[0] in 'AEIOUX' else 'a'} "
                         f"{base.__name__}, a name or a dict with 'name'; got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    if name not in registry:
        raise ValueError(f"unknown {noun} {name!r}; expected one of "
                         + ", ".join(repr(key) for key in registry))
    try:
        return registry[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for the {name} {noun}: {exc}") from None
