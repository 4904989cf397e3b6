"""The work of ``gmoe select``: choose the number of experts of a CSV file's data."""

from __future__ import annotations

import warnings
from pathlib import Path

__all__ = ["select_command"]


def select_command(X, y, xcols: list, ycol: str, *, k_max: int, method: str, out: Path,
                   n_init: int, seed: int, sample_weight=None) -> str:
    """Run :func:`gmoe.select_experts` and write the dendrogram picture.

    The fits run in standardised units (``fit_em(standardize=True)``, as
    ``gmoe fit`` does), from ``n_init`` k-means starts each, weighted by
    ``sample_weight`` if given.

    Returns
    -------
    str
        What the command prints: the data, the table of criteria, the chosen k and
        the picture's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .select import select_experts

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # every warning of the fits, one line each
        result = select_experts(X, y, k_max, method=method, rng=seed, n_init=n_init,
                                standardize=True, sample_weight=sample_weight)
    fig = result.plot()
    out = Path(out)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    # n is in the summary's first line (with the weights' total when weighted)
    lines = [f"features: {', '.join(xcols)}; response: {ycol}",
             result.summary(),
             f"k = {result.k}",
             f"picture: {out}"]
    if result.tree is None:
        lines[-1] += " (the criterion against k: no dendrogram for this gate)"
    return "\n".join(lines)
