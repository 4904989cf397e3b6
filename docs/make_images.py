"""Draw the pictures of the documentation into docs/img/.

Run by hand from the repository root after a change that affects them::

    python docs/make_images.py            # gates.png and sample.png (seconds)
    python docs/make_images.py --sweep    # also first_plot.png: runs the quick sweep

The pictures are committed; the docs build does not run this script.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gmoe import GaussianMoE, MoEParams, SoftmaxGate  # noqa: E402
from gmoe.gates import (  # noqa: E402
    ActivationGate,
    LaplaceGate,
    SigmoidGate,
    TemperatureGate,
    TopKGate,
)

IMG = Path(__file__).resolve().parent / "img"
COLORS = ["#1f77b4", "#d62728", "#2ca02c"]

#: Three experts on d = 1, the last in normal form (beta0 = beta1 = 0).
GATE_PARAMS = MoEParams(beta0=[0.0, 0.5, 0.0], beta1=[[3.0], [-2.0], [0.0]],
                        a=np.zeros((3, 1)), b=[0.0, 0.0, 0.0], var=[1.0, 1.0, 1.0])

#: The published reference setting (docs/theory.md, "The reference setting"; softmax gate).
PAPER_TRUTH = MoEParams(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                        b=[15.0, -5.0], var=[0.3**2, 0.4**2])


def _weights(gate, params, x):
    return gate.weights(x[:, None], gate.prepare(params))


def _panel(ax, x, w, title, style="-", alpha=1.0, label=True):
    for i in range(w.shape[1]):
        wi = w[:, i].copy()
        wi[1:][np.abs(np.diff(wi)) > 0.05] = np.nan  # no vertical line at a jump (top-K)
        ax.plot(x, wi, style, color=COLORS[i], lw=2, alpha=alpha,
                label=f"expert {i + 1}" if label else None)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(True, alpha=0.25)


def draw_gates(path: Path) -> None:
    """One panel per gate: the weights g_i(x) of three experts over x."""
    x = np.linspace(-2.0, 2.0, 801)
    p = GATE_PARAMS
    fig, axes = plt.subplots(3, 2, figsize=(9.0, 9.2), sharex=True, sharey=True)

    _panel(axes[0, 0], x, _weights(SoftmaxGate(), p, x),
           "softmax: softmax$_i(\\beta_{1i} x + \\beta_{0i})$")

    dense = _weights(SoftmaxGate(), p, x)
    _panel(axes[0, 1], x, dense, "", style=":", alpha=0.5, label=False)
    _panel(axes[0, 1], x, _weights(TopKGate(K=2), p, x),
           "top-K, K = 2 (dotted: softmax)")

    _panel(axes[1, 0], x, dense, "", style=":", alpha=0.5, label=False)
    _panel(axes[1, 0], x, _weights(TemperatureGate(tau=0.25, learn_tau=False), p, x),
           "temperature $\\tau$ = 0.25 (dotted: $\\tau$ = 1)")

    _panel(axes[1, 1], x, _weights(ActivationGate("tanh", tau=0.5, learn_tau=False), p, x),
           "activation: softmax$_i((\\tanh(\\beta_{1i} x) + \\beta_{0i}) / \\tau)$, "
           "$\\tau$ = 0.5")

    _panel(axes[2, 0], x, dense, "", style=":", alpha=0.5, label=False)
    _panel(axes[2, 0], x, _weights(SigmoidGate(), p, x),
           "normalised sigmoid: $s_i / \\sum_j s_j$ (dotted: softmax)")

    centres = p.replace(beta1=[[1.0], [-1.0], [0.0]])
    _panel(axes[2, 1], x, _weights(LaplaceGate(), centres, x),
           "Laplace: softmax$_i(\\beta_{0i} - |x - \\beta_{1i}|)$, centres (1, -1, 0)")

    for ax in axes[2]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("gate weight $g_i(x)$")
    axes[0, 0].legend(fontsize=8, loc="center left")
    fig.suptitle("Gate weights of three experts: $\\beta_0$ = (0, 0.5, 0), "
                 "$\\beta_1$ = (3, -2, 0)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_sample(path: Path) -> None:
    """Data from the reference-setting truth, coloured by the expert that drew them."""
    model = GaussianMoE(SoftmaxGate(), PAPER_TRUTH)
    rng = np.random.default_rng(0)
    X, y = model.sample(1500, rng=rng)
    post = model.posterior(X, y).argmax(axis=1)
    fig, (ax, axg) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2]})
    for i in range(2):
        sel = post == i
        ax.scatter(X[sel, 0], y[sel], s=5, alpha=0.5, color=COLORS[i],
                   label=f"expert {i + 1}")
    grid = np.linspace(0, 1, 400)[:, None]
    means = model.expert_means(grid)
    for i in range(2):
        ax.plot(grid[:, 0], means[:, i], color=COLORS[i], lw=1.5)
    ax.plot(grid[:, 0], model.predict(grid), "k--", lw=1.2, label="E[y | x]")
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
    ax.set_title("1500 draws from the reference setting", fontsize=10)
    w = np.exp(model.log_weights(grid))
    for i in range(2):
        axg.plot(grid[:, 0], w[:, i], color=COLORS[i], lw=2)
    axg.set_xlabel("x")
    axg.set_ylabel("$g_i(x)$")
    axg.grid(True, alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_first_plot(path: Path) -> None:
    """The loss plot of `gmoe run softmax-exact --quick` (runs the quick sweep)."""
    from gmoe import plot_rates, run_sweep

    out = Path(tempfile.mkdtemp(prefix="gmoe-docs-"))
    try:
        run_sweep("softmax-exact", out, quick=True, progress=False)
        fig = plot_rates(out, "loss")
        fig.savefig(path, dpi=110)
        plt.close(fig)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true",
                        help="also run the quick softmax-exact sweep for first_plot.png")
    args = parser.parse_args(argv)
    IMG.mkdir(exist_ok=True)
    draw_gates(IMG / "gates.png")
    draw_sample(IMG / "sample.png")
    written = ["gates.png", "sample.png"]
    if args.sweep:
        draw_first_plot(IMG / "first_plot.png")
        written.append("first_plot.png")
    print("wrote", ", ".join(str(IMG / name) for name in written))


if __name__ == "__main__":
    main()
