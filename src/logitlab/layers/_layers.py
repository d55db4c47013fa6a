"""Stateful layers: Dense, Activation, Dropout, with hand-written backward passes.

Kernels are stored ``(inputs, units)``, Keras's order, so ``get_weights`` /
``set_weights`` exchange the same list a Keras model of the same shape does.
"""

from __future__ import annotations

import functools

import numpy as np

from .._validation import check_number, describe
from . import _activations

__all__ = ["Layer", "Dense", "Activation", "Dropout", "L1", "L2", "L1L2"]


# ---- initializers (Keras's VarianceScaling family) ---------------------------

def _truncated_normal(rng, shape, std):
    # Keras draws from a normal truncated at 2 standard deviations
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * std


_TRUNC_CORRECTION = 0.87962566103423978  # std of a standard normal truncated at +-2


def _initialize(name, rng, shape, dtype):
    fan_in, fan_out = (shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[0])
    if name == "zeros":
        w = np.zeros(shape)
    elif name == "ones":
        w = np.ones(shape)
    elif name == "glorot_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    elif name == "he_uniform":
        limit = np.sqrt(6.0 / fan_in)
        w = rng.uniform(-limit, limit, size=shape)
    elif name == "glorot_normal":
        w = _truncated_normal(rng, shape, np.sqrt(2.0 / (fan_in + fan_out)) / _TRUNC_CORRECTION)
    elif name == "he_normal":
        w = _truncated_normal(rng, shape, np.sqrt(2.0 / fan_in) / _TRUNC_CORRECTION)
    elif name == "random_normal":
        w = rng.normal(0.0, 0.05, size=shape)
    elif name == "random_uniform":
        w = rng.uniform(-0.05, 0.05, size=shape)
    else:  # validated at construction
        raise AssertionError(name)
    return w.astype(dtype)


INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros", "ones",
                "random_normal", "random_uniform")


# ---- regularizers ------------------------------------------------------------

