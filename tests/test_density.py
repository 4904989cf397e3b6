import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad
from scipy.special import logsumexp

import gmoe.density
from gmoe import ActivationGate, GaussianMoE, MoEParams
from gmoe.density import hellinger, total_variation
from gmoe.gates import GATES, Gate, make_gate

from .conftest import random_params

# ------------------------------------------------------------------ helpers

SQRT_2PI = np.sqrt(2 * np.pi)


class TopKLocalGate(Gate):
    """Test-local top-K softmax: the K largest beta1^T x (ties: lower index), others -inf."""

    name = "test_topk"

    def __init__(self, K: int):
        self.K = K

    def get_config(self):
        return {"name": self.name, "K": self.K}

    def log_weights_T(self, design, params):
        score = params.beta1 @ design.XT
        order = np.argsort(-score, axis=0, kind="stable")
        keep = np.zeros(score.shape, dtype=bool)
        np.put_along_axis(keep, order[: self.K], True, axis=0)
        eta = np.where(keep, score + params.beta0[:, None], -np.inf)
        return eta - logsumexp(eta, axis=0)

    def m_step(self, design, resp_T, params, log_w_T, log_phi_T=None):
        raise NotImplementedError


def single(a, b, var, d=1):
    """One-expert model: y | x ~ N(a^T x + b, var)."""
    return GaussianMoE("softmax", MoEParams([0.0], [[0.0] * d], [np.atleast_1d(a)], [b], [var]))


def quad_reference(model_a, model_b, x):
    """h^2 and tv at one x by adaptive quadrature (scipy.integrate.quad)."""
    X = np.atleast_2d(x)

    def parts(model):
        w = np.exp(model.log_weights(X)[0])
        return w, model.expert_means(X)[0], np.sqrt(model.params.var)

    (wa, ma, sa), (wb, mb, sb) = parts(model_a), parts(model_b)

    def p(y):
        return float(np.sum(wa * np.exp(-0.5 * ((y - ma) / sa) ** 2) / (sa * SQRT_2PI)))

    def q(y):
        return float(np.sum(wb * np.exp(-0.5 * ((y - mb) / sb) ** 2) / (sb * SQRT_2PI)))

    lo = min(np.min(ma - 14 * sa), np.min(mb - 14 * sb))
    hi = max(np.max(ma + 14 * sa), np.max(mb + 14 * sb))
    pts = np.sort(np.r_[ma, mb, ma - sa, ma + sa, mb - sb, mb + sb])
    opts = {"points": pts, "limit": 5000, "epsabs": 1e-15, "epsrel": 1e-13}
    h2 = quad(lambda y: 0.5 * (np.sqrt(p(y)) - np.sqrt(q(y))) ** 2, lo, hi, **opts)[0]
    tv = quad(lambda y: 0.5 * abs(p(y) - q(y)), lo, hi, **opts)[0]
    return h2, tv


def paper_model(paper_truth):
    return GaussianMoE("softmax", paper_truth)


def hard_pairs(paper_truth):
    """Pairs of models meant to stress the quadrature."""
    truth = paper_model(paper_truth)
    near = GaussianMoE("softmax", paper_truth.replace(b=[15.01, -5.002], var=[0.0901, 0.16]))
    split = GaussianMoE("softmax", MoEParams([-8 + np.log(2), 0, 0], [[25], [0.2], [0]],
                                             [[-20], [19], [21]], [15, -5.1, -4.9],
                                             [0.09, 0.1, 0.2]))
    # a spike of sd 0.01 on a broad expert, far-apart narrow experts
    narrow = GaussianMoE("softmax", MoEParams([0, -3, 0], [[1], [2], [0]], [[0], [5], [-3]],
                                              [0, 0.5, 3], [1e-4, 4.0, 0.01]))
    spike = GaussianMoE("softmax", MoEParams([0, -6, 0], [[1], [2], [0]], [[0], [0], [0]],
                                             [0, 0, 0], [1.0, 1e-4, 1.02]))
    flat = GaussianMoE("softmax", MoEParams([0, 0], [[1], [0]], [[0], [0]], [0, 0], [1, 1]))
    topk = GaussianMoE(TopKLocalGate(2), MoEParams([0.3, -0.2, 0], [[2], [-1], [0]],
                                                   [[1], [-1], [0]], [0, 1, 2], [0.3, 0.5, 1]))
    return [(truth, near), (truth, split), (truth, narrow), (spike, flat), (topk, truth)]


