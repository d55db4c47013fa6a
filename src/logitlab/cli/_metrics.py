"""The metrics of ``logitlab train / evaluate`` in NumPy.

scikit-learn's would cost ``logitlab evaluate`` two seconds of importing for
a few counts; ``tests/test_cli.py`` checks these against ``sklearn.metrics``.
"""

from __future__ import annotations

import numpy as np


def _indices(y, labels, name):
    """Position of each of ``y`` in ``labels``; a label not there is a ValueError."""
    where = {label: i for i, label in enumerate(labels.tolist())}
    try:
        return np.array([where[v] for v in np.asarray(y).tolist()], dtype=np.intp)
    except KeyError as exc:
        raise ValueError(f"`{name}` holds the label {exc.args[0]!r}, which the model does not "
                         f"know; it knows {', '.join(map(str, labels.tolist()))}") from None


def accuracy(y_true, y_pred):
    """Fraction of rows predicted exactly (all labels of a row, for multilabel)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    equal = y_true == y_pred
    return float(np.mean(equal.all(axis=1) if equal.ndim == 2 else equal))


def hamming_loss(y_true, y_pred):
    """Fraction of wrong labels, over all rows and labels."""
    return float(np.mean(np.asarray(y_true) != np.asarray(y_pred)))


def log_loss(y_true, proba, labels):
    """Mean of ``-log p[i, y_i]``, probabilities clipped to ``[eps, 1 - eps]`` as scikit-learn does."""
    proba = np.asarray(proba, dtype=np.float64)
    eps = np.finfo(proba.dtype).eps
    p = proba[np.arange(len(proba)), _indices(y_true, np.asarray(labels), "y_true")]
    return float(-np.mean(np.log(np.clip(p, eps, 1 - eps))))


def confusion_matrix(y_true, y_pred, labels):
    """Counts: row ``i`` the true class ``labels[i]``, column ``j`` the predicted ``labels[j]``."""
    labels = np.asarray(labels)
    t = _indices(y_true, labels, "y_true")
    p = _indices(y_pred, labels, "y_pred")
    return np.bincount(t * len(labels) + p, minlength=len(labels) ** 2).reshape(len(labels), -1)


def precision_recall_support(y_true, y_pred, labels=None):
    """Per class (or per label of a 0/1 matrix): precision, recall, support; 0 where undefined."""
    if labels is None:  # multilabel: one column per label
        t, p = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
        tp = np.sum(t & p, axis=0)
        predicted, support = p.sum(axis=0), t.sum(axis=0)
    else:
        cm = confusion_matrix(y_true, y_pred, labels)
        tp, predicted, support = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is reported as 0
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
    return precision, recall, support
