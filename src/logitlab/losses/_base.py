"""The loss protocol and its registry.

Every loss is one object that says what it needs; ``Sequential``, its
metrics, the model loader and :func:`get` use only this protocol and the
registry below, so a loss defined outside the package (a subclass of
:class:`Loss` implementing ``value_and_grad``) trains, saves and loads like
the built-in ones.

The protocol
------------
``target``
    The kind of ``y_true``: ``"sparse"`` (one integer label per row),
    ``"dense"`` (a distribution, or one-hot row, of ``y_pred``'s shape) or
    ``"binary"`` (one 0/1 target per output: binary and multilabel).
``default_metric``
    What ``metrics=["accuracy"]`` means for this loss:
    ``"sparse_categorical_accuracy"``, ``"categorical_accuracy"`` or
    ``"binary_accuracy"``; by default the one of its ``target`` kind.
``from_logits``
    Whether ``y_pred`` are logits (the binary accuracy's threshold is then 0).
``value_and_grad(y_true, y_pred, sample_weight=None, *, out=None)``
    The loss and its gradient with respect to ``y_pred``.
``get_config()`` / ``from_config(config)``
    The settings as JSON values, and back (for saving).
``inplace_value_and_grad()``, optional
    A function ``f(y, z) -> (value, grad)`` that ``Sequential.fit`` may call
    on validated targets and a fresh C-contiguous output ``z`` it may
    overwrite, or None (the default) when the loss has no such path.

Subclasses register themselves when they are defined, under their class
name and, if they set one, their snake_case ``name`` (Keras's
``register_keras_serializable`` does it by decorator; here defining the class
is enough). :func:`register_loss` registers under another name.
"""

from __future__ import annotations

import inspect

import numpy as np

from .._validation import check_integer_labels, describe

__all__ = ["Loss", "get", "register_loss", "TARGET_KINDS"]

#: The kinds of ``y_true`` a loss can declare, with their default metric.
TARGET_KINDS = {
    "sparse": "sparse_categorical_accuracy",
    "dense": "categorical_accuracy",
    "binary": "binary_accuracy",
}

_REGISTRY: dict[str, type] = {}


def _qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _register(cls, name):
    if not isinstance(name, str) or not name:
        raise TypeError(f"a loss's registered name must be a non-empty str; got {describe(name)}")
    held = _REGISTRY.get(name)
    # a class defined again (a notebook cell run twice, a module reloaded) replaces itself;
    # any other clash would make a saved file load as a different loss
    if held is not None and held is not cls and _qualified(held) != _qualified(cls):
        raise ValueError(
            f"the loss name {name!r} is already registered to {_qualified(held)}; "
            f"give {_qualified(cls)} another `name` (or register_loss(cls, name=...))"
        )
    _REGISTRY[name] = cls


def register_loss(cls=None, *, name=None):
    """Register a :class:`Loss` subclass under ``name`` (default: its class name).

    Usable as a decorator, with or without arguments. The registered name is
    what :meth:`Sequential.save` writes and :func:`load_model` looks up;
    subclasses are already registered under their class name when defined,
    so this is only needed for another name.
    """
    def deco(c):
        if not (isinstance(c, type) and issubclass(c, Loss)):
            raise TypeError(f"`cls` must be a subclass of logitlab.losses.Loss; got {describe(c)}")
        _register(c, name or c.__name__)
        if name:
            c._saved_name = name
        return c
    return deco if cls is None else deco(cls)


