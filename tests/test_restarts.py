"""Cheaper restarts (issue 16, target 2): k-means on a sample (``kmeans_sample``),
screening by a loose tolerance (``screen_tol``), and the default path unchanged."""

import warnings

import numpy as np
import pytest

from gmoe import GaussianMoE, MoEParams, MoERegressor, SoftmaxGate, fit_em
from gmoe.config import ConfigError, expand, read_config
from gmoe.initialization import kmeans_responsibilities, kmeans_rows
from gmoe.settings import FitSettings, SettingError


def two_lines(n: int = 400, seed: int = 7):
    """Two noisy lines behind a logistic switch, drawn with numpy alone (so that the
    saved results below do not depend on gmoe's sampler)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    first = rng.random(n) < 1 / (1 + np.exp(-(25 * x - 8)))
    e = rng.standard_normal(n)
    return x[:, None], np.where(first, 15 - 20 * x + 0.3 * e, -5 + 20 * x + 0.4 * e)


# ------------------------------------------------------------ the default path, saved
#: ``restart_logliks`` and ``(beta0, beta1, a, b, var)`` of four fits on
#: ``two_lines()``, saved (as float.hex) with the restart path of commit 5e7b643, before
#: kmeans_sample and screen_tol existed: fit_em's defaults (and a config's) must give
#: the same fits. Saved again when the polish became a trust-region ascent (every
#: changed restart ended higher, by 0.5 to 8.6 nats; the k-means starts and EM runs are
#: the same), and "regressor" again when standardised fits centred X (the same best
#: maximum, the experts in another order; its fifth restart's EM path changed and ends
#: at another maximum, 3.7 nats lower). Bit for bit on the machine that saved them
#: (numpy 2.4, scipy-openblas, x86-64, one BLAS thread); another CPU's BLAS kernels
#: round differently, and an uncertified restart stopped by max_iter carries that
#: rounding to 7e-8 relative in its log-likelihood (seen), so the check allows rounding
#: and nothing more: a changed path (other k-means draws, other screening) moves these
#: numbers by O(1).
SAVED = {
    "kmeans": (
        ["-0x1.2b54b3b5e5d08p+7", "-0x1.2b54b3b5e5d08p+7", "-0x1.2b54b3b5e5d06p+7"],
        ["-0x1.4d6fee07beb4cp+3", "0x0.0p+0", "0x1.043879024d2afp+5",
         "0x0.0p+0", "-0x1.3e9c86a5e3b5cp+4", "0x1.428dd3112b112p+4",
         "0x1.ddfeb93e05b97p+3", "-0x1.43cf87408cdebp+2", "0x1.565709155e4ddp-4",
         "0x1.47c4a1af5da62p-3"]),
    "auto": (
        ["-0x1.23cfe74bf678bp+7", "-0x1.23cfe74bf678bp+7", "-0x1.1a0bba81c5c77p+7",
         "-0x1.1a317984cd4b6p+7", "-0x1.1a0bba81c5c77p+7"],
        ["-0x1.f8f5dfc53707dp+0", "-0x1.4a95e4164bbfcp+3", "0x0.0p+0",
         "-0x1.06a6e6fc9cf35p+2", "0x1.02ef3e54abe57p+5", "0x0.0p+0",
         "0x1.221ee7c136c26p+4", "-0x1.3e9c742f87142p+4", "0x1.4218a823f6f73p+4",
         "-0x1.52d14ee8752c8p+2", "0x1.ddfe95c9d4cf6p+3", "-0x1.4115fca088293p+2",
         "0x1.7438c99df6dddp-13", "0x1.5655541c0d050p-4", "0x1.32d0eb38fc767p-3"]),
    "screen_iter": (
        ["-0x1.264fc70681f3ep+7", "-0x1.264fc70681f3ep+7", "-0x1.23cfe73b64d2bp+7"],
        ["0x1.4d554fa10575ep+3", "-0x1.e1533f8a37620p+12", "0x0.0p+0",
         "-0x1.042280c71d7a3p+5", "0x1.65a1789906b14p+13", "0x0.0p+0",
         "0x1.428d41106718bp+4", "-0x1.3925ab83cd66fp+4", "-0x1.3e770d574d2b5p+4",
         "-0x1.43cf379606a11p+2", "0x1.d48f50753514bp+3", "0x1.de1b84edab0f7p+3",
         "0x1.47c7db5e25a13p-3", "0x1.9ac878c2adefcp-4", "0x1.0ea7c9cf7bb8bp-4"]),
    "regressor": (
        ["-0x1.23cfe729ad7c4p+7", "-0x1.23cfe72c18e54p+7", "-0x1.1a0bba81c5c74p+7",
         "-0x1.1a317984cd4c8p+7", "-0x1.2189e63d720a0p+7"],
        ["0x1.f8f5dfbc9aed4p+0", "-0x1.0b77281e83a04p+3", "0x0.0p+0",
         "0x1.06a6e6f966052p+2", "0x1.23c41b33a9692p+5", "0x0.0p+0",
         "0x1.4218a823f8bfdp+4", "-0x1.3e9c742f87147p+4", "0x1.221ee7c1136cep+4",
         "-0x1.4115fca07c66ep+2", "0x1.ddfe95c9d4d00p+3", "-0x1.52d14ee84f0f7p+2",
         "0x1.32d0eb388dd42p-3", "0x1.5655541c0d174p-4", "0x1.7438c964db86cp-13"]),
}


def _saved_case(name: str):
    X, y = two_lines()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "kmeans":
            return fit_em(X, y, 2, n_init=3, rng=0, warn=False)
        if name == "auto":
            return fit_em(X, y, 3, init="auto", n_init=2, rng=1, max_iter=200, warn=False)
        if name == "screen_iter":
            return fit_em(X, y, 3, n_init=3, rng=2, screen_iter=4, max_iter=200, warn=False)
        # MoERegressor's former default: full restarts from k-means on every row
        return MoERegressor(n_experts=3, n_init=2, random_state=3, max_iter=200,
                            screen_tol=None, kmeans_sample=None).fit(X, y).result_


@pytest.mark.parametrize("name", sorted(SAVED))
def test_default_path_gives_the_saved_numbers(name):
    fit = _saved_case(name)
    logliks, values = ([float.fromhex(v) for v in saved] for saved in SAVED[name])
    np.testing.assert_allclose(fit.restart_logliks, logliks, rtol=1e-6, atol=0)
    # a separating gate runs off to infinity: where its polish stops is rounding
    np.testing.assert_allclose(fit.loglik, max(logliks),
                               rtol=1e-12 if fit.certified else 1e-10, atol=0)
    # the same fit up to the experts' labels: restarts that reach one maximum with
    # the labels permuted tie to rounding, and rounding picks which is kept
    k, d = fit.params.k, fit.params.d
    cuts = np.cumsum([k, k * d, k * d, k])
    beta0, beta1, a, b, var = np.split(np.array(values), cuts)
    saved = MoEParams(beta0, beta1.reshape(k, d), a.reshape(k, d), b, var)
    X, _ = two_lines()
    experts = np.column_stack([fit.params.a, fit.params.b, fit.params.var])
    saved_experts = np.column_stack([saved.a, saved.b, saved.var])
    order = [int(np.argmin(np.abs(saved_experts - row).sum(axis=1))) for row in experts]
    assert sorted(order) == list(range(k))
    np.testing.assert_allclose(experts, saved_experts[order], rtol=0, atol=1e-8)
    np.testing.assert_allclose(fit.gate.weights(X, fit.params),
                               fit.gate.weights(X, saved)[:, order], rtol=0,
                               atol=1e-8 if fit.certified else 1e-6)


def test_fit_em_and_configs_default_to_full_restarts_from_full_kmeans():
    assert FitSettings().screen_tol is None and FitSettings().kmeans_sample is None
    cfg = expand(read_config("softmax-exact"))[0]
    kwargs = cfg.fit_kwargs()
    assert kwargs["screen_tol"] is None and kwargs["kmeans_sample"] is None
    # not written into the table: configs keep their hash
    assert "screen_tol" not in cfg.raw["fit"] and "kmeans_sample" not in cfg.raw["fit"]


# ------------------------------------------------------------------------ the checks
@pytest.mark.parametrize("key,value,match", [
    ("screen_tol", 0.0, "screen_tol must be finite and > 0, but got 0.0"),
    ("screen_tol", -1e-3, "screen_tol must be finite and > 0"),
    ("screen_tol", "loose", "screen_tol must be a positive number, but got 'loose'"),
    ("kmeans_sample", 0, "kmeans_sample must be an integer >= 1, but got 0"),
    ("kmeans_sample", 2.5, "kmeans_sample must be an integer >= 1, but got 2.5"),
    ("kmeans_sample", True, "kmeans_sample must be an integer >= 1, but got True"),
])
def test_new_settings_are_checked_and_the_error_names_the_key(key, value, match):
    with pytest.raises(SettingError, match=match) as caught:
        FitSettings(**{key: value})
    assert caught.value.key == key
    X, y = two_lines(60)
    with pytest.raises(ValueError, match=match):
        fit_em(X, y, 2, **{key: value})
    with pytest.raises(ValueError, match=match):
        MoERegressor(**{key: value}).fit(X, y)
    data = read_config("softmax-exact")
    data["fit"][key] = value
    with pytest.raises(ConfigError, match=f"key 'fit.{key}': {match}"):
        expand(data)


# ------------------------------------------------------------------ k-means on a sample
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [5, 80, 3000])
def test_sampled_kmeans_is_the_full_one_when_the_sample_is_every_row(k, n):
    X, y = two_lines(n, seed=n + k)
    for seed in range(3):
        full_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
        full = kmeans_responsibilities(X, y, k, full_rng)
        for sample in (None, n, n + 7):
            # a sample of every row: no rows drawn, and the full k-means
            rows = kmeans_rows(n, sample, rng)
            assert rows is None
            assert np.array_equal(kmeans_responsibilities(X, y, k, rng, rows=rows), full)
            # the generator moved on as the full k-means moved it
            assert rng.random() == full_rng.random()
            full_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
            kmeans_responsibilities(X, y, k, full_rng)


def test_sampled_kmeans_labels_every_row_by_the_nearest_centre_of_the_sample():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    points = np.repeat(centres, 2000, axis=0) + 0.3 * rng.standard_normal((6000, 2))
    X, y = points[:, :1], points[:, 1]
    truth = np.repeat(np.arange(3), 2000)
    rows = kmeans_rows(6000, 50, np.random.default_rng(5))
    assert rows.shape == (50,) and np.all(np.diff(rows) > 0)
    for seed in range(3):
        resp = kmeans_responsibilities(X, y, 3, np.random.default_rng(seed), rows=rows)
        assert resp.shape == (3, 6000) and np.array_equal(resp.sum(axis=0), np.ones(6000))
        labels = resp.argmax(axis=0)
        # well-separated blobs: the sample's centres label every row as the truth does
        # (up to the order of the clusters)
        assert all(len(set(labels[truth == j])) == 1 for j in range(3))
        assert len(set(labels)) == 3


@pytest.mark.parametrize("sample", [None, 400])
def test_weighted_kmeans_ignores_rows_of_weight_zero(sample):
    # two blobs of real rows and a far, larger blob of rows of weight 0: the weighted
    # k-means puts its two centres on the real blobs (the unweighted one would spend a
    # centre on the weightless blob, which holds the most rows)
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 6.0], [40.0, -40.0]])
    sizes = [300, 300, 1400]
    points = np.repeat(centres, sizes, axis=0) + 0.3 * rng.standard_normal((2000, 2))
    X, y = points[:, :1], points[:, 1]
    truth = np.repeat(np.arange(3), sizes)
    weight = np.where(truth == 2, 0.0, 1.0)
    for seed in range(5):
        rows = kmeans_rows(2000, sample, np.random.default_rng(seed))
        labels = kmeans_responsibilities(X, y, 2, np.random.default_rng(seed), rows=rows,
                                         weight=weight).argmax(axis=0)
        assert len(set(labels[truth == 0])) == 1 and len(set(labels[truth == 1])) == 1
        assert labels[truth == 0][0] != labels[truth == 1][0]
        unweighted = kmeans_responsibilities(X, y, 2, np.random.default_rng(seed),
                                             rows=rows).argmax(axis=0)
        assert len(set(unweighted[truth < 2])) == 1  # the failure the weights avoid
    # a sample of weightless rows only: seeded uniformly, every row still labelled
    rows = np.flatnonzero(truth == 2)[:50]
    resp = kmeans_responsibilities(X, y, 2, np.random.default_rng(0), rows=rows,
                                   weight=weight)
    assert np.array_equal(resp.sum(axis=0), np.ones(2000))


def test_weighted_kmeans_centres_are_weighted_means():
    # integer weights count as repeated rows: Lloyd's centres from the same seeds are
    # the same, so the labels of the distinct rows agree
    rng = np.random.default_rng(1)
    X, y = two_lines(200, seed=3)
    reps = rng.integers(1, 4, 200)
    from gmoe.initialization import _lloyd

    data = np.column_stack([X, y])
    seeds = data[[3, 50, 120]]
    rep_data = np.repeat(data, reps, axis=0)
    a = _lloyd(data, np.einsum("nd,nd->n", data, data), seeds.copy(), 100,
               reps.astype(float))
    b = _lloyd(rep_data, np.einsum("nd,nd->n", rep_data, rep_data), seeds.copy(), 100)
    assert np.array_equal(np.repeat(a, reps), b)


def test_fit_with_a_kmeans_sample_reaches_the_full_kmeans_fit(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(4000, rng=2)
    full = fit_em(X, y, 2, n_init=2, rng=0, warn=False)
    sampled = fit_em(X, y, 2, n_init=2, rng=0, kmeans_sample=300, warn=False)
    assert sampled.certified and sampled.loglik == pytest.approx(full.loglik, abs=1e-6)
    # a sample of every row is the full k-means: the same fit, bit for bit
    every = fit_em(X, y, 2, n_init=2, rng=0, kmeans_sample=4000, warn=False)
    assert every.restart_logliks == full.restart_logliks


def test_restarts_that_reach_the_same_centres_on_the_sample_run_once(paper_truth, capsys):
    # one sample serves every restart: two seedings that end at the same centres give
    # the same start, which is recognised and not run again
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(5000, rng=4)
    fit = fit_em(X, y, 2, n_init=6, rng=0, kmeans_sample=500, warn=False, verbose=1)
    assert "the same partition as an earlier start: not run again" in capsys.readouterr().err
    assert len(set(fit.restart_logliks)) < 6


# ------------------------------------------------------------ screening by tolerance
def test_screen_tol_below_tol_runs_every_restart_in_full_and_polishes_one(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(1500, rng=3)
    full = fit_em(X, y, 3, n_init=3, rng=4, polish=False, warn=False)
    screened = fit_em(X, y, 3, n_init=3, rng=4, polish=False, screen_tol=1e-12, warn=False)
    # every short run is the full run (tol wins): the same EM results, none run on
    assert screened.restart_logliks == full.restart_logliks
    assert screened.loglik == full.loglik and screened.n_iter == full.n_iter
    polished = fit_em(X, y, 3, n_init=3, rng=4, screen_tol=1e-12, warn=False)
    assert polished.restart_logliks[polished.best_restart] >= max(full.restart_logliks)


@pytest.mark.parametrize("seed", range(3))
def test_screening_by_tolerance_ends_at_the_unscreened_maximum_of_an_exact_fit(paper_truth,
                                                                              seed):
    # an exact fit: every restart ends at the same maximum, so the screened fit must
    # too, however short its screened-out runs were
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(3000, rng=10 + seed)
    full = fit_em(X, y, 2, n_init=4, rng=seed, warn=False)
    screened = fit_em(X, y, 2, n_init=4, rng=seed, screen_tol=1e-3, warn=False)
    assert screened.certified and full.certified
    assert screened.loglik >= full.loglik - 1e-9 * abs(full.loglik)
    # the chosen run went on to meet the fit's own rule (tol = 1e-6, relative)
    trace = screened.loglik_trace
    assert screened.converged and screened.n_iter == trace.size - 1
    assert abs(trace[-1] - trace[-2]) <= 1e-6 * abs(trace[-1])
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    others = np.delete(screened.restart_logliks, screened.best_restart)
    assert np.all(others <= screened.loglik)


def test_screen_tol_follows_the_per_sample_rule_with_weights(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(1500, rng=5)
    weight = np.random.default_rng(0).integers(1, 4, size=1500).astype(float)
    fit = fit_em(X, y, 2, n_init=3, rng=1, stop="per_sample", tol=1e-8, screen_tol=1e-4,
                 sample_weight=weight, polish=False, warn=False)
    trace = fit.loglik_trace
    assert fit.converged and abs(trace[-1] - trace[-2]) <= 1e-8 * weight.sum()


def test_screen_iter_and_screen_tol_together_stop_at_whichever_comes_first(paper_truth):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(1500, rng=6)
    calls = []
    fit = fit_em(X, y, 3, n_init=3, rng=2, screen_iter=2, screen_tol=1e-12, warn=False,
                 max_iter=300, progress=lambda done, total, label: calls.append((done, total)))
    # 3 short runs of at most 2 iterations, one of them run on; one polish
    assert calls[-1][0] == calls[-1][1] == 3 + 1 + 1
    assert fit.n_iter > 2


@pytest.mark.parametrize("init", ["kmeans", "auto", "split"])
@pytest.mark.parametrize("options", [{"screen_iter": 3}, {"screen_tol": 1e-3},
                                     {"screen_tol": 1e-12}])
def test_progress_counts_the_steps_of_screened_fits(paper_truth, init, options):
    X, y = GaussianMoE(SoftmaxGate(), paper_truth).sample(600, rng=7)
    calls = []
    fit_em(X, y, 3, init=init, n_init=3, rng=0, max_iter=100, warn=False,
           progress=lambda done, total, label: calls.append((done, total)), **options)
    assert calls[-1][0] == calls[-1][1] and {total for _, total in calls} == {calls[-1][1]}
