"""The top-K gate's fast paths give the numbers of the plain ones, bit for bit.

The gating M-step screens its line search with an upper bound (``_LineBound``), takes
one exp per column when two experts are selected (``pair``), and hands EM the E-step
it computed at its result (``GateStepInfo.posterior``); docs/performance.md, "Top-K
EM iteration". None of these may change a fit.
"""

from __future__ import annotations

import numpy as np
import pytest

from gmoe import GaussianMoE, MoEParams
from gmoe._design import Design
from gmoe._em_loop import _run_em
from gmoe.experts import expert_log_density_T
from gmoe.gates import TopKGate
from gmoe.gates import _topk_search as search
from gmoe.gates.smooth import masked_log_softmax_T
from gmoe.model import joint_log_T
from gmoe.settings import FitSettings

TRUTH = MoEParams([0.5, -0.5, 0.0], [[2.0, 1.0], [-1.0, 2.0], [0.0, 0.0]],
                  [[1.0, -1.0], [-1.0, 1.0], [2.0, 2.0]], [-4.0, 0.0, 4.0], [0.09] * 3)
START = TRUTH.replace(b=TRUTH.b + 0.3, beta0=TRUTH.beta0 + np.array([0.3, -0.2, 0.0]))


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("k", [3, 4, 6])
def test_pair_arithmetic_is_the_k_row_arithmetic(k):
    rng = np.random.default_rng(k)
    n = 4000
    # rounded logits: many ties, also between the two selected entries
    eta = np.round(rng.normal(scale=4.0, size=(k, n)), 1)
    eta[:, :50] = 1.5
    mask = search.top_k_mask(eta + rng.normal(size=(k, n)) * (rng.random(n) < 0.5), 2)
    general = search._masked_softmax(eta, mask)
    assert _same(general, masked_log_softmax_T(eta, mask))
    assert _same(search._masked_softmax(eta, mask, pair=True), general)
    assert np.array_equal(search._masked_lse(eta, mask, True), search._masked_lse(eta, mask))
    log_w = general[0]
    log_phi = rng.normal(scale=40.0, size=(k, n))   # terms far below exp(-60): clipped
    plain, paired = (search._observed_terms(log_w, log_phi, mask, None, pair)
                     for pair in (False, True))
    assert plain[0] == paired[0] and _same(plain[1:3], paired[1:3])
    joint = joint_log_T(log_w, log_phi)
    for terms in (plain, paired):
        assert _same(search._e_step(terms[3], mask), joint)


@pytest.mark.parametrize("rank_by", ["slope", "logit"])
@pytest.mark.parametrize("K, k", [(2, 3), (1, 3), (3, 4)])
def test_line_bound_is_above_the_exact_value_and_rejects(rank_by, K, k):
    rng = np.random.default_rng(K + 3 * k)
    truth = MoEParams(rng.normal(size=k), 2 * rng.normal(size=(k, 2)), rng.normal(size=(k, 2)),
                      3 * rng.normal(size=k), np.full(k, 0.2))
    gate = TopKGate(K, rank_by=rank_by)
    X, y = GaussianMoE(gate, truth).sample(3000, rng=1)
    weight = rng.uniform(0.5, 2.0, X.shape[0])
    design = Design(X, y, weight)
    start = gate.normal_form(truth.replace(beta0=truth.beta0 + 0.4, beta1=truth.beta1 * 1.2))
    log_w = gate.log_weights_T(design, start)
    mask = log_w > -np.inf
    log_phi = expert_log_density_T(design, start.a, start.b, start.var)
    base, post, ll_n, _ = search._observed_terms(log_w, log_phi, mask, weight, K == 2)
    theta0 = gate._theta(start)
    direction = rng.normal(size=theta0.size)
    P0 = np.exp(np.maximum(log_w, -60.0)) * mask
    ts = 0.5 ** np.arange(9)
    bound = search._LineBound(gate, theta0, direction, design, log_phi, mask, P0, post,
                              ll_n, ts)
    rejected = 0
    for t in ts:
        upper, margin = bound.bound(t)
        exact = gate._fresh_state(theta0 + t * direction, design, log_phi, k).value
        assert upper >= exact - margin
        rejected += upper < base - margin
    assert rejected >= 1


def _run(rank_by, monkeypatch=None, **kw):
    X, y = GaussianMoE(TopKGate(2, rank_by=rank_by), TRUTH).sample(4000, rng=0)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, 4000) if kw.pop("weighted") else None
    run = _run_em(Design(X, y, weight), TopKGate(2, rank_by=rank_by), START,
                  FitSettings(tol=0.0, max_iter=8, **kw), 1e-8)
    p = run["params"]
    return run["trace"], np.concatenate([p.beta0, p.beta1.ravel(), p.a.ravel(), p.b, p.var])


@pytest.mark.parametrize("rank_by", ["slope", "logit"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("accelerate", [False, True])
def test_screen_and_reused_e_step_leave_em_unchanged(monkeypatch, rank_by, weighted,
                                                    accelerate):
    fast = _run(rank_by, weighted=weighted, accelerate=accelerate)
    # the plain paths: no screening (every trial evaluated exactly), EM's own E-step
    monkeypatch.setattr(search._LineBound, "bound", lambda self, t: (np.inf, 0.0))
    m_step = TopKGate.m_step

    def plain_m_step(self, *args, **kwargs):
        params, log_w, info = m_step(self, *args, **kwargs)
        info.posterior = None
        return params, log_w, info

    monkeypatch.setattr(TopKGate, "m_step", plain_m_step)
    plain = _run(rank_by, weighted=weighted, accelerate=accelerate)
    assert _same(fast, plain)
