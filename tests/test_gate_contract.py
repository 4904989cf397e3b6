"""The gate contract, checked for every gate in the registry (``gmoe.gates.GATES``).

Each registered gate needs an entry in ``CONTRACT``: instances to test and its
weights written out from the definition in docs/theory.md, one point at a time. A
gate registered without an entry fails every test here, loudly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy import stats

from gmoe import GaussianMoE, MoEParams, Uniform, fit_em
from gmoe._design import Design
from gmoe.gates import (
    GATES,
    SYMMETRIES,
    ActivationGate,
    GaussianGate,
    LaplaceGate,
    SigmoidGate,
    SoftmaxGate,
    TemperatureGate,
    TopKGate,
)

_SIGMA = {"tanh": math.tanh, "gelu": lambda h: h * stats.norm.cdf(h),
          "sigmoid": lambda h: 1.0 / (1.0 + math.exp(-h))}


def _normalise(logits: dict[int, float], k: int) -> list[float]:
    top = max(logits.values())
    total = sum(math.exp(v - top) for v in logits.values())
    return [math.exp(logits[i] - top) / total if i in logits else 0.0 for i in range(k)]


def _softmax(gate, p, x):
    return _normalise({i: float(p.beta1[i] @ x) + p.beta0[i] for i in range(p.k)}, p.k)


def _topk(gate, p, x):
    slope = [float(p.beta1[i] @ x) for i in range(p.k)]
    score = slope if gate.rank_by == "slope" else [slope[i] + p.beta0[i] for i in range(p.k)]
    chosen = sorted(range(p.k), key=lambda i: (-score[i], i))[: gate.K]
    return _normalise({i: slope[i] + p.beta0[i] for i in chosen}, p.k)


def _temperature(gate, p, x):
    return _normalise({i: (float(p.beta1[i] @ x) + p.beta0[i]) / p.tau
                       for i in range(p.k)}, p.k)


def _activation(gate, p, x):
    sigma = _SIGMA[gate.activation]
    return _normalise({i: (sigma(float(p.beta1[i] @ x)) + p.beta0[i]) / p.tau
                       for i in range(p.k)}, p.k)


def _sigmoid(gate, p, x):
    s = [1.0 / (1.0 + math.exp(-(float(p.beta1[i] @ x) + p.beta0[i]))) for i in range(p.k)]
    return [v / sum(s) for v in s]


def _laplace(gate, p, x):
    return _normalise({i: p.beta0[i] - float(np.sqrt(np.sum((x - p.beta1[i]) ** 2)))
                       for i in range(p.k)}, p.k)


def _gaussian(gate, p, x):
    pi = np.exp(p.beta0 - p.beta0.max())
    dens = [pi[i] * stats.multivariate_normal(p.beta1[i], p.gate_cov[i]).pdf(x)
            for i in range(p.k)]
    return [v / sum(dens) for v in dens]


def _random_params(rng, k: int, d: int) -> MoEParams:
    """Random parameters, deliberately not in any normal form."""
    return MoEParams(rng.normal(0, 1, k), rng.normal(0, 1.5, (k, d)), rng.normal(0, 2, (k, d)),
                     rng.normal(0, 3, k), rng.uniform(0.2, 0.8, k) ** 2, tau=0.7)


def _recovery_truth(d: int) -> MoEParams:
    """Two well-separated experts with comparable weights over U[-1, 1]^d."""
    beta1 = [[2.0] + [1.0] * (d - 1), [0.0] * d]
    return MoEParams([0.3, 0.0], beta1, [[1.0] * d, [-1.0] * d], [1.0, -1.0], [0.09, 0.16],
                     tau=0.8)


def _random_gaussian_params(rng, k: int, d: int) -> MoEParams:
    A = rng.normal(0, 0.5, (k, d, d))
    cov = A @ np.swapaxes(A, 1, 2) + 0.3 * np.eye(d)
    return _random_params(rng, k, d).replace(tau=None, gate_cov=cov)


def _gaussian_truth(d: int) -> MoEParams:
    return _recovery_truth(d).replace(tau=None, beta1=[[-1.0] + [0.5] * (d - 1),
                                                       [1.0] + [-0.5] * (d - 1)],
                                      gate_cov=[0.5 * np.eye(d), 0.3 * np.eye(d) + 0.1])


@dataclass
class Entry:
    """A registered gate's test instances and its brute-force weights."""

    variants: list
    brute: object
    #: random parameters (rng, k, d) -> MoEParams
    params: object = _random_params
    #: what the recovery test compares of the gate: "params" (identified), "ratios"
    #: (beta / tau) or "weights" (the weights on a grid: the activation gate's k = 2
    #: slopes are identified only up to a swap, see ActivationGate)
    identified: str = "params"
    #: the truth of the EM and recovery tests (d) -> MoEParams
    truth: object = _recovery_truth
    #: free parameters beyond the gating intercepts and slopes (k, d) -> int
    extra_free: object = field(default=lambda k, d: 0)


