"""Gating functions of a Gaussian mixture of experts."""

from ._base import Gate, GateStepInfo
from .activation import ACTIVATIONS, ActivationGate
from .softmax import SoftmaxGate
from .temperature import TemperatureGate
from .topk import TopKGate

__all__ = ["Gate", "GateStepInfo", "SoftmaxGate", "TopKGate", "TemperatureGate",
           "ActivationGate", "ACTIVATIONS", "make_gate", "GATES"]

GATES: dict[str, type[Gate]] = {
    "softmax": SoftmaxGate,
    "topk": TopKGate,
    "temperature": TemperatureGate,
    "activation": ActivationGate,
}


def make_gate(spec) -> Gate:
    """Build a gate from a Gate, a name (``"softmax"``) or a dict ``{"name": ..., **kwargs}``.

    Examples
    --------
    >>> make_gate({"name": "topk", "K": 2, "rank_by": "logit"}).rank_by
    'logit'
    """
    if isinstance(spec, Gate):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a gate is given as a Gate, a name or a dict with 'name'; got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    if name not in GATES:
        raise ValueError(f"unknown gate {name!r}; expected one of "
                         + ", ".join(repr(g) for g in GATES))
    try:
        return GATES[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for the {name} gate: {exc}") from None
