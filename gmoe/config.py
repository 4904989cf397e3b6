"""Simulation configs: TOML files describing a convergence-rate experiment.

A config names the truth (gate and parameters), the law of X, the fit, the grid of
sample sizes, the replications, the metrics, the theoretical slopes, an optional
``[quick]`` override and an optional ``[grid]`` of further settings to sweep. See
``docs/`` and the built-in files in ``simulations/`` for examples.
"""

from __future__ import annotations

import copy
import hashlib
import json
import numbers
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ._config_checks import fit_gate_problem, name_problem, theory_problem, truth_problem
from .gates import make_gate
from .params import MoEParams
from .settings import FitSettings, LossSettings, SettingError
from .xlaws import make_xlaw

__all__ = ["SimConfig", "load_config", "list_configs", "ConfigError", "METRICS"]

#: Metrics a sweep can record. "loss" is the Voronoi loss under the configured
#: ``loss.translation``; "loss_mass" and "loss_infimum" are the same loss under the
#: "mass" and "infimum" conventions whatever is configured (docs/theory.md,
#: "Translation conventions").
#: "selection" fits every k = 1..fit.n_experts and records the number of experts each
#: criterion chooses (DSC, AIC, BIC, ICL) and the loss of the dendrogram's level with
#: the true number of atoms (docs/theory.md, "Choosing the number of experts").
METRICS = ("loss", "loss_mass", "loss_infimum", "parameter_errors", "logit_errors",
           "hellinger", "loglik", "n_iter", "converged", "seconds", "selection")

_TOP_KEYS = {"name", "description", "seed", "reps", "truth", "x", "fit", "n_grid", "metrics",
             "theory", "loss", "hellinger", "quick", "grid", "verdict", "data", "compare"}
_FIT_KEYS = {"n_experts", "gate", "init", "init_scale", "n_init", "tol", "max_iter", "stop",
             "accelerate", "polish", "gtol", "var_floor", "screen_iter", "screen_tol",
             "kmeans_sample"}
_NGRID_KEYS = {"values", "min", "max", "num", "spacing"}
_TRUTH_KEYS = {"gate", "beta0", "beta1", "a", "b", "var", "sd", "tau", "gate_cov"}
_LOSS_KEYS = {"kind", "metric", "translation"}
_HELLINGER_KEYS = {"n_x"}
_DATA_KEYS = {"outliers", "outlier_scale"}


#: Keys of ``[fit]`` written into the resolved table with their default (part of the hash).
_FIT_DEFAULTED = ("init", "init_scale", "polish", "gtol", "n_init", "tol", "max_iter", "stop")


class ConfigError(ValueError):
    """A malformed simulation config; the message names the offending key."""


def _settings(cls, table: dict, prefix: str, name: str, **defaults):
    """``cls.from_table(table)`` with its error re-worded to name the TOML key."""
    try:
        return cls.from_table(table, **defaults)
    except SettingError as exc:
        raise ConfigError(f"{_where(name)}key {prefix + exc.key!r}: {exc}") from None


def _where(name: str) -> str:
    return f"config {name!r}: " if name else "config: "


def _require_table(value, key: str, name: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(name)}key {key!r} must be a table, got {type(value).__name__}")
    return value


def _check_keys(table: dict, allowed: set, prefix: str, name: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{_where(name)}unknown key {prefix + key!r}; expected one of "
                              + ", ".join(sorted(allowed)))


def _int(value, key: str, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{_where(name)}key {key!r} must be an integer >= {minimum}, "
                          f"got {value!r}")
    return int(value)


