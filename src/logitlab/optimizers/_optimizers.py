"""Optimizers with Keras 3's update formulas, applied in place.

With the same initial weights and the same batches these give Keras's
weights (checked against values recorded from Keras in the tests).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._jit import kernels_for, launch
from .._validation import check_number

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get"]


class Optimizer:
    """Base: ``build(params)`` once, then ``apply(params, grads)`` per step.

    The state (``iterations`` and the slot arrays) is exposed by
    ``get_state`` / ``set_state`` so that a checkpoint can resume exactly.
    """

    _slots: tuple = ()

    def __init__(self, learning_rate, weight_decay=None):
        self.learning_rate = float(check_number(learning_rate, "learning_rate", low=0.0,
                                                low_open=True))
        self.weight_decay = (None if weight_decay is None
                             else float(check_number(weight_decay, "weight_decay", low=0.0)))
        self.iterations = 0
        self.slots: dict[str, list[np.ndarray]] = {}

    def build(self, params):
        self.slots = {name: [np.zeros_like(p) for p in params] for name in self._active_slots()}

    def _active_slots(self):
        return self._slots

    def apply(self, params, grads, parts=None):
        """One step: update every array of ``params`` in place from ``grads``.

        ``parts`` (the training loop's, ``models._shards``): ``(shards, ranges)``, where
        ``ranges[t]`` lists the ``(start, stop)`` slices of the (flat) arrays that thread t
        updates; an optimizer that can split its step runs it so (Adam's compiled step),
        the others ignore it. The same bits either way: each entry's update is its own.
        """
        if self.weight_decay:
            # Keras applies decoupled weight decay before the update: w -= w * wd * lr
            factor = self.weight_decay * self.learning_rate
            for p in params:
                p -= p * factor
        if parts is None:  # a subclass's own _update(params, grads) keeps working
            self._update(params, grads)
        else:
            self._update(params, grads, parts)
        self.iterations += 1

    def _update(self, params, grads, parts=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        cfg = {k: getattr(self, k) for k in self._config_keys}
        cfg["learning_rate"] = self.learning_rate
        return cfg

    _config_keys: tuple = ()

    def get_state(self):
        """``{"iterations": int, slot name: [arrays]}`` for checkpoints."""
        return {"iterations": self.iterations,
                **{k: [a.copy() for a in v] for k, v in self.slots.items()}}

    def set_state(self, state):
        self.iterations = int(state["iterations"])
        for name in self._active_slots():
            self.slots[name] = [np.array(a) for a in state[name]]

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    ``m = momentum * m - lr * g``; ``w += m`` (or ``w += momentum * m - lr * g``
    with Nesterov); plain ``w -= lr * g`` without momentum.
    """

    _config_keys = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = float(check_number(momentum, "momentum", low=0.0, high=1.0))
        self.nesterov = bool(nesterov)

    def _active_slots(self):
        return ("momentums",) if self.momentum else ()

    def _update(self, params, grads, parts=None):
        lr = self.learning_rate
        if not self.momentum:
            for p, g in zip(params, grads):
                p -= lr * g
            return
        for p, g, m in zip(params, grads, self.slots["momentums"]):
            m *= self.momentum
            m -= lr * g
            if self.nesterov:
                p += self.momentum * m - lr * g
            else:
                p += m


class Adam(Optimizer):
    """Adam (Kingma and Ba), in Keras 3's form.

    ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``;
    ``m += (g - m)(1 - beta_1)``; ``v += (g**2 - v)(1 - beta_2)``;
    ``w -= alpha * m / (sqrt(v) + epsilon)`` (``v`` its running max with amsgrad).
    Each step is one compiled pass where the kernels serve a parameter array
    (``_jit.kernels_for``: a network's flat buffer past ``LOAD_SIZE``, or any in a
    fit that chose the kernels), else NumPy's twelve; the same bits either way.
    """

    _config_keys = ("beta_1", "beta_2", "epsilon", "amsgrad", "weight_decay")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, *, weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = float(check_number(beta_1, "beta_1", low=0.0, high=1.0, high_open=True))
        self.beta_2 = float(check_number(beta_2, "beta_2", low=0.0, high=1.0, high_open=True))
        self.epsilon = float(check_number(epsilon, "epsilon", low=0.0))
        self.amsgrad = bool(amsgrad)
        self._work = {}  # two scratch arrays a parameter array (not state: never saved)

    def _active_slots(self):
        return ("momentums", "velocities") + (("velocity_hats",) if self.amsgrad else ())

    def _update(self, params, grads, parts=None):
        t = self.iterations + 1
        # bias correction folded into the step size: a Python float (weak, like the betas
        # and epsilon): the arithmetic stays in the parameters' dtype
        alpha = self.learning_rate * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        hats = self.slots.get("velocity_hats", [None] * len(params))
        for i, (p, g, m, v, vh) in enumerate(zip(params, grads, self.slots["momentums"],
                                                 self.slots["velocities"], hats)):
            arrays = (p, g, m, v) if vh is None else (p, g, m, v, vh)
            kernels = kernels_for(p) if _one_flat_kind(arrays) else None
            if kernels is None:
                _adam_numpy(p, g, m, v, vh, 1 - self.beta_1, 1 - self.beta_2, alpha,
                            self.epsilon, *self._scratch(i, p))
                continue
            # one pass (m, v and p together) instead of twelve, the same bits; as one row:
            # never the parallel twin (there is none)
            one = p.dtype.type
            flat = [a.reshape(-1) for a in arrays[:4]]
            flat.append(np.empty(0, p.dtype) if vh is None else vh.reshape(-1))
            scalars = (one(1 - self.beta_1), one(1 - self.beta_2), one(alpha), one(self.epsilon))
            if parts is None or len(params) != 1:
                launch(kernels.adam_update, 1, p.size, *flat, *scalars)
                continue
            shards, ranges = parts  # each thread its slices: the rows of the weights it owns
            shards.run([functools.partial(_adam_slices, kernels, flat, mine, scalars)
                        for mine in ranges])

    def _scratch(self, i, p):
        """Two scratch arrays for parameter array ``i`` (the NumPy update's), kept across steps:
        a fresh pair each step cost more than the arithmetic (pages handed back to the OS
        and zeroed again)."""
        pair = self._work.get(i)
        if pair is None or pair[0].shape != p.shape or pair[0].dtype != p.dtype:
            pair = self._work[i] = (np.empty_like(p), np.empty_like(p))
        return pair


def _adam_slices(kernels, flat, slices, scalars):
    """Adam's compiled step over ``flat[i][a:b]`` for each ``(a, b)`` of ``slices``."""
    amsgrad = flat[4].size != 0
    for a, b in slices:
        launch(kernels.adam_update, 1, b - a, *(arr[a:b] for arr in flat[:4]),
               flat[4][a:b] if amsgrad else flat[4], *scalars)


def _one_flat_kind(arrays):
    """Whether the compiled Adam step can take ``arrays``: one shape and dtype, each
    C-contiguous (flattened as a view) and writeable (Numba types a read-only array apart)."""
    p = arrays[0]
    return all(isinstance(a, np.ndarray) and a.shape == p.shape and a.dtype == p.dtype
               and a.flags.c_contiguous and a.flags.writeable for a in arrays)


def _adam_numpy(p, g, m, v, v_hat, c1, c2, alpha, epsilon, tmp, denom):
    """Keras 3's Adam step in NumPy, in place, in ``p``'s dtype, ``tmp`` and ``denom`` scratch.

    ``m += (g - m) c1``; ``v += (g^2 - v) c2``; with amsgrad (``v_hat`` not
    None) ``v_hat = max(v_hat, v)`` is used for ``v``; ``p -= (m alpha) /
    (sqrt(v) + epsilon)``. The scalars are Python floats (weak: rounded to
    ``p``'s dtype) or scalars of that dtype, which give the same bits. The
    compiled step (``_model_kernels._adam_update``) does these operations in this
    order, and the kernels' fallback calls this.
    """
    np.subtract(g, m, out=tmp)
    tmp *= c1
    m += tmp
    np.multiply(g, g, out=tmp)
    tmp -= v
    tmp *= c2
    v += tmp
    if v_hat is not None:
        np.maximum(v_hat, v, out=v_hat)
        v = v_hat
    np.sqrt(v, out=denom)
    denom += epsilon
    np.multiply(m, alpha, out=tmp)
    tmp /= denom
    p -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3: ``w -= w * weight_decay * lr`` first)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                         weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop in Keras 3's form: ``w -= lr * g / sqrt(v + epsilon)``, ``v = rho v + (1-rho) g**2``."""

    _config_keys = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
        super().__init__(learning_rate)
        self.rho = float(check_number(rho, "rho", low=0.0, high=1.0))
        self.momentum = float(check_number(momentum, "momentum", low=0.0, high=1.0))
        self.epsilon = float(check_number(epsilon, "epsilon", low=0.0))
        self.centered = bool(centered)

    def _active_slots(self):
        return (("velocities",) + (("momentums",) if self.momentum else ())
                + (("average_gradients",) if self.centered else ()))

    def _update(self, params, grads, parts=None):
        n = len(params)
        moms = self.slots.get("momentums", [None] * n)
        avgs = self.slots.get("average_gradients", [None] * n)
        for p, g, v, m, a in zip(params, grads, self.slots["velocities"], moms, avgs):
            v *= self.rho
            v += (1 - self.rho) * g * g
            if a is not None:
                a *= self.rho
                a += (1 - self.rho) * g
                denominator = v - a * a + self.epsilon
            else:
                denominator = v + self.epsilon
            increment = self.learning_rate * g / np.sqrt(denominator)
            if m is not None:
                m *= self.momentum
                m += increment
                p -= m
            else:
                p -= increment


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(identifier, learning_rate=None):
    """An optimizer from an :class:`Optimizer` or its name ("adam", "sgd", "rmsprop", "adamw")."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        cls = OPTIMIZERS[identifier.lower()]
        return cls() if learning_rate is None else cls(learning_rate=learning_rate)
    raise ValueError(
        f"`optimizer` must be an Optimizer or one of {sorted(OPTIMIZERS)}; got {identifier!r}"
    )


def from_config(class_name, config):
    """Rebuild an optimizer from its class name and ``get_config`` output."""
    classes = {cls.__name__: cls for cls in OPTIMIZERS.values()}
    if class_name not in classes:
        raise ValueError(f"unknown optimizer {class_name!r}; expected one of {sorted(classes)}")
    return classes[class_name](**config)
