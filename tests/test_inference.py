"""Standard errors and Wald intervals from the observed information."""

import warnings

import numpy as np
import pytest

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, TemperatureGate, fit_em
from gmoe.exceptions import InferenceWarning

TRUTH = MoEParams([0.5, 0.0], [[-2.0, 1.0], [0.0, 0.0]], [[2.0, 1.0], [-2.0, 0.5]],
                  [0.0, 1.0], [0.1, 0.2])
X_LAW = {"name": "uniform", "d": 2, "low": -1, "high": 1}


def _aligned(fit):
    """Estimates and standard errors with the fitted experts ordered as the truth's.

    With k = 2 the free gate parameters are the difference expert 0 minus expert 1;
    relabelling flips their sign and keeps their standard errors.
    """
    p, se = fit.params, fit.bse
    order, sign = ([1, 0], -1.0) if abs(p.b[0] - 1.0) < abs(p.b[0]) else ([0, 1], 1.0)
    gate = sign * np.concatenate([[p.beta0[0] - p.beta0[1]], p.beta1[0] - p.beta1[1]])
    est = np.concatenate([gate, p.a[order].ravel(), p.b[order], p.var[order]])
    err = np.concatenate([[se.beta0[0]], se.beta1[0], se.a[order].ravel(), se.b[order],
                          se.var[order]])
    return est, err


def test_standard_errors_match_the_spread_over_200_replications():
    model = GaussianMoE(SoftmaxGate(), TRUTH, X_LAW)
    est, err = [], []
    for rep in range(200):
        X, y = model.sample(2000, rng=rep)
        fit = fit_em(X, y, 2, init="near_truth", truth=TRUTH, rng=rep, init_scale=0.1,
                     warn=False)
        assert fit.certified
        e, s = _aligned(fit)
        est.append(e)
        err.append(s)
    spread = np.std(est, axis=0, ddof=1)
    mean_se = np.mean(err, axis=0)
    np.testing.assert_allclose(mean_se / spread, 1.0, atol=0.15)


@pytest.fixture(scope="module")
def exact_fit():
    X, y = GaussianMoE(SoftmaxGate(), TRUTH, X_LAW).sample(3000, rng=1)
    return fit_em(X, y, 2, n_init=2, rng=0)


def test_shapes_and_fixed_entries_of_bse_and_conf_int(exact_fit):
    fit = exact_fit
    se = fit.bse
    assert se.beta0.shape == (2,) and se.beta1.shape == (2, 2) and se.a.shape == (2, 2)
    assert se.tau is None
    # the normal form fixes the last expert's gating parameters: NaN there only
    assert np.isnan(se.beta0[1]) and np.isnan(se.beta1[1]).all()
    assert np.isfinite(se.beta0[0]) and np.isfinite(se.beta1[0]).all()
    assert np.all(se.var > 0) and np.all(np.isfinite(se.a))
    low, high = fit.conf_int(0.05)
    assert np.all(low.b < fit.params.b) and np.all(fit.params.b < high.b)
    assert np.all(low.var > 0)  # intervals of the log, mapped back
    # level: a 99% interval is wider than a 90% one
    l99, h99 = fit.conf_int(0.01)
    l90, h90 = fit.conf_int(0.10)
    assert np.all(h99.a - l99.a > h90.a - l90.a)
    cov = fit.cov_params()
    assert cov.shape == (len(fit.param_names),) * 2
    np.testing.assert_allclose(np.sqrt(np.diag(cov))[-2:] * fit.params.var, se.var)
    with pytest.raises(ValueError, match="alpha"):
        fit.conf_int(1.5)


def test_summary_shows_standard_errors_and_certification(exact_fit):
    text = exact_fit.summary()
    assert "CERTIFIED" in text and "std err" in text and "(fixed)" in text
    assert "no standard errors" not in text


def test_temperature_ridge_gives_nan_and_a_warning():
    gate = TemperatureGate(1.0)
    truth = TRUTH.replace(tau=1.0)
    X, y = GaussianMoE(gate, truth, X_LAW).sample(3000, rng=1)
    fit = fit_em(X, y, 2, gate=gate, init="near_truth", truth=truth, rng=0, warn=False)
    with pytest.warns(InferenceWarning, match="singular or ill-conditioned"):
        se = fit.bse
    assert np.isnan(se.tau) and np.isnan(se.beta1).all() and np.isnan(se.var).all()


def test_uncertified_or_unpolished_fits_give_nan_with_the_reason(exact_fit):
    X, y = GaussianMoE(SoftmaxGate(), TRUTH, X_LAW).sample(500, rng=2)
    fit = fit_em(X, y, 2, rng=0, polish=False)
    with pytest.warns(InferenceWarning, match="not polished"):
        assert np.isnan(fit.cov_params()).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact_fit.cov_params()  # a certified, regular fit: no warning


def test_a_covariate_far_from_zero_keeps_its_standard_errors():
    # x a year: 2000 + U[0, 10]. In the user's coordinates the intercepts and slopes
    # are collinear (a scaled condition number near 1e10); the standardised fit
    # inverts its centred information and maps the covariance back. The reference
    # is the fit of x - 2000 mapped by the delta method: beta0 = beta0' - 2000 beta1,
    # b = b' - 2000 a, the rest unchanged
    from gmoe import MoERegressor

    truth = MoEParams(beta0=[-3.0, 0.0], beta1=[[0.6], [0.0]], a=[[1.0], [-0.5]],
                      b=[0.0, 2.0], var=[0.2, 0.3])
    X, y = GaussianMoE(SoftmaxGate(), truth).sample(3000, rng=7)
    X = 10 * X
    far = MoERegressor(n_experts=2, random_state=0).fit(X + 2000.0, y).result_
    near = MoERegressor(n_experts=2, random_state=0).fit(X, y).result_
    assert far.certified and near.certified
    assert far.loglik == pytest.approx(near.loglik, abs=1e-6)
    names = near.param_names
    A = np.eye(len(names))
    for i, name in enumerate(names):
        if name.startswith(("beta0[", "b[")):
            k = int(name[name.index("[") + 1:name.index("]")])
            slope = ("beta1" if name.startswith("beta0") else "a") + f"[{k},0]"
            A[i, names.index(slope)] = -2000.0
    want = A @ near.cov_params() @ A.T
    got = far.cov_params()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(np.sqrt(np.diag(got)), np.sqrt(np.diag(want)), rtol=1e-4)
