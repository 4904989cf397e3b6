"""EM with the top-K, temperature and activation gates: monotonicity, every entry
point, recovery of the truth, and the over-specified top-K behaviour."""

import warnings

import numpy as np
import pytest

from gmoe import GaussianMoE, IdentifiabilityWarning, MoEParams, MoERegressor, Uniform, fit_em
from gmoe.gates import ActivationGate, TemperatureGate, TopKGate


def random_truth(rng, k, d, tau=None):
    beta0 = np.append(rng.normal(0, 1, k - 1), 0.0)
    beta1 = np.vstack([rng.normal(0, 2, (k - 1, d)), np.zeros((1, d))])
    return MoEParams(beta0, beta1, rng.normal(0, 2, (k, d)), rng.normal(0, 3, k),
                     rng.uniform(0.2, 0.6, k) ** 2, tau)


def max_errors(fit: MoEParams, truth: MoEParams) -> dict:
    out = {f: float(np.max(np.abs(getattr(fit, f) - getattr(truth, f))))
           for f in ("beta0", "beta1", "a", "b", "var")}
    if truth.tau is not None:
        out["tau"] = abs(fit.tau - truth.tau)
    return out


def matched(gate, fit: MoEParams, truth: MoEParams) -> MoEParams:
    """Fitted experts reordered to the truth's (experts are far apart in b)."""
    order = [int(np.argmin(np.abs(fit.b - b))) for b in truth.b]
    assert sorted(order) == list(range(truth.k))
    return gate.normal_form(fit.permute(order))


EVERY_GATE = [
    pytest.param(TopKGate(2), 3, 2, id="topk-slope"),
    pytest.param(TopKGate(2, "logit"), 3, 2, id="topk-logit"),
    pytest.param(TopKGate(1, "logit"), 3, 1, id="topk-K1"),
    pytest.param(TemperatureGate(0.7), 3, 2, id="temperature-learned"),
    pytest.param(TemperatureGate(0.7, learn_tau=False), 2, 1, id="temperature-fixed"),
    pytest.param(ActivationGate("tanh", 0.7), 3, 1, id="activation-tanh"),
    pytest.param(ActivationGate("sigmoid", 0.7), 2, 2, id="activation-sigmoid"),
    pytest.param(ActivationGate("gelu", 0.7, learn_tau=False), 3, 1, id="activation-gelu"),
    pytest.param(ActivationGate("relu", 0.7), 2, 1, id="activation-relu"),
    pytest.param(ActivationGate("identity", 0.7), 2, 1, id="activation-identity"),
]


@pytest.mark.parametrize("gate,k,d", EVERY_GATE)
def test_em_trace_never_decreases_on_random_problems(gate, k, d):
    rng = np.random.default_rng(17 * k + d + len(repr(gate)))
    for _ in range(2):
        truth = random_truth(rng, k, d, tau=0.7 if gate.has_tau else None)
        model = GaussianMoE(gate, truth, x_law=Uniform(-1, 1, d))
        X, y = model.sample(500, rng=rng)
        for init in ("kmeans", "random"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IdentifiabilityWarning)
                fit = fit_em(X, y, k, gate=gate, init=init, rng=rng, tol=1e-9, max_iter=60,
                             warn=False)
            trace = fit.loglik_trace
            assert len(trace) > 2
            drops = np.diff(trace)
            assert np.all(drops >= -1e-9 * np.abs(trace[1:])), (init, drops.min())
            assert fit.loglik == pytest.approx(fit.model.log_likelihood(X, y), rel=1e-10)
            assert fit.model.params.tau == fit.params.tau


@pytest.mark.parametrize("gate,k,d", EVERY_GATE[::2] + EVERY_GATE[1::4])
def test_every_initialisation_and_the_regressor_work_with_the_gate(gate, k, d):
    rng = np.random.default_rng(5)
    truth = random_truth(rng, k, d, tau=0.7 if gate.has_tau else None)
    X, y = GaussianMoE(gate, truth, x_law=Uniform(-1, 1, d)).sample(400, rng=rng)
    start = truth.replace(b=truth.b + 0.1, tau=None)       # explicit, tau filled by the gate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        for init in ("near_truth", "kmeans", "random", start):
            fit = fit_em(X, y, k, gate=gate, init=init, truth=truth, rng=0, max_iter=40,
                         warn=False)
            assert np.isfinite(fit.loglik) and fit.params.k == k
            assert (fit.params.tau is not None) == gate.has_tau
            assert fit.params == gate.normal_form(fit.params)
        reg = MoERegressor(k, gate=gate.get_config(), n_init=2, max_iter=40,
                           random_state=0).fit(X, y)
        assert reg.predict(X).shape == (400,)
        assert np.isfinite(reg.score(X, y))
        assert reg.result_.n_parameters() == k * (d + 2) + gate.n_params(k, d)


# ------------------------------------------------------------------ recovery
def test_topk_exact_specified_recovery_from_near_truth_init():
    truth = MoEParams([0.5, -0.5, 0.0], [[2.0, -1.0], [-1.0, 2.5], [0.0, 0.0]],
                      [[1.0, 0.0], [0.0, -1.0], [-1.0, 1.0]], [-4.0, 0.0, 4.0],
                      [0.25, 0.25, 0.25])
    gate = TopKGate(2)
    model = GaussianMoE(gate, truth, x_law=Uniform(-1, 1, 2))
    X, y = model.sample(20000, rng=1)
    fit = fit_em(X, y, 3, gate=gate, init="near_truth", truth=truth, rng=1)
    assert fit.converged and fit.success
    errors = max_errors(matched(gate, fit.params, truth), truth)
    assert max(errors.values()) < 0.15, errors
    # the selection boundaries sit where the data put them: the fit is at least as
    # likely as the truth, while EM without the boundary search stalls far below it
    truth_ll = model.log_likelihood(X, y)
    assert fit.loglik >= truth_ll
    stalled = fit_em(X, y, 3, gate=TopKGate(2, polish_evals=0), init="near_truth",
                     truth=truth, rng=1)
    assert stalled.loglik < truth_ll - 10


