"""Starting points for EM: every initialisation is turned into parameters by one M-step."""

from __future__ import annotations

import numpy as np

from ._design import Design
from .experts import experts_m_step
from .gates import Gate
from .params import MoEParams
from .settings import INITS

__all__ = ["INITS", "near_truth_params", "kmeans_rows", "kmeans_responsibilities",
           "random_responsibilities", "params_from_responsibilities"]



def near_truth_params(truth: MoEParams, k: int, n: int, rng, scale: float = 1.0,
                      exponent: float = -0.083) -> MoEParams:
    """The published protocol: perturb the truth with noise of sd ``scale * n**exponent``.

    Fitted experts are assigned at random to true experts so that every true expert
    receives at least one (when ``k >= k*``). Experts sharing a true atom split its
    gate weight: each gets ``beta0* - log(m)`` for m fitted copies, so the mixing
    measure's weights add up. Every parameter then gets independent Gaussian noise;
    standard deviations are perturbed (and their absolute value taken), and a
    temperature is perturbed on the log scale.

    Parameters
    ----------
    truth : MoEParams
    k : int
        Number of fitted experts.
    n : int
        Sample size (sets the noise level).
    rng : numpy.random.Generator
    scale : float or "published", default=1.0
        The constant c in ``c * n**exponent``, for every parameter (standard
        deviations perturbed, then their absolute value taken). ``"published"`` is
        the published code's profile: c = 0.005 for the gating parameters (and log
        tau), c = 0.05 for the expert slopes and intercepts, and
        ``|N(0, 0.005 n**-0.25)|`` added to each variance.
    exponent : float, default=-0.083

    Returns
    -------
    MoEParams with k experts.
    """
    kstar = truth.k
    if k >= kstar:
        assign = np.concatenate([np.arange(kstar), rng.integers(0, kstar, size=k - kstar)])
        assign = rng.permutation(assign)
    else:
        assign = rng.choice(kstar, size=k, replace=False)
    copies = np.bincount(assign, minlength=kstar)[assign]
    published = isinstance(scale, str)
    if published and scale != "published":
        raise ValueError(f"init_scale must be a number >= 0 or 'published', but got {scale!r}")
    shrink = float(n) ** exponent
    gate_sd = (0.005 if published else scale) * shrink
    expert_sd = (0.05 if published else scale) * shrink

    def noisy(x, sd):
        return x + sd * rng.standard_normal(np.shape(x))

    beta0 = noisy(truth.beta0[assign] - np.log(copies), gate_sd)
    beta1 = noisy(truth.beta1[assign], gate_sd)
    a = noisy(truth.a[assign], expert_sd)
    b = noisy(truth.b[assign], expert_sd)
    if published:
        # the published code adds |N(0, 0.005 n^-0.25)| to the variances
        var = truth.var[assign] + np.abs(0.005 * float(n) ** -0.25
                                         * rng.standard_normal(k))
    else:
        std = np.abs(noisy(truth.sd[assign], expert_sd))
        var = np.maximum(std, 1e-3 * truth.sd.min()) ** 2
    tau = (None if truth.tau is None
           else float(truth.tau * np.exp(gate_sd * rng.standard_normal())))
    cov = None
    if truth.gate_cov is not None:
        # Gaussian gate: the published code adds diag |N(0, 0.0005 n^-0.25)| to each
        # covariance; otherwise each is scaled by exp(N(0, gate_sd^2)) (stays positive
        # definite)
        cov = truth.gate_cov[assign].copy()
        d = cov.shape[1]
        if published:
            noise = np.abs(0.0005 * float(n) ** -0.25 * rng.standard_normal((k, d)))
            cov += noise[:, :, None] * np.eye(d)
        else:
            cov *= np.exp(gate_sd * rng.standard_normal(k))[:, None, None]
    return MoEParams(beta0, beta1, a, b, var, tau, cov)


