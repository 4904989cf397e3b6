"""Choosing the number of experts: the dendrogram of mixing measures, DSC, AIC, BIC, ICL.

The expected values are computed here independently of gmoe.selection: by hand for a
merge step, with explicit loops for distances, and from the fit's own AIC/BIC and the
model's posterior for the criteria.
"""

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest

from gmoe import GaussianMoE, MoEParams, SoftmaxGate, fit_em, select_experts
from gmoe.selection import (
    METHODS,
    CriteriaTable,
    aic,
    atom_distance,
    bic,
    dendrogram,
    icl,
    merge_atoms,
    n_parameters,
    responsibility_entropy,
)
from gmoe.selection.dendrogram import Coordinates


def split(params: MoEParams, j: int) -> MoEParams:
    """Expert j made into two halves of its weight (the gate's split when it has one)."""
    gate = SoftmaxGate()
    if hasattr(gate, "split"):
        return gate.split(params, j)
    from gmoe.initialization import split_expert  # older gmoe
    return gate.normal_form(split_expert(params, j))


@pytest.fixture
def three() -> MoEParams:
    """Three atoms, d = 1, in softmax normal form."""
    return MoEParams(beta0=[1.0, -0.5, 0.0], beta1=[[2.0], [1.5], [0.0]],
                     a=[[1.0], [1.2], [-3.0]], b=[0.5, 0.8, 2.0], var=[0.25, 0.36, 0.5])


@pytest.fixture
def data(three):
    return GaussianMoE("softmax", three).sample(400, rng=3)


def data_shares(p: MoEParams, X) -> list:
    """Each atom's share of the data, mean_n g_i(x_n), with explicit loops."""
    shares = [0.0] * p.k
    for x in X:
        logits = [p.beta0[i] + sum(p.beta1[i, c] * x[c] for c in range(p.d))
                  for i in range(p.k)]
        top = max(logits)
        e = [math.exp(v - top) for v in logits]
        for i in range(p.k):
            shares[i] += e[i] / sum(e) / len(X)
    return shares


def hand_distance(p: MoEParams, i: int, j: int, X=None) -> float:
    """The weighted distance written out: masses normalised to sum 1 (the data shares
    with X), no gate slopes."""
    if X is None:
        m = [math.exp(v) for v in p.beta0]
        m = [v / sum(m) for v in m]
    else:
        m = data_shares(p, X)
    pi, pj = m[i], m[j]
    fast = (p.b[i] - p.b[j]) ** 2
    slow = math.sqrt(sum((p.a[i, c] - p.a[j, c]) ** 2 for c in range(p.d))
                     + (p.var[i] - p.var[j]) ** 2)
    return pi * pj / (pi + pj) * (fast + slow)


