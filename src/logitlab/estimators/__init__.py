"""scikit-learn estimators: :class:`SoftmaxRegression`, :class:`SoftmaxRegressionCV` and
:class:`MLPClassifier`.

The estimators (and scikit-learn) are imported on first use, so that loading
a model file for prediction (``load_estimator(path, predict_only=True)``)
does not import scikit-learn.
"""

from ._persist import load_estimator, save_estimator

__all__ = ["SoftmaxRegression", "SoftmaxRegressionCV", "MLPClassifier", "save_estimator",
           "load_estimator"]


def __getattr__(name):
    if name == "SoftmaxRegression":
        from ._softmax_regression import SoftmaxRegression

        return SoftmaxRegression
    if name == "SoftmaxRegressionCV":
        from ._softmax_regression_cv import SoftmaxRegressionCV

        return SoftmaxRegressionCV
    if name == "MLPClassifier":
        from ._mlp import MLPClassifier

        return MLPClassifier
    raise AttributeError(f"module 'logitlab.estimators' has no attribute {name!r}")