# ------------------------------------------------------------------ accuracy


def test_agrees_with_adaptive_quadrature_to_1e9(paper_truth):
    xs = np.array([[0.0], [0.3], [0.77]])
    for model_a, model_b in hard_pairs(paper_truth):
        h = hellinger(model_a, model_b, xs, pointwise=True)
        tv = total_variation(model_a, model_b, xs, pointwise=True)
        for i, x in enumerate(xs):
            h2_ref, tv_ref = quad_reference(model_a, model_b, x)
            assert abs(h[i] ** 2 - h2_ref) < 1e-10, (i, h[i] ** 2, h2_ref)
            assert abs(h[i] - np.sqrt(h2_ref)) < 1e-7
            assert abs(tv[i] - tv_ref) < 1e-9, (i, tv[i], tv_ref)


@pytest.mark.parametrize("da,db,var_a,var_b", [(0.0, 1.0, 1.0, 1.0), (2.0, -0.5, 0.3, 1.7),
                                               (0.0, 1e-4, 0.5, 0.5), (0.0, 0.0, 1.0, 1.0001),
                                               (1.0, 40.0, 0.01, 0.02)])
def test_equals_the_closed_form_for_two_single_gaussians(da, db, var_a, var_b):
    X = np.random.default_rng(0).uniform(-1, 1, size=(300, 1))
    model_a, model_b = single(1.0, 0.5, var_a), single(1.0 + da, 0.5 + db, var_b)
    delta = da * X[:, 0] + db
    # Bhattacharyya coefficient of N(m1, v1) and N(m2, v2)
    bc = np.sqrt(2 * np.sqrt(var_a * var_b) / (var_a + var_b)) \
        * np.exp(-delta**2 / (4 * (var_a + var_b)))
    expected = np.sqrt(1 - bc)
    got = hellinger(model_a, model_b, X, pointwise=True)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert hellinger(model_a, model_b, X) == pytest.approx(expected.mean(), rel=1e-9, abs=1e-12)
    if var_a == var_b:  # total variation: 2 Phi(|delta| / (2 sd)) - 1
        tv = 2 * stats.norm.cdf(np.abs(delta) / (2 * np.sqrt(var_a))) - 1
        np.testing.assert_allclose(total_variation(model_a, model_b, X, pointwise=True), tv,
                                   rtol=1e-9, atol=1e-12)


def test_agrees_with_a_large_monte_carlo_estimate_for_mixtures():
    rng = np.random.default_rng(1)
    params = random_params(rng, 3, 2)
    model_a = GaussianMoE("softmax", params)
    nearby = GaussianMoE("softmax", params.replace(b=params.b + [0.3, -0.2, 0.1],
                                                   var=params.var * 1.5))
    other = GaussianMoE("softmax", random_params(rng, 2, 2))
    X = rng.normal(size=(2000, 2))
    XX = np.repeat(X, 100, axis=0)  # 100 draws of y at each x: 200 000 in all
    y = model_a.sample_y(XX, rng)
    for model_b in (nearby, other):
        log_ratio = model_b.score_samples(XX, y) - model_a.score_samples(XX, y)
        # h^2(x) = 1 - E_p[sqrt(q/p) | x], tv(x) = E_p[(1 - q/p)_+ | x], over the same X
        for values, exact in [(1 - np.exp(0.5 * log_ratio),
                               hellinger(model_a, model_b, X, pointwise=True) ** 2),
                              (np.maximum(1 - np.exp(log_ratio), 0),
                               total_variation(model_a, model_b, X, pointwise=True))]:
            se = values.std(ddof=1) / np.sqrt(values.size)
            assert 0.01 < exact.mean() < 0.95  # a non-trivial distance
            assert abs(values.mean() - exact.mean()) < 4 * se, (values.mean(), exact.mean(), se)


