"""logitlab: multiclass and multilabel classification on softmax and cross-entropy.

The functional core (NumPy in, NumPy out) is importable from here:
``softmax``, ``log_softmax``, ``logsumexp``, ``sigmoid``, ``log_sigmoid``,
``sparsemax``, ``entmax15``, ``entmax_bisect``, ``one_hot``, ``entropy``, ``kl_divergence``,
``cross_entropy``. Losses live in :mod:`logitlab.losses`; networks in
:class:`Sequential`, :mod:`logitlab.layers`, :mod:`logitlab.optimizers`;
scikit-learn estimators are :class:`SoftmaxRegression`,
:class:`SoftmaxRegressionCV` and :class:`MLPClassifier` (imported on first
use, so ``import logitlab`` stays light).
"""

from ._distributions import cross_entropy, entropy, kl_divergence, one_hot
from ._jit import KernelUnavailableWarning
from ._softmax import (
    entmax15,
    entmax_bisect,
    log_sigmoid,
    log_softmax,
    logsumexp,
    sigmoid,
    softmax,
    sparsemax,
)
from ._random import set_random_seed
from ._saving import ModelFileError
from ._validation import LogitlabError
from ._version import __version__
from .models import Sequential, TrainingDivergedError, load_model

__all__ = [
    "__version__",
    "LogitlabError",
    "ModelFileError",
    "TrainingDivergedError",
    "KernelUnavailableWarning",
    "Sequential",
    "load_model",
    "set_random_seed",
    "SoftmaxRegression",
    "SoftmaxRegressionCV",
    "MLPClassifier",
    "softmax",
    "log_softmax",
    "logsumexp",
    "sigmoid",
    "log_sigmoid",
    "sparsemax",
    "entmax15",
    "entmax_bisect",
    "one_hot",
    "entropy",
    "kl_divergence",
    "cross_entropy",
]


_LAZY = {"SoftmaxRegression", "SoftmaxRegressionCV", "MLPClassifier"}


def __getattr__(name):
    # the estimators import scikit-learn; load them on first use only
    if name in _LAZY:
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'logitlab' has no attribute {name!r}")
