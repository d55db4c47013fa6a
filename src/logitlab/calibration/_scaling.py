"""Post-hoc scaling of logits: temperature, vector and matrix scaling (Guo et al. 2017).

Each scaler maps logits ``z`` to calibrated logits ``z'`` with a few parameters
``theta`` fitted by minimising the negative log-likelihood of held-out labels.
The objective's value and its gradient with respect to ``z'`` come from the
core's fused cross-entropy in one pass (``sparse_ce_logits_inplace`` for softmax,
``binary_ce_value_and_grad`` for sigmoid); the chain rule to ``theta`` is one
product per parameter block, so every gradient is exact.

Three kinds of logits, told apart by shapes (as in :mod:`logitlab.metrics`):
multiclass (n_samples, n_classes) with integer labels (softmax); binary
(n_samples,) or (n_samples, 1) with 0/1 labels (sigmoid); multilabel
(n_samples, n_labels) with a 0/1 indicator matrix of the same shape (a sigmoid
per label, and per-label parameters).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize

from .. import _jit
from .._softmax import sigmoid, softmax
from .._validation import (
    user_stacklevel,
    as_float_array,
    check_calibration_labels,
    check_finite,
    check_number,
    check_some_weight,
    check_weights,
    describe,
    warn_if_one_hot,
    warn_if_probabilities,
)
from ..losses._crossentropy import binary_ce_value_and_grad, sparse_ce_logits_inplace

__all__ = ["MatrixScaling", "TemperatureScaling", "VectorScaling"]

#: log T is searched in [-10, 10] (scikit-learn bounds its log inverse temperature so)
LOG_T_BOUND = 10.0


class NotFittedError(ValueError, AttributeError):
    """A scaler used before ``fit`` (scikit-learn's ``NotFittedError`` has the same bases)."""


def _as_logits(logits, name="logits"):
    z, _ = as_float_array(logits, name, min_ndim=1)
    z = z.astype(np.float64, copy=False)
    if z.ndim > 2:
        raise ValueError(f"`{name}` must be 1-D or 2-D; got shape {z.shape}")
    check_finite(z, name)
    return z


def _binary_targets(y, shape):
    arr, _ = as_float_array(y, "y")
    if arr.shape != shape:
        raise ValueError(f"`y` must have shape {shape}; got shape {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("`y` must hold 0/1 targets for binary or multilabel logits")
    both = np.atleast_1d((arr.min(axis=0) == 0) & (arr.max(axis=0) == 1))
    if not both.all():
        col = int(np.flatnonzero(~both)[0])
        only = int(arr.reshape(len(arr), -1)[0, col])
        where = f"label {col} of `y`" if arr.ndim == 2 else "`y`"
        raise ValueError(
            f"{where} holds only {only}s: a calibration needs samples of both outcomes "
            "(0 and 1) in every label"
        )
    return arr


def prepare(logits, y, sample_weight=None):
    """``(kind, z (n, k) float64, y, sw or None, was_1d)`` for fitting a scaler."""
    z = _as_logits(logits)
    n = len(z)
    y_shape = np.shape(y)
    if z.ndim == 2 and z.shape[1] > 1 and y_shape == z.shape:
        kind = "multilabel"
        y = _binary_targets(y, z.shape)
        warn_if_one_hot(y, "y")
    elif z.ndim == 1 or z.shape[1] == 1:
        kind = "binary"
        y = _binary_targets(np.reshape(y, -1) if len(y_shape) == 2 and y_shape[1:] == (1,) else y,
                            (n,))[:, None]
    else:
        kind = "multiclass"
        warn_if_probabilities(z, "logits", hint="pass logits (or the log of the probabilities)")
        y = check_calibration_labels(y, z.shape[1], "y")
        if len(y) != n:
            raise ValueError(
                f"`y` must hold one label per row of `logits` ({n}); got {len(y)}"
            )
    if n == 0:
        raise ValueError("`logits` must hold at least one sample")
    sw = None
    if sample_weight is not None:
        sw = check_weights(sample_weight, "sample_weight", shape=(n,))
        check_some_weight(sw, "`sample_weight`")
    return kind, z.reshape(n, -1), y, sw, z.ndim == 1


def nll_and_grad(zs, y, sw, kind):
    """Mean NLL of logits ``zs`` (n, k) and its gradient with respect to them (one pass)."""
    total = float(len(zs)) if sw is None else float(sw.sum())
    if kind == "multiclass":
        g = np.array(zs, dtype=np.float64, order="C", copy=True)
        value = sparse_ce_logits_inplace(g, y, sw, scale=1.0 / total)
        return value / total, g
    value, g = binary_ce_value_and_grad(y, zs, from_logits=True, reduction="sum",
                                        sample_weight=sw)
    return float(value) / total, g / total


class _Scaling:
    """Shared fitting, checks and outputs of the scalers."""

    #: L-BFGS-B's stopping rule: relative decrease of J, largest projected gradient entry
    _options = {"maxiter": 5000, "ftol": 1e-12, "gtol": 1e-8}

    def _objective(self, theta, z, y, sw):  # pragma: no cover - every scaler overrides it
        raise NotImplementedError

    def _initial(self, k):  # pragma: no cover
        raise NotImplementedError

    def _bounds(self, k):
        return None

    def _set(self, theta, k):  # pragma: no cover
        raise NotImplementedError

    def fit(self, logits, y, sample_weight=None):
        """Fit the scaling on held-out logits and labels.

        Parameters
        ----------
        logits : array-like of shape (n_samples, n_classes), (n_samples,) or (n_samples, n_labels)
            Held-out (not training) logits, finite.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Integer labels (multiclass; every class present), 0/1 (binary) or a 0/1
            indicator matrix (multilabel; both values present in every label).
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._validate_params()
        kind, z, y, sw, was_1d = prepare(logits, y, sample_weight)
        k = z.shape[1]
        self.kind_, self.n_columns_ = kind, k
        if kind == "multiclass" and np.all(np.argmax(z, axis=1) == y):
            warnings.warn(
                "every calibration sample is classified correctly: the likelihood keeps "
                "rising as the logits are sharpened, so the fit stops where the optimiser "
                "does, not where the data say; calibrate on a set with mistakes",
                UserWarning, stacklevel=user_stacklevel())
        with _jit.fit_mode(z.size):  # the kernels or not by the logits' size alone
            res = minimize(self._objective, self._initial(k), args=(z, y, sw), jac=True,
                           method="L-BFGS-B", bounds=self._bounds(k),
                           options=self._options)
        if res.status == 1:  # the iteration limit; line-search stops at full precision are fine
            warnings.warn(f"{type(self).__name__} did not converge in {res.nit} iterations",
                          UserWarning, stacklevel=user_stacklevel())
        self._set(res.x, k)
        self.n_iter_, self.nll_ = int(res.nit), float(res.fun)
        return self

    def _validate_params(self):
        pass

    def _check_fitted(self):
        if not hasattr(self, "kind_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(logits, y) first"
            )

    def _logits_in(self, logits):
        self._check_fitted()
        z = _as_logits(logits)
        shape = z.shape
        z2 = z.reshape(len(z), -1)
        if z2.shape[1] != self.n_columns_:
            raise ValueError(
                f"`logits` must have {self.n_columns_} column(s), as in fit; got {describe(z)}"
            )
        return z2, shape

    def transform(self, logits):
        """Calibrated logits, of the input's shape.

        Parameters
        ----------
        logits : array-like of the shape seen in fit (any number of rows)

        Returns
        -------
        logits : ndarray
        """
        z, shape = self._logits_in(logits)
        return self._map(z).reshape(shape)

    def predict_proba(self, logits):
        """Calibrated probabilities: softmax of the calibrated logits (multiclass), their
        sigmoid (binary: the probability of class 1, in the input's shape; multilabel)."""
        out = self.transform(logits)
        if self.kind_ == "multiclass":
            return softmax(out, axis=1)
        return sigmoid(out)

    def fit_transform(self, logits, y, sample_weight=None):
        return self.fit(logits, y, sample_weight).transform(logits)

    #: the fitted parameters, by name, as a model file stores them (float64 arrays)
    _fitted = ()

    def get_fitted(self):
        """``(kind_, {name: float64 array})``: the fitted parameters, for saving."""
        self._check_fitted()
        return self.kind_, {name: np.atleast_1d(np.asarray(getattr(self, name + "_"),
                                                           dtype=np.float64)).copy()
                            for name in self._fitted}

    @classmethod
    def fitted_shapes(cls, kind, n_columns):
        """The shape of each fitted parameter for logits of ``n_columns`` columns."""
        return cls._shapes(kind, n_columns)

    @classmethod
    def from_fitted(cls, kind, n_columns, params, **init):
        """A fitted scaler from :meth:`get_fitted` output, for logits of ``n_columns``
        columns (the caller checks the shapes against :meth:`fitted_shapes`)."""
        scaler = cls(**init)
        scaler.kind_, scaler.n_columns_ = kind, int(n_columns)
        for name in cls._fitted:
            setattr(scaler, name + "_", np.array(params[name], dtype=np.float64))
        if cls is TemperatureScaling and kind != "multilabel":
            scaler.temperature_ = float(scaler.temperature_[0])
        return scaler


class TemperatureScaling(_Scaling):
    r"""Temperature scaling: divide the logits by one fitted temperature ``T > 0``.

    The ranking of the classes, hence accuracy, is unchanged; only the
    confidence moves (down for an over-confident model, ``T > 1``).

    Attributes
    ----------
    temperature_ : float, or ndarray of shape (n_labels,) for multilabel logits
    kind_ : {"multiclass", "binary", "multilabel"}
    n_iter_ : int
    nll_ : float
        The mean negative log-likelihood at the fitted temperature.

    Notes
    -----
    ``fit`` minimises over :math:`\theta = \log T \in [-10, 10]`

    .. math::

        J(\theta) = -\frac{1}{\sum_i w_i}\sum_i w_i \log\operatorname{softmax}(z_i e^{-\theta})_{y_i},
        \qquad \frac{dJ}{d\theta} = -\sum_{ij} G_{ij}\, z_{ij} e^{-\theta},

    where :math:`G = \partial J / \partial z'` at :math:`z' = z e^{-\theta}` is the fused
    cross-entropy's gradient (softmax minus one-hot, weighted). Binary logits use the
    sigmoid, :math:`\sigma(z/T)`; multilabel logits one temperature per label.

    References
    ----------
    Guo, Pleiss, Sun and Weinberger, "On calibration of modern neural networks", ICML 2017.

    See Also
    --------
    VectorScaling, MatrixScaling, CalibratedClassifier

    Examples
    --------
    >>> import numpy as np
    >>> from logitlab.calibration import TemperatureScaling
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(0, 3, size=(2000, 4))           # a model's logits ...
    >>> p = np.exp(z / 3) / np.exp(z / 3).sum(1, keepdims=True)
    >>> y = np.array([rng.choice(4, p=row) for row in p])  # ... three times over-confident
    >>> ts = TemperatureScaling().fit(z, y)
    >>> bool(2.6 < ts.temperature_ < 3.4)
    True
    """

    # one to a few parameters and a handful of iterations: converge to the last digits
    # (scikit-learn's Brent search stops at 1.5e-8 relative in log T)
    _options = {"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10}
    _fitted = ("temperature",)

    @staticmethod
    def _shapes(kind, k):
        return {"temperature": (k if kind == "multilabel" else 1,)}

    def _initial(self, k):
        return np.zeros(k if self.kind_ == "multilabel" else 1)

    def _bounds(self, k):
        return [(-LOG_T_BOUND, LOG_T_BOUND)] * len(self._initial(k))

    def _objective(self, theta, z, y, sw):
        zs = z * np.exp(-theta)
        value, g = nll_and_grad(zs, y, sw, self.kind_)
        gz = -np.sum(g * zs, axis=0)
        return value, (gz if self.kind_ == "multilabel" else np.array([gz.sum()]))

    def _set(self, theta, k):
        t = np.exp(theta)
        self.temperature_ = t if self.kind_ == "multilabel" else float(t[0])

    def _map(self, z):
        return z / self.temperature_


class VectorScaling(_Scaling):
    r"""Vector scaling: a fitted scale and bias per class, ``z' = z * w + b``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes,)
    intercept_ : ndarray of shape (n_classes,)
    kind_, n_iter_, nll_
        As in :class:`TemperatureScaling`.

    Notes
    -----
    ``fit`` minimises the mean negative log-likelihood :math:`J` of
    :math:`z'_{ij} = w_j z_{ij} + b_j` (softmax for multiclass logits; sigmoid per
    column for binary, where it is Platt scaling, and multilabel logits) with
    L-BFGS-B, from :math:`w = 1, b = 0`; the gradient is
    :math:`\partial J/\partial w_j = \sum_i G_{ij} z_{ij}`,
    :math:`\partial J/\partial b_j = \sum_i G_{ij}`, with :math:`G` the fused
    cross-entropy's gradient at :math:`z'`. Unlike temperature scaling it can change
    the predicted class.

    References
    ----------
    Guo, Pleiss, Sun and Weinberger, "On calibration of modern neural networks", ICML 2017.

    See Also
    --------
    TemperatureScaling, MatrixScaling
    """

    _fitted = ("coef", "intercept")

    @staticmethod
    def _shapes(kind, k):
        return {"coef": (k,), "intercept": (k,)}

    def _initial(self, k):
        return np.concatenate([np.ones(k), np.zeros(k)])

    def _objective(self, theta, z, y, sw):
        k = z.shape[1]
        w, b = theta[:k], theta[k:]
        value, g = nll_and_grad(z * w + b, y, sw, self.kind_)
        return value, np.concatenate([np.sum(g * z, axis=0), np.sum(g, axis=0)])

    def _set(self, theta, k):
        self.coef_, self.intercept_ = theta[:k].copy(), theta[k:].copy()

    def _map(self, z):
        return z * self.coef_ + self.intercept_


class MatrixScaling(_Scaling):
    r"""Matrix scaling: a fitted affine map of the logits, ``z' = z W^T + b``,
    with an L2 penalty on ``W - I``.

    Parameters
    ----------
    C : float > 0, default=1.0
        Inverse strength of the penalty (scikit-learn's convention: larger is
        weaker); ``C=np.inf`` fits without a penalty.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_classes)
    intercept_ : ndarray of shape (n_classes,)
    kind_, n_iter_, nll_
        As in :class:`TemperatureScaling`.

    Notes
    -----
    With :math:`n` samples (total weight :math:`\sum_i w_i`), ``fit`` minimises

    .. math::

        J(W, b) = \mathrm{NLL}(z W^\top + b) + \frac{1}{2 C \sum_i w_i}\,\lVert W - I\rVert_F^2,

    :math:`\partial J/\partial W = G^\top z + (W - I)/(C \sum_i w_i)`,
    :math:`\partial J/\partial b = \sum_i G_i`, from :math:`W = I, b = 0`. The bias is
    not penalised. Matrix scaling has :math:`C^2 + C` parameters and over-fits small
    calibration sets (Guo et al.); the penalty (off the identity, so that strong
    regularisation leaves the logits as they are) is what keeps it usable.

    References
    ----------
    Guo, Pleiss, Sun and Weinberger, "On calibration of modern neural networks", ICML 2017.
    Kull et al., "Beyond temperature scaling", NeurIPS 2019 (regularised matrix scaling).

    See Also
    --------
    TemperatureScaling, VectorScaling
    """

    _fitted = ("coef", "intercept")

    @staticmethod
    def _shapes(kind, k):
        return {"coef": (k, k), "intercept": (k,)}

    def __init__(self, C=1.0):
        self.C = C

    def _validate_params(self):
        if not (isinstance(self.C, (int, float, np.floating, np.integer))
                and not isinstance(self.C, bool) and self.C == np.inf):
            check_number(self.C, "C", low=0, low_open=True)

    def _initial(self, k):
        return np.concatenate([np.eye(k).ravel(), np.zeros(k)])

    def _objective(self, theta, z, y, sw):
        k = z.shape[1]
        W, b = theta[:k * k].reshape(k, k), theta[k * k:]
        value, g = nll_and_grad(z @ W.T + b, y, sw, self.kind_)
        gW = g.T @ z
        if self.C != np.inf:
            total = float(len(z)) if sw is None else float(sw.sum())
            d = W - np.eye(k)
            value += float(np.sum(d * d)) / (2 * self.C * total)
            gW = gW + d / (self.C * total)
        return value, np.concatenate([gW.ravel(), np.sum(g, axis=0)])

    def _set(self, theta, k):
        self.coef_ = theta[:k * k].reshape(k, k).copy()
        self.intercept_ = theta[k * k:].copy()

    def _map(self, z):
        return z @ self.coef_.T + self.intercept_
