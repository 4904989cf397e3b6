"""Distances between the conditional densities of two mixtures of experts.

For each row x of X both conditional densities ``p(y|x)`` and ``q(y|x)`` are univariate
Gaussian mixtures. The distances in y are computed deterministically (not by sampling
y) and averaged over the rows of X:

- Hellinger: ``h(x)^2 = 1/2 int (sqrt p - sqrt q)^2 dy`` (= ``1 - int sqrt(p q) dy``; this
  form has no cancellation when p and q are close, so small distances keep their
  relative accuracy);
- total variation: ``tv(x) = 1/2 int |p - q| dy``.

Hellinger rule
--------------
Clusters: component i of p (weight w, mean m, sd s) and j of q (v, m', s') are coupled
by ``c_ij = int sqrt(w N_i v N_j) = sqrt(w v) BC_ij``, ``BC = sqrt(2 s s' / (s^2 + s'^2))
exp(-(m - m')^2 / (4 (s^2 + s'^2)))``. Couplings above 1e-20 link components into
clusters (per row; zero weights never link). As ``sqrt(P Q) <= sum_ij sqrt(p_i q_j)``,
integrating each cluster alone changes ``h^2`` by at most the dropped couplings. A
cluster of one component adds ``w / 2``, one of a pair ``1/2 (sqrt w - sqrt v)^2 +
sqrt(w v) (1 - BC)``, both closed forms (expm1 / log1p: no cancellation for tiny
distances). At the reference setting two thirds of the rows of an exact fit are
pairs only.

Larger clusters are integrated by 10-node Gauss-Legendre on panels, from direct sums
of their components' densities (one exp per node and component): each component
contributes the breakpoints ``mu + s z``, z = -8, -16/3, ..., 8 (panels of 8/3 sd),
except within 8.25 sd of one with a smaller sd, whose grid serves there (a fit near
the truth would otherwise repeat the truth's breakpoints). Where two components of
one mixture cross, ``sqrt p`` has branch points at ``y +- i a``, ``a = pi / |d/dy
log(p_i / p_j)|``: close to the line where the two meet in each other's tails, and
no fixed rule resolves them (2-sd panels everywhere, the previous rule, erred by up
to 1e-10 in h^2 there). Crossovers at a density above e^-40, not dominated by a
third component and with ``a`` below 2 sd get graded breakpoints ``y``, ``y +- a``,
``y +- 3a``, ``y +- 9a`` (those below 2 sd; one set for crossovers closer than 2a).
On the fits of a sweep task the result agrees with a converged rule to 5e-13 in
h^2 (the tests compare with adaptive ``scipy.integrate.quad``).

Total variation rule
--------------------
Every component contributes the breakpoints ``mu + s z`` for z in ``-8, -6, ..., 8``;
their union splits the line into panels, each integrated by 10-node Gauss-Legendre;
panels on which ``p - q`` changes sign are split at the root (found by bisection).
Densities are combined in log space (log-sum-exp), so ``-inf`` log weights (top-K
gates) and far tails are handled without underflow problems. Beyond 8 sd of every
component the integrand is below ``p + q < 1e-14``.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_X_y

__all__ = ["hellinger", "total_variation"]

_HALF_WIDTH = 8.0  # breakpoints span mu +- 8 sd
_SPACING = 2.0  # total variation: breakpoint spacing in sd
_N_GL = 10  # Gauss-Legendre nodes per panel
_BISECT = 40  # bisection steps for a sign change of p - q
_MAX_CELLS = 4_000_000  # rows * nodes * experts held at once
_CACHE_CELLS = 60_000  # Hellinger: nodes * components per chunk (a chunk stays in cache)
_LOG_TOL = float(np.log(1e-20))  # couplings below this do not link a cluster
_LOG_TINY = -40.0  # crossovers at log densities below this need no graded panels
_NEAR = 2.0  # crossovers with a below this many sd get graded panels
_GRADE = np.array([1.0, 3.0, 9.0])  # graded offsets around a crossover, in a
_LOG_SQRT_2PI = 0.5 * float(np.log(2 * np.pi))

_Z = np.arange(-_HALF_WIDTH, _HALF_WIDTH + _SPACING / 2, _SPACING)
_ZH = np.linspace(-_HALF_WIDTH, _HALF_WIDTH, 7)  # Hellinger breakpoints, in sd
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_N_GL)


# ------------------------------------------------------------------ inputs
def _as_model(obj, name: str):
    """A GaussianMoE (or anything with ``log_weights``, ``expert_means`` and ``params``);
    a fitted MoERegressor gives its ``model_``, a FitResult its ``(gate, params)``."""
    if hasattr(obj, "log_weights") and hasattr(obj, "expert_means") and hasattr(obj, "params"):
        return obj
    if hasattr(obj, "model_"):
        return obj.model_
    if hasattr(obj, "params") and hasattr(obj, "gate"):
        from .model import GaussianMoE

        return GaussianMoE(obj.gate, obj.params)
    raise ValueError(f"{name} must be a GaussianMoE (or a FitResult, a fitted "
                     f"MoERegressor), got {type(obj).__name__}")


def _components(model_a, model_b, X):
    """Per-row log weights, means (n, k) and sds (k,) of both conditional mixtures."""
    model_a = _as_model(model_a, "model_a")
    model_b = _as_model(model_b, "model_b")
    if model_a.params.d != model_b.params.d:
        raise ValueError(f"the models have different numbers of features: d = "
                         f"{model_a.params.d} (model_a) and d = {model_b.params.d} (model_b)")
    X = check_X_y(X)
    if X.shape[1] != model_a.params.d:
        raise ValueError(f"X has {X.shape[1]} columns but the models have "
                         f"d = {model_a.params.d}")
    out = []
    for model in (model_a, model_b):
        log_w = np.asarray(model.log_weights(X), dtype=float)
        mu = np.asarray(model.expert_means(X), dtype=float)
        out.append((log_w, mu, np.sqrt(np.asarray(model.params.var, dtype=float))))
    return out


# -------------------------------------------------------------- numerics
def _log_mix(y: np.ndarray, log_w: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Log density of the mixture of each row at the points y of shape (n, P): (n, P)."""
    t = (y[:, :, None] - mu[:, None, :]) / sd
    t *= t
    t *= -0.5
    t += (log_w - np.log(sd) - _LOG_SQRT_2PI)[:, None, :]
    m = t.max(axis=2)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    t -= m_safe[:, :, None]
    np.exp(t, out=t)
    with np.errstate(divide="ignore"):
        return np.log(t.sum(axis=2)) + m_safe