# --------------------------------------------------------------- properties


def test_zero_for_identical_models_and_symmetric_and_bounded(paper_truth):
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(200, 1))
    model = paper_model(paper_truth)
    assert hellinger(model, model, X) == 0.0
    assert total_variation(model, GaussianMoE("softmax", paper_truth), X) == 0.0
    for model_a, model_b in hard_pairs(paper_truth):
        h_ab = hellinger(model_a, model_b, X, pointwise=True)
        h_ba = hellinger(model_b, model_a, X, pointwise=True)
        np.testing.assert_allclose(h_ab, h_ba, rtol=1e-12, atol=1e-15)
        tv = total_variation(model_a, model_b, X, pointwise=True)
        np.testing.assert_allclose(tv, total_variation(model_b, model_a, X, pointwise=True),
                                   rtol=1e-12, atol=1e-15)
        assert np.all((h_ab >= 0) & (h_ab <= 1)) and np.all((tv >= 0) & (tv <= 1))
        # h^2 <= tv <= sqrt(2) h
        assert np.all(h_ab**2 <= tv + 1e-12) and np.all(tv <= np.sqrt(2) * h_ab + 1e-12)
    far = hellinger(single(0.0, 0.0, 1.0), single(0.0, 100.0, 1.0), X)
    assert far == pytest.approx(1.0, abs=1e-12) and far <= 1.0


def test_small_distances_keep_their_relative_accuracy():
    # h ~ 1e-5: 1 - int sqrt(pq) would lose it to cancellation; the rule must not
    X = np.linspace(0, 1, 11)[:, None]
    model_a, model_b = single(1.0, 0.0, 1.0), single(1.0, 4e-5, 1.0)
    expected = np.sqrt(-np.expm1(-(4e-5) ** 2 / 8))
    np.testing.assert_allclose(hellinger(model_a, model_b, X, pointwise=True), expected,
                               rtol=1e-8)


def test_chunking_does_not_change_the_result(monkeypatch, paper_truth):
    X = np.random.default_rng(3).uniform(size=(57, 1))
    model_a, model_b = hard_pairs(paper_truth)[1]
    h = hellinger(model_a, model_b, X, pointwise=True)
    tv = total_variation(model_a, model_b, X, pointwise=True)
    monkeypatch.setattr(gmoe.density, "_MAX_CELLS", 10_000)  # a few rows per chunk
    monkeypatch.setattr(gmoe.density, "_CACHE_CELLS", 300)  # a few panels per chunk
    np.testing.assert_array_equal(hellinger(model_a, model_b, X, pointwise=True), h)
    np.testing.assert_array_equal(total_variation(model_a, model_b, X, pointwise=True), tv)


# -------------------------------------------------------------------- gates


