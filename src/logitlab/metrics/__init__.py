"""Metrics for probabilities: calibration errors, reliability curves, Brier score, log loss.

Binned metrics share one binning (see :func:`reliability_curve`); the
plotting function imports matplotlib when it is called.
"""

from ._calibration import (
    ReliabilityCurve,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    log_loss_from_logits,
    reliability_curve,
    top_k_accuracy,
)
from ._multilabel import multilabel_scores
from ._plot import plot_reliability_diagram

__all__ = [
    "ReliabilityCurve",
    "expected_calibration_error",
    "classwise_calibration_error",
    "reliability_curve",
    "brier_score",
    "log_loss_from_logits",
    "top_k_accuracy",
    "plot_reliability_diagram",
    "multilabel_scores",
]
