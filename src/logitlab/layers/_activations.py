"""Activation functions with hand-written backward passes.

Each activation is a pair ``forward(x) -> y`` and ``backward(x, y, grad_y) ->
grad_x`` (both NumPy, any shape, class axis last for the softmax family).
The softmax family calls the functional core; nothing here re-derives a
stability trick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .._softmax import log_softmax as _log_softmax
from .._softmax import sigmoid as _sigmoid
from .._softmax import softmax as _softmax
from .._softmax import entmax15 as _entmax15
from .._softmax import sparsemax as _sparsemax

__all__ = ["Activation", "get", "ACTIVATIONS"]

LEAKY_SLOPE = 0.2  # Keras 3's default negative_slope
ELU_ALPHA = 1.0
_SQRT_HALF = np.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Activation:
    """A named activation: ``forward`` and its vector-Jacobian product ``backward``.

    ``forward_inplace(z)`` and ``backward_inplace(x, y, g)``, where given,
    compute the same values (the same bits) written over ``z`` and ``g``:
    :class:`~logitlab.layers.Dense` applies the activation in the output pass
    of its matrix product this way, and its training loop the backward pass.
    """

    name: str
    forward: Callable
    backward: Callable
    forward_inplace: Optional[Callable] = None
    backward_inplace: Optional[Callable] = None

    def __call__(self, x):
        return self.forward(np.asarray(x))


def _same(fn):
    """Run ``fn`` and return in the input's floating dtype."""
    def wrapped(x):
        x = np.asarray(x)
        out = fn(x)
        return out.astype(x.dtype, copy=False) if x.dtype.kind == "f" else out
    return wrapped


def _linear_f(x):
    return x


def _linear_b(x, y, g):
    return g


def _relu_f(x):
    return np.maximum(x, 0)


def _relu_b(x, y, g):
    return g * (x > 0)


def _relu_f_inplace(z):
    # against a row of zeros, not the scalar 0: NumPy's SIMD loop takes two arrays (a
    # broadcast row is one), a scalar goes through a loop about three times slower; the
    # same bits (-0.0 and NaN included)
    return np.maximum(z, np.zeros(z.shape[-1:], dtype=z.dtype), out=z)


def _relu_b_inplace(x, y, g):
    # y > 0 exactly where x > 0; the mask multiply gives _relu_b's bits
    return np.multiply(g, y > 0, out=g)


def _leaky_f(x):
    return np.where(x > 0, x, LEAKY_SLOPE * x)


def _leaky_b(x, y, g):
    return np.where(x > 0, g, LEAKY_SLOPE * g)


def _elu_f(x):
    return np.where(x > 0, x, ELU_ALPHA * np.expm1(np.minimum(x, 0)))


def _elu_b(x, y, g):
    return np.where(x > 0, g, g * (y + ELU_ALPHA))


def _erf(x):
    from scipy.special import erf  # imported on first use: it costs 0.3 s

    return erf(x)


def _gelu_f(x):
    # exact GELU (Keras's approximate=False): x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2
    return x * (0.5 * (1.0 + _erf(x * _SQRT_HALF)))


def _gelu_b(x, y, g):
    phi = 0.5 * (1.0 + _erf(x * _SQRT_HALF))
    return g * (phi + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x))


def _tanh_b(x, y, g):
    return g * (1.0 - y * y)


def _sigmoid_b(x, y, g):
    return g * y * (1.0 - y)


def _softmax_b(x, y, g):
    # J^T g for y = softmax(x): y * (g - <g, y>)
    return y * (g - np.sum(g * y, axis=-1, keepdims=True))


def _log_softmax_b(x, y, g):
    # y = log softmax(x): g - softmax(x) * sum(g)
    return g - np.exp(y) * np.sum(g, axis=-1, keepdims=True)


def _sparsemax_b(x, y, g):
    # Martins and Astudillo (2016), eq. 14: s * (g - mean of g over the support)
    s = y > 0
    mean = np.sum(g * s, axis=-1, keepdims=True) / np.maximum(np.sum(s, axis=-1, keepdims=True), 1)
    return np.where(s, g - mean, 0.0)


def _entmax15_b(x, y, g):
    # Peters et al. (2019): with s = sqrt(y), J^T g = s g - s <s, g> / sum(s)
    s = np.sqrt(y)
    sg = s * g
    return sg - s * (np.sum(sg, axis=-1, keepdims=True) / np.sum(s, axis=-1, keepdims=True))


ACTIVATIONS = {
    "linear": Activation("linear", _linear_f, _linear_b, _linear_f, _linear_b),
    "relu": Activation("relu", _relu_f, _relu_b, _relu_f_inplace, _relu_b_inplace),
    "leaky_relu": Activation("leaky_relu", _same(_leaky_f), _leaky_b),
    "elu": Activation("elu", _same(_elu_f), _elu_b),
    "gelu": Activation("gelu", _same(_gelu_f), _gelu_b),
    "tanh": Activation("tanh", np.tanh, _tanh_b),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_b),
    "softmax": Activation("softmax", _softmax, _softmax_b),
    "log_softmax": Activation("log_softmax", _log_softmax, _log_softmax_b),
    "sparsemax": Activation("sparsemax", _sparsemax, _sparsemax_b),
    "entmax15": Activation("entmax15", _entmax15, _entmax15_b),
}


def get(identifier) -> Activation:
    """An :class:`Activation` from its name, ``None`` (linear) or itself."""
    if identifier is None:
        return ACTIVATIONS["linear"]
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier in ACTIVATIONS:
        return ACTIVATIONS[identifier]
    raise ValueError(
        f"`activation` must be None or one of {sorted(ACTIVATIONS)}; got {identifier!r}"
    )
