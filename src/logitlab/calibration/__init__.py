"""Calibration: make a classifier's probabilities mean what they say.

:class:`TemperatureScaling`, :class:`VectorScaling` and :class:`MatrixScaling`
map held-out logits to calibrated logits (NumPy in, NumPy out);
:class:`MultilabelThresholds` tunes per-label decision thresholds;
:class:`CalibratedClassifier` wraps any scikit-learn classifier (imported on
first use, so that ``import logitlab.calibration`` does not load scikit-learn).
"""

from ._scaling import MatrixScaling, NotFittedError, TemperatureScaling, VectorScaling
from ._thresholds import MultilabelThresholds

__all__ = [
    "TemperatureScaling",
    "VectorScaling",
    "MatrixScaling",
    "CalibratedClassifier",
    "MultilabelThresholds",
    "NotFittedError",
]

_LAZY = {"CalibratedClassifier": "._classifier"}


def __getattr__(name):
    # CalibratedClassifier imports scikit-learn: load it on first use only
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'logitlab.calibration' has no attribute {name!r}")
