"""Kernels of the models and estimators (Numba): Adam's one-pass step, and the linear
objective's evaluation and Hessian products, dense and CSR.

They build on ``_kernels.py``'s helpers (the short-row cross-entropy
``_sparse_ce_block_in_place``, the prefetch IR; ``_kernel_exp.py``'s
exponentials), with which they share a stamp in Numba's cache
(``_kernel_cache.py``: a change to a helper recompiles them), and are
served with its kernels as one set: ``_kernels`` looks them up here when asked
for them (its module ``__getattr__``), so ``_jit`` and the fallbacks find every
kernel there. docs/kernels.md has the
design; docs/performance.md §6 the figures.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._kernel_exp import _SUMS, _fast_exp
from ._kernels import (_SHORT_ROWS, _emit_prefetch, _emit_row_pointer, _like,
                       _sparse_ce_block_in_place)


# ---------------------------------------------------------------- Adam's update


@njit(cache=True, error_model="numpy", nogil=True)
def _adam_update(param, grad, m, v, v_hat, c1, c2, alpha, epsilon):
    """Keras 3's Adam step over flat arrays of one dtype, in place, in one pass.

    ``m += (g - m) c1``; ``v += (g^2 - v) c2``; with amsgrad (``v_hat`` not
    empty) ``v_hat = max(v_hat, v)`` is used for ``v``; ``param -= (m alpha) /
    (sqrt(v) + epsilon)``. The scalars come in the arrays' dtype. The same
    operations in the same order as the optimizer's NumPy update
    (``optimizers._optimizers._adam_numpy``), each rounded to the dtype, so the
    same bits: no fastmath flag (``contract`` would fuse a multiply-add),
    and NumPy's error model, without which Numba checks each division for a
    zero divisor and calls libm's ``sqrtf`` for ``errno``, and LLVM vectorises
    neither. Serial only: the pass over a network's parameters is shorter than
    waking a second thread (docs/performance.md has the figures).
    """
    amsgrad = v_hat.shape[0] != 0
    for i in range(param.shape[0]):
        g = grad[i]
        mi = m[i] + (g - m[i]) * c1
        vi = v[i] + (g * g - v[i]) * c2
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = np.maximum(v_hat[i], vi)  # NumPy's maximum: a NaN wins, as in the reference
            v_hat[i] = vi
        param[i] -= (mi * alpha) / (np.sqrt(vi) + epsilon)


adam_update = (_adam_update, _adam_update)  # _jit.launch's (serial, parallel) pair: serial both


# ---------------------------------------------------------------- a linear model's cross-entropy

_LINEAR_ROWS = 4  # rows whose logits (and gradient terms) share each load of W (or of GW)


@njit(cache=True, fastmath=_SUMS, nogil=True, error_model="numpy")
def _linear_ce(X, W, b, labels, weight, GW, gb):
    """``sum_i w_i loss_i`` of the logits ``X W^T + b``, in one pass over ``X`` by blocks of
    ``_SHORT_ROWS`` rows; adds ``G^T X`` into ``GW`` and ``G^T 1`` into ``gb``, ``G`` the
    cross-entropy's gradient (``w_i (softmax(z_i) - onehot(y_i))``). NaN if a row's sum
    is not finite.

    A block's logits (four rows a load of ``W``), its cross-entropy in place by
    ``_sparse_ce_block_in_place`` (short rows: the caller keeps ``k`` below
    ``_in_place_below``), then its gradient terms (four rows a load of ``GW``) while the
    rows are in cache: ``X`` is read from memory once. For few classes this beats
    the two BLAS products it replaces, whose tall-and-skinny shapes use a core badly
    (docs/performance.md). Rows past the end are computed on the last row again and
    given a zero gradient.
    """
    n, d = X.shape
    k = W.shape[0]
    z = np.empty((_SHORT_ROWS, k), dtype=X.dtype)
    total = 0.0
    for lo in range(0, n, _SHORT_ROWS):
        rows = min(_SHORT_ROWS, n - lo)
        for r0 in range(0, rows, _LINEAR_ROWS):
            x0, x1, x2, x3 = X[lo + r0], X[min(lo + r0 + 1, n - 1)], \
                X[min(lo + r0 + 2, n - 1)], X[min(lo + r0 + 3, n - 1)]
            for j in range(k):
                w = W[j]
                s0 = s1 = s2 = s3 = b[j]
                for f in range(d):
                    s0 += x0[f] * w[f]
                    s1 += x1[f] * w[f]
                    s2 += x2[f] * w[f]
                    s3 += x3[f] * w[f]
                z[r0, j], z[r0 + 1, j], z[r0 + 2, j], z[r0 + 3, j] = s0, s1, s2, s3
        losses = _sparse_ce_block_in_place(z, labels[lo:], weight[lo:], 1.0, 0, rows)
        for r in range(rows):
            total += losses[r]  # a NaN stays NaN: the caller's signal
            for j in range(k):
                gb[j] += z[r, j]
        z[rows:] = 0.0
        for r0 in range(0, rows, _LINEAR_ROWS):
            x0, x1, x2, x3 = X[lo + r0], X[min(lo + r0 + 1, n - 1)], \
                X[min(lo + r0 + 2, n - 1)], X[min(lo + r0 + 3, n - 1)]
            for j in range(k):
                acc = GW[j]
                g0, g1, g2, g3 = z[r0, j], z[r0 + 1, j], z[r0 + 2, j], z[r0 + 3, j]
                for f in range(d):
                    acc[f] += g0 * x0[f] + g1 * x1[f] + g2 * x2[f] + g3 * x3[f]
    return total


linear_ce = (_linear_ce, _linear_ce)  # serial both: the objective's threads share the rows


_GATHER_AHEAD = 8  # entries ahead whose row of W^T (or of the gradient) is prefetched


# IR, not @njit: Numba has no prefetch. Measured on the Zen 2, 100000 x 50000, 0.2 %, 20
# classes, float64, one thread (/tmp-style loops as _linear_ce_csr's): the gather 102-115 ->
# 80-81 ms and the scatter 103-116 -> 87-88 ms with the rows 8 entries ahead prefetched
# (4 ahead: 86 and 91; 32: no gain).
@intrinsic
def _prefetch_row(typingctx, arr, i):
    """Prefetch row ``i`` of a 2-d array (its first 192 bytes: 24 float64 or 48 float32)."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i = args[1]
        if i.type.width < 64:
            i = builder.sext(i, ir.IntType(64))
        base = builder.bitcast(_emit_row_pointer(builder, ary, i), ir.IntType(8).as_pointer())
        for k in range(0, 192, 64):
            _emit_prefetch(builder, builder.gep(base, [ir.Constant(ir.IntType(64), k)]))
        return context.get_dummy_value()

    return types.none(arr, i), codegen