class L1L2:
    """Penalty ``l1 * sum|W| + l2 * sum(W**2)`` added to the loss (Keras's regularizers)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = float(check_number(l1, "l1", low=0.0))
        self.l2 = float(check_number(l2, "l2", low=0.0))

    def __call__(self, w):
        return self.l1 * np.sum(np.abs(w)) + self.l2 * np.sum(np.square(w))

    def grad(self, w):
        g = 2.0 * self.l2 * w
        if self.l1:
            g = g + self.l1 * np.sign(w)
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"L1L2(l1={self.l1}, l2={self.l2})"


def L1(l1=0.01):  # noqa: N802 - Keras's name
    """An L1 penalty ``l1 * sum|W|``."""
    return L1L2(l1=l1)


def L2(l2=0.01):  # noqa: N802 - Keras's name
    """An L2 penalty ``l2 * sum(W**2)``."""
    return L1L2(l2=l2)


def _regularizer(value):
    if value is None or isinstance(value, L1L2):
        return value
    if value == "l1":
        return L1()
    if value == "l2":
        return L2()
    if isinstance(value, dict):
        return L1L2(**value)
    raise ValueError(
        f"`kernel_regularizer` must be None, 'l1', 'l2' or an L1/L2/L1L2 object; got {value!r}"
    )


# ---- layers --------------------------------------------------------------------

class Layer:
    """Base layer: ``build`` once, then ``forward`` / ``backward`` per batch.

    ``weights`` and ``grads`` are parallel lists of arrays; ``backward`` fills
    ``grads`` in place and returns the gradient with respect to the input.
    """

    # the training loop's scratch arrays (a dict) while it runs, else None: see Dense
    _scratch = None
    # while the loop runs its steps on several threads (models/_shards.py): a Dense kernel's
    # row ranges, one a thread, and the threads; else None
    _rows = None
    _shards = None

    def __init__(self, name=None):
        self.name = name
        self.weights: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self.built = False
        self.input_dim = None

    def build(self, input_dim, rng, dtype):
        self.input_dim = input_dim
        self.built = True

    def output_dim(self, input_dim):
        return input_dim

    def weight_shapes(self, input_dim):
        """``[(what, shape), ...]`` of the weights ``build(input_dim)`` makes, in order.

        Pure arithmetic, nothing allocated: the model-file loader checks a file's
        declared architecture against the arrays it holds with it, before building.
        """
        return []

    def bind(self, weights, grads):
        """Make ``weights``/``grads`` (views into the model's flat buffers) the layer's own."""
        self.weights, self.grads = list(weights), list(grads)

    def forward(self, x, training=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad, need_input_grad=True):  # pragma: no cover - abstract
        raise NotImplementedError

    def regularization_loss(self):
        return 0.0

    def get_config(self):
        return {"name": self.name}

    @property
    def count_params(self):
        return int(sum(w.size for w in self.weights))


class Dense(Layer):
    """A fully connected layer: ``activation(x @ kernel + bias)``.

    Parameters
    ----------
    units : int
        Output size.
    activation : str or None
        One of linear (None), relu, leaky_relu, elu, gelu, tanh, sigmoid,
        softmax, log_softmax, sparsemax.
    use_bias : bool, default=True
    kernel_initializer, bias_initializer : str
        glorot_uniform (default kernel), glorot_normal, he_uniform,
        he_normal, zeros (default bias), ones, random_normal, random_uniform.
    kernel_regularizer : None, "l1", "l2" or an L1/L2/L1L2 object

    Examples
    --------
    >>> from logitlab.layers import Dense
    >>> Dense(4, activation="softmax")
    Dense(units=4, activation='softmax')
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, name=None):
        super().__init__(name)
        self.units = int(check_number(units, "units", low=1, integer=True))
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        for arg, value in (("kernel_initializer", kernel_initializer),
                           ("bias_initializer", bias_initializer)):
            if value not in INITIALIZERS:
                raise ValueError(f"`{arg}` must be one of {list(INITIALIZERS)}; got {value!r}")
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = _regularizer(kernel_regularizer)

    def __repr__(self):
        return f"Dense(units={self.units}, activation={self.activation.name!r})"

    def build(self, input_dim, rng, dtype):
        super().build(input_dim, rng, dtype)
        shapes = dict(self.weight_shapes(input_dim))
        self.kernel = _initialize(self.kernel_initializer, rng, shapes["kernel"], dtype)
        self.weights = [self.kernel]
        if self.use_bias:
            self.bias = _initialize(self.bias_initializer, rng, shapes["bias"], dtype)
            self.weights.append(self.bias)
        self.grads = [np.zeros_like(w) for w in self.weights]

    def output_dim(self, input_dim):
        return self.units

    def weight_shapes(self, input_dim):
        return [("kernel", (input_dim, self.units))] + ([("bias", (self.units,))]
                                                        if self.use_bias else [])

    def bind(self, weights, grads):
        super().bind(weights, grads)
        self.kernel = self.weights[0]
        if self.use_bias:
            self.bias = self.weights[1]

    def forward(self, x, training=False):
        scratch = training and self._scratch is not None
        if scratch:  # the training loop's step: into this layer's buffer, reused step after step
            z = self._buffer("z", len(x), self.units)
            if self._rows is None:
                np.matmul(x, self.kernel, out=z)
            else:  # each thread its rows of the kernel (models/_shards.py), the parts summed
                parts = [z] + [self._buffer(f"z{t}", len(x), self.units)
                               for t in range(1, len(self._rows))]
                self._shards.run([functools.partial(np.matmul, x[:, lo:hi], self.kernel[lo:hi],
                                                    out=part)
                                  for (lo, hi), part in zip(self._rows, parts)])
                for part in parts[1:]:
                    z += part
        else:
            z = x @ self.kernel
        # bias and activation in the product's output pass, over z (a fresh or scratch array)
        if self.use_bias:
            z += self.bias
        if self.activation.forward_inplace is not None:
            y = z = self.activation.forward_inplace(z)
        else:
            y = self.activation.forward(z)
        self._cache = (x, z, y)
        return y

    def backward(self, grad, need_input_grad=True, overwrite_grad=False):
        """Fill ``grads``; return the gradient with respect to the input (None when not needed:
        the first layer's, a third of the backward pass's products, is never computed).

        ``overwrite_grad``: ``grad`` is the caller's scratch, the activation's backward pass may
        be written over it (the training loop's own arrays only).
        """
        x, z, y = self._cache
        if overwrite_grad and self.activation.backward_inplace is not None:
            gz = self.activation.backward_inplace(z, y, grad)
        else:
            gz = self.activation.backward(z, y, grad)
        if self._rows is None:
            self._kernel_grad(x, gz, slice(None))
        else:  # each thread its rows of the gradient, as of the kernel in forward, and
            # whether they are finite (the loop's divergence check, read where they lie)
            self._grad_finite = all(self._shards.run(
                [functools.partial(self._kernel_grad, x, gz, slice(lo, hi), check=True)
                 for lo, hi in self._rows]))
        if self.use_bias:
            gz.sum(axis=0, out=self.grads[1])
        if not need_input_grad:
            return None
        if self._scratch is None:
            return gz @ self.kernel.T
        return np.matmul(gz, self.kernel.T, out=self._buffer("dx", len(gz), self.input_dim))

    def _kernel_grad(self, x, gz, rows, check=False):
        """The kernel's gradient, ``x^T gz`` plus the regulariser's, for the kernel's ``rows``;
        with ``check``, whether those rows are finite."""
        np.matmul(x[:, rows].T, gz, out=self.grads[0][rows])
        if self.kernel_regularizer is not None:
            self.grads[0][rows] += self.kernel_regularizer.grad(self.kernel[rows])
        return check and bool(np.isfinite(self.grads[0][rows]).all())

    def _buffer(self, key, n_rows, n_cols):
        """The first ``n_rows`` rows of a scratch array kept for the training loop's steps (the
        last, smaller batch is a leading slice of the same memory)."""
        buf = self._scratch.get(key)
        if buf is None or len(buf) < n_rows:
            buf = self._scratch[key] = np.empty((n_rows, n_cols), dtype=self.kernel.dtype)
        return buf if len(buf) == n_rows else buf[:n_rows]

    def regularization_loss(self):
        if self.kernel_regularizer is None:
            return 0.0
        return float(self.kernel_regularizer(self.kernel))

    def get_config(self):
        return {
            "units": self.units,
            "activation": self.activation.name,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "kernel_regularizer": (None if self.kernel_regularizer is None
                                   else self.kernel_regularizer.get_config()),
            "name": self.name,
        }


