"""Information criteria of a fitted model and the table of criteria per number of experts.

Every criterion here is on the deviance scale and **lower is better**; the chosen
number of experts is the argmin (docs/theory.md, "Choosing the number of experts"):

- ``AIC = -2 loglik + 2 p``
- ``BIC = -2 loglik + p log n``
- ``ICL = BIC + 2 E``, ``E = -sum_n sum_i r_ni log r_ni >= 0`` the entropy of the
  responsibilities (posterior expert probabilities) at the fit.
"""

from __future__ import annotations

import numpy as np

from .._information_criteria import aic, bic
from .._validation import check_sample_weight, check_X_y
from ..params import MoEParams

__all__ = ["CriteriaTable", "aic", "bic", "icl", "responsibility_entropy", "n_parameters"]


def n_parameters(params: MoEParams, gate) -> int:
    """Free parameters of a model: ``k (d + 2)`` expert parameters plus the gate's free ones
    (``(k - 1)(d + 1)`` for the softmax gate)."""
    k, d = params.k, params.d
    return k * (d + 2) + gate.n_params(k, d)


def responsibility_entropy(model, X, y, sample_weight=None) -> float:
    """``E = -sum_n w_n sum_i r_ni log r_ni`` of a model's responsibilities on ``(X, y)``.

    ``0 log 0 = 0``; ``w_n = 1`` without sample weights. E is 0 when every sample
    belongs to one expert with certainty and at most ``n log k``.

    Parameters
    ----------
    model : GaussianMoE
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights: an integer weight counts as a repeated row.

    Returns
    -------
    float
    """
    X, y = check_X_y(X, y)
    weight = check_sample_weight(sample_weight, X.shape[0])
    r = model.posterior(X, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)
    return float(-terms.sum() if weight is None else -(terms.sum(axis=1) @ weight))


def icl(loglik: float, n_params: int, n_samples: float, entropy: float) -> float:
    """The integrated completed likelihood criterion in its BIC form,
    ``BIC + 2 E`` (lower is better), ``E`` from :func:`responsibility_entropy`."""
    return bic(loglik, n_params, n_samples, stacklevel=3) + 2.0 * float(entropy)


class CriteriaTable:
    """Criteria per number of experts, and the number they choose.

    Parameters
    ----------
    columns : dict of str to array-like
        Equal-length columns; ``"k"`` is required.
    criterion : str
        The column that chooses (lower is better).
    chosen : int
        The chosen number of experts.
    note : str, optional
        A line printed under the table.
    """

    def __init__(self, columns: dict, criterion: str, chosen: int, note: str = ""):
        if "k" not in columns or criterion not in columns:
            raise ValueError("a CriteriaTable needs the column 'k' and its criterion's column")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        self.columns = {name: np.asarray(values) for name, values in columns.items()}
        self.criterion = criterion
        self.chosen = int(chosen)
        self.note = note

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return len(self.columns["k"])

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def to_dict(self) -> dict:
        """JSON-safe: ``{"criterion", "chosen", "lower_is_better", "columns": {...}}``."""
        def plain(v):
            if isinstance(v, (np.bool_, bool)):
                return bool(v)
            if isinstance(v, (np.integer,)):
                return int(v)
            v = float(v)
            return v if np.isfinite(v) else None

        return {"criterion": self.criterion, "chosen": self.chosen, "lower_is_better": True,
                "columns": {name: [plain(v) for v in values]
                            for name, values in self.columns.items()}}

    def to_frame(self):
        """The table as a pandas DataFrame indexed by k."""
        import pandas as pd

        return pd.DataFrame(self.columns).set_index("k")

    def summary(self) -> str:
        """The table as text, the chosen row marked with ``*``."""
        names = [c for c in self.columns if c != "k"]
        width = {c: max(12, len(c) + 1) for c in names}
        head = f"{'':2s}{'k':>3s}" + "".join(f"{c:>{width[c]}s}" for c in names)
        lines = [head]
        for row in range(len(self)):
            k = int(self.columns["k"][row])
            mark = "* " if k == self.chosen else "  "
            cells = []
            for c in names:
                v = self.columns[c][row]
                if isinstance(v, (bool, np.bool_)):
                    text = "yes" if v else "no"
                elif isinstance(v, (int, np.integer)):
                    text = f"{int(v)}"
                elif not np.isfinite(v):
                    text = "-"
                else:
                    text = f"{float(v):.6g}"
                cells.append(f"{text:>{width[c]}s}")
            lines.append(f"{mark}{k:>3d}" + "".join(cells))
        lines.append(f"chosen: k = {self.chosen} (minimum of {self.criterion}; every criterion "
                     "here: lower is better)")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"CriteriaTable(criterion={self.criterion!r}, chosen={self.chosen}, "
                f"columns={self.names})")
