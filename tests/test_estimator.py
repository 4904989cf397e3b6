import numpy as np
import pytest

from gmoe import GaussianMoE, MoERegressor, SoftmaxGate


@pytest.fixture
def data(paper_truth):
    model = GaussianMoE(SoftmaxGate(), paper_truth)
    return model, *model.sample(3000, rng=11)


def test_fit_sets_underscored_attributes_and_leaves_constructor_args(data):
    model, X, y = data
    reg = MoERegressor(n_experts=2, n_init=3, random_state=0)
    before = reg.get_params()
    assert reg.fit(X, y) is reg
    assert reg.get_params() == before
    for name in ("params_", "loglik_", "n_iter_", "converged_", "loglik_trace_", "model_"):
        assert hasattr(reg, name)
    assert reg.converged_
    assert reg.loglik_ == pytest.approx(reg.loglik_trace_[-1])


def test_score_is_mean_log_likelihood_and_beats_truth_in_sample(data):
    model, X, y = data
    reg = MoERegressor(n_experts=2, n_init=3, random_state=0).fit(X, y)
    assert reg.score(X, y) == pytest.approx(reg.loglik_ / len(y), rel=1e-10)
    assert reg.score(X, y) >= model.log_likelihood(X, y) / len(y) - 1e-3


def test_predict_is_close_to_true_conditional_mean(data):
    model, X, y = data
    reg = MoERegressor(n_experts=2, n_init=3, random_state=0).fit(X, y)
    grid = np.linspace(0, 1, 101)[:, None]
    assert np.median(np.abs(reg.predict(grid) - model.predict(grid))) < 0.1


def test_bic_prefers_the_true_number_of_experts(data):
    _, X, y = data
    bics = [MoERegressor(n_experts=k, n_init=3, random_state=0).fit(X, y).bic(X, y)
            for k in (1, 2)]
    assert bics[1] < bics[0]


def test_same_random_state_gives_identical_fits(data):
    _, X, y = data
    a = MoERegressor(n_experts=2, random_state=5, init="random", n_init=2).fit(X, y)
    b = MoERegressor(n_experts=2, random_state=5, init="random", n_init=2).fit(X, y)
    assert a.params_ == b.params_


def test_posterior_and_sample_shapes(data):
    _, X, y = data
    reg = MoERegressor(n_experts=2, n_init=2, random_state=0).fit(X, y)
    assert reg.posterior(X[:5], y[:5]).shape == (5, 2)
    Xs, ys = reg.sample(10, rng=0)
    assert Xs.shape == (10, 1) and ys.shape == (10,)
    assert reg.predict_experts(X[:4]).shape == (4,)
    assert "log-likelihood" in reg.summary()


def test_unfitted_and_bad_parameters_raise():
    with pytest.raises(ValueError, match="not fitted"):
        MoERegressor().predict(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="invalid parameter 'k'"):
        MoERegressor().set_params(k=3)
    with pytest.raises(ValueError, match="n_experts must be an integer >= 1"):
        MoERegressor(n_experts=0).fit(np.zeros((5, 1)), np.zeros(5))


@pytest.mark.parametrize("seed", range(6))
def test_default_restarts_never_let_more_experts_lose_likelihood(paper_truth, seed):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(4000, rng=seed)
    logliks = [MoERegressor(n_experts=k, random_state=seed).fit(X, y).loglik_
               for k in (1, 2, 3)]
    assert logliks[1] >= logliks[0] - 1e-9 * abs(logliks[0])
    assert logliks[2] >= logliks[1] - 1e-9 * abs(logliks[1])