def test_activation_tanh_recovery_with_learned_tau():
    # k = 2, odd sigma: (beta1_1, beta1_2) and (-beta1_2, -beta1_1) give the same
    # gate for every x (an exact symmetry), so both are "the truth"
    truth = MoEParams([0.0, 0.0], [[1.0], [0.5]], [[0.5], [-0.5]], [-4.0, 4.0], [0.25, 0.25],
                      tau=0.1)
    mirror = truth.replace(beta1=[[-0.5], [-1.0]])
    gate = ActivationGate("tanh", tau=0.1)
    model = GaussianMoE(gate, truth, x_law=Uniform(-4, 4, 1))
    X, y = model.sample(20000, rng=0)
    assert GaussianMoE(gate, mirror).log_likelihood(X, y) == pytest.approx(
        model.log_likelihood(X, y), rel=1e-12)
    fit = fit_em(X, y, 2, gate=gate, init="near_truth", truth=truth, rng=0, n_init=3)
    assert fit.success
    p = matched(gate, fit.params, truth)
    errors = min((max_errors(p, t) for t in (truth, mirror)), key=lambda e: max(e.values()))
    assert max(errors.values()) < 0.15, errors
    assert fit.loglik >= model.log_likelihood(X, y)


def test_temperature_with_fixed_tau_recovers_its_parameters():
    truth = MoEParams([0.5, -0.5, 0.0], [[2.0], [-3.0], [0.0]], [[1.0], [0.0], [-1.0]],
                      [-4.0, 0.0, 4.0], [0.25, 0.25, 0.25], tau=0.5)
    gate = TemperatureGate(0.5, learn_tau=False)
    model = GaussianMoE(gate, truth, x_law=Uniform(-1, 1, 1))
    X, y = model.sample(20000, rng=2)
    fit = fit_em(X, y, 3, gate=gate, init="near_truth", truth=truth, rng=2)
    assert fit.converged and fit.params.tau == 0.5
    errors = max_errors(matched(gate, fit.params, truth), truth)
    assert max(errors.values()) < 0.15, errors


def test_temperature_with_learned_tau_reaches_the_truths_likelihood_not_its_parameters():
    truth = MoEParams([0.5, -0.5, 0.0], [[2.0], [-3.0], [0.0]], [[1.0], [0.0], [-1.0]],
                      [-4.0, 0.0, 4.0], [0.25, 0.25, 0.25], tau=0.5)
    gate = TemperatureGate(0.5)
    model = GaussianMoE(gate, truth, x_law=Uniform(-1, 1, 1))
    X, y = model.sample(20000, rng=2)
    fit = fit_em(X, y, 3, gate=gate, init="near_truth", truth=truth, rng=2)
    assert fit.converged
    assert fit.loglik >= model.log_likelihood(X, y) - 1e-4 * len(y)
    p = matched(gate, fit.params, truth)
    # only beta / tau is identified: it is recovered, while tau itself stays where
    # the (perturbed) start put it
    np.testing.assert_allclose(p.beta1 / p.tau, truth.beta1 / truth.tau, atol=0.3)
    np.testing.assert_allclose(p.beta0 / p.tau, truth.beta0 / truth.tau, atol=0.3)
    assert abs(p.tau - truth.tau) > 0.01


# ----------------------------------------------------------- over-specified
def test_over_specified_topk_converges_in_density_only_when_selecting_two():
    # truth: k* = 2 experts, K = 1; fitted: k = 3 experts (a true expert is split in
    # two), selecting 2 or 1. Held-out log-likelihood per sample, truth minus fit.
    truth = MoEParams([0.5, 0.0], [[2.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [-1.0, 0.5]],
                      [-2.0, 2.0], [0.25, 0.25])
    model = GaussianMoE(TopKGate(1), truth, x_law=Uniform(-1, 1, 2))
    Xt, yt = model.sample(100000, rng=12345)
    truth_ll = model.score_samples(Xt, yt).mean()
    gaps = {1: [], 2: []}
    sizes = (400, 1600, 6400)
    for n in sizes:
        for K in (2, 1):
            row = []
            for rep in range(3):
                X, y = model.sample(n, rng=1000 * rep + n)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", IdentifiabilityWarning)
                    fit = fit_em(X, y, 3, gate=TopKGate(K), init="near_truth", truth=truth,
                                 rng=rep, stop="per_sample", tol=1e-5, warn=False)
                row.append(truth_ll - fit.model.score_samples(Xt, yt).mean())
            gaps[K].append(row)
    two, one = np.array(gaps[2]), np.array(gaps[1])
    # selecting 2: every replication approaches the truth as n grows (about 1/n)
    assert np.all(two[-1] < 0.01), two
    assert np.median(two[-1]) < np.median(two[0]) / 4, two
    # selecting 1: no such approach; replications get stuck far from the truth
    assert np.median(one[-1]) > 3 * np.median(two[-1]), (one, two)
    assert one.max() > 1.0, one