# ----------------------------------------------------------------- one merge step
def test_first_merge_matches_a_hand_computation(three, data):
    X, y = data
    # by hand: the atoms' shares of the data are the masses of the tree; without data,
    # the intercepts' masses e^1, e^-0.5, e^0 -> 0.6285, 0.1402, 0.2312
    m = np.exp([1.0, -0.5, 0.0])
    pi = m / m.sum()
    # (the gate slopes do not enter the distance)
    d01 = pi[0] * pi[1] / (pi[0] + pi[1]) * ((0.5 - 0.8) ** 2 + math.sqrt(0.2**2 + 0.11**2))
    d02 = pi[0] * pi[2] / (pi[0] + pi[2]) * (1.5**2 + math.sqrt(4.0**2 + 0.25**2))
    d12 = pi[1] * pi[2] / (pi[1] + pi[2]) * (1.2**2 + math.sqrt(4.2**2 + 0.14**2))
    assert d01 < min(d02, d12)
    assert atom_distance(three, 0, 1) == pytest.approx(d01, rel=1e-12)
    assert atom_distance(three, 0, 2) == pytest.approx(d02, rel=1e-12)
    shares = data_shares(three, X)
    assert sum(shares) == pytest.approx(1.0)
    s01 = shares[0] * shares[1] / (shares[0] + shares[1]) * (
        (0.5 - 0.8) ** 2 + math.sqrt(0.2**2 + 0.11**2))
    assert atom_distance(three, 0, 1, X=X) == pytest.approx(s01, rel=1e-10)
    tree = dendrogram(three, X, y, standardize=False)
    first = tree.merges[0]
    assert (first.left, first.right, first.n_leaves) == (0, 1, 2)
    assert first.height == pytest.approx(s01, rel=1e-10)
    for i, j in [(0, 2), (1, 2)]:
        assert hand_distance(three, i, j, X) > s01
    # the merged atom: mass e^1 + e^-0.5, parameters averaged with shares w0, w1
    w0, w1 = m[0] / (m[0] + m[1]), m[1] / (m[0] + m[1])
    two = tree.level(2).params
    assert two.beta0[0] == pytest.approx(math.log(math.exp(1.0) + math.exp(-0.5)), rel=1e-12)
    assert two.beta1[0, 0] == pytest.approx(w0 * 2.0 + w1 * 1.5, rel=1e-12)
    assert two.a[0, 0] == pytest.approx(w0 * 1.0 + w1 * 1.2, rel=1e-12)
    assert two.b[0] == pytest.approx(w0 * 0.5 + w1 * 0.8, rel=1e-12)
    # the variance of the two Gaussians' mixture at x = 0
    assert two.var[0] == pytest.approx(w0 * 0.25 + w1 * 0.36 + w0 * w1 * (0.5 - 0.8) ** 2,
                                       rel=1e-12)
    # the untouched atom is the normal form's reference, unchanged
    assert two.beta0[1] == 0.0 and two.b[1] == 2.0 and two.var[1] == 0.5
    assert tree.level(2).members == ((0, 1), (2,))
    # the second merge joins the rest at the hand distance of the merged measure
    assert tree.merges[1].height == pytest.approx(hand_distance(two, 0, 1, X), rel=1e-10)
    assert (tree.merges[1].left, tree.merges[1].right) == (3, 2)


def test_every_level_is_the_model_with_its_own_likelihood(three, data):
    X, y = data
    tree = dendrogram(three, X, y)
    assert [lev.n_atoms for lev in tree.levels] == [3, 2, 1]
    assert tree.level(3).params.allclose(three, rtol=1e-12, atol=1e-12)
    for lev in tree.levels:
        assert lev.params.beta0[-1] == 0.0 and np.all(lev.params.beta1[-1] == 0.0)
        direct = GaussianMoE(SoftmaxGate(), lev.params).log_likelihood(X, y)
        assert lev.loglik == pytest.approx(direct, rel=1e-12)
        assert sorted(i for mem in lev.members for i in mem) == [0, 1, 2]
    # total mass is kept along the path: sum exp(beta0) in a common translation
    masses = [np.exp(lev.params.beta0 + lev.params.beta1 @ X.mean(axis=0)).sum()
              / np.exp(lev.params.beta0[-1:] + lev.params.beta1[-1:] @ X.mean(axis=0)).sum()
              for lev in tree.levels]
    assert np.all(np.isfinite(masses))
    assert np.isnan(tree.level(1).height)
    Z = tree.linkage()
    assert Z.shape == (2, 4) and list(Z[:, 3]) == [2, 3]


# ------------------------------------------------------ split halves merge back
@pytest.mark.parametrize("j", [0, 1, 2])
@pytest.mark.parametrize("standardize", [True, False])
def test_merging_the_halves_of_a_split_expert_gives_back_the_model(three, data, j,
                                                                   standardize):
    X, y = data
    halves = split(three, j)
    assert halves.k == 4
    tree = dendrogram(halves, X, y, standardize=standardize)
    first = tree.merges[0]
    assert first.height == 0.0
    assert {first.left, first.right} == {j, 3}
    back = tree.level(3).params
    assert back.allclose(three, rtol=1e-12, atol=1e-12), (back, three)
    assert tree.level(3).loglik == pytest.approx(
        GaussianMoE("softmax", three).log_likelihood(X, y), rel=1e-12)
    # and merge_atoms itself, in the model's own parametrisation
    direct = SoftmaxGate().normal_form(merge_atoms(halves, j, 3))
    assert direct.allclose(three, rtol=1e-12, atol=1e-12)


def test_merge_atoms_is_exact_for_identical_atoms():
    p = MoEParams([0.3, 0.3, 0.0], [[1.0], [1.0], [0.0]], [[2.0], [2.0], [1.0]],
                  [0.1, 0.1, 0.2], [0.4, 0.4, 0.3])
    merged = merge_atoms(p, 1, 0)
    assert merged.k == 2
    assert merged.beta0[0] == pytest.approx(0.3 + math.log(2), abs=1e-15)
    assert merged.beta1[0, 0] == 1.0 and merged.a[0, 0] == 2.0 and merged.var[0] == 0.4


