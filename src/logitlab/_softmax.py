"""The softmax family: logsumexp, softmax, log_softmax, sigmoid, sparsemax.

NumPy in, NumPy out. Every stability trick of the package lives here, once:

* logsumexp shifts by the row maximum, treating a non-finite maximum as 0
  (JAX, SciPy), and takes ``log1p`` of the sum *without* the maximum's own
  term, which is exactly 1 (SciPy's ``_logsumexp``), so that
  ``log_softmax`` of the winning class keeps its relative accuracy;
* float32 is computed in float64 and float16 in float32, so the result is
  the exact value rounded once (see ``_validation.compute_dtype``);
* rows with no entry taking part, or with ``+inf`` entries, are given their
  mathematical limit instead of ``0/0``.

Every NumPy path of the package takes its logsumexp from here
(``_shifted_exp``, or ``_shifted_exp_inplace`` for the lean in-place sparse
cross-entropy). Two exceptions, by design: ``losses/_linear.py`` keeps an
online (running max, rescaled sum) logsumexp over class chunks, since it never
holds a whole row; and the compiled kernels (``_kernels.py``) compute the same
identity per row in their own loops.

References
----------
P. Blanchard, D. J. Higham and N. J. Higham, "Accurately computing the
log-sum-exp and softmax functions", IMA J. Numer. Anal. 41 (2021).
"""

from __future__ import annotations

import numpy as np

from . import _jit
from ._validation import (
    as_float_array,
    check_axis,
    check_number,
    check_out,
    check_where,
    compute_dtype,
    deliver,
)

__all__ = ["logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid", "sparsemax",
           "entmax15", "entmax_bisect"]


def _prepare(x, axis, where, name="x", min_ndim=0):
    """``(z, axis, out_dtype)``: ``x`` as a compute array with the class axis moved last
    (contiguous) and -inf where ``where`` is False. Every NumPy path of the softmax family
    and the losses starts here."""
    z, out_dtype = as_float_array(x, name, min_ndim=min_ndim)
    axis = check_axis(axis, z.ndim, array_name=name)
    mask = check_where(where, z.shape)
    if mask is not None:
        z = np.where(mask, z, -np.inf).astype(z.dtype, copy=False)
    z = np.ascontiguousarray(np.moveaxis(z, axis, -1))
    return z, axis, out_dtype


def _kernel_rows(x, axis, where, name="x"):
    """``(kernels, rows, shape, axis)`` when a compiled kernel serves this call, else None.

    ``rows`` is ``x`` with the class axis moved last, made contiguous once,
    as an ``(n, C)`` array; ``shape`` is its shape before the reshape.
    """
    if where is not None or not isinstance(x, np.ndarray) or x.ndim == 0:
        return None
    kernels = _jit.kernels_for(x)
    if kernels is None:
        return None
    ax = check_axis(axis, x.ndim, array_name=name)
    z = np.ascontiguousarray(np.moveaxis(x, ax, -1))
    if z.shape[-1] == 0:
        return None
    return kernels, z.reshape(-1, z.shape[-1]), z.shape, ax


def _rows_buffer(out, rows, ax):
    """Where a kernel writes its ``rows``-shaped result: ``out`` itself when its
    memory has that layout (class axis last, C-contiguous), else a fresh array."""
    if out is not None and ax == out.ndim - 1 and out.flags.c_contiguous:
        return out.reshape(rows.shape)
    return np.empty_like(rows)


def _patch_kernel_rows(bad, rows, out, reference):
    """Rows the kernel left (a non-finite maximum, a NaN) get the reference's limits."""
    if bad.any():
        with np.errstate(over="ignore"):
            out[bad] = reference(rows[bad].astype(compute_dtype(rows.dtype)))


def _rows_call(kind, x, axis, where, out):
    """softmax / log_softmax through a kernel, or None when the reference serves the call."""
    found = _kernel_rows(x, axis, where)
    if found is None:
        return None
    kernels, rows, shape, ax = found
    check_out(out, x.shape, x.dtype, {"x": x})
    result = _rows_buffer(out, rows, ax)
    bad = np.zeros(len(rows), dtype=bool)
    if kind == "softmax":
        _jit.launch(kernels.softmax_rows, len(rows), rows.size, rows, result, bad, threaded=True)
    else:
        _jit.launch(kernels.log_softmax_rows, len(rows), rows.size, rows, result, bad)
    log = kind == "log_softmax"
    _patch_kernel_rows(bad, rows, result,
                       lambda z: softmax_parts(z, log=log, prob=not log)[0 if log else 1])
    return deliver(np.moveaxis(result.reshape(shape), -1, ax), out)


