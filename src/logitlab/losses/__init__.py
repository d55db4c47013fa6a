"""Losses, as functions and as Keras-style classes.

Each class has ``__call__(y_true, y_pred)`` and ``value_and_grad(y_true,
y_pred)``; from logits the gradient is the closed form ``softmax - target``
(weighted and normalised), computed in the same pass. Every loss follows one
protocol (:class:`Loss`) and is found by name through one registry
(:func:`get`, :func:`register_loss`); see ``_base.py``.
"""

from ._api import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    sparse_categorical_crossentropy,
)
from ._focal import (
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalFocalCrossentropy,
    binary_focal_crossentropy,
    categorical_focal_crossentropy,
    sparse_categorical_focal_crossentropy,
)
from ._fenchel_young import (
    Entmax15Loss,
    EntmaxLoss,
    SparsemaxLoss,
    entmax15_loss,
    entmax_loss,
    sparsemax_loss,
)
from ._base import Loss, get, register_loss, serialize
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
    "SparseCategoricalFocalCrossentropy",
    "CategoricalFocalCrossentropy",
    "BinaryFocalCrossentropy",
    "sparse_categorical_focal_crossentropy",
    "categorical_focal_crossentropy",
    "binary_focal_crossentropy",
    "SparsemaxLoss",
    "Entmax15Loss",
    "EntmaxLoss",
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_loss",
    "get",
    "register_loss",
    "serialize",
    "linear_cross_entropy",
]
