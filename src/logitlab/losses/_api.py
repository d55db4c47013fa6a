"""Public loss functions and Keras-style loss classes."""

from __future__ import annotations

from ._crossentropy import (
    binary_ce_value_and_grad,
    categorical_ce_value_and_grad,
    check_label_smoothing,
    check_reduction,
    check_z_loss,
    sparse_ce_logits_inplace,
    sparse_ce_value_and_grad,
)
from .._validation import check_weights
from ._base import Loss

__all__ = [
    "Loss",
    "SparseCategoricalCrossentropy",
    "CategoricalCrossentropy",
    "BinaryCrossentropy",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
]


def sparse_categorical_crossentropy(y_true, y_pred, *, from_logits=False, axis=-1,
                                    ignore_index=None, label_smoothing=0.0, class_weight=None,
                                    reduction="mean", where=None, sample_weight=None, z_loss=0.0):
    r"""Cross-entropy between integer labels and predicted logits or probabilities.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples, ...)
        Class indices in ``[0, n_classes)``, or ``ignore_index``. Whole-number
        floats are accepted, as Keras passes them; a trailing axis of length
        one is dropped.
    y_pred : array-like of shape (n_samples, ..., n_classes)
        Logits (``from_logits=True``) or probabilities.
    from_logits : bool, default=False
        ``True`` is the preferred, exact path. ``False`` follows Keras 3:
        rows are normalised, clipped to ``[1e-7, 1 - 1e-7]`` and logged.
    axis : int, default=-1
        The class axis of ``y_pred``.
    ignore_index : int, optional
        Rows with this label count in neither the numerator nor the
        denominator of the mean (PyTorch's rule). The ignored class still
        takes part in the softmax of the other rows. If every row is
        ignored the loss is 0 and the gradient zero (PyTorch gives NaN).
    label_smoothing : float in [0, 1], default=0
        Target ``(1 - eps) * onehot + eps / C``, the smoothing mass spread
        over the ``C`` entries that take part in the row.
    class_weight : array-like of shape (n_classes,) or dict, optional
        Per-class weights ``w``; with them the mean is
        ``sum_i w[y_i] loss_i / sum_i w[y_i]`` (PyTorch's ``weight``), and
        the smoothing term weighs class ``j`` by ``w[j]``.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"`` returns one loss per row (0 on ignored rows).
    where : array-like of bool, broadcastable to ``y_pred``, optional
        Entries that take part in the softmax. A row with no entry taking
        part contributes loss 0 and a zero gradient, never NaN.
    sample_weight : array-like of shape (n_samples, ...), optional
        Multiplies each row's loss (Keras's ``sample_weight``); it does not
        change the denominator.
    z_loss : float >= 0, default=0
        With ``from_logits=True``, adds ``z_loss * logsumexp(z_i)^2`` to each
        row's loss (PaLM's z-loss, 1e-4 there), weighted like the row; its
        gradient ``2 z_loss logsumexp(z_i) softmax(z_i)`` joins the same pass.

    Returns
    -------
    loss : float or ndarray
        A scalar, or one loss per row with ``reduction="none"``.

    Notes
    -----
    From logits, with :math:`t_i = (1-\varepsilon) w_{y_i} e_{y_i} +
    \tfrac{\varepsilon}{C} w` the (weighted, smoothed) target of row
    :math:`i`,

    .. math::

        \ell_i = -\sum_j t_{ij} \log\operatorname{softmax}(z_i)_j, \qquad
        J = \frac{\sum_i \ell_i}{\sum_{i:\, y_i \ne \text{ignore}} w_{y_i}} ,

    which, unweighted and unsmoothed, is the seeds' cost
    :math:`J = -\frac{1}{m}\sum_i \log a^{(i)}_{y^{(i)}}`.

    See Also
    --------
    categorical_crossentropy, SparseCategoricalCrossentropy

    Examples
    --------
    >>> from logitlab.losses import sparse_categorical_crossentropy
    >>> logits = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]
    >>> round(float(sparse_categorical_crossentropy([0, 1], logits, from_logits=True)), 6)
    0.31854
    """
    return sparse_ce_value_and_grad(
        y_true, y_pred, from_logits=from_logits, axis=axis, ignore_index=ignore_index,
        label_smoothing=label_smoothing, class_weight=class_weight, reduction=reduction,
        where=where, sample_weight=sample_weight, z_loss=z_loss, need_grad=False)[0]


