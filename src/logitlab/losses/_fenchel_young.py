"""Fenchel-Young losses of sparsemax, 1.5-entmax and alpha-entmax (Blondel et al. 2020).

For a regulariser :math:`\\Omega = -H^T_\\alpha` (the negative Tsallis entropy)
and its prediction map :math:`p^\\star = \\operatorname{entmax}_\\alpha(z)`,

.. math::

    L(z; y) = \\Omega^*(z) + \\Omega(y) - \\langle z, y\\rangle
            = H_\\alpha(p^\\star) - H_\\alpha(y) + \\langle p^\\star - y, z\\rangle ,
    \\qquad \\nabla_z L = p^\\star - y ,

with :math:`H_\\alpha(p) = (1 - \\sum_j p_j^\\alpha) / (\\alpha(\\alpha - 1))`
(Shannon's entropy at :math:`\\alpha = 1`, where :math:`L` is the softmax
cross-entropy less the target's entropy). :math:`L \\ge 0`, and it is exactly 0
where :math:`p^\\star = y`, which a sparse map reaches at finite scores. The
scores are shifted by their row maximum first (:math:`L` is shift invariant,
since :math:`\\sum_j (p^\\star_j - y_j) = 0`).
"""

from __future__ import annotations

import numpy as np

from .._softmax import (
    _entmax15_last,
    _entmax_bisect_last,
    _prepare,
    _sparsemax_last,
    softmax_parts,
    xlogy,
)
from .._validation import check_number, check_out
from ._base import TARGET_KINDS, Loss
from ._crossentropy import (
    _categorical_targets,
    _prepare_sparse,
    _reduce,
    _sample_weight,
    check_reduction,
)

__all__ = ["sparsemax_loss", "entmax15_loss", "entmax_loss",
           "SparsemaxLoss", "Entmax15Loss", "EntmaxLoss"]


def _check_alpha(alpha):
    return float(check_number(alpha, "alpha", low=1.0))


def _tsallis(p, alpha):
    """H_alpha(p) over the last axis; Shannon's entropy at alpha = 1."""
    if alpha == 1.0:
        return -np.sum(xlogy(p, p), axis=-1)
    return (1.0 - np.sum(p ** alpha, axis=-1)) / (alpha * (alpha - 1.0))


def _entmax_last(d, alpha):
    if alpha == 1.0:
        return softmax_parts(d, log=False)[1]
    if alpha == 2.0:
        return _sparsemax_last(d)
    if alpha == 1.5:
        return _entmax15_last(d)
    return _entmax_bisect_last(d, alpha)


