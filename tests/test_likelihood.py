"""The observed log-likelihood in the free parametrisation: value, score, information."""

import numpy as np
import pytest

from gmoe import GaussianMoE, MoEParams, make_gate
from gmoe._design import Design
from gmoe.likelihood import FreeLikelihood

TRUTH3 = MoEParams([0.5, -0.3, 0.0], [[1.0, -1.0], [-2.0, 0.5], [0.3, 0.2]],
                   [[1, 0], [-1, 1], [0, 2]], [0, 1, -1], [0.3, 0.2, 0.5])

GATES = {
    "softmax": "softmax",
    "topk-slope": {"name": "topk", "K": 2},
    "topk-logit": {"name": "topk", "K": 2, "rank_by": "logit"},
    "temperature-learned": {"name": "temperature", "tau": 0.7},
    "temperature-fixed": {"name": "temperature", "tau": 0.7, "learn_tau": False},
    "activation-tanh": {"name": "activation", "activation": "tanh", "tau": 0.8},
    "activation-gelu": {"name": "activation", "activation": "gelu", "tau": 0.8},
    "activation-sigmoid-fixed": {"name": "activation", "activation": "sigmoid",
                                 "learn_tau": False},
}


def _setup(spec, n=400, seed=1):
    gate = make_gate(spec)
    # a learned temperature starts at 0.7; a fixed one is the gate's own
    params = gate.normal_form(gate.prepare(TRUTH3.replace(tau=0.7) if gate.has_tau
                                           else TRUTH3))
    X, y = GaussianMoE(gate, params).sample(n, rng=seed)
    design = Design(X, y)
    like = FreeLikelihood(design, gate, params, gate.selection_mask(design, params))
    return gate, params, X, y, like


@pytest.mark.parametrize("name", sorted(GATES))
def test_score_matches_finite_differences_for_every_gate(name):
    gate, params, X, y, like = _setup(GATES[name])
    rng = np.random.default_rng(0)
    theta = like.pack(params) + 0.05 * rng.standard_normal(like.m)
    ll, grad = like.evaluate(theta)
    h = 1e-6
    fd = np.array([(like.loglik(theta + h * e) - like.loglik(theta - h * e)) / (2 * h)
                   for e in np.eye(like.m)])
    np.testing.assert_allclose(grad, fd, atol=1e-6 * np.max(np.abs(grad)))


@pytest.mark.parametrize("name", sorted(GATES))
def test_free_vector_round_trip_and_value_equals_the_model_likelihood(name):
    gate, params, X, y, like = _setup(GATES[name])
    theta = like.pack(params)
    assert like.unpack(theta).allclose(params, rtol=1e-12, atol=1e-12)
    # at params the held selection is the selection: the value is the likelihood
    assert like.loglik(theta) == pytest.approx(GaussianMoE(gate, params).log_likelihood(X, y),
                                               rel=1e-12)


@pytest.mark.parametrize("name", sorted(GATES))
def test_free_layout_counts_the_gate_parameters(name):
    gate = make_gate(GATES[name])
    k, d = 3, 2
    assert len(gate.free_layout(k, d)) == gate.n_params(k, d)
    names = FreeLikelihood(Design(np.zeros((2, d)), np.zeros(2)), gate,
                           gate.prepare(TRUTH3).replace(tau=0.7) if gate.has_tau
                           else TRUTH3).names
    assert len(names) == len(set(names)) == gate.n_params(k, d) + k * (d + 2)


def test_hessian_matches_second_differences_of_the_value():
    gate, params, X, y, like = _setup("softmax", n=300)
    theta = like.pack(params)
    H = like.hessian(theta)
    np.testing.assert_allclose(H, H.T)
    h = 1e-4
    for i, j in [(0, 0), (1, 4), (8, 12), (15, 17), (2, 17)]:
        ei, ej = np.eye(like.m)[i] * h, np.eye(like.m)[j] * h
        fd = (like.loglik(theta + ei + ej) - like.loglik(theta + ei - ej)
              - like.loglik(theta - ei + ej) + like.loglik(theta - ei - ej)) / (4 * h * h)
        assert H[i, j] == pytest.approx(fd, rel=1e-4, abs=1e-3)


def test_sample_weights_equal_repeated_rows():
    gate, params, X, y, _ = _setup("softmax", n=50)
    w = np.arange(50) % 3  # 0, 1 or 2 copies of each row
    weighted = FreeLikelihood(Design(X, y), gate, params, sample_weight=w.astype(float))
    rows = np.repeat(np.arange(50), w)
    repeated = FreeLikelihood(Design(X[rows], y[rows]), gate, params)
    theta = weighted.pack(params) + 0.1
    ll_w, g_w = weighted.evaluate(theta)
    ll_r, g_r = repeated.evaluate(theta)
    assert ll_w == pytest.approx(ll_r, rel=1e-12)
    np.testing.assert_allclose(g_w, g_r, rtol=1e-10, atol=1e-10)


