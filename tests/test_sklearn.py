"""MoERegressor is a scikit-learn regressor: the estimator checks, pipelines,
cross-validation and grid searches."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from gmoe import GaussianMoE, MoEParams, MoERegressor, SoftmaxGate, Uniform


def _expected_failed_checks(estimator):
    return {
        # EM from random starts: k-means++ seeding draws rows, so a row repeated
        # twice and a row of weight 2 lead to other starts and, on the checks' 15
        # samples, to other local maxima. Weighted EM itself is exact: integer
        # weights and repeated rows give the same fit from the same start
        # (tests/test_em.py::test_integer_sample_weights_fit_as_repeated_rows,
        # and test_integer_sample_weights_are_repeated_rows below).
        "check_sample_weight_equivalence_on_dense_data":
            "random starts draw rows: repeated rows and weights start differently",
    }


# small n_init and max_iter keep the ~60 checks fast; every check runs warnings and all
@parametrize_with_checks([MoERegressor(n_experts=2, n_init=1, max_iter=50, random_state=0)],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # degenerate fits on tiny data
        check(estimator)


@pytest.fixture(scope="module")
def soft_switch():
    """Two experts behind a soft gate (finite gate slope), covariate in units of 1e3."""
    truth = MoEParams(beta0=[0.0, 0.0], beta1=[[6.0], [0.0]], a=[[3.0], [-2.0]],
                      b=[0.0, -1.0], var=[0.04, 0.04])
    X, y = GaussianMoE(SoftmaxGate(), truth, x_law=Uniform(-1, 1, d=1)).sample(600, rng=0)
    return 1e3 * X, y


def test_pipeline_with_a_scaler_predicts(soft_switch):
    X, y = soft_switch
    pipe = make_pipeline(StandardScaler(), MoERegressor(n_experts=2, n_init=2,
                                                        random_state=0)).fit(X, y)
    assert pipe.predict(X).shape == (len(y),)
    assert pipe.score(X, y) > 0.7


def test_cross_val_score_gives_finite_r2(soft_switch):
    X, y = soft_switch
    scores = cross_val_score(MoERegressor(n_experts=2, n_init=2, random_state=0), X, y,
                             cv=KFold(3, shuffle=True, random_state=0))
    assert np.all(np.isfinite(scores)) and np.all(scores > 0.7)


def test_grid_search_over_n_experts_prefers_two_to_one(soft_switch):
    X, y = soft_switch
    search = GridSearchCV(MoERegressor(n_init=2, random_state=0), {"n_experts": [1, 2]},
                          cv=KFold(3, shuffle=True, random_state=0)).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert search.best_params_ == {"n_experts": 2} and scores[1] > scores[0] + 0.1


def test_unfitted_estimator_raises_not_fitted_error():
    with pytest.raises(NotFittedError):
        MoERegressor().predict(np.zeros((2, 1)))
    with pytest.raises(NotFittedError):
        MoERegressor().log_likelihood(np.zeros((2, 1)), np.zeros(2))


def test_feature_names_are_kept_and_swapped_columns_refused(soft_switch):
    X, y = soft_switch
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": X[:, 0], "noise": rng.normal(size=len(y))})
    reg = MoERegressor(n_experts=2, n_init=1, random_state=0).fit(frame, y)
    assert list(reg.feature_names_in_) == ["x", "noise"] and reg.n_features_in_ == 2
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        assert np.allclose(reg.predict(frame), reg.predict(frame.to_numpy()))
    with pytest.raises(ValueError, match="same order"):
        reg.predict(frame[["noise", "x"]])


def test_score_is_r2_and_the_likelihood_has_its_own_methods(soft_switch):
    X, y = soft_switch
    reg = MoERegressor(n_experts=2, n_init=1, random_state=0).fit(X, y)
    pred = reg.predict(X)
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert reg.score(X, y) == pytest.approx(r2)
    assert reg.log_likelihood(X, y) == pytest.approx(reg.loglik_, rel=1e-10)
    assert reg.log_likelihood_samples(X, y).shape == (len(y),)
    assert not hasattr(reg, "score_samples")  # scikit-learn's score_samples(X) takes X only


def test_integer_sample_weights_are_repeated_rows(soft_switch):
    X, y = soft_switch
    weight = np.random.default_rng(2).integers(0, 3, size=len(y))
    start = MoERegressor(n_experts=2, n_init=1, random_state=0).fit(X, y).params_
    weighted = MoERegressor(n_experts=2, init=start).fit(X, y, sample_weight=weight)
    repeated = MoERegressor(n_experts=2, init=start).fit(np.repeat(X, weight, axis=0),
                                                         np.repeat(y, weight))
    assert weighted.loglik_ == pytest.approx(repeated.loglik_, rel=1e-9)
    assert np.allclose(weighted.predict(X), repeated.predict(X), atol=1e-7)
    assert weighted.log_likelihood(X, y, sample_weight=weight) == pytest.approx(
        weighted.loglik_, rel=1e-10)
    Xr, yr = np.repeat(X, weight, axis=0), np.repeat(y, weight)
    assert weighted.bic(X, y, sample_weight=weight) == pytest.approx(
        weighted.bic(Xr, yr), rel=1e-12)
    assert weighted.aic(X, y, sample_weight=weight) == pytest.approx(
        weighted.aic(Xr, yr), rel=1e-12)
    assert weighted.bic(X, y, sample_weight=weight) == pytest.approx(
        repeated.result_.bic(), rel=1e-9)
