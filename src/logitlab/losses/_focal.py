"""Focal losses (Lin et al. 2017): softmax (sparse and categorical) and sigmoid forms.

Exact from logits: the log-probabilities come from the core's log-softmax /
log-sigmoid, and ``1 - p`` from ``-expm1(log p)``, so a confident row keeps
its relative accuracy where ``1 - softmax(z)`` would round to 0. The
gradient is the closed form below, computed in the same pass.
"""

from __future__ import annotations

import numpy as np

from .._softmax import _prepare, expit, log_expit
from .._validation import as_float_array, check_number, check_out
from ._base import Loss
from ._crossentropy import (
    _categorical_targets,
    _check_probabilities,
    _log_proba,
    _prepare_sparse,
    _probability_grad,
    _reduce,
    _sample_weight,
    check_label_smoothing,
    check_reduction,
    clip_bounds,
)

__all__ = [
    "sparse_categorical_focal_crossentropy",
    "categorical_focal_crossentropy",
    "binary_focal_crossentropy",
    "SparseCategoricalFocalCrossentropy",
    "CategoricalFocalCrossentropy",
    "BinaryFocalCrossentropy",
]


def _check_gamma(gamma):
    return float(check_number(gamma, "gamma", low=0.0))


def _alpha_vector(alpha, n_classes, dtype):
    """``alpha`` as a scalar or one weight per class (finite, non-negative)."""
    a, _ = as_float_array(alpha, "alpha")
    if a.ndim == 0:
        a = np.full(n_classes, float(a))
    elif a.shape != (n_classes,):
        raise ValueError(f"`alpha` must be a number or one weight per class, shape "
                         f"({n_classes},); got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("`alpha` must hold finite non-negative weights")
    return a.astype(dtype, copy=False)


def _focal_rows(t, z, from_logits, gamma, alpha, need_grad, out_dtype):
    """Per-row focal loss of dense targets ``t`` (class axis last), and dloss/dz.

    With :math:`u_j = 1 - p_j`, :math:`\\ell = -\\sum_j \\alpha_j t_j u_j^\\gamma \\log p_j`.
    From logits, :math:`h_j = p_j\\,\\partial\\ell/\\partial p_j
    = \\alpha_j t_j (\\gamma p_j u_j^{\\gamma-1} \\log p_j - u_j^\\gamma)` and
    :math:`\\partial\\ell/\\partial z_k = h_k - p_k \\sum_j h_j` (the softmax Jacobian).
    """
    logp, p, cache = _log_proba(z, from_logits, True, out_dtype)
    if cache is not None:  # probabilities in: p is the clipped, renormalised input
        p = cache[1]
    at = alpha * t
    live = at > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        u = -np.expm1(logp)  # 1 - p, exact where p is near 1
        ug = u ** gamma
        loss = -np.sum(np.where(live, at * ug * logp, 0.0), axis=-1)
        if not need_grad:
            return loss, None
        # gamma * u^(gamma-1) * log p -> 0 where u and log p vanish together
        tail = np.where(live & (u > 0), gamma * u ** (gamma - 1.0) * logp, 0.0)
        if from_logits:
            h = np.where(live, at * (p * tail - ug), 0.0)
            grad = h - p * np.sum(h, axis=-1, keepdims=True)
        else:
            g_c = np.where(live, at * (tail - ug / p), 0.0)
            grad = _probability_grad(g_c, cache)
    return loss, grad


def _focal_value_and_grad(y_true, y_pred, *, sparse, from_logits=False, axis=-1, gamma=2.0,
                          alpha=0.25, ignore_index=None, label_smoothing=0.0, reduction="mean",
                          sample_weight=None, need_grad=True, out=None):
    reduction = check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    gamma = _check_gamma(gamma)
    z, ax, out_dtype = _prepare(y_pred, axis, None, "y_pred", min_ndim=1)
    check_out(out, np.shape(y_pred), out_dtype,
              {"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight})
    lead, n_classes = z.shape[:-1], z.shape[-1]
    a = _alpha_vector(alpha, n_classes, z.dtype)
    if sparse:
        _, keep, safe_y, _, w_y, sw, _, denominator = _prepare_sparse(
            y_true, lead, z.shape, ignore_index, None, sample_weight, z.dtype, ax)
        t = np.zeros_like(z)
        np.put_along_axis(t, safe_y[..., None], 1.0, axis=-1)
        t *= keep[..., None]
    else:
        t = _categorical_targets(y_true, z.shape, np.shape(y_pred), ax, z.dtype)
        sw = _sample_weight(sample_weight, lead, z.dtype)
        keep, denominator = None, float(np.prod(lead))
    if eps > 0:  # Keras: y (1 - eps) + eps / C over every class
        t = t * (1.0 - eps) + eps / n_classes
        if keep is not None:
            t *= keep[..., None]
    loss, grad = _focal_rows(t, z, from_logits, gamma, a, need_grad, out_dtype)
    if sw is not None:
        loss = loss * sw
        if grad is not None:
            grad = grad * sw[..., None]
    return _reduce(loss, grad, reduction, denominator, ax, out_dtype, out)


def sparse_focal_value_and_grad(y_true, y_pred, **kwargs):
    return _focal_value_and_grad(y_true, y_pred, sparse=True, **kwargs)


def categorical_focal_value_and_grad(y_true, y_pred, **kwargs):
    if kwargs.get("ignore_index") is not None:
        raise TypeError("`ignore_index` applies to integer labels: use "
                        "sparse_categorical_focal_crossentropy")
    return _focal_value_and_grad(y_true, y_pred, sparse=False, **kwargs)


def sparse_categorical_focal_crossentropy(y_true, y_pred, *, gamma=2.0, alpha=0.25,
                                          from_logits=False, axis=-1, ignore_index=None,
                                          label_smoothing=0.0, reduction="mean",
                                          sample_weight=None):
    r"""Focal loss (Lin et al. 2017) of a softmax output, from integer labels.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, ...)
        Class indices in ``[0, n_classes)``, or ``ignore_index``.
    y_pred : array-like of shape (n_samples, ..., n_classes)
        Logits (``from_logits=True``, exact) or probabilities (normalised and
        clipped to ``[1e-7, 1 - 1e-7]`` as Keras 3 does).
    gamma : float >= 0, default=2.0
        Focusing parameter; 0 gives ``alpha``-weighted cross-entropy.
    alpha : float or array-like of shape (n_classes,), default=0.25
        Weight of each class's term (Keras's default 0.25).
    from_logits : bool, default=False
    axis : int, default=-1
        The class axis of ``y_pred``.
    ignore_index : int, optional
        Rows with this label count in neither the sum nor the mean's
        denominator (PyTorch's rule).
    label_smoothing : float in [0, 1], default=0
        Target ``(1 - eps) * onehot + eps / C`` (Keras's rule).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"`` divides by the number of rows not ignored.
    sample_weight : array-like of shape (n_samples, ...), optional

    Returns
    -------
    loss : float or ndarray

    Notes
    -----
    With :math:`p = \operatorname{softmax}(z)` and :math:`t` the (smoothed) target,

    .. math::

        \ell = -\sum_j \alpha_j t_j (1 - p_j)^\gamma \log p_j, \qquad
        \frac{\partial \ell}{\partial z_k} = h_k - p_k \sum_j h_j, \quad
        h_j = \alpha_j t_j \big(\gamma p_j (1-p_j)^{\gamma-1} \log p_j - (1-p_j)^\gamma\big).

    Equals :func:`categorical_focal_crossentropy` on one-hot targets, and
    Keras 3's ``CategoricalFocalCrossentropy`` away from its clip (from
    logits Keras clips the softmax to ``[1e-7, 1 - 1e-7]``; here the logits
    are used exactly).

    See Also
    --------
    categorical_focal_crossentropy, binary_focal_crossentropy, sparse_categorical_crossentropy

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He and P. Dollár, "Focal loss for
    dense object detection", ICCV 2017.

    Examples
    --------
    >>> from logitlab.losses import sparse_categorical_focal_crossentropy
    >>> logits = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]
    >>> round(float(sparse_categorical_focal_crossentropy([0, 1], logits, from_logits=True)), 6)
    0.007135
    """
    return sparse_focal_value_and_grad(
        y_true, y_pred, gamma=gamma, alpha=alpha, from_logits=from_logits, axis=axis,
        ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
        sample_weight=sample_weight, need_grad=False)[0]


def categorical_focal_crossentropy(y_true, y_pred, *, gamma=2.0, alpha=0.25, from_logits=False,
                                   axis=-1, label_smoothing=0.0, reduction="mean",
                                   sample_weight=None):
    r"""Focal loss of a softmax output, from one-hot or probability targets.

    Parameters are those of :func:`sparse_categorical_focal_crossentropy`
    (without ``ignore_index``); ``y_true`` has ``y_pred``'s shape. The mean
    is over rows.

    Notes
    -----
    .. math::

        \ell = -\sum_j \alpha_j t_j (1 - p_j)^\gamma \log p_j ,

    Keras 3's ``keras.losses.categorical_focal_crossentropy`` (values equal
    away from its probability clip).

    See Also
    --------
    sparse_categorical_focal_crossentropy, CategoricalFocalCrossentropy

    Examples
    --------
    >>> from logitlab.losses import categorical_focal_crossentropy
    >>> y = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    >>> logits = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]
    >>> round(float(categorical_focal_crossentropy(y, logits, from_logits=True)), 6)
    0.007135
    """
    return categorical_focal_value_and_grad(
        y_true, y_pred, gamma=gamma, alpha=alpha, from_logits=from_logits, axis=axis,
        label_smoothing=label_smoothing, reduction=reduction, sample_weight=sample_weight,
        need_grad=False)[0]


def binary_focal_value_and_grad(y_true, y_pred, *, gamma=2.0, alpha=0.25, from_logits=False,
                                reduction="mean", sample_weight=None, need_grad=True,
                                out=None):
    """Value (and gradient w.r.t. ``y_pred``) of the element-wise sigmoid focal loss."""
    reduction = check_reduction(reduction)
    gamma = _check_gamma(gamma)
    if alpha is not None:
        alpha = float(check_number(alpha, "alpha", low=0.0, high=1.0))
    z, out_dtype = as_float_array(y_pred, "y_pred")
    check_out(out, z.shape, out_dtype,
              {"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight})
    y, _ = as_float_array(y_true, "y_true")
    if y.shape != z.shape:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same shape; got {y.shape} and {z.shape}")
    y = y.astype(z.dtype, copy=False)
    with np.errstate(invalid="ignore"):
        if np.any((y < 0) | (y > 1)):
            raise ValueError("`y_true` must hold targets in [0, 1] for binary focal loss")
    sw = None
    if sample_weight is not None:
        if np.shape(sample_weight) == z.shape or z.ndim < 2:
            sw = _sample_weight(sample_weight, z.shape, z.dtype)
        else:
            sw = _sample_weight(sample_weight, z.shape[:-1], z.dtype)[..., None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if from_logits:
            # log sigma(z) = -log(1 + e^-z); log(1 - sigma(z)) = log sigma(-z)
            lp, lq = log_expit(z), log_expit(-z)
            p, pc = expit(z), expit(-z)  # sigma(z) and 1 - sigma(z), each exact
        else:
            _check_probabilities(z)
            lo, hi = clip_bounds(out_dtype)
            p = np.clip(z, lo, hi)
            pc = 1.0 - p
            lp, lq = np.log(p), np.log1p(-p)
        ce = -(np.where(y > 0, y * lp, 0.0) + np.where(y < 1, (1.0 - y) * lq, 0.0))
        u = y * pc + (1.0 - y) * p  # 1 - p_t
        a = 1.0 if alpha is None else alpha * y + (1.0 - alpha) * (1.0 - y)
        ug = u ** gamma
        loss = a * ug * ce
        grad = None
        if need_grad:
            # d/dz: ce' = p - y, u' = (1 - 2y) p (1 - p); d/dp: ce' = (p - y) / (p (1 - p)), u' = 1 - 2y
            du = (1.0 - 2.0 * y) * (p * pc if from_logits else 1.0)
            dce = (p - y) if from_logits else (p - y) / (p * pc)
            tail = np.where(u > 0, gamma * u ** (gamma - 1.0) * du * ce, 0.0)
            grad = a * (tail + ug * dce)
            if not from_logits:
                grad = np.where((z >= lo) & (z <= hi), grad, 0.0)
    if sw is not None:
        loss = loss * sw
        if grad is not None:
            grad = grad * sw
    return _reduce(loss, grad, reduction, float(loss.size), None, out_dtype, out)


def binary_focal_crossentropy(y_true, y_pred, *, gamma=2.0, alpha=0.25, from_logits=False,
                              reduction="mean", sample_weight=None):
    r"""Sigmoid focal loss, element-wise, for binary and multilabel targets.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, ..., n_labels)
        Targets in [0, 1].
    y_pred : array-like of the same shape
        Logits (``from_logits=True``, exact) or probabilities (clipped to
        ``[1e-7, 1 - 1e-7]``).
    gamma : float >= 0, default=2.0
    alpha : float in [0, 1] or None, default=0.25
        Weight ``alpha`` on positives and ``1 - alpha`` on negatives; None
        for none (torchvision's ``alpha=-1``).
    from_logits : bool, default=False
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"`` averages over every element, as torchvision does.
    sample_weight : array-like, optional
        One weight per element, or per row.

    Returns
    -------
    loss : float or ndarray

    Notes
    -----
    With :math:`p = \sigma(z)`, :math:`1 - p_t = y(1-p) + (1-y)p` and
    :math:`\alpha_t = \alpha y + (1-\alpha)(1-y)`,

    .. math::

        \ell = \alpha_t (1 - p_t)^\gamma \,
               \big(-y \log\sigma(z) - (1-y)\log\sigma(-z)\big),

    torchvision's ``ops.sigmoid_focal_loss`` (same values); the gradient
    is :math:`\alpha_t[\gamma (1-p_t)^{\gamma-1}(1-2y)\,p(1-p)\,\mathrm{ce}
    + (1-p_t)^\gamma (p - y)]`.

    See Also
    --------
    binary_crossentropy, sparse_categorical_focal_crossentropy

    Examples
    --------
    >>> from logitlab.losses import binary_focal_crossentropy
    >>> round(float(binary_focal_crossentropy([[1, 0, 1]], [[3.0, -2.0, 0.5]], from_logits=True)), 6)
    0.006091
    """
    return binary_focal_value_and_grad(
        y_true, y_pred, gamma=gamma, alpha=alpha, from_logits=from_logits, reduction=reduction,
        sample_weight=sample_weight, need_grad=False)[0]


class _FocalLoss(Loss, register=False):
    _fn = None

    def __call__(self, y_true, y_pred, sample_weight=None):
        return type(self)._fn(y_true, y_pred, sample_weight=sample_weight, need_grad=False,
                              **self.get_config_kwargs())[0]

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, out=None):
        return type(self)._fn(y_true, y_pred, sample_weight=sample_weight, need_grad=True,
                              out=out, **self.get_config_kwargs())

    def get_config_kwargs(self):
        return {k: getattr(self, k) for k in self._params}


class SparseCategoricalFocalCrossentropy(_FocalLoss):
    """Focal loss from integer labels; see :func:`sparse_categorical_focal_crossentropy`."""

    target = "sparse"
    name = "sparse_categorical_focal_crossentropy"
    _fn = staticmethod(sparse_focal_value_and_grad)
    _params = ("alpha", "gamma", "from_logits", "axis", "ignore_index", "label_smoothing",
               "reduction")

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, *, axis=-1, ignore_index=None,
                 label_smoothing=0.0, reduction="mean"):  # Keras's argument order
        self.alpha = alpha
        self.gamma = _check_gamma(gamma)
        self.from_logits = bool(from_logits)
        self.axis = axis
        self.ignore_index = ignore_index
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.reduction = check_reduction(reduction)


class CategoricalFocalCrossentropy(_FocalLoss):
    """Focal loss from one-hot targets; see :func:`categorical_focal_crossentropy`."""

    target = "dense"
    name = "categorical_focal_crossentropy"
    _fn = staticmethod(categorical_focal_value_and_grad)
    _params = ("alpha", "gamma", "from_logits", "axis", "label_smoothing", "reduction")

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, *, axis=-1,
                 label_smoothing=0.0, reduction="mean"):  # Keras's argument order
        self.alpha = alpha
        self.gamma = _check_gamma(gamma)
        self.from_logits = bool(from_logits)
        self.axis = axis
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.reduction = check_reduction(reduction)


class BinaryFocalCrossentropy(_FocalLoss):
    """Sigmoid focal loss; see :func:`binary_focal_crossentropy`."""

    target = "binary"
    name = "binary_focal_crossentropy"
    _fn = staticmethod(binary_focal_value_and_grad)
    _params = ("alpha", "gamma", "from_logits", "reduction")

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, *, reduction="mean"):
        self.gamma = _check_gamma(gamma)
        self.alpha = None if alpha is None else float(check_number(alpha, "alpha", low=0.0,
                                                                   high=1.0))
        self.from_logits = bool(from_logits)
        self.reduction = check_reduction(reduction)