def test_distances_ignore_the_gate_translation_and_survive_tiny_masses(three):
    shifted = three.shift_gate(5.0, [-3.0])
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert atom_distance(shifted, i, j) == pytest.approx(atom_distance(three, i, j),
                                                             rel=1e-12)
    # masses that underflow exp() give 0 (the two atoms weigh nothing), not 0 / 0
    tiny = three.replace(beta0=[-900.0, -905.0, 0.0])
    assert atom_distance(tiny, 0, 1) == 0.0
    small = three.replace(beta0=[-700.0, -705.0, 0.0])
    assert 0.0 < atom_distance(small, 0, 2) < 1e-290


def test_standardized_tree_is_the_raw_tree_of_the_standardized_problem(three, data):
    """Independent check of the coordinates: transform data and parameters by hand."""
    X, y = data
    mx, sx, my, sy = X.mean(0), X.std(0), y.mean(), y.std()
    p = three
    internal = MoEParams(p.beta0 + p.beta1 @ mx, p.beta1 * sx, p.a * sx / sy,
                         (p.a @ mx + p.b - my) / sy, p.var / sy**2)
    Xs, ys = (X - mx) / sx, (y - my) / sy
    ref = dendrogram(internal, Xs, ys, standardize=False)
    tree = dendrogram(p, X, y, standardize=True)
    np.testing.assert_allclose(tree.heights, ref.heights, rtol=1e-10)
    assert [(m.left, m.right) for m in tree.merges] == [(m.left, m.right) for m in ref.merges]
    for a_lev, b_lev in zip(tree.levels, ref.levels, strict=True):
        # the same models: log-likelihoods differ by the Jacobian n log sy
        assert a_lev.loglik == pytest.approx(b_lev.loglik - len(y) * np.log(sy), rel=1e-10)
    # a change of units of X and y leaves the standardised tree as it is
    # (x' = 7 x and y' = 4 y - 3 = (y - 0.75) / 0.25: the same model in other units)
    c = Coordinates(np.zeros(1), np.array([1 / 7.0]), 0.75, 0.25)
    other = dendrogram(c.to_internal(p), 7 * X, 4 * y - 3, standardize=True)
    assert [(m.left, m.right) for m in other.merges] == [(m.left, m.right) for m in tree.merges]
    np.testing.assert_allclose(other.heights, tree.heights, rtol=1e-9)
    np.testing.assert_allclose(other.dsc()[1:] - tree.dsc()[1:], np.log(len(y)) * np.log(4),
                               rtol=1e-9)


def test_coordinates_round_trip(three):
    c = Coordinates(np.array([0.4]), np.array([0.3]), 2.0, 5.0)
    assert c.to_user(c.to_internal(three)).allclose(three, rtol=1e-12, atol=1e-12)
    assert Coordinates.identity(1).to_internal(three).allclose(three, rtol=0, atol=0)


# ----------------------------------------------------------------------- the DSC
def test_dsc_formula_and_choice(three, data):
    X, y = data
    tree = dendrogram(split(three, 0), X, y)
    n = len(y)
    dsc = tree.dsc()
    assert np.isnan(dsc[0])
    for kappa in range(2, 5):
        lev = tree.level(kappa)
        expected = -(lev.height + np.log(n) * lev.loglik / n)
        assert dsc[kappa - 1] == pytest.approx(expected, rel=1e-12)
    assert tree.select() == int(np.nanargmin(dsc)) + 1
    # omega is a tuning constant: with a huge weight the likelihood alone decides
    heavy = dendrogram(split(three, 0), X, y, omega=1e9)
    best = max(range(2, 5), key=lambda kappa: heavy.level(kappa).loglik)
    assert heavy.select() == best
    with pytest.raises(ValueError, match="omega"):
        dendrogram(three, X, y, omega=-1.0)


def test_dsc_recovers_two_well_separated_experts_from_four():
    truth = MoEParams([0.0, 0.0], [[4.0], [0.0]], [[3.0], [-3.0]], [-1.0, 1.0],
                      [0.05, 0.05])
    X, y = GaussianMoE("softmax", truth).sample(3000, rng=11)
    fit = fit_em(X, y, 4, init="near_truth", truth=truth, rng=2, warn=False)
    tree = dendrogram(fit, X, y)
    assert tree.select() == 2
    # the chosen level separates the two true experts' atoms
    level = tree.level(2)
    assert level.loglik > tree.level(1).loglik + 100


