"""The training half of :class:`~logitlab.Sequential`: ``fit``, ``evaluate`` and their loop.

Keras splits its ``Trainer`` from the model's structure the same way:
:class:`Trainer` holds the loop and asks its model only for ``_forward``,
``_backward``, the flat weight buffers and the layers, and its loss only for
the loss protocol (``check_targets``, ``value_and_grad``,
``inplace_value_and_grad``; see ``losses/_base.py``).
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

from .. import _jit
from .._validation import (
    DivergenceCheck,
    TrainingDivergedError,
    check_inputs,
    check_number,
    check_weights,
    describe,
    fit_sample_weight,
)
from ..callbacks._callbacks import Callback, History, ProgressLogger
from ..layers._layers import Dense
from ._shards import MIN_ROWS, SHARD_PRODUCT, Shards, row_blocks

__all__ = ["Trainer", "TrainingDivergedError"]

# below this many multiply-adds in every product of a step, the loop holds BLAS to one thread
# (OpenBLAS's own cut-off, 4 x 65536, sends products just above it to both cores)
SMALL_PRODUCT = 1 << 20


def _splits_its_step(optimizer):
    """Whether ``optimizer`` takes ``apply(..., parts=)``: the library's own ``apply`` and
    ``_update`` (a subclass that overrides either keeps its two-argument form)."""
    from ..optimizers._optimizers import Optimizer

    cls = type(optimizer)
    return (cls.apply is Optimizer.apply and "parts" in
            cls._update.__code__.co_varnames[:cls._update.__code__.co_argcount])


def _gaps(ranges, size):
    """The slices of ``range(size)`` that the sorted, disjoint ``ranges`` leave out."""
    at, gaps = 0, []
    for a, b in ranges:
        if a > at:
            gaps.append((at, a))
        at = b
    if at < size:
        gaps.append((at, size))
    return gaps


def _blas_threads():
    """The BLAS's thread count now (a caller's threadpoolctl limit included)."""
    return max([info["num_threads"] for info in _blas_controller().info()
                if info["user_api"] == "blas"] or [1])


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS, made once (scanning the libraries costs ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _prefetched(batches, shards):
    """``batches``' items, each next one made by a worker while the step runs (or here)."""
    it = iter(batches)
    item = next(it, None)
    while item is not None:
        shards.prefetch(lambda: next(it, None))
        yield item
        item = shards.collect()


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