@njit(cache=True, fastmath=_SUMS, nogil=True)
def _gather_csr(indptr, indices, data, WT, b, lo, hi, z):
    """``z[r] = b + sum_q data[q] WT[indices[q]]`` over the entries ``q`` of CSR row
    ``lo + r``: rows ``lo:hi`` of ``X W^T + b``, gathering the rows of ``WT``
    (``(n_features, k)``) the entries name, each prefetched ``_GATHER_AHEAD`` entries ahead."""
    k = WT.shape[1]
    last = indptr[hi] - 1  # the range's last entry: prefetches stay inside it
    for r in range(hi - lo):
        zr = z[r]
        for j in range(k):
            zr[j] = b[j]
        for q in range(indptr[lo + r], indptr[lo + r + 1]):
            _prefetch_row(WT, indices[min(q + _GATHER_AHEAD, last)])
            v = data[q]
            w = WT[indices[q]]
            for j in range(k):
                zr[j] += v * w[j]


@njit(cache=True, fastmath=_SUMS, nogil=True)
def _scatter_csr(indptr, indices, data, z, lo, hi, GWT, gb):
    """``_gather_csr``'s transpose: ``GWT[indices[q]] += data[q] z[r]`` over the entries of
    CSR row ``lo + r`` (``(X^T Z)`` for rows ``lo:hi``, into ``(n_features, k)``), and
    ``gb += Z^T 1``."""
    k = GWT.shape[1]
    last = indptr[hi] - 1
    for r in range(hi - lo):
        g = z[r]
        for j in range(k):
            gb[j] += g[j]
        for q in range(indptr[lo + r], indptr[lo + r + 1]):
            _prefetch_row(GWT, indices[min(q + _GATHER_AHEAD, last)])
            v = data[q]
            acc = GWT[indices[q]]
            for j in range(k):
                acc[j] += v * g[j]


