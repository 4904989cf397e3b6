import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import gmoe.tasks as tasks_mod
from gmoe.config import read_config
from gmoe.sweep import RESULTS_FILE, ResultsMismatchError, load_results, run_sweep

TIMING = {"seconds", "fit_seconds"}


def small_config(reps=2, ns=(100, 200, 400), name="tiny") -> dict:
    data = read_config("softmax-exact")
    data.pop("quick")
    data.update(name=name, reps=reps, n_grid={"values": list(ns)})
    data["hellinger"] = {"n_x": 50}
    return data


def records(folder):
    lines = (folder / RESULTS_FILE).read_text().splitlines()
    recs = [json.loads(line) for line in lines if line.strip()]
    return {r["task"]: {k: v for k, v in r.items() if k not in TIMING} for r in recs}


def test_results_do_not_depend_on_number_of_workers(tmp_path):
    cfg = small_config()
    run_sweep(cfg, tmp_path / "one", n_jobs=1, progress=False)
    run_sweep(cfg, tmp_path / "two", n_jobs=2, progress=False)
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert len(one) == 6 and one == two
    assert all(r["status"] == "ok" for r in one.values())


def test_resume_skips_recorded_tasks_and_tolerates_a_torn_line(tmp_path):
    cfg = small_config()
    full = tmp_path / "full"
    run_sweep(cfg, full, n_jobs=1, progress=False)
    part = tmp_path / "part"
    part.mkdir()
    lines = (full / RESULTS_FILE).read_text().splitlines(keepends=True)
    # two complete lines and half of a third, as a kill mid-write would leave
    (part / RESULTS_FILE).write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])
    (part / "sweep.json").write_text((full / "sweep.json").read_text())
    result = run_sweep(cfg, part, n_jobs=1, progress=False)
    assert result.n_skipped == 2 and result.n_run == 4
    assert records(part) == records(full)
    raw = (part / RESULTS_FILE).read_text().splitlines()
    assert len(raw) == 6  # every task exactly once, the torn tail gone


def test_results_of_another_config_are_refused(tmp_path):
    run_sweep(small_config(), tmp_path, n_jobs=1, progress=False)
    other = small_config()
    other["seed"] = 7
    with pytest.raises(ResultsMismatchError, match="another config"):
        run_sweep(other, tmp_path, n_jobs=1, progress=False)
    # starting afresh is allowed
    run_sweep(other, tmp_path, n_jobs=1, progress=False, resume=False)
    assert len(records(tmp_path)) == 6


def test_a_task_that_raises_is_recorded_and_the_sweep_completes(tmp_path, monkeypatch):
    real = tasks_mod.fit_em

    def flaky(X, y, *args, **kwargs):
        if len(y) == 200:
            raise FloatingPointError("boom")
        return real(X, y, *args, **kwargs)

    monkeypatch.setattr(tasks_mod, "fit_em", flaky)
    result = run_sweep(small_config(), tmp_path, n_jobs=1, progress=False)
    assert result.n_failed == 2
    df = load_results(tmp_path)
    bad = df[df["n"] == 200]
    assert set(bad["status"]) == {"error"} and bad["reason"].str.contains("boom").all()
    assert set(df[df["n"] != 200]["status"]) == {"ok"}


def test_load_results_has_metrics_and_flat_parameter_errors(tmp_path):
    run_sweep(small_config(), tmp_path, n_jobs=1, progress=False)
    df = load_results(tmp_path)
    for col in ("loss", "hellinger", "loglik", "loglik_true", "n_iter", "converged",
                "b_size1", "beta1_atom0", "weight_size1"):
        assert col in df.columns, col
    assert np.all(df["loss"] > 0) and np.all((df["hellinger"] >= 0) & (df["hellinger"] <= 1))
    assert list(df["n"]) == sorted(df["n"])


def test_grid_sub_sweeps_share_data_and_get_their_own_rows(tmp_path):
    cfg = small_config(reps=1)
    run_sweep(cfg, tmp_path, n_jobs=1, progress=False, grid={"fit.n_experts": [2, 3]})
    df = load_results(tmp_path)
    assert sorted(df["label"].unique()) == ["n_experts=2", "n_experts=3"]
    assert len(df) == 6
    # same seed key -> the same data -> the same true log-likelihood in both sub-sweeps
    by = df.pivot_table(index="n", columns="label", values="loglik_true")
    np.testing.assert_array_equal(by["n_experts=2"], by["n_experts=3"])


