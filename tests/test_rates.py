import numpy as np
import pytest

from gmoe.rates import fit_rate


def test_exact_power_law_is_recovered_with_its_constant():
    n = np.repeat(np.geomspace(100, 1e5, 12), 3)
    fit = fit_rate(n, 3.0 * n**-0.5)
    assert fit.slope == pytest.approx(-0.5, abs=1e-10)
    assert fit.constant == pytest.approx(3.0, rel=1e-8)
    assert fit.r2 == pytest.approx(1.0)


def test_slope_ci_covers_truth_in_most_of_50_seeds():
    covered = 0
    sizes = np.geomspace(100, 1e5, 15).round()
    for seed in range(50):
        rng = np.random.default_rng(seed)
        n = np.repeat(sizes, 20)
        loss = 2.0 * n**-0.5 * np.exp(rng.normal(0, 0.5, n.size))
        covered += fit_rate(n, loss).contains(-0.5)
    assert covered >= 45  # at least 90% of 50


def test_wrong_slope_is_not_covered():
    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(100, 1e5, 15).round(), 20)
    loss = n**-0.25 * np.exp(rng.normal(0, 0.3, n.size))
    fit = fit_rate(n, loss)
    assert not fit.contains(-0.5) and fit.contains(-0.25)


@pytest.mark.parametrize("center", ["median", "mean_log", "mean"])
def test_centers_and_per_replicate_agree_on_clean_data(center):
    rng = np.random.default_rng(1)
    n = np.repeat(np.geomspace(100, 1e5, 10).round(), 30)
    loss = n**-0.5 * np.exp(rng.normal(0, 0.2, n.size))
    assert fit_rate(n, loss, center=center).slope == pytest.approx(-0.5, abs=0.05)
    per_rep = fit_rate(n, loss, per_replicate=True)
    assert per_rep.method == "ols-cluster" and per_rep.contains(-0.5)


def test_median_resists_a_huge_failed_fit_that_ruins_the_mean():
    n = np.repeat(np.geomspace(100, 1e5, 10).round(), 9)
    loss = n**-0.5
    loss[::9] = 1e5  # one exploded fit at every n... and more at the largest n
    loss[-3:] = 1e5
    assert fit_rate(n, loss, center="median").slope == pytest.approx(-0.5, abs=1e-9)
    assert fit_rate(n, loss, center="mean").slope > -0.2


def test_non_positive_centers_are_reported_not_silently_dropped():
    n = np.repeat([100.0, 1000.0, 10000.0, 1e5], 3)
    loss = n**-0.5
    loss[:3] = np.nan
    with pytest.warns(RuntimeWarning, match="1 sample size"):
        fit = fit_rate(n, loss)
    assert fit.n_excluded == 1 and fit.n_points == 3


def test_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        fit_rate([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="unknown center"):
        fit_rate([1, 2, 3], [1, 2, 3], center="mode")
    with pytest.raises(ValueError, match="at least 3"):
        fit_rate([10, 10, 100], [1, 1, 1])


def test_summary_mentions_slope_and_ci():
    n = np.repeat(np.geomspace(100, 1e4, 5), 2)
    text = fit_rate(n, n**-0.5).summary()
    assert "slope -0.5000" in text and "95% CI" in text
