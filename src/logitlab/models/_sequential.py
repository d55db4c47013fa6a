"""``Sequential``: a Keras-style network in NumPy, with compile / fit / predict / save."""

from __future__ import annotations

import math

import numpy as np

from .. import losses as _losses
from .. import optimizers as _optimizers
from .._dask_adapter import is_dask_collection, map_rows
from .._random import make_rng
from .._saving import ModelFileError, read_model_file, write_model_file
from .._validation import (
    DivergenceCheck,
    TrainingDivergedError,
    check_integer_labels,
    check_number,
    describe,
    fit_sample_weight,
)
from ..losses._crossentropy import sparse_ce_logits_inplace
from ..callbacks._callbacks import Callback, History, ProgressLogger
from ..layers._layers import Dense, Layer, layer_from_config
from ..optimizers._optimizers import from_config as optimizer_from_config
from ._file_checks import check_state
from ._metrics import resolve_metrics

__all__ = ["Sequential", "load_model", "TrainingDivergedError"]

KIND = "Sequential"


def _as_inputs(x, name="x", dtype=np.float32):
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a 2-D array of numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be an array of numbers; got {describe(arr)}")
    if arr.ndim == 1:
        raise ValueError(
            f"`{name}` must be 2-D (n_samples, n_features); got shape {arr.shape}. "
            "Reshape a single feature with x.reshape(-1, 1)"
        )
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (n_samples, n_features); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` must have at least one sample and one feature; "
                         f"got shape {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` contains NaN or inf")
    return arr


def _is_chunk_source(x):
    """An iterable of (x, y) chunks, or a function returning one (not an array-like)."""
    if callable(x):
        return True
    if isinstance(x, np.ndarray) or not hasattr(x, "__iter__") or hasattr(x, "__array__"):
        return False
    first = next(iter(x), None) if not (iter(x) is x) else None
    if isinstance(x, (list, tuple)):
        return isinstance(first, tuple) and len(first) == 2
    return True


