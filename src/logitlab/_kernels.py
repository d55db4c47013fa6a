"""Fused one-pass-per-row kernels for the softmax family and cross-entropy (Numba).

This module imports Numba, so it is loaded on first use only (``_jit.py``
decides when); ``import logitlab`` does not load it. Every kernel works on a
C-contiguous ``(n, C)`` float32 or float64 array, row by row, and writes its
result once. Per row:

1. ``m = max_j x_j`` (the row is read from memory here; later passes hit the
   cache);
2. ``e_j = exp(x_j - m)`` and ``S = sum_j e_j`` in one loop;
   ``r = S - 1`` is the sum *without* the maximal term (exactly 1), which is
   what ``log1p`` needs. When ``r < 2**-10`` that subtraction would lose
   relative accuracy, so ``r`` is summed again with the maximal entries left
   out (the NumPy reference's way), at the cost of one more pass on such
   rows only;
3. the output: ``e_j / (1 + r)``, ``(x_j - m) - log1p(r)``, or the
   cross-entropy gradient written over the row.

A row whose maximum is not finite, or that holds a NaN, has a sum that is
not finite (``inf - inf`` or NaN reaches it): its output is left unfinished,
its flag in ``bad`` is set, and the caller gives it the reference's limits.

Exactness. The exponential is our own, straight-line arithmetic that LLVM
vectorises (libm's ``exp`` is a call and does not): Cody-Waite reduction
``x = k ln2 + r`` with a two-part ``ln2``, a polynomial on ``|r| <= ln2/2``
and ``2^k`` assembled from exponent bits. ``tests/test_kernels.py`` checks
it against libm for every float32 input. float32 rows are computed in
float32 arithmetic, but ``x - m`` is split into its rounded value and its
exact rounding error (TwoSum), which enters the reduced argument, sums are
accumulated in float64, and log-domain outputs are formed in float64, so the
results stay within the reference's 2e-6 (the reference computes float32 in
float64). float64 rows follow the reference's arithmetic; only ``exp``
differs, by an ulp or two.

Floating-point flags. The loops that sum are compiled with ``reassoc`` so
LLVM can vectorise them; Numba adds a function's flags only to instructions
that have none, so the arithmetic whose order matters (``exp``, TwoSum, the
log-domain outputs) lives in helpers compiled with ``contract`` alone, and
keeps its order when inlined.
"""

from __future__ import annotations

import types as types_module

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

_EXACT = {"contract"}  # FMA contraction only: evaluation order is kept
_SUMS = {"reassoc", "contract"}  # for reductions: LLVM may reorder the sum

# ---------------------------------------------------------------- 2**k from bits


def _pow2_intrinsic(float_t, llvm_float, int_bits, mantissa_bits, magic, bias, halves):
    """An intrinsic computing ``p * 2**k`` where ``k`` is read from ``t``.

    ``t = y + magic`` (``magic = 1.5 * 2**mantissa_bits``) holds the integer
    ``k`` in its low bits. With ``halves``, ``2**k`` is applied as two exact
    factors ``2**(k//2)`` and ``2**(k - k//2)``, so that results below the
    normal range are rounded once and results above it overflow to inf;
    otherwise as one factor ``2**(k + bias)`` (``p`` carries ``2**-bias``).
    """
    int_t = ir.IntType(int_bits)
    magic_bits = int(np.array(magic, dtype=float_t).view(f"i{int_bits // 8}"))
    exp_bias = (1 << (int_bits - mantissa_bits - 2)) - 1  # 127 or 1023

    @intrinsic
    def scale(typingctx, p, t):
        def codegen(context, builder, signature, args):
            p, t = args
            shift = ir.Constant(int_t, mantissa_bits)
            bits = builder.bitcast(t, int_t)
            if halves:
                u = builder.sub(bits, ir.Constant(int_t, magic_bits - 2 * exp_bias))
                u1 = builder.ashr(u, ir.Constant(int_t, 1))
                u2 = builder.sub(u, u1)
                s1 = builder.bitcast(builder.shl(u1, shift), llvm_float)
                s2 = builder.bitcast(builder.shl(u2, shift), llvm_float)
                a = builder.fmul(p, s1)
                b = builder.fmul(a, s2)
                a.flags.append("contract")
                b.flags.append("contract")
                return b
            u = builder.add(bits, ir.Constant(int_t, exp_bias + bias - magic_bits))
            s = builder.bitcast(builder.shl(u, shift), llvm_float)
            out = builder.fmul(p, s)
            out.flags.append("contract")
            return out

        nb_float = types.float32 if float_t == np.float32 else types.float64
        return nb_float(nb_float, nb_float), codegen

    return scale


# ---------------------------------------------------------------- exp, float32