CONTRACT: dict[str, Entry] = {
    "softmax": Entry([SoftmaxGate()], _softmax),
    "topk": Entry([TopKGate(2), TopKGate(2, "logit")], _topk),
    "temperature": Entry([TemperatureGate(0.7), TemperatureGate(0.7, learn_tau=False)],
                         _temperature, identified="ratios"),
    "activation": Entry([ActivationGate("tanh", 0.8), ActivationGate("gelu", 0.8, False)],
                        _activation, identified="weights"),
    "sigmoid": Entry([SigmoidGate()], _sigmoid),
    "laplace": Entry([LaplaceGate()], _laplace),
    # models X: its covariance parameters are free too, and X is drawn from the gate
    "gaussian": Entry([GaussianGate()], _gaussian, params=_random_gaussian_params,
                      truth=_gaussian_truth, extra_free=lambda k, d: k * d * (d + 1) // 2),
}


def _cases():
    out = []
    for name in GATES:
        entry = CONTRACT.get(name)
        variants = entry.variants if entry is not None else [name]
        out += [pytest.param(name, i, id=f"{name}-{i}") for i in range(len(variants))]
    return out


CASES = _cases()


def _get(name: str, i: int):
    if name not in CONTRACT:
        pytest.fail(f"gate {name!r} is registered in gmoe.gates.GATES but has no entry in "
                    "tests/test_gate_contract.py CONTRACT (instances and brute-force weights)")
    entry = CONTRACT[name]
    return entry.variants[i], entry


def _prepared(gate, params):
    return gate.normal_form(gate.prepare(params))


def _xlaw(gate, d: int, half_width: float = 1.0):
    """The covariates' law of the sampling tests: the gate's own for a gate that models X."""
    return None if gate.models_x else Uniform(-half_width, half_width, d)


def test_every_registered_gate_has_a_contract_entry_and_a_known_symmetry():
    assert set(GATES) <= set(CONTRACT), sorted(set(GATES) - set(CONTRACT))
    for name, cls in GATES.items():
        assert cls.symmetry in SYMMETRIES, name
        assert CONTRACT[name].variants[0].name == name


@pytest.mark.parametrize("name,i", CASES)
def test_weights_match_the_definition_point_by_point(name, i):
    gate, entry = _get(name, i)
    rng = np.random.default_rng(7 + i)
    for k, d in [(3, 2), (4, 1)]:
        params = gate.prepare(entry.params(rng, k, d))
        X = rng.uniform(-1.5, 1.5, (40, d))
        expected = np.array([entry.brute(gate, params, x) for x in X])
        np.testing.assert_allclose(gate.weights(X, params), expected, atol=1e-12)
        # the normal form is the same gate
        np.testing.assert_allclose(gate.weights(X, _prepared(gate, params)), expected,
                                   atol=1e-12)


@pytest.mark.parametrize("name,i", CASES)
def test_symmetry_group_leaves_the_weights_unchanged_and_no_other_shift_does(name, i):
    gate, entry = _get(name, i)
    rng = np.random.default_rng(11)
    params = gate.prepare(entry.params(rng, 3, 2))
    X = rng.uniform(-1.5, 1.5, (200, 2))
    w = gate.weights(X, params)

    def unchanged(shifted):
        return np.allclose(gate.weights(X, shifted), w, rtol=0, atol=1e-12)

    t1 = np.array([0.7, -0.4])
    assert unchanged(params.shift_gate(1.3)) == gate.shifts_intercepts
    assert unchanged(params.shift_gate(0.0, t1)) == gate.shifts_slopes
    assert unchanged(params.shift_gate(-0.8, t1)) == gate.shifts_slopes
    assert not unchanged(params.replace(beta0=params.beta0 * np.array([2.0, 1.0, 1.0]) + 0.1))


@pytest.mark.parametrize("name,i", CASES)
def test_normal_form_and_free_vector_agree_with_the_declared_symmetry(name, i):
    gate, entry = _get(name, i)
    k, d = 3, 2
    params = gate.prepare(entry.params(np.random.default_rng(3), k, d))
    normal = _prepared(gate, params)
    assert _prepared(gate, normal).allclose(normal, rtol=0, atol=1e-14)  # idempotent
    fixed_b0 = normal.beta0[-1] == 0.0
    fixed_b1 = np.all(normal.beta1[-1] == 0.0)
    assert fixed_b0 == gate.shifts_intercepts and fixed_b1 == gate.shifts_slopes
    theta = gate.free_vector(params)
    assert theta.size == gate.n_params(k, d) == len(gate.free_layout(k, d))
    free = {"none": k * (d + 1), "intercept": k * (d + 1) - 1,
            "intercept_slope": (k - 1) * (d + 1)}[gate.symmetry]
    assert gate.n_params(k, d) == free + int(gate.learns_tau) + entry.extra_free(k, d)
    assert gate.from_free_vector(theta, normal).allclose(normal, rtol=1e-12, atol=1e-14)
    # one expert has weight 1: no free gating parameter, unless the gate models X
    # (its mean and covariance still describe the covariates)
    assert gate.n_params(1, d) == (d + entry.extra_free(1, d) if gate.models_x else 0)


@pytest.mark.parametrize("name,i", CASES)
def test_score_matches_finite_differences_of_the_weighted_objective(name, i):
    gate, entry = _get(name, i)
    rng = np.random.default_rng(5)
    k, d, n = 3, 2, 300
    X = rng.uniform(-1.5, 1.5, (n, d))
    design = Design(X, rng.normal(size=n))
    params = _prepared(gate, entry.params(rng, k, d))
    theta = gate.free_vector(params)
    mask = gate.selection_mask(design, params)
    resp = rng.dirichlet(np.ones(k), size=n).T.copy()
    if mask is not None:
        resp = np.where(mask, resp, 0.0)
        resp /= resp.sum(axis=0)
    try:
        state = gate.free_state(theta, design, k, mask)
    except NotImplementedError:
        pytest.skip(f"the {name} gate supplies no score (fitted with polish=False)")

    def objective(t):
        s = gate.free_state(t, design, k, mask)
        # a gate that models X scores the joint objective sum r log(g p(x))
        log_w = s.log_w + s.log_px if gate.models_x else s.log_w
        return float(np.sum(np.where(resp > 0, resp * log_w, 0.0)))

    grad = gate.free_score(state, design, resp, mask)
    h = 1e-6
    fd = np.array([(objective(theta + h * e) - objective(theta - h * e)) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(np.abs(fd).max(), 1.0))
    # the state's weights are the gate's weights
    np.testing.assert_allclose(state.log_w, gate.log_weights_T(design, params), atol=1e-10)


@pytest.mark.parametrize("name,i", CASES)
def test_free_likelihood_by_chunks_equals_one_pass(name, i, monkeypatch):
    # the value, score and information are sums over rows taken in chunks: a chunk
    # boundary (and a remainder) must change nothing, with weights (some 0) and, for
    # a sparse gate, with the selection held or tracked
    import gmoe.likelihood as likelihood
    from gmoe.likelihood import FreeLikelihood

    gate, entry = _get(name, i)
    rng = np.random.default_rng(8)
    k, d, n = 3, 2, 301
    params = _prepared(gate, entry.params(rng, k, d))
    X, y = GaussianMoE(gate, params, x_law=_xlaw(gate, d)).sample(n, rng=2)
    weight = rng.uniform(0.0, 3.0, n) * (rng.random(n) > 0.1)
    design = Design(X, y, weight)
    try:
        gate.free_state(gate.free_vector(params), design, k, None)
    except NotImplementedError:
        pytest.skip(f"the {name} gate supplies no score")
    held = gate.selection_mask(design, params)
    theta = FreeLikelihood(design, gate, params).pack(params)
    theta = theta + 0.02 * rng.standard_normal(theta.size)
    for mask in ([None] if held is None else [held, "track"]):
        like = FreeLikelihood(design, gate, params, mask, weight)
        monkeypatch.setattr(likelihood, "CHUNK", 10**9)
        ll, grad = like.evaluate(theta)
        info = like.information(theta)
        monkeypatch.setattr(likelihood, "CHUNK", 37)  # 8 chunks of 37 and one of 5
        ll_c, grad_c = like.evaluate(theta)
        assert ll_c == pytest.approx(ll, rel=1e-13)
        np.testing.assert_allclose(grad_c, grad, rtol=1e-11,
                                   atol=1e-11 * np.max(np.abs(grad)))
        np.testing.assert_allclose(like.information(theta), info,
                                   atol=1e-10 * np.max(np.abs(info)))
        if mask is None:
            # the weighted sum of the model's per-sample log densities
            model = GaussianMoE(gate, like.unpack(theta))
            assert ll_c == pytest.approx(float(model.score_samples(X, y) @ weight),
                                         rel=1e-12)


@pytest.mark.parametrize("name,i", CASES)
def test_split_keeps_the_density_exactly_when_the_gate_says_so(name, i):
    gate, entry = _get(name, i)
    rng = np.random.default_rng(2)
    params = _prepared(gate, entry.params(rng, 3, 2))
    model = GaussianMoE(gate, params, x_law=_xlaw(gate, 2))
    X, y = model.sample(400, rng=rng)
    base = model.log_likelihood(X, y)
    for j in range(3):
        bigger = gate.split(params, j)
        assert bigger.k == 4
        ll = GaussianMoE(gate, bigger, x_law=_xlaw(gate, 2)).log_likelihood(X, y)
        if gate.exact_split:
            assert ll == pytest.approx(base, rel=1e-12, abs=1e-9)
        else:   # a gate that says its split is inexact really changes the density
            assert abs(ll - base) > 1e-6
        # jitter moves only the copies' expert intercepts, symmetrically
        jittered = gate.split(params, j, rng=0, jitter=0.5)
        np.testing.assert_allclose(jittered.b[[j, -1]].sum(), 2 * params.b[j])
        assert jittered.b[j] != jittered.b[-1]
    with pytest.raises(ValueError, match="'j'"):
        gate.split(params, 3)


@pytest.mark.parametrize("name,i", CASES)
def test_sampled_expert_frequencies_match_the_weights(name, i):
    gate, entry = _get(name, i)
    params = _prepared(gate, entry.params(np.random.default_rng(4), 3, 1))
    # experts 20 sd apart: each y reveals the expert that generated it
    params = params.replace(a=np.zeros((3, 1)), b=[-20.0, 0.0, 20.0], var=[1.0, 1.0, 1.0])
    model = GaussianMoE(gate, params, x_law=_xlaw(gate, 1, 1.5))
    X, y = model.sample(40000, rng=9)
    label = np.digitize(y, [-10.0, 10.0])
    weights = gate.weights(X, model.params)
    bins = np.digitize(X[:, 0], np.linspace(-1.5, 1.5, 7)[1:-1])
    for b in np.unique(bins):
        rows = bins == b
        expected = weights[rows].mean(axis=0)
        observed = np.bincount(label[rows], minlength=3) / rows.sum()
        se = np.sqrt(expected * (1 - expected) / rows.sum())
        assert np.all(np.abs(observed - expected) < 5 * se + 1e-12), (b, observed, expected)


@pytest.mark.parametrize("name,i", CASES)
def test_em_never_lowers_the_log_likelihood(name, i):
    gate, entry = _get(name, i)
    truth = _prepared(gate, entry.truth(2))
    X, y = GaussianMoE(gate, truth, x_law=_xlaw(gate, 2)).sample(1500, rng=1)
    fit = fit_em(X, y, 3, gate=gate, init="random", rng=2, tol=1e-10, max_iter=150,
                 polish=False, warn=False)
    trace = np.asarray(fit.loglik_trace)
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:])), np.diff(trace).min()


