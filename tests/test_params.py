import json

import numpy as np
import pytest

from gmoe import MoEParams, SoftmaxGate


def test_shapes_and_properties(paper_truth):
    assert (paper_truth.k, paper_truth.d) == (2, 1)
    np.testing.assert_allclose(paper_truth.sd, [0.3, 0.4])


def test_flat_beta1_and_a_accepted_for_d1():
    p = MoEParams([0, 0], [1, 0], [2, 3], [0, 0], [1, 1])
    assert p.beta1.shape == (2, 1) and p.a.shape == (2, 1)


def test_round_trip_through_json_is_exact(paper_truth):
    text = json.dumps(paper_truth.to_dict())
    back = MoEParams.from_dict(json.loads(text))
    assert back == paper_truth


def test_from_dict_accepts_sd_instead_of_var():
    p = MoEParams.from_dict({"beta0": [0, 0], "beta1": [[1], [0]], "a": [[1], [2]],
                             "b": [0, 1], "sd": [0.3, 0.4]})
    np.testing.assert_allclose(p.var, [0.09, 0.16])


def test_allclose_tolerates_small_differences_only(paper_truth):
    close = paper_truth.replace(b=paper_truth.b + 1e-10)
    far = paper_truth.replace(b=paper_truth.b + 1e-3)
    assert paper_truth.allclose(close) and not paper_truth.allclose(far)
    assert paper_truth != close


def test_arrays_are_read_only(paper_truth):
    with pytest.raises(ValueError):
        paper_truth.b[0] = 1.0


@pytest.mark.parametrize("field,value,match", [
    ("var", [0.1, -0.2], "'var' must be > 0"),
    ("var", [0.1, 0.0], "'var' must be > 0"),
    ("b", [0.0, 1.0, 2.0], "'b' should have the shape of \\(2,\\)"),
    ("beta1", [[1.0, 2.0], [0.0, 0.0]], "'beta1'|'a'"),
    ("a", [[np.nan], [0.0]], "'a' contains NaN"),
    ("tau", -1.0, "'tau' must be finite and > 0"),
])
def test_invalid_parameters_are_named(paper_truth, field, value, match):
    with pytest.raises(ValueError, match=match):
        paper_truth.replace(**{field: value})


def test_empty_beta0_rejected():
    with pytest.raises(ValueError, match="k >= 1"):
        MoEParams([], np.zeros((0, 1)), np.zeros((0, 1)), [], [])


def test_normal_form_fixes_last_expert_and_keeps_the_model(paper_truth):
    rng = np.random.default_rng(0)
    shifted = paper_truth.shift_gate(3.0, [-2.0])
    gate = SoftmaxGate()
    normal = gate.normal_form(shifted)
    assert normal.beta0[-1] == 0 and np.all(normal.beta1[-1] == 0)
    assert normal.allclose(paper_truth)
    X = rng.uniform(size=(50, 1))
    np.testing.assert_allclose(gate.log_weights(X, shifted), gate.log_weights(X, paper_truth),
                               atol=1e-12)


def test_permute_reorders_every_field(paper_truth):
    q = paper_truth.permute([1, 0])
    assert q.b[0] == paper_truth.b[1] and q.var[1] == paper_truth.var[0]
    with pytest.raises(ValueError, match="permutation"):
        paper_truth.permute([0, 0])
