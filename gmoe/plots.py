"""Convergence-rate plots (the rate tables are :mod:`gmoe.tables`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .parameter_errors import ParameterErrors
from .rates import check_center, fit_rate, loss_center
from .tables import (
    CAP_FLAGS,
    capped_share,
    check_metrics,
    failed_share,
    load_sweep,
    metric_values,
    theories,
    uncertified_share,
    verdict_range,
)

__all__ = ["plot_rates", "plot_failures", "plot_sweep", "METRIC_LABELS"]

#: The error bars of :func:`plot_rates`.
BANDS = ("quantile", "sd")

METRIC_LABELS = {
    "loss": "Voronoi loss",
    "hellinger": "Hellinger distance",
    "tau_error": "|tau - tau*|",
    "logit_ratio": "max |d((beta_i - beta_j) / tau)|",
    "logit_raw": "max |d(beta_i - beta_j)|",
}


def _metric_label(metric: str, kind: str | None = None, translation: str | None = None) -> str:
    """Axis label of a metric; losses and gate errors name their translation convention."""
    if metric in ("loss", "loss_mass", "loss_infimum"):
        label = {"exact": "Voronoi loss D1", "over": "Voronoi loss D2"}.get(kind, "Voronoi loss")
        convention = {"loss_mass": "mass", "loss_infimum": "infimum"}.get(metric, translation)
        return label + (f", translation: {convention}" if convention else "")
    column = ParameterErrors.parse_column(metric)
    if column is None or column.param == "size":
        return METRIC_LABELS.get(metric, metric)
    if column.param == "light_share":
        return f"lightest atom's share of the weight, cells of {column.size}"
    if column.atom is not None:
        label = f"|d{column.param}| of true atom {column.atom}"
    else:
        which = {"heavy": ", heaviest atom", "light": ", lightest atom"}.get(column.part, "")
        label = f"|d{column.param}| in cells of {column.size} atoms{which}"
    if translation and column.param in ("beta1", "weight"):
        label += f", translation: {translation}"
    return label


def _translation(df) -> str:
    """The loss's translation convention as recorded (older sweeps: the infimum)."""
    if "loss_translation" in df and df["loss_translation"].notna().any():
        return str(df["loss_translation"].dropna().iloc[0])
    return "infimum"


def _loss_kind(df) -> str | None:
    """'exact' or 'over' as recorded by the sweep, None if no loss was recorded."""
    if "loss_kind" in df and df["loss_kind"].notna().any():
        return df["loss_kind"].dropna().iloc[0]
    return None