def test_sigkill_mid_sweep_then_resume_gives_every_task_once(tmp_path):
    cfg = small_config(reps=6, ns=(200, 400, 800, 1600, 3200))
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    killed = tmp_path / "killed"
    script = ("import json, sys; from gmoe.sweep import run_sweep; "
              f"run_sweep(json.load(open({str(cfg_path)!r})), {str(killed)!r}, n_jobs=1, "
              "progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    results = killed / RESULTS_FILE
    deadline = time.time() + 60
    while time.time() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(results.read_text().splitlines())
    assert 3 <= n_before < 30, "the kill must land mid-sweep"
    run_sweep(cfg, killed, n_jobs=1, progress=False)
    clean = tmp_path / "clean"
    run_sweep(cfg, clean, n_jobs=2, progress=False)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == 30 and len({r["task"] for r in lines}) == 30
    assert records(killed) == records(clean)


def test_archived_gz_results_load_and_plot_like_the_original(tmp_path):
    import gzip
    import shutil

    from gmoe.plots import plot_sweep

    run_sweep(small_config(), tmp_path / "run", n_jobs=1, progress=False)
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(tmp_path / "run" / "sweep.json", archive / "sweep.json")
    (archive / (RESULTS_FILE + ".gz")).write_bytes(
        gzip.compress((tmp_path / "run" / RESULTS_FILE).read_bytes()))
    assert load_results(archive).equals(load_results(tmp_path / "run"))
    files = plot_sweep(archive, metrics=["loss"], formats=("png",))
    assert files and files[0].exists()


def test_rate_table_agreement_allows_log_factors_but_not_wrong_rates():
    import pandas as pd

    from gmoe.tables import rate_table

    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(100, 1e5, 40).round(), 40)
    close = n**-0.5 * np.log(n) ** -0.1 * np.exp(rng.normal(0, 0.05, n.size))
    wrong = n**-0.25 * np.exp(rng.normal(0, 0.05, n.size))
    df = pd.DataFrame({"sub": 0, "label": "", "n": n, "close": close, "wrong": wrong})
    table = rate_table(df, metrics=["close", "wrong"], theory={"close": -0.5, "wrong": -0.5})
    rows = table.set_index("metric")
    assert not rows.loc["close", "in_ci"] and rows.loc["close", "agrees"]
    assert not rows.loc["wrong", "agrees"]
    assert not rows.loc["close", "inconclusive"]


def test_rate_table_says_wide_and_prints_the_sizes_it_rests_on():
    import pandas as pd

    from gmoe.tables import format_rates, rate_table

    rng = np.random.default_rng(1)
    n = np.repeat([1000.0, 2000.0, 4000.0, 8000.0], 5)
    noisy = np.exp(rng.normal(0, 2.0, n.size))          # no rate, huge spread
    steady = n**-0.5 * np.exp(rng.normal(0, 0.05, n.size))
    steady[n == 8000] = np.nan                          # no value at the largest n
    df = pd.DataFrame({"sub": 0, "label": "", "n": n, "noisy": noisy, "steady": steady})
    table = rate_table(df, metrics=["noisy", "steady"], theory={"noisy": -0.5,
                                                               "steady": -0.5})
    rows = table.set_index("metric")
    assert rows.loc["noisy", "in_ci"] and rows.loc["noisy", "inconclusive"]
    assert rows.loc["steady", "agrees"] and not rows.loc["steady", "inconclusive"]
    assert rows.loc["steady", "n_max"] == 4000 and rows.loc["noisy", "n_max"] == 8000
    text = format_rates(table)
    assert " wide " in text.splitlines()[1] and "1000-4000  (1 n excluded)" in text