def test_one_expert_tree():
    p = MoEParams([0.0], [[0.0]], [[1.0]], [0.0], [1.0])
    X = np.linspace(0, 1, 20)[:, None]
    tree = dendrogram(p, X, X[:, 0])
    assert tree.k == 1 and tree.merges == [] and tree.select() == 1
    assert tree.linkage().shape == (0, 4)


def test_dendrogram_refuses_other_gates_and_bad_input(three, data):
    X, y = data
    with pytest.raises(ValueError, match="softmax"):
        dendrogram(three.replace(tau=1.0), X, y, gate={"name": "temperature", "tau": 1.0})
    with pytest.raises(ValueError, match="columns"):
        dendrogram(three, np.hstack([X, X]), y)
    with pytest.raises(ValueError, match="FitResult"):
        dendrogram("not a fit", X, y)
    with pytest.raises(ValueError, match="distinct"):
        merge_atoms(three, 1, 1)
    with pytest.raises(ValueError, match="index"):
        merge_atoms(three, 0, 3)


# ----------------------------------------------------------- information criteria
def test_criteria_agree_with_the_fit_and_a_direct_entropy(three, data):
    X, y = data
    fit = fit_em(X, y, 2, rng=0, warn=False)
    p = n_parameters(fit.params, fit.gate)
    assert p == 2 * (1 + 2) + (2 - 1) * (1 + 1) == fit.n_parameters()
    assert aic(fit.loglik, p) == pytest.approx(fit.aic(), rel=1e-12)
    assert bic(fit.loglik, p, len(y)) == pytest.approx(fit.bic(), rel=1e-12)
    r = fit.model.posterior(X, y)
    entropy = -sum(v * math.log(v) for v in r.ravel() if v > 0)
    assert responsibility_entropy(fit.model, X, y) == pytest.approx(entropy, rel=1e-10)
    assert icl(fit.loglik, p, len(y), entropy) == pytest.approx(fit.bic() + 2 * entropy,
                                                                rel=1e-12)
    assert 0 <= entropy <= len(y) * math.log(2)


def test_bic_warns_when_the_observations_do_not_outnumber_the_parameters(data):
    X, y = data
    fit = fit_em(X, y, 2, rng=0, warn=False)
    p = fit.n_parameters()
    # weights normalised to sum 1: log n = 0, the penalty vanishes; the warning names
    # the caller's line, not gmoe's
    with pytest.warns(UserWarning, match="log n = 0") as record:
        assert bic(fit.loglik, p, 1.0) == pytest.approx(-2 * fit.loglik, rel=1e-15)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="frequency weights") as record:
        dataclasses.replace(fit, nobs=1.0).bic()
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="not meaningful") as record:
        icl(fit.loglik, p, p, 0.0)
    assert len(record) == 1 and record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bic(fit.loglik, p, p + 1)
        fit.bic()


def test_entropy_is_zero_for_certain_responsibilities():
    p = MoEParams([0.0, 0.0], [[0.0], [0.0]], [[0.0], [0.0]], [-50.0, 50.0], [1.0, 1.0])
    X = np.zeros((10, 1))
    y = np.r_[np.full(5, -50.0), np.full(5, 50.0)]
    assert responsibility_entropy(GaussianMoE("softmax", p), X, y) == pytest.approx(0.0,
                                                                                  abs=1e-12)


def test_criteria_table_summary_and_dict():
    table = CriteriaTable({"k": np.arange(1, 4), "bic": np.array([3.0, 1.0, 2.0]),
                           "certified": np.array([True, True, False])}, "bic", 2, note="n")
    text = table.summary()
    assert "*   2" in text and "lower is better" in text and "no" in text
    d = table.to_dict()
    json.dumps(d)
    assert d["chosen"] == 2 and d["columns"]["bic"] == [3.0, 1.0, 2.0]
    assert list(table.to_frame().index) == [1, 2, 3]
    with pytest.raises(ValueError, match="lengths"):
        CriteriaTable({"k": [1, 2], "bic": [1.0]}, "bic", 1)


