"""Multilabel decision metrics, from scikit-learn (imported on call)."""

from __future__ import annotations

import numpy as np

from .._validation import check_same_shape

__all__ = ["multilabel_scores"]


def multilabel_scores(y_true, y_pred):
    """Subset accuracy, Hamming loss and micro/macro F1 of multilabel decisions.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples, n_labels)
        0/1 indicator matrices (``y_pred`` for example from
        :meth:`logitlab.calibration.MultilabelThresholds.predict`).

    Returns
    -------
    scores : dict
        ``subset_accuracy`` (scikit-learn's ``accuracy_score``: the fraction of rows
        entirely right), ``hamming_loss`` (the fraction of wrong entries),
        ``micro_f1`` and ``macro_f1`` (``f1_score`` with ``zero_division=0``).
        scikit-learn computes each; they are gathered here, not re-implemented.

    Examples
    --------
    >>> from logitlab.metrics import multilabel_scores
    >>> scores = multilabel_scores([[1, 0], [1, 1]], [[1, 0], [0, 1]])
    >>> scores["subset_accuracy"], scores["hamming_loss"]
    (0.5, 0.25)
    """
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 2:
        raise ValueError(f"`y_true` must be a 2-D indicator matrix; got shape {t.shape}")
    check_same_shape(t, p)
    return {
        "subset_accuracy": float(accuracy_score(t, p)),
        "hamming_loss": float(hamming_loss(t, p)),
        "micro_f1": float(f1_score(t, p, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
    }