def test_top_k_and_activation_gates_are_supported():
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, size=(40, 2))
    params = random_params(rng, 3, 2)
    top1 = GaussianMoE(TopKLocalGate(1), params)
    top2 = GaussianMoE(TopKLocalGate(2), params)
    dense = GaussianMoE("softmax", params)
    assert np.isneginf(top1.log_weights(X)).any()
    act = GaussianMoE(ActivationGate("tanh"), params.replace(tau=0.7))
    for model_a, model_b in [(top1, top2), (top2, dense), (act, dense), (top1, act)]:
        h = hellinger(model_a, model_b, X, pointwise=True)
        tv = total_variation(model_a, model_b, X, pointwise=True)
        assert np.all(np.isfinite(h)) and np.all(np.isfinite(tv))
        for i in (0, 7):
            h2_ref, tv_ref = quad_reference(model_a, model_b, X[i])
            assert abs(h[i] ** 2 - h2_ref) < 1e-10 and abs(tv[i] - tv_ref) < 1e-9
    assert hellinger(top1, top1, X) == 0.0
    # top-1 is a single Gaussian per x: the closed form applies
    mean1 = top1.expert_means(X)[np.arange(40), np.argmax(top1.log_weights(X), axis=1)]
    sd1 = np.sqrt(params.var[np.argmax(top1.log_weights(X), axis=1)])
    other = single([0.0, 0.0], 0.0, 1.0, d=2)
    bc = np.sqrt(2 * sd1 / (sd1**2 + 1)) * np.exp(-mean1**2 / (4 * (sd1**2 + 1)))
    np.testing.assert_allclose(hellinger(top1, other, X, pointwise=True), np.sqrt(1 - bc),
                               rtol=1e-9)


# the quadrature reference evaluates one row at a time: top-K warns that one x has one sign
@pytest.mark.filterwarnings("ignore:top-K gate with rank_by='slope'")
@pytest.mark.parametrize("spec", [{"name": "topk", "K": 1}, {"name": "activation"},
                                  {"name": "temperature"}])
def test_the_library_gates_are_supported(spec):
    if spec["name"] not in GATES:
        pytest.skip(f"gate {spec['name']!r} not available")
    rng = np.random.default_rng(5)
    params = random_params(rng, 3, 1).replace(tau=0.8)
    model = GaussianMoE(make_gate(spec), params)
    dense = GaussianMoE("softmax", random_params(rng, 2, 1))
    X = rng.uniform(-1, 1, size=(30, 1))
    h = hellinger(model, dense, X, pointwise=True)
    h2_ref, _ = quad_reference(model, dense, X[3])
    assert abs(h[3] ** 2 - h2_ref) < 1e-10
    assert hellinger(model, model, X) == 0.0


# ------------------------------------------------------------ Hellinger rule


def general_rule_h2(model_a, model_b, X, spacing=0.5, nodes=20, half_width=10.0):
    """h^2 of every row by the previous general rule: breakpoints mu + sd z of every
    component, Gauss-Legendre on every panel, log-space densities. With the defaults
    (0.5 sd panels, 20 nodes, +-10 sd) it is converged to rounding; with spacing=2,
    nodes=10, half_width=8 it is the rule the package used before."""
    comp_a, comp_b = gmoe.density._components(model_a, model_b, X)
    z = np.arange(-half_width, half_width + spacing / 2, spacing)
    bp = np.sort(np.concatenate([(mu[:, :, None] + sd[:, None] * z).reshape(len(mu), -1)
                                 for _, mu, sd in (comp_a, comp_b)], axis=1), axis=1)
    x, w = np.polynomial.legendre.leggauss(nodes)
    half, mid = 0.5 * (bp[:, 1:] - bp[:, :-1]), 0.5 * (bp[:, 1:] + bp[:, :-1])
    y = (mid[:, :, None] + half[:, :, None] * x).reshape(len(bp), -1)

    def root(log_w, mu, sd):
        z = (y[:, :, None] - mu[:, None, :]) / sd
        return np.exp(0.5 * logsumexp(log_w[:, None, :] - np.log(sd * SQRT_2PI) - 0.5 * z * z,
                                      axis=2))

    d = root(*comp_a) - root(*comp_b)
    return 0.5 * np.sum((half[:, :, None] * w).reshape(len(bp), -1) * d * d, axis=1)


