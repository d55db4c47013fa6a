"""``Sequential``: a Keras-style network in NumPy: its structure and inference.

Training (``fit``, ``evaluate``) is inherited from :class:`~._trainer.Trainer`
and the model file is written and read by ``_format.py``, as Keras splits
``Sequential`` from its ``Trainer`` and its saving code.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import losses as _losses
from .. import optimizers as _optimizers
from .._dask_adapter import is_dask_collection, map_rows
from .._random import make_rng
from .._softmax import sigmoid, softmax
from .._validation import (as_float_array, check_choice, check_inputs, check_number, describe,
                           user_stacklevel)
from ..layers._layers import Dense, Layer
from . import _format
from ._file_checks import SCALINGS as _SCALINGS
from ._metrics import resolve_metrics
from ._trainer import Trainer, TrainingDivergedError

__all__ = ["Sequential", "load_model", "TrainingDivergedError"]


class Sequential(Trainer):
    """A linear stack of layers, trained with a loss and an optimizer.

    Parameters
    ----------
    layers : list of Layer, optional
    name : str, optional
    seed : int, optional
        Seeds initial weights, shuffling and dropout; without it they come
        from the generator set by :func:`logitlab.set_random_seed`.
    dtype : {"float32", "float64"}, default="float32"
        Dtype of the weights and activations (Keras's default is float32).

    Examples
    --------
    The seeds' "preferred" model:

    >>> from logitlab import Sequential
    >>> from logitlab.layers import Dense
    >>> from logitlab import losses
    >>> from logitlab.optimizers import Adam
    >>> model = Sequential([Dense(25, activation="relu"), Dense(15, activation="relu"),
    ...                     Dense(4, activation="linear")], seed=0)
    >>> model.compile(loss=losses.get("sparse_categorical_crossentropy", from_logits=True),
    ...               optimizer=Adam(0.001))
    """

    def __init__(self, layers=None, name=None, seed=None, dtype="float32"):
        self.layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer)
        self.name = name or "sequential"
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_dim = None
        self.loss = None
        self.optimizer = None
        self.metrics = []
        self._metric_fns = []
        self.stop_training = False
        self.epoch = 0
        self.history = None
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"`dtype` must be 'float32' or 'float64'; got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.calibration = None
        self.thresholds = None

    # ---- construction -------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"`layer` must be a logitlab layer; got {describe(layer)}")
        self.layers.append(layer)

    @property
    def built(self):
        return self.input_dim is not None

    def build(self, input_dim):
        """Create the weights for inputs of ``input_dim`` features.

        All or nothing: an exception or an interrupt (Ctrl-C) part way leaves the model
        as it was, its random state included: an unbuilt model's next fit builds it whole
        with the weights an uninterrupted build gives; a built one's layers are bound to
        one buffer again. (A stranger's Ctrl-C in the first milliseconds of a first fit
        left a layer marked built with no weights, and every later fit failed with an
        IndexError.)
        """
        dim = int(input_dim)
        fresh, rng_state, was = [], self._rng.bit_generator.state, self.input_dim
        try:
            for layer in self.layers:
                if not layer.built:
                    fresh.append(layer)
                    layer.build(dim, self._rng, self.dtype)
                dim = layer.output_dim(dim)
            self.input_dim = int(input_dim)
            self._flatten_weights()
            if self.optimizer is not None:
                self.optimizer.build(self._flat_params)
        except BaseException:
            for layer in fresh:
                layer.built, layer.input_dim, layer.weights, layer.grads = False, None, [], []
            self._rng.bit_generator.state = rng_state
            self.input_dim = was
            if was is not None:  # some layers may hold views of a buffer half made
                self._flatten_weights()
            raise

    def __setstate__(self, state):
        """After pickle or deepcopy: the layers' weights were views into one flat buffer, and
        come back as arrays of their own; bind them into a buffer again, or the optimizer
        would update a buffer no layer reads (training that changed nothing, in silence)."""
        self.__dict__.update(state)
        if "_flat_params" in state:
            self._flatten_weights()

    def _flatten_weights(self):
        """Put every weight (and gradient) in one flat buffer; layers keep views into it.

        The optimizer then updates all parameters in a few vectorised
        operations per step instead of a few per array.
        """
        arrays = [w for layer in self.layers for w in layer.weights]
        total = sum(a.size for a in arrays)
        flat = np.empty(total, dtype=self.dtype)
        flat_grad = np.zeros(total, dtype=self.dtype)
        at = 0
        for layer in self.layers:
            views, gviews = [], []
            for w in layer.weights:
                flat[at:at + w.size] = w.ravel()
                views.append(flat[at:at + w.size].reshape(w.shape))
                gviews.append(flat_grad[at:at + w.size].reshape(w.shape))
                at += w.size
            layer.bind(views, gviews)
        self._flat_params, self._flat_grads = [flat], [flat_grad]

    def _ensure_built(self, x):
        if not self.built:
            self.build(x.shape[1])
        elif x.shape[1] != self.input_dim:
            raise ValueError(
                f"`x` has {x.shape[1]} features, but the model was built for {self.input_dim}"
            )

    @property
    def trainable_weights(self):
        return [w for layer in self.layers for w in layer.weights]

    @property
    def _grads(self):
        return [g for layer in self.layers for g in layer.grads]

    def get_weights(self):
        """``[W1, b1, W2, b2, ...]``, copies, Keras's order and shapes."""
        return [w.copy() for w in self.trainable_weights]

    def set_weights(self, weights):
        current = self.trainable_weights
        if not self.built:
            raise ValueError("the model has no weights yet: call build(input_dim), fit or predict")
        if len(weights) != len(current):
            raise ValueError(f"`weights` must be a list of {len(current)} arrays; got {len(weights)}")
        for i, (w, new) in enumerate(zip(current, weights)):
            new = np.asarray(new)
            if new.shape != w.shape:
                raise ValueError(f"`weights[{i}]` must have shape {w.shape}; got {new.shape}")
            w[...] = new

    def _output_dim(self):
        dim = self.input_dim
        for layer in self.layers:
            dim = layer.output_dim(dim)
        return dim

    def count_params(self):
        return sum(layer.count_params for layer in self.layers)

    # ---- compile ------------------------------------------------------------
    def compile(self, loss="sparse_categorical_crossentropy", optimizer="adam", metrics=None):
        """Set the loss (object or registered name), optimizer (object or name) and metrics."""
        self.loss = _losses.get(loss)
        self.optimizer = _optimizers.get(optimizer)
        self.metrics = list(metrics or [])
        self._metric_fns = resolve_metrics(self.metrics, self.loss)
        if self.built:
            self.optimizer.build(self._flat_params)

    # ---- forward / backward -------------------------------------------------
    def _forward(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def _backward(self, grad, overwrite_grad=False):
        """Back-propagate ``grad`` (the loss's gradient with respect to the outputs).

        No layer computes the gradient with respect to the model's input.
        ``overwrite_grad``: ``grad`` is the training loop's scratch (the fused
        loss's, written over the outputs); a Dense layer may then apply its
        activation's backward pass over it, and over the input gradient a
        Dense layer in the training loop writes into its own scratch array.
        """
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if isinstance(layer, Dense):
                grad = layer.backward(grad, need_input_grad=i > 0, overwrite_grad=overwrite_grad)
                overwrite_grad = True  # a fresh array, or the layer's own scratch
            else:
                grad = layer.backward(grad, need_input_grad=i > 0)
                overwrite_grad = False

    def __call__(self, x):
        return self.predict(x)

    def predict(self, x, batch_size=None, verbose=0):
        """Outputs of the last layer (logits for a linear output), shape (n_samples, units).

        On a Dask array the result is a lazy Dask array, computed chunk by chunk.
        """
        if is_dask_collection(x):
            if not self.built:
                raise ValueError("build or fit the model before predicting on a Dask array")
            return map_rows(self.predict, x, self._output_dim(), self.dtype)
        x = check_inputs(x, dtype=self.dtype)
        self._ensure_built(x)
        if batch_size is None or batch_size >= len(x):
            return self._forward(x)
        check_number(batch_size, "batch_size", low=1, integer=True)
        return np.concatenate([self._forward(x[i:i + batch_size])
                               for i in range(0, len(x), batch_size)])

    # ---- probabilities: calibration and multilabel thresholds ---------------
    def _output_kind(self, n_columns):
        """How the outputs become probabilities: ``"softmax"``, ``"sigmoid"`` or
        ``"proba"`` (the outputs already are: a loss with ``from_logits=False``)."""
        if self.loss is not None and not self.loss.from_logits:
            return "proba"
        if n_columns == 1 or (self.loss is not None and self.loss.target == "binary"):
            return "sigmoid"
        return "softmax"

    def calibrate(self, x_val, y_val, method="temperature", **params):
        """Fit a scaling of the logits on held-out data and keep it in the model.

        The scaling (:class:`~logitlab.calibration.TemperatureScaling`,
        :class:`~logitlab.calibration.VectorScaling` or
        :class:`~logitlab.calibration.MatrixScaling`) is fitted on
        ``self.predict(x_val)``; :meth:`predict` still returns the raw logits,
        :meth:`predict_proba` the calibrated probabilities, and :meth:`save`
        writes the scaling's parameters with the model.

        Parameters
        ----------
        x_val : array-like of shape (n_samples, n_features)
            Held-out inputs (not the training data: on those the model is sure
            and right, and the fitted scaling would sharpen it further).
        y_val : array-like of shape (n_samples,) or (n_samples, n_labels)
            Integer class labels (softmax outputs), 0/1 (one sigmoid output) or a
            0/1 indicator matrix (multilabel: a sigmoid per label, one
            temperature per label).
        method : {"temperature", "vector", "matrix"}, default="temperature"
        **params
            Passed to the scaling (``C`` for ``"matrix"``).

        Returns
        -------
        self

        Notes
        -----
        Thresholds set with :meth:`set_thresholds` were chosen on the
        probabilities before this calibration; they are dropped (with a warning).
        """
        from .. import calibration as _calibration  # SciPy's optimiser: loaded when used

        check_choice(method, tuple(_SCALINGS), "method")
        if self.built and self._output_kind(self._output_dim()) == "proba":
            raise ValueError(
                "calibrate needs a model whose outputs are logits; this model's loss has "
                "from_logits=False (its last layer outputs probabilities)")
        logits = self.predict(x_val)
        y = np.asarray(y_val)
        if logits.shape[1] > 1 and y.shape == logits.shape and (
                self.loss is None or self.loss.target != "binary"):
            raise ValueError(
                f"`y_val` has the shape of the outputs {logits.shape} but the model's outputs "
                "are softmax logits: pass integer class labels of shape (n_samples,)")
        if logits.shape[1] > 1 and y.ndim == 1 and self.loss is not None \
                and self.loss.target == "binary":
            raise ValueError(
                f"the model is multilabel (a sigmoid per output): `y_val` must be a 0/1 "
                f"indicator matrix of shape (n_samples, {logits.shape[1]}); got {describe(y)}")
        scaling = getattr(_calibration, _SCALINGS[method])(**params)
        scaling.fit(logits, y_val)
        if self.thresholds is not None:
            warnings.warn("the multilabel thresholds were set on uncalibrated probabilities; "
                          "they are dropped: set them again on predict_proba's output",
                          UserWarning, stacklevel=user_stacklevel())
            self.thresholds = None
        self.calibration = scaling
        return self

    def predict_proba(self, x, batch_size=None):
        """Probabilities: the softmax (or sigmoid, per output, for binary and multilabel
        models) of the logits, calibrated when :meth:`calibrate` was called.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_outputs), float64 when calibrated
        """
        logits = self.predict(x, batch_size=batch_size)
        if self.calibration is not None:
            return self.calibration.predict_proba(logits).reshape(len(logits), -1)
        kind = self._output_kind(logits.shape[1])
        if kind == "proba":
            return logits
        return sigmoid(logits) if kind == "sigmoid" else softmax(logits, axis=1)

    def set_thresholds(self, thresholds):
        """Per-output decision thresholds for :meth:`predict_labels` (multilabel models).

        Parameters
        ----------
        thresholds : MultilabelThresholds (fitted), array-like of shape (n_outputs,) or None
            On the scale of :meth:`predict_proba` (calibrated, if the model is): fit a
            :class:`~logitlab.calibration.MultilabelThresholds` on
            ``model.predict_proba(x_val)``. ``inf`` never predicts that label.
            ``None`` goes back to 0.5.

        Returns
        -------
        self
        """
        if thresholds is None:
            self.thresholds = None
            return self
        if hasattr(thresholds, "thresholds_"):
            values = thresholds.thresholds_
        elif hasattr(thresholds, "fit") and hasattr(thresholds, "metric"):
            raise ValueError("`thresholds` is a MultilabelThresholds that is not fitted yet: "
                             "fit it on model.predict_proba(x_val) first")
        else:
            values = thresholds
        t, _ = as_float_array(values, "thresholds")
        t = t.astype(np.float64)
        if not self.built:
            raise ValueError("build or fit the model before setting its thresholds")
        n = self._output_dim()
        if t.shape != (n,):
            raise ValueError(f"`thresholds` must hold one threshold per output, shape ({n},); "
                             f"got shape {t.shape}")
        if np.isnan(t).any() or (t == -np.inf).any():
            raise ValueError("`thresholds` must be numbers or +inf; got NaN or -inf")
        self.thresholds = t.copy()
        return self

    def predict_labels(self, x, batch_size=None):
        """0/1 decisions of a multilabel (or one-output binary) model:
        ``predict_proba(x) >= thresholds`` (0.5 where none were set).

        Returns
        -------
        labels : ndarray of int64, shape (n_samples, n_outputs)
        """
        proba = self.predict_proba(x, batch_size=batch_size)
        kind = self._output_kind(proba.shape[1]) if self.calibration is None \
            else ("softmax" if self.calibration.kind_ == "multiclass" else "sigmoid")
        if kind == "softmax":
            raise ValueError("predict_labels is for sigmoid outputs (binary or multilabel); "
                             "this model's outputs are a softmax: take np.argmax(predict(x), 1)")
        cut = 0.5 if self.thresholds is None else self.thresholds
        return (proba >= cut).astype(np.int64)

    def summary(self, print_fn=print):
        """Print the layers, their output shapes and parameter counts."""
        lines = [f'Model: "{self.name}"', f"{'Layer (type)':<28}{'Output Shape':<20}{'Param #':>10}"]
        dim = self.input_dim
        for i, layer in enumerate(self.layers):
            if dim is not None:
                dim = layer.output_dim(dim)
            shape = f"(None, {dim})" if dim is not None else "?"
            lines.append(f"{type(layer).__name__.lower() + f'_{i} (' + type(layer).__name__ + ')':<28}"
                         f"{shape:<20}{layer.count_params:>10}")
        lines.append(f"Total params: {self.count_params()}")
        text = "\n".join(lines)
        print_fn(text)
        return text

    # ---- saving (the file format: _format.py) -------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "seed": self.seed,
            "dtype": self.dtype.name,
            "input_dim": self.input_dim,
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                       for layer in self.layers],
        }

    def get_state(self):
        """``(config, arrays)``: everything :meth:`save` writes, JSON config plus arrays."""
        return _format.get_state(self)

    @classmethod
    def from_state(cls, config, arrays):
        """Rebuild a model from :meth:`get_state` output (names only, nothing run)."""
        return _format.from_state(cls, config, arrays)

    def save(self, path):
        """Write architecture, compile settings, weights, optimizer and training state.

        One file, written atomically; read back by :func:`load_model`.
        """
        _format.save(self, path)


def load_model(path):
    """Load a model written by :meth:`Sequential.save`.

    Nothing from the file is executed or unpickled; a damaged or foreign file
    raises :class:`~logitlab.ModelFileError`. A loss defined outside logitlab
    is found by its registered name: import its module first.
    """
    return _format.load(Sequential, path)
