"""``CalibratedClassifier``: temperature, vector or matrix scaling around any classifier."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.model_selection import check_cv
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import _safe_indexing, indexable
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, _num_samples, check_is_fitted

from .. import _jit
from ._scaling import MatrixScaling, TemperatureScaling, VectorScaling

__all__ = ["CalibratedClassifier", "estimator_logits"]

_SCALERS = {"temperature": TemperatureScaling, "vector": VectorScaling, "matrix": MatrixScaling}


def estimator_logits(estimator, X):
    """The logits a fitted classifier gives ``X``: shape (n_samples, n_classes), or
    (n_samples,) for a binary ``decision_function``.

    ``decision_function`` when the classifier has one (its binary output, the log-odds of
    ``classes_[1]``, stays one column); otherwise ``predict_log_proba`` or the exact
    ``log`` of ``predict_proba``. A probability of exactly 0 has no finite logit and is
    a ``ValueError``.
    """
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    if hasattr(estimator, "predict_log_proba"):
        z = np.asarray(estimator.predict_log_proba(X), dtype=np.float64)
    else:
        p = np.asarray(estimator.predict_proba(X), dtype=np.float64)
        with np.errstate(divide="ignore"):  # log 0 = -inf, reported below
            z = np.log(p)
    if np.isneginf(z).any():
        raise ValueError(
            f"`estimator` ({type(estimator).__name__}) gives some samples a probability of "
            "exactly 0, whose logit is -inf: no scaling of logits can calibrate it; "
            "calibrate a classifier with decision_function or smoothed probabilities"
        )
    return z


class CalibratedClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    r"""A classifier whose probabilities are calibrated by scaling its logits.

    Parameters
    ----------
    estimator : classifier, default=None
        Any scikit-learn classifier with ``decision_function`` or ``predict_proba``
        (see :func:`estimator_logits` for which output is used). ``None`` is
        :class:`logitlab.SoftmaxRegression`.
    method : {"temperature", "vector", "matrix"}, default="temperature"
        :class:`~logitlab.calibration.TemperatureScaling`,
        :class:`~logitlab.calibration.VectorScaling` or
        :class:`~logitlab.calibration.MatrixScaling`.
    cv : int, cross-validation splitter or "prefit", default=5
        An integer is scikit-learn's ``check_cv`` (``StratifiedKFold(cv)``, not
        shuffled): for each fold a clone of ``estimator`` is fitted on the other
        folds and a scaling on this fold's logits, and ``predict_proba`` averages
        the folds' calibrated probabilities (scikit-learn's ``ensemble=True``).
        ``"prefit"``: ``estimator`` is already fitted, and the scaling is fitted on
        all of ``X, y`` (which must not be its training data).
    C : float, default=1.0
        The penalty's inverse strength for ``method="matrix"``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    calibrated_classifiers_ : list of (estimator, scaler)
        One pair per fold (one for ``"prefit"``).
    n_features_in_ : int

    Notes
    -----
    With ``method="temperature"`` the probabilities equal scikit-learn's
    ``CalibratedClassifierCV(method="temperature")`` on the same folds. So does the
    temperature, except for a binary ``decision_function`` :math:`d`: scikit-learn
    turns it into the two logits :math:`(-d, d)`, whose softmax at :math:`T = 1` is
    :math:`\sigma(2d)`, whereas here :math:`d` is the log-odds itself,
    :math:`\sigma(d / T)`, so that :math:`T = 1` is the classifier's own
    ``predict_proba``; the fitted temperatures differ by exactly that factor 2
    (:math:`T_\text{logitlab} = T_\text{sklearn} / 2`), the probabilities not at all.
    From probabilities, scikit-learn takes :math:`\log(p + 10^{-12})`; logitlab
    the exact :math:`\log p`.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from logitlab.calibration import CalibratedClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = CalibratedClassifier(cv=3).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "decision_function"]),
                      HasMethods(["fit", "predict_proba"]), None],
        "method": [StrOptions(set(_SCALERS))],
        "cv": ["cv_object", StrOptions({"prefit"})],
        "C": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, estimator=None, *, method="temperature", cv=5, C=1.0):
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.C = C

    def _base(self):
        if self.estimator is None:
            from ..estimators import SoftmaxRegression

            return SoftmaxRegression()
        return self.estimator

    def _scaler(self):
        return MatrixScaling(C=self.C) if self.method == "matrix" else _SCALERS[self.method]()

    def _fit_scaler(self, est, X, y_enc, sample_weight):
        # the estimator's columns follow its own classes_, which must be ours
        if not np.array_equal(np.asarray(est.classes_), self.classes_):
            raise ValueError(
                f"`estimator` was fitted on the classes {np.asarray(est.classes_).tolist()}, but `y` holds "
                f"{self.classes_.tolist()}: the calibration set must hold every class it predicts"
            )
        # the logits (an MLP's log-probabilities) and the scaling's fit on the kernels or the
        # reference by their size alone, not by what the process did before
        with _jit.fit_mode(_num_samples(X) * max(len(self.classes_), 2)):
            z = estimator_logits(est, X)
            if z.ndim == 2 and z.shape[1] == 1:
                z = z[:, 0]
            return self._scaler().fit(z, y_enc, sample_weight)

    def fit(self, X, y, sample_weight=None, **fit_params):
        """Fit the classifier(s) and their calibration.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Passed to the estimator's ``fit`` (when it takes one) and to the scaling.
        **fit_params
            Passed to the estimator's ``fit``.

        Returns
        -------
        self
        """
        self._validate_params()
        check_classification_targets(y)
        X, y = indexable(X, y)
        if _num_samples(X) == 0:
            raise ValueError("`X` must hold at least one sample; got 0 sample(s)")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        base = self._base()
        if self.cv == "prefit":
            check_is_fitted(base, "classes_")
            self.classes_ = np.asarray(base.classes_)
            unknown = ~np.isin(np.asarray(y), self.classes_)
            if unknown.any():
                raise ValueError(
                    f"`y` holds the label {np.asarray(y)[unknown][0]!r}, which the prefit "
                    f"`estimator` does not know (its classes_ are {self.classes_.tolist()})"
                )
            y_enc = np.searchsorted(self.classes_, np.asarray(y))
            self.calibrated_classifiers_ = [(base, self._fit_scaler(base, X, y_enc,
                                                                    sample_weight))]
        else:
            enc = LabelEncoder().fit(y)
            self.classes_ = enc.classes_
            if len(self.classes_) < 2:
                raise ValueError(
                    f"`y` must hold at least 2 classes; got one class: {self.classes_[0]!r}"
                )
            y_enc = enc.transform(y)
            cv = check_cv(self.cv, y, classifier=True)
            n_folds = cv.get_n_splits(X, y)
            counts = np.bincount(y_enc)
            if isinstance(self.cv, int) and counts.min() < n_folds:
                raise ValueError(
                    f"`y` has {counts.min()} sample(s) of class {self.classes_[counts.argmin()]!r}, "
                    f"fewer than the cv={n_folds} folds: every fold needs every class"
                )
            self.calibrated_classifiers_ = []
            for train, test in cv.split(X, y):
                est = clone(base)
                kwargs = dict(fit_params)
                if sample_weight is not None:
                    kwargs["sample_weight"] = _safe_indexing(sample_weight, train)
                est.fit(_safe_indexing(X, train), _safe_indexing(y, train), **kwargs)
                sw = None if sample_weight is None else _safe_indexing(sample_weight, test)
                self.calibrated_classifiers_.append(
                    (est, self._fit_scaler(est, _safe_indexing(X, test), y_enc[test], sw)))
        first = self.calibrated_classifiers_[0][0]
        for attr in ("n_features_in_", "feature_names_in_"):
            if hasattr(first, attr):
                setattr(self, attr, getattr(first, attr))
        return self

    def predict_proba(self, X):
        """Calibrated probabilities, shape (n_samples, n_classes): the folds' average."""
        check_is_fitted(self, "calibrated_classifiers_")
        total = None
        for est, scaler in self.calibrated_classifiers_:
            z = estimator_logits(est, X)
            p = scaler.predict_proba(z[:, 0] if z.ndim == 2 and z.shape[1] == 1 else z)
            if p.ndim == 1:
                p = np.column_stack([1.0 - p, p])
            total = p if total is None else total + p
        return total / len(self.calibrated_classifiers_)

    def predict_log_proba(self, X):
        """``log`` of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The class of largest calibrated probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    @property
    def temperature_(self):
        """The fitted temperatures (``method="temperature"``), one per fold."""
        check_is_fitted(self, "calibrated_classifiers_")
        return np.array([s.temperature_ for _, s in self.calibrated_classifiers_])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        base_tags = self._base().__sklearn_tags__()
        tags.input_tags.sparse = base_tags.input_tags.sparse
        tags.input_tags.allow_nan = base_tags.input_tags.allow_nan
        return tags
