import warnings

import numpy as np
import pytest

from gmoe import (
    ConvergenceWarning,
    GaussianMoE,
    MoEParams,
    MoERegressor,
    Normal,
    SoftmaxGate,
    fit_em,
)
from gmoe._design import Design
from gmoe.exceptions import DegenerateFitWarning, IdentifiabilityWarning, SeparationWarning
from gmoe.gates._base import weighted_objective

from .conftest import random_params


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_em_trace_never_decreases(k, d):
    rng = np.random.default_rng(100 * k + d)
    truth = random_params(rng, k, d)
    X, y = GaussianMoE(SoftmaxGate(), truth, x_law=Normal(0, 1, d)).sample(800, rng=rng)
    for init in ("kmeans", "random"):
        fit = fit_em(X, y, k, init=init, rng=rng, tol=1e-10, max_iter=300, warn=False)
        trace = fit.loglik_trace
        assert len(trace) > 2
        drops = np.diff(trace)
        assert np.all(drops >= -1e-9 * np.abs(trace[1:])), drops.min()
        # the reported log-likelihood is the model's at the returned parameters
        assert fit.loglik == pytest.approx(fit.model.log_likelihood(X, y), rel=1e-10)


def _objective(theta_free, design, resp_T, k):
    p = design.p
    full = np.zeros((k, p))
    full[:-1] = theta_free.reshape(k - 1, p)
    eta = full @ design.ZT
    log_w = eta - np.logaddexp.reduce(eta, axis=0)
    return weighted_objective(resp_T, log_w)


@pytest.mark.parametrize("k,d", [(2, 1), (3, 2), (4, 1)])
def test_gating_m_step_reaches_a_stationary_point_and_does_not_decrease(k, d):
    rng = np.random.default_rng(k + 7 * d)
    n = 500
    X = rng.normal(size=(n, d))
    design = Design(X, rng.normal(size=n))
    resp = rng.dirichlet(np.ones(k), size=n).T.copy()
    start = MoEParams(np.zeros(k), np.zeros((k, d)), np.zeros((k, d)), np.zeros(k), np.ones(k))
    gate = SoftmaxGate(newton_tol=1e-14)
    log_w0 = gate.log_weights_T(design, start)
    params, log_w, info = gate.m_step(design, resp, start, log_w0)
    q0 = weighted_objective(resp, log_w0)
    q1 = weighted_objective(resp, log_w)
    assert q1 >= q0
    assert info.objective_after == pytest.approx(q1, rel=1e-12)
    theta = np.column_stack([params.beta1[:-1], params.beta0[:-1]]).ravel()
    assert _objective(theta, design, resp, k) == pytest.approx(q1, rel=1e-12)
    # central finite differences of the weighted objective at the returned point
    h = 1e-5
    grad = np.array([(_objective(theta + h * e, design, resp, k)
                      - _objective(theta - h * e, design, resp, k)) / (2 * h)
                     for e in np.eye(theta.size)])
    assert np.max(np.abs(grad)) < 1e-5 * n
    # and it is a maximum: random directions do not increase the objective
    for _ in range(5):
        v = rng.normal(size=theta.size) * 1e-3
        assert _objective(theta + v, design, resp, k) <= q1 + 1e-9


