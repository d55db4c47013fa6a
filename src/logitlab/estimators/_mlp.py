"""``MLPClassifier``: the scikit-learn face of :class:`logitlab.Sequential`."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._checks import named_errors, validate
from .._dask_adapter import is_dask_collection
from .._softmax import log_sigmoid, log_softmax, sigmoid, softmax
from ..callbacks import EarlyStopping
from ..layers import L2, Dense
from ..layers._activations import ACTIVATIONS
from .. import losses as _losses
from ..models import Sequential
from ..optimizers._optimizers import OPTIMIZERS

__all__ = ["MLPClassifier"]

_TOL = 1e-4  # the least improvement of the monitored loss that counts, as scikit-learn's tol


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron trained from logits, as a scikit-learn classifier.

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
        with ``early_stopping``, the validation loss) has not improved by
        1e-4 for ``n_iter_no_change`` epochs.
    alpha : float, default=0.0
        L2 penalty, scikit-learn's convention: ``alpha / (2 * batch_size) *
        ||W||^2`` added to each batch's mean loss.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and keep the weights of
        the epoch with the lowest validation loss.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    random_state : int or None
        Seeds the initial weights and the shuffling.
    verbose : int, default=0
        Passed to ``fit`` (1: progress bars, 2: a line per epoch).

    Attributes
    ----------
    classes_, model_ (the trained :class:`~logitlab.Sequential`), loss_curve_,
    n_iter_, n_features_in_, feature_names_in_, n_outputs_
    stop_reason_ : str
        Why the last ``fit`` / ``resume_fit`` ended: all ``epochs`` trained, or
        early stopping, with the epoch and the rule that stopped it.

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
    }

    _xfail_checks: dict = {}

    def __init__(self, hidden_layer_sizes=(25, 15), activation="relu", optimizer="adam",
                 learning_rate=0.001, batch_size=32, epochs=200, alpha=0.0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 random_state=None, verbose=0):
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

    def _start(self, X, y, classes=None):
        self._validate_params()
        X, y = validate(self, X, y, multi_output=True, dtype=[np.float64, np.float32])
        t, self.classes_, multilabel = named_errors(
            lambda: self._encode(y, None if classes is None else np.asarray(classes)), X, y)
        if not multilabel:
            if len(self.classes_) < 2 and classes is None:
                raise ValueError("`y` must hold samples of at least 2 classes, but the data "
                                 f"contains only one class: {self.classes_[0]!r}")
        self._multilabel = multilabel
        self.n_outputs_ = len(self.classes_)
        self.model_ = self._build(X.shape[1], max(self.n_outputs_, 2) if not multilabel
                                  else self.n_outputs_, multilabel)
        self.loss_curve_ = []
        self.n_iter_ = 0
        return X, t

    # ---- fitting -----------------------------------------------------------------
    def fit(self, X, y):
        """Train from scratch on ``X`` (n_samples, n_features) and ``y``."""
        X, t = self._start(X, y)
        return self._train(X, t, initial_epoch=0)

    def _train(self, X, t, initial_epoch):
        callbacks = list(getattr(self, "_epoch_callbacks", []))
        kwargs = {}
        if self.early_stopping:
            stopper = EarlyStopping("val_loss", patience=self.n_iter_no_change, min_delta=_TOL,
                                    restore_best_weights=True)
            callbacks.append(stopper)
            kwargs["validation_split"] = self.validation_fraction
            order = np.random.default_rng(self._seed()).permutation(len(X))
            X, t = X[order], t[order]
        else:
            stopper = EarlyStopping("loss", patience=self.n_iter_no_change, min_delta=_TOL)
            callbacks.append(stopper)
        hist = self.model_.fit(X, t, batch_size=self.batch_size, epochs=self.epochs,
                               verbose=self.verbose, callbacks=callbacks,
                               initial_epoch=initial_epoch, **kwargs)
        self.loss_curve_ = list(self.loss_curve_[:initial_epoch]) + list(hist.history["loss"])
        if "val_loss" in hist.history:
            self.validation_loss_curve_ = list(hist.history["val_loss"])
        self.n_iter_ = len(self.loss_curve_)
        self.stop_reason_ = self._stop_reason(stopper)
        return self

    def _stop_reason(self, stopper):
        """Why training ended, in a sentence (``stop_reason_``)."""
        if stopper.stopped_epoch is None:
            return f"trained all {self.epochs} epochs"
        which = "validation loss" if self.early_stopping else "training loss"
        best = "" if stopper.best_epoch is None else f" (epoch {stopper.best_epoch + 1})"
        text = (f"stopped early at epoch {stopper.stopped_epoch + 1} of {self.epochs}: the "
                f"{which} did not improve on its best{best} by "
                f"tol={_TOL:g} for {stopper.wait} epochs (n_iter_no_change={self.n_iter_no_change})")
        return text + ("; the weights of the best epoch were kept" if self.early_stopping else "")

    def resume_fit(self, X, y):
        """Continue an interrupted ``fit`` (e.g. a loaded model) up to ``epochs`` epochs.

        The weights, optimizer state and shuffling state carry on from where
        they were saved; with the same data this ends where an uninterrupted
        ``fit`` would (the early-stopping patience count restarts).
        """
        check_is_fitted(self, "model_")
        X, y = validate(self, X, y, reset=False, multi_output=True,
                             dtype=[np.float64, np.float32])
        t = np.asarray(y, dtype=np.float64) if self._multilabel else self._encode(y, self.classes_)[0]
        return self._train(X, t, initial_epoch=self.model_.epoch)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, keeping the weights and optimizer state.

        ``classes`` (all labels that will ever appear) is required on the
        first call for multiclass targets, as in scikit-learn.
        """
        if not hasattr(self, "model_"):
            if classes is None and not (np.ndim(y) == 2 and np.shape(y)[1] > 1):
                raise ValueError("`classes` must be given on the first call to partial_fit")
            X, t = self._start(X, y, None if classes is None else np.unique(classes))
        else:
            X, y = validate(self, X, y, reset=False, multi_output=True,
                                 dtype=[np.float64, np.float32])
            if self._multilabel:
                t = np.asarray(y, dtype=np.float64)
                if t.ndim != 2 or t.shape[1] != self.n_outputs_:
                    raise ValueError(f"`y` must be a 0/1 matrix with {self.n_outputs_} label "
                                     f"columns, as in the first fit; got shape {t.shape}")
            else:
                t = self._encode(y, self.classes_)[0]
        hist = self.model_.fit(X, t, batch_size=self.batch_size, epochs=1, verbose=self.verbose)
        self.loss_curve_.append(hist.history["loss"][0])
        self.n_iter_ += 1
        return self

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
        z = self._logits(X)
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
