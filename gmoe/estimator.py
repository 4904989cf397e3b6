"""scikit-learn estimator for Gaussian mixture-of-experts regression."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._information_criteria import aic, bic
from .em import fit_em
from .gates import Gate, SoftmaxGate
from .params import MoEParams
from .settings import FitSettings

_D = FitSettings  # the EM defaults; MoERegressor's own differ for init, n_init, standardize,
# screen_tol and kmeans_sample (cheap restarts)

__all__ = ["MoERegressor"]


class MoERegressor(RegressorMixin, BaseEstimator):
    """Gaussian mixture-of-experts regression fitted by EM: a scikit-learn regressor.

    Constructor arguments are stored as given; :meth:`fit` sets the attributes
    ending in an underscore. It works in scikit-learn's pipelines, cross-validation
    and grid searches: :meth:`score` is the R² of :meth:`predict` (scikit-learn's
    rule for regressors); the likelihood has its own methods,
    :meth:`log_likelihood` and :meth:`log_likelihood_samples` (scikit-learn reserves
    ``score_samples(X)`` for scores of X alone, and a conditional density needs y).

    The fit runs in standardised units (``standardize=True``): each column of X is
    divided by its standard deviation (and centred, for the gates that see x only
    through their logits: softmax, temperature, sigmoid),
    y is centred and scaled, and the fitted parameters are mapped back. Rescaling a
    covariate then changes only its own slopes, and the fit is the same in any units
    and from any origin of x (a year, a time stamp).

    Restarts are cheap by default: the ``n_init`` k-means starts come from k-means
    on a sample of 2000 rows (``kmeans_sample``) and are screened by short EM runs
    (``screen_tol=1e-4``), so that only the best k-means start is run to
    convergence and certified. At n = 1e5 five restarts then cost 1.6x one for
    k = 2 and 1.3x for k = 3 (medians; 2.1x and 2.4x with full restarts). On 96
    fits (n = 1e3 to 1e5, k = 2 and 3, four kinds of data) every certified fit
    ended at the full restarts' log-likelihood (within 1e-6 nats); 8 uncertified
    ones (over-specified fits, hard switches) ended from 0.25 nats below to 0.009
    above it (docs: user guide, "Fitting your own data").
    ``screen_tol=None, kmeans_sample=None`` gives the former default (full
    restarts, k-means on every row).

    Parameters
    ----------
    n_experts : int, default=2
    gate : Gate, str or dict, default=SoftmaxGate()
    init : {"auto", "kmeans", "split", "random", "near_truth"} or MoEParams, \