def plot_rates(results, metric: str = "loss", center: str = "median", band: str = "quantile",
               theory: float | None = None, ax=None, title: str | None = None,
               verdict: tuple | None = None):
    """Log-log plot of a metric against n, with the fitted rate and the theoretical slope.

    Parameters
    ----------
    results : DataFrame or path of a sweep folder
    metric : str
        Column of the results (``loss``, ``hellinger``, ``beta1_size2``, ...).
    center : {"median", "mean_log", "mean", "q90"}, default="median"
        The per-n summary that is plotted and fitted.
    band : {"quantile", "sd"}, default="quantile"
        Error bars: the 10%-90% quantiles over replications, or the mean +- 2
        standard deviations (clipped at the smallest positive value; the points are
        then the means). The legend says which.
    theory : float, optional
        Theoretical slope (default: the config's ``[theory]`` entry for the metric).
        Only its slope is theory: the dashed line goes through the (first) fitted
        line at the geometric middle of the sample sizes, and the legend says so.
        The fitted line's legend gives its slope and 95% confidence interval.
    ax : matplotlib Axes, optional
    title : str, optional
    verdict : (float, float), optional
        The n-range the rate is fitted on (default: the config's declared
        ``[verdict]``, read from the sweep folder; the whole grid if none).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        An unknown ``center``, ``band`` or ``metric`` (the message lists the metrics
        the results hold).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    check_center(center)
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}; expected one of {BANDS}")
    df, meta = load_sweep(results)
    check_metrics(df, [metric])
    if theory is None:
        theory = theories(meta).get(metric)
    kind = _loss_kind(df)
    fig, ax = figure_axes(ax, (6.4, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    anchor = None
    mids, bar_tops = [], []
    for idx, ((_sub, label), part) in enumerate(df.groupby(["sub", "label"], sort=True,
                                                         dropna=False)):
        color = colors[idx % len(colors)]
        values = metric_values(part, metric)
        grouped = pd.DataFrame({"n": part["n"].to_numpy(), "v": values}).groupby("n")["v"]
        ns = np.array(sorted(grouped.groups))
        mid = grouped.apply(lambda s: loss_center(s.to_numpy(), center)).to_numpy()
        if band == "sd":
            sd = grouped.std().fillna(0).to_numpy()
            mean = grouped.mean().to_numpy()
            lo = np.maximum(mean - 2 * sd, np.nanmin(mid[mid > 0]) / 10)
            hi = mean + 2 * sd
            mid = mean
        else:
            lo = grouped.quantile(0.1).to_numpy()
            hi = grouped.quantile(0.9).to_numpy()
        yerr = np.vstack([np.maximum(mid - lo, 0), np.maximum(hi - mid, 0)])
        mids.append(mid)
        bar_tops.append(hi)
        name = label if isinstance(label, str) and label else "empirical"
        # the legend says what the points and the bars are
        shown, bars = ("mean", "mean ± 2 sd") if band == "sd" else (center, "10-90% quantiles")
        ax.errorbar(ns, mid, yerr=yerr, fmt="o", ms=3.5, color=color, alpha=0.75,
                    elinewidth=0.8, capsize=0,
                    label=f"{name}: {shown} of the replications, bars {bars}")
        n_all = part["n"].to_numpy(dtype=float)
        n_min, n_max = verdict_range(meta) if verdict is None else verdict
        inside = (n_all >= n_min) & (n_all <= n_max)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                rate = fit_rate(n_all[inside], values[inside], center=center)
        except ValueError:
            continue
        # the fitted line spans the declared verdict range only
        grid = np.geomspace(max(ns.min(), n_min), min(ns.max(), n_max), 50)
        ax.plot(grid, rate.constant * grid**rate.slope, "-", color=color, lw=1.8,
                label=_fit_label(rate))
        if anchor is None:
            gm = float(np.sqrt(ns.min() * ns.max()))
            anchor = (gm, rate.constant * gm**rate.slope, ns.min(), ns.max(),
                      "" if name == "empirical" else f" of {name}")
    if theory is not None and anchor is not None:
        gm, val, lo_n, hi_n, whose = anchor
        grid = np.geomspace(lo_n, hi_n, 50)
        # only the slope is theory: the line is placed on the (first) fitted line
        ax.plot(grid, val * (grid / gm) ** theory, "--", color="0.3", lw=1.3,
                label=f"theory slope $n^{{{theory:g}}}$, through the fit{whose} at "
                      f"n = {gm:.0f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _clip_wild_bars(ax, mids, bar_tops)
    label = _metric_label(metric, kind, _translation(df))
    ax.set_ylabel(label)
    return _finish(fig, ax, meta, title, label)


def figure_axes(ax, figsize: tuple[float, float]):
    """``(figure, axes)``: a new figure of ``figsize`` inches when ``ax`` is None,
    else ``ax`` and its figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.figure, ax


#: Error bars reaching beyond this factor above the largest centre are clipped.
_BAR_CLIP = 1e3


def _clip_wild_bars(ax, mids: list, tops: list) -> None:
    """Keep the centres readable when a quantile bar reaches absurd values (a fit
    whose gate weights overflow has a loss of 1e100): the y axis stops at
    ``_BAR_CLIP`` times the largest centre, and the plot says so."""
    mid = np.concatenate(mids) if mids else np.array([])
    top = np.concatenate(tops) if tops else np.array([])
    mid = mid[np.isfinite(mid) & (mid > 0)]
    if not mid.size:
        return
    cap = float(mid.max()) * _BAR_CLIP
    top = top[~np.isnan(top)]      # an n without fits has no bar (NaN), not a wild one
    if top.size and top.max() > cap:
        low = max(ax.get_ylim()[0], float(mid.min()) / _BAR_CLIP)
        ax.set_ylim(low, cap)
        ax.annotate(f"bars clipped at {_BAR_CLIP:g}x the largest centre", (0.99, 0.98),
                    xycoords="axes fraction", ha="right", va="top", fontsize=7,
                    color="0.35")


def _fit_label(rate) -> str:
    """Legend text of a fitted rate: slope and its confidence interval, named as such."""
    level = f"{100 * (1 - rate.alpha):g}%"
    return (f"fit $n^{{{rate.slope:.2f}}}$, {level} CI [{rate.ci_low:.2f}, "
            f"{rate.ci_high:.2f}]")


def _finish(fig, ax, meta: dict, title: str | None, what: str):
    """The common end of a plot against n: axis label, title, grid, legend, layout."""
    ax.set_xlabel("sample size n")
    name = meta.get("configs", [{}])[0].get("name", "") if meta else ""
    ax.set_title(title if title is not None else f"{name}: {what}")
    ax.grid(True, which="both", alpha=0.25)
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 5:
        # many series: the legend goes below the axes, where it hides no data
        width, height = fig.get_size_inches()
        fig.set_size_inches(width, height + 0.2 * len(handles))
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1,
                  frameon=False)
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


