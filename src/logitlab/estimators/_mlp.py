"""``MLPClassifier``: the scikit-learn face of :class:`logitlab.Sequential`."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._checks import named_errors, validate
from .._dask_adapter import is_dask_collection
from .._softmax import log_sigmoid, log_softmax, sigmoid, softmax
from .._validation import check_some_weight, check_weights, describe
from ..callbacks import Callback, EarlyStopping
from ..layers import L2, Dense
from ..layers._activations import ACTIVATIONS
from .. import losses as _losses
from ..models import Sequential
from ..optimizers._optimizers import OPTIMIZERS

__all__ = ["MLPClassifier"]

_TOL = 1e-4  # the least improvement of the monitored loss that counts, as scikit-learn's tol


class MLPClassifier(ClassifierMixin, BaseEstimator):
    r"""A multilayer perceptron trained from logits, as a scikit-learn classifier.

    Hidden ``Dense`` layers, then a linear output layer: softmax
    cross-entropy from logits for multiclass ``y``, sigmoid binary
    cross-entropy for a 2-D 0/1 indicator matrix (multilabel).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(25, 15)
        The seeds' network.
    activation : str, default="relu"
        Activation of the hidden layers.
    optimizer : {"adam", "sgd", "rmsprop", "adamw"}, default="adam"
    learning_rate : float, default=0.001
    batch_size : int, default=32
    epochs : int, default=200
        The most epochs; training stops earlier when the training loss (or,
        with ``early_stopping``, the validation score) has not improved by
        1e-4 for ``n_iter_no_change`` epochs.
    alpha : float, default=0.0
        L2 penalty, scikit-learn's convention: ``alpha / (2 * batch_size) *
        ||W||^2`` added to each batch's mean loss.
    early_stopping : bool, default=False
        As scikit-learn's: hold out ``validation_fraction`` of the training
        data (``train_test_split``, stratified by class unless ``y`` is
        multilabel, seeded by ``random_state``; the held-out rows keep their
        ``sample_weight``), score it after every epoch (accuracy, weighted by
        ``sample_weight``: ``validation_scores_``), stop when the score has not
        improved by 1e-4 for ``n_iter_no_change`` epochs, and keep the weights
        of the best-scoring epoch. ``partial_fit`` refuses it, as scikit-learn's.
    validation_fraction : float, default=0.1
        The fraction of the training data held out for ``early_stopping``.
    n_iter_no_change : int, default=10
    random_state : int, RandomState or None
        Seeds the initial weights, the shuffling and the validation split.
    verbose : int, default=0
        Passed to ``fit`` (1: progress bars, 2: a line per epoch).
    callbacks : list of logitlab.callbacks.Callback or None, default=None
        Called during ``fit``, ``resume_fit`` and ``partial_fit`` (one epoch a
        call), as Keras's ``fit(callbacks=...)``: their ``model`` is the
        network (``model_``). When their ``on_epoch_end`` runs, this
        estimator's ``loss_curve_`` and ``n_iter_`` (and with
        ``early_stopping`` its validation curves) already include the epoch,
        so a callback may save or inspect the estimator. ``logs`` holds
        ``loss`` and, with ``early_stopping``, ``val_loss`` and
        ``val_accuracy``. The objects are used as given (a callback keeps its
        state across fits); ``clone`` copies them. Not saved by
        :func:`save_estimator` (a loaded estimator has ``callbacks=None``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels; for a multilabel ``y`` (a 0/1 matrix of shape
        (n_samples, n_labels)) the label columns ``0 .. n_labels - 1``, as in
        scikit-learn. Label names are the caller's to keep (the command line
        keeps them in the model file beside the estimator).
    model_ : :class:`~logitlab.Sequential`
        The trained network; ``model_.predict(X)`` gives the logits.
    loss_curve_ : list of float
        The training loss of each epoch (the mean of the batch losses,
        penalty included), over every ``fit`` / ``resume_fit`` /
        ``partial_fit`` epoch since the last ``fit``.
    n_iter_ : int
        The number of epochs trained, ``len(loss_curve_)``.
    validation_scores_ : list of float or None
        With ``early_stopping``: the accuracy on the held-out split after each
        epoch (subset accuracy for multilabel; weighted by ``sample_weight``),
        as scikit-learn's attribute. None without ``early_stopping``.
    best_validation_score_ : float or None
        With ``early_stopping``: the score of the epoch whose weights were
        kept. None without.
    validation_loss_curve_ : list of float or None
        With ``early_stopping``: the loss on the held-out split after each
        epoch, on the scale of ``loss_curve_`` (weighted mean, penalty
        included); the validation loss curve of scikit-learn#18507. None
        without ``early_stopping``.
    n_features_in_, feature_names_in_, n_outputs_
    stop_reason_ : str
        Why the last ``fit`` / ``resume_fit`` ended: all ``epochs`` trained, or
        early stopping, with the epoch and the rule that stopped it.

    Notes
    -----
    ``sample_weight`` (``fit``, ``partial_fit``) is normalised to mean 1 over
    the rows a call trains on, :math:`w'_i = w_i n / \sum_j w_j`, and each
    batch's loss is the Keras reduction :math:`\frac{1}{|B|}\sum_{i \in B}
    w'_i \ell_i` (:meth:`Sequential.fit`'s ``sample_weight``). A batch of all
    the rows then minimises the weighted mean :math:`\sum_i w_i \ell_i /
    \sum_i w_i` exactly, as scikit-learn's MLP (since 1.7) and its linear
    models do: integer weights equal repeated rows, zero weights dropped
    rows, and scaling every weight changes nothing; with smaller batches each
    batch's loss is an unbiased estimate of that mean. scikit-learn's MLP
    divides each batch by its own :math:`\sum_{i \in B} w_i` instead: a
    ratio that is biased for small batches and 0/0 for a batch of zero
    weights. With ``early_stopping`` the held-out rows are normalised on
    their own. In ``partial_fit`` the weights are relative within a call.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from logitlab import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(epochs=50, learning_rate=0.01, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints = {
        "hidden_layer_sizes": [tuple, list],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
    }

    _xfail_checks: dict = {}

    def __init__(self, hidden_layer_sizes=(25, 15), activation="relu", optimizer="adam",
                 learning_rate=0.001, batch_size=32, epochs=200, alpha=0.0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 random_state=None, verbose=0, callbacks=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    # ---- setup -----------------------------------------------------------------
    def _seed(self):
        rs = self.random_state
        if rs is None or isinstance(rs, (int, np.integer)):
            return rs
        return int(rs.randint(2**31 - 1))  # a RandomState instance

    def _encode(self, y, classes=None):
        """``(targets, classes, multilabel)`` for the network, in one pass over ``y``.

        Multilabel ``y`` (a 0/1 matrix) is its own target; otherwise the
        targets are indices into ``classes`` (found here when not given).
        """
        if np.ndim(y) == 2 and np.shape(y)[1] > 1 \
                and type_of_target(y) == "multilabel-indicator":
            if classes is not None and len(classes) != np.shape(y)[1]:
                raise ValueError(f"`y` has {np.shape(y)[1]} label columns; the model has "
                                 f"{len(classes)}")
            return np.asarray(y, dtype=np.float64), np.arange(np.shape(y)[1]), True
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)  # a column vector warns, as in scikit-learn
        if classes is None:
            classes, idx = np.unique(y, return_inverse=True)
            return idx, classes, False
        idx = np.searchsorted(classes, y)
        idx = np.clip(idx, 0, len(classes) - 1)
        unseen = classes[idx] != y
        if np.any(unseen):
            raise ValueError(f"`y` holds labels not in `classes`: {np.unique(np.asarray(y)[unseen])[:5]}")
        return idx, classes, False

    def _build(self, n_features, n_outputs, multilabel):
        sizes = tuple(self.hidden_layer_sizes)
        if not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
            raise ValueError(f"`hidden_layer_sizes` must hold positive integers; got {sizes!r}")
        reg = L2(self.alpha / (2.0 * self.batch_size)) if self.alpha else None
        layers = [Dense(s, activation=self.activation, kernel_regularizer=reg) for s in sizes]
        layers.append(Dense(n_outputs, activation=None, kernel_regularizer=reg))
        model = Sequential(layers, seed=self._seed(), dtype="float64")
        loss = _losses.get("binary_crossentropy" if multilabel
                           else "sparse_categorical_crossentropy", from_logits=True)
        model.compile(loss=loss, optimizer=OPTIMIZERS[self.optimizer](learning_rate=self.learning_rate))
        model.build(n_features)
        return model

    def _start(self, X, y, classes=None, sample_weight=None):
        self._validate_params()
        X, y = validate(self, X, y, multi_output=True, dtype=[np.float64, np.float32])
        sw = _checked_weights(sample_weight, len(X))
        t, self.classes_, multilabel = named_errors(
            lambda: self._encode(y, None if classes is None else np.asarray(classes)), X, y,
            name="`y`")
        if not multilabel and len(self.classes_) < 2:
            if classes is None:
                raise ValueError("`y` must hold samples of at least 2 classes, but the data "
                                 f"contains only one class: {self.classes_[0]!r}")
            raise ValueError(f"`classes` must hold at least 2 classes; got {_few(classes)}")
        self._multilabel = multilabel
        self.n_outputs_ = len(self.classes_)
        self.model_ = self._build(X.shape[1], max(self.n_outputs_, 2) if not multilabel
                                  else self.n_outputs_, multilabel)
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.validation_scores_ = self.best_validation_score_ = None
        self.validation_loss_curve_ = None
        return X, t, sw

    def _targets(self, y):
        """``y`` of a fitted estimator as the network's targets."""
        if self._multilabel:
            t = np.asarray(y, dtype=np.float64)
            if t.ndim != 2 or t.shape[1] != self.n_outputs_:
                raise ValueError(f"`y` must be a 0/1 matrix with {self.n_outputs_} label "
                                 f"columns, as in the first fit; got shape {t.shape}")
            return t
        return self._encode(y, self.classes_)[0]

    # ---- fitting -----------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train from scratch on ``X`` (n_samples, n_features) and ``y``.

        ``sample_weight`` : array-like of shape (n_samples,), optional: one
        finite, non-negative weight per sample, not all zero (see Notes).
        """
        X, t, sw = self._start(X, y, sample_weight=sample_weight)
        return self._train(X, t, sw, initial_epoch=0)

    def _callbacks(self):
        cbs = list(self.callbacks or [])
        for i, cb in enumerate(cbs):
            if not isinstance(cb, Callback):
                raise TypeError(f"`callbacks` must hold logitlab.callbacks.Callback objects; "
                                f"item {i} is {describe(cb)}")
        return cbs

    def _split(self, X, t, sw):
        """scikit-learn's early-stopping split: ``(X, t, sw, validation_data)``."""
        extra = [] if sw is None else [sw]
        try:
            parts = train_test_split(X, t, *extra, test_size=self.validation_fraction,
                                     random_state=self._seed(),
                                     stratify=None if self._multilabel else t)
        except ValueError as exc:
            raise ValueError(f"early_stopping holds out validation_fraction="
                             f"{self.validation_fraction} of the {len(X)} samples"
                             f"{'' if self._multilabel else ', stratified by class'}: {exc}") \
                from None
        X, Xv, t, tv = parts[:4]
        if len(Xv) < 2:
            raise ValueError(f"early_stopping: the validation split holds {len(Xv)} sample; "
                             "increase `validation_fraction` or the number of samples")
        sw, swv = (None, None) if sw is None else parts[4:]
        return X, t, _relative(sw, "training"), (Xv, tv, _relative(swv, "validation"))

    def _train(self, X, t, sw, initial_epoch):
        callbacks = self._callbacks()
        kwargs = {}
        if self.early_stopping:
            X, t, sw, validation = self._split(X, t, sw)
            record = _Record(self, initial_epoch, validation)
            stopper = EarlyStopping("val_accuracy", mode="max", patience=self.n_iter_no_change,
                                    min_delta=_TOL, restore_best_weights=True)
            kwargs["validation_data"] = validation
        else:
            sw = _relative(sw, "training")
            record = _Record(self, initial_epoch)
            stopper = EarlyStopping("loss", patience=self.n_iter_no_change, min_delta=_TOL)
        self.model_.fit(X, t, batch_size=self.batch_size, epochs=self.epochs,
                        verbose=self.verbose, callbacks=[record, stopper, *callbacks],
                        sample_weight=sw, initial_epoch=initial_epoch, **kwargs)
        if self.early_stopping:
            self.best_validation_score_ = -stopper.best if stopper.best_epoch is not None else None
        self.stop_reason_ = self._stop_reason(stopper)
        return self

    def _stop_reason(self, stopper):
        """Why training ended, in a sentence (``stop_reason_``)."""
        if stopper.stopped_epoch is None:
            if self.model_.epoch < self.epochs:  # one of the user's callbacks stopped it
                return (f"stopped at epoch {self.model_.epoch} of {self.epochs} by a callback "
                        "(callbacks=)")
            return f"trained all {self.epochs} epochs" + (
                "; the weights of the best epoch were kept" if self.early_stopping else "")
        which = "validation score" if self.early_stopping else "training loss"
        best = "" if stopper.best_epoch is None else f" (epoch {stopper.best_epoch + 1})"
        text = (f"stopped early at epoch {stopper.stopped_epoch + 1} of {self.epochs}: the "
                f"{which} did not improve on its best{best} by "
                f"tol={_TOL:g} for {stopper.wait} epochs (n_iter_no_change={self.n_iter_no_change})")
        return text + ("; the weights of the best epoch were kept" if self.early_stopping else "")

    def resume_fit(self, X, y, sample_weight=None):
        """Continue an interrupted ``fit`` (e.g. a loaded model) up to ``epochs`` epochs.

        The weights, optimizer state and shuffling state carry on from where
        they were saved; with the same data (and ``sample_weight``) this ends
        where an uninterrupted ``fit`` would (the early-stopping patience
        count restarts). The validation curves carry on in memory; a model
        file does not hold them, so after loading they start at the resumed
        epoch.
        """
        check_is_fitted(self, "model_")
        self._validate_params()
        X, y = validate(self, X, y, reset=False, multi_output=True,
                        dtype=[np.float64, np.float32])
        sw = _checked_weights(sample_weight, len(X))
        return self._train(X, self._targets(y), sw, initial_epoch=self.model_.epoch)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)``, keeping the weights and optimizer state.

        ``classes`` (all labels that will ever appear) is required on the
        first call for multiclass targets, as in scikit-learn.
        ``sample_weight`` is normalised within the call (see Notes): one call
        on all the data trains as one epoch of ``fit`` with the same weights.
        """
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True (it holds out "
                             "no validation data); use fit, or set early_stopping=False")
        if not hasattr(self, "model_"):
            if classes is None and not (np.ndim(y) == 2 and np.shape(y)[1] > 1):
                raise ValueError("`classes` must be given on the first call to partial_fit")
            X, t, sw = self._start(X, y, None if classes is None else _classes(classes),
                                   sample_weight)
        else:
            if classes is not None and not self._multilabel and not (
                    len(_classes(classes)) == len(self.classes_)
                    and np.all(_classes(classes) == self.classes_)):
                raise ValueError(f"`classes` ({_few(_classes(classes))}) is not the same as on "
                                 f"the first call to partial_fit ({_few(self.classes_)})")
            X, y = validate(self, X, y, reset=False, multi_output=True,
                            dtype=[np.float64, np.float32])
            sw = _checked_weights(sample_weight, len(X))
            t = self._targets(y)
        # one more epoch of the network's count: callbacks see it (epoch 0, 1, 2, ... over the
        # calls, not 0 every call), and resume_fit carries on after it
        start = self.model_.epoch
        self.model_.fit(X, t, batch_size=self.batch_size, epochs=start + 1, initial_epoch=start,
                        verbose=self.verbose, sample_weight=_relative(sw, "training"),
                        callbacks=[_Record(self, start), *self._callbacks()])
        return self

    def _accuracy(self, z, t, sample_weight):
        """scikit-learn's ``score`` (accuracy; subset accuracy for multilabel) from logits."""
        pred = self._decide(z)
        if self._multilabel:
            hit = np.all(pred == t, axis=1)
        else:
            hit = pred == self.classes_[t]
        return float(np.average(hit, weights=sample_weight))

    # ---- prediction ----------------------------------------------------------------
    def _logits(self, X):
        check_is_fitted(self, "model_")
        X = validate(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.model_.predict(X)

    def _lazy(self, method, X, n_out, dtype=np.float64):
        from .._dask_adapter import map_rows

        check_is_fitted(self, "model_")
        return map_rows(getattr(self, method), X, n_out, dtype)

    def set_thresholds(self, thresholds):
        """Per-label decision thresholds for a multilabel classifier's :meth:`predict`.

        Parameters
        ----------
        thresholds : MultilabelThresholds (fitted), array-like of shape (n_labels,) or None
            On the scale of :meth:`predict_proba`: fit a
            :class:`~logitlab.calibration.MultilabelThresholds` on
            ``clf.predict_proba(X_val)``. ``None`` goes back to 0.5 (a logit > 0).
            Kept in the network (``model_``), so :func:`save_estimator` saves them;
            a new ``fit`` starts without them.

        Returns
        -------
        self
        """
        check_is_fitted(self, "model_")
        if not self._multilabel:
            raise ValueError("set_thresholds is for a multilabel classifier (fitted on a 0/1 "
                             f"indicator matrix); this one has classes {self.classes_[:5]!r}")
        self.model_.set_thresholds(thresholds)
        return self

    def predict(self, X):
        """Labels: argmax of the logits, or for multilabel each logit > 0 (probability
        >= the label's threshold, when :meth:`set_thresholds` set them).

        On a Dask array, ``predict``, ``predict_proba`` and
        ``predict_log_proba`` return lazy Dask arrays, chunk by chunk.
        """
        if is_dask_collection(X):
            return self._lazy("predict", X, self.n_outputs_ if self._multilabel else None,
                              np.int64 if self._multilabel else self.classes_.dtype)
        return self._decide(self._logits(X))

    def _decide(self, z):
        """The labels of logits ``z``: :meth:`predict`'s rule."""
        if self._multilabel:
            if self.model_.thresholds is not None:
                return (sigmoid(z) >= self.model_.thresholds).astype(int)
            return (z > 0).astype(int)
        return self.classes_[np.argmax(z[:, :len(self.classes_)], axis=1)]

    def predict_proba(self, X):
        """Softmax of the logits, or the sigmoid of each for multilabel."""
        if is_dask_collection(X):
            return self._lazy("predict_proba", X, self.n_outputs_)
        z = self._logits(X)
        return sigmoid(z) if self._multilabel else softmax(z, axis=1)

    def predict_log_proba(self, X):
        """Exact log-probabilities from the logits (log_softmax / log_sigmoid)."""
        if is_dask_collection(X):
            return self._lazy("predict_log_proba", X, self.n_outputs_)
        z = self._logits(X)
        return log_sigmoid(z) if self._multilabel else log_softmax(z, axis=1)


def _classes(classes):
    """partial_fit's ``classes``: its distinct labels, sorted; a ValueError for a NaN."""
    arr = np.unique(np.asarray(classes))
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"`classes` must not hold NaN; got {_few(np.asarray(classes))}")
    return arr