class Sequential:
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
    >>> from logitlab.losses import SparseCategoricalCrossentropy
    >>> from logitlab.optimizers import Adam
    >>> model = Sequential([Dense(25, activation="relu"), Dense(15, activation="relu"),
    ...                     Dense(4, activation="linear")], seed=0)
    >>> model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=Adam(0.001))
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

    # ---- construction -------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"`layer` must be a logitlab layer; got {describe(layer)}")
        self.layers.append(layer)

    @property
    def built(self):
        return self.input_dim is not None

    def build(self, input_dim):
        """Create the weights for inputs of ``input_dim`` features."""
        dim = int(input_dim)
        for layer in self.layers:
            if not layer.built:
                layer.build(dim, self._rng, self.dtype)
            dim = layer.output_dim(dim)
        self.input_dim = int(input_dim)
        self._flatten_weights()
        if self.optimizer is not None:
            self.optimizer.build(self._flat_params)

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
        """Set the loss (object or name), optimizer (object or name) and metrics."""
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

    def _backward(self, grad):
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, need_input_grad=i > 0)

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
        x = _as_inputs(x, dtype=self.dtype)
        self._ensure_built(x)
        if batch_size is None or batch_size >= len(x):
            return self._forward(x)
        check_number(batch_size, "batch_size", low=1, integer=True)
        return np.concatenate([self._forward(x[i:i + batch_size])
                               for i in range(0, len(x), batch_size)])

    # ---- training -----------------------------------------------------------
    def _check_targets(self, y, n, name="y"):
        try:
            arr = np.asarray(y)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`{name}` must be a rectangular array of targets: {exc}") from None
        if arr.ndim == 0:
            raise ValueError(f"`{name}` must hold one target per sample; got a scalar")
        if len(arr) != n:
            raise ValueError(f"`x` and `{name}` must have the same number of samples; "
                             f"got {n} and {len(arr)}")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must hold numbers; got {describe(arr)}")
        if isinstance(self.loss, _losses.SparseCategoricalCrossentropy):
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise ValueError(
                    f"`{name}` must be 1-D integer labels for SparseCategoricalCrossentropy; "
                    f"got shape {arr.shape} (use CategoricalCrossentropy for one-hot targets)"
                )
            if self.layers and isinstance(self.layers[-1], Dense):
                arr = check_integer_labels(arr, name, self.layers[-1].units)
        elif not np.isfinite(arr).all():
            raise ValueError(f"`{name}` contains NaN or inf")
        return arr

    def _fused_loss(self):
        """The lean loss for the common case, or None.

        Sparse cross-entropy from logits with default settings, labels already
        validated by ``fit``: one pass in the model's dtype, the gradient
        ``(softmax - onehot) / n`` written in place of the exponentials.
        """
        loss = self.loss
        plain = (type(loss) is _losses.SparseCategoricalCrossentropy and loss.from_logits
                 and loss.axis in (-1, 1) and loss.ignore_index is None
                 and loss.label_smoothing == 0 and loss.class_weight is None
                 and loss.reduction == "mean"
                 and not any(getattr(layer, "kernel_regularizer", None) for layer in self.layers)
                 # the output is overwritten with the gradient: only a linear last layer
                 # keeps nothing its backward pass needs in it
                 and isinstance(self.layers[-1], Dense)
                 and self.layers[-1].activation.name == "linear")
        if not plain:
            return None

        def fused(y, z):
            # z is this batch's fresh output: the lean core path may overwrite it
            n = len(z)
            return sparse_ce_logits_inplace(z, y, scale=1.0 / n) / n, z
        return fused

    def _batch_loss(self, yb, out, swb):
        value, grad = self.loss.value_and_grad(yb, out, sample_weight=swb)
        reg = sum(layer.regularization_loss() for layer in self.layers)
        return float(value) + reg, grad

    def fit(self, x, y=None, batch_size=32, epochs=1, verbose=1, validation_split=0.0,
            validation_data=None, shuffle=True, callbacks=None, class_weight=None,
            sample_weight=None, initial_epoch=0):
        """Train for ``epochs`` epochs; returns a :class:`~logitlab.callbacks.History`.

        ``x`` is an array (n_samples, n_features) with targets ``y``; or, with
        ``y=None``, a source of ``(x_chunk, y_chunk)`` pairs for out-of-core
        training: a list, any re-iterable (e.g. the blocks of a Dask array),
        or a function returning a fresh iterator each epoch (a one-shot
        iterator serves one epoch only). Each chunk is shuffled and batched.

        ``history.history["loss"]`` holds, per epoch, the mean of the batch
        losses weighted by batch size (Keras 3's running mean), plus each
        metric and their ``val_`` versions. ``verbose=1`` shows an
        ``Epoch i/n`` line and a progress bar, 2 one line per epoch, 0 nothing.
        ``sample_weight`` (one finite, non-negative weight per sample) and
        ``class_weight`` (a dict of class index to weight, a sequence of one
        weight per class, or ``"balanced"``: scikit-learn's
        ``n_samples / (n_classes * bincount(y))``) multiply each sample's loss.
        A NaN or inf loss or gradient, or a loss a million times its first
        (:class:`~logitlab._validation.DivergenceCheck`), raises
        :class:`TrainingDivergedError` and leaves the weights the step started from.
        """
        if self.loss is None:
            raise ValueError("call compile(loss=..., optimizer=...) before fit")
        batch_size = int(check_number(batch_size, "batch_size", low=1, integer=True))
        epochs = int(check_number(epochs, "epochs", low=0, integer=True))
        initial_epoch = int(check_number(initial_epoch, "initial_epoch", low=0, integer=True))
        check_number(validation_split, "validation_split", low=0.0, high=1.0, high_open=True)
        if verbose not in (0, 1, 2, True, False):
            raise ValueError(f"`verbose` must be 0, 1 or 2; got {verbose!r}")
        if y is None and _is_chunk_source(x):
            if validation_split or class_weight is not None or sample_weight is not None:
                raise ValueError("with a source of (x, y) chunks, use validation_data; "
                                 "validation_split, class_weight and sample_weight need arrays")
            batches = self._chunk_batches(x, epochs - initial_epoch, shuffle, batch_size)
            return self._train(batches, None, batch_size, epochs, verbose, validation_data,
                               callbacks, initial_epoch)
        if y is None:
            raise ValueError("`y` is required when `x` is an array (or pass an iterable of "
                             "(x, y) chunks as `x`)")
        x = _as_inputs(x, dtype=self.dtype)
        y = self._check_targets(y, len(x))
        self._ensure_built(x)
        sw = fit_sample_weight(len(x), sample_weight, class_weight, y,
                               max(self._output_dim(), 2))
        if validation_data is None and validation_split:
            cut = int(len(x) * (1.0 - validation_split))
            validation_data = (x[cut:], y[cut:])
            x, y = x[:cut], y[:cut]
            sw = None if sw is None else sw[:cut]
        n = len(x)

        def batches():
            order = self._rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                yield x[idx], y[idx], None if sw is None else sw[idx]

        return self._train(batches, math.ceil(n / batch_size), batch_size, epochs, verbose,
                           validation_data, callbacks, initial_epoch)

    def _chunk_batches(self, source, n_epochs, shuffle, batch_size):
        """A function giving, per epoch, the batches of every (x, y) chunk of ``source``."""
        one_shot = iter(source) is source if not callable(source) else False
        if one_shot and n_epochs > 1:
            raise ValueError("`x` is a one-shot iterator but fit runs several epochs: pass a "
                             "list, a re-iterable, or a function returning an iterator")

        def batches():
            chunks = source() if callable(source) else source
            for i, pair in enumerate(chunks):
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise ValueError(f"chunk {i} of `x` must be an (x, y) pair; "
                                     f"got {describe(pair)}")
                xc = np.asarray(pair[0].compute() if hasattr(pair[0], "compute") else pair[0])
                yc = np.asarray(pair[1].compute() if hasattr(pair[1], "compute") else pair[1])
                xc = _as_inputs(xc, f"chunk {i} x", self.dtype)
                yc = self._check_targets(yc, len(xc), f"chunk {i} y")
                self._ensure_built(xc)
                order = self._rng.permutation(len(xc)) if shuffle else np.arange(len(xc))
                for start in range(0, len(xc), batch_size):
                    idx = order[start:start + batch_size]
                    yield xc[idx], yc[idx], None
        return batches

    def _train(self, batches, steps, batch_size, epochs, verbose, validation_data, callbacks,
               initial_epoch):
        """The training loop shared by arrays (``steps`` known) and chunk sources (None).

        ``batches()`` yields one epoch's ``(x, y, sample_weight)`` batches.
        """
        if validation_data is not None:
            vx = _as_inputs(validation_data[0], "validation_data[0]", self.dtype)
            vy = self._check_targets(validation_data[1], len(vx), "validation_data[1]")
        if self.built and not self.optimizer.slots and self.trainable_weights:
            self.optimizer.build(self._flat_params)

        history = History()
        cbs: list[Callback] = [history]
        if verbose:
            cbs.append(ProgressLogger(int(verbose), epochs, steps))
        for cb in callbacks or []:
            if not isinstance(cb, Callback):
                raise TypeError(f"`callbacks` must hold Callback objects; got {describe(cb)}")
            cbs.append(cb)
        for cb in cbs:
            cb.set_model(self)
            cb.on_train_begin()
        self.stop_training = False
        names = ["loss"] + [name for name, _ in self._metric_fns]
        fused = self._fused_loss()
        watch = DivergenceCheck(self.optimizer.learning_rate)

        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            sums = np.zeros(len(names))
            seen = 0
            logs = {}
            for step, (xb, yb, swb) in enumerate(batches()):
                if step == 0 and not self.optimizer.slots and self.trainable_weights:
                    self.optimizer.build(self._flat_params)
                # overflow is checked for explicitly below, so NumPy need not warn
                with np.errstate(over="ignore", invalid="ignore"):
                    out = self._forward(xb, training=True)
                    # metrics first: the fused loss overwrites the outputs with the gradient
                    metric_values = [fn(yb, out, self.loss) for _, fn in self._metric_fns]
                    value, g = (fused(yb, out) if fused is not None and swb is None
                                else self._batch_loss(yb, out, swb))
                    watch.loss(value, epoch, step)
                    self._backward(g)
                watch.gradient(np.isfinite(self._flat_grads[0]).all(), epoch, step)
                self.optimizer.apply(self._flat_params, self._flat_grads)
                m = len(xb)
                sums[0] += value * m
                for j, v in enumerate(metric_values, 1):
                    sums[j] += v * m
                seen += m
                logs = dict(zip(names, sums / seen))
                for cb in cbs:
                    cb.on_batch_end(step, logs)
            if validation_data is not None:
                vals = self._evaluate_arrays(vx, vy, batch_size)
                logs.update({f"val_{k}": v for k, v in zip(names, vals)})
            self.epoch = epoch + 1
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        self.history = history
        return history

    def _evaluate_arrays(self, x, y, batch_size):
        names = 1 + len(self._metric_fns)
        sums = np.zeros(names)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            out = self._forward(xb)
            sums[0] += self._batch_loss(yb, out, None)[0] * len(xb)
            for j, (_, fn) in enumerate(self._metric_fns, 1):
                sums[j] += fn(yb, out, self.loss) * len(xb)
        return sums / max(len(x), 1)

    def evaluate(self, x, y, batch_size=32, verbose=0, return_dict=False):
        """The loss (and metrics) on ``(x, y)``, averaged over samples as Keras does."""
        if self.loss is None:
            raise ValueError("call compile(loss=..., optimizer=...) before evaluate")
        x = _as_inputs(x, dtype=self.dtype)
        y = self._check_targets(y, len(x))
        self._ensure_built(x)
        batch_size = int(check_number(batch_size, "batch_size", low=1, integer=True))
        vals = self._evaluate_arrays(x, y, batch_size)
        names = ["loss"] + [name for name, _ in self._metric_fns]
        if return_dict:
            return {k: float(v) for k, v in zip(names, vals)}
        return float(vals[0]) if len(vals) == 1 else [float(v) for v in vals]

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

    # ---- saving -------------------------------------------------------------
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
        config = self.get_config()
        arrays = {f"w{i}": w for i, w in enumerate(self.trainable_weights)}
        if self.loss is not None:
            config["compile"] = {
                "loss": {"class_name": type(self.loss).__name__, "config": self.loss.get_config()},
                "optimizer": {"class_name": type(self.optimizer).__name__,
                              "config": self.optimizer.get_config()},
                "metrics": [m for m in self.metrics if isinstance(m, str)],
            }
            state = self.optimizer.get_state()
            config["optimizer_state"] = {"iterations": state.pop("iterations"),
                                         "slots": {k: len(v) for k, v in state.items()}}
            for k, v in state.items():
                for i, a in enumerate(v):
                    arrays[f"opt/{k}/{i}"] = a
        config["training"] = {"epoch": self.epoch,
                              "rng_state": _jsonable_rng(self._rng.bit_generator.state)}
        return config, arrays

    def save(self, path):
        """Write architecture, compile settings, weights, optimizer and training state.

        One file, written atomically; read back by :func:`load_model`.
        """
        config, arrays = self.get_state()
        write_model_file(path, KIND, config, arrays)


