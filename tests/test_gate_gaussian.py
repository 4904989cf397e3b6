"""The Gaussian gate: g_i(x) proportional to pi_i N(x; mu_i, Sigma_i), a joint mixture on (x, y).

See docs/theory.md, "The Gaussian gate".
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import optimize, stats

from gmoe import GaussianMoE, MoEParams, fit_em
from gmoe._design import Design
from gmoe.config import ConfigError, load_config
from gmoe.density import hellinger
from gmoe.gates import GaussianGate, SoftmaxGate, make_gate
from gmoe.likelihood import FreeLikelihood
from gmoe.losses import voronoi_loss
from gmoe.xlaws import GaussianMixture, Uniform


def _random_params(rng, k: int, d: int) -> MoEParams:
    A = rng.normal(0, 0.5, (k, d, d))
    cov = A @ np.swapaxes(A, 1, 2) + 0.3 * np.eye(d)
    return MoEParams(rng.normal(0, 1, k), rng.normal(0, 1.5, (k, d)), rng.normal(0, 2, (k, d)),
                     rng.normal(0, 3, k), rng.uniform(0.2, 0.8, k) ** 2, gate_cov=cov)


def _truth(d: int = 1) -> MoEParams:
    """Two experts of comparable weight whose x-clusters overlap."""
    mu = [[-1.0] + [0.5] * (d - 1), [1.0] + [-0.5] * (d - 1)]
    cov = [0.5 * np.eye(d), 0.3 * np.eye(d) + 0.1]
    return MoEParams([np.log(0.4 / 0.6), 0.0], mu, [[1.0] * d, [-1.0] * d], [0.5, -0.5],
                     [0.1, 0.15], gate_cov=cov)


def _brute_joint(params: MoEParams, x, y=None):
    """pi_i N(x; mu_i, Sigma_i) (times N(y; a_i x + b_i, nu_i) when y is given), one point."""
    pi = np.exp(params.beta0) / np.exp(params.beta0).sum()
    out = np.array([pi[i] * stats.multivariate_normal(params.beta1[i], params.gate_cov[i]).pdf(x)
                    for i in range(params.k)])
    if y is not None:
        out *= [stats.norm(params.a[i] @ x + params.b[i], np.sqrt(params.var[i])).pdf(y)
                for i in range(params.k)]
    return out


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("k,d", [(3, 2), (4, 1), (2, 3)])
def test_weights_and_joint_likelihood_match_the_definition(k, d):
    rng = np.random.default_rng(k + d)
    gate = GaussianGate()
    params = _random_params(rng, k, d)
    X = rng.normal(0, 1.5, (30, d))
    y = rng.normal(0, 2, 30)
    joint = np.array([_brute_joint(params, x) for x in X])
    np.testing.assert_allclose(gate.weights(X, params), joint / joint.sum(axis=1, keepdims=True),
                               atol=1e-12)
    np.testing.assert_allclose(gate.log_marginal_x(Design(X), params), np.log(joint.sum(axis=1)),
                               rtol=1e-12)
    # the model's likelihood is the joint one: log sum_i pi_i N(x) N(y)
    model = GaussianMoE(gate, params)
    expected = sum(np.log(_brute_joint(params, x, v).sum()) for x, v in zip(X, y, strict=True))
    assert model.log_likelihood(X, y) == pytest.approx(expected, rel=1e-12)
    # the normal form (beta0_k = 0) is the same gate; the means are not shifted
    normal = gate.normal_form(params)
    assert normal.beta0[-1] == 0 and np.array_equal(normal.beta1, params.beta1)
    np.testing.assert_allclose(gate.weights(X, normal), gate.weights(X, params), atol=1e-12)
    assert not np.allclose(gate.weights(X, params.shift_gate(0.0, np.ones(d))),
                           gate.weights(X, params))


def test_free_layout_counts_and_round_trip():
    gate = GaussianGate()
    assert gate.symmetry == "intercept" and gate.shifts_intercepts and not gate.shifts_slopes
    k, d = 3, 2
    assert gate.n_params(k, d) == (k - 1) + k * d + k * d * (d + 1) // 2
    assert gate.n_params(1, 1) == 2      # one expert: its mean and variance of x
    params = gate.normal_form(_random_params(np.random.default_rng(0), k, d))
    theta = gate.free_vector(params)
    assert theta.size == gate.n_params(k, d)
    assert gate.from_free_vector(theta, params).allclose(params, rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------ M-step
def test_closed_form_m_step_is_the_maximiser_of_the_weighted_joint_objective():
    rng = np.random.default_rng(1)
    gate = GaussianGate()
    k, d, n = 3, 2, 400
    X = rng.normal(0, 1.5, (n, d))
    design = Design(X, rng.normal(size=n))
    resp = rng.dirichlet(np.ones(k), size=n).T * rng.uniform(0.5, 2.0, n)  # weighted columns
    start = gate.normal_form(_random_params(rng, k, d))
    log_w = gate.log_weights_T(design, start)
    new, new_log_w, info = gate.m_step(design, resp, start, log_w)
    np.testing.assert_allclose(new_log_w, gate.log_weights_T(design, new), atol=1e-12)
    assert info.objective_after >= info.objective_before

    def objective(theta):
        state = gate.free_state(theta, design, k)
        joint = state.log_w + state.log_px
        return -float(np.sum(resp * joint)) if np.all(np.isfinite(joint)) else np.inf

    def gradient(theta):  # the analytic score (checked against differences below)
        return -gate.free_score(gate.free_state(theta, design, k), design, resp)

    best = optimize.minimize(objective, gate.free_vector(start), jac=gradient, method="BFGS",
                             options={"gtol": 1e-9, "maxiter": 5000})
    closed = objective(gate.free_vector(new))
    assert closed <= best.fun + 1e-7 * abs(best.fun)
    np.testing.assert_allclose(gate.free_vector(new), best.x, atol=1e-4)
    # and its score vanishes there
    state = gate.free_state(gate.free_vector(new), design, k)
    assert np.max(np.abs(gate.free_score(state, design, resp))) < 1e-8 * n


def test_score_is_the_gradient_of_the_joint_gate_objective_and_of_the_likelihood():
    rng = np.random.default_rng(5)
    gate = GaussianGate()
    k, d, n = 3, 2, 300
    X = rng.normal(0, 1.5, (n, d))
    design = Design(X, rng.normal(size=n))
    params = gate.normal_form(_random_params(rng, k, d))
    theta = gate.free_vector(params)
    resp = rng.dirichlet(np.ones(k), size=n).T

    def objective(t):
        state = gate.free_state(t, design, k)
        return float(np.sum(resp * (state.log_w + state.log_px)))

    grad = gate.free_score(gate.free_state(theta, design, k), design, resp)
    fd = optimize.approx_fprime(theta, objective, 1e-7)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())
    # the certified fit's likelihood is the joint one, and its score its gradient
    like = FreeLikelihood(design, gate, params)
    full = like.pack(params)
    ll, score = like.evaluate(full)
    assert ll == pytest.approx(GaussianMoE(gate, params).log_likelihood(X, design.y), rel=1e-12)
    fd = optimize.approx_fprime(full, like.loglik, 1e-7)
    np.testing.assert_allclose(score, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


# --------------------------------------------------------------------- EM
def test_em_is_monotone_in_the_joint_log_likelihood():
    gate = GaussianGate()
    truth = _truth(2)
    X, y = GaussianMoE(gate, truth).sample(1500, rng=1)
    for accelerate in (False, True):
        fit = fit_em(X, y, 3, gate=gate, init="random", rng=2, tol=0.0, max_iter=150,
                     polish=False, warn=False, accelerate=accelerate)
        trace = np.asarray(fit.loglik_trace)
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:])), np.diff(trace).min()
        # the trace is the joint log-likelihood, the model's
        assert trace[-1] == pytest.approx(fit.model.log_likelihood(X, y), rel=1e-10)


def test_known_parameters_are_recovered_at_large_n_and_the_fit_is_certified():
    gate = GaussianGate()
    truth = gate.normal_form(_truth(2))
    X, y = GaussianMoE(gate, truth).sample(20000, rng=6)
    fit = fit_em(X, y, 2, gate=gate, init="kmeans", n_init=2, rng=0, warn=False)
    assert fit.certified, fit.polish_message
    got = fit.params
    if np.linalg.norm(got.beta1[0] - truth.beta1[0]) > 1:
        got = gate.normal_form(got.permute([1, 0]))
    np.testing.assert_allclose(got.beta0, truth.beta0, atol=0.05)
    np.testing.assert_allclose(got.beta1, truth.beta1, atol=0.05)
    np.testing.assert_allclose(got.gate_cov, truth.gate_cov, atol=0.03)
    np.testing.assert_allclose(got.a, truth.a, atol=0.05)
    np.testing.assert_allclose(got.b, truth.b, atol=0.05)
    np.testing.assert_allclose(got.var, truth.var, rtol=0.1)
    # the truth has a joint likelihood close to the maximum, not above it
    assert GaussianMoE(gate, truth).log_likelihood(X, y) <= fit.loglik + 1e-6
    # standard errors of the identified parameters are finite; the covariances are
    # in cov_params() (names "gate_cov[i,j,l]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        se = fit.bse
    assert np.all(np.isfinite(se.beta1)) and np.isfinite(se.beta0[0])
    assert sum(name.startswith("gate_cov") for name in fit.param_names) == 2 * 3
    assert np.all(np.isfinite(np.diag(fit.cov_params())))
    # the loss and the density distance against the truth are small
    assert voronoi_loss(fit, GaussianMoE(gate, truth)).value < 0.1
    assert hellinger(fit.model, GaussianMoE(gate, truth), X[:300]) < 0.05


def test_near_truth_start_carries_the_covariances():
    gate = GaussianGate()
    truth = gate.normal_form(_truth(1))
    X, y = GaussianMoE(gate, truth).sample(3000, rng=3)
    for scale in (0.1, "published"):
        fit = fit_em(X, y, 3, gate=gate, init="near_truth", truth=truth, init_scale=scale,
                     rng=0, max_iter=50, polish=False, warn=False)
        assert fit.params.gate_cov.shape == (3, 1, 1) and fit.success


# -------------------------------------------------------------- sampling
def test_x_is_drawn_from_the_gate_mixture_and_y_given_x_from_the_experts():
    gate = GaussianGate()
    truth = gate.normal_form(_truth(1))
    model = GaussianMoE(gate, truth)
    assert model.x_law == gate.x_law(truth)
    X, y = model.sample(40000, rng=9)
    pi = np.array([0.4, 0.6])

    def cdf(x):
        return sum(pi[i] * stats.norm(truth.beta1[i, 0], np.sqrt(truth.gate_cov[i, 0, 0])).cdf(x)
                   for i in range(2))

    assert stats.kstest(X[:, 0], cdf).pvalue > 1e-3
    # y | x: the PIT of the conditional CDF is uniform
    assert stats.kstest(model.cdf(X, y), "uniform").pvalue > 1e-3
    # in d = 2 the sample moments are the mixture's
    truth2 = gate.normal_form(_truth(2))
    X2 = GaussianMoE(gate, truth2).sample(40000, rng=1)[0]
    w = np.array([0.4, 0.6])
    mean = w @ truth2.beta1
    cov = sum(w[i] * (truth2.gate_cov[i] + np.outer(truth2.beta1[i] - mean,
                                                      truth2.beta1[i] - mean)) for i in range(2))
    np.testing.assert_allclose(X2.mean(axis=0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(X2.T), cov, atol=0.03)


def test_another_x_law_is_refused_and_the_gate_law_is_accepted():
    gate = GaussianGate()
    truth = _truth(1)
    with pytest.raises(ValueError, match="models X"):
        GaussianMoE(gate, truth, x_law=Uniform(-1, 1, 1))
    for law in ("gate", {"name": "gate"}, gate.x_law(gate.normal_form(truth))):
        assert GaussianMoE(gate, truth, x_law=law).x_law == gate.x_law(gate.normal_form(truth))
    # X given explicitly: y drawn given those x
    X, y = GaussianMoE(gate, truth).sample(5, rng=0, x=np.zeros((5, 1)))
    assert np.all(X == 0)


def test_gaussian_mixture_law_validates_and_round_trips():
    law = GaussianMixture([1.0, 3.0], [[0.0], [1.0]], [[[1.0]], [[0.5]]])
    np.testing.assert_allclose(law.weights, [0.25, 0.75])
    from gmoe.xlaws import make_xlaw
    assert make_xlaw(law.get_config()) == law
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture([1.0], [[0.0]], [[[-1.0]]])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([-1.0, 2.0], [[0.0], [1.0]], [[[1.0]], [[1.0]]])


# ----------------------------------------------------------------- split
def test_split_keeps_the_joint_density_exactly():
    gate = GaussianGate()
    assert gate.exact_split
    rng = np.random.default_rng(2)
    params = gate.normal_form(_random_params(rng, 3, 2))
    model = GaussianMoE(gate, params)
    X, y = model.sample(400, rng=rng)
    base = model.score_samples(X, y)
    for j in range(3):
        bigger = gate.split(params, j)
        assert bigger.k == 4 and bigger.gate_cov.shape == (4, 2, 2)
        np.testing.assert_allclose(GaussianMoE(gate, bigger).score_samples(X, y), base,
                                   rtol=1e-12, atol=1e-12)
        w = gate.weights(X, bigger)
        np.testing.assert_allclose(w[:, j], w[:, -1])
        jittered = gate.split(params, j, rng=0, jitter=0.5)
        np.testing.assert_allclose(jittered.b[[j, -1]].sum(), 2 * params.b[j])
        assert jittered.b[j] != jittered.b[-1]
    with pytest.raises(ValueError, match="'j'"):
        gate.split(params, 3)


def test_split_and_auto_starts_run_and_never_end_below_the_smaller_fit():
    gate = GaussianGate()
    truth = gate.normal_form(_truth(1))
    X, y = GaussianMoE(gate, truth).sample(600, rng=4)
    small = fit_em(X, y, 2, gate=gate, init="split", n_init=1, rng=0, warn=False)
    big = fit_em(X, y, 3, gate=gate, init="split", n_init=1, rng=0, warn=False)
    assert big.loglik >= small.loglik - 1e-6


# -------------------------------------------------------------- parameters
def test_gate_cov_is_validated_and_carried_through_params():
    base = dict(beta0=[0.0, 0.0], beta1=[[0.0], [1.0]], a=[[1.0], [1.0]], b=[0, 0],
                var=[1.0, 1.0])
    p = MoEParams(**base, gate_cov=[0.5, 0.2])          # d = 1: flat variances allowed
    assert p.gate_cov.shape == (2, 1, 1)
    assert MoEParams.from_dict(p.to_dict()) == p
    assert np.array_equal(p.replace(b=[1.0, 1.0]).gate_cov, p.gate_cov)
    assert p.permute([1, 0]).gate_cov[0, 0, 0] == 0.2
    assert np.array_equal(p.shift_gate(1.0).gate_cov, p.gate_cov)
    assert p != MoEParams(**base) and p != p.replace(gate_cov=[0.5, 0.3])
    assert "gate_cov" not in MoEParams(**base).to_dict()
    with pytest.raises(ValueError, match="'gate_cov' should have the shape"):
        MoEParams(**base, gate_cov=np.ones((3, 1, 1)))
    with pytest.raises(ValueError, match="positive definite"):
        MoEParams(**base, gate_cov=[0.5, -0.1])
    two = dict(base, beta1=[[0.0, 0.0], [1.0, 1.0]], a=[[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="symmetric"):
        MoEParams(**two, gate_cov=[[[1.0, 0.5], [0.0, 1.0]], np.eye(2)])
    with pytest.raises(ValueError, match="NaN or inf"):
        MoEParams(**base, gate_cov=[np.nan, 1.0])
    # the gate fills identity covariances where none are given, and needs them
    gate = GaussianGate()
    np.testing.assert_array_equal(gate.prepare(MoEParams(**base)).gate_cov, np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="gate_cov is None"):
        gate.check_params(MoEParams(**base))
    assert make_gate({"name": "gaussian", "cov_floor": 1e-8}).cov_floor == 1e-8


def test_standardized_fits_standardise_y_only_and_x_is_never_rescaled():
    gate = GaussianGate()
    assert not gate.rescales_x
    X, y = GaussianMoE(gate, _truth(1)).sample(300, rng=0)
    raw = fit_em(X, y, 2, gate=gate, rng=0, warn=False)
    std = fit_em(X, y, 2, gate=gate, rng=0, standardize=True, warn=False)
    assert std.standardized and std.loglik == pytest.approx(raw.loglik, rel=1e-8)
    # the gate's own rescaling is refused with a clear message
    with pytest.raises(ValueError, match="standardize=False"):
        gate.rescale_x(std.params, np.array([2.0]))


def test_a_gate_without_a_score_is_reported_as_not_certifiable():
    class NoScore(SoftmaxGate):
        def free_state(self, theta, design, k, mask=None):
            raise NotImplementedError("no score")

    X, y = GaussianMoE(SoftmaxGate(), _truth(1).replace(gate_cov=None)).sample(300, rng=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_em(X, y, 2, gate=NoScore(), rng=0)
    assert fit.polished and not fit.certified
    assert fit.polish_message.startswith("not certifiable: the gate supplies no score")


# -------------------------------------------------------------- losses
def test_voronoi_loss_carries_the_gate_covariances():
    gate = GaussianGate()
    truth = GaussianMoE(gate, _truth(2))
    assert voronoi_loss(truth, truth).value == pytest.approx(0.0, abs=1e-12)
    p = truth.params
    moved = GaussianMoE(gate, p.replace(gate_cov=p.gate_cov + 0.1 * np.eye(2)))
    loss = voronoi_loss(moved, truth)
    # mass translation: fitted masses pi_i / pi*_k, each atom's Sigma off by 0.1 sqrt(2)
    assert loss.value == pytest.approx(0.1 * np.sqrt(2) * (0.4 + 0.6) / 0.6, rel=1e-9)
    # a split atom (exact) is at loss 0 in D2
    split = GaussianMoE(gate, gate.split(p, 0))
    assert voronoi_loss(split, truth, kind="over").value == pytest.approx(0.0, abs=1e-10)


# -------------------------------------------------------------- config
def test_config_draws_x_from_the_gate_and_refuses_another_x_law():
    cfg = load_config("gaussian-exact", quick=True)[0]
    assert cfg.raw["x"] == {"name": "gate"}
    assert cfg.x_law == cfg.truth_gate.x_law(cfg.truth_params)
    raw = load_config("gaussian-exact")[0].raw
    bad = dict(raw, x={"name": "uniform", "low": -1, "high": 1})
    with pytest.raises(ConfigError, match="models X"):
        load_config(bad)
    soft = dict(raw, truth={k: v for k, v in raw["truth"].items() if k != "gate_cov"}
                | {"gate": {"name": "softmax"}}, fit=dict(raw["fit"], gate={"name": "softmax"}))
    with pytest.raises(ConfigError, match="only for gates that model X"):
        load_config(soft)
