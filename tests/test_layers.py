"""Activations and layers: every backward pass against central differences (float64)."""

import numpy as np
import pytest

from helpers import assert_grad_close, numerical_grad
from logitlab import activations
from logitlab.layers import L1L2, Activation, Dense, Dropout


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_backward_matches_finite_differences(name, rng):
    act = activations.get(name)
    x = rng.normal(0, 1.5, size=(4, 5))
    x[np.abs(x) < 1e-3] = 0.3  # keep away from the kinks of relu-like functions
    if name == "sparsemax":
        x = np.array([[0.3, 1.1, 0.9, -2.0, 0.2], [1.0, 0.1, 0.5, 0.45, -1.0]])
    v = rng.normal(size=x.shape)  # a random upstream gradient
    y = act.forward(x)
    analytic = act.backward(x, y, v)
    numeric = numerical_grad(lambda z: np.sum(act.forward(z) * v), x, h=1e-7)
    assert_grad_close(analytic, numeric, rtol=1e-6)


def test_activations_by_name_and_errors():
    assert activations.get(None).name == "linear"
    with pytest.raises(ValueError, match="`activation` must be None or one of"):
        activations.get("swishy")
    np.testing.assert_array_equal(activations.get("leaky_relu")(np.array([-1.0, 2.0])), [-0.2, 2.0])


@pytest.mark.parametrize("activation", ["relu", "tanh", "softmax", "sigmoid", None])
def test_dense_backward_matches_finite_differences(activation, rng):
    layer = Dense(3, activation=activation, kernel_regularizer=L1L2(l2=0.1))
    layer.build(4, rng, np.float64)
    x = rng.normal(size=(5, 4))
    v = rng.normal(size=(5, 3))

    def objective(kernel=None, bias=None, inputs=None):
        saved = layer.kernel.copy(), layer.bias.copy()
        if kernel is not None:
            layer.kernel[...] = kernel
        if bias is not None:
            layer.bias[...] = bias
        out = np.sum(layer.forward(x if inputs is None else inputs) * v) + layer.regularization_loss()
        layer.kernel[...], layer.bias[...] = saved
        return out

    layer.forward(x)
    gx = layer.backward(v)
    assert_grad_close(layer.grads[0], numerical_grad(lambda k: objective(kernel=k), layer.kernel))
    assert_grad_close(layer.grads[1], numerical_grad(lambda b: objective(bias=b), layer.bias))
    assert_grad_close(gx, numerical_grad(lambda z: objective(inputs=z), x))


def test_activation_layer_and_dropout(rng):
    x = rng.normal(size=(3, 4))
    layer = Activation("softmax")
    np.testing.assert_allclose(layer.forward(x).sum(-1), 1.0)
    drop = Dropout(0.5, seed=1)
    drop.build(4, rng, np.float64)
    assert drop.forward(x, training=False) is x
    out = drop.forward(x, training=True)
    kept = out != 0
    np.testing.assert_allclose(out[kept], 2 * x[kept])
    np.testing.assert_allclose(drop.backward(np.ones_like(x)), kept * 2.0)


def test_layer_arguments_are_validated():
    with pytest.raises(ValueError, match="`units`"):
        Dense(0)
    with pytest.raises(ValueError, match="`kernel_initializer`"):
        Dense(3, kernel_initializer="xavier")
    with pytest.raises(ValueError, match="`rate`"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="`kernel_regularizer`"):
        Dense(3, kernel_regularizer="l3")


def test_glorot_uniform_has_keras_limits(rng):
    layer = Dense(25)
    layer.build(2, rng, np.float32)
    limit = np.sqrt(6.0 / 27)
    assert layer.kernel.dtype == np.float32 and np.abs(layer.kernel).max() <= limit
    assert np.all(layer.bias == 0)