@pytest.mark.parametrize("name,i", CASES)
def test_known_parameters_are_recovered_at_large_n(name, i):
    gate, entry = _get(name, i)
    truth = _prepared(gate, entry.truth(2))
    X, y = GaussianMoE(gate, truth, x_law=_xlaw(gate, 2)).sample(20000, rng=6)
    fit = fit_em(X, y, 2, gate=gate, init="near_truth", truth=truth, rng=0, warn=False)
    got = fit.params
    np.testing.assert_allclose(got.a, truth.a, atol=0.05)
    np.testing.assert_allclose(got.b, truth.b, atol=0.05)
    np.testing.assert_allclose(got.var, truth.var, rtol=0.1)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)), -1).reshape(-1, 2)
    np.testing.assert_allclose(gate.weights(grid, got), gate.weights(grid, truth), atol=0.05)
    if entry.identified == "weights":
        return
    if entry.identified == "ratios" and gate.learns_tau:
        # (beta, tau) is identified only up to scale: compare beta / tau
        np.testing.assert_allclose(got.beta1 / got.tau, truth.beta1 / truth.tau, atol=0.5)
        np.testing.assert_allclose(got.beta0 / got.tau, truth.beta0 / truth.tau, atol=0.3)
    else:
        np.testing.assert_allclose(got.beta1, truth.beta1, atol=0.4)
        np.testing.assert_allclose(got.beta0, truth.beta0, atol=0.3)