def _float(value, key: str, name: str, positive: bool = False, allow_zero: bool = False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value):
        raise ConfigError(f"{_where(name)}key {key!r} must be a finite number, got {value!r}")
    if positive and not (value > 0 or (allow_zero and value == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{_where(name)}key {key!r} must be {bound}, got {value!r}")
    return float(value)


def _gate_spec(value, key: str, name: str) -> dict:
    spec = {"name": value} if isinstance(value, str) else value
    if not isinstance(spec, dict) or "name" not in spec:
        hint = (" (a [grid] key such as 'fit.gate.K' sets one entry of the gate table: "
                "write the [fit] gate out with its 'name')" if isinstance(spec, dict) else "")
        raise ConfigError(f"{_where(name)}key {key!r} must be a gate name or a table with "
                          f"'name', got {value!r}{hint}")
    try:
        make_gate(spec)
    except ValueError as exc:
        raise ConfigError(f"{_where(name)}key {key!r}: {exc}") from None
    return dict(spec)


def _n_values(table: dict, name: str) -> list[int]:
    _check_keys(table, _NGRID_KEYS, "n_grid.", name)
    if "values" in table:
        if set(table) - {"values"}:
            raise ConfigError(f"{_where(name)}key 'n_grid' takes either 'values' or "
                              "'min'/'max'/'num'/'spacing', not both")
        vals = table["values"]
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"{_where(name)}key 'n_grid.values' must be a non-empty list")
        return [_int(v, "n_grid.values", name, minimum=2) for v in vals]
    for key in ("min", "max", "num"):
        if key not in table:
            raise ConfigError(f"{_where(name)}key 'n_grid.{key}' is missing")
    lo = _int(table["min"], "n_grid.min", name, minimum=2)
    hi = _int(table["max"], "n_grid.max", name, minimum=2)
    num = _int(table["num"], "n_grid.num", name)
    if hi < lo:
        raise ConfigError(f"{_where(name)}key 'n_grid.max' must be >= n_grid.min, got {hi} < {lo}")
    spacing = table.get("spacing", "log")
    if spacing == "log":
        vals = np.geomspace(lo, hi, num)
    elif spacing == "linear":
        vals = np.linspace(lo, hi, num)
    else:
        raise ConfigError(f"{_where(name)}key 'n_grid.spacing' must be 'log' or 'linear', "
                          f"got {spacing!r}")
    return sorted({int(round(v)) for v in vals})


@dataclass(frozen=True)
class SimConfig:
    """A validated, resolved simulation config (one sub-sweep: no ``grid`` left).

    Build with :func:`load_config` (which expands a ``[grid]`` into several) or
    :meth:`from_dict`. ``raw`` is the resolved dict; ``hash`` identifies it in
    results files.
    """

    raw: dict
    label: str = ""

    # --------------------------------------------------------------- parsing
    @classmethod
    def from_dict(cls, data: dict, label: str = "") -> SimConfig:
        """Validate a resolved config dict (no ``quick``/``grid`` expansion)."""
        data = copy.deepcopy(data)
        name = data.get("name", "")
        _check_keys(data, _TOP_KEYS - {"quick", "grid"}, "", name)
        if not isinstance(name, str) or not name:
            raise ConfigError("config: key 'name' must be a non-empty string")
        if problem := name_problem(name):
            raise ConfigError(f"config: {problem}")
        for key in ("seed", "reps", "truth", "fit", "n_grid"):
            if key not in data:
                raise ConfigError(f"{_where(name)}key {key!r} is missing")
        _int(data["seed"], "seed", name, minimum=0)
        _int(data["reps"], "reps", name)
        truth = _require_table(data["truth"], "truth", name)
        _check_keys(truth, _TRUTH_KEYS, "truth.", name)
        truth["gate"] = _gate_spec(truth.get("gate", "softmax"), "truth.gate", name)
        try:
            params = MoEParams.from_dict({k: v for k, v in truth.items() if k != "gate"})
            gate = make_gate(truth["gate"])
            gate.check_params(gate.prepare(params))
        except (ValueError, TypeError) as exc:
            raise ConfigError(_where(name) + truth_problem(truth, exc)) from None
        # a gate that models X (the Gaussian gate) draws X from its own mixture: the
        # X law "gate", the default for it and only for it
        models_x = getattr(gate, "models_x", False)
        x = _require_table(data.get("x", {"name": "gate"} if models_x else
                                    {"name": "uniform", "d": params.d}), "x", name)
        x.setdefault("name", "uniform")
        if (x["name"] == "gate") != models_x:
            raise ConfigError(f"{_where(name)}key 'x': " + (
                f"the {gate.name} gate models X (X is drawn from the gate's mixture): give "
                "no [x] table, or x = {name = 'gate'}" if models_x else
                f"the X law 'gate' is only for gates that model X, not the {gate.name} gate"))
        if x["name"] in ("uniform", "normal"):
            x.setdefault("d", params.d)
        try:
            law = (gate.x_law(gate.normal_form(gate.prepare(params))) if models_x
                   else make_xlaw(x))
        except ValueError as exc:
            raise ConfigError(f"{_where(name)}key 'x': {exc}") from None
        if law.d != params.d:
            raise ConfigError(f"{_where(name)}key 'x': X law has d = {law.d} but the truth "
                              f"has d = {params.d}")
        data["x"] = x
        fit = _require_table(data["fit"], "fit", name)
        _check_keys(fit, _FIT_KEYS, "fit.", name)
        if "n_experts" not in fit:
            raise ConfigError(f"{_where(name)}key 'fit.n_experts' is missing")
        _int(fit["n_experts"], "fit.n_experts", name)
        fit["gate"] = _gate_spec(fit.get("gate", truth["gate"]), "fit.gate", name)
        if problem := fit_gate_problem(fit["gate"], fit["n_experts"]):
            raise ConfigError(_where(name) + problem)
        settings = _settings(FitSettings, fit, "fit.", name, init="near_truth")
        # the keys defaulted into the table (not accelerate, var_floor, screen_iter,
        # screen_tol, kmeans_sample: configs without them keep their hash); polish is
        # defaulted, so results of uncertified runs made before that key existed have
        # another hash
        for key in _FIT_DEFAULTED:
            fit.setdefault(key, getattr(settings, key))
        _n_values(_require_table(data["n_grid"], "n_grid", name), name)
        metrics = data.setdefault("metrics", ["loss", "parameter_errors", "hellinger",
                                              "loglik", "n_iter", "converged", "seconds"])
        if not isinstance(metrics, list) or any(m not in METRICS for m in metrics):
            raise ConfigError(f"{_where(name)}key 'metrics' must be a list drawn from "
                              + ", ".join(METRICS) + f"; got {metrics!r}")
        loss = _require_table(data.setdefault("loss", {}), "loss", name)
        _check_keys(loss, _LOSS_KEYS, "loss.", name)
        # every key defaulted into the table: results of the old default translation
        # ("infimum") have another hash and are not resumed under the new one
        settings = _settings(LossSettings, loss, "loss.", name)
        for key in _LOSS_KEYS:
            loss.setdefault(key, getattr(settings, key))
        # contaminated data (not defaulted into the table: configs without it keep
        # their hash); see gmoe.tasks.contaminate
        if "data" in data:
            table = _require_table(data["data"], "data", name)
            _check_keys(table, _DATA_KEYS, "data.", name)
            share = _float(table.get("outliers", 0.0), "data.outliers", name, True, True)
            if share >= 1:
                raise ConfigError(f"{_where(name)}key 'data.outliers' must be a share in "
                                  f"[0, 1), got {share!r}")
            _float(table.get("outlier_scale", 10.0), "data.outlier_scale", name, True)
        hell = _require_table(data.setdefault("hellinger", {}), "hellinger", name)
        _check_keys(hell, _HELLINGER_KEYS, "hellinger.", name)
        _int(hell.setdefault("n_x", 1000), "hellinger.n_x", name, minimum=2)
        # the n-range rate verdicts are fitted on, declared before the run (it is part
        # of the hash: changing it afterwards makes the results another config's)
        if "verdict" in data:
            verdict = _require_table(data["verdict"], "verdict", name)
            _check_keys(verdict, {"n_min", "n_max"}, "verdict.", name)
            lo = _float(verdict.get("n_min", 0), "verdict.n_min", name, True, True)
            hi = _float(verdict.get("n_max", 1e300), "verdict.n_max", name, True)
            if not lo < hi:
                raise ConfigError(f"{_where(name)}key 'verdict': n_min ({lo:g}) must be "
                                  f"below n_max ({hi:g})")
        theory = _require_table(data.setdefault("theory", {}), "theory", name)
        for key, value in theory.items():
            _float(value, f"theory.{key}", name)
        if problem := theory_problem(theory):
            raise ConfigError(_where(name) + problem)
        data.setdefault("description", "")
        if not isinstance(data["description"], str):
            raise ConfigError(f"{_where(name)}key 'description' must be a string")
        return cls(raw=data, label=label)

    # ------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def seed(self) -> int:
        return int(self.raw["seed"])

    @property
    def reps(self) -> int:
        return int(self.raw["reps"])

    @property
    def n_values(self) -> list[int]:
        return _n_values(self.raw["n_grid"], self.name)

    @property
    def truth_gate(self):
        return make_gate(self.raw["truth"]["gate"])

    @property
    def truth_params(self) -> MoEParams:
        gate = self.truth_gate
        params = MoEParams.from_dict({k: v for k, v in self.raw["truth"].items() if k != "gate"})
        return gate.normal_form(gate.prepare(params))

    @property
    def x_law(self):
        if self.raw["x"].get("name") == "gate":  # a gate that models X: its mixture
            return self.truth_gate.x_law(self.truth_params)
        return make_xlaw(self.raw["x"])

    @property
    def fit(self) -> dict:
        return self.raw["fit"]

    @property
    def fit_gate(self):
        return make_gate(self.raw["fit"]["gate"])

    @property
    def n_experts(self) -> int:
        """``fit.n_experts``: the number of experts fitted."""
        return int(self.raw["fit"]["n_experts"])

    @property
    def fit_settings(self) -> FitSettings:
        """The ``[fit]`` table's EM settings (``init`` defaults to ``"near_truth"``)."""
        return FitSettings.from_table(self.raw["fit"], init="near_truth")

    def fit_kwargs(self) -> dict:
        """The keyword arguments of :func:`gmoe.fit_em` the config sets (all but
        ``n_experts`` and ``rng``); a sweep's fits do not warn."""
        return dict(gate=self.fit_gate, truth=self.truth_params, warn=False,
                    **self.fit_settings.as_kwargs())

    @property
    def loss_settings(self) -> LossSettings:
        """The ``[loss]`` table: kind, metric, translation."""
        return LossSettings.from_table(self.raw["loss"])

    @property
    def loss_kind(self) -> str:
        """``loss.kind`` with ``"auto"`` resolved: ``"exact"`` or ``"over"``."""
        return self.loss_settings.resolve_kind(self.n_experts, self.truth_params.k)

    @property
    def metrics(self) -> list[str]:
        """The metrics the sweep records (see :data:`METRICS`)."""
        return list(self.raw["metrics"])

    @property
    def hellinger_n_x(self) -> int:
        """``hellinger.n_x``: covariate points over which density distances average."""
        return int(self.raw["hellinger"]["n_x"])

    @property
    def contamination(self) -> tuple[float, float]:
        """``(data.outliers, data.outlier_scale)``: ``(0.0, 10.0)`` without ``[data]``."""
        table = self.raw.get("data", {})
        return float(table.get("outliers", 0.0)), float(table.get("outlier_scale", 10.0))

    @property
    def theory(self) -> dict:
        return dict(self.raw["theory"])

    @property
    def hash(self) -> str:
        """Hash of everything that changes the numbers (not the description)."""
        payload = {k: v for k, v in self.raw.items() if k not in ("description", "theory")}
        payload["label"] = self.label
        text = json.dumps(payload, sort_keys=True, default=float)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"label": self.label, "hash": self.hash, **copy.deepcopy(self.raw)}