def categorical_crossentropy(y_true, y_pred, *, from_logits=False, axis=-1, label_smoothing=0.0,
                             class_weight=None, reduction="mean", where=None, sample_weight=None,
                             z_loss=0.0):
    r"""Cross-entropy between one-hot (or probability) targets and predictions.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, ..., n_classes)
        One-hot targets or target probabilities.
    y_pred : array-like of the same shape
        Logits (``from_logits=True``) or probabilities.
    from_logits : bool, default=False
        As in :func:`sparse_categorical_crossentropy`.
    axis : int, default=-1
        The class axis.
    label_smoothing : float in [0, 1], default=0
        Target ``(1 - eps) * y + eps / C``.
    class_weight : array-like of shape (n_classes,) or dict, optional
        Term ``j`` is weighted by ``w[j]``; the mean stays over rows
        (PyTorch's rule for probability targets).
    reduction : {"mean", "sum", "none"}, default="mean"
    where : array-like of bool, optional
        Entries that take part, as in :func:`sparse_categorical_crossentropy`.
    sample_weight : array-like of shape (n_samples, ...), optional
    z_loss : float >= 0, default=0
        With ``from_logits=True``, adds ``z_loss * logsumexp(z_i)^2`` to each
        row's loss (PaLM's z-loss, 1e-4 there), weighted like the row; its
        gradient ``2 z_loss logsumexp(z_i) softmax(z_i)`` joins the same pass.

    Returns
    -------
    loss : float or ndarray

    Notes
    -----
    .. math::

        \ell_i = -\sum_j w_j t_{ij} \log\operatorname{softmax}(z_i)_j ,
        \qquad 0 \cdot \log 0 = 0 .

    See Also
    --------
    sparse_categorical_crossentropy, CategoricalCrossentropy

    Examples
    --------
    >>> from logitlab.losses import categorical_crossentropy
    >>> y = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    >>> logits = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]
    >>> round(float(categorical_crossentropy(y, logits, from_logits=True)), 6)
    0.31854
    """
    return categorical_ce_value_and_grad(
        y_true, y_pred, from_logits=from_logits, axis=axis, label_smoothing=label_smoothing,
        class_weight=class_weight, reduction=reduction, where=where,
        sample_weight=sample_weight, z_loss=z_loss, need_grad=False)[0]


def binary_crossentropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                        pos_weight=None, reduction="mean", sample_weight=None):
    r"""Element-wise binary cross-entropy, for binary and multilabel targets.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, ..., n_labels)
        Targets in [0, 1] (one 0/1 column per label for multilabel).
    y_pred : array-like of the same shape
        Logits (``from_logits=True``, sigmoid applied inside) or
        probabilities (clipped to ``[1e-7, 1 - 1e-7]``, as in Keras 3).
    from_logits : bool, default=False
    label_smoothing : float in [0, 1], default=0
        Target ``y * (1 - eps) + eps / 2``.
    pos_weight : float or array-like broadcastable to ``y_pred``, optional
        Weight of the positive term (PyTorch's ``BCEWithLogitsLoss``), one
        per label or a scalar; finite and positive.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"`` returns one loss per element, the shape of ``y_pred``;
        ``"mean"`` averages over all elements (Keras's per-sample mean,
        averaged over the batch).
    sample_weight : array-like, optional
        One weight per element, or per row.

    Returns
    -------
    loss : float or ndarray

    Notes
    -----
    .. math::

        \ell = -\big[p_w\, y \log\sigma(z) + (1 - y) \log\sigma(-z)\big],

    with :math:`\log\sigma(z) = -\log(1 + e^{-z})` computed by
    ``-logaddexp(0, -z)`` and :math:`\log(1 - \sigma(z)) =
    \log\sigma(-z)`, so no logit is thrown away.

    See Also
    --------
    BinaryCrossentropy, logitlab.log_sigmoid

    Examples
    --------
    >>> from logitlab.losses import binary_crossentropy
    >>> round(float(binary_crossentropy([[1, 0, 1]], [[3.0, -2.0, 0.5]], from_logits=True)), 6)
    0.216531
    """
    return binary_ce_value_and_grad(
        y_true, y_pred, from_logits=from_logits, label_smoothing=label_smoothing,
        pos_weight=pos_weight, reduction=reduction, sample_weight=sample_weight,
        need_grad=False)[0]


