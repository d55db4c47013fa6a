"""Discrete distributions: one-hot encoding, entropy, KL divergence, cross-entropy.

All logarithms are natural (nats), and ``0 * log 0 = 0`` throughout
(``xlogy``, scipy.special's convention).
"""

from __future__ import annotations

import numpy as np

from ._softmax import xlogy

from ._validation import (
    as_float_array,
    check_axis,
    check_integer_labels,
    check_number,
    check_result_size,
    check_same_shape,
)

__all__ = ["one_hot", "entropy", "kl_divergence", "cross_entropy"]


def one_hot(labels, num_classes, dtype=float):
    """Encode integer class labels as one-hot vectors.

    Parameters
    ----------
    labels : array-like of int, shape (...)
        Class indices in ``[0, num_classes)``.
    num_classes : int
        Number of classes ``C``, at least 1. A result larger than this
        machine's physical memory is refused, naming ``num_classes``,
        before anything is allocated.
    dtype : dtype, default=float
        Dtype of the result.

    Returns
    -------
    ndarray of shape (..., num_classes)

    Examples
    --------
    >>> from logitlab import one_hot
    >>> one_hot([2, 0], 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    check_number(num_classes, "num_classes", low=1, integer=True)
    y = check_integer_labels(labels, "labels", int(num_classes))
    check_result_size(y.shape + (int(num_classes),), dtype, "num_classes")
    out = np.zeros(y.shape + (int(num_classes),), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def _distribution(p, name):
    """``p`` as a float array of probabilities: every entry in [0, 1] (logits above 1 used
    to pass, and gave a negative cross-entropy); a NaN passes through, as in SciPy."""
    arr, out_dtype = as_float_array(p, name)
    with np.errstate(invalid="ignore"):
        bad = (arr < 0) | (arr > 1)
    if bad.any():
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1]; got the value "
            f"{arr[bad].ravel()[0].item()!r} (for logits, take softmax first, or use "
            "log_softmax and the losses' from_logits=True)"
        )
    return arr, out_dtype


def _reduce(terms, axis, out_dtype):
    return np.sum(terms, axis=axis).astype(out_dtype, copy=False)[()]


def entropy(p, axis=-1):
    r"""Shannon entropy of a discrete distribution, in nats.

    Parameters
    ----------
    p : array-like of shape (..., n_classes)
        Probabilities, in [0, 1] (not renormalised).
    axis : int, default=-1
        The class axis.

    Returns
    -------
    ndarray of ``p``'s shape without ``axis``

    Notes
    -----
    .. math:: H(p) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0.

    See Also
    --------
    cross_entropy, kl_divergence

    Examples
    --------
    >>> from logitlab import entropy
    >>> float(entropy([0.5, 0.5, 0.0]))
    0.6931471805599453
    """
    arr, out_dtype = _distribution(p, "p")
    axis = check_axis(axis, arr.ndim, array_name="p")
    return _reduce(-xlogy(arr, arr), axis, out_dtype)


def kl_divergence(p, q, axis=-1):
    r"""Kullback-Leibler divergence :math:`D_{KL}(p \,\|\, q)`, in nats.

    Parameters
    ----------
    p, q : array-like of shape (..., n_classes)
        Probabilities of the same shape.
    axis : int, default=-1
        The class axis.

    Returns
    -------
    ndarray of the shape without ``axis``

    Notes
    -----
    .. math:: D_{KL}(p \,\|\, q) = \sum_i p_i \log \frac{p_i}{q_i},

    with :math:`0 \log(0/q) = 0` and :math:`p \log(p/0) = +\infty` for
    :math:`p > 0`. Each term is :math:`p \log(p/q)`, which is
    exact near :math:`p = q` (as :func:`scipy.special.rel_entr`); where :math:`p/q` overflows (``q``
    subnormal) the term is :math:`p (\log p - \log q)` instead. Then
    :math:`H(p, q) = H(p) + D_{KL}(p \| q)` holds to rounding.

    See Also
    --------
    entropy, cross_entropy

    Examples
    --------
    >>> from logitlab import kl_divergence
    >>> round(float(kl_divergence([0.5, 0.5], [0.9, 0.1])), 12)
    0.510825623766
    """
    a, out_dtype = _distribution(p, "p")
    b, out_b = _distribution(q, "q")
    check_same_shape(a, b, "p", "q")
    axis = check_axis(axis, a.ndim, array_name="p")
    out_dtype = np.result_type(out_dtype, out_b)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # p log(p/q) is exact near p = q; 0 log(0/q) = 0; p > 0 = q gives +inf
        terms = np.where(a == 0, 0.0, a * np.log(a / b))
        terms = np.where((a > 0) & (b == 0), np.inf, terms)
    # p/q overflowed although q > 0: use the difference of logs instead.
    bad = np.isinf(terms) & (b > 0)
    if bad.any():
        terms = np.where(bad, xlogy(a, a) - xlogy(a, b), terms)
    return _reduce(terms, axis, out_dtype)


def cross_entropy(p, q, axis=-1):
    r"""Cross-entropy :math:`H(p, q)` of distribution ``q`` relative to ``p``, in nats.

    Parameters
    ----------
    p : array-like of shape (..., n_classes)
        The true distribution (for example one-hot targets).
    q : array-like of shape (..., n_classes)
        The estimated distribution (probabilities; for logits use
        :func:`logitlab.losses.categorical_crossentropy` with
        ``from_logits=True``).
    axis : int, default=-1
        The class axis.

    Returns
    -------
    ndarray of the shape without ``axis``

    Notes
    -----
    .. math:: H(p, q) = -\sum_i p_i \log q_i = H(p) + D_{KL}(p \,\|\, q).

    See Also
    --------
    entropy, kl_divergence

    Examples
    --------
    >>> from logitlab import cross_entropy
    >>> float(cross_entropy([0.0, 1.0], [0.25, 0.75]))
    0.2876820724517809
    """
    a, out_dtype = _distribution(p, "p")
    b, out_b = _distribution(q, "q")
    check_same_shape(a, b, "p", "q")
    axis = check_axis(axis, a.ndim, array_name="p")
    out_dtype = np.result_type(out_dtype, out_b)
    with np.errstate(divide="ignore"):  # log of zero is OK: it is +inf cross-entropy
        return _reduce(-xlogy(a, b), axis, out_dtype)
