"""The work of ``gmoe select``: choose the number of experts of a CSV file's data."""

from __future__ import annotations

import warnings
from pathlib import Path

__all__ = ["select_command", "check_picture"]


def check_picture(out: Path) -> None:
    """Refuse, before any fit, a picture name matplotlib cannot write: no suffix (it
    would quietly add ``.png``) or a format it does not know (ValueError)."""
    from matplotlib.backend_bases import FigureCanvasBase

    known = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(out).suffix.lower().lstrip(".")
    if not suffix:
        raise ValueError(f"--out {out} has no suffix; name the picture's format, e.g. "
                         f"{Path(out).name}.png")
    if suffix not in known:
        raise ValueError(f"--out {out}: matplotlib cannot write .{suffix} pictures; use "
                         + ", ".join(sorted(known)))


def select_command(X, y, xcols: list, ycol: str, *, k_max: int, method: str, out: Path,
                   n_init: int, seed: int, sample_weight=None) -> tuple[str, str | None]:
    """Run :func:`gmoe.select_experts` and write the dendrogram picture.

    The fits run in standardised units (``fit_em(standardize=True)``, as
    ``gmoe fit`` does), from ``n_init`` k-means starts each, weighted by
    ``sample_weight`` if given. The fits' warnings are shown once each.

    Returns
    -------
    (str, str or None)
        What the command prints (the data, the table of criteria, the chosen k and
        the picture's path) and None; or, when the fits failed (the dendrogram's
        k_max-expert fit, or every fit of an information criterion), no output, no
        picture and the one-line reason: no k is chosen.
    """
    from ..exceptions import FitFailedError
    from .select import select_experts

    failed = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning of the fits, one line each
        try:
            result = select_experts(X, y, k_max, method=method, rng=seed, n_init=n_init,
                                    standardize=True, sample_weight=sample_weight)
        except FitFailedError:  # bad arguments are errors; failed fits are a result
            failed = (f"every fit failed (k = 1 to {k_max}; the warnings above say why): "
                      "no k is chosen")
        else:
            top = result.fits[k_max]
            if method == "dendrogram" and not top.success:
                failed = f"the {k_max}-expert fit failed: {top.reason}; no k is chosen"
    seen = set()
    for w in caught:  # once each: k = 1..k_max repeat the data's warnings
        if (w.category, str(w.message)) not in seen:
            seen.add((w.category, str(w.message)))
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if failed:
        return "", failed
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    return "\n".join(lines), None
