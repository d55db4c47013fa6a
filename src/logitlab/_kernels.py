"""Fused one-pass-per-row kernels for the softmax family and cross-entropy (Numba).

This module imports Numba, so it is loaded on first use only (``_jit.py``
decides when); ``import logitlab`` does not load it. Every kernel works on a
C-contiguous ``(n, C)`` float32 or float64 array, row by row, and writes its
result once. Per row:

1. ``m = max_j x_j`` (a vector loop in LLVM IR; the row is read from
   memory here, later passes hit the cache);
2. ``e_j = exp(x_j - m)`` and ``S = sum_j e_j`` in one loop;
   ``r = S - 1`` is the sum *without* the maximal term (exactly 1), which is
   what ``log1p`` needs. On very confident rows that subtraction, or the
   fast exponentials' rounding, could cost ``r`` its relative accuracy, so
   ``r`` is summed again there (see ``_row_r``);
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
float32 arithmetic. For softmax, whose every output is promised to 2e-6,
``x - m`` is split into its rounded value and its exact rounding error
(TwoSum), which enters the reduced argument; where only the sum needs that
accuracy (log_softmax, logsumexp, the losses), a cheaper exp takes ``x - m``
rounded (``exp32_fast``). Sums are accumulated in float64 and log-domain
outputs formed in float64, so the results stay within the reference's 2e-6
(the reference computes float32 in float64). float64 rows follow the
reference's arithmetic; only ``exp`` differs, by an ulp or two.

Floating-point flags. The loops that sum are compiled with ``reassoc`` so
LLVM can vectorise them; Numba adds a function's flags only to instructions
that have none, so the arithmetic whose order matters (``exp``, TwoSum, the
log-domain outputs) lives in helpers compiled with ``contract`` alone, and
keeps its order when inlined.
"""

from __future__ import annotations

import math
import types as types_module

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
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
def _shifted_poly32(r, t):
    """``exp(r) 2**k`` for the shifted kernels: ``2**-64``-scaled polynomial, one factor ``2**(k + 64)``."""
    c2, c3, c4, c5 = _P32_SHIFTED
    r2 = r * r
    q = (c5 * r + c4) * r2 + (c3 * r + c2)
    p = q * r2 + (r * _ONE_SHIFTED + _ONE_SHIFTED)
    return _scale32_biased(p, t)


@njit(cache=True, fastmath=_EXACT)
def exp32_shifted(d, err):
    """``exp(d + err)`` for ``-104 <= d <= 0`` (a kernel's ``x - m``), one multiply cheaper.

    ``2**k`` is applied as a single factor ``2**(k + 64)`` on a polynomial
    scaled by ``2**-64`` (exact), which the range of ``d`` keeps normal.
    """
    t, r = _reduce32(d, err)
    return _shifted_poly32(r, t)


@njit(cache=True, fastmath=_EXACT)
def _shifted_exp32(x, m):
    """``exp(x - m)`` for ``x <= m``, with ``x - m`` split exactly (TwoSum)."""
    d = x - m
    b = d - x
    a = d - b
    err = (x - a) + (-m - b)
    small = d < _F(-104.0)  # exp is 0 there (also x = -inf, where err is NaN); NaN passes
    return exp32_shifted(_F(-104.0) if small else d, _F(0.0) if small else err)


@njit(cache=True, fastmath=_EXACT)
def exp32_fast(d):
    """``exp(d)`` for ``-104 <= d <= 0``, for sums: one-constant reduction, no error term.

    ``r = d - k ln2_f32`` with float32's ``ln2`` (off by 1.9e-9), so the
    result carries a relative error up to ``|k| 1.9e-9`` (3e-7 at ``d =
    -104``) besides the polynomial's: within 5 ulp over the whole range
    (tested on every input). One FMA fewer than :func:`exp32_shifted`.
    """
    t = d * _LOG2E32 + _F(_MAGIC32)
    kf = t - _F(_MAGIC32)
    r = d - kf * _LN2_HI32
    return _shifted_poly32(r, t)


