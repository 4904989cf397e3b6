"""Certified fits: the Newton polish after EM."""

import numpy as np
import pytest
import scipy.optimize

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, TopKGate, fit_em
from gmoe._design import Design
from gmoe.likelihood import FreeLikelihood
from gmoe.polish import polish

PAPER = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                  b=[15.0, -5.0], var=[0.3**2, 0.4**2])


@pytest.fixture(scope="module")
def over_data():
    """The reference truth at n = 3000 (fitted with k = 3 below: over-specified)."""
    return GaussianMoE(SoftmaxGate(), PAPER).sample(3000, rng=7)


def test_polished_fit_has_zero_score_and_never_loses_likelihood(over_data, paper_truth):
    X, y = over_data
    fit = fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=2, var_floor=1e-3)
    assert fit.polished and fit.certified and not fit.degenerate
    assert fit.grad_norm <= 1e-8
    assert fit.loglik >= fit.em_loglik
    # the score really is zero there (independent of the polish's own bookkeeping)
    like = FreeLikelihood(Design(X, y), fit.gate, fit.params)
    assert np.max(np.abs(like.score(like.pack(fit.params)))) / len(y) <= 1e-8


def test_no_optimiser_from_a_certified_fit_gains_more_than_1e_3(over_data, paper_truth):
    X, y = over_data
    floor = 1e-3
    fit = fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=3, var_floor=floor)
    assert fit.certified
    like = FreeLikelihood(Design(X, y), fit.gate, fit.params)
    theta = like.pack(fit.params)
    bounds = [(None, None)] * like.m
    for j in range(like.m)[like.logvar]:
        bounds[j] = (np.log(floor), None)
    res = scipy.optimize.minimize(lambda t: -like.loglik(t), theta,
                                  jac=lambda t: -like.score(t), method="L-BFGS-B",
                                  bounds=bounds, options={"maxiter": 2000, "gtol": 1e-12,
                                                          "ftol": 1e-15})
    assert -res.fun - fit.loglik <= 1e-3


def test_starts_that_em_leaves_apart_reach_one_maximum(over_data, paper_truth):
    # EM stopped early from two starts ends at different points; the polish takes both
    # to the same certified maximum
    X, y = over_data
    fits = [fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=11, init_scale=c,
                   max_iter=30, var_floor=1e-3, warn=False) for c in (1.0, 0.1)]
    assert all(f.certified for f in fits)
    ll = [f.loglik for f in fits]
    if abs(ll[0] - ll[1]) < 1e-6:  # same maximum: same parameters up to relabelling
        a = sorted(fits[0].params.b)
        b = sorted(fits[1].params.b)
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert all(f.polish_gain >= 0 for f in fits)


def test_variance_at_the_floor_is_degenerate_not_certified():
    # a few identical points attract a collapsing expert: at the floor, reported
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (300, 1))
    y = 2 * X[:, 0] + 0.5 * rng.standard_normal(300)
    X[:5], y[:5] = 0.5, 3.0
    fit = fit_em(X, y, 2, init="random", rng=1, n_init=1, var_floor=0.05, warn=False)
    result = polish(Design(X, y), fit.gate,
                    fit.params.replace(var=[0.05, fit.params.var[1]]), 0.05)
    if result.degenerate:
        assert not result.certified and "floor" in result.message
    assert np.all(result.params.var >= 0.05 * (1 - 1e-12))


def test_polish_respects_the_variance_floor(over_data, paper_truth):
    X, y = over_data
    floor = 0.05
    fit = fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=4, var_floor=floor,
                 warn=False)
    assert np.all(fit.params.var >= floor * (1 - 1e-12))
    assert fit.degenerate == bool(np.any(fit.params.var <= floor * (1 + 1e-8)))
    if fit.degenerate:
        assert not fit.certified and fit.reason.startswith("degenerate variance")