def _reference_call(kind, x, axis, where, out):
    """softmax / log_softmax by the NumPy reference."""
    z, ax, out_dtype = _prepare(x, axis, where)
    check_out(out, np.shape(x), out_dtype, {"x": x, "where": where})
    log = kind == "log_softmax"
    parts = softmax_parts(z, log=log, prob=not log)
    return deliver(_finish(parts[0 if log else 1], ax, out_dtype), out)


def _finish(out, axis, out_dtype):
    # a value beyond the output dtype's range becomes +-inf: that is its true rounding
    with np.errstate(over="ignore"):
        return np.moveaxis(out, -1, axis).astype(out_dtype, copy=False)


def _shifted_exp(z):
    """Row max ``m``, ``d = z - shift``, ``e = exp(d)`` and ``r = sum(e) - 1``.

    ``shift`` is ``m`` where ``m`` is finite and 0 elsewhere. ``r`` is summed
    without one maximal entry, whose term is exactly ``exp(0) = 1``, so
    ``log(sum(e)) = log1p(r)`` is accurate when the other terms are small.
    Only rows with a finite maximum are meaningful; callers patch the rest.
    """
    m = np.max(z, axis=-1, keepdims=True)
    shift = np.where(np.isfinite(m), m, 0.0)
    # inf - inf cannot happen (shift is finite); exp(+inf) on +inf rows is patched later.
    with np.errstate(invalid="ignore", over="ignore"):
        d = z - shift
        e = np.exp(d)
    top = np.argmax(z, axis=-1, keepdims=True)
    np.put_along_axis(e, top, 0.0, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.sum(e, axis=-1, keepdims=True)
    np.put_along_axis(e, top, 1.0, axis=-1)
    return m, shift, d, e, r


def _shifted_exp_inplace(z):
    """:func:`_shifted_exp` in place, for callers that own ``z`` and know it finite.

    ``z``: a C-contiguous (n, C) array of finite logits. Overwrites it with
    ``e = exp(z - m)`` and returns ``(m, r)``, the row max (shape (n,)) and
    ``r = sum(e) - 1`` summed without the maximal entry's own 1, so that
    ``logsumexp = m + log1p(r)`` as in :func:`_lse_last` (the lean sparse
    cross-entropy's path).
    """
    rows = np.arange(len(z))
    top = np.argmax(z, axis=1)
    m = z[rows, top]
    z -= m[:, None]
    np.exp(z, out=z)
    z[rows, top] = 0.0
    r = z.sum(axis=1)
    z[rows, top] = 1.0
    return m, r


def expit(z):
    """Stable sigmoid of a compute array: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) below."""
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_expit(z):
    """log sigmoid(z) = -logaddexp(0, -z) (optax); log(1 - sigmoid(z)) = log_expit(-z)."""
    return -np.logaddexp(0.0, -z)


def xlogy(a, b):
    """a * log(b) with 0 * log(anything) = 0 (scipy.special.xlogy's convention)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a == 0, 0.0, a * np.log(b))


def _posinf_share(z):
    """The limit of softmax on a row with +inf entries: 1/k on each of the k."""
    hits = z == np.inf
    return hits / np.sum(hits, axis=-1, keepdims=True)


def _patch_rows(m, z, out, log=False):
    """Give rows whose max ``m`` is not finite their limits (probabilities, or logs).

    Nothing taking part (max -inf): 0 (log: -inf); +inf entries: an equal
    share among them; NaN: NaN for the row.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        share = _posinf_share(z)
        out = np.where(m == -np.inf, -np.inf if log else 0.0, out)
        out = np.where(m == np.inf, np.log(share) if log else share, out)
        return np.where(np.isnan(m), np.nan, out)


def softmax_parts(z, *, log=True, prob=True):
    """``(log_softmax(z), softmax(z))`` over the last axis of a compute array.

    One exponential pass gives both; either may be skipped (returned as
    None). Rows whose maximum is not finite get their limits (see softmax).
    This is the internal entry point the losses use.
    """
    if z.shape[-1] == 0:
        return (z if log else None), (z if prob else None)
    m, _, d, e, r = _shifted_exp(z)
    # inf/inf and inf-inf arise only on +inf rows, which are patched below
    with np.errstate(invalid="ignore"):
        logp = d - np.log1p(r) if log else None
        p = e / (1.0 + r) if prob else None
    if not np.isfinite(m).all():
        if log:
            logp = _patch_rows(m, z, logp, log=True)
        if prob:
            p = _patch_rows(m, z, p)
    return logp, p


def _lse_last(z):
    """logsumexp over the last axis of a compute array, keeping it (length one)."""
    if z.shape[-1] == 0:
        return np.full(z.shape[:-1] + (1,), -np.inf, dtype=z.dtype)
    m, shift, _, _, r = _shifted_exp(z)
    lse = shift + np.log1p(r)
    return np.where(np.isfinite(m), lse, m)  # -inf, +inf and NaN rows are their max


def logsumexp(x, axis=-1, *, keepdims=False, where=None):
    r"""Logarithm of the sum of exponentials, computed without overflow.

    Parameters
    ----------
    x : array-like of shape (..., n_classes, ...)
        Logits.
    axis : int, default=-1
        The axis to reduce (the class axis).
    keepdims : bool, default=False
        Keep the reduced axis with length one.
    where : array-like of bool, broadcastable to ``x.shape``, optional
        Entries that take part; the others count as ``-inf``.

    Returns
    -------
    ndarray
        ``x``'s shape without ``axis`` (or with length one there), in ``x``'s
        floating dtype (float64 for integer input).

    Notes
    -----
    .. math::

        \operatorname{lse}(x) = m + \log\Big(1 + \sum_{j \ne j^*} e^{x_j - m}\Big),
        \qquad m = x_{j^*} = \max_j x_j .

    A row with no entry taking part gives ``-inf``; a ``+inf`` entry gives
    ``+inf``; a NaN gives NaN for its row only.

    See Also
    --------
    log_softmax, softmax

    References
    ----------
    Blanchard, Higham and Higham, IMA J. Numer. Anal. 41 (2021).

    Examples
    --------
    >>> import numpy as np
    >>> from logitlab import logsumexp
    >>> float(logsumexp([1000.0, 1000.0]))
    1000.6931471805599
    >>> logsumexp(np.array([[0.0, -np.inf], [-np.inf, -np.inf]]))
    array([  0., -inf])
    """
    found = _kernel_rows(x, axis, where)
    if found is not None:
        kernels, rows, shape, ax = found
        lse = np.empty(len(rows), dtype=np.float64)
        bad = np.zeros(len(rows), dtype=bool)
        _jit.launch(kernels.logsumexp_rows, len(rows), rows.size, rows, lse, bad)
        _patch_kernel_rows(bad, rows, lse, lambda z: _lse_last(z)[..., 0])
        lse, out_dtype = lse.reshape(shape[:-1] + (1,)), rows.dtype
    else:
        z, ax, out_dtype = _prepare(x, axis, where)
        lse = _lse_last(z)
    lse = np.moveaxis(lse, -1, ax) if keepdims else lse[..., 0]
    with np.errstate(over="ignore"):
        return lse.astype(out_dtype, copy=False)[()]


def softmax(x, axis=-1, *, where=None, out=None):
    r"""Softmax: turn logits into probabilities that sum to one along ``axis``.

    Parameters
    ----------
    x : array-like of shape (..., n_classes, ...)
        Logits (unnormalised log-probabilities).
    axis : int, default=-1
        The class axis.
    where : array-like of bool, broadcastable to ``x.shape``, optional
        Entries that take part; the others get probability 0.
    out : ndarray, optional
        Where to write the result: an array of ``x``'s shape and result
        dtype, not overlapping ``x``. Reusing one saves the fresh
        allocation, whose first touch (the OS zeroing new pages) costs
        about half as much again as the computation on large arrays.

    Returns
    -------
    proba : ndarray of the shape of ``x``
        In ``x``'s floating dtype (float64 for integer input); ``out`` if
        given.

    Notes
    -----
    .. math::

        \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}},
        \qquad m = \max_j x_j .

    Limits instead of ``0/0``: a row with no entry taking part (all masked
    or all ``-inf``) gives zeros; ``+inf`` entries share the probability
    equally; a NaN gives NaN for its row only.

    See Also
    --------
    log_softmax, sparsemax, logsumexp

    References
    ----------
    Blanchard, Higham and Higham, IMA J. Numer. Anal. 41 (2021).

    Examples
    --------
    >>> from logitlab import softmax
    >>> softmax([1000.0, 1001.0, 1002.0])
    array([0.09003057, 0.24472847, 0.66524096])
    >>> softmax([1.0, 2.0, 3.0], where=[True, True, False])
    array([0.26894142, 0.73105858, 0.        ])
    """
    fast = _rows_call("softmax", x, axis, where, out)
    return fast if fast is not None else _reference_call("softmax", x, axis, where, out)


def log_softmax(x, axis=-1, *, where=None, out=None):
    r"""Logarithm of the softmax, computed from the logits without a log of 0.

    Parameters
    ----------
    x : array-like of shape (..., n_classes, ...)
        Logits.
    axis : int, default=-1
        The class axis.
    where : array-like of bool, broadcastable to ``x.shape``, optional
        Entries that take part; the others get ``-inf``.
    out : ndarray, optional
        Where to write the result, as in :func:`softmax`.

    Returns
    -------
    ndarray of the shape of ``x``
        Log-probabilities, in ``x``'s floating dtype; ``out`` if given.

    Notes
    -----
    .. math::

        \log\operatorname{softmax}(x)_i = (x_i - m)
            - \log\Big(1 + \sum_{j \ne j^*} e^{x_j - m}\Big).

    This is what "preferred" losses (``from_logits=True``) are built on:
    ``log(softmax(x))`` underflows to ``-inf`` where this stays finite.

    See Also
    --------
    softmax, logsumexp

    Examples
    --------
    >>> import numpy as np
    >>> from logitlab import log_softmax
    >>> log_softmax([0.0, 800.0])
    array([-800.,    0.])
    >>> np.log(np.exp([0.0, 800.0]) / np.exp([0.0, 800.0]).sum())  # doctest: +SKIP
    array([-inf,  nan])
    """
    fast = _rows_call("log_softmax", x, axis, where, out)
    return fast if fast is not None else _reference_call("log_softmax", x, axis, where, out)


def sigmoid(x):
    r"""The logistic sigmoid, element-wise: :math:`\sigma(x) = 1 / (1 + e^{-x})`.

    Computed as ``1 / (1 + e^-x)`` for ``x >= 0`` and ``e^x / (1 + e^x)``
    below, so it never overflows.

    Parameters
    ----------
    x : array-like
        Logits, any shape.

    Returns
    -------
    ndarray of the shape of ``x``, in its floating dtype.

    See Also
    --------
    log_sigmoid, softmax

    Examples
    --------
    >>> from logitlab import sigmoid
    >>> sigmoid([-1000.0, 0.0, 1000.0])
    array([0. , 0.5, 1. ])
    """
    z, out_dtype = as_float_array(x, "x")
    return expit(z).astype(out_dtype, copy=False)[()]


def log_sigmoid(x):
    r"""Logarithm of the sigmoid, element-wise, accurate for all ``x``.

    Notes
    -----
    :math:`\log\sigma(x) = -\log(1 + e^{-x}) = -\operatorname{logaddexp}(0, -x)`
    (optax's identity; :func:`numpy.logaddexp` uses ``log1p``); and
    :math:`\log(1 - \sigma(x)) = \log\sigma(-x)`.

    Parameters
    ----------
    x : array-like
        Logits, any shape.

    Returns
    -------
    ndarray of the shape of ``x``, in its floating dtype.

    See Also
    --------
    sigmoid

    Examples
    --------
    >>> from logitlab import log_sigmoid
    >>> log_sigmoid([-1000.0, 0.0, 40.0])
    array([-1.00000000e+03, -6.93147181e-01, -4.24835426e-18])
    """
    z, out_dtype = as_float_array(x, "x")
    return log_expit(z).astype(out_dtype, copy=False)[()]


def _sparsemax_last(d):
    """sparsemax of shifted scores (class axis last), by the sorted closed form."""
    n = d.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        srt = -np.sort(-d, axis=-1)
        cs = np.cumsum(srt, axis=-1)
        k = np.arange(1, n + 1, dtype=d.dtype)
        support = 1.0 + k * srt > cs
    kz = np.maximum(np.sum(support, axis=-1, keepdims=True), 1)
    tau = (np.take_along_axis(cs, kz - 1, axis=-1) - 1.0) / kz
    with np.errstate(invalid="ignore"):
        return np.maximum(d - tau, 0.0)


def sparsemax(x, axis=-1, *, where=None):
    r"""Sparsemax: the Euclidean projection of the logits onto the simplex.

    Like softmax it gives probabilities that sum to one, but small logits get
    exactly zero.

    Parameters
    ----------
    x : array-like of shape (..., n_classes, ...)
        Logits.
    axis : int, default=-1
        The class axis.
    where : array-like of bool, broadcastable to ``x.shape``, optional
        Entries that take part; the others get probability 0.

    Returns
    -------
    proba : ndarray of the shape of ``x``

    Notes
    -----
    With :math:`z_{(1)} \ge z_{(2)} \ge \dots` the sorted logits,
    :math:`k = \max\{k : 1 + k z_{(k)} > \sum_{j \le k} z_{(j)}\}` and
    :math:`\tau = (\sum_{j \le k} z_{(j)} - 1) / k`,

    .. math:: \operatorname{sparsemax}(z)_i = \max(z_i - \tau, 0).

    The logits are shifted by their maximum first (sparsemax is shift
    invariant), so huge logits do not overflow. Rows with no entry taking
    part, ``+inf`` entries or NaN are treated as in :func:`softmax`.

    See Also
    --------
    softmax

    References
    ----------
    A. F. T. Martins and R. F. Astudillo, "From softmax to sparsemax: a sparse
    model of attention and multi-label classification", ICML 2016.

    Examples
    --------
    >>> from logitlab import sparsemax
    >>> sparsemax([1.0, 2.0, 3.5])
    array([0., 0., 1.])
    >>> sparsemax([1.0, 1.5, 1.2])
    array([0.1, 0.6, 0.3])
    """
    z, ax, out_dtype = _prepare(x, axis, where)
    if z.shape[-1] == 0:
        return _finish(z, ax, out_dtype)
    m = np.max(z, axis=-1, keepdims=True)
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        p = _sparsemax_last(z - shift)
    if not np.isfinite(m).all():
        p = _patch_rows(m, z, p)
    return _finish(p, ax, out_dtype)


def _entmax15_last(d):
    """1.5-entmax of shifted scores (class axis last, max 0), by the sorted closed form.

    Peters, Niculae and Martins (2019), Alg. 2 (the ``entmax`` package's
    ``_entmax_threshold_and_support``): with ``x = d / 2`` sorted down,
    ``tau_k = mean_k - sqrt(max(0, (1 - ss_k) / k))`` where ``mean_k`` and
    ``ss_k`` are the mean and the summed squared deviation of the top ``k``;
    the support is the ``k`` with ``tau_k <= x_(k)``, and ``p = max(x - tau, 0)^2``.
    """
    n = d.shape[-1]
    x = d / 2.0
    srt = -np.sort(-x, axis=-1)
    k = np.arange(1, n + 1, dtype=d.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = np.cumsum(srt, axis=-1) / k
        mean_sq = np.cumsum(srt * srt, axis=-1) / k
        ss = k * (mean_sq - mean * mean)
        tau = mean - np.sqrt(np.maximum((1.0 - ss) / k, 0.0))
        support = np.maximum(np.sum(tau <= srt, axis=-1, keepdims=True), 1)
        tau_star = np.take_along_axis(tau, support - 1, axis=-1)
        return np.maximum(x - tau_star, 0.0) ** 2


def entmax15(x, axis=-1, *, where=None):
    r"""1.5-entmax: a sparse softmax between softmax (alpha=1) and sparsemax (alpha=2).

    Parameters
    ----------
    x : array-like of shape (..., n_classes, ...)
        Scores (logits).
    axis : int, default=-1
        The class axis.
    where : array-like of bool, broadcastable to ``x.shape``, optional
        Entries that take part; the others get probability 0.

    Returns
    -------
    proba : ndarray of the shape of ``x``

    Notes
    -----
    The maximiser of :math:`\langle p, z\rangle + H^T_{3/2}(p)` over the
    simplex (Tsallis entropy), in closed form:

    .. math:: \operatorname{entmax}_{1.5}(z)_i = \big[z_i/2 - \tau\big]_+^2 ,

    with :math:`\tau` from the sorted scores (Peters et al. 2019, Alg. 2).
    Exact zeros outside the support. Computed after shifting by the row max
    (shift invariant); rows with no entry taking part, ``+inf`` entries or NaN
    as in :func:`softmax`.

    See Also
    --------
    entmax_bisect, sparsemax, softmax

    References
    ----------
    B. Peters, V. Niculae and A. F. T. Martins, "Sparse sequence-to-sequence
    models", ACL 2019.

    Examples
    --------
    >>> from logitlab import entmax15
    >>> entmax15([0.0, 1.0, 4.0])
    array([0., 0., 1.])
    >>> entmax15([0.0, 1.0, 1.5]).round(4)
    array([0.0048, 0.324 , 0.6712])
    """
    z, ax, out_dtype = _prepare(x, axis, where)
    if z.shape[-1] == 0:
        return _finish(z, ax, out_dtype)
    m = np.max(z, axis=-1, keepdims=True)
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore"):
        p = _entmax15_last(z - shift)
    if not np.isfinite(m).all():
        p = _patch_rows(m, z, p)
    return _finish(p, ax, out_dtype)


def _entmax_bisect_last(d, alpha):
    """alpha-entmax of shifted scores (class axis last, max 0) by bisection on tau.

    ``p_i = [(alpha - 1) d_i - tau]_+^{1/(alpha - 1)}`` with ``sum p = 1``;
    ``tau`` lies in ``[-1, -(1/n)^(alpha - 1)]`` (the ``entmax`` package's
    bracket). The bracket is halved until it stops shrinking in the compute
    dtype (at most ``nmant + 3`` halvings: 55 in float64, where float32 is
    computed), then ``p`` is normalised to sum exactly to one, as the package
    does with ``ensure_sum_one``.
    """
    n = d.shape[-1]
    a1 = alpha - 1.0
    x = d * a1
    inv = 1.0 / a1
    lo = np.full(d.shape[:-1] + (1,), -1.0, dtype=d.dtype)
    width = 1.0 - (1.0 / n) ** a1
    with np.errstate(invalid="ignore", over="ignore"):
        f_lo = np.sum(np.maximum(x - lo, 0.0) ** inv, axis=-1, keepdims=True) - 1.0
        for _ in range(np.finfo(d.dtype).nmant + 3):
            width /= 2.0
            mid = lo + width
            f_mid = np.sum(np.maximum(x - mid, 0.0) ** inv, axis=-1, keepdims=True) - 1.0
            lo = np.where(f_mid * f_lo >= 0, mid, lo)
            if width <= np.finfo(d.dtype).eps / 4:  # below half an ulp of |tau| <= 1
                break
        p = np.maximum(x - lo, 0.0) ** inv
        return p / np.sum(p, axis=-1, keepdims=True)


def entmax_bisect(x, alpha=1.5, axis=-1, *, where=None):
    r"""alpha-entmax by bisection: softmax at alpha=1, sparsemax at alpha=2.

    Parameters
    ----------
    x : array-like of shape (..., n_classes, ...)
        Scores (logits).
    alpha : float >= 1, default=1.5
        1 gives :func:`softmax`; larger values give sparser outputs.
    axis : int, default=-1
        The class axis.
    where : array-like of bool, optional
        Entries that take part; the others get probability 0.

    Returns
    -------
    proba : ndarray of the shape of ``x``

    Notes
    -----
    .. math:: \operatorname{entmax}_\alpha(z)_i = \big[(\alpha - 1) z_i - \tau\big]_+^{1/(\alpha-1)},
              \qquad \sum_i \operatorname{entmax}_\alpha(z)_i = 1 .

    :math:`\tau` is found by bisection on :math:`[m - 1, m - n^{1-\alpha}]`
    (``m`` the scaled row max), halved until the bracket is below half a
    unit in the last place: at most 55 halvings in float64 (float32 inputs
    are computed in float64), so the result is as accurate as the dtype
    allows; it is then normalised to sum to one (the ``entmax`` package's
    ``ensure_sum_one``; the package's default is 50 halvings).

    See Also
    --------
    entmax15, sparsemax, softmax

    References
    ----------
    B. Peters, V. Niculae and A. F. T. Martins, "Sparse sequence-to-sequence
    models", ACL 2019; M. Blondel, A. F. T. Martins and V. Niculae, "Learning
    with Fenchel-Young losses", JMLR 21 (2020).

    Examples
    --------
    >>> from logitlab import entmax_bisect
    >>> entmax_bisect([0.0, 1.0, 1.5], alpha=1.5).round(4)
    array([0.0048, 0.324 , 0.6712])
    >>> entmax_bisect([1.0, 1.5, 1.2], alpha=2.0).round(4)
    array([0.1, 0.6, 0.3])
    """
    alpha = float(check_number(alpha, "alpha", low=1.0))
    if alpha == 1.0:
        return softmax(x, axis, where=where)
    z, ax, out_dtype = _prepare(x, axis, where)
    if z.shape[-1] == 0:
        return _finish(z, ax, out_dtype)
    m = np.max(z, axis=-1, keepdims=True)
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore"):
        p = _entmax_bisect_last(z - shift, alpha)
    if not np.isfinite(m).all():
        p = _patch_rows(m, z, p)
    return _finish(p, ax, out_dtype)
