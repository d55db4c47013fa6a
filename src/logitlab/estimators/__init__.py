"""scikit-learn estimators: :class:`SoftmaxRegression` and :class:`MLPClassifier`."""

from ._mlp import MLPClassifier
from ._softmax_regression import SoftmaxRegression

__all__ = ["SoftmaxRegression", "MLPClassifier"]