def _jsonable_rng(state):
    return {k: (_jsonable_rng(v) if isinstance(v, dict) else int(v) if isinstance(v, (int, np.integer)) else v)
            for k, v in state.items()}


def load_model(path):
    """Load a model written by :meth:`Sequential.save`.

    Nothing from the file is executed or unpickled; a damaged or foreign file
    raises :class:`~logitlab.ModelFileError`.
    """
    _, config, arrays = read_model_file(path, kinds={KIND})
    try:
        return Sequential.from_state(config, arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{path!r}: {exc}") from None
    except Exception as exc:  # a well-formed archive whose contents do not fit together
        raise ModelFileError(f"{path!r}: inconsistent model contents: {type(exc).__name__}: {exc}") \
            from None


def _from_state(config, arrays):
    """Rebuild a model from :meth:`Sequential.get_state` output (names only, nothing run).

    The contents are checked against each other first (:func:`check_state`), so
    nothing is built that the file's own arrays do not fill.
    """
    check_state(config, arrays)
    model = Sequential(
        [layer_from_config(spec["class_name"], spec["config"]) for spec in config["layers"]],
        name=config.get("name"), seed=config.get("seed"), dtype=config.get("dtype", "float32"))
    if config.get("input_dim") is not None:
        model.build(int(config["input_dim"]))
        model.set_weights([arrays[f"w{i}"] for i in range(len(model.trainable_weights))])
    comp = config.get("compile")
    if comp:
        loss_cls = {c.__name__: c for c in (_losses.SparseCategoricalCrossentropy,
                                             _losses.CategoricalCrossentropy,
                                             _losses.BinaryCrossentropy)}
        name = comp["loss"]["class_name"]
        if name not in loss_cls:
            raise ModelFileError(f"unknown loss {name!r}")
        model.compile(loss=loss_cls[name](**comp["loss"]["config"]),
                      optimizer=optimizer_from_config(comp["optimizer"]["class_name"],
                                                      comp["optimizer"]["config"]),
                      metrics=comp.get("metrics"))
        ostate = config.get("optimizer_state")
        if ostate and model.built:
            state = {"iterations": ostate["iterations"]}
            for k, count in ostate["slots"].items():
                state[k] = [arrays[f"opt/{k}/{i}"] for i in range(int(count))]
            model.optimizer.set_state(state)
    training = config.get("training") or {}
    model.epoch = int(training.get("epoch", 0))
    if "rng_state" in training:
        model._rng.bit_generator.state = training["rng_state"]
    return model


Sequential.from_state = staticmethod(_from_state)
