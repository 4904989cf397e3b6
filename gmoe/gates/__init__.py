"""Gating functions of a Gaussian mixture of experts.

A gate is one file: a subclass of :class:`Gate` (or of :class:`SmoothGate` for
logits smooth in the parameters) plus one line in :data:`GATES`. See the guide
"Writing a gate" in the docs.
"""

from .._design import Design
from .._validation import build_from_spec
from ._base import SYMMETRIES, Gate, GateStepInfo
from .activation import ACTIVATIONS, ActivationGate
from .gaussian import GaussianGate
from .laplace import LaplaceGate
from .sigmoid import SigmoidGate
from .smooth import SmoothGate
from .softmax import SoftmaxGate
from .temperature import TemperatureGate
from .topk import TopKGate

__all__ = ["Gate", "GateStepInfo", "SmoothGate", "Design", "SYMMETRIES", "SoftmaxGate",
           "TopKGate", "TemperatureGate", "ActivationGate", "SigmoidGate", "LaplaceGate",
           "GaussianGate",
           "ACTIVATIONS", "make_gate", "GATES"]

#: Gate name (as in configs, the CLI and :func:`make_gate`) -> class.
GATES: dict[str, type[Gate]] = {
    "softmax": SoftmaxGate,
    "topk": TopKGate,
    "temperature": TemperatureGate,
    "activation": ActivationGate,
    "sigmoid": SigmoidGate,
    "laplace": LaplaceGate,
    "gaussian": GaussianGate,
}


def make_gate(spec) -> Gate:
    """Build a gate from a Gate, a name (``"softmax"``) or a dict ``{"name": ..., **kwargs}``.

    Examples
    --------
    >>> make_gate({"name": "topk", "K": 2, "rank_by": "logit"}).rank_by
    'logit'
    """
    return build_from_spec(spec, GATES, Gate, "a gate")
