"""Cross-entropy losses, as functions and as Keras-style classes.

Each class has ``__call__(y_true, y_pred)`` and ``value_and_grad(y_true,
y_pred)``; from logits the gradient is the closed form ``softmax - target``
(weighted and normalised), computed in the same pass.
"""

from ._api import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    get,
    sparse_categorical_crossentropy,
)
from ._crossentropy import EPSILON
from ._linear import linear_cross_entropy

__all__ = [
    "EPSILON",
    "Loss",
    "SparseCategoricalCrossentropy",
    "CategoricalCrossentropy",
    "BinaryCrossentropy",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
    "get",
    "linear_cross_entropy",
]
