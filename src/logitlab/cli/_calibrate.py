"""``logitlab train --calibrate``: a temperature for a CLI model, stored beside it.

The temperature is kept in the model file's extra arrays (``extra/temperature``:
one for a softmax or binary model, one per label for a multilabel one) and
applied by :class:`Calibrated` to the estimator's logits, the way
:class:`logitlab.calibration.TemperatureScaling` applies it (it fits it).
Predictions (the arg max, or a logit above 0) do not change; probabilities do.
NumPy only, so that ``predict`` and ``evaluate`` load no scikit-learn.
"""

from __future__ import annotations

import numpy as np

from .._saving import check_array
from .._softmax import sigmoid, softmax


def logits_of(est, X):
    """The estimator's logits, shape (n_samples, n_columns), through its public API."""
    if hasattr(est, "model_"):  # MLPClassifier (or its light predictor): the network's outputs
        z = est.model_.predict(X)
    else:  # SoftmaxRegression (or its light predictor): X @ coef.T + intercept
        z = est.decision_function(X)  # one column for two classes
    z = np.asarray(z, dtype=np.float64)
    return z.reshape(len(z), -1)


def proba_from_logits(z, temperature=1.0, multilabel=False):
    """``predict_proba`` computed from logits ``z / temperature`` (sigmoid for ``multilabel``)."""
    z = z / temperature
    if multilabel:
        return sigmoid(z)
    if z.shape[1] == 1:  # two classes, one logit (SoftmaxRegression's binary case)
        return np.column_stack([sigmoid(-z[:, 0]), sigmoid(z[:, 0])])
    return softmax(z, axis=1)


def calibration_targets(est, y, multilabel=False):
    """``y`` as TemperatureScaling takes it: class indices, or the 0/1 indicator matrix."""
    if multilabel:
        return np.asarray(y)
    return np.searchsorted(est.classes_, y)


def fit_temperature(est, X, y, multilabel=False):
    """The temperature(s) of ``est`` fitted on held-out ``X``, ``y``: float64 array."""
    from ..calibration import TemperatureScaling

    ts = TemperatureScaling().fit(logits_of(est, X), calibration_targets(est, y, multilabel))
    return np.atleast_1d(np.asarray(ts.temperature_, dtype=np.float64))


class Calibrated:
    """An estimator whose probabilities are those of its logits over a temperature."""

    def __init__(self, est, temperature, multilabel=False):
        self.est, self.temperature = est, np.asarray(temperature, dtype=np.float64)
        self.multilabel = multilabel

    def __getattr__(self, name):
        return getattr(self.est, name)

    def predict(self, X):
        return self.est.predict(X)  # a positive temperature changes no decision

    def predict_proba(self, X):
        return proba_from_logits(logits_of(self.est, X), self.temperature, self.multilabel)


def with_stored_temperature(est, arrays, where, multilabel=False):
    """``est`` wrapped in :class:`Calibrated` when the file holds a temperature, checked
    as the other arrays of the file are (shape, float64, finite, > 0)."""
    if "temperature" not in arrays:
        return est
    n = len(est.classes_) if multilabel else 1
    t = check_array(arrays, "temperature", (n,), where, dtype=np.float64, positive=True,
                    label="extra/temperature")
    return Calibrated(est, t, multilabel)
