"""The kernels' contracts in NumPy, for when a kernel cannot be compiled.

``_jit.launch`` calls these in place of a kernel pair that Numba failed to
compile (or when Numba's import failed halfway through a kernel module), with
the kernel's own arguments: each writes what the kernel writes, so that
every caller (the public functions, and the lean in-place path that
``Sequential.fit`` uses, which has no reference of its own to turn to)
gets the NumPy reference's result without knowing that the kernel is
missing. The arithmetic is the core's: :func:`~logitlab._softmax.softmax_parts`
and ``_lse_last``, in the reference's compute dtype (float64 for float32).
Adam's step is the optimizer's own NumPy update, in the parameters' dtype.

As the kernels do, a row whose maximum is not finite, or that holds a NaN,
is flagged in ``bad`` (the callers give it the reference's limits, or stop);
its outputs here are the reference's anyway.
"""

from __future__ import annotations

import numpy as np

from ._softmax import _lse_last, softmax_parts
from ._validation import compute_dtype

__all__ = ["serving"]


def _compute(x):
    """``x`` in the reference's compute dtype, a copy (the kernels may write over ``x``)."""
    return np.array(x, dtype=compute_dtype(x.dtype))


def _flag_bad(z, bad):
    with np.errstate(invalid="ignore"):
        bad[:] = ~np.isfinite(np.max(z, axis=-1))  # NaN max: a NaN in the row


def softmax_rows(x, out, bad, threaded=False):
    z = _compute(x)
    _flag_bad(z, bad)
    with np.errstate(over="ignore"):
        out[...] = softmax_parts(z, log=False)[1]


def log_softmax_rows(x, out, bad):
    z = _compute(x)
    _flag_bad(z, bad)
    with np.errstate(over="ignore"):
        out[...] = softmax_parts(z, prob=False)[0]


def logsumexp_rows(x, out, bad):
    z = _compute(x)
    _flag_bad(z, bad)
    out[...] = _lse_last(z)[:, 0]


def _take(a, y):
    return np.take_along_axis(a, y[:, None], axis=-1)[:, 0]


def sparse_ce_rows(x, labels, weight, scale, grad, loss, bad, refine, threaded=False):
    """loss_i = -w_i log p_iy; grad_i = scale w_i (p_i - onehot(y_i)); rows with
    ``w_i == 0`` have loss 0 and their label is not read (``grad`` may be ``x``)."""
    z = _compute(x)
    _flag_bad(z, bad)
    logp, p = softmax_parts(z)
    keep = weight != 0.0
    y = np.where(keep, labels, 0)
    with np.errstate(invalid="ignore", over="ignore"):
        loss[...] = np.where(keep, -weight * _take(logp, y), 0.0)
        a = scale * weight
        g = p * a[:, None]
        np.put_along_axis(g, y[:, None], (_take(g, y) - a)[:, None], axis=-1)
        grad[...] = g


def categorical_ce_rows(x, t, scale, grad, loss, bad):
    """loss_i = -sum_j t_ij log p_ij; grad_i = scale (T_i p_i - t_i), T_i = sum_j t_ij."""
    z = _compute(x)
    _flag_bad(z, bad)
    logp, p = softmax_parts(z)
    tc = np.asarray(t, dtype=z.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        loss[...] = -np.sum(np.where(tc != 0.0, tc * logp, 0.0), axis=-1)
        grad[...] = scale * (np.sum(tc, axis=-1, keepdims=True) * p - tc)


def adam_update(param, grad, m, v, v_hat, c1, c2, alpha, epsilon):
    """Adam's step, in place: the optimizer's own NumPy update (its home), with fresh scratch;
    an empty ``v_hat`` means no amsgrad."""
    from .optimizers._optimizers import _adam_numpy  # here only: the core never imports it

    _adam_numpy(param, grad, m, v, v_hat if v_hat.size else None, c1, c2, alpha, epsilon,
                np.empty_like(param), np.empty_like(param))


def linear_ce(X, W, b, labels, weight, GW, gb):
    """``sum_i w_i loss_i`` of the logits ``X W^T + b`` (NaN if a row is not finite); adds
    ``G^T X`` into ``GW`` and ``G^T 1`` into ``gb``: ``sparse_ce_rows``'s contract on the
    products, in the inputs' dtype as the kernel computes them."""
    z = np.asarray(X @ W.T + b, dtype=W.dtype)
    n = len(z)
    loss, bad = np.empty(n), np.zeros(n, dtype=bool)
    sparse_ce_rows(z, labels, weight, 1.0, z, loss, bad, False)
    GW += np.asarray(X.T @ z).T.astype(GW.dtype, copy=False)
    gb += z.sum(axis=0, dtype=np.float64)
    return float("nan") if bad.any() else float(np.sum(loss))


def _csr_rows(indptr, indices, data, lo, hi, n_features):
    """Rows ``lo:hi`` of the CSR matrix ``(data, indices, indptr)``, as scipy's (views)."""
    import scipy.sparse as sp

    start, stop = indptr[lo], indptr[hi]
    return sp.csr_matrix((data[start:stop], indices[start:stop], indptr[lo:hi + 1] - start),
                         shape=(hi - lo, n_features))


def linear_ce_csr(indptr, indices, data, WT, b, labels, weight, lo, hi, GWT, gb):
    """``linear_ce`` for rows ``lo:hi`` of a CSR matrix, ``W`` and the gradient transposed."""
    X = _csr_rows(indptr, indices, data, lo, hi, len(WT))
    GW = np.zeros((WT.shape[1], len(WT)), dtype=GWT.dtype)
    loss = linear_ce(X, WT.T, b, labels[lo:hi], weight[lo:hi], GW, gb)
    GWT += GW.T
    return loss


def linear_proba_csr(indptr, indices, data, WT, b, lo, hi, P):
    """``P = softmax(X W^T + b)`` for rows ``lo:hi`` of a CSR matrix (``P``: ``hi - lo`` rows)."""
    z = np.asarray(_csr_rows(indptr, indices, data, lo, hi, len(WT)) @ WT + b)
    P[...] = softmax_parts(_compute(z))[1]


def linear_hvp_csr(indptr, indices, data, VT, c, P, weight, lo, hi, HVT, hc):
    """Rows ``lo:hi``'s part of the multinomial Hessian times ``(V, c)`` (``P``: those rows'
    probabilities): ``r_i = w_i (p_i *
    u_i - p_i (p_i . u_i))``, ``u_i = V x_i + c``; ``HVT += X^T R``, ``hc += R^T 1``."""
    X = _csr_rows(indptr, indices, data, lo, hi, len(VT))
    U = np.asarray(X @ VT + c, dtype=VT.dtype)
    p = P
    R = np.asarray(weight[lo:hi], dtype=VT.dtype)[:, None] * p * (
        U - np.sum(p * U, axis=1, keepdims=True))
    HVT += np.asarray(X.T @ R).astype(HVT.dtype, copy=False)
    hc += R.sum(axis=0, dtype=np.float64)


_NAMES = ("softmax_rows", "log_softmax_rows", "logsumexp_rows", "sparse_ce_rows",
          "categorical_ce_rows", "adam_update", "linear_ce", "linear_ce_csr",
          "linear_proba_csr", "linear_hvp_csr")


def serving(pair, kernels):
    """The NumPy function with the contract of the kernel ``pair`` of module ``kernels``."""
    for name in _NAMES:
        if kernels is not None and getattr(kernels, name, None) is pair:
            return globals()[name]
    raise LookupError(f"no NumPy fallback for the kernel pair {pair!r}")
