"""Pictures of model selection: the dendrogram, criteria against k, and the selection
accuracy of a sweep against n."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import figure_axes

__all__ = ["plot_dendrogram", "plot_criteria", "plot_selection_accuracy",
           "selection_figures", "SWEEP_METHODS"]

#: The sweep's record keys of the chosen k, with their names on plots.
SWEEP_METHODS = {"k_dsc": "DSC (dendrogram)", "k_aic": "AIC", "k_bic": "BIC",
                 "k_icl": "ICL"}


def plot_dendrogram(tree, ax=None, chosen: int | None = None, title: str | None = None):
    """Draw a :class:`~gmoe.selection.Dendrogram`: leaves labelled by fitted expert,
    merge heights on the y-axis, the atoms of the level with ``chosen`` atoms in colours
    of their own (later merges in grey).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram

    fig, ax = figure_axes(ax, (6.4, 4.0))
    k = tree.k
    if k == 1:
        ax.text(0.5, 0.5, "one expert: nothing to merge", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    # scipy wants colour strings; a style may give the cycle as RGB tuples
    colors = [to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    node_color: dict[int, str] = {}
    if chosen is not None and 1 <= chosen <= k:
        # merges before the chosen level happen inside its atoms
        inside = k - chosen
        level = tree.level(chosen)
        leaf_atom = {leaf: a for a, members in enumerate(level.members) for leaf in members}
        for m in tree.merges[:inside]:
            node_color[k - 1 + m.step] = colors[leaf_atom[_first_leaf(tree, m)]
                                                % len(colors)]

    def color(node: int) -> str:
        return node_color.get(int(node), "0.45")

    scipy_dendrogram(tree.linkage(), labels=tree.labels, ax=ax, link_color_func=color,
                     leaf_rotation=0 if k <= 8 else 90)
    ax.set_ylabel("merge height")
    ax.set_xlabel("fitted expert (leaf)")
    if title is None:
        title = f"dendrogram of the {k}-expert fit"
        if chosen is not None:
            title += f"; level with {chosen} atoms in colour"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _first_leaf(tree, merge) -> int:
    """A leaf under the left node of a merge."""
    node = merge.left
    k = tree.k
    while node >= k:
        node = tree.merges[node - k].left
    return int(node)


def plot_criteria(table, ax=None):
    """A :class:`~gmoe.selection.criteria.CriteriaTable`'s criterion against k, the chosen
    k marked.

    Returns
    -------
    matplotlib.figure.Figure
    """

    fig, ax = figure_axes(ax, (6.4, 4.0))
    k = table["k"]
    values = table[table.criterion].astype(float)
    ax.plot(k, values, "o-")
    ax.axvline(table.chosen, color="0.4", ls="--", lw=1, label=f"chosen k = {table.chosen}")
    ax.set_xlabel("number of experts k")
    ax.set_ylabel(f"{table.criterion} (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if total == 0:
        return np.nan, np.nan
    p = successes / total
    denom = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denom
    half = z * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denom
    return centre - half, centre + half


def plot_selection_accuracy(df, axes=None, title: str | None = None):
    """The share of replications that choose the true number of experts, against n.

    One panel per sub-sweep, one line per method (DSC, AIC, BIC, ICL), with 95% Wilson
    intervals; the methods' points are shifted slightly along n so that equal shares
    stay visible. Every task counts, whether its k_max fit is certified or not; one
    without a choice (an error) counts as a wrong choice.

    Parameters
    ----------
    df : DataFrame
        A sweep's results (:func:`gmoe.load_results`) with the ``selection`` metric.
    axes : sequence of matplotlib Axes, optional
        One per sub-sweep.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    groups = list(df.groupby(["sub", "label"], sort=True, dropna=False))
    if axes is None:
        fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2),
                                 sharey=True, squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    markers = ["o", "s", "^", "v"]
    for ax, ((_sub, label), part) in zip(axes, groups, strict=True):
        k_true = int(part["k_true"].dropna().iloc[0]) if "k_true" in part else None
        for idx, (key, name) in enumerate(SWEEP_METHODS.items()):
            if key not in part.columns:
                continue
            ns, share, lo, hi = [], [], [], []
            for n, rows in part.groupby("n"):
                right = int((rows[key] == rows["k_true"]).sum())
                total = len(rows)
                ns.append(n)
                share.append(right / total)
                a, b = _wilson(right, total)
                lo.append(a)
                hi.append(b)
            # a small shift along n per method, so that equal shares stay visible
            ns = np.array(ns, dtype=float) * 1.025 ** (idx - 1.5)
            ax.plot(ns, share, marker=markers[idx % 4], ms=4, label=name,
                    ls=["-", "--", "-.", ":"][idx % 4])
            ax.fill_between(ns, lo, hi, alpha=0.07)
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("sample size n")
        name = label if isinstance(label, str) and label else "all fits"
        ax.set_title(f"{name}" + (f" (true k = {k_true})" if k_true else ""), fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("share of replications choosing the true k")
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def selection_figures(df, meta: dict, dest: Path, name: str, formats) -> list[Path]:
    """The figures of a sweep with the ``selection`` metric: the accuracy of each
    method against n (``NAME_selection``) and the loss of the dendrogram's level with
    the true number of atoms (``NAME_loss_merged``). Returns the files written."""
    from ..plots import _save, plot_rates

    written = []
    fig = plot_selection_accuracy(df, title=f"{name}: probability of choosing the true k")
    written += _save(fig, Path(dest) / f"{name}_selection", formats)
    if "loss_merged" in df.columns and df["loss_merged"].notna().any():
        fig = plot_rates(df, "loss_merged",
                         title=f"{name}: Voronoi loss D1 of the dendrogram level with k* "
                               "atoms (mass)")
        fig.axes[0].set_ylabel("D1 of the merged level, translation: mass")
        written += _save(fig, Path(dest) / f"{name}_loss_merged", formats)
    return written