def test_rate_table_counts_failed_fits_and_capped_losses_and_plots_them(tmp_path):
    import pandas as pd

    from gmoe.plots import plot_failures, plot_sweep
    from gmoe.tables import rate_table

    n = np.repeat([100, 1000, 10000, 100000], 4)
    status = np.where(np.arange(n.size) % 4 == 0, "failed", "ok")  # 1 in 4 fails
    capped = np.arange(n.size) < 6
    df = pd.DataFrame({"sub": 0, "label": "", "n": n, "loss": n**-0.5,
                       "hellinger": n**-0.5, "status": status, "loss_saturated": capped})
    rows = rate_table(df, metrics=["loss", "hellinger"], theory={}).set_index("metric")
    assert rows.loc["loss", "failed"] == pytest.approx(0.25)
    assert rows.loc["loss", "capped"] == pytest.approx(6 / 16)
    assert np.isnan(rows.loc["hellinger", "capped"])
    fig = plot_failures(df)
    failed_line, capped_line = fig.axes[0].get_lines()[:2]
    np.testing.assert_allclose(failed_line.get_ydata(), [0.25] * 4)
    np.testing.assert_allclose(capped_line.get_ydata(), [1, 0.5, 0, 0])
    # the infimum convention's loss recorded beside a mass loss: its caps are counted
    # over the values the slope rests on (certified fits in the verdict range)
    df2 = df.assign(loss_infimum=1.0, loss_saturated=False,
                    loss_infimum_saturated=np.arange(n.size) % 2 == 0,
                    certified=np.arange(n.size) % 4 != 1)
    rows2 = rate_table(df2, metrics=["loss", "loss_infimum"], theory={}).set_index("metric")
    used = (np.arange(n.size) % 4 != 1)
    expected = np.mean((np.arange(n.size) % 2 == 0)[used])
    assert rows2.loc["loss_infimum", "capped"] == pytest.approx(expected)
    assert rows2.loc["loss", "capped"] == 0.0
    lines = plot_failures(df2).axes[0].get_lines()
    assert [ln.get_label() for ln in lines][-2:] == ["fits: capped loss values",
                                                    "fits: capped loss_infimum values"]
    np.testing.assert_allclose(lines[-1].get_ydata(), [0.5] * 4)
    # a real sweep without failures or caps gets no failures figure
    run_sweep(small_config(), tmp_path / "run", n_jobs=1, progress=False)
    files = plot_sweep(tmp_path / "run", formats=("png",))
    clean = load_results(tmp_path / "run")
    has_bad = (clean["status"] != "ok").any() or clean["loss_saturated"].any()
    assert any("_failures" in f.name for f in files) == bool(has_bad)


def test_q90_center_follows_the_bad_tail():
    from gmoe.rates import fit_rate, loss_center

    values = np.arange(1.0, 11.0)
    assert loss_center(values, "q90") == pytest.approx(np.quantile(values, 0.9))
    n = np.repeat(np.geomspace(100, 1e5, 8).round(), 10)
    loss = n**-0.5
    bad = np.arange(n.size) % 10 == 0  # one stuck fit in ten at every n
    loss = np.where(bad, 0.3, loss)
    loss[np.arange(n.size) % 10 == 1] = 0.3
    assert fit_rate(n, loss).slope == pytest.approx(-0.5, abs=1e-9)
    assert fit_rate(n, loss, center="q90").slope > -0.1


@pytest.mark.parametrize("translation", ["mass", "infimum", "none"])
def test_compute_metrics_records_the_configured_translation_and_both_others(translation):
    from types import SimpleNamespace

    from gmoe import GaussianMoE, MoEParams
    from gmoe.config import expand
    from gmoe.tasks import compute_metrics

    data = small_config()
    data["fit"]["n_experts"] = 3
    data["metrics"] = ["loss", "loss_mass", "loss_infimum", "parameter_errors"]
    data["loss"] = {"translation": translation}
    cfg = expand(data)[0]
    assert cfg.raw["loss"]["translation"] == translation and cfg.loss_kind == "over"
    truth = GaussianMoE("softmax", cfg.truth_params)
    t = cfg.truth_params
    # the reference expert split in two equal halves: zero under mass and infimum, the
    # floor |2 - 1| = 1 without a shift; the other expert 3 off in b: capped infimum
    split = MoEParams(t.beta0[[0, 1, 1]] + np.log([2.0, 1.0, 1.0]), t.beta1[[0, 1, 1]],
                      t.a[[0, 1, 1]], t.b[[0, 1, 1]], t.var[[0, 1, 1]])
    far = split.replace(b=split.b + [0.0, 3.0, 3.0])
    rec = compute_metrics(cfg, SimpleNamespace(model=GaussianMoE("softmax", split)), truth,
                          None, None, None)
    assert rec["loss_translation"] == translation and "metric_errors" not in rec
    assert rec["loss_mass"] < 1e-8 and rec["loss_infimum"] < 1e-8
    assert rec["loss_infimum_saturated"] is False
    assert rec["loss"] == (pytest.approx(1.0, abs=1e-3) if translation == "none"
                           else rec[f"loss_{translation}"])
    far_rec = compute_metrics(cfg, SimpleNamespace(model=GaussianMoE("softmax", far)), truth,
                              None, None, None)
    assert far_rec["loss_infimum_saturated"] is True
    assert far_rec["loss_infimum"] == pytest.approx(np.exp(t.beta0).sum())
    assert far_rec["loss_mass"] > far_rec["loss_infimum"]
    assert far_rec["loss_saturated"] is (translation == "infimum")
    # parameter errors at the configured loss's shift
    pe_shift = far_rec["parameter_errors"]["shift"]  # JSON-safe: -inf is None
    assert pe_shift == [None if v == -np.inf else v for v in far_rec["shift"]]


