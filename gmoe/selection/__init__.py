"""Choosing the number of experts: the dendrogram of mixing measures and its selection
criterion (DSC), and the information criteria AIC, BIC and ICL.

See docs/theory.md, "Choosing the number of experts", for the formulas and sources,
and the user guide page "Choosing the number of experts".
"""

from .criteria import (
    CriteriaTable,
    aic,
    bic,
    icl,
    n_parameters,
    responsibility_entropy,
)
from .dendrogram import (
    Dendrogram,
    DendrogramLevel,
    Merge,
    atom_distance,
    dendrogram,
    merge_atoms,
)
from .select import METHODS, SelectionResult, select_experts

__all__ = [
    "METHODS",
    "CriteriaTable",
    "Dendrogram",
    "DendrogramLevel",
    "Merge",
    "SelectionResult",
    "aic",
    "atom_distance",
    "bic",
    "dendrogram",
    "icl",
    "merge_atoms",
    "n_parameters",
    "responsibility_entropy",
    "select_experts",
]