def _few(labels, n=8):
    """Labels for a message, as Python values: the first ``n``, and how many in all."""
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in labels[:n])
    return shown if len(labels) <= n else f"{shown}, ... ({len(labels)} in all)"


def _checked_weights(sample_weight, n_samples):
    """``sample_weight`` checked (finite, non-negative, one per sample, not all zero), or None.
    A scalar weighs every sample alike, as in scikit-learn's ``_check_sample_weight``."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, (int, float, np.number)) \
            and not isinstance(sample_weight, (bool, np.bool_)):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    sw = check_weights(sample_weight, "sample_weight", shape=(n_samples,))
    check_some_weight(sw, "`sample_weight`")
    return sw


def _relative(sw, part):
    """``sw / mean(sw)``, a new array: weights of mean 1 (see ``MLPClassifier``'s Notes)."""
    if sw is None:
        return None
    total = float(np.sum(sw))
    if not total > 0:
        raise ValueError(f"`sample_weight` is zero on every sample of the {part} split "
                         "that early_stopping made; nothing to "
                         f"{'learn from' if part == 'training' else 'score'}")
    return sw * (len(sw) / total)


class _Record(Callback):
    """Keeps the estimator's curves current, epoch by epoch, before the user's callbacks run.

    With ``validation`` (``(X_val, targets, weights)``), it also scores the
    held-out rows (scikit-learn's ``score``) and puts the score in the logs as
    ``val_accuracy``, where the early-stopping rule reads it (as Keras's
    ``LearningRateScheduler`` adds ``learning_rate`` to the logs).
    """

    def __init__(self, est, start, validation=None):
        self.est, self.start, self.validation = est, start, validation

    def on_train_begin(self, logs=None):
        est = self.est
        est.loss_curve_ = list(est.loss_curve_[:self.start])
        est.n_iter_ = len(est.loss_curve_)
        if self.validation is not None:
            # the curves of an earlier run of this fit, when they reach `start` (in memory)
            keep = (getattr(est, "validation_scores_", None) or [])[:self.start]
            whole = len(keep) == self.start
            est.validation_scores_ = list(keep) if whole else []
            curve = getattr(est, "validation_loss_curve_", None) or []
            est.validation_loss_curve_ = list(curve[:self.start]) if whole else []

    def on_epoch_end(self, epoch, logs=None):
        est = self.est
        est.loss_curve_.append(float(logs["loss"]))
        est.n_iter_ = len(est.loss_curve_)
        if self.validation is not None:
            Xv, tv, swv = self.validation
            score = est._accuracy(self.model.predict(Xv), tv, swv)
            logs["val_accuracy"] = score
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(float(logs["val_loss"]))