def test_unpolished_fit_reports_nothing_certified(over_data, paper_truth):
    X, y = over_data
    fit = fit_em(X, y, 2, init="near_truth", truth=paper_truth, rng=0, polish=False)
    assert not fit.polished and not fit.certified and np.isnan(fit.grad_norm)
    assert fit.loglik == fit.em_loglik


def test_topk_polish_holds_the_selection_and_never_loses():
    truth = MoEParams([0.2, -0.1, 0.0], [[1.5, 0.0], [-1.0, 1.0], [0.0, 0.0]],
                      [[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], [0.0, 1.0, -1.0],
                      [0.1, 0.1, 0.1])
    gate = TopKGate(2)
    X, y = GaussianMoE(gate, truth, {"name": "normal", "d": 2}).sample(2000, rng=1)
    fit = fit_em(X, y, 3, gate=gate, init="near_truth", truth=truth, rng=0, warn=False)
    assert fit.loglik >= fit.em_loglik
    if not fit.certified:
        assert "selection boundary" in fit.polish_message
    assert np.isnan(fit.cov_params(warn=False)).all()


def test_init_scale_published_profile(paper_truth):
    from gmoe.initialization import near_truth_params

    n = 10_000
    draws = [near_truth_params(paper_truth, 2, n, np.random.default_rng(s), "published")
             for s in range(400)]
    shrink = n ** -0.083
    beta1 = np.array([d.beta1[:, 0] for d in draws])
    b = np.array([d.b for d in draws])
    var = np.array([d.var for d in draws])
    # experts assigned at random: compare the spread around each true expert's value
    gate_sd = np.std(np.abs(beta1 - 12.5) - 12.5)  # |beta1 - 12.5| is 12.5 + noise
    assert gate_sd == pytest.approx(0.005 * shrink, rel=0.15)
    b_sd = np.std(np.abs(b - 5.0) - 10.0)
    assert b_sd == pytest.approx(0.05 * shrink, rel=0.15)
    excess = np.sort(var, axis=1) - np.sort(paper_truth.var)
    assert np.all(excess >= 0)
    assert np.mean(excess) == pytest.approx(0.005 * n ** -0.25 * np.sqrt(2 / np.pi), rel=0.15)
    with pytest.raises(ValueError, match="init_scale"):
        near_truth_params(paper_truth, 2, n, np.random.default_rng(0), "paper")


def test_a_sigmoid_score_saturated_at_one_is_never_certified():
    # a normalised sigmoid whose first score is 1 at every x: its weights stay in
    # (0, 1) but its gate parameters can grow without changing the likelihood (a flat
    # ridge, not a maximum), so the score vanishes without a finite maximum
    from gmoe import GaussianMoE, MoEParams
    from gmoe.gates import SigmoidGate

    gate = SigmoidGate()
    truth = MoEParams([1.0, 0.5], [[3.0], [-2.0]], [[1.0], [-1.0]], [1.0, -1.0], [0.09, 0.16])
    X, y = GaussianMoE(gate, truth, x_law={"name": "uniform", "low": -1, "high": 1}
                       ).sample(700, rng=1)
    plateau = truth.replace(beta0=[2000.0, 0.5], beta1=[[1500.0], [-2.0]])
    s = gate.saturation(gate.free_state(gate.free_vector(plateau), Design(X, y), 2),
                        Design(X, y))
    assert s[0] < 1e-100 < s[1]
    result = polish(Design(X, y), gate, plateau, var_floor=1e-4)
    assert not result.certified and result.separated
    assert "expert(s) 0" in result.message


def _laplace_on_softmax_data():
    """Softmax-truth data (d = 2) that a Laplace gate fits best in its softmax limit."""
    from gmoe.gates import make_gate

    truth = MoEParams([0.3, 0.0], [[2.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [-1.0, -1.0]],
                      [1.0, -1.0], [0.09, 0.16])
    rng = np.random.default_rng(1001)
    X = rng.uniform(-1, 1, (1000, 2))
    return X, GaussianMoE(make_gate("softmax"), truth).sample_y(X, rng)


#: a point the polish reached on its way out along the Laplace-to-softmax ridge: the
#: second centre about 2500 away, the first intercept compensating
_RIDGE_POINT = MoEParams(
    beta0=[-2458.8717325572406, 0.0],
    beta1=[[3.3502924530726190, 1.8157829828406518],
           [-2189.3367569414791, -1128.4667324220179]],
    a=[[1.0540521149525228, 1.0218071586734752], [-0.9381485828631166, -0.9970660491175262]],
    b=[0.9804068288968036, -0.9833561765908491],
    var=[0.10239456148408364, 0.15839476497093957])


def test_a_vanishing_score_on_the_way_to_the_edge_of_the_family_is_not_certified():
    # a Laplace centre running off to infinity turns the gate into a softmax: the
    # likelihood rises towards that limit and the score falls below gtol on the way,
    # but no finite maximum is there. The score test alone would certify this point.
    from gmoe.gates import LaplaceGate

    X, y = _laplace_on_softmax_data()
    design, gate = Design(X, y), LaplaceGate()
    result = polish(design, gate, _RIDGE_POINT, var_floor=0.01, max_iter=3)
    assert result.grad_norm <= 1e-8
    assert not result.certified and not result.degenerate
    assert result.newton_step > 1
    assert "edge of the gate family" in result.message
    # independent of the polish's verdict: the likelihood keeps rising far out along
    # the Newton direction (at a maximum it would fall beyond twice the step)
    like = FreeLikelihood(design, gate, result.params)
    theta = like.pack(result.params)
    w, V = np.linalg.eigh(like.information(theta))
    delta = V @ ((V.T @ like.score(theta)) / np.maximum(np.abs(w), 1e-12 * np.abs(w).max()))
    values = [like.loglik(theta + s * delta) for s in (0.0, 2.0, 8.0, 32.0)]
    assert np.all(np.diff(values) > 0)


def test_a_certified_fit_has_a_short_newton_step_and_keeps_its_information(over_data,
                                                                          paper_truth):
    X, y = over_data
    fit = fit_em(X, y, 3, init="near_truth", truth=paper_truth, rng=2, var_floor=1e-3)
    assert fit.certified and fit.newton_step <= 1e-4
    design = Design(X, y)
    res = polish(design, SoftmaxGate(), fit.params, var_floor=1e-3)
    assert res.certified and res.newton_step <= 1e-4 and res.information is not None
    # the matrix the step test used is the information at the returned point
    like = FreeLikelihood(design, SoftmaxGate(), res.params)
    np.testing.assert_allclose(res.information, like.information(res.theta),
                               rtol=1e-12, atol=1e-9)
    # ... and a step along the Newton direction scaled well past 1 loses likelihood:
    # a maximum, not a ridge
    w, V = np.linalg.eigh(res.information)
    delta = V @ ((V.T @ like.score(res.theta)) / np.abs(w))
    direction = delta / np.max(np.abs(delta))
    assert like.loglik(res.theta + 1e-2 * direction) < res.loglik


def test_a_flat_ridge_is_certified_and_says_so():
    # sigmoid-exact, near-truth start, n = 300, replication 7: both normalised-sigmoid
    # scores near their limits (gate parameters about 7000), where the likelihood is
    # flat to rounding along a direction the gate parameters move in: the Newton step
    # is long but worth nothing, a maximum that is not unique
    from gmoe.config import expand, read_config
    from gmoe.gates import SigmoidGate
    from gmoe.tasks import task_seed

    cfg = expand(read_config("sigmoid-exact"))[0]
    data_seed, _ = task_seed(cfg.seed, 0, 7).spawn(2)
    X, y = GaussianMoE(cfg.truth_gate, cfg.truth_params, cfg.x_law).sample(
        300, rng=np.random.default_rng(data_seed))
    plateau = MoEParams(
        beta0=[-5452.538064848749, -5452.48263516518],
        beta1=[[1134.2861451345614, 7048.987952683738],
               [1135.6735206590204, 7047.814720808369]],
        a=[[-0.9911574888834095, -0.9551349216848585], [0.9038835972611514, 0.9671468444709983]],
        b=[-0.9828468491463717, 1.0723272622699573],
        var=[0.18514439704130392, 0.1176481474681566])
    design, gate = Design(X, y), SigmoidGate()
    # judged where it stands (no steps: along a flat direction the steps change the
    # value by rounding only, so their outcome is rounding too)
    result = polish(design, gate, plateau, var_floor=cfg.fit_kwargs()["var_floor"], max_iter=0)
    assert result.grad_norm <= 1e-12
    assert result.certified and result.newton_step > 1e-4
    assert "flat ridge" in result.message
    # independent of the polish: along its Newton direction the likelihood moves by no
    # more than rounding, over a hundred times the step
    like = FreeLikelihood(design, gate, result.params)
    theta = like.pack(result.params)
    w, V = np.linalg.eigh(like.information(theta))
    delta = V @ ((V.T @ like.score(theta)) / np.maximum(np.abs(w), 1e-12 * np.abs(w).max()))
    values = np.array([like.loglik(theta + s * delta) for s in (1.0, 10.0, 100.0)])
    assert np.max(np.abs(values - result.loglik)) <= 1e-10 * abs(result.loglik)


def test_the_step_test_does_not_depend_on_the_units_of_y():
    # the same ridge point with y (and the experts) measured in units 1000 times
    # larger or smaller: the verdict and the step are the same (an eigenvalue floor
    # relative to the experts' curvature, about 1 / sigma^2, would certify one of them)
    from gmoe.gates import LaplaceGate

    X, y = _laplace_on_softmax_data()
    p = _RIDGE_POINT
    steps = []
    for s in (1e-3, 1.0, 1e3):
        q = p.replace(a=p.a * s, b=p.b * s, var=p.var * s**2)
        result = polish(Design(X, y * s), LaplaceGate(), q, var_floor=0.01 * s**2,
                        max_iter=0, gtol=1e-6)
        assert not result.certified and "edge of the gate family" in result.message
        steps.append(result.newton_step)
    assert steps[0] > 1 and np.ptp(steps) <= 1e-6 * steps[1]


def test_a_stationary_saddle_is_not_certified(over_data, paper_truth):
    # a certified two-expert fit with its second expert split into two identical
    # copies (gate weight halved each): the same density, a zero score, but the
    # likelihood curves upwards in some directions, so not a maximum
    X, y = over_data
    fit = fit_em(X, y, 2, init="near_truth", truth=paper_truth, rng=2, var_floor=1e-3)
    assert fit.certified
    p = fit.params
    split = MoEParams(beta0=[p.beta0[0], p.beta0[1] - np.log(2), p.beta0[1] - np.log(2)],
                      beta1=[p.beta1[0], p.beta1[1], p.beta1[1]],
                      a=[p.a[0], p.a[1], p.a[1]], b=[p.b[0], p.b[1], p.b[1]],
                      var=[p.var[0], p.var[1], p.var[1]])
    design = Design(X, y)
    result = polish(design, SoftmaxGate(), split, var_floor=1e-3, max_iter=0)
    assert result.grad_norm <= 1e-8
    assert not result.certified and result.message.startswith("saddle point")
    # independent of the polish: a finite difference along the information's most
    # negative direction raises the likelihood on both sides
    like = FreeLikelihood(design, SoftmaxGate(), result.params)
    theta = like.pack(result.params)
    w, V = np.linalg.eigh(like.information(theta))
    v = V[:, 0] * 1e-3
    assert w[0] < 0
    assert like.loglik(theta + v) > result.loglik and like.loglik(theta - v) > result.loglik
