"""``SoftmaxRegressionCV``: SoftmaxRegression's regularisation path, cross-validated."""

from __future__ import annotations

import inspect
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer, get_scorer_names, make_scorer
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from .. import _jit
from .._dask_adapter import is_dask_collection
from .._validation import check_grid, user_stacklevel
from ._linear_loss import LinearSoftmaxLoss, blas_threads_for, feature_moments, standardizing
from ._softmax_regression import SoftmaxRegression

__all__ = ["SoftmaxRegressionCV"]


def _fold_scorer(scoring, classes):
    """The scorer for one fold's test part, or None (accuracy through ``score``).

    As scikit-learn's ``LogisticRegressionCV`` does: a metric that takes
    ``labels`` (log loss, Brier score) is given every class, since a test part
    may lack one; for two classes ``pos_label`` is the second class.
    """
    scorer = get_scorer(scoring)
    func = getattr(scorer, "_score_func", None)
    if func is None:
        return scorer
    sig = inspect.signature(func).parameters
    if "labels" not in sig:
        return scorer
    kwargs = {"labels": classes}
    if len(classes) == 2 and "pos_label" in sig:
        kwargs["pos_label"] = classes[-1]
    kwargs.update(getattr(scorer, "_kwargs", {}))
    return make_scorer(func, greater_is_better=scorer._sign == 1,
                       response_method=scorer._response_method, **kwargs)


