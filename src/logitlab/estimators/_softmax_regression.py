"""``SoftmaxRegression``: multinomial logistic regression as a scikit-learn estimator."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from numbers import Integral, Real

from ._checks import named_errors, validate
from .._dask_adapter import is_dask_collection
from .._softmax import log_sigmoid, log_softmax, sigmoid, softmax
from .._validation import check_class_weight, check_some_weight, check_weights, user_stacklevel
from ._lbfgs import _finite_norm, _max_abs
from ._linear_loss import LinearSoftmaxLoss, blas_threads_for, standardizing

__all__ = ["SoftmaxRegression"]

#: A float64 fit that stops on the objective's relative reduction with its largest gradient
#: component above this many times ``tol`` warns: its steps stalled (near an optimum the
#: reduction falls below 64 eps only once the gradient is about ``tol`` or below).
_STALLED = 1e3


class _IterationProgress:
    """The solver's progress: a Rich bar (verbose=1) or one line per iteration (verbose>=2)."""

    def __init__(self, verbose, max_iter, solver="L-BFGS"):
        self.verbose, self.max_iter, self.it = int(verbose), max_iter, 0
        self.solver = solver
        self._progress = None

    def __enter__(self):
        if self.verbose == 1:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(TextColumn(self.solver), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"))
            self._task = self._progress.add_task("", total=self.max_iter, info="")
            self._progress.start()
        return self

    def callback(self, intermediate_result):
        self.it += 1
        fun = getattr(intermediate_result, "fun", float("nan"))
        # a stranger's review: the float32 phase's values, unlabelled, rose at the hand-over
        kind = " (float32)" if getattr(intermediate_result, "coarse", False) else ""
        if self._progress is not None:
            self._progress.update(self._task, completed=self.it,
                                  info=f"objective{kind} {fun:.8g}")
        else:
            print(f"iteration {self.it}: objective{kind} {fun:.12g}")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.update(self._task, total=max(self.it, 1), completed=self.it)
            self._progress.stop()

    def done(self, result):
        """With verbose, why the solver stopped (a stranger's review: a float32 fit ended
        after 50 iterations and nothing said why)."""
        if self.verbose:
            said = {0: "converged", 1: "not converged (a limit reached)"}.get(
                result.status, "stopped: no lower objective found along its direction")
            counts = (f"{result.nit} iterations, {result.nfev} evaluations and {result.nhev} "
                      "Hessian products" if "nhev" in result else
                      f"{result.nit} iterations and {result.nfev} evaluations"
                      + (f" ({result.ncoarse} in float32)" if result.get("ncoarse") else ""))
            print(f"{self.solver} {said} after {counts} ({result.message})")


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic (softmax) regression, solved with L-BFGS or Newton-CG.

    The objective is scikit-learn's ``LogisticRegression``'s: the summed,
    sample-weighted log loss plus ``||W||^2 / (2C)``, the intercept not
    penalised. Two classes use one coefficient row and the binary logistic
    loss, as scikit-learn does.

    Parameters
    ----------
    C : float, default=1.0
        Inverse of the L2 regularisation strength; ``np.inf`` fits without a
        penalty (as ``penalty=None`` does, and as in scikit-learn).
    penalty : {"l2"} or None, default="l2"
        None: no penalty (a ``C`` other than 1 then warns that it is ignored).
    fit_intercept : bool, default=True
    tol : float, default=1e-8
        The solver stops when the largest gradient component falls below
        ``tol`` (as scikit-learn's lbfgs stops on its projected gradient, and
        its newton-cg on the gradient). L-BFGS also stops, as L-BFGS-B does,
        when an iteration lowers the objective by less than 64 eps relative
        (and float32 fits of either solver at float32's rounding noise); a
        float64 fit that stops so with its gradient 1000 times ``tol`` or more
        warns (its steps stalled: badly scaled features), as does one whose
        line search finds no lower objective.
    max_iter : int, default=1000
        Iterations of the solver at most (Newton iterations for newton-cg).
    class_weight : dict, "balanced" or None
        Multiplies the sample weights of each class: a dict of class label
        to weight (a class not named weighs 1), or "balanced",
        ``n_samples / (n_classes * bincount(y))``. Weights, like
        ``sample_weight``, must be finite and non-negative.
    warm_start : bool, default=False
        Start from the previous ``coef_`` and ``intercept_``.
    verbose : int, default=0
        1: a progress bar over the solver's iterations; 2: one line per
        iteration.
    solver : {"auto", "lbfgs", "newton-cg"}, default="auto"
        ``"lbfgs"``: L-BFGS (scikit-learn's ``lbfgs``). ``"newton-cg"``:
        Newton's method, each step solved by conjugate gradients on
        Hessian-vector products (scikit-learn's ``newton-cg``, the same
        stopping rule). ``"auto"``: newton-cg for scipy.sparse ``X``, lbfgs
        for dense ``X`` and on Dask. Sparse text-like problems are
        ill-conditioned and wide: there L-BFGS needs hundreds of passes over
        the data where Newton-CG needs about a hundred (100000 x 50000, 0.2 %,
        20 classes: 14.3 s against 40.6), while on dense, standardised
        features L-BFGS's 30 passes beat Newton-CG's (docs/performance.md,
        §6). Dask collections take lbfgs only.

    Notes
    -----
    ``X`` may be dense or scipy.sparse (CSR or CSC; never densified), float64
    or float32: float32 ``X`` gives float32 ``coef_`` and ``intercept_`` and is
    evaluated in float32, the solver's iterates kept in float64, as in
    scikit-learn. The objective is :class:`~._linear_loss.LinearSoftmaxLoss`'s.

    The L-BFGS is scipy's L-BFGS-B (scikit-learn's ``lbfgs``) up to
    ``LEAN_LBFGS_PARAMS`` (131072) coefficients; from there, a wide sparse fit's
    size, the same method in the memory it needs (``estimators/_lbfgs.py``: 2m +
    4 coefficient-sized vectors, about 200 bytes a coefficient, against L-BFGS-B's
    290; the same stopping rules). Dense float64 ``X`` of 2**20 elements or more
    (up to 1 GiB as float32) runs that L-BFGS on a float32 copy of ``X`` (half its
    size, for the fit's length) for its first iterations, at about half the cost
    each, then on ``X`` itself, where every stop is decided: ``objective_``, the
    gradient ``tol`` is checked on and the warnings are the float64 objective's
    (200000 x 100 x 20: 0.70-0.86 s against 1.4 s; ``LinearSoftmaxLoss.coarse``).
    ``verbose=2`` marks the float32 phase's objective values ``(float32)``. A warm
    start (``warm_start=True`` after a fit) runs in float64 throughout.

    Both solvers run in standardised coordinates (``_linear_loss.Standardized``):
    each feature's coefficients scaled by the square root of the objective's
    curvature along them (its spread's share and the penalty's) and the
    intercepts moved by its mean, read from the data (dense: 10,000 rows at
    most; under ``sample_weight``). A linear change of variables: the
    objective, its penalty on ``coef_`` and its optimum are the same, and
    where a solver stops on ``tol`` it bounds the objective's own gradient
    (the solvers are held to ``tol / bound`` in the new coordinates); L-BFGS's
    stop on the relative reduction and the stall warning read the
    standardised gradient. The steps are those L-BFGS and CG need. On raw
    features with very different scales (breast_cancer's, wine's) L-BFGS had
    stopped after ``max_iter`` 9 % and 47 % above the optimal objective
    (scikit-learn's lbfgs does too); it now reaches it. Variables of one
    curvature (standardised features, the columns of a text matrix) keep
    their own coordinates, steps and bits. Not on Dask (the Dask fit runs in
    the objective's own).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
    intercept_ : ndarray of shape (n_classes,) or (1,)
        For three or more classes, centred to sum to zero (the objective fixes
        them only up to a shared shift).
    n_iter_ : ndarray of shape (1,)
    objective_ : float
        The objective at the fitted coefficients, scaled as scikit-learn scales
        it: the weighted log loss and the penalty divided by the summed sample
        weights (``n_samples`` without weights), so a mean per row.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when fitted on a DataFrame

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from logitlab import SoftmaxRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SoftmaxRegression(C=1.0).fit(X, y)
    >>> clf.predict(X[:3]).tolist()
    [0, 0, 0]
    >>> clf.predict_proba(X[:1]).sum().round(12)
    np.float64(1.0)
    """

    _parameter_constraints = {
        "C": [Interval(Real, 0, None, closed="right")],  # np.inf: no penalty, as in sklearn
        "penalty": [StrOptions({"l2"}), None],
        "fit_intercept": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "solver": [StrOptions({"auto", "lbfgs", "newton-cg"})],
    }

    # check_estimator checks that cannot pass, with the reason (issue 4 allows three).
    _xfail_checks: dict = {}

    def __init__(self, C=1.0, penalty="l2", fit_intercept=True, tol=1e-8, max_iter=1000,
                 class_weight=None, warm_start=False, verbose=0, solver="auto"):
        self.C = C
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.verbose = verbose
        self.solver = solver

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR/CSC in fit and predict: check_estimator tests it
        return tags

    def _prepare_fit(self, X, y, sample_weight):
        """Validate; returns (X, y_encoded, sample_weight, n_classes)."""
        self._validate_params()
        # C order, as scikit-learn's LogisticRegression asks: the objective's compiled
        # evaluation reads rows (a DataFrame's values and Fortran arrays are copied once)
        X, y = validate(self, X, y, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32],
                        y_numeric=False, order="C")
        named_errors(lambda: check_classification_targets(y), X, y, name="`y`")
        enc = LabelEncoder()
        y_enc = enc.fit_transform(y)
        self.classes_ = enc.classes_
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                "`y` must hold samples of at least 2 classes, but the data contains only "
                f"one class: {self.classes_[0].item() if hasattr(self.classes_[0], 'item') else self.classes_[0]!r}"
            )
        sw = self._sample_weight(sample_weight, X.shape[0])
        if self.class_weight is not None:
            sw = sw * check_class_weight(self.class_weight, n_classes, labels=y_enc,
                                         classes=self.classes_, sample_weight=sw)[y_enc]
        check_some_weight(sw, "`sample_weight` times `class_weight`"
                          if self.class_weight is not None else "`sample_weight`")
        return X, y_enc, sw, n_classes

    @staticmethod
    def _sample_weight(sample_weight, n):
        """``sample_weight`` checked, as an array of shape (n,) (ones for None)."""
        if sample_weight is None:
            return np.ones(n)
        # a number weighs every sample alike, as in scikit-learn
        return check_weights(np.full(n, sample_weight) if isinstance(sample_weight, Real)
                             else sample_weight, "sample_weight", shape=(n,))

    def _warm_starting(self):
        """Whether this fit starts from the previous one's coefficients."""
        return self.warm_start and hasattr(self, "coef_")

    def _initial_params(self, objective):
        k, cols = objective.k, objective.cols
        if self._warm_starting() and self.coef_.shape != (
                k, objective.n_features):  # a stranger's review: it started afresh in silence
            raise ValueError(
                f"warm_start=True: the previous fit's coef_ has shape {self.coef_.shape}, "
                f"this fit's data needs {(k, objective.n_features)} (a row per class, or one "
                "for two classes, and a column per feature); set warm_start=False to start "
                "afresh")
        if self._warm_starting():
            start = np.zeros((k, cols))
            start[:, :self.coef_.shape[1]] = self.coef_
            if self.fit_intercept:
                start[:, -1] = self.intercept_
            return start.ravel()
        return np.zeros(k * cols)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` of shape (n_samples, n_features) and labels ``y``.

        ``X`` and ``y`` may be Dask arrays or DataFrames: then each L-BFGS step
        sums per-chunk losses and gradients on the workers (see
        :mod:`logitlab.estimators._dask`).
        """
        if is_dask_collection(X) or is_dask_collection(y):
            from ._dask import fit_softmax_regression

            self._validate_params()
            if self.solver == "newton-cg":
                raise ValueError("`solver`: 'newton-cg' does not take Dask collections (its "
                                 "Hessian products would keep each chunk's probabilities on "
                                 "the workers); use solver='lbfgs' or 'auto' on Dask data")
            return fit_softmax_regression(self, X, y, sample_weight)
        X, y_enc, sw, n_classes = self._prepare_fit(X, y, sample_weight)
        objective = self._objective(n_classes, X.shape[1], X.dtype)
        sw_sum = float(sw.sum())
        newton = self.solver == "newton-cg" or (self.solver == "auto" and sp.issparse(X))
        progress = _IterationProgress(self.verbose, self.max_iter,
                                      "Newton-CG" if newton else "L-BFGS")
        size = X.nnz if sp.issparse(X) else X.size
        with threadpool_limits(limits=blas_threads_for(size), user_api="blas"), progress:
            result = objective.minimize(
                objective.blocked_loss_gradient, self._initial_params(objective),
                args=(objective.split(X, y_enc, sw), sw_sum),
                tol=self.tol, max_iter=self.max_iter, n_samples=X.shape[0],
                callback=progress.callback if self.verbose else None,
                hessp=objective.hessian_product if newton else None,
                # (not from a warm start: a stranger's review found a refit at the optimum
                # taking 2-8 float32 iterations where float64 took 1)
                coarse=None if newton or self._warm_starting()
                else objective.coarse(X, y_enc, sw, sw_sum),
                standardized=standardizing(objective, X, sw))
        progress.done(result)
        return self._finish(objective, result)

    def _objective(self, n_classes, n_features, dtype):
        """The objective for this estimator's settings, evaluated in ``dtype``."""
        if self.penalty is None and self.C != 1.0:  # scikit-learn's warning
            warnings.warn("Setting penalty=None will ignore the C parameter", UserWarning,
                          stacklevel=user_stacklevel())
        C = None if self.penalty is None else float(self.C)
        return LinearSoftmaxLoss(n_classes, n_features, C=C, fit_intercept=self.fit_intercept,
                                 dtype=np.float32 if dtype == np.float32 else np.float64)

    def _finish(self, objective, result):
        """Set the fitted attributes from the solver's result (the in-memory and Dask fits)."""
        solver = "Newton-CG" if "nhev" in result else "L-BFGS"
        self.coef_, self.intercept_ = objective.solution(result.x)
        self.n_iter_ = np.array([min(result.nit, self.max_iter)], dtype=np.int32)
        self.objective_ = float(result.fun)
        # a stall is read on the gradient the steps were taken in: standardised where the
        # fit ran in standardised coordinates (``LinearSoftmaxLoss.minimize``)
        stalled = result.get("jac_standardized", result.jac)
        where = " (in standardised coordinates)" if "jac_standardized" in result else ""
        if not np.isfinite(self.objective_) or not _finite_norm(result.jac):
            # a stranger's review: silent before
            warnings.warn(
                f"SoftmaxRegression ({solver}) stopped after {result.nit} iterations with a "
                f"non-finite objective or an overflowing gradient (objective "
                f"{self.objective_}): the logits or the gradient overflowed, the features "
                "are too large (largest |X| entry against the coefficients' scale); "
                "standardise them (StandardScaler) or regularise more (a smaller C).",
                ConvergenceWarning, stacklevel=user_stacklevel())
        elif result.status == 2 and result.nit == 0:  # a review: silent before
            warnings.warn(
                f"SoftmaxRegression ({solver}) found no step that lowers the objective from its "
                f"start ({result.message}): the features are too large for the "
                "coefficients' scale; standardise them (StandardScaler) or regularise more "
                "(a smaller C).", ConvergenceWarning, stacklevel=user_stacklevel())
        elif (result.status == 0 and objective.dtype == np.float64
              and "REDUCTION" in str(result.message).upper()  # (scipy < 1.15: REL_REDUCTION)
              and _max_abs(stalled) >= _STALLED * self.tol):
            # a review: a column at 1e8, L-BFGS stopped at 2.8 times the optimal objective as
            # converged (as scikit-learn's lbfgs does, silently), its gradient 6e6 times tol
            warnings.warn(
                f"SoftmaxRegression ({solver}) stopped after {result.nit} iterations on the "
                "objective's relative reduction, its largest gradient component "
                f"{_max_abs(stalled):.3g}{where}, far above tol={self.tol:g}: its steps no "
                "longer lowered the objective before tol was reached. The features are "
                "likely badly scaled, and the fit can then be far from the optimum: "
                "standardise them (StandardScaler, or MaxAbsScaler for sparse X)"
                + (", or try solver='newton-cg'." if solver == "L-BFGS" else "."),
                ConvergenceWarning, stacklevel=user_stacklevel())
        elif result.status == 2:  # a review: silent before (scikit-learn warns here too)
            warnings.warn(
                f"SoftmaxRegression ({solver}) stopped after {result.nit} iterations before "
                f"reaching tol={self.tol:g}: no lower objective was found along its direction "
                f"(largest gradient component {_max_abs(result.jac):.3g}); the objective is at "
                "its rounding floor or the features are badly scaled: standardise them "
                "(StandardScaler, or MaxAbsScaler for sparse X), or set a larger tol.",
                ConvergenceWarning, stacklevel=user_stacklevel())
        elif (result.status == 1 or (result.status != 0 and result.nit >= self.max_iter)) \
                and not _max_abs(result.jac) <= self.tol:
            # converged at the last iteration allowed: no warning (a review; scipy's L-BFGS-B
            # checks its iteration limit before the gradient, and says status 1 there)
            warnings.warn(
                f"SoftmaxRegression ({solver}) failed to converge after {self.max_iter} "
                "iterations; increase max_iter, standardise the features (StandardScaler), "
                "or regularise more (a smaller C).", ConvergenceWarning,
                stacklevel=user_stacklevel())
        return self

    def _lazy(self, method, X, n_out, dtype=np.float64):
        from .._dask_adapter import map_rows

        check_is_fitted(self)
        return map_rows(getattr(self, method), X, n_out, dtype)

    def decision_function(self, X):
        """Logits: shape (n_samples, n_classes), or (n_samples,) for two classes.

        On a Dask array the result is a lazy Dask array, chunk by chunk (the
        same holds for ``predict``, ``predict_proba`` and ``predict_log_proba``).
        """
        if is_dask_collection(X):
            return self._lazy("decision_function", X, None if len(self.classes_) == 2
                              else len(self.classes_))
        check_is_fitted(self)
        X = validate(self, X, reset=False, accept_sparse=["csr", "csc"],
                     dtype=[np.float64, np.float32])
        scores = np.asarray(X @ self.coef_.T) + self.intercept_  # sparse X: a dense result
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X):
        """The class with the largest logit (no softmax needed)."""
        if is_dask_collection(X):
            return self._lazy("predict", X, None, self.classes_.dtype)
        scores = self.decision_function(X)
        idx = (scores > 0).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes_[idx]

    def predict_proba(self, X):
        """Class probabilities: softmax of the logits (sigmoid for two classes)."""
        if is_dask_collection(X):
            return self._lazy("predict_proba", X, len(self.classes_))
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = sigmoid(scores)
            return np.column_stack([sigmoid(-scores), p])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X):
        """Exact log-probabilities, from log_softmax (log_sigmoid for two classes)."""
        if is_dask_collection(X):
            return self._lazy("predict_log_proba", X, len(self.classes_))
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([log_sigmoid(-scores), log_sigmoid(scores)])
        return log_softmax(scores, axis=1)