_FAILURES_TITLE = "failed and uncertified fits, capped losses"


def plot_failures(results, ax=None, title: str | None = None):
    """Share of failed fits and of capped losses (``loss``, and ``loss_infimum`` where
    some are capped) against n, one colour per sub-sweep.

    A fit fails when it does not succeed (e.g. it ends at the variance floor: a
    degenerate variance). A loss is capped when the translation infimum sends the
    fitted weights to zero (see :func:`gmoe.losses.voronoi_loss`): the fit is then no
    closer to the truth than the empty measure. Medians hide both; this plot shows
    whether they vanish as n grows.

    Parameters
    ----------
    results : DataFrame or path of a sweep folder
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    df, meta = load_sweep(results)
    fig, ax = figure_axes(ax, (6.4, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for idx, ((_sub, label), part) in enumerate(df.groupby(["sub", "label"], sort=True,
                                                         dropna=False)):
        color = colors[idx % len(colors)]
        name = label if isinstance(label, str) and label else "fits"
        by_n = part.groupby("n")
        ns = np.array(sorted(by_n.groups))
        failed = by_n.apply(failed_share).to_numpy()
        ax.plot(ns, failed, "o-", ms=3.5, color=color,
                label=f"{name}: failed fits (degenerate included)")
        if "certified" in part.columns and part["certified"].notna().any():
            uncertified = by_n.apply(uncertified_share).to_numpy()
            ax.plot(ns, uncertified, "^:", ms=3.5, color=color,
                    label=f"{name}: not certified (incl. degenerate)")
        for metric, flag in CAP_FLAGS.items():
            # the configured loss always (its caps, or none); the infimum
            # convention's loss beside it where some of its values are capped
            if flag in part.columns and (metric == "loss" or part[flag].eq(True).any()):
                capped = by_n.apply(capped_share, metric=metric).to_numpy()
                ax.plot(ns, capped, "s--" if metric == "loss" else "d-.", ms=3,
                        color=color, alpha=0.7, label=f"{name}: capped {metric} values")
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("share of replications")
    return _finish(fig, ax, meta, title, _FAILURES_TITLE)


def default_metrics(df, theory: dict) -> list[str]:
    """Metrics worth a plot: the losses, and every metric with a theoretical slope."""
    wanted = ["loss", "loss_mass", "hellinger", *theory]
    return [m for m in dict.fromkeys(wanted) if m in df.columns and df[m].notna().any()]


def plot_sweep(out_dir, metrics=None, center: str = "median", formats=("png", "pdf"),
               dest=None) -> list[Path]:
    """Draw and save one figure per metric of a sweep folder; returns the files written.

    A sweep in which some fits failed, were not certified or some losses were
    capped also gets ``NAME_failures`` (see :func:`plot_failures`), whichever
    metrics are drawn. An unknown ``center`` or metric is a ValueError, raised
    before anything is written.
    """
    import matplotlib

    matplotlib.use("Agg")

    check_center(center)
    df, meta = load_sweep(out_dir)
    theory = theories(meta)
    # the shares behind every rate: drawn whenever some fits failed or were capped
    failures = (failed_share(df) > 0 or uncertified_share(df) > 0
                or any(capped_share(df, m) > 0 for m in CAP_FLAGS))
    default = metrics is None
    metrics = default_metrics(df, theory) if metrics is None else check_metrics(df, metrics)
    dest = Path(out_dir) if dest is None else Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = meta.get("configs", [{}])[0].get("name", "sweep") if meta else "sweep"
    kind = _loss_kind(df)
    written = []
    for metric in metrics:
        # the results are loaded once, not once per metric
        fig = plot_rates(df, metric, center=center, theory=theory.get(metric),
                         verdict=verdict_range(meta),
                         title=f"{name}: {_metric_label(metric, kind, _translation(df))}")
        written += _save(fig, dest / f"{name}_{metric}", formats)
    if failures:
        fig = plot_failures(df, title=f"{name}: {_FAILURES_TITLE}")
        written += _save(fig, dest / f"{name}_failures", formats)
    if default and "k_dsc" in df.columns:  # the "selection" metric: accuracy against n
        from .selection.plots import selection_figures
        written += selection_figures(df, meta, dest, name, formats)
    return written


def _save(fig, stem: Path, formats) -> list[Path]:
    """Save ``fig`` as ``stem.FMT`` for each format, close it; returns the paths."""
    import matplotlib.pyplot as plt

    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths
