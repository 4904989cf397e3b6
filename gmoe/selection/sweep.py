"""The ``selection`` metric of a sweep: the number of experts each criterion chooses."""

from __future__ import annotations

import numpy as np

from .criteria import aic, bic, icl, n_parameters, responsibility_entropy
from .dendrogram import dendrogram

__all__ = ["selection_record"]


def selection_record(cfg, fit, truth_model, X, y, fit_seed) -> dict:
    """The record entries of the ``selection`` metric for one task.

    The task's fit (``fit.n_experts = k_max`` experts) gives the dendrogram and its
    DSC choice; fits of every k = 1..k_max - 1 with the same ``[fit]`` settings (seeds
    spawned from the task's fit seed) give the AIC, BIC and ICL choices. Fits that
    failed are not chosen. Also recorded: the Voronoi loss D1 (under the config's
    ``loss.translation``) of the dendrogram's level with the true number of atoms,
    ``loss_merged``, and per k the criteria, so that choices can be recomputed.

    Never raises on a numerical failure: its reason is recorded as ``selection_error``.

    Returns
    -------
    dict
        ``k_true``, ``k_dsc``, ``k_aic``, ``k_bic``, ``k_icl``, ``loss_merged`` and
        ``selection`` (per-k details: ``dsc``, ``height``, ``level_loglik``,
        ``loglik``, ``aic``, ``bic``, ``icl``, ``certified``, ``success``).
    """
    from ..em import fit_em
    from ..losses import voronoi_loss

    out: dict = {"k_true": int(truth_model.params.k)}
    try:
        k_max = fit.params.k
        n = X.shape[0]
        tree = dendrogram(fit, X, y)
        out["k_dsc"] = tree.select()
        k_true = truth_model.params.k
        if k_true <= k_max:
            level = tree.level(k_true)
            out["loss_merged"] = voronoi_loss(level.model, truth_model, kind="exact",
                                              translation=cfg.loss_settings.translation).value
        streams = fit_seed.spawn(k_max)
        kw = cfg.fit_kwargs()
        fits = {k_max: fit}
        for k in range(1, k_max):
            fits[k] = fit_em(X, y, k, rng=np.random.default_rng(streams[k - 1]), **kw)
        detail: dict = {"dsc": tree.dsc().tolist(),
                        "height": [lev.height for lev in reversed(tree.levels)],
                        "level_loglik": [lev.loglik for lev in reversed(tree.levels)],
                        "loglik": [], "aic": [], "bic": [], "icl": [], "certified": [],
                        "success": []}
        for k in range(1, k_max + 1):
            f = fits[k]
            p = n_parameters(f.params, f.gate)
            ent = responsibility_entropy(f.model, X, y)
            detail["loglik"].append(f.loglik)
            detail["aic"].append(aic(f.loglik, p))
            detail["bic"].append(bic(f.loglik, p, n))
            detail["icl"].append(icl(f.loglik, p, n, ent))
            detail["certified"].append(bool(f.certified))
            detail["success"].append(bool(f.success))
        ok = np.array(detail["success"])
        for name in ("aic", "bic", "icl"):
            values = np.where(ok, np.array(detail[name], dtype=float), np.nan)
            out[f"k_{name}"] = (int(np.nanargmin(values)) + 1
                                if not np.all(np.isnan(values)) else None)
        out["selection"] = detail
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        out["selection_error"] = f"{type(exc).__name__}: {exc}"
    return out
