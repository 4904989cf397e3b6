"""Bad input to the rate API: unknown choices and numbers are ValueErrors."""

import numpy as np
import pandas as pd
import pytest

from gmoe.rates import fit_rate, loss_center
from gmoe.tables import format_rates, rate_table


def _results() -> pd.DataFrame:
    n = np.repeat([100.0, 1000.0, 10000.0, 100000.0], 3)
    return pd.DataFrame({"sub": 0, "label": "", "n": n, "rep": np.tile([0, 1, 2], 4),
                         "loss": n**-0.5, "hellinger": n**-0.5, "status": "ok"})


def test_unknown_center_is_a_value_error_everywhere():
    with pytest.raises(ValueError, match="expected one of.*median"):
        loss_center([1, 2, 4, 100], "medain")
    with pytest.raises(ValueError, match="expected one of.*median"):
        loss_center([], "medain")
    with pytest.raises(ValueError, match="expected one of.*median"):
        rate_table(_results(), center="medain")


def test_unknown_metric_is_a_value_error_listing_the_metrics():
    with pytest.raises(ValueError, match="no metric 'lsos'.*loss, hellinger"):
        rate_table(_results(), metrics=["lsos"])
    assert list(rate_table(_results(), metrics=["hellinger"])["metric"]) == ["hellinger"]


def test_plot_rates_refuses_unknown_center_band_and_metric(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from gmoe.plots import plot_rates, plot_sweep

    with pytest.raises(ValueError, match="unknown center 'medain'"):
        plot_rates(_results(), "loss", center="medain")
    with pytest.raises(ValueError, match="unknown band 'iqr'.*quantile"):
        plot_rates(_results(), "loss", band="iqr")
    with pytest.raises(ValueError, match="no metric 'lsos'.*loss"):
        plot_rates(_results(), "lsos")
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(ValueError, match="unknown center"):
        plot_sweep(tmp_path, center="medain")


@pytest.mark.parametrize("n", [[0, 10, 100], [-1, 10, 100], [np.nan, 10, 100],
                               [np.inf, 10, 100]])
def test_sample_sizes_must_be_finite_and_positive(n):
    with pytest.raises(ValueError, match="finite and positive"):
        fit_rate(n, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, np.nan])
def test_alpha_must_lie_in_the_open_unit_interval(alpha):
    n = np.repeat([100.0, 1000.0, 10000.0], 2)
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        fit_rate(n, n**-0.5, alpha=alpha)


def test_per_replicate_interval_covers_at_its_nominal_level():
    # 12 sizes x 20 replications of lognormal noise: the cluster-robust error with
    # normal critical values covered the slope in 350 of these 400 (87.5%); the
    # CRV3 error with t(G - 1) critical values covers 380 (95%)
    sizes = np.geomspace(100, 1e5, 12).round()
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        n = np.repeat(sizes, 20)
        loss = 3.0 * n**-0.5 * rng.lognormal(0.0, 0.3, n.size)
        covered += fit_rate(n, loss, per_replicate=True).contains(-0.5)
    assert covered >= 372  # 93% of 400


def test_per_replicate_refuses_a_center_warns_about_dropped_points_and_says_so():
    n = np.repeat(np.geomspace(100, 1e4, 5).round(), 4)
    loss = n**-0.5 * np.exp(np.random.default_rng(0).normal(0, 0.1, n.size))
    with pytest.raises(ValueError, match="per_replicate"):
        fit_rate(n, loss, center="mean", per_replicate=True)
    loss[::7] = np.nan
    with pytest.warns(RuntimeWarning, match="3 replicate point"):
        fit = fit_rate(n, loss, per_replicate=True)
    assert fit.n_excluded == 3 and fit.center == "replicates"
    assert "(replicates, ols-cluster, 3 excluded)" in fit.summary()


def test_format_rates_shows_the_config_column_and_whole_labels():
    table = rate_table(_results(), theory={"loss": -0.5})
    one = table.assign(label="certified, near-truth start")
    other = table.assign(label="certified, near-truth start")
    both = pd.concat([one.assign(config="softmax-exact"),
                      other.assign(config="softmax-over")], ignore_index=True)
    lines = format_rates(both).splitlines()
    assert lines[0].startswith("config        sweep")
    assert lines[1].startswith("softmax-exact certified, near-truth start loss")
    assert lines[3].startswith("softmax-over  certified, near-truth start loss")
    plain = format_rates(table).splitlines()
    assert plain[0].startswith("sweep metric") and plain[1].startswith("-     loss")


def test_a_folder_rates_text_is_what_gmoe_rates_prints_without_the_config(tmp_path):
    from gmoe.tables import write_rates

    table = rate_table(_results())
    text = write_rates(tmp_path, table.assign(config="softmax-exact"))
    assert text == format_rates(table)
    assert "config" in (tmp_path / "rates.csv").read_text().splitlines()[0]