@njit(cache=True, fastmath=_EXACT)
def _fast_exp32(x, m):
    """``exp(x - m)`` with ``x - m`` rounded: a relative error up to ``|x - m| 2**-24``.

    That error grows with ``|x - m|``, so it never matters in a sum (its
    share of the sum is below ``2**-24 max_d |d| e^d = 2e-8``), only in an
    entry's own value; the kernels use this where only the sum needs
    relative accuracy. The clamp lets a NaN through (the sum flags the row).
    """
    d = x - m
    return exp32_fast(_F(-104.0) if d < _F(-104.0) else d)


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


def _by_dtype(f32, f64):
    """A function of ``(x, m)`` that compiles to ``f32`` for float32 ``x``, else ``f64``."""

    def dispatch(x, m):
        pass

    @overload(dispatch)
    def _impl(x, m):
        if x == types.float32:
            return lambda x, m: f32(x, m)
        return lambda x, m: f64(x, m)

    return dispatch


# exp(x - m) whose every value is accurate (float32: TwoSum), and the one for sums
# (float32: x - m rounded, see _fast_exp32); float64 has one exp for both
_shifted_exp = _by_dtype(_shifted_exp32, _shifted_exp64)
_fast_exp = _by_dtype(_fast_exp32, _shifted_exp64)


def _like(a, v):
    """``v`` cast to the dtype of the array ``a``."""


@overload(_like)
def _like_impl(a, v):
    dt = a.dtype
    return lambda a, v: dt(v)


