"""JSON-safe values: the one conversion of numpy scalars, arrays and non-finite floats."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["jsonable"]


def jsonable(value):
    """``value`` with numpy scalars and arrays as plain Python, non-finite floats as None."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return value
