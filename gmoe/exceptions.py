"""Warnings and errors raised by gmoe."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before meeting its tolerance."""


class IdentifiabilityWarning(UserWarning):
    """A parameter is not identifiable from the data (e.g. an expert no point selects)."""


class SelectionWarning(UserWarning):
    """A choice of the number of experts that its method cannot back: the dendrogram
    chose the largest level it has (``k_max``, above 2: with ``k_max = 2`` it has no
    other level to choose, since it never chooses 1), where its merged levels fit
    worse than the over-fitted model it started from."""


class InferenceWarning(UserWarning):
    """Standard errors are not available (uncertified fit, singular information)."""


class SeparationWarning(ConvergenceWarning):
    """A separating gate: some expert's gate weight is 0 or 1 at every data point.

    The likelihood then keeps rising as the gate parameters run off to infinity (a
    hard switch between experts), like perfect separation in logistic regression: the
    maximum-likelihood gate slope is infinite, the fitted one is wherever the
    iterations stopped, and it has no standard error. The expert parameters and the
    predictions are usually fine. Fewer experts, or data across the boundary, give a
    finite slope.
    """


class DegenerateFitWarning(ConvergenceWarning):
    """The fit failed or is degenerate: its ``reason`` says why.

    A variance at the floor (an expert collapsed onto a few points), a constant
    response, as many experts as data points, or a non-finite likelihood. The
    parameters are not a maximum-likelihood estimate.
    """


class FitFailedError(ValueError):
    """Every fit that a choice rests on failed (e.g. :func:`gmoe.select_experts` when
    the fit of every k failed): there is nothing to choose. A ``ValueError``, so
    code that catches bad input catches it too."""
