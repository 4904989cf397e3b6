"""Configs of the comparison kind: several gate families fitted to the same data."""

import copy

import numpy as np
import pytest

from gmoe.config import ConfigError, expand, load_config
from gmoe.sweep import load_results, run_sweep

_OWN_SIGMOID = {"beta0": [1.0, 0.5], "beta1": [[3.0], [-2.0]], "a": [[1.0], [-1.0]],
                "b": [1.0, -1.0], "sd": [0.3, 0.4]}

BASE = {
    "name": "cmp",
    "seed": 3,
    "reps": 2,
    "truth": {"gate": "softmax", "beta0": [0.3, 0.0], "beta1": [[2.0], [0.0]],
              "a": [[1.0], [-1.0]], "b": [1.0, -1.0], "sd": [0.3, 0.4]},
    "x": {"name": "uniform", "low": -1.0, "high": 1.0},
    "fit": {"n_experts": 2, "init": "near_truth", "tol": 1e-8, "stop": "per_sample",
            "max_iter": 300},
    "n_grid": {"values": [300, 600]},
    "metrics": ["loss", "hellinger", "loglik"],
    "theory": {"loss": -0.5, "hellinger": -0.5},
    "hellinger": {"n_x": 50},
    "compare": {"gates": ["softmax", "sigmoid"], "truths": ["shared", "own"],
                "own": {"sigmoid": _OWN_SIGMOID}},
}


def test_compare_expands_into_shared_and_own_truth_sub_sweeps():
    configs = expand(BASE)
    labels = [c.label for c in configs]
    # the softmax's own truth is the shared one: it is not run twice
    assert labels == ["softmax fit, softmax truth", "sigmoid fit, softmax truth",
                      "sigmoid fit, own truth"]
    shared = configs[:2]
    assert all(c.raw["truth"]["gate"] == {"name": "softmax"} for c in shared)
    assert [c.raw["fit"]["gate"]["name"] for c in shared] == ["softmax", "sigmoid"]
    own = configs[2]
    assert own.raw["truth"]["gate"] == {"name": "sigmoid"}
    assert own.truth_params.beta0.tolist() == [1.0, 0.5]
    assert own.raw["fit"]["gate"] == {"name": "sigmoid"}
    assert len({c.hash for c in configs}) == 3
    # a misspecified fit (another family on the shared truth) has no theory slopes
    assert [bool(c.theory) for c in configs] == [True, False, True]


def test_compare_combines_with_a_grid():
    data = copy.deepcopy(BASE)
    data["grid"] = {"fit.init": ["near_truth", "kmeans"]}
    configs = expand(data)
    assert len(configs) == 6
    assert configs[1].label == "softmax fit, softmax truth, init=kmeans"


@pytest.mark.parametrize("change,match", [
    ({"gates": []}, "compare.gates"),
    ({"gates": ["nope"]}, "compare.gates"),
    ({"truths": ["mine"]}, "compare.truths"),
    ({"own": {}}, "compare.own.sigmoid"),
    ({"own": {"sigmoid": {**_OWN_SIGMOID, "gate": "sigmoid"}}}, "compare.own.sigmoid.gate"),
    ({"colour": 1}, "compare.colour"),
])
def test_malformed_compare_tables_name_the_offending_key(change, match):
    data = copy.deepcopy(BASE)
    data["compare"].update(change)
    with pytest.raises(ConfigError, match=match):
        expand(data)


def test_every_gate_sees_the_same_data(tmp_path):
    run_sweep(BASE, tmp_path / "cmp", n_jobs=1, progress=False)
    df = load_results(tmp_path / "cmp")
    assert len(df) == 3 * 2 * 2 and (df["status"] == "ok").all()
    shared = df[df["label"].str.endswith("softmax truth")]
    # the same data sets: the true log-likelihood is the same for both gates' fits
    by_task = shared.pivot_table(index=["n", "rep"], columns="label", values="loglik_true")
    np.testing.assert_allclose(by_task.iloc[:, 0], by_task.iloc[:, 1], rtol=0, atol=0)
    assert np.isfinite(df["hellinger"]).all()
    # the rate table gives each sub-sweep its own theory: none for the misspecified one
    from gmoe.tables import rate_table

    table = rate_table(tmp_path / "cmp", metrics=["hellinger"]).set_index("label")
    assert np.isnan(table.loc["sigmoid fit, softmax truth", "theory"])
    assert table.loc["sigmoid fit, own truth", "theory"] == -0.5


def test_the_built_in_comparison_config_loads():
    labels = [c.label for c in load_config("compare-gates")]
    assert len(labels) == 5 and labels[0] == "softmax fit, softmax truth"
