"""gmoe: simulation and EM estimation of Gaussian mixtures of experts."""

from .config import ConfigError, SimConfig, list_configs, load_config
from .density import hellinger, total_variation
from .em import FitResult, fit_em
from .exceptions import (
    ConvergenceWarning,
    DegenerateFitWarning,
    FitFailedError,
    IdentifiabilityWarning,
    InferenceWarning,
    SelectionWarning,
    SeparationWarning,
)
from .gates import (
    ActivationGate,
    Gate,
    LaplaceGate,
    SigmoidGate,
    SmoothGate,
    SoftmaxGate,
    TemperatureGate,
    TopKGate,
    make_gate,
)
from .logit_errors import LogitErrors, logit_errors
from .losses import VoronoiLoss, voronoi_cells, voronoi_loss
from .model import GaussianMoE
from .parameter_errors import ParameterErrors, parameter_errors
from .params import MoEParams
from .plots import plot_failures, plot_rates, plot_sweep
from .rates import RateFit, fit_rate
from .selection import select_experts
from .sweep import SweepResult, load_results, run_sweep
from .tables import rate_table
from .xlaws import Grid, Normal, Uniform, make_xlaw

__version__ = "0.1.0"


def __getattr__(name: str):
    # MoERegressor is imported on first use: scikit-learn (and pandas with it) take
    # about 0.4 s to import, which every CLI call and sweep worker would pay
    if name == "MoERegressor":
        from .estimator import MoERegressor

        return MoERegressor
    raise AttributeError(f"module 'gmoe' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"MoERegressor"})

__all__ = [
    "ActivationGate",
    "ConfigError",
    "ConvergenceWarning",
    "DegenerateFitWarning",
    "FitFailedError",
    "FitResult",
    "Gate",
    "GaussianMoE",
    "Grid",
    "IdentifiabilityWarning",
    "InferenceWarning",
    "LogitErrors",
    "MoEParams",
    "MoERegressor",
    "Normal",
    "ParameterErrors",
    "RateFit",
    "SelectionWarning",
    "SeparationWarning",
    "SimConfig",
    "SigmoidGate",
    "LaplaceGate",
    "SmoothGate",
    "SoftmaxGate",
    "SweepResult",
    "TemperatureGate",
    "TopKGate",
    "Uniform",
    "VoronoiLoss",
    "fit_em",
    "fit_rate",
    "hellinger",
    "list_configs",
    "load_config",
    "load_results",
    "logit_errors",
    "make_gate",
    "make_xlaw",
    "parameter_errors",
    "plot_failures",
    "plot_rates",
    "plot_sweep",
    "rate_table",
    "run_sweep",
    "select_experts",
    "total_variation",
    "voronoi_cells",
    "voronoi_loss",
]