def test_wrong_length_free_vector_is_rejected():
    gate, params, X, y, like = _setup("softmax", n=20)
    with pytest.raises(ValueError, match="free vector should have the shape"):
        like.evaluate(np.zeros(like.m + 1))


@pytest.mark.parametrize("name", sorted(GATES))
def test_analytic_information_matches_differences_of_the_score(name):
    gate, params, X, y, like = _setup(GATES[name], n=300)
    theta = like.pack(params) + 0.05 * np.random.default_rng(1).standard_normal(like.m)
    if like.mask is not None:  # hold the selection of the perturbed point
        like.mask = gate.selection_mask(like.design, like.unpack(theta))
    analytic = like.information(theta)
    numeric = -like.hessian(theta)
    np.testing.assert_allclose(analytic, numeric, atol=1e-7 * np.max(np.abs(numeric)))
    # processing the samples in chunks changes nothing
    np.testing.assert_allclose(like.information(theta, chunk=37), analytic,
                               atol=1e-10 * np.max(np.abs(numeric)))



#: gates whose logits have their own coordinates per expert (no learned temperature)
BLOCK_GATES = {**{name: spec for name, spec in GATES.items()
                  if not getattr(make_gate(spec), "learn_tau", False)},
               "sigmoid": "sigmoid", "laplace": "laplace"}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(BLOCK_GATES))
def test_information_by_logit_blocks_equals_louis_identity_term_by_term(name, weighted):
    # the per-expert-block route (gmoe._information) against Louis' identity summed
    # term by term (the general route), at a perturbed point, with and without weights
    gate, params, X, y, like = _setup(BLOCK_GATES[name], n=300)
    rng = np.random.default_rng(7)
    theta = like.pack(params) + 0.1 * rng.standard_normal(like.m)
    if like.mask is not None:
        like.mask = gate.selection_mask(like.design, like.unpack(theta))
    if weighted:
        like.weight = rng.uniform(0.2, 3.0, X.shape[0])
    state = gate.free_state(theta[:like.m_gate], like.design, like.k, like.mask)
    assert gate.free_logit_blocks(state, like.design) is not None
    fast = like.information(theta)
    like._blocks = False
    general = like.information(theta)
    np.testing.assert_allclose(fast, general, rtol=0, atol=1e-11 * np.max(np.abs(general)))


@pytest.mark.parametrize("name", sorted(set(GATES) - set(BLOCK_GATES)))
def test_a_learned_temperature_takes_the_general_route(name):
    gate, params, X, y, like = _setup(GATES[name], n=50)
    state = gate.free_state(like.pack(params)[:like.m_gate], like.design, like.k)
    assert gate.free_logit_blocks(state, like.design) is None


@pytest.mark.parametrize("k", [2, 4])
def test_information_by_blocks_for_other_k_and_d(k):
    rng = np.random.default_rng(k)
    d = 3 if k == 2 else 1
    params = MoEParams(rng.standard_normal(k), rng.standard_normal((k, d)),
                       rng.standard_normal((k, d)), rng.standard_normal(k),
                       rng.uniform(0.2, 1.0, k))
    gate = make_gate("softmax")
    X, y = GaussianMoE(gate, params).sample(500, rng=k)
    like = FreeLikelihood(Design(X, y), gate, gate.normal_form(params))
    theta = like.pack(gate.normal_form(params))
    fast = like.information(theta)
    np.testing.assert_allclose(fast, -like.hessian(theta), atol=1e-7 * np.max(np.abs(fast)))
    like._blocks = False
    np.testing.assert_allclose(fast, like.information(theta), rtol=0,
                               atol=1e-11 * np.max(np.abs(fast)))


def test_information_reuses_the_e_step_of_the_last_evaluation_at_its_point_only():
    gate, params, X, y, like = _setup("softmax", n=300)
    theta = like.pack(params)
    other = theta + 0.2
    fresh = like.information(theta)
    like.evaluate(theta)                          # kept: the E-step at theta
    assert like._kept is not None
    np.testing.assert_array_equal(like.information(theta), fresh)
    like.evaluate(other)                          # kept: another point's E-step
    np.testing.assert_array_equal(like.information(theta), fresh)
    like.evaluate(theta, score=False)             # a value alone keeps nothing new
    np.testing.assert_array_equal(like.information(theta), fresh)
    np.testing.assert_allclose(like.information(other), -like.hessian(other),
                               atol=1e-7 * np.max(np.abs(fresh)))


def test_a_new_selection_makes_the_kept_e_step_stale():
    gate, params, X, y, like = _setup(GATES["topk-slope"], n=300)
    theta = like.pack(params)
    moved = theta.copy()
    moved[:like.m_gate] += 2.0 * np.random.default_rng(3).standard_normal(like.m_gate)
    other_mask = gate.selection_mask(like.design, like.unpack(moved))
    assert not np.array_equal(other_mask, like.mask)
    like.evaluate(theta)
    like.mask = other_mask
    kept_then_new = like.information(theta)
    like._kept = None
    np.testing.assert_array_equal(kept_then_new, like.information(theta))