def _any_row(rng, n: int, weight: np.ndarray | None) -> int:
    """A row drawn uniformly, or in proportion to its weight (uniformly when every
    weight is 0, e.g. a sample of weightless rows)."""
    if weight is None or not weight.sum() > 0:
        return int(rng.integers(n))
    return int(rng.choice(n, p=weight / weight.sum()))


def _seed_centres(data: np.ndarray, sq_norms: np.ndarray, k: int, rng,
                  weight: np.ndarray | None = None) -> np.ndarray:
    """k-means++ seeding: k rows of ``data``, each drawn with probability proportional
    to its squared distance from the nearest centre drawn before (times its weight,
    with sample weights: a row of weight w counts as w rows; the first is drawn with
    probability proportional to the weight)."""
    n = data.shape[0]
    centers = np.empty((k, data.shape[1]))
    centers[0] = data[_any_row(rng, n, weight)]
    closest = np.full(n, np.inf)
    for j in range(1, k):
        dist = sq_norms - 2 * data @ centers[j - 1] + centers[j - 1] @ centers[j - 1]
        closest = np.minimum(closest, np.maximum(dist, 0))
        score = closest if weight is None else closest * weight
        total = score.sum()
        centers[j] = data[_any_row(rng, n, weight) if total <= 0
                          else rng.choice(n, p=score / total)]
    return centers


def _nearest(data: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The index of each row's nearest centre (squared Euclidean distance)."""
    dist = sq_norms[:, None] - 2 * data @ centers.T + np.einsum("kd,kd->k", centers, centers)
    return dist.argmin(axis=1)


def _lloyd(data: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray,
           max_iter: int, weight: np.ndarray | None = None) -> np.ndarray:
    """Lloyd's iterations from ``centers`` (updated in place) until the labels repeat
    or ``max_iter``; returns the labels. The centres are the (weighted) means of their
    rows; an empty cluster (or one of weight 0) keeps its centre."""
    k = centers.shape[0]
    labels = np.full(data.shape[0], -1)
    for _ in range(max_iter):
        new = _nearest(data, sq_norms, centers)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, weights=weight, minlength=k)
        sums = np.column_stack([np.bincount(labels, minlength=k, weights=(
            col if weight is None else col * weight)) for col in data.T])
        nonempty = counts > 0
        centers[nonempty] = sums[nonempty] / counts[nonempty, None]
    return labels


def kmeans_rows(n: int, sample: int | None, rng) -> np.ndarray | None:
    """The rows on which k-means seeds and iterates: ``sample`` of the n rows, drawn
    without replacement (in increasing order), or None (every row, and nothing drawn
    from ``rng``) when ``sample`` is None or at least n.

    One draw serves every restart of a fit: restarts whose seeding leads to the same
    centres then label the n rows identically, and :func:`gmoe._restarts.start_key`
    recognises the repeated start, as it does for the full k-means.
    """
    if sample is None or sample >= n:
        return None
    return np.sort(rng.choice(n, size=sample, replace=False))


def kmeans_responsibilities(X: np.ndarray, y: np.ndarray, k: int, rng,
                            max_iter: int = 100, rows: np.ndarray | None = None,
                            weight: np.ndarray | None = None) -> np.ndarray:
    """One-hot responsibilities (k, n) from k-means (k-means++ seeding) on standardised (X, y).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    k : int
        Number of clusters.
    rng : numpy.random.Generator
    max_iter : int, default=100
        Largest number of Lloyd iterations.
    rows : ndarray of int, optional
        Seed and run Lloyd's iterations on these rows only (at least k of them, see
        :func:`kmeans_rows`), then label every row by its nearest centre: one pass
        over the n rows instead of one per iteration. None: every row.
    weight : ndarray of shape (n,), optional
        Sample (frequency) weights: the standardisation, the seeding and the centres
        are weighted, so a row of weight w counts as w rows (a row of weight 0 never
        seeds a centre nor moves one). On a sample of rows, the sample's weights.

    Returns
    -------
    ndarray of shape (k, n)
    """
    n = len(y)
    if k == 1:
        # one cluster: every row is labelled 0 whatever the data; the seed is still
        # drawn, so that the generator moves on as the seeding would have moved it
        _any_row(rng, n if rows is None else len(rows),
                 weight if rows is None or weight is None else weight[rows])
        labels = np.zeros(n, dtype=np.intp)
    elif rows is not None:
        labels = _sampled_kmeans_labels(X, y, k, rng, max_iter, rows, weight)
    else:
        data = np.column_stack([X, y])
        if weight is None:
            data = (data - data.mean(axis=0)) / np.maximum(data.std(axis=0), 1e-300)
        else:
            data -= np.average(data, axis=0, weights=weight)
            data /= np.maximum(np.sqrt(np.average(data * data, axis=0, weights=weight)),
                               1e-300)
        sq_norms = np.einsum("nd,nd->n", data, data)
        labels = _lloyd(data, sq_norms, _seed_centres(data, sq_norms, k, rng, weight),
                        max_iter, weight)
    resp = np.zeros((k, n))
    resp[labels, np.arange(n)] = 1.0
    return resp


