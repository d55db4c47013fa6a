"""Training callbacks: History, EarlyStopping, ModelCheckpoint, and the progress display."""

from __future__ import annotations

import math
import time


from .._validation import check_choice, check_number

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "ProgressLogger"]


class Callback:
    """Base class: override any of the hooks; ``self.model`` is set by ``fit``."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records the epoch logs: ``history.history["loss"]`` and friends."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights=True`` the model ends with the weights of its
    best epoch, whether it stopped early or ran all its epochs (Keras 3).
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        self.monitor = monitor
        self.patience = int(check_number(patience, "patience", low=0, integer=True))
        self.min_delta = abs(float(check_number(min_delta, "min_delta")))
        check_choice(mode, ("auto", "min", "max"), "mode")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.sign = 1.0 if mode == "min" else -1.0
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.best = math.inf
        self.wait = 0
        self.best_weights = None
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which fit does not report; "
                f"available: {sorted(logs or {})}"
            )
        value = self.sign * float(logs[self.monitor])
        if value < self.best - self.min_delta:
            self.best, self.wait, self.best_epoch = value, 0, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (weights, optimizer state, epoch, shuffling state) after epochs.

    ``filepath`` may use ``{epoch}`` and the logged values, e.g.
    ``"ckpt-{epoch:02d}.logitlab"``. Files are written atomically. Load one
    with :func:`logitlab.load_model` and call ``fit(..., initial_epoch=k)``
    to continue exactly where it stopped.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto"):
        self.filepath = str(filepath)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        check_choice(mode, ("auto", "min", "max"), "mode")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(
                    f"ModelCheckpoint monitors {self.monitor!r}, which fit does not report; "
                    f"available: {sorted(logs)}"
                )
            value = self.sign * float(logs[self.monitor])
            if not value < self.best:
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        self.model.save(path)


def _format_logs(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressLogger(Callback):
    """Keras-style progress: an ``Epoch i/n`` line, a live Rich bar, a line per epoch.

    ``verbose=1``: each finished epoch prints ``Epoch i/n`` and a line with
    steps, time per step and the running metrics. In a terminal, an epoch
    that runs longer than ``LIVE_AFTER`` seconds also gets a live Rich bar
    (a :class:`rich.live.Live` of a text line over a
    :class:`rich.progress_bar.ProgressBar`, redrawn at most every 0.1 s,
    removed when the epoch ends), so short epochs pay for one printed line
    and long ones for a display start that is small beside them (see
    docs/performance.md). ``verbose=2`` prints one line per epoch; 0 nothing.
    """

    BAR = 30
    LIVE_AFTER = 0.25
    REFRESH = 0.1

    def __init__(self, verbose, epochs, steps, console=None):
        self.verbose = verbose
        self.epochs = epochs
        self.steps = steps
        self.console = console
        self._live = None

    def on_train_begin(self, logs=None):
        if self.verbose and self.console is None:
            from rich.console import Console

            self.console = Console()
        self._interactive = self.verbose == 1 and self.console.is_terminal

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._done = 0
        self._epoch = epoch

    def _info(self, done, logs):
        elapsed = time.perf_counter() - self._t0
        per_step = elapsed / max(done, 1)
        unit = f"{per_step * 1e3:.0f}ms" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us"
        text = f"{elapsed:.0f}s {unit}/step"
        return f"{text} - {_format_logs(logs)}" if logs else text

    def _show(self, done, logs):
        from rich.console import Group
        from rich.text import Text

        if self._live is None:
            from rich.live import Live
            from rich.progress_bar import ProgressBar

            self._bar = ProgressBar(total=self.steps, completed=0, width=self.BAR)
            self._live = Live(Text(""), console=self.console, auto_refresh=False, transient=True)
            self._live.start()
        total = self.steps if self.steps is not None else "?"
        self._bar.update(done, self.steps)
        self._live.update(Group(Text(f"Epoch {self._epoch + 1}/{self.epochs} {done}/{total} "
                                     f"{self._info(done, logs)}"), self._bar), refresh=True)

    def on_batch_end(self, batch, logs=None):
        self._done = batch + 1
        if not self._interactive:
            return
        now = time.perf_counter()
        if now - self._last >= self.REFRESH and now - self._t0 >= self.LIVE_AFTER:
            self._last = now
            self._show(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.verbose == 1:
            total = self.steps or self._done
            self.console.file.write(
                f"Epoch {epoch + 1}/{self.epochs}\n"
                f"{total}/{total} {'━' * self.BAR} {self._info(self._done, logs)}\n")
        elif self.verbose == 2:
            elapsed = time.perf_counter() - self._t0
            self.console.file.write(
                f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.0f}s - {_format_logs(logs)}\n")

    def on_train_end(self, logs=None):
        if self._live is not None:
            self._live.stop()
            self._live = None
