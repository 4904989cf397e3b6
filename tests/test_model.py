import numpy as np
import pytest
from scipy import stats

from gmoe import GaussianMoE, Grid, MoEParams, Normal, SoftmaxGate, Uniform

from .conftest import random_params


def brute_force_loglik(params: MoEParams, X, y) -> float:
    """Double loop with scipy.stats.norm: the definition, term by term."""
    total = 0.0
    for n in range(X.shape[0]):
        logits = [params.beta1[i] @ X[n] + params.beta0[i] for i in range(params.k)]
        top = max(logits)
        weights = [np.exp(v - top) for v in logits]
        weights = [w / sum(weights) for w in weights]
        dens = sum(weights[i] * stats.norm.pdf(y[n], params.a[i] @ X[n] + params.b[i],
                                               np.sqrt(params.var[i]))
                   for i in range(params.k))
        total += np.log(dens)
    return total


@pytest.mark.parametrize("k,d,seed", [(2, 1, 0), (3, 2, 1), (4, 3, 2)])
def test_log_likelihood_matches_brute_force_double_loop(k, d, seed):
    rng = np.random.default_rng(seed)
    params = random_params(rng, k, d)
    model = GaussianMoE(SoftmaxGate(), params, x_law=Normal(0, 1, d))
    X, y = model.sample(60, rng=rng)
    expected = brute_force_loglik(params, X, y)
    assert model.log_likelihood(X, y) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(model.score_samples(X, y).sum(), expected, rtol=1e-10)


def test_probability_integral_transform_is_uniform(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    X, y = model.sample(20000, rng=42)
    u = model.cdf(X, y)
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # and a wrong model is detected by the same test: it can fail
    wrong = GaussianMoE(SoftmaxGate(), paper_truth.replace(b=[15.0, -4.8]))
    assert stats.kstest(wrong.cdf(X, y), "uniform").pvalue < 1e-6


def test_expert_shares_per_x_bin_match_gate_weights():
    # experts far apart relative to their sd, so each y reveals its expert
    params = MoEParams([0.5, -0.3, 0.0], [[3.0], [-2.0], [0.0]], [[0.0], [0.0], [0.0]],
                       [-20.0, 0.0, 20.0], [1.0, 1.0, 1.0])
    model = GaussianMoE(SoftmaxGate(), params, x_law=Uniform(-1, 1, 1))
    X, y = model.sample(60000, rng=3)
    label = np.digitize(y, [-10.0, 10.0])
    weights = model.gate.weights(X, params)
    bins = np.digitize(X[:, 0], np.linspace(-1, 1, 9)[1:-1])
    for bin_id in range(8):
        rows = bins == bin_id
        expected = weights[rows].mean(axis=0)
        observed = np.bincount(label[rows], minlength=3) / rows.sum()
        se = np.sqrt(expected * (1 - expected) / rows.sum())
        assert np.all(np.abs(observed - expected) < 5 * se + 1e-12), (bin_id, observed, expected)


def test_posterior_rows_sum_to_one_and_match_bayes_rule(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    X, y = model.sample(200, rng=1)
    post = model.posterior(X, y)
    w = model.gate.weights(X, paper_truth)
    dens = stats.norm.pdf(y[:, None], model.expert_means(X), paper_truth.sd[None, :])
    np.testing.assert_allclose(post, w * dens / (w * dens).sum(axis=1, keepdims=True),
                               atol=1e-12)


def test_predict_is_weighted_expert_mean(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    X = np.linspace(0, 1, 11)[:, None]
    w = model.gate.weights(X, paper_truth)
    expected = (w * (X @ paper_truth.a.T + paper_truth.b)).sum(axis=1)
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12)


def test_sample_is_reproducible_and_accepts_given_x(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    X1, y1 = model.sample(100, rng=5)
    X2, y2 = model.sample(100, rng=5)
    np.testing.assert_array_equal(y1, y2)
    Xg, _ = model.sample(11, rng=0, x=Grid())
    np.testing.assert_allclose(Xg[:, 0], np.linspace(0, 1, 11))
    Xf, _ = model.sample(3, rng=0, x=np.ones((3, 1)))
    assert np.all(Xf == 1)


def test_far_tail_observation_gives_finite_log_likelihood(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    ll = model.score_samples(np.array([[0.5]]), np.array([1e4]))
    assert np.isfinite(ll).all() and ll[0] < -1e8


@pytest.mark.parametrize("X,y,match", [
    (np.zeros((5, 1)), np.zeros(4), "different numbers of samples"),
    (np.array([[np.nan]] * 3), np.zeros(3), "X contains NaN or inf"),
    (np.zeros((3, 1)), np.array([0, np.inf, 0]), "y contains NaN or inf"),
    (np.zeros((3, 2)), np.zeros(3), "columns but the model has d = 1"),
])
def test_bad_inputs_raise_naming_the_problem(paper_truth, X, y, match):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    with pytest.raises(ValueError, match=match):
        model.log_likelihood(X, y)


def test_x_law_dimension_must_match(paper_truth):
    with pytest.raises(ValueError, match="x_law has d = 2"):
        GaussianMoE(SoftmaxGate(), paper_truth, x_law=Uniform(0, 1, 2))


def test_unknown_gate_name_is_rejected(paper_truth):
    with pytest.raises(ValueError, match="unknown gate 'sofmax'"):
        GaussianMoE("sofmax", paper_truth)
