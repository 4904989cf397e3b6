"""gmoe: simulation and EM estimation of Gaussian mixtures of experts."""

from .em import FitResult, fit_em
from .estimator import MoERegressor
from .exceptions import ConvergenceWarning, IdentifiabilityWarning
from .gates import Gate, SoftmaxGate, make_gate
from .model import GaussianMoE
from .params import MoEParams
from .xlaws import Grid, Normal, Uniform, make_xlaw

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "FitResult",
    "Gate",
    "GaussianMoE",
    "Grid",
    "IdentifiabilityWarning",
    "MoEParams",
    "MoERegressor",
    "Normal",
    "SoftmaxGate",
    "Uniform",
    "fit_em",
    "make_gate",
    "make_xlaw",
]