_F = np.float32
_MAGIC32 = 12582912.0  # 1.5 * 2**23: y + magic rounds y to an integer
_LOG2E32 = _F(1.4426950408889634)
_LN2_HI32 = _F(np.log(2.0))  # with an FMA, x - k * ln2_hi is exact for |k| <= 2**8
_LN2_LO32 = _F(np.log(2.0) - float(_LN2_HI32))
_BIAS32 = 64  # the shifted kernels' exp: p carries 2**-64, 2**(k + 64) stays normal


def _poly32_coefficients():
    """c2..c5 of exp(r) ~ 1 + r + c2 r^2 + ... + c5 r^5 on |r| <= ln2/2.

    Least squares on 64 Chebyshev nodes, weighted for relative error, in
    float64: close to minimax (the fitted polynomial's error is about 1e-7,
    below float32's half-ulp of 6e-8 times the few roundings around it).
    """
    h = np.log(2.0) / 2
    r = h * np.cos(np.pi * (np.arange(64) + 0.5) / 64)
    target = np.expm1(r) - r
    basis = np.stack([r**k for k in range(2, 6)], axis=1)
    w = 1.0 / np.exp(r)
    c, *_ = np.linalg.lstsq(basis * w[:, None], target * w, rcond=None)
    return tuple(float(v) for v in c)


_C32 = _poly32_coefficients()
_P32 = tuple(_F(c) for c in _C32)
_P32_SHIFTED = tuple(_F(c * 2.0**-_BIAS32) for c in _C32)
_ONE_SHIFTED = _F(2.0**-_BIAS32)

_scale32_halves = _pow2_intrinsic(np.float32, ir.FloatType(), 32, 23, _MAGIC32, 0, True)
_scale32_biased = _pow2_intrinsic(np.float32, ir.FloatType(), 32, 23, _MAGIC32, _BIAS32, False)


@njit(cache=True, fastmath=_EXACT)
def _reduce32(x, err):
    """``(t, r)``: ``x + err = k ln2 + r`` with ``k`` in the low bits of ``t``."""
    t = x * _LOG2E32 + _F(_MAGIC32)
    kf = t - _F(_MAGIC32)
    r = (x - kf * _LN2_HI32) - kf * _LN2_LO32 + err
    return t, r


@njit(cache=True, fastmath=_EXACT)
def exp32(x):
    """``exp(x)`` for every float32 ``x``: subnormal results rounded once, overflow to inf.

    Vectorisable; checked against libm for all 2**32 inputs in the tests.
    """
    if x < _F(-104.0):  # exp(-104) < 2**-150 rounds to 0; also -inf (a NaN passes)
        x = _F(-104.0)
    if x > _F(89.0):  # exp(89) > FLT_MAX: +inf, and +inf itself
        x = _F(89.0)
    t, r = _reduce32(x, _F(0.0))
    c2, c3, c4, c5 = _P32
    r2 = r * r
    q = (c5 * r + c4) * r2 + (c3 * r + c2)
    p = q * r2 + (r + _F(1.0))
    return _scale32_halves(p, t)


@njit(cache=True, fastmath=_EXACT)
def exp32_shifted(d, err):
    """``exp(d + err)`` for ``-104 <= d <= 0`` (a kernel's ``x - m``), one multiply cheaper.

    ``2**k`` is applied as a single factor ``2**(k + 64)`` on a polynomial
    scaled by ``2**-64`` (exact), which the range of ``d`` keeps normal.
    """
    t, r = _reduce32(d, err)
    c2, c3, c4, c5 = _P32_SHIFTED
    r2 = r * r
    q = (c5 * r + c4) * r2 + (c3 * r + c2)
    p = q * r2 + (r * _ONE_SHIFTED + _ONE_SHIFTED)
    return _scale32_biased(p, t)


@njit(cache=True, fastmath=_EXACT)
def _shifted_exp32(x, m):
    """``exp(x - m)`` for ``x <= m``, with ``x - m`` split exactly (TwoSum)."""
    d = x - m
    b = d - x
    a = d - b
    err = (x - a) + (-m - b)
    small = d < _F(-104.0)  # exp is 0 there (also x = -inf, where err is NaN); NaN passes
    return exp32_shifted(_F(-104.0) if small else d, _F(0.0) if small else err)


# ---------------------------------------------------------------- exp, float64

_MAGIC64 = 6755399441055744.0  # 1.5 * 2**52
_LOG2E64 = 1.4426950408889634
_LN2_HI64 = 6.93147180369123816490e-01  # fdlibm: 32 significant bits, k * ln2_hi exact
_LN2_LO64 = 1.90821492927058770002e-10
_P64 = tuple(1.0 / float(np.prod(np.arange(1, i + 1), dtype=np.float64)) for i in range(14))
_scale64_halves = _pow2_intrinsic(np.float64, ir.DoubleType(), 64, 52, _MAGIC64, 0, True)