def _sampled_kmeans_labels(X: np.ndarray, y: np.ndarray, k: int, rng, max_iter: int,
                           rows: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Labels of every row by the nearest k-means centre of the given rows.

    The full-data Lloyd iterations cost about as much as an EM run at n = 1e5; here
    they cost O(len(rows)) each and one pass over the n rows labels them. The data
    are standardised feature-major ((d + 1, n), each feature's n values contiguous):
    the means and deviations are then fast row reductions, where those down the
    columns of an (n, d + 1) array (the full k-means', kept for its numbers) are not.
    """
    data_T = np.vstack([X.T, y])
    if weight is None:
        data_T -= data_T.mean(axis=1, keepdims=True)
        data_T /= np.maximum(data_T.std(axis=1, keepdims=True), 1e-300)
    else:
        data_T -= (data_T @ weight)[:, None] / weight.sum()
        data_T /= np.maximum(np.sqrt((data_T * data_T) @ weight / weight.sum()),
                             1e-300)[:, None]
    sub = np.ascontiguousarray(data_T[:, rows].T)
    sub_norms = np.einsum("nd,nd->n", sub, sub)
    # rows drawn uniformly, each with its weight: the weighted sample stands for the
    # weighted data
    sub_weight = None if weight is None else weight[rows]
    centers = _seed_centres(sub, sub_norms, k, rng, sub_weight)
    _lloyd(sub, sub_norms, centers, max_iter, sub_weight)
    # a row's own squared norm is common to every centre: left out of the argmin
    return (np.einsum("kd,kd->k", centers, centers)[:, None]
            - 2 * centers @ data_T).argmin(axis=0)


def random_responsibilities(n: int, k: int, rng) -> np.ndarray:
    """Responsibilities (k, n) drawn from a flat Dirichlet per sample."""
    resp = rng.gamma(1.0, size=(k, n))
    resp /= resp.sum(axis=0)
    return resp


def params_from_responsibilities(design: Design, resp_T: np.ndarray, gate: Gate,
                                 var_floor: float, smooth: float = 0.05) -> MoEParams:
    """Turn responsibilities into parameters by one M-step (experts, then the gate).

    Hard (one-hot) responsibilities are smoothed towards uniform by ``smooth`` so
    that separable labels do not send the gate's first M-step to infinity; then
    multiplied by the design's sample weights, if it has any.
    """
    k = resp_T.shape[0]
    resp_T = (1 - smooth) * resp_T + smooth / k
    if design.weight is not None:
        resp_T *= design.weight
    zeros = np.zeros((k, design.d))
    a, b, var, log_phi, _, _ = experts_m_step(design, resp_T, zeros, np.zeros(k), var_floor)
    start = gate.prepare(MoEParams(np.zeros(k), zeros, a, b, var))
    log_w = gate.log_weights_T(design, start)
    params, _, _ = gate.m_step(design, resp_T, start, log_w, log_phi)
    return params