def expand(data: dict, quick: bool = False) -> list[SimConfig]:
    """Apply ``[quick]`` (if asked) and expand ``[grid]`` and ``[compare]`` into one
    SimConfig per combination (see :mod:`gmoe._config_grid`); both profiles are checked."""
    from ._config_grid import expand_config

    if not (isinstance(data, dict) and "quick" in data):
        return expand_config(data, quick)
    full = expand_config(data, False)  # the values [quick] overrides are checked too
    try:
        fast = expand_config(data, True)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (with the [quick] profile applied)") from None
    return fast if quick else full


def _builtin_dir():
    """The built-in configs: installed as ``gmoe.simulations`` (the top-level
    ``simulations/`` folder, mapped by pyproject), or that folder itself when gmoe is
    imported from a source checkout."""
    try:
        return resources.files("gmoe.simulations")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "simulations"


def list_configs() -> dict[str, str]:
    """Built-in config names with their descriptions."""
    out = {}
    for entry in sorted(_builtin_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text())
            out[entry.name[:-5]] = data.get("description", "")
    return out


def read_config(source) -> dict:
    """The raw dict of a config given as a built-in name, a TOML path or a dict."""
    if isinstance(source, dict):
        return copy.deepcopy(source)
    source = str(source)
    path = Path(source)
    # a name that is also a folder (e.g. the results of a run) is still a name
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config file not found: {source}")
    else:
        path = _builtin_dir() / f"{source}.toml"
        if not path.is_file():
            raise ConfigError(f"no built-in config named {source!r}; known: "
                              + ", ".join(list_configs()))
    try:  # TOML is UTF-8
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {source} is not UTF-8 text, as TOML must be "
                          f"({exc.reason}: byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {source!r} is not valid TOML: {exc}") from None


def load_config(source, quick: bool = False, grid: dict | None = None) -> list[SimConfig]:
    """Load and validate a config; returns one SimConfig per sub-sweep.

    Parameters
    ----------
    source : str, path or dict
        A built-in name (see :func:`list_configs`), a TOML file, or a dict of the
        same structure.
    quick : bool, default=False
        Apply the config's ``[quick]`` override.
    grid : dict, optional
        Extra ``{"dotted.key": [values, ...]}`` settings to sweep (merged into the
        config's ``[grid]``).
    """
    data = read_config(source)
    if grid:
        data.setdefault("grid", {}).update(grid)
    return expand(data, quick=quick)
