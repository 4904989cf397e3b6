"""Warnings and errors raised by gmoe."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before meeting its tolerance."""


class IdentifiabilityWarning(UserWarning):
    """A parameter is not identifiable from the data (e.g. an expert no point selects)."""


class InferenceWarning(UserWarning):
    """Standard errors are not available (uncertified fit, singular information)."""