class _CrossentropyLoss(Loss, register=False):
    """The built-in cross-entropies: validated settings over one value-and-gradient function.

    Subclasses set ``_fn`` (the value-and-gradient function) and ``_params``
    (the names of the settings it takes).
    """

    _fn = None
    _params: tuple = ()

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss value (a scalar unless ``reduction="none"``)."""
        return self._fn(y_true, y_pred, sample_weight=sample_weight, need_grad=False,
                        **self.get_config_kwargs())[0]

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, out=None):
        """The loss and its gradient with respect to ``y_pred`` (same shape).

        With ``reduction="none"`` the gradient is that of the summed losses.
        ``out``, an array of ``y_pred``'s shape and result dtype that does
        not overlap the inputs, receives the gradient and is returned; a
        training loop that reuses one skips a fresh allocation per step
        (on large arrays the OS zeroing new pages costs about half as much
        again as the kernel).
        """
        return self._fn(y_true, y_pred, sample_weight=sample_weight, need_grad=True, out=out,
                        **self.get_config_kwargs())

    def get_config_kwargs(self):
        return {k: getattr(self, k) for k in self._params}


class SparseCategoricalCrossentropy(_CrossentropyLoss):
    """Cross-entropy for integer labels; see :func:`sparse_categorical_crossentropy`.

    Examples
    --------
    >>> from logitlab.losses import SparseCategoricalCrossentropy
    >>> loss = SparseCategoricalCrossentropy(from_logits=True)
    >>> value, grad = loss.value_and_grad([0], [[2.0, 0.0]])
    >>> round(float(value), 6), grad.round(6).tolist()
    (0.126928, [[-0.119203, 0.119203]])
    """

    target = "sparse"
    name = "sparse_categorical_crossentropy"
    _fn = staticmethod(sparse_ce_value_and_grad)
    _params = ("from_logits", "axis", "ignore_index", "label_smoothing", "class_weight",
               "reduction", "z_loss")

    def __init__(self, from_logits=False, *, axis=-1, ignore_index=None, label_smoothing=0.0,
                 class_weight=None, reduction="mean", z_loss=0.0):
        self.from_logits = bool(from_logits)
        self.z_loss = check_z_loss(z_loss, self.from_logits)
        self.axis = axis
        self.ignore_index = ignore_index
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.class_weight = class_weight
        self.reduction = check_reduction(reduction)

    def inplace_value_and_grad(self):
        """The lean path for the default settings from logits, else None.

        One pass in the model's dtype, the gradient ``(softmax - onehot) / n``
        (plus the z-loss's, if set) written over the logits (the fused kernel
        where it serves).
        """
        if not (self.from_logits and self.axis in (-1, 1) and self.ignore_index is None
                and self.label_smoothing == 0 and self.class_weight is None
                and self.reduction == "mean"):
            return None

        z_loss = self.z_loss

        def lean(y, z):
            n = len(z)
            return sparse_ce_logits_inplace(z, y, scale=1.0 / n, z_loss=z_loss) / n, z
        return lean


class CategoricalCrossentropy(_CrossentropyLoss):
    """Cross-entropy for one-hot targets; see :func:`categorical_crossentropy`."""

    target = "dense"
    name = "categorical_crossentropy"
    _fn = staticmethod(categorical_ce_value_and_grad)
    _params = ("from_logits", "axis", "label_smoothing", "class_weight", "reduction", "z_loss")

    def __init__(self, from_logits=False, *, axis=-1, label_smoothing=0.0, class_weight=None,
                 reduction="mean", z_loss=0.0):
        self.from_logits = bool(from_logits)
        self.z_loss = check_z_loss(z_loss, self.from_logits)
        self.axis = axis
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.class_weight = class_weight
        self.reduction = check_reduction(reduction)


class BinaryCrossentropy(_CrossentropyLoss):
    """Element-wise binary cross-entropy; see :func:`binary_crossentropy`."""

    target = "binary"
    name = "binary_crossentropy"
    _fn = staticmethod(binary_ce_value_and_grad)
    _params = ("from_logits", "label_smoothing", "pos_weight", "reduction")

    def __init__(self, from_logits=False, *, label_smoothing=0.0, pos_weight=None,
                 reduction="mean"):
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        if pos_weight is not None:
            check_weights(pos_weight, "pos_weight", positive=True)
        self.pos_weight = pos_weight
        self.reduction = check_reduction(reduction)