@njit(cache=True, fastmath=_EXACT)
def exp64(x):
    """``exp(x)`` for every float64 ``x``, within a few ulp of libm's; vectorisable."""
    if x < -746.0:
        x = -746.0
    if x > 710.0:
        x = 710.0
    t = x * _LOG2E64 + _MAGIC64
    kf = t - _MAGIC64
    r = (x - kf * _LN2_HI64) - kf * _LN2_LO64
    c = _P64
    r2 = r * r
    r4 = r2 * r2
    # Estrin's scheme: shorter dependency chains than Horner's
    a0 = c[1] * r + c[0]
    a1 = c[3] * r + c[2]
    a2 = c[5] * r + c[4]
    a3 = c[7] * r + c[6]
    a4 = c[9] * r + c[8]
    a5 = c[11] * r + c[10]
    a6 = c[13] * r + c[12]
    b0 = a1 * r2 + a0
    b1 = a3 * r2 + a2
    b2 = a5 * r2 + a4
    b3 = a6 * r4 + b2
    p = (b3 * r4 + b1) * r4 + b0
    return _scale64_halves(p, t)


@njit(cache=True, fastmath=_EXACT)
def _shifted_exp64(x, m):
    """``exp(x - m)``, ``x - m`` rounded as the reference rounds it."""
    return exp64(x - m)


# ---------------------------------------------------------------- row passes


def _shifted_exp(x, m):
    """Dispatch on the dtype when compiled."""


@overload(_shifted_exp)
def _shifted_exp_impl(x, m):
    if x == types.float32:
        return lambda x, m: _shifted_exp32(x, m)
    return lambda x, m: _shifted_exp64(x, m)


def _like(a, v):
    """``v`` cast to the dtype of the array ``a``."""


@overload(_like)
def _like_impl(a, v):
    dt = a.dtype
    return lambda a, v: dt(v)


@njit(cache=True, fastmath=_SUMS)
def _row_max(x):
    m = x[0]
    for j in range(1, x.shape[0]):
        v = x[j]
        m = v if v > m else m
    return m


_BLOCK = 128  # partial sums of 128 terms in the row's dtype, added in float64


@njit(cache=True, fastmath=_SUMS)
def _exp_sum_blocks(xb, m, ob, store):
    s = 0.0
    for b in range(xb.shape[0]):
        x = xb[b]
        o = ob[b]
        acc = _like(xb, 0.0)
        for j in range(_BLOCK):
            e = _shifted_exp(x[j], m)
            if store:
                o[j] = e
            acc += e
        s += np.float64(acc)
    return s


@njit(cache=True, fastmath=_SUMS)
def _exp_sum(x, m, out, store):
    """``sum_j exp(x_j - m)`` in float64; with ``store``, ``out_j = exp(x_j - m)``.

    The sum runs in blocks of 128 terms in the row's dtype (LLVM vectorises
    it in 8 float32 lanes, so each lane adds 16 terms: relative error below
    1e-6 for float32), and the blocks' sums are added in float64.
    """
    n = x.shape[0]
    nb = n // _BLOCK
    k = nb * _BLOCK
    s = 0.0
    if nb > 0:
        s = _exp_sum_blocks(x[:k].reshape(nb, _BLOCK), m, out[:k].reshape(nb, _BLOCK), store)
    for j in range(k, n):
        e = _shifted_exp(x[j], m)
        if store:
            out[j] = e
        s += np.float64(e)
    return s


@njit(cache=True, fastmath=_SUMS)
def _exp_sum_below_max(x, m):
    """``sum_{x_j < m} exp(x_j - m) + (ties - 1)``: ``r`` without the maximal term."""
    acc = 0.0
    ties = 0.0
    for j in range(x.shape[0]):
        below = x[j] < m
        e = _shifted_exp(x[j], m)
        acc += np.float64(e) if below else 0.0
        ties += 0.0 if below else 1.0
    return acc + (ties - 1.0)


@njit(cache=True, fastmath=_SUMS)
def _sum_below_one(e):
    """The same from stored ``e_j = exp(x_j - m)``: the maximal entries are those equal to 1.

    (An entry within 2**-25 of the maximum also rounds to 1 and counts as a
    tie; ``r`` is then about 1 and its error 3e-8.)
    """
    acc = 0.0
    ties = 0.0
    for j in range(e.shape[0]):
        below = e[j] < 1.0
        acc += np.float64(e[j]) if below else 0.0
        ties += 0.0 if below else 1.0
    return acc + (ties - 1.0)


@njit(cache=True)
def _finite(v):
    return v - v == 0.0  # False for inf and NaN