# ---------------------------------------------------------------- select_experts
@pytest.fixture(scope="module")
def two_experts():
    truth = MoEParams([0.0, 0.0], [[4.0], [0.0]], [[3.0], [-3.0]], [-1.0, 1.0],
                      [0.05, 0.05])
    return GaussianMoE("softmax", truth).sample(1500, rng=5)


@pytest.mark.parametrize("method", METHODS)
def test_select_experts_finds_two_experts(two_experts, method):
    X, y = two_experts
    res = select_experts(X, y, 3, method=method, rng=0, n_init=2)
    assert res.k == 2
    assert res.params.k == 2 and res.fit.params.k == 2
    assert res.table.chosen == 2 and res.table.criterion == ("dsc" if method == "dendrogram"
                                                            else method)
    assert sorted(res.fits) == ([3] if method == "dendrogram" else [1, 2, 3])
    assert res.tree is not None and res.tree.k == 3
    assert "k = 2" in res.summary()
    json.dumps(res.to_dict())
    if method != "dendrogram":
        col = res.table[method]
        assert int(np.argmin(col)) + 1 == 2
        assert np.all(res.table["icl"] >= res.table["bic"] - 1e-9)


def test_select_experts_plot_labels_leaves(two_experts):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = two_experts
    res = select_experts(X, y, 3, rng=0)
    fig = res.plot()
    labels = {t.get_text() for t in fig.axes[0].get_xticklabels()}
    assert labels == {"expert 0", "expert 1", "expert 2"}
    assert fig.axes[0].get_ylabel() == "merge height"
    plt.close(fig)


@pytest.mark.parametrize("k_max", [0, -1, 1.5, True, "3", None])
def test_select_experts_rejects_bad_k_max(two_experts, k_max):
    X, y = two_experts
    with pytest.raises(ValueError, match="k_max must be an integer >= 1"):
        select_experts(X, y, k_max)


def test_select_experts_rejects_unknown_method_listing_the_methods(two_experts):
    X, y = two_experts
    with pytest.raises(ValueError) as info:
        select_experts(X, y, 3, method="dic")
    for name in METHODS:
        assert repr(name) in str(info.value)


def test_select_experts_other_errors(two_experts):
    X, y = two_experts
    with pytest.raises(ValueError, match="softmax"):
        select_experts(X, y, 3, method="dendrogram",
                       gate={"name": "temperature", "tau": 1.0})
    with pytest.raises(ValueError, match="n_experts"):
        select_experts(X, y, 3, n_experts=2)
    with pytest.raises(ValueError, match="samples"):
        select_experts(X[:2], y[:2], 3)


def test_select_experts_with_one_expert_and_another_gate(two_experts):
    X, y = two_experts
    assert select_experts(X, y, 1, method="bic", rng=0).k == 1
    assert select_experts(X, y, 1, rng=0).k == 1
    res = select_experts(X[:400], y[:400], 2, method="bic",
                         gate={"name": "temperature", "tau": 1.0, "learn_tau": False}, rng=0)
    assert res.tree is None and res.k in (1, 2)
    import matplotlib

    matplotlib.use("Agg")
    fig = res.plot()
    assert "bic" in fig.axes[0].get_ylabel()


def test_weighted_dendrogram_equals_the_dendrogram_of_repeated_rows(three, data):
    X, y = data
    reps = np.random.default_rng(4).integers(0, 4, len(y))  # weights 0 to 3
    fitted = GaussianMoE("softmax", three)
    for standardize in (True, False):
        weighted = dendrogram(fitted, X, y, sample_weight=reps.astype(float),
                              standardize=standardize)
        repeated = dendrogram(fitted, np.repeat(X, reps, axis=0), np.repeat(y, reps),
                              standardize=standardize)
        assert weighted.n_samples == repeated.n_samples == reps.sum()
        np.testing.assert_allclose(weighted.heights, repeated.heights, rtol=1e-10)
        np.testing.assert_allclose(weighted.dsc(), repeated.dsc(), rtol=1e-10)
        assert [m.left for m in weighted.merges] == [m.left for m in repeated.merges]
        for a, b in zip(weighted.levels, repeated.levels, strict=True):
            assert a.loglik == pytest.approx(b.loglik, rel=1e-12)
            assert a.params.allclose(b.params, rtol=1e-10, atol=1e-10)
    # the weights matter: leaving out a third of the rows changes the masses
    assert not np.allclose(dendrogram(fitted, X, y).heights, weighted.heights)