def fy_value_and_grad(y_true, y_pred, *, alpha=1.5, axis=-1, ignore_index=None,
                      reduction="mean", sample_weight=None, need_grad=True, out=None):
    """Value (and gradient ``p* - y``) of the alpha-entmax Fenchel-Young loss.

    ``y_true`` is one integer label per row (one dimension fewer than
    ``y_pred``) or a distribution of ``y_pred``'s shape.
    """
    alpha = _check_alpha(alpha)
    reduction = check_reduction(reduction)
    z, ax, out_dtype = _prepare(y_pred, axis, None, "y_pred", min_ndim=1)
    check_out(out, np.shape(y_pred), out_dtype,
              {"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight})
    if not np.isfinite(z).all():
        raise ValueError("`y_pred` must hold finite scores for a Fenchel-Young loss")
    lead = z.shape[:-1]
    # labels: one dimension fewer, or a singleton where y_pred has its classes (Keras)
    sparse = np.ndim(y_true) < z.ndim or (np.ndim(y_true) == z.ndim and z.shape[-1] != 1
                                          and np.shape(y_true)[ax] == 1)
    if sparse:
        _, keep, safe_y, _, w_y, sw, _, denominator = _prepare_sparse(
            y_true, lead, z.shape, ignore_index, None, sample_weight, z.dtype, ax)
        t = np.zeros_like(z)
        np.put_along_axis(t, safe_y[..., None], 1.0, axis=-1)
    else:
        if ignore_index is not None:
            raise TypeError("`ignore_index` applies to integer labels")
        t = _categorical_targets(y_true, z.shape, np.shape(y_pred), ax, z.dtype)
        sums = np.sum(t, axis=-1)
        if not np.allclose(sums, 1.0, rtol=0, atol=1e-6):
            raise ValueError("`y_true` must hold distributions (rows summing to 1) for a "
                             f"Fenchel-Young loss; a row sums to {sums.ravel()[0]!r}")
        sw = _sample_weight(sample_weight, lead, z.dtype)
        keep, denominator = np.ones(lead, dtype=bool), float(np.prod(lead))
    d = z - np.max(z, axis=-1, keepdims=True)
    p = _entmax_last(d, alpha)
    diff = p - t
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = _tsallis(p, alpha) - _tsallis(t, alpha) + np.sum(diff * d, axis=-1)
    loss = np.where(keep, np.maximum(loss, 0.0), 0.0)  # >= 0; rounding may dip below
    grad = np.where(keep[..., None], diff, 0.0) if need_grad else None
    if sw is not None:
        loss = loss * sw
        if grad is not None:
            grad = grad * sw[..., None]
    return _reduce(loss, grad, reduction, denominator, ax, out_dtype, out)


def entmax_loss(y_true, y_pred, *, alpha=1.5, axis=-1, ignore_index=None, reduction="mean",
                sample_weight=None):
    r"""The Fenchel-Young loss of alpha-entmax, from scores; its gradient is ``p* - y``.

    Parameters
    ----------
    y_true : array-like
        Integer labels of shape ``y_pred.shape`` without the class axis, or
        target distributions of ``y_pred``'s shape.
    y_pred : array-like of shape (n_samples, ..., n_classes)
        Scores (logits); finite.
    alpha : float >= 1, default=1.5
        2 is :func:`sparsemax_loss`, 1.5 :func:`entmax15_loss`, 1 the
        softmax cross-entropy (less the target's entropy).
    axis : int, default=-1
    ignore_index : int, optional
        With integer labels: rows with it count nowhere (PyTorch's rule).
    reduction : {"mean", "sum", "none"}, default="mean"
    sample_weight : array-like of shape (n_samples, ...), optional

    Returns
    -------
    loss : float or ndarray

    Notes
    -----
    .. math::

        L(z; y) = H_\alpha(p^\star) - H_\alpha(y) + \langle p^\star - y, z\rangle, \qquad
        p^\star = \operatorname{entmax}_\alpha(z), \quad \nabla_z L = p^\star - y,

    :math:`H_\alpha(p) = (1 - \sum_j p_j^\alpha)/(\alpha(\alpha-1))`. With
    integer labels :math:`H_\alpha(y) = 0` and this is the ``entmax``
    package's ``EntmaxBisectLoss`` (``Entmax15Loss``, ``SparsemaxLoss``).

    See Also
    --------
    logitlab.entmax_bisect, entmax15_loss, sparsemax_loss

    References
    ----------
    M. Blondel, A. F. T. Martins and V. Niculae, "Learning with Fenchel-Young
    losses", JMLR 21 (2020).

    Examples
    --------
    >>> from logitlab.losses import entmax_loss
    >>> round(float(entmax_loss([2], [[0.0, 1.0, 1.5]], alpha=1.5)), 6)
    0.184601
    >>> float(entmax_loss([2], [[0.0, 1.0, 4.0]], alpha=1.5))  # p* = y exactly
    0.0
    """
    return fy_value_and_grad(y_true, y_pred, alpha=alpha, axis=axis, ignore_index=ignore_index,
                             reduction=reduction, sample_weight=sample_weight,
                             need_grad=False)[0]


def entmax15_loss(y_true, y_pred, *, axis=-1, ignore_index=None, reduction="mean",
                  sample_weight=None):
    r"""The Fenchel-Young loss of 1.5-entmax: :func:`entmax_loss` at ``alpha=1.5``.

    ``p*`` by the sorted closed form (:func:`logitlab.entmax15`); gradient
    ``p* - y``. The ``entmax`` package's ``Entmax15Loss``.

    See Also
    --------
    entmax_loss, logitlab.entmax15

    Examples
    --------
    >>> from logitlab.losses import entmax15_loss
    >>> round(float(entmax15_loss([2], [[0.0, 1.0, 1.5]])), 6)
    0.184601
    """
    return fy_value_and_grad(y_true, y_pred, alpha=1.5, axis=axis, ignore_index=ignore_index,
                             reduction=reduction, sample_weight=sample_weight,
                             need_grad=False)[0]


def sparsemax_loss(y_true, y_pred, *, axis=-1, ignore_index=None, reduction="mean",
                   sample_weight=None):
    r"""The sparsemax loss (Martins and Astudillo 2016): :func:`entmax_loss` at ``alpha=2``.

    .. math::

        L(z; y) = \tfrac12\big(\lVert y\rVert^2 - \lVert p^\star\rVert^2\big)
                  + \langle p^\star - y, z\rangle, \qquad \nabla_z L = p^\star - y .

    optax's ``sparsemax_loss`` and the ``entmax`` package's ``SparsemaxLoss``
    on integer labels.

    See Also
    --------
    entmax_loss, logitlab.sparsemax

    Examples
    --------
    >>> from logitlab.losses import sparsemax_loss
    >>> round(float(sparsemax_loss([0], [[1.0, 1.5, 1.2]])), 6)
    0.63
    """
    return fy_value_and_grad(y_true, y_pred, alpha=2.0, axis=axis, ignore_index=ignore_index,
                             reduction=reduction, sample_weight=sample_weight,
                             need_grad=False)[0]


class EntmaxLoss(Loss):
    """alpha-entmax Fenchel-Young loss; see :func:`entmax_loss`.

    ``target`` says what ``Sequential.fit`` passes as ``y``: ``"sparse"``
    (integer labels, the default) or ``"dense"`` (distributions).
    """

    name = "entmax_loss"
    _params = ("alpha", "axis", "ignore_index", "reduction", "target")
    _fixed_alpha = None

    def __init__(self, alpha=1.5, *, axis=-1, ignore_index=None, reduction="mean",
                 target="sparse"):
        self.alpha = _check_alpha(alpha) if self._fixed_alpha is None else self._fixed_alpha
        self.axis = axis
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        if target not in ("sparse", "dense"):
            raise ValueError(f"`target` must be 'sparse' or 'dense'; got {target!r}")
        self.target = target
        self.from_logits = True  # scores, thresholded at 0 by no metric: they are not sigmoids

    def _kwargs(self):
        return dict(alpha=self.alpha, axis=self.axis, ignore_index=self.ignore_index,
                    reduction=self.reduction)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return fy_value_and_grad(y_true, y_pred, sample_weight=sample_weight, need_grad=False,
                                 **self._kwargs())[0]

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, out=None):
        return fy_value_and_grad(y_true, y_pred, sample_weight=sample_weight, out=out,
                                 **self._kwargs())

    def metric(self):
        return TARGET_KINDS[self.target]


class Entmax15Loss(EntmaxLoss):
    """1.5-entmax Fenchel-Young loss; see :func:`entmax15_loss`."""

    name = "entmax15_loss"
    _params = ("axis", "ignore_index", "reduction", "target")
    _fixed_alpha = 1.5

    def __init__(self, *, axis=-1, ignore_index=None, reduction="mean", target="sparse"):
        super().__init__(axis=axis, ignore_index=ignore_index, reduction=reduction,
                         target=target)


class SparsemaxLoss(EntmaxLoss):
    """Sparsemax loss; see :func:`sparsemax_loss`."""

    name = "sparsemax_loss"
    _params = ("axis", "ignore_index", "reduction", "target")
    _fixed_alpha = 2.0

    def __init__(self, *, axis=-1, ignore_index=None, reduction="mean", target="sparse"):
        super().__init__(axis=axis, ignore_index=ignore_index, reduction=reduction,
                         target=target)