@pytest.mark.parametrize("name,i", CASES)
def test_standardised_fit_is_the_same_fit_in_other_units(name, i):
    gate, entry = _get(name, i)
    truth = _prepared(gate, entry.truth(2))
    X, y = GaussianMoE(gate, truth, x_law=_xlaw(gate, 2)).sample(3000, rng=4)
    # other units: y -> 10 y + 2, and (unless the gate models X) x -> x * (3, 0.5),
    # then x -> x + (5, -3) where the gate sees x through its logits only (a shift of
    # the origin, which the standardised fit removes by centring)
    scale = np.ones(2) if gate.models_x else np.array([3.0, 0.5])
    offset = np.array([5.0, -3.0]) if gate.shifts_x else np.zeros(2)
    X, y = X * scale + offset, 10.0 * y + 2.0
    start = truth.replace(a=10.0 * truth.a / scale, b=10.0 * truth.b + 2.0,
                          var=100.0 * truth.var)
    start = gate.rescale_x(start, scale) if gate.rescales_x else start
    start = gate.shift_x(start.replace(b=start.b - start.a @ offset), -offset)
    raw = fit_em(X, y, 2, gate=gate, init=start, warn=False)
    std = fit_em(X, y, 2, gate=gate, init=start, standardize=True, warn=False)
    assert raw.certified and std.certified and std.standardized
    assert std.loglik == pytest.approx(raw.loglik, rel=1e-9)
    np.testing.assert_allclose(gate.weights(X, std.params), gate.weights(X, raw.params),
                               atol=1e-5)
    if entry.identified == "ratios" and gate.learns_tau:
        return  # two points of the (beta, tau) ridge: their informations differ
    # the information mapped back from the internal units (J^T I J) is the one the
    # raw fit computes in the user's units
    scale_info = np.sqrt(np.outer(np.diag(raw.information), np.diag(raw.information)))
    np.testing.assert_allclose(std.information / scale_info,
                               raw.information / scale_info, atol=1e-4)


def test_a_gate_declaring_an_unknown_symmetry_is_refused_at_definition():
    with pytest.raises(TypeError, match="symmetry must be one of"):
        class Typo(SoftmaxGate):   # noqa: F841 - defining it is the test
            symmetry = "intercepts"
