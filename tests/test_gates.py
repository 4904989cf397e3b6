"""Gates: weights against brute force, sampling, gradients, M-steps, validation."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from gmoe import GaussianMoE, IdentifiabilityWarning, MoEParams, Uniform, fit_em
from gmoe._design import Design
from gmoe.gates import (
    ACTIVATIONS,
    GATES,
    ActivationGate,
    SoftmaxGate,
    TemperatureGate,
    TopKGate,
    make_gate,
)
from gmoe.gates._base import weighted_objective
from gmoe.gates._topk_search import _observed_loglik
from gmoe.gates.topk import top_k_mask

# ----------------------------------------------------------------- brute force

_SIGMA = {
    "tanh": math.tanh,
    "sigmoid": lambda h: 1.0 / (1.0 + math.exp(-h)),
    "gelu": lambda h: h * stats.norm.cdf(h),
    "relu": lambda h: max(h, 0.0),
    "identity": lambda h: h,
}


def brute_weights(gate, params: MoEParams, x) -> list[float]:
    """g_i(x) from the definitions in docs/theory.md, "Models", one expert at a time."""
    k = params.k
    slope = [float(params.beta1[i] @ x) for i in range(k)]
    if isinstance(gate, TopKGate):
        score = slope if gate.rank_by == "slope" else [slope[i] + params.beta0[i]
                                                       for i in range(k)]
        chosen = sorted(range(k), key=lambda i: (-score[i], i))[: gate.K]  # ties: lower index
        logits = {i: slope[i] + params.beta0[i] for i in chosen}
    elif isinstance(gate, TemperatureGate):
        logits = {i: (slope[i] + params.beta0[i]) / params.tau for i in range(k)}
    elif isinstance(gate, ActivationGate):
        sigma = _SIGMA[gate.activation]
        logits = {i: (sigma(slope[i]) + params.beta0[i]) / params.tau for i in range(k)}
    else:
        logits = {i: slope[i] + params.beta0[i] for i in range(k)}
    top = max(logits.values())
    total = sum(math.exp(v - top) for v in logits.values())
    return [math.exp(logits[i] - top) / total if i in logits else 0.0 for i in range(k)]


def brute_loglik(gate, params: MoEParams, X, y) -> float:
    total = 0.0
    for n in range(X.shape[0]):
        w = brute_weights(gate, params, X[n])
        dens = sum(w[i] * stats.norm.pdf(y[n], params.a[i] @ X[n] + params.b[i],
                                         math.sqrt(params.var[i]))
                   for i in range(params.k) if w[i] > 0)
        total += math.log(dens)
    return total


def random_params(rng, k, d, tau=None, gate_scale=1.5):
    """Random parameters, deliberately NOT in any normal form."""
    return MoEParams(rng.normal(0, 1, k), rng.normal(0, gate_scale, (k, d)),
                     rng.normal(0, 2, (k, d)), rng.normal(0, 3, k),
                     rng.uniform(0.2, 0.8, k) ** 2, tau)


GATE_CASES = [
    pytest.param(TopKGate(2), 3, 2, id="topk-K2-slope-d2"),
    pytest.param(TopKGate(2, "logit"), 3, 2, id="topk-K2-logit-d2"),
    pytest.param(TopKGate(1), 4, 1, id="topk-K1-slope-d1"),
    pytest.param(TopKGate(3, "logit"), 4, 3, id="topk-K3-logit-d3"),
    pytest.param(TemperatureGate(0.6), 3, 2, id="temperature-learned"),
    pytest.param(TemperatureGate(2.0, learn_tau=False), 2, 1, id="temperature-fixed"),
] + [pytest.param(ActivationGate(name, tau=0.7), 3, 2, id=f"activation-{name}")
     for name in ACTIVATIONS]


# ------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("gate,k,d", GATE_CASES)
def test_log_likelihood_matches_brute_force_double_loop(gate, k, d):
    rng = np.random.default_rng(k + 10 * d + len(repr(gate)))
    params = random_params(rng, k, d, tau=0.6 if gate.has_tau else None)
    model = GaussianMoE(gate, params, x_law=Uniform(-1, 1, d))
    X, y = model.sample(80, rng=rng)
    # the model stores the normal form; the likelihood must not change
    expected = brute_loglik(gate, gate.prepare(params), X, y)
    assert model.log_likelihood(X, y) == pytest.approx(expected, rel=1e-10)
    w = gate.weights(X, params)
    np.testing.assert_allclose(w, [brute_weights(gate, gate.prepare(params), x) for x in X],
                               atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)


def test_topk_selects_exactly_k_experts_and_ties_go_to_the_lower_index():
    p = MoEParams([3.0, 0.0, 1.0, 0.0], np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(4),
                  np.ones(4))
    X = np.array([[0.3, -0.2], [0.0, 0.0]])
    # slope ranking: all scores tie, so experts 0 and 1 are selected whatever beta0 says
    np.testing.assert_array_equal(TopKGate(2).selection(X, p),
                                  [[True, True, False, False]] * 2)
    # logit ranking: beta0 decides, the tie between experts 1 and 3 goes to 1
    np.testing.assert_array_equal(TopKGate(3, "logit").selection(X, p),
                                  [[True, True, True, False]] * 2)
    rng = np.random.default_rng(0)
    q = random_params(rng, 5, 3)
    Xr = rng.normal(size=(500, 3))
    for K in range(1, 6):
        sel = TopKGate(K).selection(Xr, q)
        assert np.all(sel.sum(axis=1) == K)
        assert np.all((TopKGate(K).weights(Xr, q) > 0) == sel)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_topk_selection_agrees_with_a_stable_sort_including_ties(k):
    rng = np.random.default_rng(k)
    for score in (rng.integers(0, 3, (k, 400)).astype(float), rng.normal(size=(k, 400))):
        for K in range(1, k + 1):
            expected = np.zeros(score.shape, dtype=bool)
            for n in range(score.shape[1]):
                order = sorted(range(k), key=lambda i, n=n: (-score[i, n], i))
                expected[order[:K], n] = True
            np.testing.assert_array_equal(top_k_mask(score, K), expected)


def test_topk_with_k_selected_is_the_softmax_and_temperature_one_too():
    rng = np.random.default_rng(1)
    p = random_params(rng, 4, 2)
    X = rng.normal(size=(50, 2))
    soft = SoftmaxGate().log_weights(X, p)
    np.testing.assert_allclose(TopKGate(4).log_weights(X, p), soft, atol=1e-12)
    np.testing.assert_allclose(TemperatureGate(1.0, learn_tau=False).log_weights(X, p), soft,
                               atol=1e-12)
    np.testing.assert_allclose(ActivationGate("identity", 1.0).log_weights(X, p), soft,
                               atol=1e-12)


# --------------------------------------------------------------------- sampling
PIT_CASES = [
    pytest.param(TopKGate(2), TopKGate(2, "logit"), 2, id="topk-slope"),
    pytest.param(TopKGate(2, "logit"), TopKGate(2), 2, id="topk-logit"),
    pytest.param(TopKGate(1), TopKGate(2), 1, id="topk-K1-d1"),
    pytest.param(TemperatureGate(0.5), TemperatureGate(1.0, learn_tau=False), 1,
                 id="temperature"),
    pytest.param(ActivationGate("tanh", 0.5), ActivationGate("identity", 0.5), 1,
                 id="activation-tanh"),
    pytest.param(ActivationGate("relu", 0.5), ActivationGate("sigmoid", 0.5), 2,
                 id="activation-relu"),
]


def _pit_truth(d):
    # gating slopes of order 1-3; experts close enough that a wrong gate shows
    if d == 1:
        return MoEParams([0.5, -0.5, 0.0], [[3.0], [-2.0], [0.0]], [[1.0], [-1.0], [0.5]],
                         [-1.0, 1.0, 0.0], [0.5, 0.5, 0.5], tau=0.5)
    return MoEParams([0.5, -0.5, 0.0], [[3.0, -1.0], [-1.0, 2.5], [0.0, 0.0]],
                     [[1.0, 0.0], [0.0, -1.0], [-1.0, 1.0]], [-1.0, 0.0, 1.0],
                     [0.5, 0.5, 0.5], tau=0.5)


@pytest.mark.parametrize("gate,wrong_gate,d", PIT_CASES)
def test_probability_integral_transform_is_uniform_and_detects_a_wrong_gate(gate, wrong_gate, d):
    params = _pit_truth(d)
    model = GaussianMoE(gate, params, x_law=Uniform(-1, 1, d))
    X, y = model.sample(20000, rng=42)
    assert stats.kstest(model.cdf(X, y), "uniform").pvalue > 1e-3
    wrong = GaussianMoE(wrong_gate, params, x_law=Uniform(-1, 1, d))
    assert stats.kstest(wrong.cdf(X, y), "uniform").pvalue < 1e-6


SHARE_CASES = [
    pytest.param(TopKGate(2), 2, id="topk-slope-d2"),
    pytest.param(TopKGate(2, "logit"), 2, id="topk-logit-d2"),
    pytest.param(TopKGate(1, "logit"), 1, id="topk-K1-logit-d1"),
    pytest.param(TemperatureGate(0.5), 1, id="temperature"),
    pytest.param(ActivationGate("tanh", 0.5), 1, id="activation-tanh"),
    pytest.param(ActivationGate("gelu", 0.5), 2, id="activation-gelu-d2"),
]


@pytest.mark.parametrize("gate,d", SHARE_CASES)
def test_expert_shares_per_x_bin_match_gate_weights(gate, d):
    # experts 20 sd apart: each y reveals the expert that generated it
    base = _pit_truth(d)
    params = base.replace(a=np.zeros((3, d)), b=[-20.0, 0.0, 20.0], var=[1.0, 1.0, 1.0])
    model = GaussianMoE(gate, params, x_law=Uniform(-1, 1, d))
    X, y = model.sample(60000, rng=3)
    label = np.digitize(y, [-10.0, 10.0])
    weights = gate.weights(X, model.params)
    edges = np.linspace(-1, 1, 5)[1:-1]
    bins = np.digitize(X[:, 0], edges) + (4 * np.digitize(X[:, 1], edges) if d == 2 else 0)
    for bin_id in np.unique(bins):
        rows = bins == bin_id
        expected = weights[rows].mean(axis=0)
        observed = np.bincount(label[rows], minlength=3) / rows.sum()
        se = np.sqrt(expected * (1 - expected) / rows.sum())
        assert np.all(np.abs(observed - expected) < 5 * se + 1e-12), (bin_id, observed, expected)
        # an expert the gate never selects in the bin never generates a point there
        assert np.all(observed[weights[rows].max(axis=0) == 0] == 0)


# -------------------------------------------------------------------- gradients
def _fd_grad(f, theta, h=1e-6):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])


GRAD_CASES = [
    pytest.param(TopKGate(2), 4, 2, id="topk-slope"),
    pytest.param(TopKGate(1, "logit"), 3, 2, id="topk-logit-K1"),
    pytest.param(TopKGate(3), 3, 1, id="topk-K=k-softmax"),
    pytest.param(TemperatureGate(0.7), 3, 2, id="temperature-learned"),
    pytest.param(TemperatureGate(0.7, learn_tau=False), 3, 2, id="temperature-fixed"),
] + [pytest.param(ActivationGate(name, tau=0.8), 3, 2, id=f"activation-{name}")
     for name in ACTIVATIONS] + [
    pytest.param(ActivationGate("tanh", 0.8, learn_tau=False), 2, 3, id="activation-fixed-tau"),
]


def _gradient_problem(gate, k, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.5, 1.5, (300, d))
    design = Design(X, rng.normal(size=300))
    params = gate.normal_form(gate.prepare(random_params(rng, k, d, tau=0.7)))
    resp = rng.dirichlet(np.ones(k), size=300).T.copy()
    mask = None
    if isinstance(gate, TopKGate):
        mask = gate._mask(params.beta0, params.beta1, design)
        if mask is not None:
            resp = np.where(mask, resp, 0.0)
            resp /= resp.sum(axis=0)
    return design, params, resp, mask


@pytest.mark.parametrize("gate,k,d", GRAD_CASES)
def test_analytic_gating_gradient_matches_finite_differences(gate, k, d):
    design, params, resp, mask = _gradient_problem(gate, k, d, seed=k + d)
    theta = gate._theta(params)
    expected_size = ((k - 1) * (d + 1) if gate.shifts_slopes else (k - 1) + k * d)
    assert theta.size == expected_size + int(gate.has_tau and gate.learn_tau)
    q, grad = gate._objective_and_grad(theta, design, resp, mask)
    # the objective is the weighted objective of the gate's own log weights
    log_w = gate.log_weights_T(design, params)
    assert q == pytest.approx(weighted_objective(resp, log_w), rel=1e-12)
    fd = _fd_grad(lambda t: gate._objective_and_grad(t, design, resp, mask)[0], theta)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(np.abs(fd).max(), 1.0))
    if gate.has_tau and gate.learn_tau:
        assert abs(grad[-1]) > 1e-3  # d/d log tau is really tested


@pytest.mark.parametrize("gate", [TopKGate(2), TopKGate(2, "logit"),
                                  TemperatureGate(0.7, learn_tau=False)], ids=repr)
def test_fisher_curvature_is_the_exact_negative_hessian_for_linear_logits(gate):
    design, params, resp, mask = _gradient_problem(gate, 4, 2, seed=5)
    theta = gate._theta(params)
    H = gate._fisher_information(theta, design, resp, mask)
    hess = np.array([_fd_grad(lambda t, j=j: gate._objective_and_grad(t, design, resp, mask)[1][j],
                              theta, h=1e-5) for j in range(theta.size)])
    np.testing.assert_allclose(H, -hess, rtol=1e-5, atol=1e-5 * np.abs(H).max())


def test_softmax_newton_m_step_zeroes_the_topk_k_of_k_gradient():
    # the softmax M-step and the top-K gradient with K = k are independent codes
    design, params, resp, _ = _gradient_problem(TopKGate(3), 3, 2, seed=11)
    start = params.replace(beta0=np.zeros(3), beta1=np.zeros((3, 2)))
    soft = SoftmaxGate(newton_tol=1e-14)
    fitted, _, _ = soft.m_step(design, resp, start, soft.log_weights_T(design, start))
    gate = TopKGate(3)
    _, grad = gate._objective_and_grad(gate._theta(fitted), design, resp)
    assert np.abs(grad).max() < 1e-6 * design.n
    _, grad0 = gate._objective_and_grad(gate._theta(start), design, resp)
    assert np.abs(grad0).max() > 1.0


# ---------------------------------------------------------------------- M-steps
MSTEP_CASES = [
    pytest.param(TemperatureGate(0.7), id="temperature-learned"),
    pytest.param(TemperatureGate(0.7, learn_tau=False), id="temperature-fixed"),
    pytest.param(ActivationGate("tanh", 0.7), id="activation-tanh"),
    pytest.param(ActivationGate("relu", 0.7), id="activation-relu"),
    pytest.param(TopKGate(2), id="topk-slope"),
    pytest.param(TopKGate(2, "logit"), id="topk-logit"),
]


@pytest.mark.parametrize("gate", MSTEP_CASES)
def test_gating_m_step_never_lowers_its_criterion_and_returns_its_log_weights(gate):
    rng = np.random.default_rng(7)
    k, d, n = 3, 2, 800
    truth = random_params(rng, k, d, tau=0.7)
    model = GaussianMoE(gate, truth, x_law=Uniform(-1, 1, d))
    X, y = model.sample(n, rng=rng)
    design = Design(X, y)
    for _ in range(3):
        start = gate.normal_form(gate.prepare(random_params(rng, k, d, tau=0.9)))
        log_w = gate.log_weights_T(design, start)
        log_phi = model._log_parts_T(design)[1]
        resp = np.exp(log_w + log_phi - np.logaddexp.reduce(log_w + log_phi, axis=0))
        new, new_log_w, info = gate.m_step(design, resp, start, log_w, log_phi)
        np.testing.assert_allclose(new_log_w, gate.log_weights_T(design, new), atol=1e-10)
        assert new_log_w.flags.c_contiguous and new_log_w.shape == (k, n)
        if isinstance(gate, TopKGate):
            # the selection moves: the observed log-likelihood is what must not drop
            assert _observed_loglik(new_log_w, log_phi) >= _observed_loglik(log_w, log_phi)
        else:
            assert weighted_objective(resp, new_log_w) >= weighted_objective(resp, log_w)
            assert info.objective_after >= info.objective_before
        # normal form: the last expert's gating parameters are 0
        assert new.beta0[-1] == 0.0
        if gate.shifts_slopes:
            assert np.all(new.beta1[-1] == 0.0)
        assert new.tau == (start.tau if not getattr(gate, "learn_tau", True) else new.tau)


def test_temperature_m_step_reaches_a_stationary_point_of_the_weighted_objective():
    design, params, resp, _ = _gradient_problem(TemperatureGate(0.5, learn_tau=False), 3, 2, 3)
    gate = TemperatureGate(0.5, learn_tau=False, tol=1e-14)
    new, _, info = gate.m_step(design, resp, params, gate.log_weights_T(design, params))
    _, grad = gate._objective_and_grad(gate._theta(new), design, resp)
    assert np.abs(grad).max() < 1e-6 * design.n
    assert info.objective_after > info.objective_before
    assert new.tau == 0.5
    # a learned tau on top changes nothing: the objective only sees beta / tau
    learned = TemperatureGate(0.5, tol=1e-14)
    new2, _, _ = learned.m_step(design, resp, params, learned.log_weights_T(design, params))
    np.testing.assert_allclose(new2.beta1 / new2.tau, new.beta1 / new.tau, atol=1e-5)


# --------------------------------------------------------------- temperature
def test_tau_gates_fill_or_force_the_temperature():
    p = random_params(np.random.default_rng(0), 2, 1)
    assert p.tau is None
    assert TemperatureGate(0.3).prepare(p).tau == 0.3
    assert TemperatureGate(0.3).prepare(p.replace(tau=2.0)).tau == 2.0     # learned: kept
    assert TemperatureGate(0.3, learn_tau=False).prepare(p.replace(tau=2.0)).tau == 0.3
    model = GaussianMoE(ActivationGate("sigmoid", tau=0.4), p)
    assert model.params.tau == 0.4
    assert TopKGate(1).prepare(p.replace(tau=2.0)).tau is None
    gate = TemperatureGate(0.5)
    q = p.replace(beta0=[1.0, 0.0], tau=0.5)
    np.testing.assert_allclose(gate.effective_intercepts(q), [2.0, 0.0])


def test_number_of_free_gating_parameters():
    for gate, k, d, expected in [(TopKGate(2), 3, 2, 6), (TemperatureGate(), 3, 2, 7),
                                 (TemperatureGate(learn_tau=False), 3, 2, 6),
                                 (ActivationGate(), 3, 2, 2 + 6 + 1),
                                 (ActivationGate(learn_tau=False), 2, 1, 1 + 2)]:
        assert gate.n_params(k, d) == expected
        p = random_params(np.random.default_rng(0), k, d, tau=0.5)
        assert gate._theta(gate.normal_form(gate.prepare(p))).size == expected


# ------------------------------------------------------------------- registry
@pytest.mark.parametrize("gate", [TopKGate(2, "logit", max_backoff=3), TemperatureGate(0.5),
                                  TemperatureGate(2.0, learn_tau=False),
                                  ActivationGate("gelu", 0.3, learn_tau=False)], ids=repr)
def test_config_round_trips_through_make_gate(gate):
    assert gate.name in GATES
    again = make_gate(gate.get_config())
    assert again == gate and hash(again) == hash(gate) and repr(again) == repr(gate)
    if gate.name != "topk":
        assert make_gate(gate.name) == type(gate)()


# ----------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("build,match", [
    (lambda: TopKGate(0), "K must be an integer >= 1, but got 0"),
    (lambda: TopKGate(1.5), "K must be an integer"),
    (lambda: TopKGate(2, rank_by="score"), "unknown rank_by 'score'; expected one of 'slope'"),
    (lambda: TemperatureGate(tau=0.0), "tau must be finite and > 0, but got 0.0"),
    (lambda: TemperatureGate(tau=-1.0), "tau must be finite and > 0"),
    (lambda: ActivationGate(tau=-2.0), "tau must be finite and > 0"),
    (lambda: TemperatureGate(learn_tau="yes"), "learn_tau must be True or False"),
    (lambda: ActivationGate("swish"), "unknown activation 'swish'; expected one of 'tanh', "
                                      "'sigmoid', 'gelu', 'relu', 'identity'"),
    (lambda: make_gate({"name": "topk"}), "bad arguments for the topk gate"),
])
def test_bad_gate_arguments_raise_value_errors_naming_the_problem(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_topk_with_more_selected_than_experts_is_rejected_everywhere():
    p = random_params(np.random.default_rng(0), 2, 1)
    with pytest.raises(ValueError, match="K = 3 experts but the parameters have only k = 2"):
        GaussianMoE(TopKGate(3), p)
    with pytest.raises(ValueError, match="K must be <= k"):
        TopKGate(3).log_weights(np.zeros((4, 1)), p)
    X, y = np.random.default_rng(1).normal(size=(40, 1)), np.zeros(40)
    with pytest.raises(ValueError, match="K = 3 experts but the parameters have only k = 2"):
        fit_em(X, y, 2, gate=TopKGate(3))


# ------------------------------------------------------------------- warnings
def test_constant_selection_is_warned_for_slope_ranking_with_one_signed_x():
    p = MoEParams([0.0, 0.0, 0.0], [[1.0], [2.0], [0.0]], np.zeros((3, 1)), [0.0, 1.0, 2.0],
                  [1.0, 1.0, 1.0])
    model = GaussianMoE(TopKGate(2), p)             # default X law: U[0, 1]
    with pytest.warns(IdentifiabilityWarning, match="selection S\\(x\\) is the same"):
        model.sample(50, rng=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        GaussianMoE(TopKGate(2, "logit"), p).sample(50, rng=0)
        GaussianMoE(TopKGate(2), p, x_law=Uniform(-1, 1, 1)).sample(50, rng=0)
        GaussianMoE(TopKGate(3), p).sample(50, rng=0)   # K = k selects everyone


def test_expert_selected_by_no_point_is_warned_and_gives_no_nan():
    # d = 1, slope ranking, K = 1: the expert with the middle slope is never the argmax
    truth = MoEParams([0.0, 0.0, 0.0], [[2.0], [1.0], [0.0]], [[1.0], [0.0], [-1.0]],
                      [-3.0, 0.0, 3.0], [0.25, 0.25, 0.25])
    model = GaussianMoE(TopKGate(1), truth, x_law=Uniform(-1, 1, 1))
    X, y = model.sample(2000, rng=0)
    assert not TopKGate(1).selection(X, truth)[:, 1].any()
    with pytest.warns(IdentifiabilityWarning, match="expert\\(s\\) 1 selected by no data point"):
        fit = fit_em(X, y, 3, gate=TopKGate(1), init=truth, max_iter=50, warn=False)
    p = fit.params
    assert np.isfinite(fit.loglik)
    assert all(np.all(np.isfinite(v)) for v in (p.beta0, p.beta1, p.a, p.b, p.var))
    # the unselected expert's regression is left where it was
    np.testing.assert_allclose(p.a[1], truth.a[1])
    np.testing.assert_allclose(p.b[1], truth.b[1])
    assert fit.loglik >= model.log_likelihood(X, y)


@pytest.mark.parametrize("rank_by", ["slope", "logit"])
def test_topk_boundary_search_surrogate_is_exact_at_its_centre_and_close_nearby(rank_by):
    # the search's surrogate: exact on the points whose selection can change within its
    # radius, a second-order expansion on the others (docs/performance.md, "Top-K EM
    # iteration"); its error grows like |u|^3 / sqrt(n)
    from gmoe.experts import expert_log_density_T

    truth = MoEParams([0.5, -0.5, 0.0], [[2.0, 1.0], [-1.0, 2.0], [0.0, 0.0]],
                      [[1.0, -1.0], [-1.0, 1.0], [2.0, 2.0]], [-4.0, 0.0, 4.0], [0.09] * 3)
    gate = TopKGate(2, rank_by=rank_by)
    X, y = GaussianMoE(gate, truth).sample(20000, rng=0)
    design = Design(X, y)
    params = gate.normal_form(truth.replace(beta0=truth.beta0 + [0.05, -0.03, 0.0],
                                            beta1=truth.beta1 + 0.02))
    log_phi = expert_log_density_T(design, params.a, params.b, params.var)
    theta = gate._theta(params)
    state = gate._fresh_state(theta, design, log_phi, 3)
    fun, T, _, _ = gate._surrogate(theta, state, design, log_phi, 3)
    assert -fun(np.zeros(theta.size)) == pytest.approx(state.value, abs=1e-8)
    rng = np.random.default_rng(1)
    for radius in (0.5, 1.0, 2.5, 4.0):     # 4.0: beyond the radius, evaluated exactly
        u = rng.normal(size=theta.size)
        u *= radius / np.linalg.norm(u)
        exact = gate._observed_value(theta + T @ u, design, log_phi, 3)
        assert abs(-fun(u) - exact) < 0.05