@intrinsic
def _max_head(typingctx, arr):
    """Max of a contiguous row's first ``n - n % (64 // itemsize)`` entries (-inf if none).

    Written as vector IR (two 256-bit accumulators, ``x > acc ? x : acc``,
    which x86's ``maxps`` computes exactly): LLVM does not vectorise a
    floating-point max reduction from Numba's loops, and the scalar loop
    costs as much as a third of the kernel. A NaN is passed over here; the
    sum that follows catches it.
    """
    dt = arr.dtype
    lanes = 8 if dt == types.float32 else 4

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        n = builder.extract_value(ary.shape, 0)
        intp = n.type
        fty = context.get_value_type(dt)
        vty = ir.VectorType(fty, lanes)
        ninf = ir.Constant(vty, [ir.Constant(fty, float("-inf"))] * lanes)
        accs = [cgutils.alloca_once_value(builder, ninf) for _ in range(2)]
        blocks = builder.sdiv(n, ir.Constant(intp, 2 * lanes))
        with cgutils.for_range(builder, blocks) as loop:
            base = builder.mul(loop.index, ir.Constant(intp, 2 * lanes))
            for k, acc in enumerate(accs):
                at = builder.gep(ary.data, [builder.add(base, ir.Constant(intp, k * lanes))])
                v = builder.load(builder.bitcast(at, vty.as_pointer()), align=dt.bitwidth // 8)
                cur = builder.load(acc)
                builder.store(builder.select(builder.fcmp_ordered(">", v, cur), v, cur), acc)
        a, b = (builder.load(acc) for acc in accs)
        v = builder.select(builder.fcmp_ordered(">", a, b), a, b)
        m = builder.extract_element(v, ir.Constant(ir.IntType(32), 0))
        for k in range(1, lanes):
            e = builder.extract_element(v, ir.Constant(ir.IntType(32), k))
            m = builder.select(builder.fcmp_ordered(">", e, m), e, m)
        return m

    return dt(arr), codegen


@njit(cache=True)
def _row_max(x):
    m = _max_head(x)
    n = x.shape[0]
    step = 64 // x.itemsize  # what _max_head covers
    for j in range(n - n % step, n):
        v = x[j]
        m = v if v > m else m
    return m


_BLOCK = 128


@njit(cache=True, fastmath=_SUMS)
def _exp_sum(x, m, out, store, exact):
    """``sum_j exp(x_j - m)`` in float64; with ``store``, ``out_j = exp(x_j - m)``.

    ``exact`` (a literal) picks the exp whose every value is accurate
    (``_shifted_exp``, for softmax's outputs), else the one that is
    accurate in a sum (``_fast_exp``). The fast terms are added in float64
    (LLVM vectorises it, 4 lanes), so that ``S - 1`` keeps ``r``'s relative
    accuracy down to very confident rows. The exact ones, whose sum only
    needs to be accurate relative to itself, run in blocks of 128 terms in
    the row's dtype (8 float32 lanes of 16 terms: relative error below
    1e-6) added in float64, 0.1 ns a term cheaper. (Blocks by index:
    slicing and reshaping the row cost 130 ns a row.)
    """
    n = x.shape[0]
    if not exact:
        s = 0.0
        for j in range(n):
            e = _fast_exp(x[j], m)
            if store:
                out[j] = e
            s += np.float64(e)
        return s
    k = n - n % _BLOCK
    s = 0.0
    for b in range(0, k, _BLOCK):
        acc = _like(x, 0.0)
        for j in range(b, b + _BLOCK):
            e = _shifted_exp(x[j], m)
            if store:
                out[j] = e
            acc += e
        s += np.float64(acc)
    acc = _like(x, 0.0)
    for j in range(k, n):
        e = _shifted_exp(x[j], m)
        if store:
            out[j] = e
        acc += e
    return s + np.float64(acc)


@njit(cache=True, fastmath=_SUMS)
def _exp_sum_below_max(x, m):
    """``sum_{x_j < m} exp(x_j - m) + (ties - 1)``: ``r`` without the maximal term, every term exact."""
    acc = 0.0
    ties = 0.0
    for j in range(x.shape[0]):
        below = x[j] < m
        e = _shifted_exp(x[j], m)
        acc += np.float64(e) if below else 0.0
        ties += 0.0 if below else 1.0
    return acc + (ties - 1.0)


@intrinsic
def _octaves_below_one(typingctx, e):
    """``127 - biased exponent of e``, as float32: for ``0 <= e < 1``, ``|ln e| <= that * ln 2``."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.lshr(builder.bitcast(args[0], i32), ir.Constant(i32, 23))
        return builder.sitofp(builder.sub(ir.Constant(i32, 127), bits), ir.FloatType())

    return types.float32(types.float32), codegen


def _log_weight(e):
    """An upper bound on ``e |ln e|`` over ``ln 2`` for ``0 <= e < 1`` (float32); 0 for float64."""


@overload(_log_weight)
def _log_weight_impl(e):
    if e == types.float32:
        return lambda e: e * _octaves_below_one(e)
    return lambda e: 0.0


@njit(cache=True, fastmath=_SUMS)
def _sum_below_max(x, m, e, stored):
    """``(r, w)``: ``r = sum_{x_j < m} e_j + (ties - 1)`` without the maximal term, ``w`` its weight.

    From the stored ``e_j = exp(x_j - m)`` if ``stored`` (a literal; ``x``
    is not read, and the maximal entries are those equal to 1; an entry
    within 2**-25 of the maximum also rounds to 1 and counts as a tie, an
    error of 3e-8 on an ``r`` of about 1), else from fast exponentials
    recomputed from ``x``. ``w >= sum_j e_j |x_j - m|`` (from the exponent
    bits of float32 ``e_j``; 0 for float64, whose rounding is the
    reference's) bounds the fast exponentials' error: ``r`` is off by at
    most ``w 2**-24`` from the rounding of ``x - m``.
    """
    n = e.shape[0] if stored else x.shape[0]
    acc = 0.0
    ties = 0.0
    w = 0.0
    for j in range(n):
        v = e[j] if stored else _fast_exp(x[j], m)
        below = v < 1.0 if stored else x[j] < m
        acc += np.float64(v) if below else 0.0
        ties += 0.0 if below else 1.0
        w += np.float64(_log_weight(v)) if below else 0.0
    return acc + (ties - 1.0), w * 0.6931471805599453


def _recount_below(x):
    """Below which ``r = S - 1`` is summed again without the maximal term (see ``_row_r``)."""


@overload(_recount_below)
def _recount_below_impl(x):
    if x.dtype == types.float32:
        return lambda x: _CONFIDENT * x.shape[0]
    return lambda x: 1.0


@njit(cache=True)
def _finite(v):
    return v - v == 0.0  # False for inf and NaN


# float32: r from fast exponentials is off by up to w 2**-24 (see _sum_below_max; S is not:
# the rounding's share of S is below 2e-8). With D = 15, w <= D r + C D e**-D, at most
# 16 r (an error of 9.5e-7 r) unless r < 15 C e**-15. Only rows below that, very
# confident ones, are summed again without the maximal term, and a third time from exact
# exponentials if their w is above 8 r (4.8e-7 r). S - 1, summed in float64, keeps r's
# relative accuracy above that (its error is C 2e-16).
_CONFIDENT = 15.0 * math.exp(-15.0)
_REFINE = 8.0


@njit(cache=True)
def _row_r(x, m, out, store, refine):
    """``r = sum_{j != j*} exp(x_j - m)`` in float64 (NaN for a row holding a NaN).

    ``r = S - 1`` from fast exponentials summed in float64. ``log1p(r)``
    needs ``r`` to its own relative accuracy, so below ``_recount_below``
    (float32: ``15 C e**-15``; float64, whose terms are rounded as in the
    reference: 1) ``r`` is summed again without the maximal term: from the
    stored exponentials with ``store``, by recomputing them otherwise; and,
    with ``refine``, a third time from exact exponentials if the fast ones'
    error could exceed ``4.8e-7 r`` (``refine`` is off when ``out`` is
    ``x``: the row is gone).
    """
    r = _exp_sum(x, m, out, store, False) - 1.0
    if r < _recount_below(x):
        r, w = _sum_below_max(x, m, out, True) if store else _sum_below_max(x, m, x, False)
        if refine and w > _REFINE * r:
            r = _exp_sum_below_max(x, m)
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
        s = _exp_sum(row, m, out[i], True, True)
        if not _finite(s):
            bad[i] = True
            continue
        _scale_fill(out[i], _like(out, 1.0 / s))


def _log_softmax_rows(x, out, bad):
    for i in prange(x.shape[0]):
        row = x[i]
        m = _row_max(row)
        r = _row_r(row, m, out[i], True, True)
        if not _finite(r):
            bad[i] = True
            continue
        _log_softmax_fill(row, m, np.log1p(r), out[i])


def _logsumexp_rows(x, out, bad):
    for i in prange(x.shape[0]):
        row = x[i]
        m = _row_max(row)
        r = _row_r(row, m, row, False, True)
        if not _finite(r):
            bad[i] = True
            continue
        out[i] = np.float64(m) + np.log1p(r)


def _sparse_ce_rows(x, labels, weight, scale, grad, loss, bad, refine):
    """loss_i = w_i (lse_i - x_iy); grad_i = scale w_i (softmax(x_i) - onehot(y_i)).

    ``w`` is 0 on ignored rows, whose label is not read. ``grad`` may be
    ``x``; then ``refine`` must be False (see :func:`_row_r`).
    """
    for i in prange(x.shape[0]):
        row = x[i]
        g = grad[i]
        w = weight[i]
        m = _row_max(row)
        y = labels[i]
        d_y = np.float64(row[y]) - np.float64(m) if w != 0.0 else 0.0
        r = _row_r(row, m, g, True, refine)
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
        r = _row_r(row, m, g, True, True)
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