def test_select_experts_with_weights_counts_them_in_every_criterion(two_experts):
    X, y = two_experts
    X, y = X[:600], y[:600]
    w = np.random.default_rng(7).integers(1, 4, len(y)).astype(float)
    res = select_experts(X, y, 3, method="icl", rng=2, n_init=1, sample_weight=w)
    table = res.table.columns
    for k, fit in res.fits.items():
        assert fit.nobs == pytest.approx(w.sum())
        p = n_parameters(fit.params, fit.gate)
        # the weighted entropy, with explicit sums; the criteria with n = sum(w)
        r = fit.model.posterior(X, y)
        entropy = -sum(w[i] * v * math.log(v) for i in range(len(y)) for v in r[i] if v > 0)
        row = k - 1
        assert table["entropy"][row] == pytest.approx(entropy, rel=1e-10)
        assert table["bic"][row] == pytest.approx(-2 * fit.loglik + p * math.log(w.sum()),
                                                  rel=1e-12)
        assert table["icl"][row] == pytest.approx(table["bic"][row] + 2 * entropy,
                                                  rel=1e-12)
    assert "sum of the weights" in res.summary()
    tree = select_experts(X, y, 3, rng=2, n_init=1, sample_weight=w).tree
    assert tree.n_samples == pytest.approx(w.sum())


# ------------------------------------------------------------------------- CLI
@pytest.fixture
def two_experts_csv(tmp_path, two_experts):
    X, y = two_experts
    path = tmp_path / "data.csv"
    rows = "\n".join(f"{x:.6f},{v:.6f}" for x, v in zip(X[:800, 0], y[:800], strict=True))
    path.write_text("x,y\n" + rows + "\n")
    return path