class Activation(Layer):
    """An activation applied on its own, e.g. ``Activation("softmax")``."""

    def __init__(self, activation, name=None):
        super().__init__(name)
        self.activation = _activations.get(activation)

    def __repr__(self):
        return f"Activation({self.activation.name!r})"

    def forward(self, x, training=False):
        y = self.activation.forward(x)
        self._cache = (x, y)
        return y

    def backward(self, grad, need_input_grad=True):
        x, y = self._cache
        return self.activation.backward(x, y, grad)

    def get_config(self):
        return {"activation": self.activation.name, "name": self.name}


class Dropout(Layer):
    """Inverted dropout: in training, zero a fraction ``rate`` and scale the rest by ``1/(1-rate)``."""

    def __init__(self, rate, seed=None, name=None):
        super().__init__(name)
        self.rate = float(check_number(rate, "rate", low=0.0, high=1.0, high_open=True))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"`seed` must be an integer or None; got {describe(seed)}")
        self.seed = seed
        self._rng = None

    def __repr__(self):
        return f"Dropout({self.rate})"

    def build(self, input_dim, rng, dtype):
        super().build(input_dim, rng, dtype)
        self._rng = np.random.default_rng(self.seed) if self.seed is not None else rng

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = self._rng.random(x.shape) >= self.rate
        self._mask = keep.astype(x.dtype) / (1.0 - self.rate)
        return x * self._mask

    def backward(self, grad, need_input_grad=True):
        return grad if self._mask is None else grad * self._mask

    def get_config(self):
        return {"rate": self.rate, "seed": self.seed, "name": self.name}


LAYERS = {"Dense": Dense, "Activation": Activation, "Dropout": Dropout}


def layer_from_config(class_name, config):
    """Rebuild a layer from ``get_config`` output (names only; nothing is executed)."""
    if class_name not in LAYERS:
        raise ValueError(f"unknown layer type {class_name!r}; expected one of {sorted(LAYERS)}")
    config = dict(config)
    if class_name == "Dense" and isinstance(config.get("kernel_regularizer"), dict):
        config["kernel_regularizer"] = L1L2(**config["kernel_regularizer"])
    return LAYERS[class_name](**config)
