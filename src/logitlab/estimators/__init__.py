"""scikit-learn estimators: :class:`SoftmaxRegression` and :class:`MLPClassifier`."""

from ._mlp import MLPClassifier
from ._persist import load_estimator, save_estimator
from ._softmax_regression import SoftmaxRegression

__all__ = ["SoftmaxRegression", "MLPClassifier", "save_estimator", "load_estimator"]
