import json
import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

from gmoe import ActivationGate, GaussianMoE, MoEParams
from gmoe.gates import SoftmaxGate, TemperatureGate
from gmoe.losses import VoronoiLoss, voronoi_cells, voronoi_loss
from gmoe.parameter_errors import ParameterErrors, parameter_errors

from .conftest import random_params

# ------------------------------------------------------------------ helpers


def brute_loss(fit: MoEParams, truth: MoEParams, t0: float, t1, kind: str = "exact",
               metric: str = "euclidean") -> float:
    """docs/theory.md, "Losses", term by term, with explicit loops over the atoms.

    Weights exp(beta0 + t0), or exp((beta0 + t0) / tau) when the parameters carry tau;
    cells by the stacked (beta1 + t1, a, b, var) distance, ties to the lower true atom.
    """
    t1 = np.zeros(fit.d) if t1 is None else np.asarray(t1, dtype=float)

    def weight(p, i, shift):
        b0 = p.beta0[i] + shift
        return math.exp(b0 / p.tau if p.tau is not None else b0)

    cells = [[] for _ in range(truth.k)]
    for i in range(fit.k):
        best_j, best_dist = -1, math.inf
        for j in range(truth.k):
            diff = np.concatenate([fit.beta1[i] + t1 - truth.beta1[j], fit.a[i] - truth.a[j],
                                   [fit.b[i] - truth.b[j]], [fit.var[i] - truth.var[j]]])
            dist = math.sqrt(sum(x * x for x in diff)) if metric == "euclidean" \
                else sum(abs(x) for x in diff)
            if dist < best_dist:
                best_j, best_dist = j, dist
        cells[best_j].append(i)
    total = 0.0
    for j in range(truth.k):
        total += abs(sum(weight(fit, i, t0) for i in cells[j]) - weight(truth, j, 0.0))
        size = len(cells[j])
        for i in cells[j]:
            if kind == "exact" or size == 1:
                r, h = 1.0, 1.0
            elif size == 2:
                r, h = 4.0, 2.0
            elif size == 3:
                r, h = 6.0, 3.0
            else:
                raise ValueError("cell of 4 or more")
            dbeta1 = np.linalg.norm(fit.beta1[i] + t1 - truth.beta1[j])
            da = np.linalg.norm(fit.a[i] - truth.a[j])
            db = abs(fit.b[i] - truth.b[j])
            dvar = abs(fit.var[i] - truth.var[j])
            total += weight(fit, i, t0) * (dbeta1**r + da**h + db**r + dvar**h)
    if fit.tau is not None and truth.tau is not None:
        total += abs(fit.tau - truth.tau)
    return total