def reference_fits(paper_truth):
    """Fits like those of a sweep task at the reference setting: exact (k = 2) and
    over-specified (k = 3: expert 1 split into a main and a narrower satellite)."""
    exact = GaussianMoE("softmax", paper_truth.replace(
        beta0=[-7.0233, 0.0], beta1=[[22.5883], [0.0]], a=[[-19.9878], [19.6967]],
        b=[14.9705, -4.9436], var=[0.0868, 0.1454]))
    over = GaussianMoE("softmax", MoEParams([11.254, 19.2043, 0.0], [[-8.4772], [-33.3345], [0]],
                                            [[-19.9857], [20.0254], [-18.5928]],
                                            [14.9942, -5.0045, 13.4723], [0.0895, 0.1599, 0.0383]))
    return exact, over


def test_closed_forms_and_quadrature_agree_with_the_converged_general_rule(paper_truth):
    # closed-form rows and quadrature rows (with graded crossovers) of a sweep task,
    # against the previous rule refined to convergence
    truth = paper_model(paper_truth)
    X = np.random.default_rng(11).uniform(0, 1, size=(150, 1))
    for fit in reference_fits(paper_truth):
        comp_a, comp_b = gmoe.density._components(fit, truth, X)
        log_c, _ = gmoe.density._pair_terms(comp_a, comp_b)
        _, size = gmoe.density._clusters(log_c > gmoe.density._LOG_TOL)
        quad_rows = (size > 2).any(axis=1)
        assert 0 < quad_rows.sum() < len(X) or fit.params.k == 3  # both paths are used
        h2 = gmoe.density._hellinger_sq_rows(comp_a, comp_b)
        np.testing.assert_allclose(h2, general_rule_h2(fit, truth, X), rtol=0, atol=1e-12)
    exact, _ = reference_fits(paper_truth)
    h = hellinger(exact, truth, X, pointwise=True)
    assert np.abs(h - np.sqrt(general_rule_h2(exact, truth, X))).max() < 1e-10


def test_crossovers_in_the_tails_are_resolved(paper_truth):
    # at x = 0.45 the experts of each mixture meet about 5 sd from both means: sqrt p
    # has branch points close to the line; 2-sd panels everywhere (the previous rule)
    # err by 1e-10 in h^2 there, the graded panels do not
    truth = paper_model(paper_truth)
    exact, _ = reference_fits(paper_truth)
    for x in (0.42, 0.45, 0.55):
        h2_ref, _ = quad_reference(exact, truth, [x])
        h = hellinger(exact, truth, [[x]])
        assert abs(h**2 - h2_ref) < 1e-14, (x, h**2 - h2_ref)
    old = general_rule_h2(exact, truth, [[0.45]], spacing=2.0, nodes=10, half_width=8.0)
    assert abs(old[0] - quad_reference(exact, truth, [0.45])[0]) > 1e-11


@pytest.mark.parametrize("dmu,ratio", [(1e-7, 1.0), (0.0, 1 + 1e-7), (3e-6, 1 - 2e-6)])
def test_pair_closed_form_keeps_relative_accuracy_for_tiny_distances(dmu, ratio):
    # h^2 ~ 1e-15: 1 - BC would keep no digit; against the series of h^2 = 1 - exp(-t),
    # t = x - 1/2 log(1 - e) = x + e / 2 + e^2 / 4 + ..., e = (s1 - s2)^2 / v,
    # x = dmu^2 / (4 v), v = s1^2 + s2^2
    s1, s2 = 0.3, 0.3 * ratio
    model_a, model_b = single(0.0, 0.0, s1**2), single(0.0, dmu * s1, s2**2)
    v = s1**2 + s2**2
    e, x = (s1 - s2) ** 2 / v, (dmu * s1) ** 2 / (4 * v)
    t = x + e / 2 + e**2 / 4
    h = hellinger(model_a, model_b, [[0.0]])
    assert h**2 == pytest.approx(t - t**2 / 2, rel=1e-9, abs=0)


@pytest.mark.parametrize("dmu,ratio", [(0.05, 1.0), (0.5, 0.8), (3.0, 1.0), (12.0, 3.0),
                                       (0.0, 30.0)])
