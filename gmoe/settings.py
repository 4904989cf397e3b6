"""The settings of a fit and of a loss: their defaults, their choices and their checks.

:class:`FitSettings` holds what :func:`gmoe.fit_em` is told besides the data, the
gate and the seed; :class:`LossSettings` what :func:`gmoe.voronoi_loss` is told
besides the two mixtures. Each is the one place where a default, a list of choices
or a check is written: :func:`gmoe.fit_em`, :class:`gmoe.MoERegressor` and
:class:`gmoe.SimConfig` all build them, and a config re-words a
:class:`SettingError` with the name of its TOML key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ._validation import check_choice, check_positive_float, check_positive_int
from .params import MoEParams

__all__ = ["FitSettings", "LossSettings", "SettingError", "STOP_RULES", "INITS",
           "LOSS_KINDS", "LOSS_METRICS", "TRANSLATIONS"]

#: ``"relative"``: |l_t - l_{t-1}| <= tol |l_t| (the published rule);
#: ``"per_sample"``: |l_t - l_{t-1}| / n <= tol.
STOP_RULES = ("relative", "per_sample")
#: Starting points of EM (see :func:`gmoe.fit_em`).
INITS = ("near_truth", "kmeans", "random", "split", "auto")
#: Voronoi losses: D1 (``"exact"``), D2 (``"over"``); ``"auto"`` picks D2 when the fit
#: has more experts than the truth (docs/theory.md, "Voronoi losses").
LOSS_KINDS = ("auto", "exact", "over")
#: Distances between atoms in the Voronoi cells.
LOSS_METRICS = ("euclidean", "l1")
#: Translation conventions of the gate parameters (docs/theory.md, "Translation
#: conventions"); the first is the default.
TRANSLATIONS = ("mass", "infimum", "none")


class SettingError(ValueError):
    """A setting out of its range; ``key`` names the setting (a field name)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def check_bool(value, name: str) -> bool:
    """Return value as bool if it is True or False, else raise ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, but got {value!r}")
    return bool(value)


def _checked(settings, checks: dict) -> None:
    """Run ``checks[field](value)`` on each field and store what it returns; a
    ValueError becomes a :class:`SettingError` naming the field."""
    for key, check in checks.items():
        value = getattr(settings, key)
        try:
            value = check(value)
        except ValueError as exc:
            raise SettingError(key, str(exc)) from None
        object.__setattr__(settings, key, value)


class _Settings:
    """What both settings objects share: building from a table, and keyword arguments."""

    @classmethod
    def from_table(cls, table: dict, **defaults):
        """Settings from a table (a config's ``[fit]``/``[loss]``) with extra keys left
        out; ``defaults`` replace the class's defaults for keys the table lacks."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**defaults, **{k: v for k, v in table.items() if k in names}})

    def as_kwargs(self) -> dict:
        """The settings as keyword arguments (of :func:`gmoe.fit_em` or
        :func:`gmoe.voronoi_loss`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class FitSettings(_Settings):
    """How :func:`gmoe.fit_em` fits: every argument but the data, ``n_experts``, the
    gate, the seed and the truth (see :func:`gmoe.fit_em` for their meaning).

    Built from keyword arguments, checked on construction; a value out of range
    raises :class:`SettingError` (a ValueError) whose ``key`` names the field.
    Integers and floats are stored as ``int`` and ``float``.

    Examples
    --------
    >>> from gmoe.settings import FitSettings
    >>> FitSettings(n_init=3).tol
    1e-06
    >>> FitSettings(stop="abs")
    Traceback (most recent call last):
    ...
    gmoe.settings.SettingError: unknown stop rule 'abs'; expected one of 'relative', 'per_sample'
    """

    init: str | MoEParams = "kmeans"
    n_init: int = 1
    tol: float = 1e-6
    max_iter: int = 2000
    stop: str = "relative"
    var_floor: float | None = None
    init_scale: float | str = 1.0
    accelerate: bool = False
    polish: bool = True
    gtol: float = 1e-8
    screen_iter: int | None = None
    standardize: bool = False
    screen_tol: float | None = None
    kmeans_sample: int | None = None

    def __post_init__(self):
        _checked(self, {
            "init": lambda v: v if isinstance(v, MoEParams) else check_choice(v, "init",
                                                                              INITS),
            "n_init": lambda v: check_positive_int(v, "n_init"),
            "tol": lambda v: check_positive_float(v, "tol", allow_zero=True),
            "max_iter": lambda v: check_positive_int(v, "max_iter", minimum=0),
            "stop": lambda v: check_choice(v, "stop rule", STOP_RULES),
            "var_floor": lambda v: None if v is None else check_positive_float(v,
                                                                               "var_floor"),
            "init_scale": lambda v: v if isinstance(v, str) and v == "published"
            else check_positive_float(v, "init_scale", allow_zero=True),
            "accelerate": lambda v: check_bool(v, "accelerate"),
            "polish": lambda v: check_bool(v, "polish"),
            "gtol": lambda v: check_positive_float(v, "gtol"),
            "screen_iter": lambda v: None if v is None else check_positive_int(v,
                                                                               "screen_iter"),
            "standardize": lambda v: check_bool(v, "standardize"),
            "screen_tol": lambda v: None if v is None else check_positive_float(v,
                                                                              "screen_tol"),
            "kmeans_sample": lambda v: None if v is None else check_positive_int(
                v, "kmeans_sample"),
        })

    @property
    def screened(self) -> bool:
        """Whether restarts are screened (``screen_iter`` or ``screen_tol`` set)."""
        return self.screen_iter is not None or self.screen_tol is not None


@dataclass(frozen=True)
class LossSettings(_Settings):
    """Which Voronoi loss a sweep measures: ``kind`` (``"auto"``, ``"exact"``: D1,
    ``"over"``: D2), ``metric`` and ``translation`` (see :func:`gmoe.voronoi_loss`).

    Examples
    --------
    >>> from gmoe.settings import LossSettings
    >>> LossSettings().resolve_kind(n_fit=3, n_true=2)
    'over'
    """

    kind: str = "auto"
    metric: str = "euclidean"
    translation: str = TRANSLATIONS[0]

    def __post_init__(self):
        _checked(self, {"kind": lambda v: check_choice(v, "loss kind", LOSS_KINDS),
                        "metric": lambda v: check_choice(v, "metric", LOSS_METRICS),
                        "translation": lambda v: check_choice(v, "translation",
                                                              TRANSLATIONS)})

    def resolve_kind(self, n_fit: int, n_true: int) -> str:
        """``"exact"`` or ``"over"``: ``"auto"`` is D2 when the fit has more experts."""
        if self.kind != "auto":
            return self.kind
        return "over" if n_fit > n_true else "exact"