@njit(cache=True)
def _row_r(x, m, out, store):
    """``r = sum_{j != j*} exp(x_j - m)`` in float64 (NaN for a row holding a NaN).

    ``r = S - 1`` is accurate to a few parts in 1e7 of ``S``; ``log1p(r)``
    needs ``r`` to that relative accuracy, so when ``r < 1`` it is summed
    again without the maximal term: from the stored exponentials with
    ``store``, by recomputing them otherwise.
    """
    r = _exp_sum(x, m, out, store) - 1.0
    if r < 1.0:
        r = _sum_below_one(out) if store else _exp_sum_below_max(x, m)
    return r


@njit(cache=True, fastmath=_EXACT)
def _log_softmax_fill(x, m, lse, out):
    m64 = np.float64(m)
    for j in range(x.shape[0]):
        out[j] = (np.float64(x[j]) - m64) - lse  # in this order: exact for the winner


@njit(cache=True, fastmath=_EXACT)
def _scale_fill(out, f):
    for j in range(out.shape[0]):
        out[j] *= f


@njit(cache=True, fastmath=_EXACT)
def _categorical_fill(g, t, f, sc):
    for j in range(g.shape[0]):
        g[j] = g[j] * f - sc * t[j]


@njit(cache=True, fastmath=_SUMS)
def _target_sums(x, t, m):
    """``(sum_j t_j, sum_j t_j (x_j - m))`` in float64, with 0 * -inf taken as 0."""
    big_t = 0.0
    td = 0.0
    m64 = np.float64(m)
    for j in range(x.shape[0]):
        tj = np.float64(t[j])
        big_t += tj
        td += tj * (np.float64(x[j]) - m64) if tj != 0.0 else 0.0
    return big_t, td


# ---------------------------------------------------------------- drivers


def _softmax_rows(x, out, bad):
    for i in prange(x.shape[0]):
        row = x[i]
        m = _row_max(row)
        s = _exp_sum(row, m, out[i], True)
        if not _finite(s):
            bad[i] = True
            continue
        _scale_fill(out[i], _like(out, 1.0 / s))


def _log_softmax_rows(x, out, bad):
    for i in prange(x.shape[0]):
        row = x[i]
        m = _row_max(row)
        r = _row_r(row, m, out[i], True)
        if not _finite(r):
            bad[i] = True
            continue
        _log_softmax_fill(row, m, np.log1p(r), out[i])


def _logsumexp_rows(x, out, bad):
    for i in prange(x.shape[0]):
        row = x[i]
        m = _row_max(row)
        r = _row_r(row, m, row, False)
        if not _finite(r):
            bad[i] = True
            continue
        out[i] = np.float64(m) + np.log1p(r)


def _sparse_ce_rows(x, labels, weight, scale, grad, loss, bad):
    """loss_i = w_i (lse_i - x_iy); grad_i = scale w_i (softmax(x_i) - onehot(y_i)).

    ``w`` is 0 on ignored rows, whose label is not read. ``grad`` may be ``x``.
    """
    for i in prange(x.shape[0]):
        row = x[i]
        g = grad[i]
        w = weight[i]
        m = _row_max(row)
        y = labels[i]
        d_y = np.float64(row[y]) - np.float64(m) if w != 0.0 else 0.0
        r = _row_r(row, m, g, True)
        if not _finite(r):
            bad[i] = True
            continue
        loss[i] = w * (np.log1p(r) - d_y)
        a = scale * w
        _scale_fill(g, _like(g, a / (1.0 + r)))
        if w != 0.0:
            g[y] -= _like(g, a)


def _categorical_ce_rows(x, t, scale, grad, loss, bad):
    """loss_i = sum_j t_ij (lse_i - x_ij); grad_i = scale (T_i softmax(x_i) - t_i)."""
    for i in prange(x.shape[0]):
        row = x[i]
        ti = t[i]
        g = grad[i]
        m = _row_max(row)
        big_t, td = _target_sums(row, ti, m)  # before g (which may be x) is written
        r = _row_r(row, m, g, True)
        if not _finite(r):
            bad[i] = True
            continue
        loss[i] = big_t * np.log1p(r) - td
        _categorical_fill(g, ti, _like(g, scale * big_t / (1.0 + r)), _like(g, scale))


def _compile(fn):
    """(serial, parallel) versions of one driver.

    The parallel one is a copy under its own name: Numba's on-disk cache is
    keyed by the function's name, not by ``parallel``.
    """
    twin = types_module.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel")
    twin.__qualname__ = twin.__name__
    return (njit(cache=True, fastmath=_SUMS)(fn),
            njit(cache=True, fastmath=_SUMS, parallel=True)(twin))


softmax_rows = _compile(_softmax_rows)
log_softmax_rows = _compile(_log_softmax_rows)
logsumexp_rows = _compile(_logsumexp_rows)
sparse_ce_rows = _compile(_sparse_ce_rows)
categorical_ce_rows = _compile(_categorical_ce_rows)