class Loss:
    """Base of every loss: settings, ``__call__`` and ``value_and_grad``.

    A subclass implements ``value_and_grad(y_true, y_pred, sample_weight=None,
    *, out=None)`` and sets ``target`` (``"sparse"``, ``"dense"`` or
    ``"binary"``); ``get_config`` defaults to the ``__init__`` arguments
    stored as attributes of the same name. Defining the subclass registers
    it, so a model compiled with it saves and loads by its name.

    Examples
    --------
    >>> import numpy as np
    >>> from logitlab.losses import Loss
    >>> class SquaredError(Loss):
    ...     target = "dense"
    ...     def value_and_grad(self, y_true, y_pred, sample_weight=None, *, out=None):
    ...         d = np.asarray(y_pred, float) - np.asarray(y_true, float)
    ...         return float(np.mean(np.sum(d * d, axis=-1))), 2 * d / len(d)
    >>> round(SquaredError()([[0.0, 1.0]], [[0.5, 0.5]]), 3)
    0.5
    """

    #: the kind of ``y_true``: "sparse", "dense" or "binary"
    target: str = "sparse"
    #: what metrics=["accuracy"] means; None: the target kind's accuracy
    default_metric: str | None = None
    #: whether ``y_pred`` are logits
    from_logits: bool = False
    #: snake_case alias in the registry (``losses.get("...")``), optional
    name: str | None = None
    #: settings saved by get_config; None: the ``__init__`` arguments
    _params: tuple | None = None
    _saved_name: str | None = None

    def __init_subclass__(cls, register=True, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.target not in TARGET_KINDS:
            raise ValueError(
                f"{cls.__qualname__}.target must be one of {sorted(TARGET_KINDS)}; "
                f"got {cls.target!r}"
            )
        cls._saved_name = None
        if register:
            _register(cls, cls.__name__)
            if "name" in cls.__dict__ and cls.name:
                _register(cls, cls.name)

    # ---- the protocol -----------------------------------------------------
    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, out=None):
        """The loss and its gradient with respect to ``y_pred`` (same shape)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement value_and_grad(y_true, y_pred, "
            "sample_weight=None, *, out=None)"
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss value (a scalar unless ``reduction="none"``)."""
        return self.value_and_grad(y_true, y_pred, sample_weight=sample_weight)[0]

    def metric(self):
        """The metric ``metrics=["accuracy"]`` stands for with this loss."""
        return self.default_metric or TARGET_KINDS[self.target]

    def inplace_value_and_grad(self):
        """A lean ``f(y, z) -> (value, grad)`` that may overwrite ``z``, or None."""
        return None

    def check_targets(self, y, n_outputs, name="y"):
        """``y`` validated for this loss's target kind (``n_outputs``: the model's width)."""
        return check_targets(self.target, y, n_outputs, name, loss_name=type(self).__name__)

    # ---- saving -----------------------------------------------------------
    def _param_names(self):
        if self._params is not None:
            return self._params
        sig = inspect.signature(type(self).__init__)
        return tuple(p for p in list(sig.parameters)[1:]
                     if sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                       inspect.Parameter.VAR_KEYWORD)
                     and hasattr(self, p))

    def get_config(self):
        """The settings, as plain Python values (for saving)."""
        cfg = {}
        for k in self._param_names():
            v = getattr(self, k)
            cfg[k] = v.tolist() if hasattr(v, "tolist") else v
        return cfg

    @classmethod
    def from_config(cls, config):
        """The loss from :meth:`get_config`'s output."""
        if not isinstance(config, dict):
            raise TypeError(f"a loss config must be a dict; got {describe(config)}")
        return cls(**config)

    @classmethod
    def registered_name(cls):
        """The name :func:`get` finds this class by, and the one saved files record."""
        return cls._saved_name or cls.__name__

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def check_targets(kind, y, n_outputs, name="y", loss_name="the loss"):
    """Targets for ``fit``/``evaluate`` checked against a loss's target kind."""
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a rectangular array of targets: {exc}") from None
    if arr.ndim == 0:
        raise ValueError(f"`{name}` must hold one target per sample; got a scalar")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must hold numbers; got {describe(arr)}")
    if kind == "sparse":
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(
                f"`{name}` must be 1-D integer labels for {loss_name}; got shape {arr.shape} "
                "(one-hot targets need a loss with target='dense', such as "
                "categorical_crossentropy)"
            )
        if n_outputs is not None:
            arr = check_integer_labels(arr, name, n_outputs)
    else:
        if not np.isfinite(arr).all():
            raise ValueError(f"`{name}` contains NaN or inf")
        if n_outputs == 1 and arr.ndim == 1:
            arr = arr[:, None]  # one target a sample for one output: Keras expands it too
        elif n_outputs is not None and arr.ndim <= 2 and arr.shape[1:] != (n_outputs,):
            hint = (" (integer class labels need a loss with target='sparse', such as "
                    "sparse_categorical_crossentropy)" if arr.ndim == 1 else "")
            raise ValueError(f"`{name}` must have shape (n_samples, {n_outputs}) for {loss_name}, "
                             f"one target per output of the model; got shape {arr.shape}{hint}")
    return arr


def _lookup(name):
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(
            f"`loss` must be a logitlab Loss or a registered loss name, one of "
            f"{sorted(_REGISTRY)}; got {name!r} (a loss defined outside logitlab is "
            "registered when its class is defined: import it first)"
        )
    return cls


def get(identifier, **config):
    """A loss object from a :class:`Loss`, a registered name, a class, or a saved spec.

    Parameters
    ----------
    identifier : Loss, str, Loss subclass or dict
        A loss (returned as is), a registered name (class name or
        snake_case name: ``"sparse_categorical_crossentropy"``), a subclass,
        or ``{"class_name": name, "config": {...}}`` as models save it.
    **config
        Settings for a loss made from a name or class,
        ``get("binary_crossentropy", from_logits=True)``.
    """
    if isinstance(identifier, Loss):
        if config:
            raise TypeError("settings go with a loss name or class, not a loss object")
        return identifier
    if isinstance(identifier, dict):
        if set(identifier) - {"class_name", "config"} or "class_name" not in identifier:
            raise ValueError("a loss spec must be {'class_name': name, 'config': {...}}; "
                             f"got the keys {sorted(identifier)}")
        cls = _lookup(identifier["class_name"])
        return cls.from_config({**(identifier.get("config") or {}), **config})
    if isinstance(identifier, str):
        return _lookup(identifier).from_config(config)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier.from_config(config)
    raise TypeError(f"`loss` must be a logitlab Loss or its name; got {describe(identifier)}")


def serialize(loss):
    """``{"class_name", "config"}``: how a model file records ``loss``.

    A loss whose class the registry does not give back under its name could
    be written but never read, so it is refused here, before any file is made.
    """
    name = type(loss).registered_name()
    if _REGISTRY.get(name) is not type(loss):
        raise ValueError(
            f"the loss {type(loss).__qualname__} is not registered under {name!r}, so a saved "
            "model could not be loaded: define it without register=False, or "
            "register_loss(cls, name=...)"
        )
    return {"class_name": name, "config": loss.get_config()}
