"""Cross-entropy of a linear layer over very many classes, without the N x C logits.

The classes are visited in chunks twice: a first pass keeps a running
(online) logsumexp per row, ``m <- max(m, max z_c)``, ``s <- s e^{m_old - m}
+ sum e^{z_c - m}``; a second pass recomputes each chunk's logits and
accumulates the gradients. Peak extra memory is O(N x chunk_size) instead of
O(N x C) (the CPU counterpart of Cut Cross-Entropy, Wijmans et al. 2024, and
Liger-Kernel's fused linear cross-entropy).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_integer_labels, check_number, describe
from ._crossentropy import check_reduction, check_z_loss

__all__ = ["linear_cross_entropy"]


def _float_dtype(x, name):
    """The floating dtype ``x`` computes in (ints and bools as float64), without a copy."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind in "biu":
        return np.float64
    if arr.dtype.kind != "f":
        raise TypeError(f"`{name}` must be an array of real numbers; got {describe(arr)}")
    return arr.dtype


def _chunk_logits(hidden, weight, bias, lo, hi):
    z = hidden @ weight[lo:hi].T
    if bias is not None:
        z += bias[lo:hi]
    return z


def linear_cross_entropy(hidden, weight, labels, bias=None, *, chunk_size=4096,
                         reduction="mean", z_loss=0.0):
    r"""Sparse cross-entropy of ``hidden @ weight.T + bias``, with gradients, in class chunks.

    Parameters
    ----------
    hidden : array-like of shape (n_samples, d)
        The last hidden layer.
    weight : array-like of shape (n_classes, d)
        The output layer's weights (PyTorch's ``nn.Linear`` layout).
    labels : array-like of int, shape (n_samples,)
    bias : array-like of shape (n_classes,), optional
    chunk_size : int, default=4096
        Classes per chunk; peak extra memory is about
        ``n_samples * chunk_size`` floats.
    reduction : {"mean", "sum"}, default="mean"
    z_loss : float >= 0, default=0
        Adds ``z_loss * lse(z_i)^2`` per row (PaLM's z-loss), its gradient
        ``2 z_loss lse(z_i) softmax(z_i)`` in the same second pass.

    Returns
    -------
    loss : float
    grad_hidden : ndarray of shape (n_samples, d)
    grad_weight : ndarray of shape (n_classes, d)
    grad_bias : ndarray of shape (n_classes,) (only when ``bias`` is given)

    Notes
    -----
    With :math:`z = h W^T + b`,

    .. math::

        \ell_i = \operatorname{lse}(z_i) - z_{i, y_i}, \qquad
        \frac{\partial \ell_i}{\partial z_i} = \operatorname{softmax}(z_i) - e_{y_i},

    and :math:`\partial/\partial h = G W`, :math:`\partial/\partial W = G^T h`
    with :math:`G` the gradient of the logits, computed one chunk at a time.

    See Also
    --------
    sparse_categorical_crossentropy

    Examples
    --------
    >>> import numpy as np
    >>> from logitlab.losses import linear_cross_entropy, sparse_categorical_crossentropy
    >>> rng = np.random.default_rng(0)
    >>> h, W, y = rng.normal(size=(8, 4)), rng.normal(size=(50, 4)), rng.integers(0, 50, 8)
    >>> loss, gh, gw = linear_cross_entropy(h, W, y, chunk_size=16)
    >>> bool(np.isclose(loss, sparse_categorical_crossentropy(y, h @ W.T, from_logits=True)))
    True
    """
    reduction = check_reduction(reduction)
    if reduction == "none":
        raise ValueError("`reduction` must be 'mean' or 'sum' for linear_cross_entropy")
    # computed in the inputs' own precision (float16 in float32), and without copies of
    # `weight`: this function is for size; the exact reference is sparse_categorical_crossentropy
    dtype = np.result_type(np.float32, _float_dtype(hidden, "hidden"), _float_dtype(weight, "weight"))
    h = np.asarray(hidden, dtype=dtype)
    W = np.asarray(weight, dtype=dtype)
    if h.ndim != 2 or W.ndim != 2 or h.shape[1] != W.shape[1]:
        raise ValueError("`hidden` (n_samples, d) and `weight` (n_classes, d) must share d; got "
                         f"shapes {h.shape} and {W.shape}")
    n, n_classes = h.shape[0], W.shape[0]
    b = None
    if bias is not None:
        b = np.asarray(bias, dtype=dtype)
        if b.shape != (n_classes,):
            raise ValueError(f"`bias` must have shape ({n_classes},); got {describe(bias)}")
    y = check_integer_labels(labels, "labels", n_classes)
    if y.shape != (n,):
        raise ValueError(f"`labels` must have shape ({n},); got {y.shape}")
    chunk = int(check_number(chunk_size, "chunk_size", low=1, integer=True))
    z_loss = check_z_loss(z_loss)
    rows = np.arange(n)

    # pass 1: running max and rescaled sum of exponentials, and the true-class logit
    m = np.full(n, -np.inf, dtype=dtype)
    s = np.zeros(n, dtype=dtype)
    z_true = np.empty(n, dtype=dtype)
    for lo in range(0, n_classes, chunk):
        hi = min(lo + chunk, n_classes)
        z = _chunk_logits(h, W, b, lo, hi)
        if not np.isfinite(z).all():  # checked per chunk: no mask the size of `weight`
            raise ValueError("`hidden`, `weight` and `bias` must be finite")
        m_new = np.maximum(m, z.max(axis=1))
        s *= np.exp(m - m_new)
        z -= m_new[:, None]
        np.exp(z, out=z)
        s += z.sum(axis=1)
        m = m_new
        inside = (y >= lo) & (y < hi)
        z_true[inside] = (h[inside] * W[y[inside]]).sum(axis=1) + (b[y[inside]] if b is not None else 0)
    lse = m + np.log(s)
    # an empty batch: loss 0 and zero gradients, as the core's mean over no rows
    scale = (1.0 / n if n else 0.0) if reduction == "mean" else 1.0
    per_row = lse - z_true
    if z_loss:
        per_row = per_row + z_loss * lse * lse
    loss = float(np.sum(per_row, dtype=np.float64)) * scale
    # the softmax term's factor: 1, or 1 + 2 z_loss lse with the z-loss
    p_factor = (1.0 + 2.0 * z_loss * lse)[:, None] if z_loss else None

    # pass 2: recompute each chunk, G = (softmax - onehot) * scale, accumulate the gradients
    grad_h = np.zeros_like(h)
    grad_W = np.empty_like(W)
    grad_b = None if b is None else np.empty_like(b)
    for lo in range(0, n_classes, chunk):
        hi = min(lo + chunk, n_classes)
        g = _chunk_logits(h, W, b, lo, hi)
        g -= lse[:, None]
        np.exp(g, out=g)
        if p_factor is not None:
            g *= p_factor
        inside = (y >= lo) & (y < hi)
        g[rows[inside], y[inside] - lo] -= 1.0
        g *= scale
        grad_h += g @ W[lo:hi]
        np.matmul(g.T, h, out=grad_W[lo:hi])
        if grad_b is not None:
            g.sum(axis=0, out=grad_b[lo:hi])
    if grad_b is None:
        return loss, grad_h, grad_W
    return loss, grad_h, grad_W, grad_b
