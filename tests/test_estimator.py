import warnings

import numpy as np
import pytest

from gmoe import GaussianMoE, MoEParams, MoERegressor, SoftmaxGate, Uniform, fit_em
from gmoe.exceptions import DegenerateFitWarning


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


def test_log_likelihood_is_the_fits_and_beats_truth_in_sample(data):
    model, X, y = data
    reg = MoERegressor(n_experts=2, n_init=3, random_state=0).fit(X, y)
    assert reg.log_likelihood(X, y) == pytest.approx(reg.loglik_, rel=1e-10)
    assert reg.log_likelihood(X, y) >= model.log_likelihood(X, y) - 1e-3 * len(y)


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


def test_default_restarts_are_screened_from_kmeans_on_a_sample(data):
    model, X, y = data
    reg = MoERegressor(n_experts=2, random_state=0)
    assert reg.get_params()["screen_tol"] == 1e-4
    assert reg.get_params()["kmeans_sample"] == 2000
    reg.fit(X, y)
    full = MoERegressor(n_experts=2, random_state=0, screen_tol=None,
                        kmeans_sample=None).fit(X, y)
    # an exact fit: the screened restarts from k-means on 2000 of the 3000 rows reach
    # the maximum of full restarts
    assert reg.certified_ and full.certified_
    assert reg.loglik_ == pytest.approx(full.loglik_, abs=1e-6)
    # only the best k-means start was run on: it met tol, the others the looser rule
    trace = reg.loglik_trace_
    assert abs(trace[-1] - trace[-2]) <= 1e-6 * abs(trace[-1])
    # the same starts (k-means on the same sample) run to the end: every screened
    # restart ends at or below its full run, and the losers visibly below (short runs)
    same_starts = MoERegressor(n_experts=2, random_state=0, screen_tol=None).fit(X, y)
    short = np.array(reg.result_.restart_logliks)
    long = np.array(same_starts.result_.restart_logliks)
    assert short.shape == long.shape
    assert np.all(short <= long + 1e-9)
    assert np.sum(short < long - 1e-6) >= 2
    assert reg.loglik_ == pytest.approx(same_starts.loglik_, abs=1e-9)


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
    with pytest.raises(ValueError, match="Invalid parameter 'k'"):
        MoERegressor().set_params(k=3)
    with pytest.raises(ValueError, match="n_experts must be an integer >= 1"):
        MoERegressor(n_experts=0).fit(np.zeros((5, 1)), np.zeros(5))


@pytest.mark.parametrize("seed", range(6))
def test_split_restarts_never_let_more_experts_lose_likelihood(paper_truth, seed):
    # by construction for init="split" (every expert of the smaller fit split, and its
    # exact embedding); init="auto" guarantees it against its greedy smaller fit only
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(4000, rng=seed)
    logliks = [MoERegressor(n_experts=k, init="split" if k > 1 else "kmeans",
                            random_state=seed).fit(X, y).loglik_ for k in (1, 2, 3)]
    assert logliks[1] >= logliks[0] - 1e-9 * abs(logliks[0])
    assert logliks[2] >= logliks[1] - 1e-9 * abs(logliks[1])


# ------------------------------------------------------------------ scale-free fits
@pytest.fixture(scope="module")
def two_covariates():
    truth = MoEParams(beta0=[0.0, 0.0], beta1=[[6.0, -2.0], [0.0, 0.0]],
                      a=[[3.0, 1.0], [-2.0, 0.5]], b=[0.0, -1.0], var=[0.04, 0.09])
    return GaussianMoE(SoftmaxGate(), truth, x_law=Uniform(-1, 1, d=2)).sample(1500, rng=0)


@pytest.mark.parametrize("unit", [1e-6, 1e6])
def test_rescaling_a_covariate_changes_only_its_own_parameters(two_covariates, unit):
    X, y = two_covariates
    ref = MoERegressor(n_experts=2, random_state=0).fit(X, y)
    Xu = X * [unit, 1.0]
    reg = MoERegressor(n_experts=2, random_state=0).fit(Xu, y)
    assert reg.certified_ and ref.certified_
    assert reg.loglik_ == pytest.approx(ref.loglik_, rel=1e-8)
    p, q = reg.params_, ref.params_
    assert np.allclose(p.beta1 * [unit, 1.0], q.beta1, rtol=1e-6, atol=1e-9)
    assert np.allclose(p.a * [unit, 1.0], q.a, rtol=1e-6, atol=1e-9)
    for name in ("beta0", "b", "var"):
        assert np.allclose(getattr(p, name), getattr(q, name), rtol=1e-6, atol=1e-9)
    # standard errors follow their parameters
    assert np.allclose(reg.bse.a * [unit, 1.0], ref.bse.a, rtol=1e-5)
    assert np.allclose(reg.bse.beta1[:-1] * [unit, 1.0], ref.bse.beta1[:-1], rtol=1e-5)
    assert np.allclose(reg.predict(Xu), ref.predict(X), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("unit", [1e-6, 1e6])
def test_rescaling_the_response_changes_the_log_likelihood_by_the_jacobian(two_covariates,
                                                                           unit):
    X, y = two_covariates
    ref = MoERegressor(n_experts=2, random_state=0).fit(X, y)
    reg = MoERegressor(n_experts=2, random_state=0).fit(X, unit * y)
    assert reg.loglik_ + len(y) * np.log(unit) == pytest.approx(ref.loglik_, rel=1e-8)
    assert np.allclose(reg.params_.var, unit**2 * ref.params_.var, rtol=1e-6)
    assert np.allclose(reg.params_.b, unit * ref.params_.b, rtol=1e-6, atol=1e-9 * unit)
    assert reg.result_.var_floor == pytest.approx(unit**2 * ref.result_.var_floor)


def test_standardized_fit_em_keeps_near_truth_and_explicit_starts(two_covariates):
    X, y = two_covariates
    truth = MoEParams(beta0=[0.0, 0.0], beta1=[[6.0, -2.0], [0.0, 0.0]],
                      a=[[3.0, 1.0], [-2.0, 0.5]], b=[0.0, -1.0], var=[0.04, 0.09])
    for init in ("near_truth", truth):
        plain = fit_em(X, y, 2, init=init, truth=truth, rng=1)
        scaled = fit_em(X * 1e4, y, 2, init=init if init == "near_truth" else
                        truth.replace(beta1=truth.beta1 / 1e4, a=truth.a / 1e4),
                        truth=truth.replace(beta1=truth.beta1 / 1e4, a=truth.a / 1e4),
                        rng=1, standardize=True)
        assert scaled.standardized and scaled.certified
        assert scaled.loglik == pytest.approx(plain.loglik, rel=1e-9)
        assert np.allclose(scaled.params.a * 1e4, plain.params.a, rtol=1e-6)


# ------------------------------------------------------------------ honest failures
def test_failed_or_degenerate_fit_is_not_converged_and_warns():
    X = np.array([[0.1], [0.7]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = MoERegressor().fit(X, np.array([1.0, 2.0]))
    assert not reg.converged_ and not reg.result_.success
    assert caught and all(issubclass(w.category, DegenerateFitWarning) for w in caught)
    # the warnings point at the caller's line, not at gmoe's code
    assert all(w.filename == __file__ for w in caught)


def test_more_experts_than_samples_is_a_value_error():
    with pytest.raises(ValueError, match="n_experts = 3 is more than the 2 samples"):
        MoERegressor(n_experts=3).fit(np.array([[0.1], [0.7]]), np.array([1.0, 2.0]))