def test_select_command_prints_the_table_and_writes_the_picture(two_experts_csv, tmp_path,
                                                                capsys):
    from gmoe.cli import main

    png = tmp_path / "tree.png"
    code = main(["select", str(two_experts_csv), "--k-max", "3", "--out", str(png),
                 "--n-init", "2"])
    out = capsys.readouterr().out
    assert code == 0   # BIC by default
    assert "method = bic" in out and "k = 2" in out and f"picture: {png}" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    code = main(["select", str(two_experts_csv), "--k-max", "3", "--method", "dendrogram",
                 "--out", str(tmp_path / "d.png"), "--n-init", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "dsc" in out and "k = 2" in out
    code = main(["select", str(two_experts_csv), "--k-max", "3", "--method", "bic",
                 "--out", str(tmp_path / "b.png"), "--n-init", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "bic" in out and "icl" in out and "k = 2" in out


def test_select_command_takes_a_weights_column(two_experts, tmp_path, capsys):
    from gmoe.cli import main

    X, y = two_experts
    w = np.random.default_rng(1).integers(0, 3, len(y))
    path = tmp_path / "weighted.csv"
    np.savetxt(path, np.column_stack([X[:, 0], w, y]), delimiter=",", header="x,w,y",
               comments="")
    code = main(["select", str(path), "--k-max", "3", "--method", "bic", "--weights", "w",
                 "--out", str(tmp_path / "w.png"), "--n-init", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "features: x; response: y" in out and "k = 2" in out
    # n once, with the weights' total and the rows they weigh
    assert out.count("n = ") == 1
    assert f"n = {w.sum()} (sum of the weights of {(w > 0).sum()} rows)" in out


@pytest.mark.parametrize("args,expected", [
    (["--k-max", "0"], "--k-max must be an integer >= 1"),
    (["--k-max", "two"], "invalid int value"),
    (["--method", "dic"], "invalid choice"),
    (["--n-init", "0"], "n_init"),
])
def test_select_command_bad_options_exit_2_in_one_line(two_experts_csv, capsys, args,
                                                        expected):
    from gmoe.cli import main

    assert main(["select", str(two_experts_csv), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert "Traceback" not in err[0]


def test_select_command_bad_files_exit_2_in_one_line(tmp_path, capsys):
    from gmoe.cli import main

    assert main(["select", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gmoe select: no such file" in err[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n0.1,1.0\n0.2,abc\n")
    assert main(["select", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gmoe select:") and "line 3" in err[0]


# ------------------------------------------------------------ sweeps: the metric
def test_contaminate_replaces_a_share_by_wide_draws():
    from gmoe.sweep import contaminate

    y = np.random.default_rng(0).normal(size=20000)
    assert contaminate(y, 0.0, 10.0, np.random.default_rng(1)) is y
    out = contaminate(y, 0.1, 10.0, np.random.default_rng(1))
    changed = out != y
    assert 0.09 < changed.mean() < 0.11
    assert 7 < out[changed].std() < 13


SMALL = {
    "name": "sel-test", "seed": 3, "reps": 2, "metrics": ["selection"],
    "truth": {"gate": "softmax", "beta0": [0.0, 0.0], "beta1": [[4.0], [0.0]],
              "a": [[3.0], [-3.0]], "b": [-1.0, 1.0], "var": [0.05, 0.05]},
    "fit": {"n_experts": 3, "init": "near_truth"},
    "n_grid": {"values": [400, 800]},
    "grid": {"data.outliers": [0.0, 0.1]},
}


def test_config_data_table_is_validated():
    from gmoe.config import ConfigError, load_config

    cfgs = load_config(SMALL)
    assert [c.raw["data"]["outliers"] for c in cfgs] == [0.0, 0.1]
    assert cfgs[0].label == "outliers=0.0"
    for bad, key in [({"outliers": 1.0}, "data.outliers"), ({"outliers": -0.1}, "outliers"),
                     ({"outliers": 0.1, "outlier_scale": 0}, "outlier_scale"),
                     ({"share": 0.1}, "data.share")]:
        raw = {k: v for k, v in SMALL.items() if k != "grid"} | {"data": bad}
        with pytest.raises(ConfigError, match=key):
            load_config(raw)
    plain = {k: v for k, v in SMALL.items() if k != "grid"}
    # a config without [data] keeps its hash: nothing is defaulted into it
    assert "data" not in load_config(plain)[0].raw


def test_sweep_records_the_choices_and_draws_the_accuracy(tmp_path):
    from gmoe import load_results, run_sweep
    from gmoe.plots import plot_sweep

    out = tmp_path / "sel"
    result = run_sweep(SMALL, out, n_jobs=1, progress=False)
    assert result.n_tasks == 8
    df = load_results(out)
    assert set(df["status"]) <= {"ok", "failed"}
    for key in ("k_dsc", "k_aic", "k_bic", "k_icl"):
        assert df[key].isin([1, 2, 3]).all(), df[key]
    assert (df["k_true"] == 2).all()
    assert df["loss_merged"].notna().all()
    detail = df["selection"].iloc[0]
    assert len(detail["bic"]) == 3 and len(detail["dsc"]) == 3
    bic = np.array(detail["bic"])
    assert df["k_bic"].iloc[0] == int(np.argmin(bic)) + 1
    files = [p.name for p in plot_sweep(out, formats=("png",))]
    assert "sel-test_selection.png" in files and "sel-test_loss_merged.png" in files


def test_default_is_bic_and_a_dendrogram_at_its_largest_level_warns():
    # the selection guide's two experts with k_max = 6 from k-means starts: the six
    # fitted experts are pieces of the two lines, no merge of them fits as well as
    # the six, and the DSC chooses k_max; BIC (the default) fits every k
    from gmoe import SelectionWarning

    truth = MoEParams(beta0=[0.0, 0.0], beta1=[[4.0], [0.0]], a=[[3.0], [-3.0]],
                      b=[-1.0, 1.0], var=[0.05, 0.05])
    X, y = GaussianMoE("softmax", truth).sample(1500, rng=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelectionWarning)
        res = select_experts(X, y, 6, rng=0, n_init=2)
    assert res.method == "bic" and res.k == 2
    with pytest.warns(SelectionWarning, match="k = k_max = 6"):
        dsc = select_experts(X, y, 6, method="dendrogram", rng=0, n_init=2)
    assert dsc.k == 6
    with warnings.catch_warnings():   # a level below k_max: no warning
        warnings.simplefilter("error", SelectionWarning)
        assert select_experts(X, y, 3, method="dendrogram", rng=0, n_init=2).k == 2


def test_every_fit_failing_raises_fit_failed_error():
    from gmoe import FitFailedError

    X = np.random.default_rng(0).uniform(size=(200, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FitFailedError, match="no fit succeeded") as info:
            select_experts(X, np.full(200, 3.0), 3, rng=0)   # a constant response
    assert isinstance(info.value, ValueError)