def brute_infimum_d1(fit, truth, kind):
    """Grid over (t0, t1) in [-6, 6]^2, then Nelder-Mead on the brute loss from the best."""
    grid = np.linspace(-6, 6, 49)
    best = min((brute_loss(fit, truth, a, [b], kind), a, b) for a in grid for b in grid)
    res = minimize(lambda s: brute_loss(fit, truth, s[0], s[1:], kind), [best[1], best[2]],
                   method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
    return min(best[0], res.fun)


def near_truth(rng, truth: MoEParams, assign, scale: float) -> MoEParams:
    """A fit whose atom i perturbs true atom assign[i]; split atoms share the weight."""
    assign = np.asarray(assign)
    counts = np.bincount(assign, minlength=truth.k)[assign]
    k = assign.size
    return MoEParams(truth.beta0[assign] - np.log(counts) + scale * rng.normal(size=k),
                     truth.beta1[assign] + scale * rng.normal(size=(k, truth.d)),
                     truth.a[assign] + scale * rng.normal(size=(k, truth.d)),
                     truth.b[assign] + scale * rng.normal(size=k),
                     truth.var[assign] * np.exp(scale * rng.normal(size=k)))


# --------------------------------------------------------- hand-worked cases


def hand_pair():
    truth = MoEParams(beta0=[0.0, 0.0], beta1=[[1.0], [0.0]], a=[[0.0], [0.0]], b=[0.0, 3.0],
                      var=[1.0, 1.0])
    fit = MoEParams(beta0=np.log([1.5, 0.5]), beta1=[[1.25], [0.0]], a=[[0.0], [0.5]],
                    b=[0.1, 3.0], var=[1.0, 1.2])
    return fit, truth


def test_d1_hand_worked_at_zero_shift_and_at_the_infimum():
    fit, truth = hand_pair()
    # cells: atom 0 -> true 0 (squared distance 0.0625 + 0.01), atom 1 -> true 1 (0.25 + 0.04)
    assert voronoi_cells(fit, truth) == [[0], [1]]
    # no shift: weights |1.5 - 1| + |0.5 - 1| = 1.0
    #   atom 0: 1.5 * (|dbeta1| 0.25 + |da| 0 + |db| 0.1 + |dvar| 0) = 0.525
    #   atom 1: 0.5 * (0 + 0.5 + 0 + 0.2) = 0.35             total 1.875
    at_zero = voronoi_loss(fit, truth, shift=0.0)
    assert at_zero.value == pytest.approx(1.875, abs=1e-12)
    np.testing.assert_allclose(at_zero.weight_terms, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(at_zero.param_terms, [0.525, 0.35], atol=1e-12)
    # infimum: with u = exp(t0) the loss is |1.5u - 1| + |0.5u - 1| + u C(t1),
    #   C(t1) = 1.5 (|0.25 + t1| + 0.1) + 0.5 (|t1| + 0.5 + 0.2), smallest at t1 = -0.25:
    #   C = 0.625. For C < 2 the best u is the kink u = 2/3: 2/3 + (2/3) 0.625 = 13/12.
    loss = voronoi_loss(fit, truth, translation="infimum")
    assert loss.value == pytest.approx(13 / 12, abs=1e-9)
    np.testing.assert_allclose(loss.shift, [np.log(2 / 3), -0.25], atol=1e-6)
    assert loss.unshifted == pytest.approx(1.875, abs=1e-12)
    assert loss.value == pytest.approx(brute_loss(fit, truth, *loss.shift[:1], loss.shift[1:]),
                                       abs=1e-12)
    # mass (the default): the fitted total 1.5 + 0.5 already equals the true 2, so u = 1
    #   and only t1 moves: 0.5 + 0.5 + C(-0.25) = 1.625
    mass = voronoi_loss(fit, truth)
    assert mass.translation == "mass" and loss.translation == "infimum"
    assert mass.value == pytest.approx(1.625, abs=1e-9)
    np.testing.assert_allclose(mass.shift, [0.0, -0.25], atol=1e-6)
    # none: the loss at shift 0
    none = voronoi_loss(fit, truth, translation="none")
    assert none.value == pytest.approx(1.875, abs=1e-12) and none.shift.tolist() == [0, 0]


def test_d2_hand_worked_cells_of_two_and_one():
    truth = MoEParams(beta0=[0.0, 0.0], beta1=[[0.0], [0.0]], a=[[0.0], [0.0]], b=[0.0, 5.0],
                      var=[1.0, 1.0])
    fit = MoEParams(beta0=np.log([0.5, 0.5, 1.0]), beta1=[[0.5], [-0.5], [0.0]],
                    a=[[0.0], [0.2], [0.0]], b=[0.0, 0.0, 5.5], var=[1.0, 1.4, 1.0])
    # cells {0, 1} -> true 0 and {2} -> true 1; weights 0.5 + 0.5 = 1 and 1: no weight term
    # D2, cell of 2 (r = 4): 0.5 * 0.5^4 = 0.03125 and 0.5 * (0.5^4 + 0.2^2 + 0.4^2) = 0.13125
    #     cell of 1 (r = 1): 1 * 0.5 = 0.5                               total 0.6625
    # D1: 0.5 * 0.5 + 0.5 * (0.5 + 0.2 + 0.4) + 0.5 = 1.3
    # Both are smallest at shift 0 (symmetric beta1 in the split cell, |t1| in the other;
    # in u the slopes are -2 + C < 0 left of u = 1 and 2 + C > 0 right of it).
    d2 = voronoi_loss(fit, truth, kind="over")
    assert d2.cells == ((0, 1), (2,))
    assert d2.value == pytest.approx(0.6625, abs=1e-9)
    np.testing.assert_allclose(d2.param_terms, [0.1625, 0.5], atol=1e-9)
    np.testing.assert_allclose(d2.shift, [0.0, 0.0], atol=1e-6)
    assert voronoi_loss(fit, truth, kind="exact").value == pytest.approx(1.3, abs=1e-9)


def test_d2_hand_worked_cell_of_three():
    truth = MoEParams([0.0], [[0.0]], [[0.0]], [0.0], [1.0])
    fit = MoEParams(np.log([1 / 3] * 3), [[0.5], [0.0], [-0.5]], [[0.0], [0.3], [0.0]],
                    [0.0, 0.0, 0.2], [1.0, 1.0, 1.5])
    # r = 6: (1/3) * (0.5^6 + 0.3^3 + (0.5^6 + 0.2^6 + 0.5^3))
    #      = (1/3) * (0.015625 + 0.027 + 0.140689) = 0.0611046...
    expected = (0.015625 + 0.027 + 0.015625 + 0.000064 + 0.125) / 3
    loss = voronoi_loss(fit, truth, kind="over")
    assert loss.cell_sizes.tolist() == [3]
    assert loss.value == pytest.approx(expected, abs=1e-9)


# ----------------------------------------------------- against brute force


@pytest.mark.parametrize("kind", ["exact", "over"])
@pytest.mark.parametrize("metric", ["euclidean", "l1"])
def test_loss_at_given_shifts_matches_brute_force(kind, metric):
    rng = np.random.default_rng(11)
    for trial in range(12):
        d = 1 + trial % 3
        truth = random_params(rng, 2, d)
        assign = [0, 1, rng.integers(2), rng.integers(2)][: 2 + trial % 3]
        fit = near_truth(rng, truth, assign, scale=0.4)
        if trial % 4 == 0:  # temperature: weights exp((beta0 + t0) / tau), + |tau - tau*|
            fit, truth = fit.replace(tau=0.7), truth.replace(tau=1.3)
        shift = rng.normal(size=1 + d)
        try:
            expected = brute_loss(fit, truth, shift[0], shift[1:], kind, metric)
        except ValueError:
            continue
        got = voronoi_loss(fit, truth, kind, metric, shift=shift)
        assert got.value == pytest.approx(expected, rel=1e-12, abs=1e-14)
        assert got.value == pytest.approx(got.cell_terms.sum() + got.tau_term, rel=1e-12)


@pytest.mark.parametrize("kind,assign,seed", [("exact", [0, 1], 0), ("over", [0, 1, 0], 1),
                                               ("over", [0, 1, 1, 0], 2),
                                               ("exact", [0, 1, 1], 3)])
def test_infimum_is_no_worse_than_a_brute_force_search(kind, assign, seed):
    rng = np.random.default_rng(seed)
    truth = random_params(rng, 2, 1)
    fit = near_truth(rng, truth, assign, scale=0.3).shift_gate(0.8, [-0.6])
    loss = voronoi_loss(fit, truth, kind, translation="infimum")
    # the reported value is the brute-force loss at the reported shift ...
    assert loss.value == pytest.approx(
        brute_loss(fit, truth, loss.shift[0], loss.shift[1:], kind), rel=1e-10)
    # ... and no brute-force search finds a smaller one
    assert loss.value <= brute_infimum_d1(fit, truth, kind) + 1e-9
    assert loss.value <= loss.unshifted


@pytest.mark.parametrize("seed", range(6))
def test_exact_d1_shift_is_no_worse_than_the_numerical_search_or_a_dense_scan(seed):
    """The exact one-feature search (:func:`_line_infimum`) against the d > 1 search
    (scan + Nelder-Mead) on the same problem and against a dense grid of t1: never
    above either (to rounding), and the value is the loss at the returned shift."""
    from gmoe._shift_search import _Problem, _search_infimum
    from gmoe.losses import _resolve

    rng = np.random.default_rng(seed)
    for trial in range(12):
        kstar = int(rng.integers(1, 4))
        truth = random_params(rng, kstar, 1)
        k = kstar + int(rng.integers(0, 3))
        assign = np.concatenate([np.arange(kstar), rng.integers(0, kstar, k - kstar)])
        fit = near_truth(rng, truth, assign, scale=[0.01, 0.3, 1.0][trial % 3])
        fit = fit.shift_gate(rng.normal(), [rng.normal()])
        kind, metric = ["exact", "over"][trial % 2], ["euclidean", "l1"][trial // 6]
        for translation in ("mass", "infimum"):
            try:
                loss = voronoi_loss(fit, truth, kind, metric, translation=translation)
            except ValueError:  # kind="over" with a cell of four atoms everywhere
                continue
            f, t, _, slopes = _resolve(fit, truth, None)
            problem = _Problem(f, t, slopes, kind, metric, pin_mass=translation == "mass")
            assert loss.value == pytest.approx(problem.value_t1(loss.shift[1:]), rel=1e-12)
            searched = problem.value_t1(_search_infimum(problem))
            assert loss.value <= searched + 1e-10 * max(1.0, searched)
            lo, hi = loss.shift[1] - 3.0, loss.shift[1] + 3.0
            grid = problem.profiles(np.linspace(lo, hi, 4001)[:, None])[0]
            assert loss.value <= grid.min() + 1e-12 * max(1.0, grid.min())


@pytest.mark.parametrize("seed", range(4))
def test_line_minimisers_match_a_brute_force_minimum(seed):
    from gmoe._shift_search import _line_minimisers

    rng = np.random.default_rng(seed)
    m, k = 40, 5
    centre = rng.normal(size=(m, k))
    weight = rng.exponential(size=k)
    power = rng.choice([1.0, 4.0, 6.0], size=(m, k))
    lo = rng.normal(size=m) - rng.exponential(size=m)
    hi = lo + rng.exponential(size=m)
    lo[:5], hi[-5:] = -np.inf, np.inf
    got = _line_minimisers(lo, hi, centre, weight, power)
    def F(t, r):  # F at the points t (any shape) of interval r
        return np.sum(weight * np.abs(np.asarray(t)[..., None] - centre[r]) ** power[r],
                      axis=-1)

    for r in range(m):
        assert lo[r] <= got[r] <= hi[r]
        a = max(lo[r], min(centre[r].min() - 1, hi[r]))
        b = min(hi[r], max(centre[r].max() + 1, lo[r]))
        brute = F(np.linspace(a, b, 20001), r).min()
        assert F(got[r], r) <= brute + 1e-12


# ---------------------------------------------------------------- invariances


@pytest.mark.parametrize("kind", ["exact", "over"])
def test_zero_at_the_truth_and_at_any_translation_of_it(kind):
    rng = np.random.default_rng(3)
    truth = random_params(rng, 3, 2)
    assert voronoi_loss(truth, truth, kind).value < 1e-12
    for t0, t1 in [(1.5, [0.5, -2.0]), (-2.2, [3.0, 1.0]), (0.3, [-0.4, 0.2]),
                   (4.0, [0.0, 0.0])]:
        loss = voronoi_loss(truth.shift_gate(t0, t1), truth, kind)
        assert loss.value < 1e-8
        np.testing.assert_allclose(loss.shift, -np.r_[t0, t1], atol=1e-8)
        # the translation is not free: without the infimum the loss is large
        assert loss.unshifted > 0.1


def test_zero_at_translations_with_temperature_and_with_intercept_only_gates():
    rng = np.random.default_rng(4)
    truth = random_params(rng, 3, 1).replace(tau=0.5)
    fitted = truth.shift_gate(1.7, [-2.0])
    assert voronoi_loss(fitted, truth).value < 1e-8
    # an activation gate: only t0 moves; GaussianMoE arguments carry their gate
    loss = voronoi_loss(truth.shift_gate(1.7), truth, kind="over", gate=ActivationGate("tanh"))
    assert loss.value < 1e-8 and loss.shift == pytest.approx([-1.7])
    # a beta1 shift is not in its translation group: the loss sees it
    model = GaussianMoE(ActivationGate("tanh"), truth)
    slid = GaussianMoE(ActivationGate("tanh"), truth.shift_gate(0.0, [0.5]))
    assert voronoi_loss(slid, model).value > 0.1
    # tau enters by |tau - tau*| (exponent 1) when both carry it
    hotter = GaussianMoE(ActivationGate("tanh"), truth.replace(tau=0.8))
    loss = voronoi_loss(hotter, model)
    assert loss.tau_term == pytest.approx(0.3)
    assert loss.value == pytest.approx(0.3 + loss.cell_terms.sum())


@pytest.mark.parametrize("kind", ["exact", "over"])
def test_unchanged_under_permutation_of_the_fitted_atoms(kind):
    rng = np.random.default_rng(5)
    truth = random_params(rng, 2, 2)
    fit = near_truth(rng, truth, [0, 1, 1, 0], scale=0.2)
    base = voronoi_loss(fit, truth, kind)
    for _ in range(3):
        order = rng.permutation(fit.k)
        permuted = voronoi_loss(fit.permute(order), truth, kind)
        assert permuted.value == pytest.approx(base.value, rel=1e-9, abs=1e-12)
        assert sorted(map(len, permuted.cells)) == sorted(map(len, base.cells))


def test_d2_is_zero_for_a_true_atom_split_into_two_with_the_same_theta():
    rng = np.random.default_rng(6)
    truth = random_params(rng, 3, 2)
    # atom 1 split into atoms 1 and 3 with weights 0.7 w + 0.3 w = w, w = exp(beta0*_1)
    beta0 = np.r_[truth.beta0, truth.beta0[1] + np.log(0.3)]
    beta0[1] += np.log(0.7)
    split = MoEParams(beta0, np.r_[truth.beta1, truth.beta1[1:2]], np.r_[truth.a, truth.a[1:2]],
                      np.r_[truth.b, truth.b[1]], np.r_[truth.var, truth.var[1]])
    loss = voronoi_loss(split, truth, kind="over")
    assert loss.cell_sizes.tolist() == [1, 2, 1]
    assert loss.value < 1e-12
    # unequal weights that do not add up are seen
    assert voronoi_loss(split.replace(beta0=split.beta0 + [0, 0, 0, 0.1]), truth,
                        kind="over").value > 1e-3


def test_split_reference_expert_has_a_small_loss_not_a_floor(paper_truth):
    # fitted in normal form: expert 3 is the reference (0, 0); experts 2 and 3 split the
    # true reference expert with equal weights, so exp(beta0) add up to 2 at shift 0 and
    # to 1 after t0 = -log 2 (which also brings expert 1 back to beta0 = -8).
    eps = 1e-3
    fit = MoEParams(beta0=[-8 + np.log(2), 0.0, 0.0], beta1=[[25.0], [eps], [0.0]],
                    a=[[-20.0], [20.0 + eps], [20.0 - eps]], b=[15.0, -5.0, -5.0 + eps],
                    var=[0.09, 0.16, 0.16 + eps])
    loss = voronoi_loss(fit, paper_truth, kind="over")
    assert loss.unshifted > 0.99  # the published defect: |2 - 1| never shrinks
    assert loss.value < 1e-5
    assert loss.shift[0] == pytest.approx(-np.log(2), abs=1e-6)
    assert loss.cell_sizes.tolist() == [1, 2]


# ------------------------------------------------------------------- rates


def _loglog_slope(ts, values):
    return np.polyfit(np.log(ts), np.log(values), 1)[0]


def test_d1_scales_like_t_on_a_perturbation_path():
    rng = np.random.default_rng(7)
    truth = random_params(rng, 2, 2)
    direction = near_truth(rng, truth, [0, 1], scale=1.0)
    ts = np.geomspace(1e-4, 1e-2, 6)
    values = []
    for t in ts:
        fit = MoEParams(*(getattr(truth, f) + t * (getattr(direction, f) - getattr(truth, f))
                          for f in ("beta0", "beta1", "a", "b", "var")))
        values.append(voronoi_loss(fit, truth, "exact").value)
    assert _loglog_slope(ts, values) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("field,power", [("beta1", 4.0), ("a", 2.0)])
def test_d2_cell_of_two_moving_symmetrically_scales_like_t4_in_beta1_t2_in_a(field, power):
    rng = np.random.default_rng(8)
    truth = random_params(rng, 2, 2)
    v = rng.normal(size=2)
    ts = np.geomspace(1e-3, 1e-1, 6)
    terms = []
    for t in ts:
        arrays = {f: getattr(truth, f)[[0, 0, 1]].copy() for f in ("beta1", "a", "b", "var")}
        arrays[field][0] += t * v
        arrays[field][1] -= t * v
        fit = MoEParams(truth.beta0[[0, 0, 1]] + np.log([0.5, 0.5, 1.0]), **arrays)
        loss = voronoi_loss(fit, truth, kind="over")
        assert loss.cell_sizes.tolist() == [2, 1]
        terms.append(loss.param_terms[0])
        expected = np.exp(truth.beta0[0]) * np.linalg.norm(t * v) ** power
        assert loss.param_terms[0] == pytest.approx(expected, rel=1e-6)
    assert _loglog_slope(ts, terms) == pytest.approx(power, abs=0.05)


# ----------------------------------------------------------- parameter errors


def test_parameter_errors_hand_worked_and_json():
    fit, truth = hand_pair()
    errs = parameter_errors(fit, truth, translation="infimum")
    # at the minimising shift (t0, t1) = (log 2/3, -0.25): weights 1.5 * 2/3 = 1, 0.5 * 2/3
    np.testing.assert_allclose(errs.shift, [np.log(2 / 3), -0.25], atol=1e-6)
    np.testing.assert_allclose(errs.weight_error, [0.0, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(errs.beta1, [0.0, 0.25], atol=1e-6)
    np.testing.assert_allclose(errs.a, [0.0, 0.5])
    np.testing.assert_allclose(errs.b, [0.1, 0.0])
    np.testing.assert_allclose(errs.var, [0.0, 0.2])
    assert errs.cell_sizes.tolist() == [1, 1] and errs.tau_error is None
    # at a given shift
    at_zero = parameter_errors(fit, truth, shift=[0.0, 0.0])
    np.testing.assert_allclose(at_zero.weight_error, [0.5, 0.5])
    np.testing.assert_allclose(at_zero.beta1, [0.25, 0.0])
    record = json.loads(json.dumps(errs.to_dict(), allow_nan=False))
    assert record["atoms"][1]["cell_size"] == 1
    assert record["atoms"][1]["weight_error"] == pytest.approx(2 / 3, abs=1e-6)
    assert set(record["atoms"][0]) == {"atom", "cell", "cell_size", "weight_error", "beta1",
                                       "a", "b", "var"}
    # by default at the shift of the mass convention, (0, -0.25) here
    np.testing.assert_allclose(parameter_errors(fit, truth).shift, [0.0, -0.25], atol=1e-6)
    np.testing.assert_allclose(parameter_errors(fit, truth).weight_error, [0.5, 0.5],
                               atol=1e-9)


def test_parameter_errors_take_the_largest_error_in_a_cell_and_none_when_empty():
    truth = MoEParams([0.0, 0.0], [[0.0], [0.0]], [[0.0], [0.0]], [0.0, 10.0], [1.0, 1.0])
    fit = MoEParams(np.log([0.5, 0.5]), [[0.0], [0.0]], [[0.1], [-0.3]], [0.2, 0.5],
                    [1.0, 1.1]).replace(tau=2.0)
    errs = parameter_errors(fit, truth.replace(tau=1.5), shift=0.0)
    assert errs.cells == ((0, 1), ())
    np.testing.assert_allclose([errs.a[0], errs.b[0], errs.var[0]], [0.3, 0.5, 0.1])
    assert np.isnan(errs.b[1])
    # weights exp(beta0 / tau): 0.5^(1/2) twice against 1; the empty cell misses all of 1
    np.testing.assert_allclose(errs.weight_error, [2 * np.sqrt(0.5) - 1, 1.0])
    assert errs.tau_error == pytest.approx(0.5)
    record = json.loads(json.dumps(errs.to_dict(), allow_nan=False))
    assert record["atoms"][1]["b"] is None and record["atoms"][1]["cell"] == []
    assert record["tau_error"] == pytest.approx(0.5)
    assert isinstance(errs, ParameterErrors)


def test_loss_record_is_json_safe():
    fit, truth = hand_pair()
    loss = voronoi_loss(fit, truth)
    assert isinstance(loss, VoronoiLoss) and float(loss) == loss.value
    record = json.loads(json.dumps(loss.to_dict(), allow_nan=False))
    assert record["value"] == pytest.approx(1.625, abs=1e-9)
    assert record["cells"] == [[0], [1]] and record["cell_sizes"] == [1, 1]
    assert record["translation"] == "mass" and record["saturated"] is False


def test_a_hopeless_fit_saturates_at_the_total_true_weight():
    # t0 -> -inf sends every fitted weight to 0: the infimum is at most sum_j exp(beta0*_j)
    truth = MoEParams([0.0, 0.0], [[0.0], [0.0]], [[0.0], [0.0]], [0.0, 10.0], [1.0, 1.0])
    far = truth.replace(b=[50.0, 60.0])
    loss = voronoi_loss(far, truth, translation="infimum")
    assert loss.saturated and loss.value == pytest.approx(2.0)
    assert json.loads(json.dumps(loss.to_dict(), allow_nan=False))["shift"][0] is None


# -------------------------------------------------------------------- cells


def test_cells_ties_go_to_the_lower_true_atom_and_metrics_differ():
    truth = MoEParams([0.0, 0.0], [[0.0], [1.0]], [[0.0], [0.0]], [0.0, 2.8], [1.0, 1.0])
    # differences to true 0: (1, 0, 1, 0): l2 1.414, l1 2; to true 1: (0, 0, -1.8, 0): 1.8
    fit = MoEParams([0.0], [[1.0]], [[0.0]], [1.0], [1.0])
    assert voronoi_cells(fit, truth) == [[0], []]
    assert voronoi_cells(fit, truth, metric="l1") == [[], [0]]
    # exactly half way between two true atoms: the lower index wins
    truth2 = MoEParams([0.0, 0.0], [[0.0], [0.0]], [[0.0], [0.0]], [0.0, 2.0], [1.0, 1.0])
    mid = MoEParams([0.0], [[0.0]], [[0.0]], [1.0], [1.0])
    assert voronoi_cells(mid, truth2) == [[0], []]
    assert voronoi_cells(mid, truth2, metric="l1") == [[0], []]
    # the slope shift moves atoms between cells
    assert voronoi_cells(fit, truth, shift=[0.0, -1.0]) == [[0], []]
    assert voronoi_cells(fit, truth, shift=[0.0, 0.5], metric="l1") == [[], [0]]


def test_cells_refuse_a_shift_outside_the_gates_translation_group():
    truth = MoEParams([0.0, 0.0], [[0.0], [1.0]], [[0.0], [0.0]], [0.0, 2.8], [1.0, 1.0])
    fit = MoEParams([0.0], [[1.0]], [[0.0]], [1.0], [1.0])
    laplace = GaussianMoE("laplace", fit)  # shifts intercepts only
    assert voronoi_cells(laplace, truth, shift=[0.7]) == voronoi_cells(laplace, truth)
    with pytest.raises(ValueError, match="shift"):
        voronoi_cells(laplace, truth, shift=[0.0, -1.0])
    sigmoid = GaussianMoE("sigmoid", fit)  # no translation symmetry
    with pytest.raises(ValueError, match="translation symmetry"):
        voronoi_cells(sigmoid, truth, shift=[0.5])
    assert voronoi_cells(sigmoid, truth, shift=0.0) == voronoi_cells(sigmoid, truth)


# ------------------------------------------------------------------- errors


def test_mismatched_d_is_a_named_error():
    rng = np.random.default_rng(9)
    with pytest.raises(ValueError, match=r"d = 2 \(fitted\) and d = 1 \(truth\)"):
        voronoi_loss(random_params(rng, 2, 2), random_params(rng, 2, 1))
    with pytest.raises(ValueError, match="numbers of features"):
        parameter_errors(random_params(rng, 2, 2), random_params(rng, 2, 1))


def test_over_with_fewer_fitted_atoms_than_true_atoms_is_a_named_error():
    rng = np.random.default_rng(10)
    with pytest.raises(ValueError, match=r"fit has k = 2 and the truth k\* = 3"):
        voronoi_loss(random_params(rng, 2, 1), random_params(rng, 3, 1), kind="over")


def test_cells_of_four_atoms_are_a_named_error_under_over():
    truth = MoEParams([0.0, 0.0], [[0.0], [0.0]], [[0.0], [0.0]], [0.0, 10.0], [1.0, 1.0])
    four = MoEParams(np.log([0.25] * 4), [[0.0]] * 4, [[0.0]] * 4, [0.0] * 4, [1.0] * 4)
    with pytest.raises(ValueError, match="cell of true atom 0 holds 4 fitted atoms"):
        voronoi_loss(four, truth, kind="over")
    # D1 is defined: the four atoms' mass 1 matches atom 0's at shift 0 (the infimum,
    # which leaves atom 1's mass 1 unmatched), or is doubled to the true total 2 (mass)
    assert voronoi_loss(four, truth, kind="exact",
                        translation="infimum").value == pytest.approx(1.0)
    assert voronoi_loss(four, truth, kind="exact").value == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at most 3 atoms"):
        voronoi_loss(four, truth.replace(beta0=[0.0], beta1=[[0.0]], a=[[0.0]], b=[0.0],
                                         var=[1.0]), kind="over")


def test_bad_options_and_inputs_are_named_errors():
    fit, truth = hand_pair()
    with pytest.raises(ValueError, match="unknown kind 'under'"):
        voronoi_loss(fit, truth, kind="under")
    with pytest.raises(ValueError, match="unknown metric 'l2'"):
        voronoi_loss(fit, truth, metric="l2")
    with pytest.raises(ValueError, match="'shift'"):
        voronoi_loss(fit, truth, shift=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="fitted must be a MoEParams"):
        voronoi_loss({"beta0": [0.0]}, truth)


def test_mass_translation_removes_the_cap_but_keeps_zero_for_split_reference():
    truth = MoEParams([-8, 0], [[25], [0]], [[-20], [20]], [15, -5], [0.09, 0.16])
    split = MoEParams([-8 + np.log(2), 0, 0], [[25], [0], [0]], [[-20], [20], [20]],
                      [15, -5, -5], [0.09, 0.16, 0.16])
    assert voronoi_loss(split, truth, kind="over", translation="mass").value < 1e-8
    # a far-off fit: the infimum saturates at the total true weight, the mass-pinned
    # loss does not (its reference atom is 3 off in b: D1 >= 3 exp(0) / (1 + e^-8) ...)
    far = truth.replace(b=[15.0, -2.0])
    inf = voronoi_loss(far, truth, translation="infimum")
    mass = voronoi_loss(far, truth)
    assert mass.translation == "mass" and not mass.saturated
    assert inf.saturated and inf.value == pytest.approx(1 + math.exp(-8))
    assert mass.value == pytest.approx(3.0, rel=1e-3)
    total = np.exp(mass.shift[0]) * np.exp(far.beta0).sum()
    assert total == pytest.approx(np.exp(truth.beta0).sum())
    with pytest.raises(ValueError, match="translation 'both'; expected one of 'mass', "
                                         "'infimum', 'none'"):
        voronoi_loss(far, truth, translation="both")
    with pytest.raises(ValueError, match="translation 'Mass'; expected one of"):
        parameter_errors(far, truth, translation="Mass")


# ------------------------------------------------------ translation conventions


@pytest.mark.parametrize("kind", ["exact", "over"])
def test_none_is_the_loss_at_shift_zero(kind):
    rng = np.random.default_rng(21)
    for trial in range(6):
        d = 1 + trial % 2
        truth = random_params(rng, 2, d)
        fit = near_truth(rng, truth, [0, 1, 1], scale=0.3).shift_gate(rng.normal(),
                                                                       rng.normal(size=d))
        if trial % 3 == 0:
            fit, truth = fit.replace(tau=0.8), truth.replace(tau=1.1)
        none = voronoi_loss(fit, truth, kind, translation="none")
        at_zero = voronoi_loss(fit, truth, kind, shift=0.0)
        assert none.value == at_zero.value == none.unshifted
        assert none.shift.tolist() == [0.0] * (1 + d) and none.cells == at_zero.cells
        np.testing.assert_array_equal(none.param_terms, at_zero.param_terms)
        assert none.translation == "none" and at_zero.translation == "given"
        errs = parameter_errors(fit, truth, kind=kind, translation="none")
        assert errs.shift.tolist() == [0.0] * (1 + d)
    # for an intercept-only group: no shift either
    gate = ActivationGate("tanh")
    moved = truth.shift_gate(0.7)
    none = voronoi_loss(moved, truth, kind, gate=gate, translation="none")
    assert none.shift.tolist() == [0.0] and none.value > 0.1
    assert voronoi_loss(moved, truth, kind, gate=gate).value < 1e-8


@pytest.mark.parametrize("t0,t1", [(0.0, 0.0), (1.3, -2.0), (-3.0, 0.7)])
def test_mass_default_is_zero_for_a_split_reference_expert_up_to_translation(paper_truth,
                                                                             t0, t1):
    # the reference (last) expert split into two identical atoms with shares 0.7 / 0.3,
    # stored in normal form (the 0.3 atom is the reference), then translated
    truth = paper_truth
    w = np.exp(truth.beta0)
    beta0 = np.log([w[0], 0.7 * w[1], 0.3 * w[1]])
    split = MoEParams(beta0, truth.beta1[[0, 1, 1]], truth.a[[0, 1, 1]], truth.b[[0, 1, 1]],
                      truth.var[[0, 1, 1]]).shift_gate(-beta0[-1], [0.0])
    fit = split.shift_gate(t0, [t1])
    mass = voronoi_loss(fit, truth, kind="over")
    assert mass.translation == "mass" and mass.value < 1e-8
    assert mass.cell_sizes.tolist() == [1, 2]
    total = np.exp(mass.shift[0] + fit.beta0).sum()
    assert total == pytest.approx(w.sum(), rel=1e-12)
    assert voronoi_loss(fit, truth, kind="over", translation="infimum").value < 1e-8
    # without a shift the split reference keeps a floor near 1 (|1/0.3 - 1| here)
    none = voronoi_loss(fit, truth, kind="over", translation="none")
    assert none.value > 0.5 * w[1]
    errs = parameter_errors(fit, truth, kind="over")
    np.testing.assert_allclose(errs.weight_error, [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(errs.b, [0.0, 0.0], atol=1e-9)


def test_mass_is_between_the_infimum_and_2_plus_mean_cost_times_it():
    # D_inf <= D_mass <= (2 + cbar) D_inf, cbar the weighted mean parameter cost of an
    # atom at the infimum's slope shift: mass and infimum are rate-equivalent near the truth
    rng = np.random.default_rng(22)
    for trial in range(10):
        kind = ("exact", "over")[trial % 2]
        truth = random_params(rng, 2, 1 + trial % 2)
        fit = near_truth(rng, truth, [0, 1, 1][: 2 + trial % 2], scale=0.2)
        fit = fit.shift_gate(rng.normal(), rng.normal(size=truth.d))
        inf = voronoi_loss(fit, truth, kind, translation="infimum")
        mass = voronoi_loss(fit, truth, kind)
        assert not inf.saturated
        cbar = inf.param_terms.sum() / np.exp(inf.shift[0] + fit.beta0).sum()
        assert inf.value <= mass.value + 1e-9
        assert mass.value <= (2 + cbar) * inf.value + 1e-9


class _NoSymmetryGate(SoftmaxGate):
    """A softmax that pretends to have no translation symmetry (like a normalised sigmoid)."""

    name = "no-symmetry"
    symmetry = "none"


@pytest.mark.parametrize("translation", ["mass", "infimum", "none"])
def test_a_gate_without_translation_symmetry_is_never_shifted(translation):
    rng = np.random.default_rng(23)
    truth = random_params(rng, 2, 1)
    moved = truth.shift_gate(1.0, [0.5])
    gate = _NoSymmetryGate()
    loss = voronoi_loss(moved, truth, gate=gate, translation=translation)
    assert loss.shift.tolist() == [0.0] and loss.translation == "none"
    assert loss.value == loss.unshifted > 0.1
    errs = parameter_errors(moved, truth, gate=gate, translation=translation)
    assert errs.shift.tolist() == [0.0]
    # the same parameters under the softmax are a translation of the truth
    assert voronoi_loss(moved, truth, gate=SoftmaxGate(),
                        translation=translation).value < 1e-8 or translation == "none"
    assert voronoi_loss(moved, truth, gate=gate, shift=0.0).value == loss.value
    with pytest.raises(ValueError, match="'shift' must be 0 for a gate without"):
        voronoi_loss(moved, truth, gate=gate, shift=[-1.0, 0.0])


def test_mass_pins_the_effective_weights_of_a_temperature_gate():
    rng = np.random.default_rng(24)
    gate = TemperatureGate(tau=0.5)
    truth = gate.prepare(random_params(rng, 3, 1))
    fit = near_truth(rng, truth.replace(tau=None), [0, 1, 2, 2], scale=0.1)
    fit = GaussianMoE(gate, fit.replace(tau=0.6)).params  # in normal form
    loss = voronoi_loss(fit, truth, kind="over", gate=gate)
    # weights exp((beta0 + t0) / tau): the shifted fitted total equals the true total
    assert (fit.tau, truth.tau) == (0.6, 0.5)
    total = np.exp((fit.beta0 + loss.shift[0]) / fit.tau).sum()
    assert total == pytest.approx(np.exp(truth.beta0 / truth.tau).sum(), rel=1e-10)
    assert loss.tau_term == pytest.approx(0.1)


def test_parameter_errors_split_a_cell_into_its_heaviest_and_lightest_atom():
    from gmoe.records import _flatten

    truth = MoEParams([-8, 0], [[25], [0]], [[-20], [20]], [15, -5], [0.09, 0.16])
    # true atom 1 gets two fitted atoms with weights 0.8 and 0.2 (shares 4:1)
    fit = MoEParams([-8, np.log(0.8), np.log(0.2)], [[25], [0.1], [0.5]],
                    [[-20], [20.2], [21]], [15, -5.1, -4], [0.09, 0.17, 0.3])
    errs = parameter_errors(fit, truth, shift=[0.0, 0.0])
    assert errs.cells == ((0,), (1, 2))
    np.testing.assert_allclose([errs.heavy[p][1] for p in ("beta1", "a", "b", "var")],
                               [0.1, 0.2, 0.1, 0.01], atol=1e-12)
    np.testing.assert_allclose([errs.light[p][1] for p in ("beta1", "a", "b", "var")],
                               [0.5, 1.0, 1.0, 0.14], atol=1e-12)
    assert errs.light_share[1] == pytest.approx(0.2)
    assert np.isnan(errs.light_share[0]) and np.isnan(errs.heavy["b"][0])
    # the maximum over the cell is the worse of the two
    assert errs.b[1] == pytest.approx(1.0) and errs.var[1] == pytest.approx(0.14)
    # a common t0 shift rescales every weight and leaves the shares alone
    assert parameter_errors(fit, truth, shift=[3.0, 0.0]).light_share[1] == pytest.approx(0.2)
    row = _flatten({"parameter_errors": errs.to_dict()})
    assert row["b_size2_heavy"] == pytest.approx(0.1) and row["b_size2_light"] == pytest.approx(1.0)
    assert row["light_share_size2"] == pytest.approx(0.2) and "b_size1_heavy" not in row


def test_an_underflowed_fitted_weight_beside_a_four_atom_cell_raises_no_warning():
    # shifts that put four atoms in one cell cost inf; a fitted weight of exp(-900)
    # underflows to 0, and 0 * inf must not surface as a RuntimeWarning (the value
    # was already right: NaN is read as inf)
    truth = MoEParams([-1.0, 0.0], [[2.0], [0.0]], [[1.0], [-1.0]], [1.0, -1.0], [0.1, 0.2])
    fit = MoEParams([-900.0, -1.0, 0.1, 0.0], [[2.1], [2.0], [0.2], [0.0]],
                    [[1.0], [1.0], [-1.0], [-1.0]], [1.0, 1.0, -1.0, -1.0],
                    [0.1, 0.1, 0.2, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = voronoi_loss(fit, truth, "over")
    assert np.isfinite(loss.value) and list(loss.cell_sizes) == [2, 2]