class Trainer:
    """``fit`` and ``evaluate`` for a model with layers, a loss and an optimizer."""

    _shard_parts = None  # while the steps run on several threads: Optimizer.apply's parts
    _sharded = ()  # and the Dense layers split by rows

    def _check_targets(self, y, n, name="y"):
        """Targets checked as the loss's target kind asks (``loss.check_targets``)."""
        try:
            count = len(y)
        except TypeError:
            count = None  # a scalar: the loss's check names it
        if count is not None and count != n:
            raise ValueError(f"`x` and `{name}` must have the same number of samples; "
                             f"got {n} and {count}")
        last = self.layers[-1] if self.layers else None
        n_outputs = last.units if isinstance(last, Dense) else None
        return self.loss.check_targets(y, n_outputs, name)

    def _fused_loss(self):
        """The loss's lean in-place path (``loss.inplace_value_and_grad()``), or None.

        Only where the model can give up its output: it is overwritten with
        the gradient, so the last layer must be a linear Dense (its backward
        pass keeps nothing in it) and no regulariser may read it.
        """
        if (any(getattr(layer, "kernel_regularizer", None) for layer in self.layers)
                or not isinstance(self.layers[-1], Dense)
                or self.layers[-1].activation.name != "linear"):
            return None
        return self.loss.inplace_value_and_grad()

    def _steps(self, batches, batch_size, prefetch=False):
        """``batches`` (one epoch's), with what the training steps use while they run.

        Scratch: each Dense layer writes its outputs and its input gradient into
        arrays it keeps from step to step (dropped when the epoch's batches end,
        or when the loop leaves early: an exception or a ``break`` closes this
        generator). Threads: where every product of a step is small (fewer than
        ``SMALL_PRODUCT`` multiply-adds), one BLAS thread: waking a second costs
        more than it saves there. A Dense layer large enough for the BLAS's T
        threads (``models/_shards.py``) is split by kernel rows instead, T threads
        of one BLAS thread each, each owning its rows' products, gradient and
        Adam update. Other large products keep the BLAS's own choice (all cores,
        or what the caller set with threadpoolctl). The choice depends on the
        sizes and T only, never on a timing: the result bits depend on the thread
        count, and a fit must give the same weights every time. With ``prefetch``
        (``batches`` keeps a batch valid while it makes the next) and split steps, the
        first worker makes the next batch once its part of the step's first product is
        done, while this thread goes on with the parts no other thread shares
        (``Shards.prefetch``).
        """
        dense = [layer for layer in self.layers if isinstance(layer, Dense)]
        largest, dim, sharded = 0, self.input_dim or 0, []
        # a chunk source builds the model at its first chunk: nothing split before then
        threads = _blas_threads() if getattr(self, "_flat_params", None) else 1
        for layer in self.layers:
            out_dim = layer.output_dim(dim)
            if isinstance(layer, Dense):
                largest = max(largest, batch_size * dim * out_dim)
                if (threads > 1 and batch_size * dim * out_dim >= threads * SHARD_PRODUCT
                        and dim >= threads * MIN_ROWS):
                    sharded.append(layer)
            dim = out_dim
        # the large layers by rows, one BLAS thread each (models/_shards.py); else BLAS's
        # own threads, or one where every product is small
        one_thread = sharded or 0 < largest < SMALL_PRODUCT
        limit = (_blas_controller().limit(limits=1, user_api="blas") if one_thread
                 else contextlib.nullcontext())
        shards = None
        try:  # from here on, whatever stops the epoch (an interrupt too) ends the threads
            for layer in dense:
                layer._scratch = {}
            shards = Shards(threads) if sharded else None
            self._shard_parts = self._optimizer_parts(sharded, shards) if sharded else None
            if not _splits_its_step(self.optimizer):
                self._shard_parts = None  # the products split, the update on this thread
            self._sharded = sharded
            with limit:
                if shards is None or not prefetch:
                    yield from batches
                else:
                    yield from _prefetched(batches, shards)
        finally:
            for layer in dense:
                layer._scratch = layer._rows = layer._shards = None
            self._shard_parts, self._sharded = None, []
            if shards is not None:
                shards.close()

    def _optimizer_parts(self, sharded, shards):
        """Set each sharded layer's row ranges; ``(shards, ranges)`` for ``Optimizer.apply``:
        thread t >= 1 updates its rows of each sharded kernel (slices of the flat parameter
        buffer), thread 0 its own rows and everything else."""
        flat = self._flat_params[0]
        owned = [[] for _ in range(shards.parts)]
        for layer in sharded:
            layer._rows, layer._shards = row_blocks(layer.input_dim, shards.parts), shards
            start = (layer.kernel.__array_interface__["data"][0]
                     - flat.__array_interface__["data"][0]) // flat.itemsize
            for t, (lo, hi) in enumerate(layer._rows):
                owned[t].append((start + lo * layer.units, start + hi * layer.units))
        self._unsharded = _gaps(sorted(r for part in owned for r in part), flat.size)
        return shards, [_gaps(sorted(r for part in owned[1:] for r in part), flat.size)
                        ] + owned[1:]  # thread 0: its rows and everything else

    def _gradient_finite(self):
        """Whether the step's gradient is finite: the sharded kernels' rows as their threads
        found them (``Dense._grad_finite``: read where they lie), the rest here."""
        g = self._flat_grads[0]
        if not self._sharded:
            return np.isfinite(g).all()
        return (all(layer._grad_finite for layer in self._sharded)
                and all(np.isfinite(g[a:b]).all() for a, b in self._unsharded))

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
        ``n_samples / (n_classes * bincount(y))``) multiply each sample's loss;
        a batch's loss is then ``mean(w * loss)`` over its rows (Keras's
        reduction). ``validation_data`` is ``(x_val, y_val)`` or, as in Keras,
        ``(x_val, y_val, val_sample_weight)``: the weights then multiply each
        validation sample's loss in ``val_loss`` (metrics stay unweighted, as
        Keras's ``metrics``, not its ``weighted_metrics``).
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
        x = check_inputs(x, dtype=self.dtype)
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

        # the batches' rows gathered into two arrays in turn, step after step: a step is
        # done with its batch before the one after next is gathered (the next may be
        # gathered while a step runs: _steps's prefetch)
        xbufs = [np.empty((min(batch_size, n),) + x.shape[1:], dtype=x.dtype) for _ in range(2)]

        def batches():
            order = self._rng.permutation(n) if shuffle else np.arange(n)
            for k, start in enumerate(range(0, n, batch_size)):
                idx = order[start:start + batch_size]
                # mode="clip": no bounds check to buffer for (idx is a permutation's slice)
                xb = x.take(idx, axis=0, out=xbufs[k % 2][:len(idx)], mode="clip")
                yield xb, y[idx], None if sw is None else sw[idx]

        # the kernels or the reference for every batch, by the run's sizes alone: never by
        # what else the process did (a resumed run repeats the straight one bit for bit)
        with _jit.fit_mode(max(n * self._output_dim(), self.count_params())):
            return self._train(batches, math.ceil(n / batch_size), batch_size, epochs, verbose,
                               validation_data, callbacks, initial_epoch, prefetch=True)

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
                xc = check_inputs(xc, f"chunk {i} x", self.dtype)
                yc = self._check_targets(yc, len(xc), f"chunk {i} y")
                self._ensure_built(xc)
                order = self._rng.permutation(len(xc)) if shuffle else np.arange(len(xc))
                for start in range(0, len(xc), batch_size):
                    idx = order[start:start + batch_size]
                    yield xc[idx], yc[idx], None
        return batches

    def _train(self, batches, steps, batch_size, epochs, verbose, validation_data, callbacks,
               initial_epoch, prefetch=False):
        """The training loop shared by arrays (``steps`` known) and chunk sources (None).

        ``batches()`` yields one epoch's ``(x, y, sample_weight)`` batches; with ``prefetch``,
        a batch stays valid while the next is made (see ``_steps``).
        """
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("`validation_data` must be (x_val, y_val) or (x_val, y_val, "
                                 f"val_sample_weight); got {describe(validation_data)}")
            vx = check_inputs(validation_data[0], "validation_data[0]", self.dtype)
            vy = self._check_targets(validation_data[1], len(vx), "validation_data[1]")
            vw = None
            if len(validation_data) == 3 and validation_data[2] is not None:
                vw = check_weights(validation_data[2], "validation_data[2]", shape=(len(vx),))
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
            for step, (xb, yb, swb) in enumerate(self._steps(batches(), batch_size, prefetch)):
                if step == 0 and not self.optimizer.slots and self.trainable_weights:
                    self.optimizer.build(self._flat_params)
                # overflow is checked for explicitly below, so NumPy need not warn
                with np.errstate(over="ignore", invalid="ignore"):
                    out = self._forward(xb, training=True)
                    # metrics first: the fused loss overwrites the outputs with the gradient
                    metric_values = [fn(yb, out, self.loss) for _, fn in self._metric_fns]
                    lean = fused is not None and swb is None
                    value, g = fused(yb, out) if lean else self._batch_loss(yb, out, swb)
                    watch.loss(value, epoch, step)
                    self._backward(g, overwrite_grad=lean)  # the lean loss's g is the outputs
                watch.gradient(self._gradient_finite(), epoch, step)
                if self._shard_parts is None:  # a user's Optimizer.apply(params, grads) too
                    self.optimizer.apply(self._flat_params, self._flat_grads)
                else:
                    self.optimizer.apply(self._flat_params, self._flat_grads,
                                         parts=self._shard_parts)
                m = len(xb)
                sums[0] += value * m
                for j, v in enumerate(metric_values, 1):
                    sums[j] += v * m
                seen += m
                logs = dict(zip(names, sums / seen))
                for cb in cbs:
                    cb.on_batch_end(step, logs)
            if validation_data is not None:
                vals = self._evaluate_arrays(vx, vy, batch_size, vw)
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

    def _evaluate_arrays(self, x, y, batch_size, sample_weight=None):
        names = 1 + len(self._metric_fns)
        sums = np.zeros(names)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            swb = None if sample_weight is None else sample_weight[i:i + batch_size]
            out = self._forward(xb)
            sums[0] += self._batch_loss(yb, out, swb)[0] * len(xb)
            for j, (_, fn) in enumerate(self._metric_fns, 1):
                sums[j] += fn(yb, out, self.loss) * len(xb)
        return sums / max(len(x), 1)

    def evaluate(self, x, y, batch_size=32, verbose=0, return_dict=False, sample_weight=None):
        """The loss (and metrics) on ``(x, y)``, averaged over samples as Keras does.

        ``sample_weight`` (one finite, non-negative weight per sample) multiplies
        each sample's loss, ``mean(w * loss)`` as in ``fit``; metrics stay unweighted.
        """
        if self.loss is None:
            raise ValueError("call compile(loss=..., optimizer=...) before evaluate")
        x = check_inputs(x, dtype=self.dtype)
        y = self._check_targets(y, len(x))
        self._ensure_built(x)
        batch_size = int(check_number(batch_size, "batch_size", low=1, integer=True))
        sw = None if sample_weight is None else check_weights(sample_weight, "sample_weight",
                                                              shape=(len(x),))
        vals = self._evaluate_arrays(x, y, batch_size, sw)
        names = ["loss"] + [name for name, _ in self._metric_fns]
        if return_dict:
            return {k: float(v) for k, v in zip(names, vals)}
        return float(vals[0]) if len(vals) == 1 else [float(v) for v in vals]
