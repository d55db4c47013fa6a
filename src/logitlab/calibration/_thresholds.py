"""Per-label decision thresholds for multilabel outputs, tuned on validation data."""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import (as_float_array, check_choice, check_finite, check_number, describe,
                           user_stacklevel)
from ._scaling import NotFittedError

__all__ = ["MultilabelThresholds"]


def _cuts(scores, y):
    """For one label: the distinct thresholds (descending) and, predicting ``score >= t``,
    the true and predicted positives at each; the first cut predicts nothing."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order]
    tp = np.cumsum(t)
    # a cut can only fall after the last of a run of tied scores
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    thresholds = np.r_[np.inf, s[last]]
    return thresholds, np.r_[0, tp[last]], np.r_[0, last + 1]


class MultilabelThresholds:
    r"""One decision threshold per label, chosen on validation data.

    Parameters
    ----------
    metric : {"f1", "precision"}, default="f1"
        ``"f1"``: each label's threshold maximises its F1 score. ``"precision"``:
        the lowest threshold (most recall) whose precision reaches ``target``.
    target : float in (0, 1], optional
        The precision to reach (``metric="precision"`` only).

    Attributes
    ----------
    thresholds_ : ndarray of shape (n_labels,)
        A label is predicted when its score is ``>=`` its threshold; ``inf``
        predicts it never (a label with no positive, or whose precision target
        cannot be met, which warns).
    scores_ : ndarray of shape (n_labels,)
        Each label's F1 (or precision) at its threshold on the validation data.

    Notes
    -----
    For one label, sort the validation scores in decreasing order; predicting the
    first :math:`k` (a cut after a run of tied scores) gives :math:`TP_k` true
    positives, so with :math:`P` positives

    .. math::

        F_1(k) = \frac{2\,TP_k}{k + P}, \qquad \mathrm{precision}(k) = \frac{TP_k}{k},

    evaluated at every cut in one pass (a cumulative sum). The scores may be
    probabilities or logits: any increasing map of them gives the same decisions.

    Examples
    --------
    >>> import numpy as np
    >>> from logitlab.calibration import MultilabelThresholds
    >>> scores = np.array([[0.9, 0.2], [0.4, 0.35], [0.3, 0.1], [0.1, 0.8]])
    >>> y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    >>> MultilabelThresholds().fit(scores, y).thresholds_
    array([0.4 , 0.35])
    """

    def __init__(self, metric="f1", target=None):
        self.metric = metric
        self.target = target

    def _validate_params(self):
        check_choice(self.metric, ("f1", "precision"), "metric")
        if self.metric == "precision":
            if self.target is None:
                raise ValueError("`target` must be given (a precision in (0, 1]) with "
                                 "metric='precision'; got None")
            check_number(self.target, "target", low=0, low_open=True, high=1)
        elif self.target is not None:
            raise ValueError(f"`target` is for metric='precision'; got target={self.target!r} "
                             f"with metric={self.metric!r}")

    @staticmethod
    def _scores(scores, name="scores"):
        s, _ = as_float_array(scores, name, min_ndim=2)
        if s.ndim != 2:
            raise ValueError(f"`{name}` must be of shape (n_samples, n_labels); got {describe(s)}")
        return check_finite(s.astype(np.float64, copy=False), name)

    def fit(self, scores, y):
        """Choose the thresholds.

        Parameters
        ----------
        scores : array-like of shape (n_samples, n_labels)
            Validation probabilities or logits.
        y : array-like of shape (n_samples, n_labels)
            The 0/1 indicator matrix of the true labels.

        Returns
        -------
        self
        """
        self._validate_params()
        s = self._scores(scores)
        t, _ = as_float_array(y, "y")
        if t.shape != s.shape:
            raise ValueError(f"`y` must have the shape of `scores`, {s.shape}; got shape {t.shape}")
        if not np.all((t == 0) | (t == 1)):
            raise ValueError("`y` must be a 0/1 indicator matrix")
        if len(s) == 0:
            raise ValueError("`scores` must hold at least one sample")
        thresholds, achieved, unmet = [], [], []
        for j in range(s.shape[1]):
            cut, tp, k = _cuts(s[:, j], t[:, j])
            positives = tp[-1]
            if self.metric == "f1":
                value = np.where(k + positives > 0, 2 * tp / np.maximum(k + positives, 1), 0.0)
                best = int(np.argmax(value))  # the first (highest threshold) of equal F1
            else:
                value = np.where(k > 0, tp / np.maximum(k, 1), 0.0)
                ok = np.flatnonzero((value >= self.target) & (k > 0))
                if ok.size == 0:
                    unmet.append(j)
                best = int(ok[-1]) if ok.size else 0
            thresholds.append(cut[best])
            achieved.append(value[best])
        if unmet:
            warnings.warn(f"no threshold reaches precision {self.target} for label(s) "
                          f"{unmet[:10]}: they are never predicted", UserWarning,
                          stacklevel=user_stacklevel())
        self.thresholds_ = np.array(thresholds)
        self.scores_ = np.array(achieved)
        return self

    def predict(self, scores):
        """The 0/1 decisions ``scores >= thresholds_``, shape (n_samples, n_labels)."""
        if not hasattr(self, "thresholds_"):
            raise NotFittedError("This MultilabelThresholds is not fitted yet; call fit first")
        s = self._scores(scores)
        if s.shape[1] != len(self.thresholds_):
            raise ValueError(f"`scores` must have {len(self.thresholds_)} columns, as in fit; "
                             f"got {describe(s)}")
        return (s >= self.thresholds_).astype(np.int64)