def test_pair_closed_form_against_quadrature(dmu, ratio):
    model_a, model_b = single(0.0, 0.0, 0.09), single(0.0, dmu * 0.3, 0.09 * ratio**2)
    h2_ref, _ = quad_reference(model_a, model_b, [0.0])
    h = hellinger(model_a, model_b, [[0.0]])
    assert h**2 == pytest.approx(h2_ref, rel=1e-10, abs=0)
    assert 0 < h <= 1


def test_weighted_pairs_and_singletons_in_mixtures():
    # experts far apart: every cluster is a pair (different weights) or, for the third
    # expert of model_a, a singleton adding w / 2; against quadrature
    rng = np.random.default_rng(12)
    X = rng.uniform(-1, 1, size=(6, 1))
    model_a = GaussianMoE("softmax", MoEParams([0.3, 0.1, -1.0], [[1.0], [-0.5], [0.2]],
                                               [[1.0], [0.0], [0.5]], [-30.0, 0.0, 30.0],
                                               [0.5, 1.0, 0.3]))
    model_b = GaussianMoE("softmax", MoEParams([0.0, 0.0], [[0.8], [0.0]], [[1.1], [0.0]],
                                               [-30.2, 0.1], [0.55, 0.9]))
    comp_a, comp_b = gmoe.density._components(model_a, model_b, X)
    _, size = gmoe.density._clusters(gmoe.density._pair_terms(comp_a, comp_b)[0]
                                     > gmoe.density._LOG_TOL)
    np.testing.assert_array_equal(size, np.tile([2, 2, 1, 2, 2], (len(X), 1)))
    h = hellinger(model_a, model_b, X, pointwise=True)
    for i in range(len(X)):
        assert h[i] ** 2 == pytest.approx(quad_reference(model_a, model_b, X[i])[0], rel=1e-10,
                                          abs=0)


def test_mixed_rows_top_k_and_pointwise(paper_truth):
    # one call with rows of every kind: pair-only rows, quadrature rows, and top-K rows
    # with -inf log weights in both
    truth = paper_model(paper_truth)
    exact, over = reference_fits(paper_truth)
    topk = GaussianMoE(TopKLocalGate(2), over.params)
    X = np.array([[0.05], [0.3], [0.45], [0.5], [0.62], [0.9]])
    assert np.isneginf(topk.log_weights(X)).any()
    for model_a in (exact, over, topk):
        h = hellinger(model_a, truth, X, pointwise=True)
        assert h.shape == (len(X),) and hellinger(model_a, truth, X) == pytest.approx(h.mean())
        for i in range(len(X)):
            assert abs(h[i] ** 2 - quad_reference(model_a, truth, X[i])[0]) < 1e-13, (i, model_a)
    assert hellinger(topk, topk, X) == 0.0


def test_clusters_are_the_connected_components_of_the_couplings():
    edge = np.zeros((2, 3, 2), dtype=bool)
    edge[0, 0, 0] = edge[0, 1, 0] = True  # a0 - b0 - a1; a2, b1 alone
    edge[1, 2, 1] = edge[1, 2, 0] = edge[1, 0, 1] = True  # a0 - b1 - a2 - b0; a1 alone
    label, size = gmoe.density._clusters(edge)
    np.testing.assert_array_equal(label, [[0, 0, 2, 0, 4], [0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(size, [[3, 3, 1, 3, 1], [4, 1, 4, 4, 4]])


# ------------------------------------------------------------------- errors


def test_mismatched_d_and_bad_x_are_named_errors():
    rng = np.random.default_rng(6)
    one = GaussianMoE("softmax", random_params(rng, 2, 1))
    two = GaussianMoE("softmax", random_params(rng, 2, 2))
    with pytest.raises(ValueError, match=r"d = 1 \(model_a\) and d = 2 \(model_b\)"):
        hellinger(one, two, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="X has 2 columns"):
        total_variation(one, one, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="model_b must be a GaussianMoE"):
        hellinger(one, "softmax", np.zeros((3, 1)))