class SoftmaxRegressionCV(SoftmaxRegression):
    """:class:`SoftmaxRegression` with ``C`` chosen by cross-validation over a path.

    For each fold the path over ``Cs`` is solved in the order given, each
    ``C`` started from the previous ``C``'s solution (as scikit-learn's
    ``LogisticRegressionCV`` does), and each fold after the first starts every
    ``C`` from the previous fold's solution at that ``C`` moved by the step
    its own path just took (the folds share most of their rows, so this start
    is closer than either alone). The solutions do not depend on the starts, to
    within ``tol``. The ``C`` with the best summed score over the folds is
    then refitted on all the data, started from the mean of the folds'
    solutions at that ``C``.

    Parameters
    ----------
    Cs : int or array-like of float, default=10
        The grid of inverse penalty strengths: an int ``n`` gives
        ``np.logspace(-4, 4, n)``, as in scikit-learn; ``np.inf`` is allowed
        (no penalty).
    fit_intercept : bool, default=True
    cv : int, cross-validation splitter, iterable of (train, test) or None, default=None
        None: 5 folds; an int: that many folds; both stratified
        (:class:`~sklearn.model_selection.StratifiedKFold`, not shuffled).
    scoring : str, callable or None, default="neg_log_loss"
        Any scikit-learn scorer name or scorer callable ``scorer(est, X, y)``;
        None: accuracy. **The default differs from scikit-learn's**
        ``LogisticRegressionCV``, whose ``scoring=None`` (accuracy) is the
        default until its version 1.11, which moves to ``"neg_log_loss"``: the
        log loss is the objective being fitted, and it tells apart values of
        ``C`` that classify alike. ``sample_weight`` passed to ``fit`` is
        passed to the scorer (``class_weight`` is not), as in scikit-learn.
    tol : float, default=1e-8
        L-BFGS's tolerance on the largest (projected) gradient component, for
        every fit (``SoftmaxRegression``'s default; scikit-learn's is 1e-4).
    max_iter : int, default=1000
        L-BFGS iterations per fit.
    class_weight : dict, "balanced" or None
        As in :class:`SoftmaxRegression`, computed once on all of ``y``; each
        fold's training part keeps those weights.
    n_jobs : int or None, default=None
        Accepted for scikit-learn compatibility; it has no effect. The folds
        run one after another, each warm-started from the previous one, and
        each evaluation of the objective already shares a large problem's rows
        between two threads.
    verbose : int, default=0
        1 or more: one line per fold and ``C``.
    refit : bool, default=True
        True: refit on all the data at the best ``C``. False: ``coef_`` and
        ``intercept_`` are the mean over the folds of each fold's best
        solution, and ``C_`` the mean of those folds' best ``C``, as in
        scikit-learn.
    random_state : None, int or RandomState, default=None
        Has no effect (L-BFGS is deterministic), as for scikit-learn's lbfgs
        solver; to shuffle the folds pass a splitter, e.g.
        ``StratifiedKFold(5, shuffle=True, random_state=0)``, as ``cv``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    Cs_ : ndarray of shape (n_Cs,)
    C_ : float
        The chosen ``C``.
    scores_ : ndarray of shape (n_folds, n_Cs)
        The score of each fold's solution at each ``C`` on its test part.
    coefs_paths_ : ndarray of shape (n_folds, n_Cs, k, n_features + fit_intercept)
        Each fold's solution at each ``C``, the intercept in the last column
        (``k`` is 1 for two classes, else ``n_classes``; multinomial
        intercepts centred, as ``intercept_`` is).
    coef_ : ndarray of shape (k, n_features)
    intercept_ : ndarray of shape (k,)
    n_iter_ : ndarray of shape (n_folds, n_Cs)
        L-BFGS iterations of each fit on the path (the refit's are not counted,
        as in scikit-learn).
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when fitted on a DataFrame

    Notes
    -----
    The fitted attributes follow scikit-learn's ``use_legacy_attributes=False``
    layout (its default from version 1.10) without the ``l1_ratios`` axis:
    ``C_`` a float, and ``scores_``, ``coefs_paths_`` and ``n_iter_`` arrays, not
    dicts keyed by class that repeat the same array. The objective, dense or
    sparse ``X``, float32 or float64, is :class:`SoftmaxRegression`'s, and so are
    its standardised coordinates (one set a ``C``, from the whole ``X``, for
    every fold; see :class:`SoftmaxRegression`'s Notes). Dask
    collections are not accepted by ``fit`` (they are by ``predict`` and
    ``predict_proba``). Splitters that need ``groups`` can be used by passing
    their splits: ``cv=list(GroupKFold(5).split(X, y, groups))``.

    See Also
    --------
    SoftmaxRegression : one fit at a given ``C``.
    sklearn.linear_model.LogisticRegressionCV : the reference.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from logitlab import SoftmaxRegressionCV
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> clf = SoftmaxRegressionCV(Cs=5, cv=3).fit(X, y)
    >>> clf.Cs_.tolist()
    [0.0001, 0.01, 1.0, 100.0, 10000.0]
    >>> clf.C_
    100.0
    >>> clf.scores_.shape, clf.coefs_paths_.shape
    ((3, 5), (3, 5, 3, 5))
    >>> clf.predict(X[:3]).tolist()
    [0, 0, 0]
    """

    _parameter_constraints = {
        "Cs": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "fit_intercept": ["boolean"],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "refit": ["boolean"],
        "random_state": ["random_state"],
    }

    # check_estimator checks that cannot pass, with the reason (scikit-learn expects the same
    # two of LogisticRegressionCV: repeating a row changes which fold holds it).
    _xfail_checks = {
        "check_sample_weight_equivalence_on_dense_data":
            "sample_weight is not equivalent to repeating samples: the folds differ",
        "check_sample_weight_equivalence_on_sparse_data":
            "sample_weight is not equivalent to repeating samples: the folds differ",
    }

    def __init__(self, Cs=10, *, fit_intercept=True, cv=None, scoring="neg_log_loss", tol=1e-8,
                 max_iter=1000, class_weight=None, n_jobs=None, verbose=0, refit=True,
                 random_state=None):
        self.Cs = Cs
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.scoring = scoring
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.refit = refit
        self.random_state = random_state

    def _objective(self, n_classes, n_features, dtype, C=None):
        return LinearSoftmaxLoss(n_classes, n_features, C=C, fit_intercept=self.fit_intercept,
                                 dtype=np.float32 if dtype == np.float32 else np.float64)

    def _folds(self, X, y):
        """The (train, test) index pairs; errors from the splitter name ``cv``."""
        try:
            cv = check_cv(self.cv, y, classifier=True)
            folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y)]
        except ValueError as exc:
            raise ValueError(f"`cv`: {exc}") from None
        if not folds:
            raise ValueError("`cv` gave no (train, test) splits")
        n = X.shape[0]
        checked = []
        for i, split in enumerate(folds):
            pair = []
            for part, idx in zip(("train", "test"), split):
                if idx.dtype.kind == "b" and idx.shape == (n,):  # a mask
                    idx = np.flatnonzero(idx)
                if (idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu"
                        or idx.min() < 0 or idx.max() >= n):
                    raise ValueError(f"`cv`: split {i} has an empty or invalid {part} part; "
                                     f"expected indices in [0, {n}), got {idx[:5]!r}")
                pair.append(idx)
            checked.append(tuple(pair))
        return checked

    def fit(self, X, y, sample_weight=None):
        """Solve the path on each fold, score it, choose ``C`` and (``refit``) refit.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Weights the training loss and, on each test part, the score.
        """
        if is_dask_collection(X) or is_dask_collection(y):
            raise TypeError("SoftmaxRegressionCV.fit does not take Dask collections; got "
                            f"`X` of type {type(X).__name__}, `y` of type {type(y).__name__}; "
                            "fit SoftmaxRegression on Dask data at a chosen C instead")
        X, y_enc, sw, n_classes = self._prepare_fit(X, y, sample_weight)
        Cs = (np.logspace(-4, 4, self.Cs) if isinstance(self.Cs, Integral)
              else check_grid(self.Cs, "Cs"))
        if sp.issparse(X):
            X = X.tocsr()  # rows are taken per fold
        folds = self._folds(X, y_enc)
        score_sw = None if sample_weight is None else self._sample_weight(sample_weight,
                                                                          X.shape[0])
        scorer = _fold_scorer(self.scoring, self.classes_)
        y_labels = self.classes_[y_enc]
        n_features = X.shape[1]
        base = self._objective(n_classes, n_features, X.dtype)
        objectives = [self._objective(n_classes, n_features, X.dtype, C=C) for C in Cs]
        n_folds, n_Cs = len(folds), len(Cs)
        # the path's cross-entropies (in pieces of one fold's rows) and its scores, in the
        # compiled kernels throughout if they add up to enough work to repay loading them
        # (each piece alone might not), else on the reference throughout: by these sizes alone
        work = sum(len(tr) for tr, _ in folds) * base.k * n_Cs
        paths = np.zeros((n_folds, n_Cs, base.n_params))
        scores = np.zeros((n_folds, n_Cs))
        n_iter = np.zeros((n_folds, n_Cs), dtype=np.int32)
        not_converged = 0
        # standardised coordinates for each C (its penalty is part of each curvature), one
        # set for every fold (any set gives the same optima), from one reading of X
        moments = feature_moments(X, sw, centred=self.fit_intercept)
        standardized = [standardizing(obj, X, sw, moments=moments) for obj in objectives]
        size = X.nnz if sp.issparse(X) else X.size
        with threadpool_limits(limits=blas_threads_for(size), user_api="blas"), \
                _jit.fit_mode(work):
            for f, (train, test) in enumerate(folds):
                sw_train = sw[train]
                sw_sum = float(sw_train.sum())
                if not sw_sum > 0:
                    raise ValueError(f"`sample_weight`: the training part of fold {f} has no "
                                     "weight (all its sample weights are zero)")
                parts = base.split(X[train], y_enc[train], sw_train)
                X_test, y_test = X[test], y_labels[test]
                kwargs = {} if score_sw is None else {"sample_weight": score_sw[test]}
                x0 = np.zeros(base.n_params)
                for i, obj in enumerate(objectives):
                    if f > 0:  # the previous fold's solution, moved as this fold's path moved
                        x0 = paths[f - 1, i] + (x0 - paths[f - 1, i - 1] if i else 0.0)
                    result = obj.minimize(obj.blocked_loss_gradient, x0, args=(parts, sw_sum),
                                          tol=self.tol, max_iter=self.max_iter,
                                          n_samples=len(train),
                                          standardized=standardized[i])
                    x0 = paths[f, i] = result.x
                    n_iter[f, i] = min(result.nit, self.max_iter)
                    not_converged += result.status == 1 or result.nit >= self.max_iter
                    scores[f, i] = self._score(obj, result.x, scorer, X_test, y_test, kwargs)
                    if self.verbose:
                        print(f"fold {f + 1}/{n_folds}, C={Cs[i]:.6g}: {n_iter[f, i]} "
                              f"iterations, score {scores[f, i]:.10g}")
            if self.refit:
                best = int(np.argmax(scores.sum(axis=0)))
                self.C_ = float(Cs[best])
                obj = objectives[best]
                result = obj.minimize(obj.blocked_loss_gradient, paths[:, best].mean(axis=0),
                                      args=(obj.split(X, y_enc, sw), float(sw.sum())),
                                      tol=self.tol, max_iter=self.max_iter,
                                      n_samples=X.shape[0], standardized=standardized[best])
                not_converged += result.status == 1 or result.nit >= self.max_iter
                w = result.x
            else:
                best = np.argmax(scores, axis=1)
                self.C_ = float(np.mean(Cs[best]))
                w = paths[np.arange(n_folds), best].mean(axis=0)
        if not_converged:
            warnings.warn(
                f"SoftmaxRegressionCV: {not_converged} of the L-BFGS fits did not converge "
                f"in max_iter={self.max_iter} iterations; increase max_iter, standardise the "
                "features (StandardScaler), or leave out the largest Cs.",
                ConvergenceWarning, stacklevel=user_stacklevel())
        self.Cs_ = Cs
        self.scores_ = scores
        self.n_iter_ = n_iter
        paths = paths.reshape(n_folds, n_Cs, base.k, base.cols)
        if self.fit_intercept and not base.binary:  # centred, as solution() centres intercept_
            paths[..., -1] -= paths[..., -1].mean(axis=2, keepdims=True)
        self.coefs_paths_ = paths.astype(base.dtype)
        self.coef_, self.intercept_ = base.solution(w)
        return self

    def _score(self, objective, params, scorer, X_test, y_test, kwargs):
        """One fold's score at ``params``: the scorer sees a fitted :class:`SoftmaxRegression`."""
        est = SoftmaxRegression()
        est.coef_, est.intercept_ = objective.solution(params)
        est.classes_, est.n_features_in_ = self.classes_, self.n_features_in_
        if scorer is None:
            return est.score(X_test, y_test, **kwargs)
        return scorer(est, X_test, y_test, **kwargs)