def _breakpoints(comp_a, comp_b) -> np.ndarray:
    """Sorted panel endpoints of each row, shape (n, B)."""
    parts = [(mu[:, :, None] + sd[None, :, None] * _Z).reshape(mu.shape[0], -1)
             for _, mu, sd in (comp_a, comp_b)]
    bp = np.concatenate(parts, axis=1)
    bp.sort(axis=1)
    return bp


def _gl_nodes(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on the panels [lo, hi] (n, P): shapes (n, P*m)."""
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    y = mid[:, :, None] + half[:, :, None] * _GL_X
    w = half[:, :, None] * _GL_W
    n = lo.shape[0]
    return y.reshape(n, -1), w.reshape(n, -1)


def _chunks(n: int, per_row: int, cells: int = _MAX_CELLS):
    size = max(1, min(cells, _MAX_CELLS) // max(per_row, 1))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _rows(comp, sl):
    log_w, mu, sd = comp
    return log_w[sl], mu[sl], sd


def _tv_rows(comp_a, comp_b) -> np.ndarray:
    n, k = comp_a[1].shape[0], max(comp_a[1].shape[1], comp_b[1].shape[1])
    n_bp = _Z.size * (comp_a[1].shape[1] + comp_b[1].shape[1])
    out = np.empty(n)
    for sl in _chunks(n, 2 * n_bp * _N_GL * k):
        a, b = _rows(comp_a, sl), _rows(comp_b, sl)

        def diff(y, rows=None, a=a, b=b):
            if rows is not None:
                a = (a[0][rows], a[1][rows], a[2])
                b = (b[0][rows], b[1][rows], b[2])
            return np.exp(_log_mix(y, *a)) - np.exp(_log_mix(y, *b))

        bp = _breakpoints(a, b)
        g = diff(bp)
        lo, hi = bp[:, :-1], bp[:, 1:]
        split = 0.5 * (lo + hi)
        r, c = np.nonzero(np.sign(g[:, :-1]) * np.sign(g[:, 1:]) < 0)
        if r.size:
            left, right, g_left = lo[r, c], hi[r, c], g[r, c]
            for _ in range(_BISECT):
                mid = 0.5 * (left + right)
                g_mid = diff(mid[:, None], r)[:, 0]
                same = np.sign(g_mid) == np.sign(g_left)
                left = np.where(same, mid, left)
                g_left = np.where(same, g_mid, g_left)
                right = np.where(same, right, mid)
            split[r, c] = 0.5 * (left + right)
        y1, w1 = _gl_nodes(lo, split)
        y2, w2 = _gl_nodes(split, hi)
        y, w = np.concatenate([y1, y2], axis=1), np.concatenate([w1, w2], axis=1)
        out[sl] = 0.5 * np.einsum("np,np->n", w, np.abs(diff(y)))
    return out


# ------------------------------------------------------ Hellinger distance
def _pair_terms(comp_a, comp_b) -> tuple[np.ndarray, np.ndarray]:
    """Log coupling ``log sqrt(w_i v_j) BC_ij`` and closed-form ``h^2`` of every pair of
    component i of a and j of b taken alone (as if the pair were the whole of both
    mixtures), both of shape (n, k_a, k_b)."""
    (lw_a, mu_a, sd_a), (lw_b, mu_b, sd_b) = comp_a, comp_b
    v = sd_a[:, None] ** 2 + sd_b[None, :] ** 2
    # log BC = 1/2 log(2 s1 s2 / v) - dmu^2 / (4 v); log1p keeps it exact for s1 ~ s2
    log_bc = 0.5 * np.log1p(-((sd_a[:, None] - sd_b[None, :]) ** 2) / v) \
        - (mu_a[:, :, None] - mu_b[:, None, :]) ** 2 / (4 * v)
    la, lb = lw_a[:, :, None], lw_b[:, None, :]
    with np.errstate(invalid="ignore"):
        log_c = 0.5 * (la + lb) + log_bc
        # 1/2 (sqrt w - sqrt v)^2 + sqrt(w v) (1 - BC): both terms without cancellation
        pair = 0.5 * np.exp(np.maximum(la, lb)) * np.expm1(-0.5 * np.abs(la - lb)) ** 2 \
            - np.exp(0.5 * (la + lb)) * np.expm1(log_bc)
    return log_c, np.nan_to_num(pair)


def _clusters(edge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the coupling graph (n, k_a, k_b): for each of the
    k_a + k_b components the smallest index in its cluster, and the cluster's size."""
    n, ka, kb = edge.shape
    lab_a = np.broadcast_to(np.arange(ka), (n, ka))
    lab_b = np.broadcast_to(np.arange(ka, ka + kb), (n, kb))
    while True:  # spread the smallest label along the edges; at most k_a + k_b rounds
        new_a = np.minimum(lab_a, np.where(edge, lab_b[:, None, :], ka + kb).min(axis=2))
        new_b = np.minimum(lab_b, np.where(edge, new_a[:, :, None], ka + kb).min(axis=1))
        if np.array_equal(new_a, lab_a) and np.array_equal(new_b, lab_b):
            break
        lab_a, lab_b = new_a, new_b
    label = np.concatenate([lab_a, lab_b], axis=1)
    return label, (label[:, :, None] == label[:, None, :]).sum(axis=2)


def _crossovers(log_w: np.ndarray, mu: np.ndarray, sd: np.ndarray):
    """Centres y, half-distances a and the smaller sd s (n, m) of the crossovers of the
    components of one mixture whose branch points need graded panels (NaN elsewhere).

    Where two components i, j of one mixture are equal, ``p`` has complex zeros at
    ``y +- i a``, ``a = pi / |d/dy log(p_i / p_j)|``: close to the line where the two
    meet in each other's tails, and they limit any fixed rule there. Only crossovers
    where the density is above e^-40, no third component is e^3 times larger, and
    ``a`` is below 2 sd of both count.
    """
    log_d = log_w - np.log(sd) - _LOG_SQRT_2PI
    out = []
    k = mu.shape[1]
    for i in range(k):
        for j in range(i + 1, k):
            # log(p_i / p_j) = A u^2 + B u + C in u = y - mu_i
            delta = mu[:, i] - mu[:, j]
            A, B = 0.5 / sd[j] ** 2 - 0.5 / sd[i] ** 2, delta / sd[j] ** 2
            C = log_d[:, i] - log_d[:, j] + 0.5 * delta**2 / sd[j] ** 2
            rest = [c for c in range(k) if c not in (i, j)]
            with np.errstate(all="ignore"):
                if A == 0.0:
                    roots = [-C / B]
                else:  # the stable quadratic formula; NaN without real roots
                    q = -0.5 * (B + np.copysign(np.sqrt(B * B - 4 * A * C), B))
                    roots = [q / A, C / q]
                for u in roots:
                    a = np.pi / np.abs(2 * A * u + B)
                    top = log_d[:, i] - 0.5 * (u / sd[i]) ** 2 + np.log(2.0)
                    ok = (top > _LOG_TINY) & (a < _NEAR * min(sd[i], sd[j]))
                    y = mu[:, i] + u
                    if rest:
                        z = (y[:, None] - mu[:, rest]) / sd[rest]
                        ok &= (log_d[:, rest] - 0.5 * z * z).max(axis=1) < top + 3.0
                    out.append(np.where(ok, [y, a, np.full(len(a), min(sd[i], sd[j]))], np.nan))
    if not out:
        return (np.empty((mu.shape[0], 0)),) * 3
    return tuple(np.stack([o[t] for o in out], axis=1) for t in range(3))


def _panels(comp_a, comp_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row index and ends of every panel of every row (flat arrays; see the module
    notes). A component's breakpoints are left out within 8.25 sd of one with a smaller
    sd; the ends are those of all windows."""
    (lw_a, mu_a, sd_a), (lw_b, mu_b, sd_b) = comp_a, comp_b
    mu, sd = np.concatenate([mu_a, mu_b], axis=1), np.concatenate([sd_a, sd_b])
    n, k = mu.shape
    yx, ax, sx = (np.concatenate(v, axis=1) for v in zip(
        _crossovers(lw_a, mu_a, sd_a), _crossovers(lw_b, mu_b, sd_b), strict=True))
    keep = np.isfinite(ax).any(axis=0)
    yx, ax, sx = yx[:, keep], ax[:, keep], sx[:, keep]
    with np.errstate(invalid="ignore"):
        # of crossovers closer than 2 a keep the one with the smaller a (then smaller y):
        # p and q cross at nearly the same place when the fit is near the truth
        ai, aj, yi, yj = ax[:, :, None], ax[:, None, :], yx[:, :, None], yx[:, None, :]
        twin = (np.abs(yi - yj) < 2 * np.minimum(ai, aj)) \
            & ((aj < ai) | ((aj == ai) & (yj < yi)))
        ax = np.where(twin.any(axis=2), np.nan, ax)
        offs = ax[:, :, None] * _GRADE
        offs = np.where(offs < _NEAR * sx[:, :, None], offs, np.nan)
        graded = yx[:, :, None] + np.concatenate([-offs, 0 * ax[:, :, None], offs], axis=2)
        pts = [graded.reshape(n, -1)]
        for c in range(k):
            grid = mu[:, c:c + 1] + sd[c] * _ZH
            finer = sd < sd[c]  # (not by order: the rule stays symmetric in p and q)
            if finer.any():
                served = (np.abs(grid[:, :, None] - mu[:, None, finer])
                          < (_HALF_WIDTH + 0.25) * sd[finer]).any(axis=2)
                grid = np.where(served, np.nan, grid)
            pts.append(grid)
        bp = np.sort(np.concatenate(pts, axis=1), axis=1)
        last = np.isfinite(bp).sum(axis=1) - 1
        bp = bp[:, :last.max() + 1]
        bp[:, 0] = np.fmin(bp[:, 0], (mu - _HALF_WIDTH * sd).min(axis=1))
        bp[np.arange(n), last] = np.fmax(bp[np.arange(n), last],
                                         (mu + _HALF_WIDTH * sd).max(axis=1))
        row, col = np.nonzero(bp[:, 1:] > bp[:, :-1])  # NaN compares False
    return row, bp[row, col], bp[row, col + 1]


def _sqrt_density(y: np.ndarray, log_d: np.ndarray, mu: np.ndarray, sd: np.ndarray):
    """Square root of a mixture density at the nodes y (P, m) of P panels, from the log
    weight / sd / sqrt(2 pi) and mean of each component at each panel (P, k): a direct
    sum, one exp per node and component (the root of one Gaussian is a Gaussian)."""
    if mu.shape[1] == 1:
        t = (y - mu) * (0.5 / sd[0])
        t *= t
        np.subtract(0.5 * log_d, t, out=t)
        return np.exp(t, out=t)
    acc = np.zeros_like(y)
    for c in range(mu.shape[1]):
        t = y - mu[:, c:c + 1]
        t *= np.sqrt(0.5) / sd[c]
        t *= t
        np.subtract(log_d[:, c:c + 1], t, out=t)
        acc += np.exp(t, out=t)
    return np.sqrt(acc, out=acc)


def _quad_rows(comp_a, comp_b) -> np.ndarray:
    """``h^2`` of each row (one cluster) by Gauss-Legendre on its panels, in chunks of
    panels small enough to stay in cache."""
    row, lo, hi = _panels(comp_a, comp_b)
    half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
    (lw_a, mu_a, sd_a), (lw_b, mu_b, sd_b) = comp_a, comp_b
    la = lw_a - np.log(sd_a) - _LOG_SQRT_2PI
    lb = lw_b - np.log(sd_b) - _LOG_SQRT_2PI
    panel = np.empty(row.size)
    for sl in _chunks(row.size, _N_GL * (sd_a.size + sd_b.size), _CACHE_CELLS):
        y = mid[sl, None] + half[sl, None] * _GL_X
        r = row[sl]
        d = _sqrt_density(y, la[r], mu_a[r], sd_a)
        d -= _sqrt_density(y, lb[r], mu_b[r], sd_b)
        d *= d
        panel[sl] = half[sl] * (d * _GL_W).sum(axis=1)
    return 0.5 * np.bincount(row, panel, minlength=len(mu_a))


def _hellinger_sq_rows(comp_a, comp_b) -> np.ndarray:
    """``h(x)^2`` of every row: clusters of the components, closed forms for clusters of
    one or two components, quadrature for the others (see the module notes)."""
    (lw_a, mu_a, sd_a), (lw_b, mu_b, sd_b) = comp_a, comp_b
    ka = mu_a.shape[1]
    log_c, pair = _pair_terms(comp_a, comp_b)
    edge = log_c > _LOG_TOL
    label, size = _clusters(edge)
    weight = np.exp(np.concatenate([lw_a, lw_b], axis=1))
    out = 0.5 * np.where(size == 1, weight, 0.0).sum(axis=1)
    out += np.where(edge & (size[:, :ka, None] == 2), pair, 0.0).sum(axis=(1, 2))
    # one task per (row, cluster of three or more); tasks with the same components
    # are integrated together
    row, lead = np.nonzero((label == np.arange(label.shape[1])) & (size > 2))
    members = label[row] == lead[:, None]
    keys = members @ (1 << np.arange(members.shape[1], dtype=np.int64)) \
        if members.shape[1] < 63 else np.unique(members, axis=0, return_inverse=True)[1]
    _, first, which = np.unique(keys, return_index=True, return_inverse=True)
    for g, i in enumerate(first):
        r = row[which == g]
        ia, ib = members[i, :ka], members[i, ka:]
        out[r] += _quad_rows((lw_a[r][:, ia], mu_a[r][:, ia], sd_a[ia]),
                             (lw_b[r][:, ib], mu_b[r][:, ib], sd_b[ib]))
    return out


# ------------------------------------------------------------- public API
def hellinger(model_a, model_b, X, *, pointwise: bool = False):
    """Mean Hellinger distance between the conditional densities of y given the rows of X.

    ``h(x) = sqrt( 1/2 int (sqrt p_a(y|x) - sqrt p_b(y|x))^2 dy )``, in [0, 1], for every
    row in closed form where the components pair up, by deterministic quadrature in y
    elsewhere (accurate to about 1e-12 in h^2, see the module notes), vectorised over
    the rows.

    Parameters
    ----------
    model_a, model_b : GaussianMoE
        Any gates (top-K zero weights are allowed); the same d. A fitted
        MoERegressor or a FitResult is accepted too.
    X : array-like of shape (n_samples, n_features)
        Covariates over which the distance is averaged (a large fixed sample or grid).
    pointwise : bool, default=False
        Return the distance of every row instead of the mean.

    Returns
    -------
    float, or ndarray of shape (n_samples,) if ``pointwise``

    Raises
    ------
    ValueError
        If the models' numbers of features differ or X does not have d columns.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import GaussianMoE, MoEParams
    >>> from gmoe.density import hellinger
    >>> p = MoEParams([0.0], [[0.0]], [[1.0]], [0.0], [1.0])
    >>> a, b = GaussianMoE("softmax", p), GaussianMoE("softmax", p.replace(b=[1.0]))
    >>> round(hellinger(a, b, np.zeros((1, 1))), 8)  # sqrt(1 - exp(-1/8))
    0.34278725
    """
    comp_a, comp_b = _components(model_a, model_b, X)
    h = np.sqrt(np.clip(_hellinger_sq_rows(comp_a, comp_b), 0.0, 1.0))
    return h if pointwise else float(np.mean(h))


def total_variation(model_a, model_b, X, *, pointwise: bool = False):
    """Mean total-variation distance between the conditional densities of y given X.

    ``tv(x) = 1/2 int |p_a(y|x) - p_b(y|x)| dy``, in [0, 1], by deterministic
    Gauss-Legendre quadrature on panels around every component, split where
    ``p_a - p_b`` changes sign (:func:`hellinger` has closed forms for clusters of
    one or two components; this one has none).

    Parameters
    ----------
    model_a, model_b : GaussianMoE
    X : array-like of shape (n_samples, n_features)
    pointwise : bool, default=False
        Return the distance of every row instead of the mean.

    Returns
    -------
    float, or ndarray of shape (n_samples,) if ``pointwise``

    Raises
    ------
    ValueError
        If the models' numbers of features differ or X does not have d columns.

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import GaussianMoE, MoEParams
    >>> from gmoe.density import total_variation
    >>> p = MoEParams([0.0], [[0.0]], [[1.0]], [0.0], [1.0])
    >>> a, b = GaussianMoE("softmax", p), GaussianMoE("softmax", p.replace(b=[1.0]))
    >>> round(total_variation(a, b, np.zeros((1, 1))), 8)  # 2 Phi(1/2) - 1
    0.38292492
    """
    comp_a, comp_b = _components(model_a, model_b, X)
    tv = np.clip(_tv_rows(comp_a, comp_b), 0.0, 1.0)
    return tv if pointwise else float(np.mean(tv))
