"""A config's sub-sweeps: the ``[quick]`` profile, the ``[grid]`` of further settings
and the ``[compare]`` table of gate families, expanded into one
:class:`~gmoe.config.SimConfig` each (called by :func:`gmoe.config.expand`)."""

from __future__ import annotations

import copy
import itertools

from .config import (
    _TOP_KEYS,
    ConfigError,
    SimConfig,
    _check_keys,
    _gate_spec,
    _require_table,
    _where,
)

__all__ = ["expand_config"]


def _as_table(value, key: str):
    """A gate given by its name alone is the table ``{name = ...}``."""
    return {"name": value} if isinstance(value, str) and key == "gate" else value


def _set_dotted(table: dict, dotted: str, value, name: str) -> None:
    parts = dotted.split(".")
    node = table
    for i, part in enumerate(parts[:-1]):
        child = _as_table(node.get(part), part)
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{_where(name)}grid key {dotted!r}: "
                              f"{'.'.join(parts[:i + 1])!r} is not a table")
        node[part] = child
        node = child
    if isinstance(value, dict):
        # a table value sets several keys together: merged into the table it names
        target = _as_table(node.get(parts[-1]), parts[-1])
        if not isinstance(target, dict):
            raise ConfigError(f"{_where(name)}grid key {dotted!r}: a table value needs "
                              f"{dotted!r} to be a table")
        value = {k: v for k, v in value.items() if k != "label"}  # names the sub-sweep
        node[parts[-1]] = {**target, **value}
    else:
        node[parts[-1]] = value


def _label_part(key: str, value) -> str:
    if isinstance(value, dict):
        if "label" in value:
            return str(value["label"])
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return f"{key.split('.')[-1]}={value}"


def expand_config(data: dict, quick: bool = False) -> list[SimConfig]:
    """Apply ``[quick]`` (if asked) and expand ``[grid]`` into one SimConfig per combination."""
    data = copy.deepcopy(data)
    name = data.get("name", "") if isinstance(data, dict) else ""
    if not isinstance(data, dict):
        raise ConfigError("config: must be a table")
    _check_keys(data, _TOP_KEYS, "", name)
    quick_table = _require_table(data.pop("quick", {}), "quick", name)
    if quick:
        _check_keys(quick_table, _TOP_KEYS - {"quick", "name"}, "quick.", name)
        for key, value in quick_table.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "n_grid":
                data[key].update(value)
            else:
                data[key] = value
    grid = _require_table(data.pop("grid", {}), "grid", name)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{_where(name)}key 'grid.{key}' must be a non-empty list")
        if key.split(".")[0] not in ("truth", "fit", "x", "loss", "data"):
            raise ConfigError(f"{_where(name)}key 'grid.{key}' must start with truth., fit., "
                              "x., loss. or data.")
    if not grid and "compare" not in data:
        return [SimConfig.from_dict(data)]
    out = []
    keys = list(grid)
    variants = _compare_variants(data.pop("compare", None), data, name)
    for variant, combo in itertools.product(variants, itertools.product(*grid.values())):
        sub = copy.deepcopy(data)
        changes, label = variant
        for key, value in changes.items():
            sub[key] = value
        for key, value in zip(keys, combo, strict=True):
            _set_dotted(sub, key, value, name)
        label = ", ".join([label] * bool(label)
                          + [_label_part(k, v) for k, v in zip(keys, combo, strict=True)])
        out.append(SimConfig.from_dict(sub, label=label))
    return out


_COMPARE_KEYS = {"gates", "truths", "own"}


def _compare_variants(table, data: dict, name: str) -> list[tuple[dict, str]]:
    """The sub-sweeps of a ``[compare]`` table: several gate families on the same data.

    ``gates`` lists the gate families (names or tables). ``truths`` holds
    ``"shared"`` (every gate fitted to data from the config's ``[truth]``: common
    ground truth, misspecified for the other families) and/or ``"own"`` (each gate
    fitted to data from its own truth, ``[compare.own.<gate name>]``: a truth table
    without its gate; the shared truth's gate may omit it, its own truth is then the
    shared one and is not run twice). A fit of another family to the shared truth is
    misspecified and gets no theoretical slopes. Task seeds do not depend on the
    sub-sweep, so every sub-sweep sees the same covariates and noise draws (common
    random numbers). Without a ``[compare]`` table there is one variant, the config
    itself.
    """
    if table is None:
        return [({}, "")]
    table = _require_table(table, "compare", name)
    _check_keys(table, _COMPARE_KEYS, "compare.", name)
    gates = table.get("gates")
    if not isinstance(gates, list) or not gates:
        raise ConfigError(f"{_where(name)}key 'compare.gates' must be a non-empty list of "
                          "gate names or tables")
    gates = [_gate_spec(g, "compare.gates", name) for g in gates]
    truths = table.get("truths", ["shared"])
    if (not isinstance(truths, list) or not truths
            or any(t not in ("shared", "own") for t in truths)):
        raise ConfigError(f"{_where(name)}key 'compare.truths' must be a list drawn from "
                          f"'shared', 'own'; got {truths!r}")
    own = _require_table(table.get("own", {}), "compare.own", name)
    truth_gate = _gate_spec(_require_table(data.get("truth", {}), "truth", name)
                            .get("gate", "softmax"), "truth.gate", name)["name"]
    fit = _require_table(data.get("fit", {}), "fit", name)
    out = []
    for which in truths:
        for gate in gates:
            fitted = {**fit, "gate": gate}
            if which == "shared":
                # another family's fit to this truth is misspecified: the theory's
                # slopes are not its own (theory is not part of the hash)
                changes = {"fit": fitted} if gate["name"] == truth_gate else \
                    {"fit": fitted, "theory": {}}
                out.append((changes, f"{gate['name']} fit, {truth_gate} truth"))
                continue
            if gate["name"] not in own and gate["name"] == truth_gate:
                if "shared" not in truths:      # its own truth is the shared one
                    out.append(({"fit": fitted}, f"{gate['name']} fit, own truth"))
                continue
            if gate["name"] not in own:
                raise ConfigError(f"{_where(name)}key 'compare.own.{gate['name']}' is missing "
                                  "(the truth of that gate, for compare.truths = 'own')")
            truth = dict(_require_table(own[gate["name"]], f"compare.own.{gate['name']}",
                                        name))
            if "gate" in truth:
                raise ConfigError(f"{_where(name)}key 'compare.own.{gate['name']}.gate': "
                                  "the gate is the compared one; give only its parameters")
            out.append(({"truth": {**truth, "gate": gate}, "fit": fitted},
                        f"{gate['name']} fit, own truth"))
    return out