def test_rate_plot_legend_says_what_the_bars_the_bracket_and_the_theory_line_are():
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gmoe.plots import plot_rates

    rng = np.random.default_rng(1)
    n = np.repeat([100, 400, 1600, 6400], 10)
    df = pd.DataFrame({"sub": 0, "label": "", "n": n,
                       "loss": n**-0.5 * np.exp(rng.normal(0, 0.2, n.size))})
    fig = plot_rates(df, "loss", theory=-0.5)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    plt.close(fig)
    points, = (t for t in labels if t.startswith("empirical"))
    fit, = (t for t in labels if t.startswith("fit"))
    theory, = (t for t in labels if t.startswith("theory"))
    assert "median" in points and "bars 10-90% quantiles" in points
    assert fit.startswith("fit $n^{") and "95% CI [" in fit
    assert "theory slope" in theory and "through the fit at n = 800" in theory
    fig = plot_rates(df, "loss", band="sd")
    points, = (t for t in fig.axes[0].get_legend_handles_labels()[1]
               if t.startswith("empirical"))
    plt.close(fig)
    assert "mean of the replications, bars mean ± 2 sd" in points


def test_rate_plot_clips_absurd_error_bars_and_says_so():
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gmoe.plots import plot_rates

    rng = np.random.default_rng(2)
    n = np.repeat([100, 400, 1600, 6400], 10)
    loss = n**-0.5 * np.exp(rng.normal(0, 0.2, n.size))
    loss[np.flatnonzero(n == 400)[:3]] = 1e120  # fits whose gate weights overflowed
    df = pd.DataFrame({"sub": 0, "label": "", "n": n, "loss": loss})
    fig = plot_rates(df, "loss")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    top = ax.get_ylim()[1]
    plt.close(fig)
    assert top == pytest.approx(1e3 * np.median(loss[n == 100]), rel=1e-9)
    assert any("bars clipped" in t for t in texts)
    # without wild bars nothing is clipped, and an n whose values are all missing
    # (no bar at all) is not a wild bar
    fig = plot_rates(df[df["loss"] < 1], "loss")
    assert not fig.axes[0].texts
    plt.close(fig)
    empty = df[df["loss"] < 1].copy()
    empty.loc[empty["n"] == 6400, "loss"] = np.nan
    fig = plot_rates(empty, "loss")
    assert not fig.axes[0].texts
    plt.close(fig)


def test_records_of_another_config_are_left_out_of_rates_with_a_warning(tmp_path):
    from gmoe.tables import rate_table

    run_sweep(small_config(reps=2), tmp_path / "own", n_jobs=1, progress=False)
    run_sweep(small_config(reps=3), tmp_path / "other", n_jobs=1, progress=False)
    before = rate_table(tmp_path / "own")
    foreign = (tmp_path / "other" / RESULTS_FILE).read_text().splitlines(keepends=True)
    foreign = [line for line in foreign if json.loads(line)["rep"] == 2]  # new tasks
    with open(tmp_path / "own" / RESULTS_FILE, "a") as fh:
        fh.writelines(foreign)
    with pytest.warns(UserWarning, match="3 of the 9 records .* another config.*gmoe run"):
        after = rate_table(tmp_path / "own")
    np.testing.assert_allclose(after["slope"], before["slope"])
    # a folder whose records all belong to another config is refused
    (tmp_path / "other" / "sweep.json").write_text((tmp_path / "own" / "sweep.json")
                                                   .read_text())
    with pytest.raises(ValueError, match="none of the 9 records"):
        rate_table(tmp_path / "other")


def test_failures_figure_is_drawn_with_explicit_metrics_too(tmp_path):
    from gmoe.plots import plot_sweep

    run_sweep(small_config(), tmp_path, n_jobs=1, progress=False)
    lines = (tmp_path / RESULTS_FILE).read_text().splitlines()
    first = json.loads(lines[0])
    first["status"] = "failed"
    (tmp_path / RESULTS_FILE).write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    files = plot_sweep(tmp_path, metrics=["loss"], formats=("png",), dest=tmp_path / "f")
    assert sorted(f.name for f in files) == ["tiny_failures.png", "tiny_loss.png"]