def test_recovers_paper_setting_from_near_truth_init(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    X, y = model.sample(20000, rng=2024)
    fit = fit_em(X, y, 2, init="near_truth", truth=paper_truth, rng=1)
    assert fit.converged and fit.success
    p = fit.params
    # near-truth keeps the expert order of the truth up to the random assignment
    if abs(p.a[0, 0] - paper_truth.a[0, 0]) > abs(p.a[1, 0] - paper_truth.a[0, 0]):
        p = SoftmaxGate().normal_form(p.permute([1, 0]))
    np.testing.assert_allclose(p.a, paper_truth.a, atol=0.1)
    np.testing.assert_allclose(p.b, paper_truth.b, atol=0.1)
    np.testing.assert_allclose(p.var, paper_truth.var, atol=0.02)
    np.testing.assert_allclose(p.beta0, paper_truth.beta0, atol=1.0)
    np.testing.assert_allclose(p.beta1, paper_truth.beta1, atol=3.0)
    assert fit.loglik >= model.log_likelihood(X, y) - 1e-6 * len(y)


def test_kmeans_restarts_reach_the_truths_likelihood_without_truth(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    X, y = model.sample(20000, rng=2024)
    fit = fit_em(X, y, 2, init="kmeans", n_init=5, rng=3)
    assert len(fit.restart_logliks) == 5
    assert fit.loglik == max(fit.restart_logliks)
    assert fit.loglik >= model.log_likelihood(X, y) - 1e-3 * len(y)


def test_over_specified_fit_is_at_least_as_good_as_exact(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(3000, rng=8)
    exact = fit_em(X, y, 2, init="near_truth", truth=paper_truth, rng=0, n_init=2)
    over = fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=0, n_init=2, warn=False)
    assert over.loglik >= exact.loglik - 1e-6 * len(y)


def test_explicit_params_init_at_the_mle_stops_immediately(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(4000, rng=9)
    first = fit_em(X, y, 2, init="near_truth", truth=paper_truth, rng=0, tol=1e-12,
                   max_iter=5000)
    again = fit_em(X, y, 2, init=first.params, tol=1e-10)
    assert again.n_iter <= 2
    assert again.loglik == pytest.approx(first.loglik, rel=1e-10)


def test_max_iter_reached_warns_and_reports(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(500, rng=1)
    with pytest.warns(ConvergenceWarning):
        fit = fit_em(X, y, 3, init="random", max_iter=2, rng=0, tol=0.0, polish=False)
    assert not fit.converged and fit.stopped_by == "max_iter" and fit.n_iter == 2


def test_polish_certifies_where_em_stopped_early(paper_truth):
    # EM stopped after 2 iterations; the polish still reaches a zero score and records
    # that EM did not converge
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(500, rng=1)
    fit = fit_em(X, y, 2, init="near_truth", truth=paper_truth, max_iter=2, rng=0, tol=0.0)
    assert not fit.converged and fit.stopped_by == "max_iter"
    assert fit.certified and fit.grad_norm <= 1e-8
    assert fit.polish_gain >= 0 and fit.loglik == pytest.approx(fit.em_loglik + fit.polish_gain)


def test_per_sample_stop_rule_is_recorded(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(2000, rng=1)
    fit = fit_em(X, y, 2, init="near_truth", truth=paper_truth, rng=0, stop="per_sample",
                 tol=1e-8)
    assert fit.converged and fit.stopped_by == "per_sample"
    assert abs(fit.loglik_trace[-1] - fit.loglik_trace[-2]) <= 1e-8 * len(y)


def test_collapsing_expert_is_reported_not_garbage():
    # three identical points: an expert can sit exactly on them with zero variance
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.uniform(size=200), np.full(3, 0.5)])[:, None]
    y = np.concatenate([rng.normal(size=200), np.full(3, 7.0)])
    start = MoEParams([0.0, 0.0], [[0.0], [0.0]], [[0.0], [0.0]], [7.0, 0.0], [1e-3, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_em(X, y, 2, init=start, max_iter=500)
    assert not fit.success
    assert "degenerate variance" in fit.reason
    assert np.all(np.isfinite(fit.params.var)) and np.isfinite(fit.loglik)


def test_fit_result_summary_and_dict(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(1000, rng=1)
    fit = fit_em(X, y, 2, init="near_truth", truth=paper_truth, rng=0)
    text = fit.summary()
    assert "log-likelihood" in text and "converged" in text
    d = fit.to_dict()
    assert MoEParams.from_dict(d["params"]) == fit.params
    # experts: 2 x (a, b, var) = 6; gate: (k - 1)(d + 1) = 2
    assert fit.bic() == pytest.approx(-2 * fit.loglik + 8 * np.log(1000))


@pytest.mark.parametrize("kwargs,match", [
    ({"n_experts": 0}, "n_experts must be an integer >= 1"),
    ({"n_experts": 2, "init": "near_truth"}, "needs the true parameters"),
    ({"n_experts": 2, "init": "kmean"}, "unknown init 'kmean'"),
    ({"n_experts": 2, "n_init": 0}, "n_init must be an integer >= 1"),
    ({"n_experts": 2, "tol": -1.0}, "tol must be finite and >= 0"),
    ({"n_experts": 2, "stop": "absolute"}, "unknown stop rule"),
])
def test_bad_arguments_raise_value_errors(kwargs, match):
    X, y = np.random.default_rng(0).normal(size=(50, 1)), np.zeros(50)
    with pytest.raises(ValueError, match=match):
        fit_em(X, y, **kwargs)


def test_bad_data_raise_value_errors():
    X = np.zeros((10, 1))
    with pytest.raises(ValueError, match="different numbers of samples"):
        fit_em(X, np.zeros(9), 2)
    with pytest.raises(ValueError, match="y contains NaN"):
        fit_em(X, np.full(10, np.nan), 2)
    with pytest.raises(ValueError, match="init has 3 experts"):
        fit_em(X, np.zeros(10), 2, init=random_params(np.random.default_rng(0), 3, 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_accelerated_em_is_monotone_and_reaches_the_same_optimum(paper_truth, seed):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(1000, rng=seed)
    # (with seed 1 one of the three experts collapses onto the variance floor, and
    # fit_em says so; this test is about the EM path)
    plain = fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=1, tol=1e-10,
                   max_iter=10000, warn=False)
    fast = fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=1, tol=1e-10,
                  max_iter=10000, accelerate=True, warn=False)
    assert plain.converged and fast.converged
    trace = fast.loglik_trace
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    assert fast.loglik == pytest.approx(plain.loglik, abs=1e-6 * len(y))
    assert fast.n_iter < 0.5 * plain.n_iter
    assert fast.loglik == pytest.approx(fast.model.log_likelihood(X, y), rel=1e-10)


def test_accelerated_em_keeps_monotone_on_random_problems():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        truth = random_params(rng, 3, 2)
        X, y = GaussianMoE(SoftmaxGate(), truth, x_law=Normal(0, 1, 2)).sample(600, rng=rng)
        fit = fit_em(X, y, 4, init="random", rng=rng, tol=1e-9, max_iter=400,
                     accelerate=True, warn=False)
        trace = fit.loglik_trace
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))


@pytest.mark.parametrize("seed", range(4))
def test_split_init_never_ends_below_the_smaller_fit(paper_truth, seed):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(3000, rng=seed)
    exact = fit_em(X, y, 2, n_init=3, rng=seed, warn=False)
    over = fit_em(X, y, 3, init="split", n_init=3, rng=seed, warn=False)
    assert over.loglik >= exact.loglik - 1e-9 * abs(exact.loglik)
    assert len(over.restart_logliks) == 3  # two splits and the exact embedding


def test_auto_init_with_topk_gate_falls_back_to_kmeans_and_split_is_refused():
    from gmoe import TopKGate

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(300, 1))
    y = np.where(X[:, 0] > 0, 2.0, -2.0) + 0.3 * rng.standard_normal(300)
    fit = fit_em(X, y, 2, gate=TopKGate(2), init="auto", n_init=2, rng=0, warn=False)
    assert len(fit.restart_logliks) == 2
    # k = 3 with K = 2: the k - 1 = 2 fit is allowed, so auto adds split starts
    fit3 = fit_em(X, y, 3, gate=TopKGate(2), init="auto", n_init=2, rng=0, warn=False)
    assert len(fit3.restart_logliks) == 2 + 3
    with pytest.raises(ValueError, match="init='split'.*selects K = 2"):
        fit_em(X, y, 2, gate=TopKGate(2), init="split")


# ------------------------------------------------------------------ sample weights
def _weighted_data(n=400):
    truth = MoEParams([1.0, 0.0], [[-3.0], [0.0]], [[2.0], [-2.0]], [0.0, 1.0], [0.1, 0.1])
    X, y = GaussianMoE(SoftmaxGate(), truth).sample(n, rng=1)
    weight = np.random.default_rng(2).integers(0, 4, size=n)
    return X, y, weight


@pytest.mark.parametrize("gate,k", [("softmax", 2), ("temperature", 2),
                                    ({"name": "topk", "K": 2, "rank_by": "logit"}, 3)])
def test_integer_sample_weights_fit_as_repeated_rows(gate, k):
    # weighted EM: weighted responsibilities in every M-step (experts, the gate's
    # Newton step with the column sums), the likelihood, the stopping rule and the polish
    X, y, weight = _weighted_data()
    Xr, yr = np.repeat(X, weight, axis=0), np.repeat(y, weight)
    start = fit_em(X, y, k, gate=gate, rng=0, max_iter=3, polish=False, warn=False).params
    weighted = fit_em(X, y, k, gate=gate, init=start, sample_weight=weight, warn=False)
    repeated = fit_em(Xr, yr, k, gate=gate, init=start, warn=False)
    assert weighted.n_iter == repeated.n_iter
    assert weighted.loglik == pytest.approx(repeated.loglik, rel=1e-10)
    assert weighted.params.allclose(repeated.params, atol=1e-7)
    assert weighted.certified == repeated.certified
    # the information criteria count a weight of 2 as two rows (n = the weights' sum)
    assert weighted.nobs == len(yr) and repeated.nobs is None
    assert weighted.bic() == pytest.approx(repeated.bic(), rel=1e-10)
    assert weighted.aic() == pytest.approx(repeated.aic(), rel=1e-10)


def test_zero_sample_weights_are_the_rows_left_out():
    # zero-weight rows are dropped before the random starts: the same fit, to
    # rounding (the weighted sums are dot products with the weights, the others sums,
    # and the polish's Newton steps carry that rounding)
    X, y, weight = _weighted_data()
    weight = (weight > 0).astype(float)
    kept = fit_em(X[weight > 0], y[weight > 0], 2, n_init=2, rng=3)
    weighted = fit_em(X, y, 2, n_init=2, rng=3, sample_weight=weight)
    assert weighted.n_iter == kept.n_iter and weighted.polish_iter == kept.polish_iter
    for field in ("beta0", "beta1", "a", "b", "var"):
        np.testing.assert_allclose(getattr(weighted.params, field),
                                   getattr(kept.params, field), rtol=1e-12, atol=1e-14)
    assert weighted.loglik == pytest.approx(kept.loglik, rel=1e-15)


def test_softmax_m_step_uses_the_column_sums_of_weighted_responsibilities():
    X, y, weight = _weighted_data(300)
    weight = weight + 0.5
    gate = SoftmaxGate()
    params = random_params(np.random.default_rng(4), 3, 1)
    design = Design(X, y, weight)
    resp = np.random.default_rng(5).dirichlet(np.ones(3), size=300).T * weight
    log_w = gate.log_weights_T(design, params)
    new, log_w_new, _ = gate.m_step(design, resp, params, log_w)
    # at the maximum of sum_n sum_i r_ni log g_i the gradient r - c P vanishes
    P = np.exp(log_w_new)
    grad = (resp - P * resp.sum(axis=0)) @ design.ZT.T
    assert np.max(np.abs(grad)) < 1e-3   # about 100 when the sums are taken to be 1


@pytest.mark.parametrize("weight,match", [
    (np.ones(9), r"sample_weight should have the shape of \(10,\)"),
    (-np.ones(10), "must be >= 0"),
    (np.zeros(10), "0 for every sample"),
    (np.full(10, np.nan), "NaN or inf"),
])
def test_bad_sample_weights_raise(weight, match):
    X = np.random.default_rng(0).normal(size=(10, 1))
    with pytest.raises(ValueError, match=match):
        fit_em(X, X[:, 0], 1, sample_weight=weight)


# ------------------------------------------------------------------ honest failures
def _hard_switch(n=2000, seed=0):
    """README's old example: a hard switch at x = 0 (the MLE gate slope is infinite)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 1))
    y = np.where(X[:, 0] > 0, 3 * X[:, 0], -1 - 2 * X[:, 0]) + 0.2 * rng.standard_normal(n)
    return X, y


def test_more_experts_than_samples_is_refused():
    X = np.random.default_rng(0).normal(size=(3, 1))
    with pytest.raises(ValueError, match="n_experts = 4 is more than the 3 samples"):
        fit_em(X, X[:, 0], 4)
    with pytest.raises(ValueError, match="3 samples of positive weight"):
        fit_em(np.vstack([X, X]), np.r_[X[:, 0], X[:, 0]], 4,
               sample_weight=[1, 1, 1, 0, 0, 0])


def test_as_many_experts_as_samples_warns_and_is_degenerate():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(5, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_em(X, X[:, 0] + rng.normal(size=5), 5, init="auto", n_init=2, rng=0)
    said = {(w.category, str(w.message).split(":")[0]) for w in caught}
    assert (DegenerateFitWarning, "5 samples for 5 experts with 3 parameters each (15 in all)"
            ) in said
    # every restart has experts fitted to one or two rows (variances at the floor, or
    # too few rows for the coefficients): none is a success
    assert (DegenerateFitWarning, "the fit failed or is degenerate") in said
    assert not fit.success and fit.degenerate and not fit.certified


def test_a_fit_with_two_copies_of_one_expert_names_them():
    # a start with two identical experts stays symmetric under EM: a stationary
    # point that is in effect a one-expert fit
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(200, 1))
    y = 2 * X[:, 0] + 0.3 * rng.standard_normal(200)
    start = MoEParams(beta0=[0.0, 0.0], beta1=[[0.0], [0.0]], a=[[1.0], [1.0]],
                      b=[0.0, 0.0], var=[1.0, 1.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_em(X, y, 2, init=start)
    said = {(w.category, str(w.message).split(":")[0]) for w in caught}
    assert (IdentifiabilityWarning, "the fit has identical experts (1 = 0)") in said
    assert fit.success


@pytest.mark.parametrize("weight", [None, 0.2, 100.0])
@pytest.mark.parametrize("rows,flagged", [(3, True), (10, False), (0, False)])
def test_an_expert_with_fewer_rows_than_its_parameters_plus_two_is_degenerate(rows,
                                                                             flagged,
                                                                             weight):
    from types import SimpleNamespace

    from gmoe._restarts import _flag_thin_experts

    # expert 0 takes the `rows` smallest x (a sharp gate at the gap after them) and
    # sits 50 sd away from expert 1: its responsibility mass is `rows` to 1e-12
    x = np.sort(np.random.default_rng(1).uniform(0, 1, 100))
    cut = 0.5 * (x[rows - 1] + x[rows]) if rows else -1.0
    params = MoEParams(beta0=[1e4 * cut, 0.0], beta1=[[-1e4], [0.0]], a=[[0.0], [0.0]],
                       b=[50.0, 0.0], var=[1.0, 1.0])
    y = np.where(x < cut, 50.0, 0.0)
    # rows, not weights: the verdict is the same whatever common weight the rows get
    w = None if weight is None else np.full(100, weight)
    ctx = SimpleNamespace(design=Design(x[:, None], y, w), gate=SoftmaxGate())
    run = {"params": params, "loglik": -1.0, "reason": None, "certified": True}
    _flag_thin_experts(run, ctx)
    assert (run["reason"] is not None) == flagged
    if flagged:   # 3 rows for 2 coefficients: one residual degree of freedom
        assert run["reason"].startswith("degenerate expert(s) 0 (3 effective rows)")
        assert "fewer than the 4 an expert with 2 regression coefficients needs" in run[
            "reason"]
        assert run["degenerate"] and not run["certified"]


def test_a_certified_fit_never_has_an_expert_below_its_parameters_plus_two():
    # 60 rows, 20 covariates, 2 experts: a restart that gives one expert 22 rows for
    # its 21 coefficients fits its variance to one residual degree of freedom (4.6e-5
    # against a true 0.04) and was returned certified before the rule
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(60, 20))
    y = np.where(X[:, 0] > 0, 3 * X[:, 0], -1 - 2 * X[:, 0]) + 0.2 * rng.standard_normal(60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = MoERegressor(n_experts=2, random_state=0).fit(X, y).result_
    mass = fit.model.posterior(X, y).sum(axis=0)
    # before the rule this fit came back certified with min(mass) = 21.99
    assert mass.min() >= 20 + 3 or (fit.degenerate and not fit.success
                                     and not fit.certified)


def test_a_response_far_from_zero_is_data_not_a_constant():
    # y around 1e9 with a spread of about 1.5: float64 resolves it to 7 digits
    truth = MoEParams(beta0=[-8, 0], beta1=[[25], [0]], a=[[-20], [20]], b=[15, -5],
                      var=[0.09, 0.16])
    X, y = GaussianMoE(SoftmaxGate(), truth).sample(2000, rng=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateFitWarning)
        far = fit_em(X, y + 1e9, 2, n_init=2, rng=0, standardize=True)
    near = fit_em(X, y, 2, n_init=2, rng=0, standardize=True, warn=False)
    assert far.certified and near.certified
    # y + 1e9 is y rounded to 1.2e-7: the same fit up to that rounding of the data
    assert far.loglik == pytest.approx(near.loglik, abs=1e-4)
    np.testing.assert_allclose(far.params.b - 1e9, near.params.b, atol=1e-4)


def test_a_time_stamp_covariate_is_centred_not_taken_for_a_constant():
    # seconds since 1970 over 40 s: the column varies by 7e-9 of its size
    truth = MoEParams(beta0=[-8, 0], beta1=[[25], [0]], a=[[-20], [20]], b=[15, -5],
                      var=[0.09, 0.16])
    X, y = GaussianMoE(SoftmaxGate(), truth).sample(2000, rng=5)
    stamp = 1.7e9 + 40.0 * X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        far = fit_em(stamp, y, 2, n_init=2, rng=0, standardize=True)
        near = fit_em(40.0 * X, y, 2, n_init=2, rng=0, standardize=True)
    assert far.certified and near.certified
    # the stamps are the covariate rounded to 2.4e-7 s: the same fit up to that
    assert far.loglik == pytest.approx(near.loglik, abs=1e-3)


@pytest.mark.parametrize("rows", ["constant response", "identical rows"])
def test_constant_response_warns_and_is_degenerate(rows):
    rng = np.random.default_rng(0)
    X = np.ones((300, 1)) if rows == "identical rows" else rng.uniform(size=(300, 1))
    y = np.full(300, 2.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_em(X, y, 2, n_init=2, rng=0)
    messages = [str(w.message) for w in caught if w.category is DegenerateFitWarning]
    assert messages[0].startswith("the response y is constant (2.5 to 12 significant digits)")
    # a variance at the floor, or (identical rows, where EM stops short of it) the
    # constant response itself
    assert ("degenerate variance" in messages[1] or "y is constant" in messages[1])
    assert len(caught) == 2
    assert not fit.success and not fit.certified and fit.degenerate
    # the floor is relative to the data's scale, not 1e-300 (variance 1e-23 and a
    # log-likelihood of +24 per sample, presented as a fit)
    assert fit.var_floor == pytest.approx(1e-6 * (1e-8 * 2.5) ** 2)


def test_default_variance_floor_is_relative_to_the_scale_of_y():
    X, y = _hard_switch(400)
    for unit in (1e-6, 1.0, 1e6):
        fit = fit_em(X, unit * y, 1, warn=False)
        assert fit.var_floor == pytest.approx(1e-6 * np.var(unit * y), rel=1e-12)


def test_two_rows_warn_and_are_not_a_converged_fit():
    X = np.array([[0.1], [0.7]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_em(X, np.array([1.0, 2.0]), 2, init="auto", n_init=2, rng=0)
    assert all(w.category is DegenerateFitWarning for w in caught)
    messages = " | ".join(str(w.message) for w in caught)
    assert "2 samples for 2 experts" in messages and "degenerate variance" in messages
    assert not fit.success


def test_a_degenerate_fit_warns_with_its_reason():
    # three identical points: an expert sits exactly on them (see the test above)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.uniform(size=200), np.full(3, 0.5)])[:, None]
    y = np.concatenate([rng.normal(size=200), np.full(3, 7.0)])
    start = MoEParams([0.0, 0.0], [[0.0], [0.0]], [[0.0], [0.0]], [7.0, 0.0], [1e-3, 1.0])
    with pytest.warns(DegenerateFitWarning, match="degenerate variance: expert"):
        fit_em(X, y, 2, init=start, max_iter=500)


def test_separating_gate_gets_its_own_warning():
    X, y = _hard_switch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_em(X, y, 2, n_init=2, rng=0)
    assert [w.category for w in caught] == [SeparationWarning]
    assert str(caught[0].message).startswith("separating gate")
    assert not fit.certified and fit.success
    # filters on ConvergenceWarning (a not-converged fit) catch it too
    assert issubclass(SeparationWarning, ConvergenceWarning)


def test_a_soft_switch_fits_without_warnings():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(2000, 1))
    first = rng.random(2000) < 1 / (1 + np.exp(-6 * X[:, 0]))
    y = np.where(first, 3 * X[:, 0], -1 - 2 * X[:, 0]) + 0.2 * rng.standard_normal(2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_em(X, y, 2, n_init=2, rng=0)
    assert fit.certified


# ------------------------------------------------------------------ cost and progress
def test_auto_begins_with_the_kmeans_starts_of_the_same_seed(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(1000, rng=4)
    kmeans = fit_em(X, y, 3, init="kmeans", n_init=3, rng=5, warn=False)
    auto = fit_em(X, y, 3, init="auto", n_init=3, rng=5, warn=False)
    assert auto.restart_logliks[:3] == kmeans.restart_logliks
    assert auto.loglik >= kmeans.loglik


@pytest.mark.parametrize("k", [2, 6, 12])
def test_auto_runs_grow_linearly_in_k_not_like_n_init_per_k(k):
    # the old "auto" fitted n_init k-means starts and every split at each of 1..k:
    # sum_j (n_init + j) runs, 108 at k = 12 with n_init = 3; now n_init k-means
    # starts, a greedy chain of 2 runs per k and min(n_init, k - 1) + 1 split starts
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(400, 1))
    y = np.sin(4 * X[:, 0]) + 0.3 * rng.standard_normal(400)
    calls = []
    fit = fit_em(X, y, k, init="auto", n_init=3, rng=0, max_iter=30, warn=False,
                 progress=lambda done, total, label: calls.append((done, total, label)))
    em_runs = 3 + 1 + 2 * (k - 2) + min(3, k - 1) + 1
    final = len(fit.restart_logliks)
    assert final == 3 + min(3, k - 1) + 1
    assert [c[0] for c in calls] == list(range(1, em_runs + final + 1))
    assert all(c[1] == em_runs + final for c in calls)
    assert calls[0][2] == "k-means start 1/3" and calls[-1][2] == f"polish {final}/{final}"


def test_verbose_reports_each_run_and_every_hundred_iterations(paper_truth, capsys):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(500, rng=1)
    # over-specified (k = 3 for 2): EM creeps, and runs to max_iter
    fit_em(X, y, 3, init="random", n_init=2, rng=0, tol=0.0, max_iter=250, verbose=2,
           warn=False)
    lines = capsys.readouterr().err.splitlines()
    runs = [line for line in lines if "] random start" in line]
    assert len(runs) == 2 and runs[0].startswith("gmoe fit_em (k=3): [1/4] random start 1/2")
    assert "after 250 iterations (max_iter)" in runs[0]
    assert sum("random start 1/2: iteration" in line for line in lines) == 2  # 100, 200
    assert lines[-1].startswith("gmoe fit_em (k=3): [4/4] polish 2/2")
    fit_em(X, y, 2, n_init=1, rng=0, warn=False)
    assert capsys.readouterr().err == ""


def test_screened_restarts_run_only_the_best_short_run_on(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(3000, rng=5)
    full = fit_em(X, y, 3, n_init=4, rng=1, warn=False)
    screened = fit_em(X, y, 3, n_init=4, rng=1, screen_iter=5, warn=False)
    # the chosen run went on from its short run: its trace never decreases and
    # starts with the short run's
    trace = screened.loglik_trace
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    assert screened.n_iter == trace.size - 1 > 5
    # the other restarts stopped after 5 iterations, below the chosen one
    others = np.delete(screened.restart_logliks, screened.best_restart)
    assert np.all(others <= screened.loglik)
    assert screened.certified is not None and screened.polished
    # same starts as the full restarts: the screened fit is one of them (here the best)
    assert screened.loglik == pytest.approx(max(full.restart_logliks), abs=1e-6)
    with pytest.raises(ValueError, match="screen_iter"):
        fit_em(X, y, 2, n_init=2, screen_iter=0)


def test_screening_leaves_a_single_start_and_the_split_starts_alone(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(1500, rng=6)
    one = fit_em(X, y, 2, rng=3, warn=False)
    assert fit_em(X, y, 2, rng=3, screen_iter=3, warn=False).loglik == one.loglik
    exact = fit_em(X, y, 2, n_init=3, rng=0, warn=False)
    auto = fit_em(X, y, 3, init="auto", n_init=3, rng=0, screen_iter=3, warn=False)
    assert auto.loglik >= exact.loglik - 1e-9 * abs(exact.loglik)


def test_summary_of_a_weighted_fit_counts_the_weights():
    X, y, weight = _weighted_data()
    fit = fit_em(X, y, 2, rng=0, sample_weight=weight, warn=False)
    text = fit.summary()
    assert f"sum of the weights of {np.count_nonzero(weight)} rows" in text
    assert f"({fit.loglik / weight.sum():.6g} per sample)" in text