@njit(cache=True, fastmath=_SUMS, nogil=True, error_model="numpy")
def _linear_ce_csr(indptr, indices, data, WT, b, labels, weight, lo, hi, GWT, gb):
    """``_linear_ce`` for rows ``lo:hi`` of a CSR matrix (``indptr``, ``indices``, ``data``),
    with ``W`` and the gradient transposed: ``WT`` and ``GWT`` are (n_features, k).

    Three passes over the rows: their logits (``_gather_csr``); their cross-entropy in
    place, by blocks (``_sparse_ce_block_in_place``); their gradient terms, scattered
    into the same rows of ``GWT`` (``_scatter_csr``). No transpose of the
    matrix, where scipy's ``X^T G`` needs one in CSR and took 259 ms against the
    scatter's 61 (100000 x 50000, 0.2 %, 20 classes, two threads). Not one pass a block
    of rows, as ``_linear_ce``: gathering from ``WT`` and scattering into ``GWT`` in
    turn keeps both in the last-level cache at once, and with 8 MiB each (that problem,
    float64) against this Zen 2's 16 MiB the pass took 482 ms, the three 219.
    """
    z = np.empty((hi - lo, WT.shape[1]), dtype=WT.dtype)
    _gather_csr(indptr, indices, data, WT, b, lo, hi, z)
    total = 0.0
    for at in range(0, hi - lo, _SHORT_ROWS):
        rows = min(_SHORT_ROWS, hi - lo - at)
        losses = _sparse_ce_block_in_place(z[at:], labels[lo + at:], weight[lo + at:], 1.0, 0,
                                           rows)
        for r in range(rows):
            total += losses[r]  # a NaN stays NaN: the caller's signal
    _scatter_csr(indptr, indices, data, z, lo, hi, GWT, gb)
    return total


linear_ce_csr = (_linear_ce_csr, _linear_ce_csr)


@njit(cache=True, fastmath=_SUMS, nogil=True, error_model="numpy")
def _linear_proba_csr(indptr, indices, data, WT, b, lo, hi, P):
    """``P = softmax(X W^T + b)`` for rows ``lo:hi`` of a CSR matrix (``WT`` as
    ``_linear_ce_csr``'s; ``P`` has ``hi - lo`` rows): the probabilities the Hessian's
    products need (``_linear_hvp_csr``)."""
    z = P
    _gather_csr(indptr, indices, data, WT, b, lo, hi, z)
    k = z.shape[1]
    for r in range(hi - lo):
        zr = z[r]
        m = zr[0]
        for j in range(1, k):
            m = max(m, zr[j])
        s = 0.0
        for j in range(k):
            e = _fast_exp(zr[j], m)
            zr[j] = e
            s += e
        f = _like(zr, 1.0 / s)
        for j in range(k):
            zr[j] *= f


linear_proba_csr = (_linear_proba_csr, _linear_proba_csr)


@njit(cache=True, fastmath=_SUMS, nogil=True, error_model="numpy")
def _linear_hvp_csr(indptr, indices, data, VT, c, P, weight, lo, hi, HVT, hc):
    """Rows ``lo:hi``'s part of the multinomial cross-entropy's Hessian times ``(V, c)``:
    with ``u_i = V x_i + c`` (``_gather_csr``) and ``p_i`` row ``i`` of ``P``
    (``_linear_proba_csr``'s, ``hi - lo`` rows), ``r_i = w_i (p_i * u_i - p_i (p_i . u_i))``, then
    ``HVT += X^T R`` and ``hc += R^T 1`` (``_scatter_csr``): a gather and a scatter, as a
    gradient's evaluation, without its exponentials."""
    z = np.empty((hi - lo, VT.shape[1]), dtype=VT.dtype)
    _gather_csr(indptr, indices, data, VT, c, lo, hi, z)
    k = z.shape[1]
    for r in range(hi - lo):
        p = P[r]
        u = z[r]
        s = _like(u, 0.0)
        for j in range(k):
            s += p[j] * u[j]
        w = _like(u, weight[lo + r])
        for j in range(k):
            u[j] = w * p[j] * (u[j] - s)
    _scatter_csr(indptr, indices, data, z, lo, hi, HVT, hc)


linear_hvp_csr = (_linear_hvp_csr, _linear_hvp_csr)
