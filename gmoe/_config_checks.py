"""Checks of a simulation config across its tables: the name as a folder name, the
truth's arrays, the fit gate against the number of experts, the theory's metric names.

Each returns the first problem as a sentence naming the key, or None;
:meth:`gmoe.config.SimConfig.from_dict` raises it as a ``ConfigError``.
"""

from __future__ import annotations

import numpy as np

from .gates import make_gate
from .parameter_errors import ParameterErrors

#: Metric columns a theory slope may name besides the parameter errors'
#: (``{param}_size{s}``, ``{param}_atom{j}``, ...): the losses, the density distance,
#: the logit errors and the dendrogram's merged level.
THEORY_METRICS = ("loss", "loss_mass", "loss_infimum", "hellinger", "logit_ratio",
                  "logit_raw", "tau_error", "loss_merged")


def name_problem(name: str) -> str | None:
    """The name names the results folder and the figures: one file-name component."""
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("-"):
        return (f"key 'name' must be a file name (it names the results folder and the "
                f"figures): no '/', '\\\\', leading '-', '.' or '..', got {name!r}")
    return None


def fit_gate_problem(gate_spec: dict, n_experts: int) -> str | None:
    """A fit gate that needs more experts than the fit has (top-K with K > k)."""
    gate = make_gate(gate_spec)
    if gate.min_experts > n_experts:
        return (f"key 'fit.gate': the {gate.name} gate needs at least {gate.min_experts} "
                f"experts ({gate_spec}) but fit.n_experts = {n_experts}")
    return None


def theory_problem(theory: dict) -> str | None:
    """A theory slope for a metric no sweep records (a typo would drop its verdict)."""
    for key in theory:
        if key not in THEORY_METRICS and ParameterErrors.parse_column(key) is None:
            return (f"key 'theory.{key}' names no recorded metric: use one of "
                    + ", ".join(THEORY_METRICS)
                    + " or a parameter error such as beta1_size2 or a_atom0")
    return None


def truth_problem(truth: dict, exc: Exception) -> str:
    """What a failed build of ``[truth]`` says: the key of an array that is not numbers
    in rows of one length, and its shape; else the parameters' own message."""
    k = f" with k = {len(truth['beta0'])}" if isinstance(truth.get("beta0"), list) else ""
    for key in ("beta0", "beta1", "a", "b", "var", "sd", "gate_cov"):
        try:
            np.array(truth.get(key, 0.0), dtype=float)
        except (ValueError, TypeError):
            shape = {"beta1": "(k, d)", "a": "(k, d)", "gate_cov": "(k, d, d)"}.get(key, "(k,)")
            return (f"key 'truth.{key}' must be an array of numbers of shape {shape}{k}, "
                    f"its rows of one length; got {truth[key]!r}")
    return f"key 'truth': {exc}"