default="auto"
        ``"auto"``: the ``n_init`` k-means starts of ``"kmeans"`` plus starts grown
        from a greedy fit with one expert fewer (see :func:`gmoe.fit_em`): never
        below ``"kmeans"`` with the same ``random_state``, nor below that greedy
        fit. Its cost is a small multiple of ``"kmeans"`` (1.1-2.8x for k from 2 to
        40). ``"split"`` guarantees that a fit never has a lower likelihood than the
        ``"split"`` fit with fewer experts (for BIC/AIC comparisons across k), at a
        cost of about k**2 / 2 EM runs.
    n_init : int, default=5
        k-means restarts; the best log-likelihood wins. By default they are screened
        (``screen_tol``) from k-means on a sample (``kmeans_sample``), so that five
        restarts cost at most about twice one (see below).
    screen_tol : float or None, default=1e-4
        Screen the k-means restarts: each runs EM until the stopping rule holds with
        ``screen_tol`` in place of ``tol``, and only the best of these short runs is
        run on to ``tol`` and certified (see :func:`gmoe.fit_em`). None runs every
        restart to convergence and certifies each, as this estimator did by default
        before. The short run that is ahead need not end highest: for starts that
        are small perturbations of one point in an over-specified model (not the
        k-means starts) it often picks a lower or degenerate maximum (user guide,
        "Cheap restarts"); pass None where the best certified maximum matters.
    screen_iter : int, optional
        Also stop each short run after ``screen_iter`` EM iterations.
    kmeans_sample : int or None, default=2000
        k-means seeds and iterates on this many rows (drawn once per fit), then
        labels every row; None runs k-means on every row (the starts of
        :func:`gmoe.fit_em`'s default). Changes nothing below 2000 rows.
    tol : float, default=1e-6
    max_iter : int, default=2000
    stop : {"relative", "per_sample"}, default="relative"
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
    accelerate : bool, default=False
        SQUAREM-accelerated EM (see :func:`gmoe.fit_em`).
    truth : MoEParams, optional
        Needed by ``init="near_truth"``.
    polish : bool, default=True
        Certify the fit: Newton steps after EM to a zero score and a short Newton
        step (see
        :func:`gmoe.fit_em` and docs/theory.md, "Certified fits and inference").
        Standard errors (:meth:`cov_params`, :attr:`bse`, :meth:`conf_int`) need it.
    gtol : float, default=1e-8
        Certification tolerance on the score's largest component per sample, in the
        fit's free coordinates (standardised ones with ``standardize=True``, where it
        does not depend on the units of X and y).
    var_floor : float, optional
        Lower bound of the variances, in the units of y squared (default
        ``1e-6 var(y)``, see :func:`gmoe.fit_em`); a fit at the bound is degenerate.
    standardize : bool, default=True
        Fit in standardised units and map the parameters back (see above).
    verbose : int, default=0
        Progress on stderr: 1, one line per EM run and polish; 2, also every 100 EM
        iterations (see :func:`gmoe.fit_em`).

    Attributes
    ----------
    params_ : MoEParams
        In the units of X and y.
    model_ : GaussianMoE
    result_ : FitResult
    loglik_ : float
        Log-likelihood of the training data (weighted, with ``sample_weight``).
    n_iter_ : int
    converged_ : bool
        Whether EM met its stopping rule and the fit did not fail; False for a
        failed or degenerate fit (``result_.reason`` says why).
    certified_ : bool
        Whether the polish reached a certified maximum.
    loglik_trace_ : ndarray
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names of X, when X had string column names (a pandas DataFrame).

    Warns
    -----
    ConvergenceWarning, SeparationWarning, DegenerateFitWarning
        From :func:`gmoe.fit_em`: not converged or not certified; a separating gate
        (a hard switch, infinite gate slopes); a failed or degenerate fit, or data
        that cannot support it (a constant response, fewer samples than expert
        parameters).

    Raises
    ------
    ValueError
        In :meth:`fit`, for more experts than samples, and for malformed data (as
        scikit-learn says it: 1-d, empty, complex, NaN or inf).

    Examples
    --------
    >>> import numpy as np
    >>> from gmoe import MoERegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(1000, 1))
    >>> y = np.where(X[:, 0] > 0, 2 * X[:, 0], -1 - X[:, 0]) + 0.3 * rng.standard_normal(1000)
    >>> reg = MoERegressor(n_experts=2, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> bool(reg.score(X, y) > 0.5)      # R²
    True
    """

    def __init__(self, n_experts: int = 2, gate: Gate | str | dict | None = None,
                 init: str | MoEParams = "auto", n_init: int = 5, tol: float = _D.tol,
                 max_iter: int = _D.max_iter, stop: str = _D.stop, random_state=None,
                 truth: MoEParams | None = None, accelerate: bool = _D.accelerate,
                 polish: bool = _D.polish, gtol: float = _D.gtol,
                 var_floor: float | None = _D.var_floor, standardize: bool = True,
                 screen_iter: int | None = _D.screen_iter,
                 screen_tol: float | None = 1e-4, kmeans_sample: int | None = 2000,
                 verbose: int = 0):
        self.n_experts = n_experts
        self.gate = gate
        self.init = init
        self.n_init = n_init
        self.screen_iter = screen_iter
        self.screen_tol = screen_tol
        self.kmeans_sample = kmeans_sample
        self.tol = tol
        self.max_iter = max_iter
        self.stop = stop
        self.random_state = random_state
        self.truth = truth
        self.accelerate = accelerate
        self.polish = polish
        self.gtol = gtol
        self.var_floor = var_floor
        self.standardize = standardize
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # dense float data only (no sparse matrices, no NaN); one target; the fit is
        # deterministic given random_state
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = False
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------- fit
    def _fit_settings(self) -> FitSettings:
        """The constructor's EM settings, checked (a bad one raises in :meth:`fit`);
        those it does not take (``init_scale``) keep FitSettings' defaults."""
        names = [f.name for f in dataclasses.fields(FitSettings) if hasattr(self, f.name)]
        return FitSettings(**{name: getattr(self, name) for name in names})

    def fit(self, X, y, sample_weight=None, *, progress=None) -> MoERegressor:
        """Fit by EM with restarts (and the polish); returns self.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: weighted EM (every M-step sees the responsibilities
            times the weights), weighted log-likelihood, stopping rule and polish.
            Samples of weight 0 are left out.
        progress : callable, optional
            ``progress(done, total, label)`` after every EM run and every polish (see
            :func:`gmoe.fit_em`); ``gmoe fit`` draws its progress bar with it.

        Returns
        -------
        self : MoERegressor
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        rng = self.random_state
        if isinstance(rng, np.random.RandomState):
            rng = int(rng.randint(np.iinfo(np.int32).max))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = fit_em(X, y, self.n_experts, gate=self.gate or SoftmaxGate(),
                                rng=rng, truth=self.truth, sample_weight=sample_weight,
                                verbose=self.verbose, progress=progress,
                                **self._fit_settings().as_kwargs())
        finally:
            for w in caught:  # said where the user called fit (also when fit_em raised)
                warnings.warn(w.message, w.category, stacklevel=2)
        self.result_ = result
        self.params_ = result.params
        self.model_ = result.model
        self.loglik_ = result.loglik
        self.n_iter_ = result.n_iter
        self.converged_ = bool(result.converged and result.success)
        self.certified_ = result.certified
        self.loglik_trace_ = result.loglik_trace
        self.n_samples_fit_ = X.shape[0]
        return self

    def _validated(self, X, y=None):
        """The fitted model and X (and y) checked against the fit (columns, names)."""
        check_is_fitted(self, "model_")
        if y is None:
            return self.model_, validate_data(self, X, reset=False, dtype=np.float64)
        X, y = validate_data(self, X, y, reset=False, dtype=np.float64, y_numeric=True)
        return self.model_, X, y

    # --------------------------------------------------------------- predict
    def predict(self, X) -> np.ndarray:
        """Conditional mean E[y | x], array of shape (n_samples,)."""
        model, X = self._validated(X)
        return model.predict(X)

    def predict_experts(self, X) -> np.ndarray:
        """Most probable expert under the gate alone, array of shape (n_samples,)."""
        model, X = self._validated(X)
        return model.log_weights(X).argmax(axis=1)

    def posterior(self, X, y) -> np.ndarray:
        """Responsibilities P(expert | x, y), array of shape (n_samples, k)."""
        model, X, y = self._validated(X, y)
        return model.posterior(X, y)

    def score(self, X, y, sample_weight=None) -> float:
        """R² (coefficient of determination) of :meth:`predict` on (X, y).

        scikit-learn's score of every regressor, used by ``cross_val_score`` and
        ``GridSearchCV``: 1 is a perfect prediction, 0 that of the mean of y. For the
        likelihood see :meth:`log_likelihood`.
        """
        return super().score(X, y, sample_weight=sample_weight)

    def log_likelihood_samples(self, X, y) -> np.ndarray:
        """Per-sample conditional log-likelihood ``log p(y_n | x_n)``, shape (n_samples,).

        (``score_samples`` in earlier versions; scikit-learn reserves that name for
        scores of X alone.)
        """
        model, X, y = self._validated(X, y)
        return model.score_samples(X, y)

    def log_likelihood(self, X, y, sample_weight=None) -> float:
        """Total conditional log-likelihood ``sum_n w_n log p(y_n | x_n)`` on (X, y).

        Divide by the number of samples (or the weights' sum) for the mean per
        sample, the number to compare across data sets of different sizes.
        """
        return self._loglik_and_nobs(X, y, sample_weight)[0]

    def _loglik_and_nobs(self, X, y, sample_weight) -> tuple[float, float]:
        """The (weighted) log-likelihood on (X, y) and the number of observations it
        counts: the rows, or the sum of the frequency weights."""
        per_sample = self.log_likelihood_samples(X, y)
        if sample_weight is None:
            return float(per_sample.sum()), len(per_sample)
        weight = _check_sample_weight(sample_weight, per_sample[:, None])
        return float(per_sample @ weight), float(weight.sum())

    def bic(self, X, y, sample_weight=None) -> float:
        """BIC on (X, y): ``-2 loglik + p log n`` (lower is better).

        With ``sample_weight`` (frequency weights) the log-likelihood is weighted and
        ``n`` is the weights' sum, so a weight of 2 counts as a repeated row.
        """
        loglik, nobs = self._loglik_and_nobs(X, y, sample_weight)
        return bic(loglik, self.result_.n_parameters(), nobs, stacklevel=3)

    def aic(self, X, y, sample_weight=None) -> float:
        """AIC on (X, y): ``-2 loglik + 2 p`` (weighted log-likelihood with
        ``sample_weight``)."""
        loglik = self.log_likelihood(X, y, sample_weight=sample_weight)
        return aic(loglik, self.result_.n_parameters())

    def sample(self, n: int, rng=None, x=None):
        """Draw (X, y) from the fitted model (see :meth:`GaussianMoE.sample`)."""
        check_is_fitted(self, "model_")
        return self.model_.sample(n, rng=rng, x=x)

    def summary(self, alpha: float = 0.05) -> str:
        """The fit report of :meth:`FitResult.summary`, with standard errors."""
        check_is_fitted(self, "model_")
        return self.result_.summary(alpha)

    def cov_params(self) -> np.ndarray:
        """Covariance of the estimates (see :meth:`FitResult.cov_params`)."""
        check_is_fitted(self, "model_")
        return self.result_.cov_params()

    @property
    def bse(self):
        """Standard errors in the parameters' shapes (see :attr:`FitResult.bse`)."""
        check_is_fitted(self, "model_")
        return self.result_.bse

    def conf_int(self, alpha: float = 0.05):
        """Wald intervals ``(lower, upper)`` (see :meth:`FitResult.conf_int`)."""
        check_is_fitted(self, "model_")
        return self.result_.conf_int(alpha)
